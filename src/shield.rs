//! The origin shield: segments, init sections, keys and playlists kept in memory by bytes,
//! and concurrent misses for one object coalesced into one upstream request. Other objects
//! (trick-play images, `.bin` or extensionless keys, subtitles) are kept when their
//! extension or content type is listed (see [`policy::choice`]).
//!
//! ```text
//! request ─► key (group, path, _HLS_* directives; never a token)
//!         ─► fresh entry? ─────────────────────────────► hit
//!         ─► a fetch in flight for the key? ─► join it ─► coalesced
//!         ─► start one (a task of its own, so a viewer leaving does not stop it),
//!            read it like any joiner ────────────────────► miss
//!               upstream group: primary, fallbacks (see proxy::upstream::group)
//!               every server failed and a stale entry is usable? ─► stale
//!               complete, storable (policy), small enough ─► kept
//!               an other object whose type is not listed ─► served, not kept, and the
//!               next requests for it go past the shield
//! ```
//!
//! Everyone reading a fetch gets its chunks as they arrive; a failed fetch is kept by no
//! one and every reader gets its error. Requests for ranges pass by the shield.
//!
//! A second tier on disk would slot in behind the memory cache: a miss here would look
//! there before starting an upstream fetch, and an entry evicted here (moka's eviction
//! listener) would be written there.

mod entry;
mod fill;
mod front;
mod key;
pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, RANGE};
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use moka::sync::Cache;

pub use entry::CACHE_STATUS;

use entry::{keep_body, Entry, Head};
use fill::Fill;
use key::Key;

use crate::config::ShieldConfig;
use crate::metrics::Metrics;
use crate::path::ObjectKind;
use crate::proxy::conditional::{self, Conditions};
use crate::proxy::forward::strip_hop_by_hop;
use crate::proxy::upstream::{Group, UpstreamError, UpstreamRequest};
use crate::proxy::Body;

/// What a request wants of the shield's answer beyond its object.
#[derive(Debug, Clone, Copy)]
pub struct Wants<'a> {
    /// The body left out (HEAD).
    pub head_only: bool,
    /// Its conditions (`If-None-Match`, `If-Modified-Since`), if it has any.
    pub conditions: Option<Conditions<'a>>,
}

/// The shield; cheap to clone (one shared cache).
#[derive(Clone)]
pub struct Shield {
    inner: Arc<Inner>,
}

struct Inner {
    /// Which shield this is, for the threads' fronts (see [`front`]).
    id: u64,
    cache: Cache<Key, Arc<Entry>>,
    /// Objects found too large to keep, or other objects of a type not listed: requests
    /// for them go by the shield for a while.
    bypass: Cache<Key, ()>,
    /// Counts purges: a fetch that started before one does not store what it fetched (it
    /// may be what the purge meant to remove).
    purges: std::sync::atomic::AtomicU64,
    inflight: Mutex<HashMap<Key, Arc<Fill>>>,
    settings: ShieldConfig,
    /// Where bodies sent with `sendfile` are kept.
    bodies: crate::mapped::Backing,
    metrics: Metrics,
}

