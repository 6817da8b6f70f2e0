//! A rental's first play, written once its request is admitted, and the back-off after the
//! store failed to write it.
//!
//! A store that cannot write (SQLite locked by another writer, PostgreSQL away) makes each
//! attempt wait for its timeout. Every request under an unplayed rental would try again
//! and wait as long, so its playback would stall for the whole outage; instead, after a
//! failure this node writes no first play (of any purchase: the trouble is the store's)
//! for `rights.first_play_retry` (doubling with each further failure, up to
//! [`FIRST_PLAY_RETRY_GROWTH`] times it), then lets one write through to try, and serves
//! the requests meanwhile as a failed write does. A purchase whose write is in flight is
//! not written again until that write has ended (its request may be gone: the write is
//! not). Only decisions that name a rental waiting for its first play look here.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::decide::Entitled;
use super::Rights;

/// How many times `rights.first_play_retry` the back-off grows to, doubling after each
/// further failure in a row: a long outage costs one stalled request in a while.
pub const FIRST_PLAY_RETRY_GROWTH: u64 = 8;

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
    /// Not tried: a first play's write failed on this node and the back-off has not
    /// passed (or the one write let through after it is in flight), or another request's
    /// write of this purchase is in flight. As with [`FirstPlayWrite::Failed`],
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

/// When this node may write first plays again, and which purchases' writes are in flight.
pub(super) struct Retries {
    /// `rights.first_play_retry` in whole seconds (the requests' clock counts seconds).
    first: u64,
    gate: Mutex<Gate>,
}

/// [`Retries`]' state.
#[derive(Default)]
struct Gate {
    /// Failed writes in a row, each counted once per back-off (writes that fail together
    /// count as one).
    failures: u32,
    /// When the last counted failure was known (Unix seconds, the requests' clock).
    failed_at: u64,
    /// While failing, no write begins before this.
    retry_at: u64,
    /// While failing, the purchase whose write was let through to try the store.
    probe: Option<Arc<str>>,
    /// The purchases whose write is in flight.
    writing: HashSet<Arc<str>>,
}

impl Retries {
    /// No write held back yet; the first back-off after a failure is `first` (in whole
    /// seconds, rounded up).
    pub(super) fn new(first: Duration) -> Self {
        let whole = first.as_secs() + u64::from(first.subsec_nanos() > 0);
        Self {
            first: whole.max(1),
            gate: Mutex::new(Gate::default()),
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The back-off after `failures` failed writes in a row (at least one).
    fn wait(&self, failures: u32) -> u64 {
        let doubled = 1u64
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u64::MAX);
        self.first
            .saturating_mul(doubled.min(FIRST_PLAY_RETRY_GROWTH))
    }

    /// Whether `purchase`'s write may begin at `now`: not while one of it is in flight, nor
    /// during a back-off, nor while the write let through after one is in flight. When it
    /// may, it is in flight until [`Retries::ended`] (see [`Writing`]).
    fn begin(&self, purchase: &Arc<str>, now: u64) -> bool {
        let mut gate = self.gate();
        if gate.writing.contains(purchase) {
            return false;
        }
        if gate.failures > 0 {
            // A request's clock read a little before the failure was known still waits;
            // one more than the longest back-off before it is a clock stepped back.
            let stepped_back = now.saturating_add(self.wait(u32::MAX)) < gate.failed_at;
            let backing_off = now < gate.retry_at && !stepped_back;
            if gate.probe.is_some() || backing_off {
                return false;
            }
            gate.probe = Some(purchase.clone());
        }
        gate.writing.insert(purchase.clone());
        true
    }

    /// `purchase`'s write ended at `at`: written (or found written), or failed.
    fn ended(&self, purchase: &str, written: bool, at: u64) {
        let mut gate = self.gate();
        gate.writing.remove(purchase);
        let probed = gate.probe.as_deref() == Some(purchase);
        if probed || written {
            gate.probe = None;
        }
        if written {
            gate.failures = 0;
        } else if gate.failures == 0 || probed {
            // The first failure, or the probe's. While failing only the probe begins, so
            // any other write ending now began before the first failure: not counted.
            gate.failures = gate.failures.saturating_add(1);
            gate.failed_at = at;
            gate.retry_at = at.saturating_add(self.wait(gate.failures));
        }
    }
}

/// A write in flight, from the moment [`Retries::begin`] let it: tells the back-off how it
/// ended and counts it, when its blocking task ends (also when its request is gone), or
/// as a failure when it ends without an answer (its task panicked, or was dropped unrun).
struct Writing {
    retries: Arc<Retries>,
    purchase: Arc<str>,
    now: u64,
    started: Instant,
    outcome: Option<FirstPlayWrite>,
    counted: prometheus::IntCounterVec,
}

impl Drop for Writing {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or_else(|| {
            tracing::warn!("a first play's write ended without an answer");
            FirstPlayWrite::Failed
        });
        if let Some(label) = outcome.label() {
            self.counted.with_label_values(&[label]).inc();
        }
        // The back-off counts from when the outcome was known, not from the request.
        let at = self.now.saturating_add(self.started.elapsed().as_secs());
        let written = matches!(
            outcome,
            FirstPlayWrite::Written | FirstPlayWrite::WrittenBefore
        );
        self.retries.ended(&self.purchase, written, at);
    }
}

