//! Entitlements: who bought what, for how long, and the cached check on the hot path.
//!
//! ```text
//! path ─► media index (in memory: longest prefix → media code, editorial id, and the
//!                     content ids of the media enclosing it, whose rights cover it too)
//!      ─► decision cache (moka): key subject + (innermost) media + device class
//!           hit, still true at `now` ─► answer
//!           miss ─► one lookup per key however many ask (try_get_with)
//!                   ─► store: account + purchases of products covering the media
//!                      or any media enclosing it
//!                   ─► decide::decide ─► cached: positive TTL, or the shorter negative
//!                      TTL; never used past the right's own end (checked at `now`)
//! ```
//!
//! Every admin write that changes a right invalidates what it touches before it answers,
//! so the next request sees it. Submodules: [`model`] (the types), [`decide`] (the pure
//! decision), [`store`] (the trait), [`sqlite`] (the embedded store), [`date`] (PPV API
//! dates), [`external`] (the operator's HTTP rights service), [`index`] (path → media),
//! `first_play` (a rental's first play, and the back-off when it cannot be written).

pub mod date;
pub mod decide;
pub mod external;
mod first_play;
pub use first_play::{FirstPlayWrite, FIRST_PLAY_RETRY_GROWTH};
pub mod index;
mod invalidate;
pub use invalidate::{retry_stale_index, INDEX_RETRY};
mod memo;
pub mod model;
pub mod postgres;
pub mod sqlite;
pub mod store;
pub mod transfer;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::future::Cache;
use moka::Expiry;

use crate::config::RightsConfig;
use crate::metrics::Metrics;
use decide::{Entitled, RightsDenied};
use external::External;
use index::{MediaIndex, MediaRef};
use model::DeviceClass;
use store::{Store, StoreError};

/// A cached decision.
type Decision = Result<Entitled, RightsDenied>;

/// Where decisions come from.
pub enum Source {
    /// The embedded store (purchases sold through the admin API).
    Store,
    /// The operator's HTTP service (the TVMS "API provision").
    External(Box<External>),
}

/// The rights check, with its cache and index.
pub struct Rights {
    /// Which rights check this is, for the threads' memos (see [`memo`]).
    id: u64,
    /// How long a thread's memo may keep a yes: `positive_ttl`, at most [`memo::MAX_AGE`].
    memo_age: Duration,
    store: Arc<dyn Store>,
    source: Source,
    index: RwLock<Arc<MediaIndex>>,
    /// Set when the last re-read of the index failed: media written since may be missing
    /// from it until a retry succeeds (see [`Rights::retry_index`]).
    index_stale: std::sync::atomic::AtomicBool,
    /// Held while the index is read and put in, so re-reads run one after the other: of
    /// two after two writes, the one that read later (and saw both) is the one that stays.
    index_reread: std::sync::Mutex<()>,
    cache: Cache<String, Looked>,
    metrics: Metrics,
    /// `usher_rights_cache_total{outcome="hit"|"miss"}`, resolved once: these count on
    /// every request (the hits per thread).
    hits: crate::metrics::ShardedCounter,
    misses: prometheus::IntCounter,
    /// Bumped by every invalidation, as it starts and when it is done. A lookup that was
    /// in flight across one may have read the store before the write; its answer is then
    /// used once and not cached, nor kept by a thread's memo.
    generation: std::sync::atomic::AtomicU64,
    /// Where first plays are announced.
    webhooks: Option<crate::webhooks::Webhooks>,
    /// Off while a node sharing its store with others cannot hear their invalidations:
    /// every request is then decided from the store (see `crate::fanout`).
    caching: std::sync::atomic::AtomicBool,
    /// `rights.grace` (or the service's `grace`) in seconds, and the recent yeses with when
    /// each was seen: what is served while the store or the service cannot answer.
    grace: u64,
    recent_yes: Option<Cache<String, Arc<(Entitled, u64)>>>,
    /// When first plays may be written again after a failed write, and which purchases'
    /// writes are in flight (see [`first_play`]).
    first_play_retries: Arc<first_play::Retries>,
}