impl Shield {
    /// A shield with `settings`, reporting to `metrics`.
    pub fn new(settings: &ShieldConfig, metrics: &Metrics) -> Self {
        let cache = Cache::builder()
            .max_capacity(settings.memory)
            .weigher(|key: &Key, entry: &Arc<Entry>| {
                entry
                    .weight()
                    .saturating_add(u32::try_from(key.weight()).unwrap_or(u32::MAX))
            })
            .expire_after(policy::KeepFor)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                cache,
                bypass: Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(settings.segment_ttl)
                    .build(),
                purges: std::sync::atomic::AtomicU64::new(0),
                inflight: Mutex::new(HashMap::new()),
                settings: settings.clone(),
                bodies: entry::body_backing(settings),
                metrics: metrics.clone(),
            }),
        }
    }

    /// Whether a request goes through the shield: it is on, the request is a whole GET or
    /// HEAD (no `Range`), and it asks for a media object, a playlist, or another object
    /// the settings choose (by extension, or by content type once fetched).
    pub fn applies(
        &self,
        method: &Method,
        kind: ObjectKind,
        path: &str,
        headers: &HeaderMap,
    ) -> bool {
        let settings = &self.inner.settings;
        settings.enabled
            && (method == Method::GET || method == Method::HEAD)
            && !headers.contains_key(RANGE)
            && policy::choice(settings, kind, path) != policy::Choice::Pass
    }

    /// Answers for `path` with the upstream `query` (credentials removed) from this
    /// thread's front, the cache, a fetch in flight, or a new fetch on `group`.
    /// `wants`: the body left out, and the request's conditions (a fresh copy they find
    /// not modified answers 304). `now`: the request's instant, for freshness and
    /// `Age`. `None`: the object is too large for the shield, and the caller fetches it
    /// past the shield. Counts the answer's time to its headers (0 for a fresh copy).
    ///
    /// # Errors
    /// The upstream's error when no server answered and no stale copy could stand in.
    pub async fn fetch(
        &self,
        group: &Arc<Group>,
        path: &str,
        query: Option<&str>,
        kind: ObjectKind,
        wants: Wants<'_>,
        now: Instant,
    ) -> Result<Option<Response<Body>>, UpstreamError> {
        let head_only = wants.head_only;
        let inner = &self.inner;
        let label = kind.as_str();
        // A fresh copy first: the common case pays one lookup, in this thread's front when
        // it served the object lately, else in the cache.
        let ask = front::Ask {
            shield: inner.id,
            purges: inner.purges.load(std::sync::atomic::Ordering::Acquire),
            group: &group.name,
            path,
            query: query.unwrap_or(""),
        };
        if let Some(hit) = front::serve(&ask, now, |entry| self.hit(entry, kind, wants, now)) {
            return Ok(Some(hit));
        }
        let key = Key::new(&group.name, path, query);
        let cached = inner.cache.get(&key);
        if let Some(entry) = cached.as_ref().filter(|e| e.is_fresh(now)) {
            front::keep(&ask, &group.name, entry, now);
            return Ok(Some(self.hit(entry, kind, wants, now)));
        }
        if inner.bypass.contains_key(&key) {
            self.pass(kind);
            return Ok(None);
        }
        let (fill, task) = {
            let mut inflight = inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(fill) = inflight.get(&key) {
                (fill.clone(), None)
            } else {
                // A fetch may have completed between the lookup and the lock.
                if let Some(entry) = inner.cache.get(&key).filter(|e| e.is_fresh(now)) {
                    drop(inflight);
                    return Ok(Some(self.hit(&entry, kind, wants, now)));
                }
                let fill = Fill::new();
                inflight.insert(key.clone(), fill.clone());
                let task = Fetch {
                    purges: inner.purges.load(std::sync::atomic::Ordering::Acquire),
                    shield: self.clone(),
                    group: group.clone(),
                    key,
                    kind,
                    stale: cached,
                    fill: fill.clone(),
                };
                (fill, Some(task))
            }
        };
        // Spawned once the lock is released: a task dropped on the spot (a runtime shutting
        // down) takes the lock itself when it goes.
        let outcome = match task {
            Some(task) => {
                tokio::spawn(task.run());
                "miss"
            }
            None => "coalesced",
        };
        // Counted before waiting, so that a fetch held by the origin shows its waiters.
        inner
            .metrics
            .cache_requests
            .with_label_values(&[label, outcome])
            .inc();
        let started = Instant::now();
        let joined = fill.join(head_only, outcome).await;
        // A pass is timed by the caller, who fetches past the shield.
        if !matches!(joined, Ok(None)) {
            inner
                .metrics
                .kind(kind)
                .upstream_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        let Some(joined) = joined? else {
            self.pass(kind);
            return Ok(None);
        };
        if joined.stale {
            inner
                .metrics
                .cache_requests
                .with_label_values(&[label, "stale"])
                .inc();
        }
        Ok(Some(joined.response))
    }

    /// A fresh copy's answer at `now` (304 when the request's conditions find it not
    /// modified: no body bytes are served then); its time to the response headers is
    /// counted as 0 (the answer is in memory; a clock read would cost more than it tells).
    fn hit(
        &self,
        entry: &Entry,
        kind: ObjectKind,
        wants: Wants<'_>,
        now: Instant,
    ) -> Response<Body> {
        let metrics = &self.inner.metrics;
        let series = metrics.kind(kind);
        series.cache_hit.inc();
        series.upstream_seconds.observe(0.0);
        let not_modified = wants
            .conditions
            .is_some_and(|c| c.not_modified(entry.head.status, &entry.head.headers));
        if !wants.head_only && !not_modified {
            metrics.cache_bytes_served.inc_by(entry.len);
        }
        let response = entry.response(wants.head_only || not_modified, "hit", now);
        if not_modified {
            conditional::into_not_modified(response)
        } else {
            response
        }
    }

    /// Counts a request that went by the shield (a range, an object too large, the shield
    /// off).
    pub fn pass(&self, kind: ObjectKind) {
        self.inner
            .metrics
            .cache_requests
            .with_label_values(&[kind.as_str(), "pass"])
            .inc();
    }

    /// Drops every entry whose path starts with `prefix`; returns how many. A fetch in
    /// flight under it still serves those already waiting for it, but no request from now
    /// on joins it (it starts a fetch of its own), and what it brings back is not kept.
    pub fn purge(&self, prefix: &str) -> usize {
        self.inner
            .purges
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| !key.path().starts_with(prefix));
        let cache = &self.inner.cache;
        let doomed: Vec<Arc<Key>> = cache
            .iter()
            .filter(|(key, _)| key.path().starts_with(prefix))
            .map(|(key, _)| key)
            .collect();
        for key in &doomed {
            cache.invalidate(key.as_ref());
        }
        cache.run_pending_tasks();
        self.inner
            .metrics
            .cache_size
            .set(cache.weighted_size() as i64);
        doomed.len()
    }

    /// Bytes held now; also sets `usher_cache_size_bytes` (the admin listener asks before
    /// each scrape, as the cache settles its bookkeeping lazily).
    pub fn size(&self) -> u64 {
        let cache = &self.inner.cache;
        cache.run_pending_tasks();
        let size = cache.weighted_size();
        self.inner.metrics.cache_size.set(size as i64);
        let mapped = i64::try_from(crate::mapped::live()).unwrap_or(i64::MAX);
        self.inner.metrics.cache_mapped_bodies.set(mapped);
        size
    }

    /// Keeps `entry` unless a purge came after `purges` (the count when its fetch began),
    /// also one that ran while it was being stored.
    fn store(&self, key: Key, entry: Entry, purges: u64) {
        let inner = &self.inner;
        let current = || inner.purges.load(std::sync::atomic::Ordering::Acquire);
        if current() != purges {
            return;
        }
        inner.cache.insert(key.clone(), Arc::new(entry));
        if current() != purges {
            inner.cache.invalidate(&key);
        }
    }
}

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
    /// Too large for the shield: each reader fetches past it.
    Pass,
    /// No server answered.
    Fail(UpstreamError),
}

