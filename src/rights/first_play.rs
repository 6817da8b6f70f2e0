//! A rental's first play, written once its request is admitted, and the back-off after the
//! store failed to write it.
//!
//! A store that cannot write (SQLite locked by another writer, PostgreSQL away) makes each
//! attempt wait for its timeout. Every request under an unplayed rental would try again
//! and wait as long, so its playback would stall for the whole outage; instead, after a
//! failure this node leaves that purchase's write alone for `rights.first_play_retry`
//! (doubling with each further failure, up to [`FIRST_PLAY_RETRY_GROWTH`] times it), and
//! serves the requests meanwhile as a failed write does. Only decisions that name a
//! rental waiting for its first play look here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;

use super::decide::Entitled;
use super::Rights;

/// How many times `rights.first_play_retry` the back-off grows to, doubling after each
/// further failure in a row: a long outage costs one stalled request in a while.
pub const FIRST_PLAY_RETRY_GROWTH: u64 = 8;

/// Most purchases whose back-off one node remembers: past it the least used are
/// forgotten, and their next request tries the write (as with no back-off).
const REMEMBERED: u64 = 10_000;

/// What [`Rights::record_first_play`] did with a rental's first play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPlayWrite {
    /// Written by this request: the rental's hours run from its `now`.
    Written,
    /// The store already held one (another node's, since this node's decision was read):
    /// the hours run from then, and the decision's `until`, counted from before it, is not
    /// past their end.
    WrittenBefore,
    /// The store could not be written (or the write's task failed). Another node may have
    /// written one earlier, so the hours counted from `now` may end after the real ones:
    /// the decision's `until` is the end to keep.
    Failed,
    /// Not tried: this purchase's last write failed and its back-off has not passed, or
    /// another request's write of it is in flight. As with [`FirstPlayWrite::Failed`],
    /// the decision's `until` is the end to keep.
    Deferred,
    /// The decision names no rental waiting for its first play: nothing was written.
    NotDue,
}

impl FirstPlayWrite {
    /// The `outcome` label of `usher_first_play_writes_total` (`None`: not counted).
    fn label(self) -> Option<&'static str> {
        match self {
            FirstPlayWrite::Written => Some("written"),
            FirstPlayWrite::WrittenBefore => Some("written_before"),
            FirstPlayWrite::Failed => Some("failed"),
            FirstPlayWrite::Deferred => Some("deferred"),
            FirstPlayWrite::NotDue => None,
        }
    }
}

/// A purchase whose first play this node failed to write, or is writing.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// Failed writes in a row.
    failures: u32,
    /// No write is tried before this (Unix seconds, on the requests' clock).
    retry_at: u64,
}

/// Per purchase, when this node may try its first play's write again.
pub(super) struct Retries {
    /// `rights.first_play_retry` in whole seconds (the requests' clock counts seconds).
    first: u64,
    /// By purchase hash; an entry is removed when a write succeeds.
    held: Cache<Arc<str>, Backoff>,
}

impl Retries {
    /// No purchase held back yet; the first back-off after a failure is `first`.
    pub(super) fn new(first: Duration) -> Self {
        let first = first.as_secs().max(1);
        // Entries also leave by themselves once no back-off could still hold (the
        // requests' clock is the real one outside tests), so a failure long ago does not
        // double the next one.
        let longest = Duration::from_secs(first * FIRST_PLAY_RETRY_GROWTH * 2);
        Self {
            first,
            held: Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(longest)
                .build(),
        }
    }

    /// The back-off after `failures` failed writes in a row (at least one).
    fn wait(&self, failures: u32) -> u64 {
        let doubled = 1u64
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u64::MAX);
        self.first
            .saturating_mul(doubled.min(FIRST_PLAY_RETRY_GROWTH))
    }

    /// Whether `purchase`'s write may be tried at `now`. When it may, the purchase is held
    /// back as after one more failure until [`Retries::failed`] or [`Retries::written`]
    /// says how it went, so requests meanwhile do not write it too (nor wait on the store),
    /// and a write abandoned midway (its request cancelled) is retried after the back-off.
    fn begin(&self, purchase: &Arc<str>, now: u64) -> bool {
        let mut begun = false;
        self.held.entry(purchase.clone()).and_compute_with(|held| {
            let held = held.map(|entry| *entry.value());
            if held.is_some_and(|held| now < held.retry_at) {
                return Op::Nop;
            }
            begun = true;
            let failures = held.map_or(0, |held| held.failures);
            Op::Put(Backoff {
                failures,
                retry_at: now.saturating_add(self.wait(failures.saturating_add(1))),
            })
        });
        begun
    }

    /// `purchase`'s write failed at `at`: none is tried before its back-off has passed.
    fn failed(&self, purchase: &Arc<str>, at: u64) {
        self.held.entry(purchase.clone()).and_upsert_with(|held| {
            let failures = held.map_or(0, |held| held.value().failures);
            let failures = failures.saturating_add(1);
            Backoff {
                failures,
                retry_at: at.saturating_add(self.wait(failures)),
            }
        });
    }

    /// `purchase`'s first play is in the store: nothing holds it back any more.
    fn written(&self, purchase: &str) {
        self.held.invalidate(purchase);
    }
}