/// A decision in the cache, and whether an invalidation ran while it was looked up: then
/// it may have been read before a write that is already answered, and nobody uses it
/// (neither the request whose lookup it was, nor one that joined that lookup, nor a later
/// one that finds it cached).
#[derive(Clone)]
struct Looked {
    decision: Arc<Decision>,
    raced: bool,
}

/// Per-entry time to live: positive decisions live longer than refusals.
struct DecisionExpiry {
    positive: Duration,
    negative: Duration,
}

impl Expiry<String, Looked> for DecisionExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Looked,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.decision.is_ok() {
            self.positive
        } else {
            self.negative
        })
    }
}

/// Whether a cached decision still holds at `now`.
fn holds(decision: &Decision, now: u64) -> bool {
    match decision {
        Ok(entitled) => entitled.holds_at(now),
        Err(denied) => denied.holds_until().is_none_or(|until| now < until),
    }
}

impl Rights {
    /// The rights check over `store`, asking `source`.
    ///
    /// # Errors
    /// When the media index cannot be read from the store.
    pub fn new(
        store: Arc<dyn Store>,
        source: Source,
        config: &RightsConfig,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let cache = Cache::builder()
            .max_capacity(config.cache_capacity)
            .expire_after(DecisionExpiry {
                positive: config.positive_ttl,
                negative: config.negative_ttl,
            })
            .support_invalidation_closures()
            .build();
        let index = MediaIndex::load(store.as_ref())?;
        // How long a yes is served while its source cannot answer: the store's
        // `rights.grace`, or the service's own `grace`.
        let grace = match &source {
            Source::Store => config.grace,
            Source::External(external) => external.grace(),
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            memo_age: config.positive_ttl.min(memo::MAX_AGE),
            store,
            source,
            index: RwLock::new(Arc::new(index)),
            index_stale: std::sync::atomic::AtomicBool::new(false),
            index_reread: std::sync::Mutex::new(()),
            cache,
            hits: metrics.rights_cache_hits.clone(),
            misses: metrics.rights_cache.with_label_values(&["miss"]),
            generation: std::sync::atomic::AtomicU64::new(0),
            metrics,
            webhooks: None,
            caching: std::sync::atomic::AtomicBool::new(true),
            grace: grace.as_secs(),
            recent_yes: (!grace.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(config.cache_capacity)
                    .time_to_live(grace)
                    .support_invalidation_closures()
                    .build()
            }),
            first_play_retries: Arc::new(first_play::Retries::new(config.first_play_retry)),
        })
    }

    /// The same check, announcing first plays on `webhooks`.
    pub fn with_webhooks(mut self, webhooks: crate::webhooks::Webhooks) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// The media a path belongs to, if any is sold there.
    pub fn media_for(&self, path: &str) -> Option<Arc<MediaRef>> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .lookup(path)
            .cloned()
    }

    /// The codes of every media a right on `content` covers (see
    /// [`MediaIndex::covered_by`]): what an invalidation of `content` must reach.
    pub fn media_covered_by(&self, content: &str) -> Vec<String> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .covered_by(content)
    }

    /// May `subject` watch what lies at `path` on a `class` device at `now` (Unix seconds;
    /// `instant`, the same moment on the monotonic clock, ages the thread's memo)?
    ///
    /// # Errors
    /// The refusal, with its reason.
    pub async fn check(
        &self,
        subject: &str,
        path: &str,
        class: DeviceClass,
        now: u64,
        instant: std::time::Instant,
    ) -> Result<Entitled, RightsDenied> {
        // The generation is read before the index: an invalidation swaps the index first
        // and bumps the generation after, so a lookup that saw the old index is never cached.
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let caching = self.caching.load(std::sync::atomic::Ordering::Acquire);
        let ask = memo::Ask {
            rights: self.id,
            generation,
            subject,
            directory: memo::directory(path),
            class,
        };
        if let Some(entitled) = memo::recall(&ask, now, instant).filter(|_| caching) {
            self.hits.inc();
            return Ok(entitled);
        }
        // Boxed: the cache's and the store's futures are large, and held inline they would
        // make every request's future kilobytes larger, memo hit or not.
        Box::pin(self.decide(path, now, caching, ask, instant)).await
    }

    /// [`Rights::check`] past the thread's memo: the cache, else the source. `ask` is the
    /// question for the memo (with the generation read before anything else), asked at
    /// `instant`.
    async fn decide(
        &self,
        path: &str,
        now: u64,
        caching: bool,
        ask: memo::Ask<'_>,
        instant: std::time::Instant,
    ) -> Result<Entitled, RightsDenied> {
        let (subject, class, generation) = (ask.subject, ask.class, ask.generation);
        let media = self.media_for(path).ok_or(RightsDenied::NoRights)?;
        let class_name = class.as_str();
        let mut key =
            String::with_capacity(subject.len() + media.code.len() + class_name.len() + 2);
        key.push_str(subject);
        key.push('\0');
        key.push_str(&media.code);
        key.push('\0');
        key.push_str(class_name);
        let decision = if caching {
            if let Some(looked) = self.cache.get(&key).await {
                if !looked.raced && holds(&looked.decision, now) {
                    self.hits.inc();
                    if let Ok(entitled) = looked.decision.as_ref() {
                        memo::keep(&ask, entitled, instant, self.memo_age);
                    }
                    return (*looked.decision).clone();
                }
                self.cache.invalidate(&key).await;
            }
            self.misses.inc();
            let looked = self
                .cache
                .try_get_with(key.clone(), async {
                    // A request that joins this lookup may have started after a write
                    // this lookup read the store before: the lookup says whether an
                    // invalidation ran meanwhile, for every request it answers.
                    let started = self.generation.load(std::sync::atomic::Ordering::Acquire);
                    let decision = self.lookup(subject, &media, class, now).await?;
                    let ended = self.generation.load(std::sync::atomic::Ordering::Acquire);
                    Ok::<_, StoreError>(Looked {
                        decision,
                        raced: started != ended,
                    })
                })
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "rights lookup failed; refusing (fail closed)");
                    RightsDenied::Unavailable
                })?;
            let raced = self.generation.load(std::sync::atomic::Ordering::Acquire) != generation;
            if holds(&looked.decision, now) && !raced && !looked.raced {
                Some((*looked.decision).clone())
            } else {
                // Stored by a concurrent miss at another instant, raced by an admin write
                // (during this request or during the lookup it joined), or a first play to
                // record: decide afresh and keep it out of the cache.
                self.cache.invalidate(&key).await;
                None
            }
        } else {
            self.misses.inc();
            None
        };
        let decision = match decision {
            Some(decision) => decision,
            None => (*self
                .lookup(subject, &media, class, now)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "rights lookup failed; refusing (fail closed)");
                    RightsDenied::Unavailable
                })?)
            .clone(),
        };
        decision
    }

    async fn lookup(
        &self,
        subject: &str,
        media: &MediaRef,
        class: DeviceClass,
        now: u64,
    ) -> Result<Arc<Decision>, StoreError> {
        // Read before the source: a yes read across an invalidation is not remembered.
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let grace_key = || format!("{subject}\0{}\0{}", media.code, class.as_str());
        let decision = match &self.source {
            Source::External(external) => {
                // Innermost first; a right on an enclosing media covers this one too.
                let mut refusal = None;
                let mut failure = None;
                let mut granted = None;
                for m in media.chain() {
                    match external.decide(subject, m, class, now).await {
                        Ok(Ok(entitled)) => {
                            granted = Some(entitled);
                            break;
                        }
                        Ok(Err(why)) => {
                            refusal.get_or_insert(why);
                        }
                        Err(e) => failure = Some(e),
                    }
                }
                match (granted, failure) {
                    (Some(entitled), _) => Ok(entitled),
                    // No yes, and one answer missing: it might have been the yes.
                    (None, Some(e)) => {
                        return match self.graced(&grace_key(), now).await {
                            Some(entitled) => Ok(Arc::new(Ok(entitled))),
                            None => Err(StoreError::Backend(e.to_string())),
                        };
                    }
                    (None, None) => Err(refusal.unwrap_or(RightsDenied::NoRights)),
                }
            }
            Source::Store => {
                let store = self.store.clone();
                let (owned, contents) = (subject.to_owned(), media.covered_by.clone());
                let found = tokio::task::spawn_blocking(move || {
                    let account = store.account(&owned)?;
                    let candidates = store.entitlements(&owned, &contents)?;
                    Ok::<_, StoreError>((account, candidates))
                })
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))
                .and_then(|found| found);
                let (account, candidates) = match found {
                    Ok(found) => found,
                    Err(StoreError::Unavailable(why)) => {
                        return match self.graced(&grace_key(), now).await {
                            Some(entitled) => Ok(Arc::new(Ok(entitled))),
                            None => Err(StoreError::Unavailable(why)),
                        };
                    }
                    Err(e) => return Err(e),
                };
                let enabled = account.as_ref().is_none_or(|a| a.enabled);
                decide::decide(enabled, &candidates, class, now).map(|mut entitled| {
                    if let Some(account) = &account {
                        let limit = |e: &mut Entitled| {
                            e.limits.account_sessions = account.max_sessions;
                            e.limits.account_devices = account.max_devices;
                        };
                        limit(&mut entitled);
                        entitled.others = entitled.others.take().map(|others| {
                            let mut others = others.to_vec();
                            others.iter_mut().for_each(limit);
                            others.into()
                        });
                    }
                    entitled
                })
            }
        };
        if let Some(recent) = &self.recent_yes {
            let raced = self.generation.load(std::sync::atomic::Ordering::Acquire) != generation;
            match &decision {
                Ok(entitled) if !raced => {
                    recent
                        .insert(grace_key(), Arc::new((entitled.clone(), now)))
                        .await;
                }
                // A refusal (or a raced read) ends what grace remembered.
                _ => recent.invalidate(&grace_key()).await,
            }
        }
        self.metrics
            .rights_lookups
            .with_label_values(&[if decision.is_ok() {
                "granted"
            } else {
                "refused"
            }])
            .inc();
        Ok(Arc::new(decision))
    }

    /// A yes seen within the last `rights.grace` for `key`, served while the store cannot
    /// be reached: it ends when the grace does (or the right, if sooner) and records no
    /// first play. Counted in `usher_rights_lookups_total{outcome="grace"}`.
    async fn graced(&self, key: &str, now: u64) -> Option<Entitled> {
        let remembered = self.recent_yes.as_ref()?.get(key).await?;
        let (entitled, seen) = &*remembered;
        let ends = seen.saturating_add(self.grace);
        // Never past the right itself, whatever the grace left.
        if now >= ends || entitled.until.is_some_and(|until| now >= until) {
            return None;
        }
        tracing::warn!("rights store unreachable; serving a recent yes (grace)");
        self.metrics
            .rights_lookups
            .with_label_values(&["grace"])
            .inc();
        // Each purchase it may fall back to too: ended ones left out, none past the grace,
        // none starting a first play.
        let graced = |e: &Entitled| Entitled {
            first_play: None,
            until: Some(e.until.map_or(ends, |until| until.min(ends))),
            others: None,
            ..e.clone()
        };
        let others: Vec<Entitled> = entitled
            .others
            .iter()
            .flat_map(|others| others.iter())
            .filter(|e| e.until.is_none_or(|until| now < until))
            .map(graced)
            .collect();
        Some(Entitled {
            others: (!others.is_empty()).then(|| others.into()),
            ..graced(entitled)
        })
    }

    /// Drops the grace memory of decisions whose key `matches` (a right changed).
    fn forget_recent(&self, matches: impl Fn(&str) -> bool + Send + Sync + 'static) {
        if let Some(recent) = &self.recent_yes {
            if recent
                .invalidate_entries_if(move |key, _| matches(key))
                .is_err()
            {
                recent.invalidate_all();
            }
        }
    }
}

impl DeviceClass {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Ott => "ott",
            DeviceClass::Iptv => "iptv",
            DeviceClass::Hybrid => "hybrid",
        }
    }
}

#[cfg(test)]
mod tests;