/// One upstream fetch for the shield, run as a task of its own.
struct Fetch {
    /// The purge count when it started.
    purges: u64,
    shield: Shield,
    group: Arc<Group>,
    key: Key,
    kind: ObjectKind,
    stale: Option<Arc<Entry>>,
    fill: Arc<Fill>,
}

impl Fetch {
    async fn run(self) {
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
        let result = self.group.fetch_from(request, !has_stale).await;
        let failed = match &result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        if failed {
            if let Some(entry) = self
                .stale
                .as_ref()
                .filter(|e| e.is_usable_stale(Instant::now()))
            {
                tracing::warn!(
                    path = self.key.path(),
                    "every upstream failed; serving a stale copy"
                );
                // Freed first, as below: a reader with every byte may ask again at once.
                self.release();
                let age = entry.age(Instant::now());
                self.fill.head(entry.head.clone(), Some(age));
                self.fill.push(entry.body.clone());
                self.end(End::Done(Ok(())));
                return;
            }
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
            inner.bypass.insert(self.key.clone(), ());
            self.end(End::Pass);
            return;
        }
        // An other object chosen by type and answered with a type not listed: this fetch
        // serves the viewers waiting for it, and the next requests go past the shield.
        let keep = policy::choice(&inner.settings, self.kind, self.key.path())
            != policy::Choice::ByType
            || policy::type_listed(&inner.settings, &head.headers);
        if !keep && head.status.is_success() {
            inner.bypass.insert(self.key.clone(), ());
        }
        self.fill.head(head.clone(), None);
        let mut kept = Vec::new();
        let mut len = 0u64;
        let upstream_bytes = inner.metrics.cache_bytes.with_label_values(&["upstream"]);
        // The body's last chunk, when the upstream says it is the last (its length was
        // announced): handed to the readers only once the entry is stored and the key
        // freed, since a reader that has every byte may ask again at once.
        let mut last = None;
        let mut past_limit = false;
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        len += data.len() as u64;
                        upstream_bytes.inc_by(data.len() as u64);
                        if len <= limit {
                            kept.push(data.clone());
                        } else if !past_limit {
                            past_limit = true;
                            // Past the limit (a length not announced): nothing more is
                            // kept, no one else joins this fetch (the next requests go
                            // past the shield), and those reading it get the rest through
                            // a window of the limit's size.
                            kept = Vec::new();
                            inner.bypass.insert(self.key.clone(), ());
                            self.release();
                        }
                        if body.is_end_stream() && len <= limit {
                            last = Some(data);
                            break;
                        }
                        self.fill.push_within(data, limit);
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
        // A playlist's lifetime depends on whether it is live, which its text tells.
        let text: &[u8] = if self.kind == ObjectKind::Playlist {
            &body
        } else {
            &[]
        };
        let lifetime =
            policy::lifetime(&inner.settings, self.kind, head.status, &head.headers, text);
        if len > limit {
            // Larger than announced (or not announced): served, not kept, and the next
            // requests go past the shield.
            inner.bypass.insert(self.key.clone(), ());
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
            self.fill.push(data);
        }
        self.end(End::Done(Ok(())));
    }
}

#[cfg(test)]
mod tests;
