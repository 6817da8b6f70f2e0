//! Webhooks: signed HTTP callbacks on PPV events, delivered at least once from a queue
//! persisted in the store.
//!
//! ```text
//! event (admin op, rights, activation, sessions)
//!   ─► Webhooks::emit / deliveries: the receivers subscribed in the config snapshot
//!        none ─► nothing (no I/O)
//!        some ─► one row per receiver in the store's queue (emit: blocking pool, off the
//!                request; deliveries: in the sale's or revoke's own transaction), oldest
//!                dropped past queue_limit ─► wake the worker
//! worker: each round, the due rows per receiver (one count), then claim (leased) each
//!        receiver's share of the free slots: at most MAX_IN_FLIGHT in all and
//!        max_in_flight_per_endpoint per receiver, handed out in turn (in_flight.rs);
//!        each POSTed in a task of its own ─► signed ─► 2xx: remove
//!        otherwise: due again after retry_initial · 2^(attempts-1), at most retry_max;
//!        removed (gave_up) after max_attempts; removed (unconfigured) if the receiver
//!        left the config; with a shared store (PostgreSQL) only this node's receivers'
//!        rows are claimed, the others' left to the nodes that have them
//! ```
//!
//! A row is written before the worker sees it and removed only after a 2xx, so a restart
//! (even `kill -9`) loses none: the worker picks them up again. A sale's, a revoke's and
//! a first play's event is written in the same transaction as the change it announces (an
//! outbox): a change that stands is announced, one that does not is not. A delivery in flight at a
//! crash is sent again (at least once): receivers deduplicate on `X-Usher-Delivery`.
//!
//! A receiver that stalls (each attempt waits out `timeout`) holds at most its
//! `max_in_flight_per_endpoint` slots; its other deliveries wait in the store, unclaimed
//! and in their order, while the other receivers are delivered to from the free slots.

pub mod deliver;
pub mod event;
mod in_flight;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::webhooks::{EventKind, WebhooksConfig};
use crate::metrics::Metrics;
use crate::proxy::Clock;
use crate::rights::store::{Backlog, NewDelivery, QueuedDelivery, Store};
use deliver::{Attempt, Sender};
pub use event::{Event, PurchaseInfo};
use in_flight::InFlight;

/// Most deliveries in flight at once, to every receiver together (each receiver also at
/// most `webhooks.max_in_flight_per_endpoint`, which cannot exceed this).
pub const MAX_IN_FLIGHT: u32 = 32;

/// The webhook queue's front (emit, record) and its delivery worker. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks(Arc<Inner>);

struct Inner {
    config: RwLock<Arc<WebhooksConfig>>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    clock: Clock,
    wake: Notify,
    /// The queue is shared with other nodes (PostgreSQL): deliver only to this node's own
    /// receivers, and leave the others' deliveries to the nodes that have them.
    shared: bool,
    /// Keys of events announced in the last minute, for events a client can repeat at will
    /// (a second computer retrying): one announcement per key and minute.
    recent: moka::sync::Cache<String, ()>,
}

/// A receiver's URL as logs (and config problems) may show it: scheme, host and port, never
/// the path or query (receivers often carry their secret there). The config refuses a URL
/// with a user or password (see `config::check::webhooks`), so none reaches a log.
pub(crate) fn receiver(url: &str) -> &str {
    let authority = url.find("://").map_or(0, |at| at + 3);
    url[authority..]
        .find(['/', '?', '#'])
        .map_or(url, |end| &url[..authority + end])
}

/// Runs `work` (store calls) on the blocking pool without waiting for it, or here when
/// there is no runtime (the CLI).
fn off_request(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(work);
        }
        Err(_) => work(),
    }
}

/// How many repeatable events [`Webhooks::emit_once_per_minute`] remembers.
const RECENT_CAPACITY: u64 = 10_000;

