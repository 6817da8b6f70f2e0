//! Prometheus metrics, registered against one explicit registry and served by the admin
//! listener. Labels are small closed sets; each request is recorded once, when it ends.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::path::ObjectKind;

mod backends;
mod sharded;
pub use backends::{FanoutMetrics, SessionsBackendMetrics, StoreMetrics};
use sharded::{Cells, Hot};
pub use sharded::{ShardedCounter, ShardedHistogram};

/// Upstream latency buckets in seconds: from a loopback cache-warm origin (1 ms) to the
/// default upstream timeout (10 s).
const UPSTREAM_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric usher exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `usher_requests_total{kind, status}`: requests answered, by object kind and status.
    pub requests: IntCounterVec,
    /// `usher_denials_total{reason}`: requests refused, by reason.
    pub denials: IntCounterVec,
    /// `usher_upstream_duration_seconds{kind}`: time to the response headers, from the
    /// shield (a hit is near zero) or from the upstream.
    pub upstream_seconds: HistogramVec,
    /// `usher_upstream_errors_total{error}`: upstream fetches that failed.
    pub upstream_errors: IntCounterVec,
    /// `usher_playlist_rewrites_total{playlist, outcome}`: playlists rewritten or refused.
    pub rewrites: IntCounterVec,
    /// `usher_playlist_uris_total{disposition}`: URIs seen in rewritten playlists.
    pub rewritten_uris: IntCounterVec,
    /// `usher_playlist_bytes_total{encoding="identity"}`: playlist body bytes sent
    /// uncompressed (pre-resolved).
    pub playlist_bytes_identity: IntCounter,
    /// `usher_playlist_bytes_total{encoding="gzip"}`: playlist body bytes sent
    /// gzip-encoded (pre-resolved).
    pub playlist_bytes_gzip: IntCounter,
    /// `usher_playlist_gzip_input_bytes_total`: the identity size of the playlist bodies
    /// sent gzip-encoded (with the gzip series: the ratio saved).
    pub playlist_gzip_input_bytes: IntCounter,
    /// `usher_requests_in_flight`: requests being served now (counted per thread).
    pub in_flight: ShardedCounter,
    /// `usher_rights_cache_total{outcome}`: rights decisions found in the cache or not.
    pub rights_cache: IntCounterVec,
    /// `usher_rights_cache_total{outcome="hit"}`, counted per thread: every request that
    /// checks rights and finds them cached moves it.
    pub rights_cache_hits: ShardedCounter,
    /// `usher_rights_lookups_total{outcome}`: decisions made by the rights source:
    /// granted, refused, or grace (a recent yes served while the external source is down).
    pub rights_lookups: IntCounterVec,
    /// `usher_rights_invalidations_total{scope}`: cache invalidations by admin writes.
    pub rights_invalidations: IntCounterVec,
    /// `usher_rights_index_stale`: 1 while the media index could not be re-read after a
    /// write (media written since may be refused until a retry succeeds), else 0.
    pub rights_index_stale: IntGauge,
    /// `usher_first_play_writes_total{outcome}`: first plays of rentals counted from first
    /// play: written, written_before (the store held one already: another node's, or an
    /// earlier write of this node's whose request was gone), failed (the store could not
    /// write it; writes wait `rights.first_play_retry`), deferred (not tried: a failed
    /// write's back-off, or another request's write of it in flight).
    pub first_play_writes: IntCounterVec,
    /// `usher_admin_requests_total{api, status}`: admin API and facade calls.
    pub admin_requests: IntCounterVec,
    /// `usher_admin_auth_failures_total{outcome}`: admin calls refused for their
    /// credential: `unauthorized` (401, a wrong or missing one) and `limited` (429, from a
    /// client past `admin.max_failed_auth_per_minute`).
    pub admin_auth_failures: IntCounterVec,
    /// `usher_activations_total{outcome}`: device activations of purchases: known, bound
    /// (a new device used one), limit (refused), recovered (moved by IP recovery).
    pub activations: IntCounterVec,
    /// `usher_sessions_active`: live playback sessions at the last sweep.
    pub sessions_active: IntGauge,
    /// `usher_config_reloads_total{outcome}`: reloads applied (ok) or refused (rejected).
    pub config_reloads: IntCounterVec,
    /// `usher_upstream_up{upstream}`: 1 while a server is up, 0 while marked down.
    pub upstream_up: IntGaugeVec,
    /// `usher_upstream_in_flight{upstream}`: requests holding one of a server's
    /// `max_requests` slots (sent, and their bodies not yet ended).
    pub upstream_in_flight: IntGaugeVec,
    /// `usher_upstream_server_duration_seconds{upstream}`: each server's time to headers.
    pub upstream_server_seconds: HistogramVec,
    /// `usher_upstream_failures_total{upstream, reason}`: failed attempts by server.
    pub upstream_failures: IntCounterVec,
    /// `usher_cache_requests_total{kind, outcome}`: shield lookups: hit, miss (started a
    /// fetch), coalesced (joined a fetch in flight), pass (went by the shield: ranges, other
    /// objects, the shield off, no room in flight); and stale: misses and joins answered
    /// with a kept copy past its lifetime because every upstream failed or the body broke
    /// off before its first bytes (also counted as miss or coalesced).
    pub cache_requests: IntCounterVec,
    /// `usher_cache_bytes_total{source}`: body bytes served from the cache, and read from
    /// upstreams into it.
    pub cache_bytes: IntCounterVec,
    /// `usher_cache_size_bytes`: what the cache holds now.
    pub cache_size: IntGauge,
    /// `usher_cache_in_flight_bytes`: body bytes held by the shield's fetches in flight
    /// (and by readers still reading a finished one), against `shield.max_in_flight_bytes`.
    pub cache_in_flight: IntGauge,
    /// `usher_cache_over_budget_total{kind}`: fetches not kept because fetches in flight
    /// held `shield.max_in_flight_bytes`: passed by the shield, or streamed through to
    /// their readers once the budget refused them more.
    pub cache_over_budget: IntCounterVec,
    /// `usher_cache_mapped_bodies`: kept bodies in files of their own (unnamed or memory
    /// files, sent with `sendfile`), process-wide, as of the last scrape.
    pub cache_mapped_bodies: IntGauge,
    /// `usher_cache_purge_scans_total`: passes over the shield cache made by purges (one
    /// per purge, also one per catch-up applying many missed purges).
    pub cache_purge_scans: IntCounter,
    /// `usher_webhook_deliveries_total{outcome}`: webhook attempts: delivered (2xx), or
    /// failed (retried later, or given up).
    pub webhook_deliveries: IntCounterVec,
    /// `usher_webhook_dropped_total{reason}`: deliveries dropped undelivered: queue_full
    /// (the oldest, to make room), gave_up (max_attempts failed), unconfigured (its
    /// endpoint left the config).
    pub webhook_dropped: IntCounterVec,
    /// `usher_webhook_queue_depth`: deliveries waiting in the store.
    pub webhook_queue_depth: IntGauge,
    /// `usher_webhook_backlog{receiver}`: deliveries waiting in the store for each
    /// receiver (named by scheme, host and port), in flight and backing off included.
    pub webhook_backlog: IntGaugeVec,
    /// `usher_webhook_in_flight{receiver}`: deliveries being sent to each receiver now
    /// (at most `webhooks.max_in_flight_per_endpoint` per endpoint).
    pub webhook_in_flight: IntGaugeVec,
    /// The series a request of each object kind touches on its common path, resolved
    /// once (see [`Metrics::kind`]).
    by_kind: [KindSeries; ObjectKind::ALL.len()],
    /// `usher_cache_bytes_total{source="cache"}`, counted per thread.
    pub cache_bytes_served: ShardedCounter,
    /// The shared store's series (empty on the embedded store).
    pub store: StoreMetrics,
    /// The invalidation fan-out's series (empty on one node).
    pub fanout: FanoutMetrics,
    /// The shared session store's series (empty without Redis).
    pub sessions_backend: SessionsBackendMetrics,
}

