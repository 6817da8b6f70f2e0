//! The bytes held by the shield's fetches in flight, against `shield.max_in_flight_bytes`.
//!
//! A fetch's chunks are held in memory from the moment they arrive until the last of its
//! readers has taken them, outside the cache's own budget (`shield.memory`). Each fetch
//! holds a [`Grant`] covering what it holds; the grant goes back when its chunks go (the
//! fetch finished and its readers are done, it failed, or it was abandoned).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;

/// The budget shared by every fetch of one shield.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    held: AtomicU64,
    /// `usher_cache_in_flight_bytes`.
    gauge: IntGauge,
}

impl Budget {
    /// A budget of `limit` bytes, shown in `gauge`.
    pub fn new(limit: u64, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: AtomicU64::new(0),
            gauge,
        })
    }

    /// Whether it is spent: not one more byte fits.
    pub fn is_full(&self) -> bool {
        self.held.load(Ordering::Acquire) >= self.limit
    }

    /// A grant of `bytes`, if they fit.
    pub fn grant(self: &Arc<Self>, bytes: u64) -> Option<Grant> {
        self.take(bytes, false).then(|| Grant {
            budget: self.clone(),
            bytes,
        })
    }

    /// Takes `bytes` if they fit, or whatever the budget says with `force`.
    fn take(&self, bytes: u64, force: bool) -> bool {
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let after = held.saturating_add(bytes);
                (force || after <= self.limit).then_some(after)
            })
            .is_ok();
        if taken {
            self.gauge.add(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        taken
    }

    fn give_back(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        self.gauge.sub(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// Bytes of the budget one fetch holds; they go back when it is dropped.
#[derive(Debug)]
pub struct Grant {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Grant {
    /// The bytes it holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows to `total` bytes if the budget has room (never shrinks); whether it covers
    /// `total` now.
    pub fn cover(&mut self, total: u64) -> bool {
        let more = total.saturating_sub(self.bytes);
        if more == 0 || self.budget.take(more, false) {
            self.bytes += more;
            true
        } else {
            false
        }
    }

    /// Grows to `total` bytes whether or not the budget has room: bytes already held, which
    /// the budget must show.
    pub fn force(&mut self, total: u64) {
        let more = total.saturating_sub(self.bytes);
        if more > 0 {
            self.budget.take(more, true);
            self.bytes += more;
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64) -> Arc<Budget> {
        Budget::new(limit, IntGauge::new("held", "held").unwrap())
    }

    #[test]
    fn grants_fit_within_the_limit_and_go_back_when_dropped() {
        let budget = budget(100);
        let mut a = budget.grant(60).expect("60 of 100 fit");
        assert!(budget.grant(50).is_none(), "60 + 50 is past 100");
        let b = budget.grant(40).expect("60 + 40 fit exactly");
        assert!(budget.is_full());
        assert_eq!(budget.gauge.get(), 100);
        assert!(a.cover(60), "what a grant holds is covered already");
        assert!(!a.cover(61), "one byte more does not fit");
        assert_eq!(a.bytes(), 60, "a refused growth takes nothing");
        drop(b);
        assert!(!budget.is_full());
        assert!(a.cover(90), "the bytes given back are there to take");
        drop(a);
        assert_eq!(budget.held.load(Ordering::Acquire), 0, "nothing leaks");
        assert_eq!(budget.gauge.get(), 0);
        assert!(budget.grant(100).is_some(), "the whole budget again");
    }

    #[test]
    fn a_forced_growth_is_counted_and_given_back() {
        let budget = budget(10);
        let mut grant = budget.grant(0).unwrap();
        assert!(!grant.cover(25));
        grant.force(25);
        assert_eq!(grant.bytes(), 25);
        assert!(budget.is_full());
        assert!(
            budget.grant(0).is_none(),
            "past the limit: not even nothing fits"
        );
        assert_eq!(budget.gauge.get(), 25);
        drop(grant);
        assert_eq!(budget.gauge.get(), 0);
        assert!(budget.grant(10).is_some());
    }
}
