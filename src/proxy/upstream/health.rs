//! Whether a server is worth asking: passive health from the answers it gives (so many
//! failures in a row mark it down for a cool-off), set back to up by a success, including
//! the active check's.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus::IntGauge;

/// Milliseconds since the first call: a monotonic clock that fits an atomic.
fn now_millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One server's health.
#[derive(Debug)]
pub struct HealthState {
    label: String,
    threshold: u32,
    cool_off: Duration,
    failures: AtomicU32,
    /// While `now_millis()` is below this, the server is down; 0: up.
    down_until: AtomicU64,
    up_gauge: IntGauge,
}

impl HealthState {
    /// A server named `label` (for logs), down after `threshold` failures in a row for
    /// `cool_off`, reporting 1 (up) or 0 (down) in `up_gauge`.
    pub fn new(label: String, threshold: u32, cool_off: Duration, up_gauge: IntGauge) -> Self {
        up_gauge.set(1);
        Self {
            label,
            threshold: threshold.max(1),
            cool_off,
            failures: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            up_gauge,
        }
    }

    /// Whether the server is up (or its cool-off is over, so it may be tried again).
    pub fn is_up(&self) -> bool {
        self.down_until.load(Ordering::Acquire) <= now_millis()
    }

    /// The server answered: it is up, and its failure count starts over.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.down_until.swap(0, Ordering::AcqRel) != 0 {
            self.up_gauge.set(1);
            tracing::info!(upstream = %self.label, "upstream is up again");
        }
    }

    /// The server failed (no answer, or a 5xx): after `threshold` in a row it is down for
    /// the cool-off.
    pub fn failure(&self, why: &str) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < self.threshold {
            return;
        }
        let until = now_millis() + self.cool_off.as_millis() as u64;
        let before = self.down_until.swap(until, Ordering::AcqRel);
        self.up_gauge.set(0);
        if before == 0 {
            tracing::warn!(
                upstream = %self.label,
                failures,
                error = why,
                cool_off = ?self.cool_off,
                "upstream marked down"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("g", "g").unwrap()
    }

    #[test]
    fn down_after_the_threshold_and_up_after_a_success() {
        let up = gauge();
        let health = HealthState::new("a".into(), 3, Duration::from_secs(60), up.clone());
        health.failure("x");
        health.failure("x");
        assert!(health.is_up(), "two failures of three");
        assert_eq!(up.get(), 1);
        health.failure("x");
        assert!(!health.is_up());
        assert_eq!(up.get(), 0);
        health.success();
        assert!(health.is_up());
        assert_eq!(up.get(), 1);
        health.failure("x");
        assert!(health.is_up(), "the count started over");
    }

    #[test]
    fn a_down_server_is_tried_again_after_its_cool_off() {
        let health = HealthState::new("a".into(), 1, Duration::ZERO, gauge());
        health.failure("x");
        assert!(health.is_up(), "a zero cool-off is over at once");
    }
}
