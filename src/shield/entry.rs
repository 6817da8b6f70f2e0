//! A kept response: its head, its body in one piece, and when it was stored.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::policy::Lifetime;
use crate::config::upstream::ShieldConfig;
use crate::mapped::Backing;
use crate::proxy::Body;

/// Header that tells how the shield answered: `hit`, `miss`, `coalesced` or `stale`.
pub const CACHE_STATUS: &str = "x-usher-cache";

/// Status and headers of a response (hop-by-hop headers already removed).
#[derive(Debug)]
pub struct Head {
    /// The status.
    pub status: StatusCode,
    /// The end-to-end headers.
    pub headers: HeaderMap,
    /// The headers made private for shared caches (see [`crate::proxy::cache_control`]),
    /// made when an answer first needs them and kept for every later one (`None`: the
    /// stored ones already are). Their values are the stored ones (shared, not copied)
    /// but for `Cache-Control`, less the headers that instruct shared caches. Not weighed
    /// against `shield.memory`: a map of a few hundred bytes.
    private: OnceLock<Option<HeaderMap>>,
}

/// Headers an answer from the cache gets beyond the stored ones: the cache status, `Age`,
/// `x-request-id` and up to three CORS headers.
const EXTRA_HEADERS: usize = 6;

impl Head {
    /// The head to keep of an upstream response: its own copy of the header values, all in
    /// one allocation.
    ///
    /// The values hyper parsed are slices of the connection's read buffer: kept as they
    /// are, one small object would hold that whole buffer in memory (several times its
    /// weight against the shield's budget), and every hit on any object read through that
    /// buffer would count on one shared reference counter from every thread. In one
    /// allocation of their own, an answer's clones of them count on one counter of this
    /// head's.
    pub fn owned(status: StatusCode, headers: &HeaderMap) -> Self {
        let mut values = bytes::BytesMut::with_capacity(headers.values().map(|v| v.len()).sum());
        for value in headers.values() {
            values.extend_from_slice(value.as_bytes());
        }
        let values = values.freeze();
        let mut own = HeaderMap::with_capacity(headers.len());
        let mut at = 0;
        for (name, value) in headers {
            let mut copy = HeaderValue::from_maybe_shared(values.slice(at..at + value.len()))
                .expect("a parsed header value is a valid header value");
            at += value.len();
            copy.set_sensitive(value.is_sensitive());
            own.append(name, copy);
        }
        Self::new(status, own)
    }

    /// The head of `status` and `headers`, as they are.
    pub fn new(status: StatusCode, headers: HeaderMap) -> Self {
        Self {
            status,
            headers,
            private: OnceLock::new(),
        }
    }

    /// This head with `Content-Length: len`.
    pub fn with_length(&self, len: u64) -> Self {
        let mut headers = self.headers.clone();
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        Self::new(self.status, headers)
    }

    /// The headers an answer gets: the stored ones, or (`private`) their private form.
    fn headers(&self, private: bool) -> &HeaderMap {
        if !private {
            return &self.headers;
        }
        let made = self.private.get_or_init(|| {
            (!crate::proxy::cache_control::is_private(&self.headers)).then(|| {
                let mut headers = self.headers.clone();
                crate::proxy::cache_control::make_private(&mut headers);
                headers
            })
        });
        made.as_ref().unwrap_or(&self.headers)
    }

    /// A response with this head (its headers made private for shared caches when
    /// `private`), `body`, and the shield's `outcome` and `age` headers.
    pub fn response(
        &self,
        body: Body,
        outcome: &'static str,
        age: Option<u64>,
        private: bool,
    ) -> Response<Body> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let stored = self.headers(private);
        // Built at its final size, with room for the headers added here and after (the
        // request id and CORS headers): a clone would be exactly as large as the stored
        // map and grow (a reallocation) at the first header added.
        let headers = response.headers_mut();
        *headers = HeaderMap::with_capacity(stored.len() + EXTRA_HEADERS);
        for (name, value) in stored {
            headers.append(name, value.clone());
        }
        headers.insert(CACHE_STATUS, HeaderValue::from_static(outcome));
        if let Some(age) = age {
            headers.insert(http::header::AGE, HeaderValue::from(age));
        }
        response
    }
}

