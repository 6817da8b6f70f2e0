//! Forgetting cached decisions when rights change: by subject, by media, or everything
//! with the media index read again; and reading the index again until it succeeds when a
//! re-read failed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::index::MediaIndex;
use super::store::StoreError;
use super::Rights;

impl Rights {
    /// Turns the decision cache on or off; off, every request is decided from the store and
    /// nothing is cached (a node that cannot hear the other nodes' invalidations).
    pub fn set_caching(&self, on: bool) {
        self.caching.store(on, Ordering::Release);
        if !on {
            self.cache.invalidate_all();
            self.moved();
        }
    }

    /// Forgets every cached decision about `subject` (a purchase or account changed).
    pub fn invalidate_subject(&self, subject: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let prefix = format!("{subject}\0");
        self.metrics
            .rights_invalidations
            .with_label_values(&["subject"])
            .inc();
        let recent = prefix.clone();
        self.forget_recent(move |key| key.starts_with(&recent));
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |key, _| key.starts_with(&prefix))
        {
            tracing::warn!(error = %e, "targeted invalidation failed; dropping every decision");
            self.cache.invalidate_all();
        }
        self.moved();
    }

    /// Moves the generation once more when an invalidation is done: a request that read
    /// a decision while it ran may have kept it in its thread's memo under the generation
    /// of its start, which no longer counts from now on (see [`memo`]).
    fn moved(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets the cached decisions about `subject`, about any of the media `codes`, or,
    /// given both, about that subject and those media (the rights invalidation endpoint,
    /// for an external billing system's revokes). The external source's grace memory of
    /// them goes too, so a revoked yes is not served through an outage. Answers how many
    /// cached decisions were dropped.
    pub async fn invalidate(&self, subject: Option<&str>, codes: Option<&[String]>) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let scope = match (subject, codes) {
            (Some(_), Some(_)) => "subject_content",
            (None, Some(_)) => "content",
            _ => "subject",
        };
        self.metrics
            .rights_invalidations
            .with_label_values(&[scope])
            .inc();
        let matches = |key: &str| key_matches(key, subject, codes);
        let (owned_subject, owned_codes) =
            (subject.map(str::to_owned), codes.map(<[String]>::to_vec));
        self.forget_recent(move |key| {
            key_matches(key, owned_subject.as_deref(), owned_codes.as_deref())
        });
        let mut dropped = 0;
        for (key, _) in self.cache.iter() {
            if matches(&key) {
                self.cache.invalidate(key.as_str()).await;
                dropped += 1;
            }
        }
        self.moved();
        dropped
    }

    /// Forgets every cached decision and its grace memory (a product or media changed) and
    /// re-reads the media index.
    ///
    /// # Errors
    /// When the store cannot be read; the old index stays.
    pub fn invalidate_all(&self) -> Result<(), StoreError> {
        self.forget_recent(|_| true);
        self.flush_cache()
    }

    /// Forgets every cached decision, keeping the grace memory (what a node does when it
    /// stops hearing the other nodes: nothing is known to have changed, only that it might
    /// have), and re-reads the media index.
    ///
    /// # Errors
    /// When the store cannot be read; the old index stays.
    pub fn flush_cache(&self) -> Result<(), StoreError> {
        self.metrics
            .rights_invalidations
            .with_label_values(&["all"])
            .inc();
        // The new index goes in before the generation moves (see `check`): a decision
        // made against the old one, whose media may have gained or lost an enclosing
        // media, is then never cached.
        let result = self.reread_index();
        self.forget_all_decisions();
        result
    }

    /// Reads the media index from the store and puts it in; on failure keeps the old one
    /// and marks it stale (see [`Rights::retry_index`]). One re-read at a time: two
    /// running at once could finish out of order and leave the older index in, marked
    /// fresh.
    fn reread_index(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.index_reread.lock().unwrap_or_else(|p| p.into_inner());
        let result = MediaIndex::load(self.store.as_ref()).map(|index| {
            *self.index.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(index);
        });
        self.index_stale.store(result.is_err(), Ordering::Release);
        self.metrics
            .rights_index_stale
            .set(i64::from(result.is_err()));
        result
    }

    /// Drops every cached decision, moving the generation before and after.
    fn forget_all_decisions(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
        self.moved();
    }

    /// Whether the last re-read of the media index failed (see [`Rights::retry_index`]).
    pub fn index_is_stale(&self) -> bool {
        self.index_stale.load(Ordering::Acquire)
    }

    /// Reads the media index again when the last re-read failed: an admin write that
    /// committed but whose re-read failed (the store busy or a network away) would
    /// otherwise leave this node refusing the new media's buyers until the next product or
    /// media write. Only a read that succeeds changes anything: it puts the index in and
    /// forgets the cached decisions made against the old one; a failed read leaves the
    /// cache alone (the store is struggling already). Answers whether the index was stale.
    ///
    /// # Errors
    /// When the store still cannot be read; the index stays stale.
    pub fn retry_index(&self) -> Result<bool, StoreError> {
        if !self.index_is_stale() {
            return Ok(false);
        }
        self.reread_index()?;
        self.forget_all_decisions();
        Ok(true)
    }
}

/// How often a stale media index is read again.
pub const INDEX_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the media index again every [`INDEX_RETRY`] while it is stale, until the process
/// ends (see [`Rights::retry_index`]); the store is read off the async threads.
pub async fn retry_stale_index(rights: Arc<Rights>) {
    let mut tick = tokio::time::interval(INDEX_RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !rights.index_is_stale() {
            continue;
        }
        let retrying = rights.clone();
        match tokio::task::spawn_blocking(move || retrying.retry_index()).await {
            Ok(Ok(true)) => tracing::info!("media index re-read after a failed re-read"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "media index still not re-read; retrying"),
            Err(e) => tracing::warn!(error = %e, "media index re-read did not finish"),
        }
    }
}

/// Whether the cache key `subject\0code\0class` is about `subject` (any, if `None`) and
/// one of `codes` (any, if `None`).
fn key_matches(key: &str, subject: Option<&str>, codes: Option<&[String]>) -> bool {
    let mut parts = key.split('\0');
    let (sub, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    subject.is_none_or(|s| s == sub) && codes.is_none_or(|codes| codes.iter().any(|c| c == code))
}