impl Rights {
    /// Records `entitled`'s first play with its event, in one transaction, when it is one
    /// (`first_play`). `subject` is the purchase's account: the decision came from the
    /// subject's purchases. Called once the request is admitted (device, activation,
    /// session), not by [`Rights::check`]: a refused request starts no rental's hours.
    ///
    /// Answers what became of the write (see [`FirstPlayWrite`]), counted in
    /// `usher_first_play_writes_total{outcome}`. A failure is logged, and the request is
    /// served; so are the requests under the rental during the purchase's back-off, without
    /// trying. The first one after it, still deciding the rental unplayed, writes it.
    ///
    /// # Concurrency
    /// One write of a purchase at a time on this node: a request that comes while another
    /// one's write is in flight is [`FirstPlayWrite::Deferred`].
    pub async fn record_first_play(
        &self,
        subject: &str,
        entitled: &Entitled,
        now: u64,
    ) -> FirstPlayWrite {
        if entitled.first_play.is_none() {
            return FirstPlayWrite::NotDue;
        }
        let written = if self.first_play_retries.begin(&entitled.purchase, now) {
            self.write_first_play(subject, entitled, now).await
        } else {
            FirstPlayWrite::Deferred
        };
        if let Some(outcome) = written.label() {
            self.metrics
                .first_play_writes
                .with_label_values(&[outcome])
                .inc();
        }
        written
    }

    /// Writes `entitled`'s first play at `now` with its webhook events, and keeps the
    /// purchase's back-off up to date.
    async fn write_first_play(
        &self,
        subject: &str,
        entitled: &Entitled,
        now: u64,
    ) -> FirstPlayWrite {
        let event = crate::webhooks::Event::FirstPlay {
            purchase: entitled.purchase.to_string(),
            product: entitled.product.to_string(),
            account: subject.to_owned(),
            at: now,
        };
        let events = match &self.webhooks {
            Some(webhooks) => webhooks.deliveries(&event),
            None => Vec::new(),
        };
        let (store, hash, queued) = (
            self.store.clone(),
            entitled.purchase.clone(),
            events.clone(),
        );
        let started = Instant::now();
        let written =
            tokio::task::spawn_blocking(move || store.record_first_play(&hash, now, &queued)).await;
        let error = match written {
            Ok(Ok(true)) => {
                self.first_play_retries.written(&entitled.purchase);
                self.invalidate_subject(subject);
                if let Some(webhooks) = &self.webhooks {
                    webhooks.queued(&events);
                }
                return FirstPlayWrite::Written;
            }
            Ok(Ok(false)) => {
                self.first_play_retries.written(&entitled.purchase);
                // This node's decisions still name it unplayed: none is kept.
                self.invalidate_subject(subject);
                return FirstPlayWrite::WrittenBefore;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(error = %error, "could not record first play");
        // The back-off counts from when the failure was known, not from the request.
        let failed_at = now.saturating_add(started.elapsed().as_secs());
        self.first_play_retries
            .failed(&entitled.purchase, failed_at);
        FirstPlayWrite::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn purchase() -> Arc<str> {
        Arc::from("h1")
    }

    #[test]
    fn a_failure_holds_the_purchase_back_for_its_back_off() {
        let retries = Retries::new(Duration::from_secs(5));
        let h1 = purchase();
        assert!(retries.begin(&h1, T0), "nothing held back yet");
        retries.failed(&h1, T0);
        assert!(!retries.begin(&h1, T0 + 4));
        assert!(
            retries.begin(&Arc::from("h2"), T0 + 4),
            "another purchase is not held back"
        );
        assert!(retries.begin(&h1, T0 + 5), "the back-off has passed");
    }

    #[test]
    fn a_write_in_flight_holds_the_others_back() {
        let retries = Retries::new(Duration::from_secs(5));
        let h1 = purchase();
        assert!(retries.begin(&h1, T0));
        assert!(!retries.begin(&h1, T0), "one write at a time");
        retries.written(&h1);
        assert!(retries.begin(&h1, T0), "a success clears it");
    }

    #[test]
    fn the_back_off_doubles_up_to_its_growth() {
        let retries = Retries::new(Duration::from_secs(5));
        let h1 = purchase();
        let mut at = T0;
        for wait in [5, 10, 20, 40, 40, 40] {
            assert!(retries.begin(&h1, at));
            retries.failed(&h1, at);
            assert!(!retries.begin(&h1, at + wait - 1), "held for {wait}s");
            at += wait;
        }
        assert!(retries.begin(&h1, at));
    }

    #[test]
    fn a_success_starts_the_back_off_over() {
        let retries = Retries::new(Duration::from_secs(5));
        let h1 = purchase();
        retries.failed(&h1, T0);
        retries.failed(&h1, T0);
        retries.written(&h1);
        retries.failed(&h1, T0 + 100);
        assert!(retries.begin(&h1, T0 + 105), "back to the first back-off");
    }
}