impl Rights {
    /// Records `entitled`'s first play with its event, in one transaction, when it is one
    /// (`first_play`). `subject` is the purchase's account: the decision came from the
    /// subject's purchases. Called once the request is admitted (device, activation,
    /// session), not by [`Rights::check`]: a refused request starts no rental's hours.
    ///
    /// Answers what became of the write (see [`FirstPlayWrite`]), counted in
    /// `usher_first_play_writes_total{outcome}` (a write whose request is gone too). A
    /// failure is logged, and the request is served; so are the requests under unplayed
    /// rentals during the back-off that follows, without trying. The first one after it,
    /// still deciding its rental unplayed, tries.
    ///
    /// # Concurrency
    /// One write of a purchase at a time on this node: a request that comes while another
    /// one's write of it is in flight is [`FirstPlayWrite::Deferred`].
    pub async fn record_first_play(
        &self,
        subject: &str,
        entitled: &Entitled,
        now: u64,
    ) -> FirstPlayWrite {
        if entitled.first_play.is_none() {
            return FirstPlayWrite::NotDue;
        }
        if !self.first_play_retries.begin(&entitled.purchase, now) {
            self.metrics
                .first_play_writes
                .with_label_values(&["deferred"])
                .inc();
            return FirstPlayWrite::Deferred;
        }
        // At once: nothing between `begin` and the guard can leave the write in flight.
        let writing = Writing {
            retries: self.first_play_retries.clone(),
            purchase: entitled.purchase.clone(),
            now,
            started: Instant::now(),
            outcome: None,
            counted: self.metrics.first_play_writes.clone(),
        };
        self.write_first_play(subject, entitled, writing).await
    }