/// A response in the cache.
#[derive(Debug)]
pub struct Entry {
    /// Status and headers.
    pub head: Arc<Head>,
    /// The body, in one piece: a hit is written with one vectored write.
    pub body: Bytes,
    /// Body length in bytes.
    pub len: u64,
    /// When it was stored.
    pub stored: Instant,
    /// How long it is fresh, and usable past that on upstream errors.
    pub lifetime: Lifetime,
}

impl Entry {
    /// Whether it may be served without asking the upstream.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.duration_since(self.stored) < self.lifetime.fresh
    }

    /// How old it is at `now`, in whole seconds, as `Age` says: what it was when it arrived
    /// and the time since (at most [`super::policy::MAX_AGE_SECONDS`]).
    pub fn age(&self, now: Instant) -> u64 {
        let age = self.lifetime.arrived_age + now.saturating_duration_since(self.stored);
        age.as_secs().min(super::policy::MAX_AGE_SECONDS)
    }

    /// Whether it may still be served when every upstream fails.
    pub fn is_usable_stale(&self, now: Instant) -> bool {
        now.duration_since(self.stored) < self.lifetime.kept()
    }

    /// Its weight against the cache's byte budget: body and headers.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .head
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        u32::try_from(self.len as usize + headers + 64).unwrap_or(u32::MAX)
    }

    /// The response for a viewer at `now` (the body left out for HEAD; the headers made
    /// private for shared caches when `private`).
    pub fn response(
        &self,
        head_only: bool,
        private: bool,
        outcome: &'static str,
        now: Instant,
    ) -> Response<Body> {
        self.head.response(
            bytes_body(&self.body, head_only),
            outcome,
            Some(self.age(now)),
            private,
        )
    }
}

/// A body of `body` (none for HEAD).
pub fn bytes_body(body: &Bytes, head_only: bool) -> Body {
    let body = if head_only {
        Bytes::new()
    } else {
        body.clone()
    };
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// Where the shield keeps bodies sent with `sendfile`: unnamed files in
/// `shield.sendfile_dir`, or memory files when it is empty or its filesystem cannot hold
/// unnamed files (said in the log).
pub fn body_backing(settings: &ShieldConfig) -> Backing {
    if settings.sendfile_min_bytes == 0 {
        return Backing::Memory;
    }
    let backing = match &settings.sendfile_dir {
        None => Backing::Memory,
        Some(dir) => Backing::directory(dir).unwrap_or_else(|e| {
            tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "shield.sendfile_dir cannot hold unnamed files; bodies sent with sendfile go in memory files"
            );
            Backing::Memory
        }),
    };
    tracing::info!(
        place = %backing.describe(),
        min_bytes = settings.sendfile_min_bytes,
        "shield bodies sent with sendfile are kept in files"
    );
    backing
}

/// The body to keep of `chunks`: in a file of its own made by `backing` when it is at
/// least `sendfile_min_bytes` long (not 0) and the file can be made, so that plain
/// connections send it with `sendfile`; otherwise in one allocation ([`join`]).
pub fn keep_body(chunks: &[Bytes], sendfile_min_bytes: u64, backing: &Backing) -> Bytes {
    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    (sendfile_min_bytes != 0 && len >= sendfile_min_bytes)
        .then(|| crate::mapped::collect(chunks, backing))
        .flatten()
        .unwrap_or_else(|| join(chunks))
}

/// `chunks` in one piece, in an allocation of its own: a single chunk is a slice of the
/// upstream connection's read buffer, which a kept slice would hold whole (see
/// [`Head::owned`]).
pub fn join(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => Bytes::copy_from_slice(one),
        many => {
            let mut whole = bytes::BytesMut::with_capacity(many.iter().map(|c| c.len()).sum());
            for chunk in many {
                whole.extend_from_slice(chunk);
            }
            whole.freeze()
        }
    }
}
