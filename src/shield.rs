//! The origin shield: segments, init sections, keys and playlists kept in memory by bytes,
//! and concurrent misses for one object coalesced into one upstream request. Other objects
//! (trick-play images, `.bin` or extensionless keys, subtitles) are kept when their
//! extension or content type is listed (see [`policy::choice`]).
//!
//! ```text
//! request ─► key (group, path, _HLS_* directives; never a token)
//!         ─► fresh entry? ─────────────────────────────► hit
//!         ─► a fetch in flight for the key? ─► join it ─► coalesced
//!         ─► fetches in flight hold `max_in_flight_bytes` (and no stale copy to
//!            fall back on)? ─► pass (not kept)
//!         ─► start one (a task of its own, so a viewer leaving does not stop it),
//!            read it like any joiner ────────────────────► miss
//!               upstream group: primary, fallbacks (see proxy::upstream::group),
//!               a server whose body breaks off before its first bytes failed
//!               every server failed and a stale entry is usable? ─► stale
//!               its announced length past the room in flight ─► each reader passes
//!               its unknown length grows past it ─► streamed through, not kept
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

mod budget;
mod entry;
mod fetch;
mod fill;
mod front;
mod key;
pub mod policy;
mod prefixes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::RANGE;
use http::{HeaderMap, Method, Response};
use moka::sync::Cache;

pub use entry::CACHE_STATUS;

use entry::Entry;
use fetch::Fetch;
use fill::Fill;
use key::Key;

use crate::config::ShieldConfig;
use crate::metrics::Metrics;
use crate::path::ObjectKind;
use crate::proxy::conditional::{self, Conditions};
use crate::proxy::upstream::{Group, UpstreamError};
use crate::proxy::Body;

/// How many objects passed by are remembered, outside `shield.memory`: each by a hash of
/// its key, so a few MiB however long the URLs a client sends, the least recently passed
/// forgotten first.
const BYPASS_KEYS: u64 = 65_536;

/// What a request wants of the shield's answer beyond its object.
#[derive(Debug, Clone, Copy)]
pub struct Wants<'a> {
    /// The body left out (HEAD).
    pub head_only: bool,
    /// Its conditions (`If-None-Match`, `If-Modified-Since`), if it has any.
    pub conditions: Option<Conditions<'a>>,
    /// The headers made private for shared caches (see [`crate::proxy::cache_control`]).
    pub private: bool,
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
    /// for them go by the shield for a while. Known by a hash of their key ([`Inner::passes`]).
    bypass: Cache<u64, ()>,
    /// The hash's keys, chosen at random: no client can make two keys share a hash.
    bypass_hash: std::hash::RandomState,
    /// Counts purges: a fetch that started before one does not store what it fetched (it
    /// may be what the purge meant to remove).
    purges: std::sync::atomic::AtomicU64,
    inflight: Mutex<HashMap<Key, Arc<Fill>>>,
    /// The bytes those fetches hold, against `shield.max_in_flight_bytes`.
    budget: Arc<budget::Budget>,
    settings: ShieldConfig,
    /// Where bodies sent with `sendfile` are kept.
    bodies: crate::mapped::Backing,
    metrics: Metrics,
}

impl Inner {
    /// Whether requests for `key` go by the shield for now ([`Inner::pass_by`]).
    fn passes(&self, key: &Key) -> bool {
        self.bypass
            .contains_key(&std::hash::BuildHasher::hash_one(&self.bypass_hash, key))
    }