/// The series every request of one object kind touches when it is answered the common way
/// (a 200, a shield hit), resolved once at start and counted per thread (see
/// [`sharded`]): looking a series up by its label values hashes them and takes a lock, and a
/// counter shared by every thread moves its cache line between the cores on every request.
#[derive(Clone)]
pub struct KindSeries {
    /// `usher_requests_total{kind, status="200"}`.
    pub ok: ShardedCounter,
    /// `usher_upstream_duration_seconds{kind}`.
    pub upstream_seconds: ShardedHistogram,
    /// `usher_cache_requests_total{kind, outcome="hit"}`.
    pub cache_hit: ShardedCounter,
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        // Families with series counted per thread are registered through `hot`, below.
        let unregistered = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = unregistered(name, help, labels);
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let requests = unregistered(
            "usher_requests_total",
            "Requests answered, by object kind and HTTP status.",
            &["kind", "status"],
        );
        let denials = counter(
            "usher_denials_total",
            "Requests refused by the access check, by reason.",
            &["reason"],
        );
        let upstream_errors = counter(
            "usher_upstream_errors_total",
            "Upstream fetches that failed, by error.",
            &["error"],
        );
        let rewrites = counter(
            "usher_playlist_rewrites_total",
            "Playlists rewritten (outcome=ok) or refused as unparseable (outcome=error).",
            &["playlist", "outcome"],
        );
        let rewritten_uris = counter(
            "usher_playlist_uris_total",
            "URIs in rewritten playlists: tokenized, rerouted, foreign, unresolved, or withheld (past a preview).",
            &["disposition"],
        );
        let playlist_bytes = counter(
            "usher_playlist_bytes_total",
            "Playlist body bytes sent, by content coding (identity or gzip).",
            &["encoding"],
        );
        let playlist_gzip_input_bytes = IntCounter::new(
            "usher_playlist_gzip_input_bytes_total",
            "Identity size of the playlist bodies sent gzip-encoded.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(playlist_gzip_input_bytes.clone()))
            .expect("unique metric");
        let rights_cache = unregistered(
            "usher_rights_cache_total",
            "Rights decisions answered from the cache (hit) or looked up (miss).",
            &["outcome"],
        );
        let rights_lookups = counter(
            "usher_rights_lookups_total",
            "Rights lookups by outcome: granted, refused, or grace (external source down).",
            &["outcome"],
        );
        let rights_invalidations = counter(
            "usher_rights_invalidations_total",
            "Rights cache invalidations by admin writes, by scope (subject or all).",
            &["scope"],
        );
        let rights_index_stale = gauge(
            "usher_rights_index_stale",
            "1 while the media index could not be re-read after a write; retried every second.",
        );
        let first_play_writes = counter(
            "usher_first_play_writes_total",
            "Rental first plays: written, written_before (the store held one already), failed (the store could not write it), deferred (not tried: backing off after a failure, or another request writing it).",
            &["outcome"],
        );
        let admin_requests = counter(
            "usher_admin_requests_total",
            "Admin API and PPV facade calls, by API and HTTP status.",
            &["api", "status"],
        );
        let admin_auth_failures = counter(
            "usher_admin_auth_failures_total",
            "Admin calls refused for their credential: unauthorized (401) or limited (429).",
            &["outcome"],
        );
        let activations = counter(
            "usher_activations_total",
            "Device activations of purchases: known, bound, limit, recovered.",
            &["outcome"],
        );
        let config_reloads = counter(
            "usher_config_reloads_total",
            "Config reloads (SIGHUP or POST /reload): ok, or rejected with the old config kept.",
            &["outcome"],
        );
        let upstream_failures = counter(
            "usher_upstream_failures_total",
            "Failed upstream attempts (no answer, or a 5xx), by server and reason.",
            &["upstream", "reason"],
        );
        let cache_requests = unregistered(
            "usher_cache_requests_total",
            "Shield cache lookups by object kind and outcome: hit, miss, coalesced, stale, pass.",
            &["kind", "outcome"],
        );
        let cache_bytes = unregistered(
            "usher_cache_bytes_total",
            "Body bytes served from the shield cache (source=cache) and read from upstreams (source=upstream).",
            &["source"],
        );
        let webhook_deliveries = counter(
            "usher_webhook_deliveries_total",
            "Webhook delivery attempts: delivered (2xx) or failed.",
            &["outcome"],
        );
        let webhook_dropped = counter(
            "usher_webhook_dropped_total",
            "Webhook deliveries dropped undelivered: queue_full, gave_up, unconfigured.",
            &["reason"],
        );
        let histogram = |name: &str, help: &str, label: &str| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(UPSTREAM_SECONDS_BUCKETS.to_vec()),
                &[label],
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let upstream_server_seconds = histogram(
            "usher_upstream_server_duration_seconds",
            "Time from sending a request to one upstream server to its response headers.",
            "upstream",
        );
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "usher_upstream_up",
                "1 while an upstream server is up, 0 while marked down.",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(upstream_up.clone()))
            .expect("unique metric");
        let upstream_in_flight = IntGaugeVec::new(
            Opts::new(
                "usher_upstream_in_flight",
                "Requests in flight to an upstream server, until their bodies end (at most upstream.max_requests).",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(upstream_in_flight.clone()))
            .expect("unique metric");
        let cache_size = gauge("usher_cache_size_bytes", "Bytes held by the shield cache.");
        let cache_in_flight = gauge(
            "usher_cache_in_flight_bytes",
            "Body bytes held by shield fetches in flight, against shield.max_in_flight_bytes.",
        );
        let cache_over_budget = counter(
            "usher_cache_over_budget_total",
            "Shield fetches not kept because fetches in flight held shield.max_in_flight_bytes (passed by the shield, or streamed through), by object kind.",
            &["kind"],
        );
        let cache_mapped_bodies = gauge(
            "usher_cache_mapped_bodies",
            "Kept bodies held in files of their own (unnamed or memory files), sent with sendfile on plain connections.",
        );
        let cache_purge_scans = IntCounter::new(
            "usher_cache_purge_scans_total",
            "Passes over the shield cache made by purges (one per purge, one per catch-up of missed purges).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(cache_purge_scans.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(crate::proxy::sendfile::bytes_sent().clone()))
            .expect("unique metric");
        let upstream_seconds = HistogramVec::new(
            HistogramOpts::new(
                "usher_upstream_duration_seconds",
                "Time to the response headers, from the shield cache or the upstream servers (see usher_upstream_server_duration_seconds for each server).",
            )
            .buckets(UPSTREAM_SECONDS_BUCKETS.to_vec()),
            &["kind"],
        )
        .expect("valid metric");
        let sessions_active = gauge("usher_sessions_active", "Live playback sessions.");
        let webhook_queue_depth = gauge(
            "usher_webhook_queue_depth",
            "Webhook deliveries waiting in the store.",
        );
        let per_receiver = |name: &str, help: &str| {
            let vec = IntGaugeVec::new(Opts::new(name, help), &["receiver"]).expect("valid metric");
            registry
                .register(Box::new(vec.clone()))
                .expect("unique metric");
            vec
        };
        let webhook_backlog = per_receiver(
            "usher_webhook_backlog",
            "Webhook deliveries waiting in the store for a receiver (in flight and backing off included).",
        );
        let webhook_in_flight = per_receiver(
            "usher_webhook_in_flight",
            "Webhook deliveries being sent to a receiver now (at most webhooks.max_in_flight_per_endpoint per endpoint).",
        );
        let mut cells = Cells::default();
        let by_kind = ObjectKind::ALL.map(|_| KindSeries {
            ok: ShardedCounter::new(&mut cells),
            upstream_seconds: ShardedHistogram::new(&mut cells, UPSTREAM_SECONDS_BUCKETS),
            cache_hit: ShardedCounter::new(&mut cells),
        });
        let in_flight = ShardedCounter::new(&mut cells);
        let rights_cache_hits = ShardedCounter::new(&mut cells);
        let cache_bytes_served = ShardedCounter::new(&mut cells);
        cells.build();
        let mut hot = Hot::default();
        let each_kind = |series: fn(&KindSeries) -> ShardedCounter, label: &'static str| {
            ObjectKind::ALL
                .iter()
                .map(|&kind| {
                    let labels = vec![kind.as_str(), label];
                    (labels, series(&by_kind[kind as usize]))
                })
                .collect()
        };
        hot.counters(requests.clone(), each_kind(|k| k.ok.clone(), "200"));
        hot.counters(
            cache_requests.clone(),
            each_kind(|k| k.cache_hit.clone(), "hit"),
        );
        hot.histograms(
            upstream_seconds.clone(),
            ObjectKind::ALL
                .iter()
                .map(|&kind| {
                    let histogram = by_kind[kind as usize].upstream_seconds.clone();
                    (vec![kind.as_str()], histogram)
                })
                .collect(),
        );
        hot.counters(
            rights_cache.clone(),
            vec![(vec!["hit"], rights_cache_hits.clone())],
        );
        hot.counters(
            cache_bytes.clone(),
            vec![(vec!["cache"], cache_bytes_served.clone())],
        );
        hot.gauge(
            "usher_requests_in_flight",
            "Requests being served now.",
            in_flight.clone(),
        );
        registry.register(Box::new(hot)).expect("unique metric");
        let store = StoreMetrics::register(&registry);
        let fanout = FanoutMetrics::register(&registry);
        let sessions_backend = SessionsBackendMetrics::register(&registry);
        Self {
            by_kind,
            cache_bytes_served,
            rights_cache_hits,
            webhook_deliveries,
            webhook_dropped,
            webhook_queue_depth,
            webhook_backlog,
            webhook_in_flight,
            registry,
            requests,
            denials,
            upstream_seconds,
            upstream_errors,
            rewrites,
            rewritten_uris,
            playlist_bytes_identity: playlist_bytes.with_label_values(&["identity"]),
            playlist_bytes_gzip: playlist_bytes.with_label_values(&["gzip"]),
            playlist_gzip_input_bytes,
            in_flight,
            rights_cache,
            rights_lookups,
            rights_invalidations,
            rights_index_stale,
            first_play_writes,
            admin_requests,
            admin_auth_failures,
            activations,
            sessions_active,
            config_reloads,
            upstream_up,
            upstream_in_flight,
            upstream_server_seconds,
            upstream_failures,
            cache_requests,
            cache_bytes,
            cache_size,
            cache_in_flight,
            cache_over_budget,
            cache_mapped_bodies,
            cache_purge_scans,
            store,
            fanout,
            sessions_backend,
        }
    }

    /// The series resolved once for requests of `kind`.
    pub fn kind(&self, kind: ObjectKind) -> &KindSeries {
        &self.by_kind[kind as usize]
    }

    /// Counts an answered request in `usher_requests_total{kind, status}`.
    pub fn count_request(&self, kind: ObjectKind, status: http::StatusCode) {
        if status == http::StatusCode::OK {
            self.kind(kind).ok.inc();
        } else {
            self.requests
                .with_label_values(&[kind.as_str(), status.as_str()])
                .inc();
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
