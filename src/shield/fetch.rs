//! One upstream fetch for the shield, run as a task of its own: it reads the upstream's
//! answer at the upstream's pace, hands each chunk to the fill's readers, and keeps the
//! whole body when it may.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame};

use super::entry::{keep_body, Entry, Head};
use super::fill::Fill;
use super::key::Key;
use super::{policy, Shield};
use crate::path::ObjectKind;
use crate::proxy::forward::strip_hop_by_hop;
use crate::proxy::upstream::{Group, UpstreamError, UpstreamRequest};
use crate::proxy::Body;

/// Ends a fetch's time in flight however its task ends (done, panicked, or dropped with
/// the runtime): the key is free for the next request, and readers still waiting get an
/// error rather than waiting forever.
impl Drop for Fetch {
    fn drop(&mut self) {
        self.release();
        self.fill.abandon();
    }
}

/// How a fetch ends for the readers waiting on it.
enum End {
    /// The whole body was handed over (or the upstream body failed part way).
    Done(Result<(), String>),
    /// Not for the shield (too large, or past the budget of bytes in flight): each reader
    /// fetches past it.
    Pass,
    /// No server answered.
    Fail(UpstreamError),
}

/// One upstream fetch for the shield, run as a task of its own.
pub(super) struct Fetch {
    /// The purge count when it started.
    pub(super) purges: u64,
    /// The shield it fills.
    pub(super) shield: Shield,
    /// The servers it asks.
    pub(super) group: Arc<Group>,
    /// What it fetches.
    pub(super) key: Key,
    /// What kind of object that is.
    pub(super) kind: ObjectKind,
    /// The copy kept before, served if every server fails (a body that breaks off before
    /// its first bytes is a server's failure).
    pub(super) stale: Option<Arc<Entry>>,
    /// Its readers' shared view of it.
    pub(super) fill: Arc<Fill>,
}

impl Fetch {
    /// Runs the fetch to its end.
    pub(super) async fn run(self) {
        self.fetch().await;
    }