    /// Sends requests for `key` by the shield for a while.
    fn pass_by(&self, key: &Key) {
        self.bypass
            .insert(std::hash::BuildHasher::hash_one(&self.bypass_hash, key), ());
    }
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
                    .max_capacity(BYPASS_KEYS)
                    .time_to_live(settings.segment_ttl)
                    .eviction_policy(moka::policy::EvictionPolicy::lru())
                    .build(),
                bypass_hash: std::hash::RandomState::new(),
                purges: std::sync::atomic::AtomicU64::new(0),
                inflight: Mutex::new(HashMap::new()),
                budget: budget::Budget::new(
                    settings.max_in_flight_bytes,
                    metrics.cache_in_flight.clone(),
                ),
                settings: settings.clone(),
                bodies: entry::body_backing(settings),
                metrics: metrics.clone(),
            }),
        }
    }

    /// Whether a request goes through the shield: it is on, the request is a whole GET or
    /// HEAD (no `Range`, or `bytes=0-` alone: see [`whole_range`]), and it asks for a media
    /// object, a playlist, or another object the settings choose (by extension, or by
    /// content type once fetched).
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
            && (!headers.contains_key(RANGE) || whole_range(headers))
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
        if inner.passes(&key) {
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
                // Fetches in flight hold all the bytes they may: this one goes past the
                // shield, streamed at its viewer's pace and not kept. Unless a stale copy
                // could stand in for an upstream that fails, which only a fetch of the
                // shield's serves: it holds nothing before its head, and its viewers go
                // past the shield if the budget has no room for its body then.
                let stale = cached.as_ref().is_some_and(|e| e.is_usable_stale(now));
                if inner.budget.is_full() && !stale {
                    drop(inflight);
                    self.over_budget(kind);
                    self.pass(kind);
                    return Ok(None);
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
        let joined = fill.join(head_only, wants.private, outcome).await;
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
        let head_only = wants.head_only || not_modified;
        let response = entry.response(head_only, wants.private, "hit", now);
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

    /// Counts a fetch not kept because fetches in flight held `shield.max_in_flight_bytes`.
    fn over_budget(&self, kind: ObjectKind) {
        self.inner
            .metrics
            .cache_over_budget
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Drops every entry whose path starts with `prefix`; returns how many. A fetch in
    /// flight under it still serves those already waiting for it, but no request from now
    /// on joins it (it starts a fetch of its own), and what it brings back is not kept.
    pub fn purge(&self, prefix: &str) -> usize {
        self.purge_all(&[prefix])
    }

    /// [`Shield::purge`] under each of `prefixes` at once: one pass over the cache, and
    /// one purge for the fetches in flight, however many prefixes (none: nothing done).
    /// A prefix is read as a request's path is ([`purge_prefix`]: escapes and their case),
    /// as the paths kept are normalised; one that would resolve a `.`, `..` or empty
    /// segment, or is no path, is taken as it is.
    pub fn purge_all<S: AsRef<str>>(&self, prefixes: &[S]) -> usize {
        let normalised: Vec<std::borrow::Cow<'_, str>> = prefixes
            .iter()
            .map(|prefix| {
                let prefix = prefix.as_ref();
                purge_prefix(prefix).unwrap_or(std::borrow::Cow::Borrowed(prefix))
            })
            .collect();
        let prefixes = prefixes::Prefixes::new(&normalised);
        if prefixes.is_empty() {
            return 0;
        }
        self.inner
            .purges
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| !prefixes.cover(key.path()));
        let cache = &self.inner.cache;
        let doomed: Vec<Arc<Key>> = cache
            .iter()
            .filter(|(key, _)| prefixes.cover(key.path()))
            .map(|(key, _)| key)
            .collect();
        for key in &doomed {
            cache.invalidate(key.as_ref());
        }
        cache.run_pending_tasks();
        let metrics = &self.inner.metrics;
        metrics.cache_purge_scans.inc();
        metrics.cache_size.set(cache.weighted_size() as i64);
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

/// A purge prefix as the paths kept are written ([`crate::path::normalized`]: escapes and
/// their case; a name in UTF-8 escaped first, as a player's URL has it). `None` when
/// reading it so would resolve a `.`, `..` or empty segment, and so purge under another
/// prefix than the one named (`/vod/../` is `/`): the admin API refuses it, and a purge
/// heard from another node takes it as written. `Some` as written when it is no path.
pub fn purge_prefix(prefix: &str) -> Option<std::borrow::Cow<'_, str>> {
    let segments: Vec<&str> = prefix.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let resolves = segments.iter().enumerate().any(|(i, segment)| {
        let dots = segment.to_ascii_lowercase().replace("%2e", ".");
        dots == "." || dots == ".." || (segment.is_empty() && i < last)
    });
    if resolves {
        return None;
    }
    let escaped: std::borrow::Cow<'_, str> = if prefix.is_ascii() {
        std::borrow::Cow::Borrowed(prefix)
    } else {
        let mut out = String::with_capacity(prefix.len() * 3);
        for b in prefix.bytes() {
            match b.is_ascii() {
                true => out.push(b as char),
                false => out.push_str(&format!("%{b:02X}")),
            }
        }
        std::borrow::Cow::Owned(out)
    };
    Some(match crate::path::normalize(&escaped) {
        Ok(normal) if normal == prefix => std::borrow::Cow::Borrowed(prefix),
        Ok(normal) => std::borrow::Cow::Owned(normal),
        Err(_) => std::borrow::Cow::Borrowed(prefix),
    })
}

/// Whether a request's `Range` asks for the whole object: `bytes=0-` and nothing else, no
/// `If-Range`. ffmpeg (and every player built on it) sends it with each request; the
/// shield answers it from its copy ([`whole_range_answer`]).
pub fn whole_range(headers: &HeaderMap) -> bool {
    let mut ranges = headers.get_all(RANGE).iter().peekable();
    ranges.peek().is_some()
        && ranges.all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"bytes=0-"))
        && !headers.contains_key(http::header::IF_RANGE)
}

/// The shield's whole answer to a request for `bytes=0-` ([`whole_range`]): a 200 of known
/// length, from an origin that says `Accept-Ranges: bytes`, as the 206 of all its bytes,
/// as that origin answers (a player that seeks, such as a browser's, learns from it that
/// ranges work); any other 200 (unknown length, a miss sent chunked; or an origin that
/// does not serve ranges) as it is, as RFC 9110 allows.
pub fn whole_range_answer(mut response: Response<Body>) -> Response<Body> {
    let ranges = response
        .headers()
        .get(http::header::ACCEPT_RANGES)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"bytes"));
    if !ranges {
        return response;
    }
    let len = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .filter(|len| *len > 0);
    if let (http::StatusCode::OK, Some(len)) = (response.status(), len) {
        *response.status_mut() = http::StatusCode::PARTIAL_CONTENT;
        let range = format!("bytes 0-{}/{len}", len - 1);
        let range = http::HeaderValue::from_str(&range).expect("digits are a header value");
        response
            .headers_mut()
            .insert(http::header::CONTENT_RANGE, range);
    }
    response
}

#[cfg(test)]
mod tests;