    /// Writes `entitled`'s first play at `writing.now` with its webhook events; `writing`
    /// keeps the back-off up to date.
    async fn write_first_play(
        &self,
        subject: &str,
        entitled: &Entitled,
        writing: Writing,
    ) -> FirstPlayWrite {
        let now = writing.now;
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
        // The write ends, and tells the back-off how, even if this request is gone.
        let written = tokio::task::spawn_blocking(move || {
            // Moved in whole (not its field alone): dropped here, when the write ends.
            let mut writing = writing;
            let written = store.record_first_play(&hash, now, &queued);
            writing.outcome = Some(match &written {
                Ok(true) => FirstPlayWrite::Written,
                Ok(false) => FirstPlayWrite::WrittenBefore,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record first play");
                    FirstPlayWrite::Failed
                }
            });
            written
        })
        .await;
        match written {
            Ok(Ok(true)) => {
                self.invalidate_subject(subject);
                if let Some(webhooks) = &self.webhooks {
                    webhooks.queued(&events);
                }
                FirstPlayWrite::Written
            }
            Ok(Ok(false)) => {
                // This node's decisions still name it unplayed: none is kept.
                self.invalidate_subject(subject);
                FirstPlayWrite::WrittenBefore
            }
            // Logged and counted by the write's task, or by its guard.
            Ok(Err(_)) | Err(_) => FirstPlayWrite::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn retries() -> Retries {
        Retries::new(Duration::from_secs(5))
    }

    fn h(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn a_failure_holds_every_write_back_for_its_back_off() {
        let retries = retries();
        assert!(retries.begin(&h("h1"), T0), "nothing held back yet");
        retries.ended("h1", false, T0);
        assert!(!retries.begin(&h("h1"), T0 + 4));
        assert!(
            !retries.begin(&h("h2"), T0 + 4),
            "another purchase waits too: the store failed"
        );
        assert!(retries.begin(&h("h2"), T0 + 5), "the back-off has passed");
    }

    #[test]
    fn after_a_back_off_one_write_at_a_time_tries_the_store() {
        let retries = retries();
        assert!(retries.begin(&h("h1"), T0));
        retries.ended("h1", false, T0);
        assert!(retries.begin(&h("h1"), T0 + 5));
        assert!(!retries.begin(&h("h2"), T0 + 6), "the first is trying");
        retries.ended("h1", true, T0 + 6);
        assert!(retries.begin(&h("h2"), T0 + 6), "the store writes again");
    }

    #[test]
    fn a_write_in_flight_holds_its_purchase_back_not_the_others() {
        let retries = retries();
        assert!(retries.begin(&h("h1"), T0));
        assert!(!retries.begin(&h("h1"), T0 + 100), "until it has ended");
        assert!(retries.begin(&h("h2"), T0), "another rental's first play");
        retries.ended("h1", true, T0 + 100);
        assert!(retries.begin(&h("h1"), T0 + 100));
    }

    #[test]
    fn the_back_off_doubles_up_to_its_growth() {
        let retries = retries();
        let mut at = T0;
        for wait in [5, 10, 20, 40, 40, 40] {
            assert!(retries.begin(&h("h1"), at));
            retries.ended("h1", false, at);
            assert!(!retries.begin(&h("h1"), at + wait - 1), "held for {wait}s");
            at += wait;
        }
        assert!(retries.begin(&h("h1"), at));
    }

    #[test]
    fn writes_that_fail_together_count_once() {
        let retries = retries();
        assert!(retries.begin(&h("h1"), T0));
        assert!(retries.begin(&h("h2"), T0));
        retries.ended("h1", false, T0 + 1);
        retries.ended("h2", false, T0 + 2);
        assert!(
            retries.begin(&h("h3"), T0 + 6),
            "one failure: 5 s from the first"
        );
    }

    #[test]
    fn a_success_starts_the_back_off_over() {
        let retries = retries();
        for at in [T0, T0 + 5] {
            assert!(retries.begin(&h("h1"), at));
            retries.ended("h1", false, at);
        }
        assert!(retries.begin(&h("h1"), T0 + 15));
        retries.ended("h1", true, T0 + 15);
        assert!(retries.begin(&h("h1"), T0 + 100));
        retries.ended("h1", false, T0 + 100);
        assert!(
            retries.begin(&h("h1"), T0 + 105),
            "back to the first back-off"
        );
    }

    #[test]
    fn a_clock_stepped_back_holds_no_longer_than_the_longest_back_off() {
        let retries = retries();
        assert!(retries.begin(&h("h1"), T0));
        retries.ended("h1", false, T0);
        assert!(
            !retries.begin(&h("h1"), T0 - 30),
            "within the longest (40 s)"
        );
        assert!(retries.begin(&h("h1"), T0 - 3600), "an hour back");
    }

    #[test]
    fn a_write_that_ends_without_an_answer_is_a_failure() {
        let retries = Arc::new(retries());
        assert!(retries.begin(&h("h1"), T0));
        drop(Writing {
            retries: retries.clone(),
            purchase: h("h1"),
            now: T0,
            started: Instant::now(),
            outcome: None,
            counted: prometheus::IntCounterVec::new(
                prometheus::Opts::new("first_play_writes", "test"),
                &["outcome"],
            )
            .unwrap(),
        });
        assert!(!retries.begin(&h("h1"), T0 + 4));
        assert!(retries.begin(&h("h1"), T0 + 5));
    }

    #[test]
    fn at_the_longest_back_off_a_request_read_before_the_failure_still_waits() {
        let retries = retries();
        let mut at = T0;
        for wait in [5, 10, 20, 40] {
            assert!(retries.begin(&h("h1"), at));
            retries.ended("h1", false, at);
            at += wait;
        }
        let failed_at = at - 40;
        assert!(!retries.begin(&h("h2"), failed_at));
        assert!(
            !retries.begin(&h("h2"), failed_at - 1),
            "its clock read a second before the probe failed: not a clock stepped back"
        );
        assert!(retries.begin(&h("h2"), failed_at - 41), "stepped back");
    }

    #[test]
    fn an_older_write_ending_does_not_end_the_probe() {
        let retries = retries();
        assert!(retries.begin(&h("slow"), T0));
        assert!(retries.begin(&h("h1"), T0));
        retries.ended("h1", false, T0);
        assert!(retries.begin(&h("probe"), T0 + 5), "the probe");
        retries.ended("slow", false, T0 + 6);
        assert!(
            !retries.begin(&h("second"), T0 + 16),
            "the probe is still in flight"
        );
        retries.ended("probe", false, T0 + 16);
        assert!(
            !retries.begin(&h("second"), T0 + 16 + 9),
            "its failure counted"
        );
        assert!(retries.begin(&h("second"), T0 + 16 + 10));
    }

    #[test]
    fn a_part_second_setting_rounds_up() {
        assert_eq!(Retries::new(Duration::from_millis(1500)).first, 2);
    }
}
