//! Metrics of the shared backends: the PostgreSQL store and the invalidation fan-out.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::rights::store::StoreError;

/// Store latency buckets in seconds: a loopback round trip (0.2 ms) to the timeout.
const STORE_SECONDS_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Registers an `IntCounterVec` with one label.
fn counter(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

/// Registers an `IntGauge`.
fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// The shared store's series.
#[derive(Clone)]
pub struct StoreMetrics {
    /// `usher_store_duration_seconds{op}`: each store operation, waiting for a connection
    /// included.
    pub seconds: HistogramVec,
    /// `usher_store_errors_total{error}`: operations that failed: unavailable (no
    /// connection, or no answer in time), unknown (a write whose connection or answer was
    /// lost after it was sent) or backend (the server refused).
    pub errors: IntCounterVec,
    /// `usher_store_pool_connections{state}`: open, idle and max connections of the pool.
    pub pool: IntGaugeVec,
}

impl StoreMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "usher_store_duration_seconds",
                "Shared store operations, by operation, waiting for a connection included.",
            )
            .buckets(STORE_SECONDS_BUCKETS.to_vec()),
            &["op"],
        )
        .expect("valid metric");
        let errors = counter(
            registry,
            "usher_store_errors_total",
            "Shared store operations that failed: unavailable, unknown (a write lost after it was sent) or backend.",
            "error",
        );
        let pool = IntGaugeVec::new(
            Opts::new(
                "usher_store_pool_connections",
                "Connections of the shared store's pool: open, idle, max.",
            ),
            &["state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(seconds.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(pool.clone()))
            .expect("unique metric");
        Self {
            seconds,
            errors,
            pool,
        }
    }

    /// Records one operation.
    pub fn observe<T>(&self, op: &str, took: Duration, result: &Result<T, StoreError>) {
        self.seconds
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
        let error = match result {
            Err(StoreError::Unavailable(_)) => "unavailable",
            Err(StoreError::Unknown(_)) => "unknown",
            Err(StoreError::Backend(_)) => "backend",
            _ => return,
        };
        self.errors.with_label_values(&[error]).inc();
    }

    /// Records the pool's state.
    pub fn pool(&self, open: i64, idle: i64, max: i64) {
        self.pool.with_label_values(&["open"]).set(open);
        self.pool.with_label_values(&["idle"]).set(idle);
        self.pool.with_label_values(&["max"]).set(max);
    }
}

/// The invalidation fan-out's series.
#[derive(Clone)]
pub struct FanoutMetrics {
    /// `usher_invalidations_sent_total{scope}`: invalidations this node published.
    pub sent: IntCounterVec,
    /// `usher_invalidations_received_total{scope}`: invalidations from other nodes applied.
    pub received: IntCounterVec,
    /// `usher_invalidation_errors_total{error}`: publish failures and lost subscriptions.
    pub errors: IntCounterVec,
    /// `usher_invalidation_listener_up`: 1 while this node is subscribed.
    pub up: IntGauge,
}

impl FanoutMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        let sent = counter(
            registry,
            "usher_invalidations_sent_total",
            "Rights invalidations published to the other nodes, by scope.",
            "scope",
        );
        let received = counter(
            registry,
            "usher_invalidations_received_total",
            "Rights invalidations received from other nodes and applied, by scope.",
            "scope",
        );
        let errors = counter(
            registry,
            "usher_invalidation_errors_total",
            "Fan-out failures: publish (not sent), lost (subscription lost; the cache was flushed).",
            "error",
        );
        let up = gauge(
            registry,
            "usher_invalidation_listener_up",
            "1 while this node is subscribed to other nodes' invalidations.",
        );
        Self {
            sent,
            received,
            errors,
            up,
        }
    }
}

/// The shared session store's series.
#[derive(Clone)]
pub struct SessionsBackendMetrics {
    /// `usher_sessions_backend_duration_seconds{op}`: each Redis call (session starts, the
    /// background touch, announcements), retries included.
    pub seconds: HistogramVec,
    /// `usher_sessions_backend_errors_total{op}`: Redis calls that failed or timed out;
    /// `write_back`, an account whose sessions a write-back or a catch-up could not level
    /// with Redis (its read or write failed, or its sessions kept changing), once per try.
    pub errors: IntCounterVec,
    /// `usher_sessions_backend_fallbacks_total{policy}`: starts decided without Redis:
    /// refused (`deny`) or admitted by this node's sessions (`local`).
    pub fallbacks: IntCounterVec,
    /// `usher_sessions_written_back_total{cause}`: sessions (live, or ended or replaced
    /// here) this node wrote to Redis after Redis missed them: `local`, started, replaced
    /// or ended by this node while Redis did not answer (or left over from a gap's
    /// catch-up that could not level their account); `gap`, missed while this node was
    /// not subscribed (a Redis that restarted without them).
    pub written_back: IntCounterVec,
    /// `usher_sessions_write_back_pending`: sessions this node started, replaced or ended
    /// while Redis did not answer, or remembered of an account a catch-up after a gap
    /// could not level, not written back (or levelled) yet.
    pub pending: IntGauge,
    /// `usher_sessions_backend_up`: 1 while subscribed to the other nodes' session changes.
    pub up: IntGauge,
}

impl SessionsBackendMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        let errors = counter(
            registry,
            "usher_sessions_backend_errors_total",
            "Shared session store (Redis) calls that failed or timed out, by operation (write_back: an account whose sessions were not levelled with it).",
            "op",
        );
        let fallbacks = counter(
            registry,
            "usher_sessions_backend_fallbacks_total",
            "Session starts decided without the shared store, by sessions.on_backend_error.",
            "policy",
        );
        let written_back = counter(
            registry,
            "usher_sessions_written_back_total",
            "Sessions written to the shared store after it missed them: started, replaced or ended here while it did not answer (local), or lost while this node was not subscribed (gap).",
            "cause",
        );
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "usher_sessions_backend_duration_seconds",
                "Shared session store (Redis) calls, by operation.",
            )
            .buckets(STORE_SECONDS_BUCKETS.to_vec()),
            &["op"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(seconds.clone()))
            .expect("unique metric");
        let pending = gauge(
            registry,
            "usher_sessions_write_back_pending",
            "Sessions started, replaced or ended here while the shared store did not answer (or of an account a catch-up could not level), not written back yet.",
        );
        let up = gauge(
            registry,
            "usher_sessions_backend_up",
            "1 while subscribed to the other nodes' session changes.",
        );
        Self {
            seconds,
            errors,
            fallbacks,
            written_back,
            pending,
            up,
        }
    }
}