    /// Frees the key, so the next request starts a fetch of its own (or finds the stored
    /// entry) rather than joining this one.
    fn release(&self) {
        let mut inflight = self
            .shield
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if inflight
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.fill))
        {
            inflight.remove(&self.key);
        }
    }

    /// Ends the fetch for its waiters. The key is freed first: a client that has read the
    /// whole answer and asks again must not join this fetch and be handed the same answer
    /// (a 404 not kept, an object not kept).
    fn end(&self, end: End) {
        self.release();
        match end {
            End::Done(result) => self.fill.finish(result),
            End::Pass => self.fill.pass(),
            End::Fail(e) => self.fill.fail(e),
        }
    }

    /// Answers the fetch's readers with the kept copy if it may still stand in for a
    /// failed upstream (within its stale-if-error window); whether it did. `why`: the
    /// failure, for the log.
    fn serve_stale(&self, why: &str) -> bool {
        let now = Instant::now();
        let Some(entry) = self.stale.as_ref().filter(|e| e.is_usable_stale(now)) else {
            return false;
        };
        tracing::warn!(
            path = self.key.path(),
            error = why,
            "upstream failed; serving a stale copy"
        );
        // Freed first, as below: a reader with every byte may ask again at once.
        self.release();
        // Its bytes are the cache's: nothing more is held for it.
        self.fill
            .head(entry.head.clone(), Some(entry.age(now)), None);
        self.fill.push(entry.body.clone());
        self.end(End::Done(Ok(())));
        true
    }

    async fn fetch(&self) {
        let inner = &self.shield.inner;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let request = UpstreamRequest {
            method: Method::GET,
            path_and_query: self.key.upstream_target(),
            headers,
            bounded: true,
        };
        // With a stale copy to fall back on, servers already marked down are not waited on.
        let has_stale = self
            .stale
            .as_ref()
            .is_some_and(|e| e.is_usable_stale(Instant::now()));
        // A server counts as answering only once its body's first bytes came: one whose
        // body breaks off (or times out) before them failed, and the next is asked.
        let result = self.group.fetch_started(request, !has_stale).await;
        let failed = match &result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        if failed && self.serve_stale("every upstream failed") {
            return;
        }
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                self.end(End::Fail(e));
                return;
            }
        };
        let (mut parts, mut body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let head = Arc::new(Head::owned(parts.status, &parts.headers));
        let limit = inner.settings.max_object_bytes;
        let announced = head
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .filter(|_| !matches!(head.status.as_u16(), 204 | 304));
        let announced_too_large = announced.is_some_and(|len| len > limit);
        if announced_too_large {
            // Not held in memory at all: this request and the next ones for a while fetch
            // it past the shield, streamed at each client's pace.
            inner.pass_by(&self.key);
            self.end(End::Pass);
            return;
        }
        // An other object chosen by type and answered with a type not listed: this fetch
        // serves the viewers waiting for it, and the next requests go past the shield.
        let keep = policy::choice(&inner.settings, self.kind, self.key.path())
            != policy::Choice::ByType
            || policy::type_listed(&inner.settings, &head.headers);
        if !keep && head.status.is_success() {
            inner.pass_by(&self.key);
        }
        // Held against `shield.max_in_flight_bytes`: a length announced is granted whole
        // now; one not announced as the bytes come, its head going out with its first
        // bytes once they are granted. Not granted: each reader fetches past the shield,
        // streamed at its own pace, and the next request tries to keep the object again.
        // The group returned the answer with its first bytes at hand (a body that broke
        // before them was a failed server, above), so this does not wait on the origin.
        let mut first = None;
        if announced.is_none() {
            first = match first_data(&mut body).await {
                Ok(first) => first,
                Err(e) => {
                    if self
                        .serve_stale(&format!("upstream body failed before its first bytes: {e}"))
                    {
                        return;
                    }
                    // No byte went out: an exchange that failed, as one with no head (a
                    // 502 `upstream_error`).
                    tracing::warn!(path = self.key.path(), error = %e, "upstream body failed; not cached");
                    self.end(End::Fail(UpstreamError::Protocol(e)));
                    return;
                }
            };
        }
        let wanted = announced.unwrap_or_else(|| first.as_ref().map_or(0, |d| d.len() as u64));
        let Some(grant) = inner.budget.grant(wanted) else {
            self.shield.over_budget(self.kind);
            self.end(End::Pass);
            return;
        };
        self.fill.head(head.clone(), None, Some(grant));
        let mut kept = Vec::new();
        let mut len = 0u64;
        let upstream_bytes = inner.metrics.cache_bytes.with_label_values(&["upstream"]);
        // The body's last chunk, when the upstream says it is the last (its length was
        // announced): handed to the readers only once the entry is stored and the key
        // freed, since a reader that has every byte may ask again at once.
        let mut last = None;
        let mut past_limit = false;
        let mut over_budget = false;
        loop {
            let frame = match first.take() {
                Some(data) => Some(Ok(Frame::data(data))),
                None => body.frame().await,
            };
            match frame {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        len += data.len() as u64;
                        upstream_bytes.inc_by(data.len() as u64);
                        if len <= limit {
                            if !over_budget {
                                kept.push(data.clone());
                            }
                        } else if !past_limit {
                            past_limit = true;
                            // Past the limit (a length not announced): nothing more is
                            // kept, no one else joins this fetch (the next requests go
                            // past the shield), and those reading it get the rest through
                            // a window of the limit's size.
                            kept = Vec::new();
                            inner.pass_by(&self.key);
                            self.release();
                        }
                        if body.is_end_stream() && len <= limit && !over_budget {
                            last = Some(data);
                            break;
                        }
                        if !self.fill.push_within(data, limit) && !over_budget {
                            over_budget = true;
                            // Past the budget of bytes in flight (a length not
                            // announced): nothing more is kept, no one else joins this
                            // fetch, and those reading it get the rest through a window
                            // of what it held when the budget ran out. The next request
                            // tries to keep the object again.
                            kept = Vec::new();
                            self.release();
                            self.shield.over_budget(self.kind);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(path = self.key.path(), error = %e, "upstream body failed; not cached");
                    self.end(End::Done(Err(e.to_string())));
                    return;
                }
            }
        }
        if announced.is_some_and(|announced| announced != len) {
            // A body that is not the length its head gave (an origin that lost bytes
            // without an error): never kept, and its readers' bodies fail as broken ones.
            tracing::warn!(
                path = self.key.path(),
                len,
                "upstream body not its announced length; not cached"
            );
            self.end(End::Done(Err(format!(
                "{len} bytes where Content-Length said {}",
                announced.unwrap_or_default()
            ))));
            return;
        }
        let body = keep_body(&kept, inner.settings.sendfile_min_bytes, &inner.bodies);
        // A playlist's lifetime depends on whether it is live, which its text tells: read
        // through the gzip an origin may send it in all the same (kept so, see above).
        let text = if self.kind == ObjectKind::Playlist {
            playlist_text(&head.headers, &body, limit)
        } else {
            std::borrow::Cow::Borrowed(&[][..])
        };
        let lifetime = policy::lifetime(
            &inner.settings,
            self.kind,
            head.status,
            &head.headers,
            &text,
        );
        if over_budget {
            // Streamed through, not kept (above).
        } else if len > limit {
            // Larger than announced (or not announced): served, not kept, and the next
            // requests go past the shield.
            inner.pass_by(&self.key);
        } else if let Some(lifetime) = lifetime.filter(|_| keep) {
            // A body whose length was not announced (chunked) is whole now: its copy says
            // how long it is, so a HEAD answered from it does too.
            let head = match announced {
                None if !matches!(head.status.as_u16(), 204 | 304) => {
                    Arc::new(head.with_length(len))
                }
                _ => head,
            };
            let entry = Entry {
                head,
                body,
                len,
                stored: Instant::now(),
                lifetime,
            };
            self.shield.store(self.key.clone(), entry, self.purges);
        }
        // Finished only once stored, so a request that finds no fetch in flight finds the
        // entry; freed before the last bytes go out, so a request after them never joins
        // this fetch.
        self.release();
        if let Some(data) = last {
            // Of a body kept whole: held even past the budget (one chunk over).
            self.fill.push_last(data);
        }
        self.end(End::Done(Ok(())));
    }
}

/// The text of a playlist `body` sent with `headers`: decoded when its `Content-Encoding`
/// is gzip (at most `limit` bytes of it), else as it is. A body that does not decode is
/// read as it is (no text: not live).
fn playlist_text<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    limit: u64,
) -> std::borrow::Cow<'a, [u8]> {
    let gzipped = headers.get(CONTENT_ENCODING).is_some_and(|v| {
        let coding = v.as_bytes().trim_ascii();
        coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip")
    });
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match gzipped.then(|| crate::proxy::compress::gunzip(body, limit).ok()) {
        Some(Some(text)) => std::borrow::Cow::Owned(text),
        _ => std::borrow::Cow::Borrowed(body),
    }
}

/// The first bytes of `body`: its first data frame, or `None` when it ends without one.
///
/// # Errors
/// Why the body failed before.
async fn first_data(body: &mut Body) -> Result<Option<Bytes>, String> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}