/// A fresh event id: 128 random bits, hex.
fn new_event_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Webhooks {
    /// Webhooks on `store` under `config`; `shared` when other nodes use the same store
    /// (PostgreSQL), whose configs may name receivers this one does not have (a reload
    /// that reached one node before the others).
    pub fn new(
        config: WebhooksConfig,
        store: Arc<dyn Store>,
        metrics: Metrics,
        clock: Clock,
        shared: bool,
    ) -> Self {
        Self(Arc::new(Inner {
            config: RwLock::new(Arc::new(config)),
            store,
            metrics,
            clock,
            wake: Notify::new(),
            shared,
            recent: moka::sync::Cache::builder()
                .max_capacity(RECENT_CAPACITY)
                .time_to_live(std::time::Duration::from_secs(60))
                .build(),
        }))
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<WebhooksConfig> {
        self.0
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in reloaded settings: new events go to the new receivers; queued deliveries
    /// to a receiver that is gone are dropped (`unconfigured`), but with a shared store,
    /// where another node may still have it, they are left in the queue.
    pub fn configure(&self, config: WebhooksConfig) {
        *self.0.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        self.0.wake.notify_one();
    }

    /// Whether any receiver takes `kind` (cheap: the config snapshot, no I/O).
    fn wanted(&self, kind: EventKind) -> bool {
        self.config().subscribed(kind).next().is_some()
    }

    /// The deliveries that announce `event`, one per receiver that takes it (none when no
    /// receiver does): for a write that queues them in its own transaction (a sale, a
    /// revoke), so the change and its announcement stand or fall together. Call
    /// [`Webhooks::queued`] after it commits.
    pub fn deliveries(&self, event: &Event) -> Vec<NewDelivery> {
        if !self.wanted(event.kind()) {
            return Vec::new();
        }
        let config = self.config();
        let now = (self.0.clock)();
        let id = new_event_id();
        let body = event.payload(&id, now);
        config
            .subscribed(event.kind())
            .map(|r| NewDelivery {
                endpoint: r.url.clone(),
                event: event.kind().as_str().to_owned(),
                event_id: id.clone(),
                body: body.clone(),
                due: now,
            })
            .collect()
    }

    fn enqueue(&self, deliveries: &[NewDelivery]) {
        let limit = self.config().queue_limit;
        match self.0.store.enqueue_webhooks(deliveries, limit) {
            Ok(dropped) => {
                if dropped > 0 {
                    tracing::warn!(dropped, limit, "webhook queue full; dropped the oldest");
                    self.0
                        .metrics
                        .webhook_dropped
                        .with_label_values(&["queue_full"])
                        .inc_by(dropped);
                }
                self.0.wake.notify_one();
            }
            Err(e) if deliveries.is_empty() => {
                tracing::warn!(error = %e, "could not apply the webhook queue's limit")
            }
            Err(e) => tracing::error!(error = %e, "could not queue a webhook event"),
        }
    }

    /// Queues `event` for its receivers without waiting: the store write runs on the
    /// blocking pool, off the request. Nothing happens when no receiver takes it.
    pub fn emit(&self, event: Event) {
        self.emit_with(event.kind(), move |_| Some(event));
    }

    /// As [`Webhooks::emit`], for an event of `kind` that `build` completes from the
    /// store on the blocking pool (e.g. the account of a purchase); `build` runs only
    /// when a receiver takes `kind`, and `None` queues nothing.
    pub fn emit_with(
        &self,
        kind: EventKind,
        build: impl FnOnce(&dyn Store) -> Option<Event> + Send + 'static,
    ) {
        if !self.wanted(kind) {
            return;
        }
        let this = self.clone();
        off_request(move || {
            if let Some(event) = build(this.0.store.as_ref()) {
                this.enqueue(&this.deliveries(&event));
            }
        });
    }

    /// As [`Webhooks::emit_with`], at most once a minute per `key`: for events a client
    /// can repeat at will, so a retrying player neither floods the queue (pushing out the
    /// purchases and revokes in it) nor writes to the store on every request.
    pub fn emit_once_per_minute(
        &self,
        key: String,
        kind: EventKind,
        build: impl FnOnce(&dyn Store) -> Option<Event> + Send + 'static,
    ) {
        if !self.wanted(kind) {
            return;
        }
        let mut first = false;
        self.0.recent.get_with(key, || first = true);
        if first {
            self.emit_with(kind, build);
        }
    }

    /// After a write that queued [`Webhooks::deliveries`] in its transaction: wakes the
    /// worker and applies the queue's limit (dropping the oldest, counted) on the blocking
    /// pool, off the request. Nothing to do when nothing was queued.
    pub fn queued(&self, deliveries: &[NewDelivery]) {
        if deliveries.is_empty() {
            return;
        }
        // The deliveries are queued whether or not the limit can be applied.
        self.0.wake.notify_one();
        let this = self.clone();
        off_request(move || this.enqueue(&[]));
    }

    /// The delivery worker: runs until the process ends (start it once, in `main`). Up to
    /// [`MAX_IN_FLIGHT`] deliveries are in flight at once, each in a task of its own, and at
    /// most `max_in_flight_per_endpoint` to one receiver; a slot given back wakes the worker,
    /// which claims again at once. So a receiver that hangs until the timeout holds up only
    /// its own share of the slots, and the others are delivered to meanwhile.
    pub async fn run(self) {
        let sender = match Sender::new() {
            Ok(sender) => Arc::new(sender),
            Err(e) => {
                tracing::error!(error = %e, "webhooks cannot start: no HTTP client");
                return;
            }
        };
        let in_flight = InFlight::new(self.0.metrics.webhook_in_flight.clone());
        let mut shown = HashSet::new();
        for turn in 0usize.. {
            let config = self.config();
            let Some(mut backlog) = self.backlog(&config, &mut shown).await else {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.0.wake.notified()).await;
                continue;
            };
            // Nothing queued and nothing to deliver to: no polling until a reload adds a
            // receiver or an event comes. Not with a shared store: another node's events
            // wake nothing here, and the queue's gauges would stand still.
            let idle = backlog.is_empty() && config.endpoints.is_empty() && !self.0.shared;
            if self.0.shared {
                // Another node may have the receiver this one lacks: not ours to drop.
                backlog.retain(|b| config.endpoint(&b.endpoint).is_some());
            }
            let free = (MAX_IN_FLIGHT as usize).saturating_sub(in_flight.total());
            let cap = config.max_in_flight_per_endpoint as usize;
            for (endpoint, share) in
                in_flight::shares(&backlog, |e| in_flight.to(e), cap, free, turn)
            {
                for queued in self.claim(&config, endpoint, share).await {
                    let slot = in_flight.take(endpoint);
                    let (this, sender, config) = (self.clone(), sender.clone(), config.clone());
                    tokio::spawn(async move {
                        this.attempt(&sender, &config, queued).await;
                        drop(slot);
                        this.0.wake.notify_one();
                    });
                }
            }
            if idle {
                self.0.wake.notified().await;
            } else {
                // A new event or a delivery that ended wakes the worker at once; rows
                // backing off are polled every second.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.0.wake.notified()).await;
            }
        }
    }

    /// The deliveries waiting per receiver, shown in `usher_webhook_queue_depth` and
    /// `usher_webhook_backlog` (each configured receiver, and any other with deliveries
    /// left; `shown` holds the receivers last shown, whose series are removed once they
    /// are neither); `None` (logged) when the store cannot be read.
    async fn backlog(
        &self,
        config: &WebhooksConfig,
        shown: &mut HashSet<String>,
    ) -> Option<Vec<Backlog>> {
        let now = (self.0.clock)();
        let store = self.0.store.clone();
        let backlog =
            read_queue(tokio::task::spawn_blocking(move || store.webhook_backlog(now)).await)?;
        let metrics = &self.0.metrics;
        let depth: u64 = backlog.iter().map(|b| b.waiting).sum();
        metrics.webhook_queue_depth.set(depth as i64);
        let mut waiting: std::collections::HashMap<String, u64> = config
            .endpoints
            .iter()
            .map(|e| (receiver(&e.url).to_owned(), 0))
            .collect();
        for b in &backlog {
            *waiting.entry(receiver(&b.endpoint).to_owned()).or_insert(0) += b.waiting;
        }
        for gone in shown.iter().filter(|r| !waiting.contains_key(*r)) {
            let _ = metrics.webhook_backlog.remove_label_values(&[gone]);
        }
        for (name, n) in &waiting {
            metrics
                .webhook_backlog
                .with_label_values(&[name])
                .set(*n as i64);
        }
        *shown = waiting.into_keys().collect();
        Some(backlog)
    }

    /// Claims up to `limit` due deliveries to `endpoint`, oldest due first (leased for the
    /// timeout and 5 s); none (logged) when the store cannot be read.
    async fn claim(
        &self,
        config: &WebhooksConfig,
        endpoint: &str,
        limit: u32,
    ) -> Vec<QueuedDelivery> {
        let now = (self.0.clock)();
        let lease = config.timeout.as_secs() + 5;
        let (store, endpoint) = (self.0.store.clone(), endpoint.to_owned());
        let claimed =
            tokio::task::spawn_blocking(move || store.claim_webhooks(&endpoint, now, lease, limit))
                .await;
        read_queue(claimed).unwrap_or_default()
    }

    async fn attempt(&self, sender: &Sender, config: &WebhooksConfig, queued: QueuedDelivery) {
        let d = &queued.delivery;
        let Some(endpoint) = config.endpoint(&d.endpoint) else {
            tracing::warn!(receiver = %receiver(&d.endpoint), event = %d.event, "webhook receiver no longer configured; dropped");
            self.finish(queued.id, None, "unconfigured").await;
            return;
        };
        let attempt = Attempt {
            url: &endpoint.url,
            secret: &endpoint.secret,
            event: &d.event,
            event_id: &d.event_id,
            body: &d.body,
            timestamp: (self.0.clock)(),
        };
        let outcome = sender.send(&attempt, config.timeout).await;
        let deliveries = &self.0.metrics.webhook_deliveries;
        match outcome {
            Ok(()) => {
                deliveries.with_label_values(&["delivered"]).inc();
                self.finish(queued.id, None, "").await;
            }
            Err(e) => {
                deliveries.with_label_values(&["failed"]).inc();
                let attempts = queued.attempts + 1;
                if attempts >= config.max_attempts {
                    tracing::warn!(receiver = %receiver(&d.endpoint), event = %d.event, attempts, error = %e, "webhook given up");
                    self.finish(queued.id, None, "gave_up").await;
                } else {
                    let next = (self.0.clock)() + config.backoff(attempts).as_secs();
                    tracing::info!(receiver = %receiver(&d.endpoint), event = %d.event, attempts, error = %e, "webhook failed; will retry");
                    self.finish(queued.id, Some(next), "").await;
                }
            }
        }
    }

    /// Removes a delivery (counting `dropped` as its reason when not empty), or makes it
    /// due again at `retry`.
    async fn finish(&self, id: i64, retry: Option<u64>, dropped: &'static str) {
        let store = self.0.store.clone();
        let written = tokio::task::spawn_blocking(move || match retry {
            Some(next) => store.webhook_failed(id, next),
            None => store.webhook_done(id),
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "webhook queue cannot be written"),
            Err(e) => tracing::error!(error = %e, "webhook queue cannot be written"),
        }
        if !dropped.is_empty() {
            self.0
                .metrics
                .webhook_dropped
                .with_label_values(&[dropped])
                .inc();
        }
    }
}

/// What a read of the queue in the blocking pool found; `None`, logged, when the store
/// (or the task) failed.
fn read_queue<T>(
    joined: Result<Result<T, crate::rights::store::StoreError>, tokio::task::JoinError>,
) -> Option<T> {
    let read = joined
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    read.inspect_err(|e| tracing::error!(error = %e, "webhook queue cannot be read"))
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn logs_name_a_receiver_by_its_origin_only() {
        assert_eq!(
            super::receiver("https://hooks.example.com/T000/B000/s3cr3t?x=1"),
            "https://hooks.example.com"
        );
        assert_eq!(
            super::receiver("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
    }
}
