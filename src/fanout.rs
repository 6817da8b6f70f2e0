//! Invalidation fan-out: every node sharing a store drops the cached rights decisions an
//! admin write on any node made wrong.
//!
//! ```text
//! admin write on node A ─► A's own cache (at once, before the answer)
//!                       └► NOTIFY usher_invalidate {node, scope, …} ─► PostgreSQL
//!                                                   ─► LISTEN on B, C ─► their caches
//! ```
//!
//! A node learns nothing while it is not subscribed, so it does not trust its cache then:
//! when the subscription is lost it drops every cached decision and decides each request
//! from the store until it is subscribed again (and drops them once more then, for what
//! it cached in between). A decision served from a node's cache is therefore never older
//! than the last invalidation it could have missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_postgres::AsyncMessage;

use crate::config::PostgresConfig;
use crate::metrics::FanoutMetrics;
use crate::proxy::State;
use crate::rights::postgres::PostgresStore;

/// The PostgreSQL channel invalidations travel on.
pub const CHANNEL: &str = "usher_invalidate";

/// The longest message sent as it is: PostgreSQL refuses a `NOTIFY` payload of 8000 bytes
/// or more. A longer one (a scoped invalidation naming hundreds of media) is sent as one
/// that drops more ([`Invalidation::coarser`]), never dropped.
const MAX_PAYLOAD: usize = 7000;

/// What an invalidation drops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Invalidation {
    /// Every decision about an account or purchase holder (a purchase or account changed).
    Subject {
        /// The account.
        subject: String,
    },
    /// Decisions about a subject, some media, or both (`POST /api/v1/rights/invalidate`).
    Scoped {
        /// The account, if named.
        subject: Option<String>,
        /// The media codes, if named.
        content: Option<Vec<String>>,
    },
    /// Every decision, and the media index (a product or media changed).
    All,
}

impl Invalidation {
    /// An invalidation that drops at least what this one drops, in fewer words: a scoped
    /// one with a subject becomes that subject's, anything else every decision.
    pub fn coarser(self) -> Invalidation {
        match self {
            Invalidation::Scoped {
                subject: Some(subject),
                ..
            } => Invalidation::Subject { subject },
            _ => Invalidation::All,
        }
    }

    fn scope(&self) -> &'static str {
        match self {
            Invalidation::Subject { .. } => "subject",
            Invalidation::Scoped { .. } => "scoped",
            Invalidation::All => "all",
        }
    }
}

/// One message on the channel.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The sending node, which has applied it already.
    node: String,
    #[serde(flatten)]
    what: Invalidation,
}

/// The sending side, and what the listener needs; inert on the embedded store.
pub struct Fanout {
    /// This node's random id, to skip its own messages.
    node: String,
    /// The shared store, when there is one.
    store: Option<Arc<PostgresStore>>,
    metrics: FanoutMetrics,
}

impl Fanout {
    /// Fan-out through `store`, or none (`None`: one node, nothing to tell).
    pub fn new(store: Option<Arc<PostgresStore>>, metrics: FanoutMetrics) -> Self {
        Self {
            node: crate::sessions::new_id(),
            store,
            metrics,
        }
    }

    /// Whether other nodes may share this node's store.
    pub fn is_shared(&self) -> bool {
        self.store.is_some()
    }

    /// On a shared store, whether the store answered its last operation and this node hears
    /// the others' invalidations, as `(store, subscribed)`; `None` on the embedded store.
    pub fn health(&self) -> Option<(bool, bool)> {
        let store = self.store.as_ref()?;
        Some((store.reachable(), self.metrics.up.get() == 1))
    }

    /// Tells the other nodes, in the background (the write is committed: a node that
    /// reads the store after the message arrives sees it). A failure is logged and counted;
    /// nodes whose subscription broke flush their caches on their own.
    pub fn publish(&self, what: Invalidation) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let Some((scope, payload)) = self.encoded(what) else {
            return;
        };
        let metrics = self.metrics.clone();
        let send = move || {
            // A busy pool or a blip is retried (3 tries, 50 ms and 200 ms apart); the
            // nodes' caches depend on it.
            let mut last = None;
            for pause in [0, 50, 200] {
                std::thread::sleep(Duration::from_millis(pause));
                match store.notify(CHANNEL, payload.clone()) {
                    Ok(()) => {
                        metrics.sent.with_label_values(&[scope]).inc();
                        return;
                    }
                    Err(e) => last = Some(e),
                }
            }
            metrics.errors.with_label_values(&["publish"]).inc();
            if let Some(e) = last {
                tracing::error!(error = %e, "invalidation not sent to the other nodes");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(send)),
            Err(_) => send(),
        }
    }

    /// The message for `what`, made coarser until it fits in a `NOTIFY`, and its scope.
    fn encoded(&self, mut what: Invalidation) -> Option<(&'static str, String)> {
        loop {
            let scope = what.scope();
            let message = Message {
                node: self.node.clone(),
                what,
            };
            match serde_json::to_string(&message) {
                Ok(payload) if payload.len() <= MAX_PAYLOAD => return Some((scope, payload)),
                Ok(_) if message.what != Invalidation::All => what = message.what.coarser(),
                Ok(payload) => {
                    tracing::error!(bytes = payload.len(), "invalidation too long to send");
                    return None;
                }
                Err(e) => {
                    tracing::error!(error = %e, "invalidation not encoded");
                    return None;
                }
            }
        }
    }
}

/// Listens for the other nodes' invalidations until the process ends: subscribes, applies
/// each message, and on a lost subscription flushes the cache, stops caching and
/// resubscribes with backoff (100 ms doubling to 5 s).
pub async fn listen(state: Arc<State>, config: PostgresConfig) {
    let metrics = state.metrics.fanout.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(&config).await {
            Ok((client, mut messages)) => {
                backoff = Duration::from_millis(100);
                // What happened while unsubscribed is unknown: start from the store.
                reread(&state, Forget::Cache).await;
                set_caching(&state, true);
                metrics.up.set(1);
                tracing::info!("subscribed to the other nodes' invalidations");
                while let Some(payload) = messages.recv().await {
                    apply(&state, &payload).await;
                }
                drop(client);
                metrics.up.set(0);
                metrics.errors.with_label_values(&["lost"]).inc();
                tracing::warn!(
                    "invalidation subscription lost; deciding from the store until it is back"
                );
            }
            Err(e) => {
                metrics.up.set(0);
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to invalidations");
            }
        }
        set_caching(&state, false);
        reread(&state, Forget::Cache).await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A listening connection: the client (dropping it ends the subscription) and the
/// payloads that arrive on [`CHANNEL`]; the channel closes when the connection breaks.
async fn subscribe(
    config: &PostgresConfig,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ),
    String,
> {
    let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| format!("{e}"))?;
    // A silent peer (a partition, not a shutdown) is found by TCP keepalives: probes after
    // 10 s of silence, 5 s apart, 3 unanswered end the connection (about 25 s; the
    // system's defaults would take 11 minutes), and the node stops trusting its cache.
    pg.connect_timeout(config.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .application_name("usher-listen");
    let tls = crate::rights::postgres::tls(config).map_err(|e| e.to_string())?;
    let (client, mut connection) = pg.connect(tls).await.map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "invalidation connection failed");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| e.to_string())?;
    Ok((client, rx))
}

async fn apply(state: &Arc<State>, payload: &str) {
    let message: Message = match serde_json::from_str(payload) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable invalidation; dropping every decision");
            reread(state, Forget::Everything).await;
            return;
        }
    };
    if message.node == state.fanout.node {
        return;
    }
    let Some(rights) = &state.rights else {
        return;
    };
    state
        .metrics
        .fanout
        .received
        .with_label_values(&[message.what.scope()])
        .inc();
    match message.what {
        Invalidation::Subject { subject } => rights.invalidate_subject(&subject),
        Invalidation::Scoped { subject, content } => {
            rights
                .invalidate(subject.as_deref(), content.as_deref())
                .await;
        }
        Invalidation::All => reread(state, Forget::Everything).await,
    }
}

/// What [`reread`] forgets besides re-reading the media index.
enum Forget {
    /// Every cached decision, keeping the grace memory: nothing is known to have changed,
    /// only that something might have (a lost subscription).
    Cache,
    /// The grace memory too: something changed (a product or media write elsewhere).
    Everything,
}

/// Drops cached decisions and re-reads the media index, off the async threads (the store
/// blocks).
async fn reread(state: &Arc<State>, forget: Forget) {
    let state = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let Some(rights) = &state.rights else {
            return;
        };
        let result = match forget {
            Forget::Cache => rights.flush_cache(),
            Forget::Everything => rights.invalidate_all(),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "media index not re-read; the old one serves until a retry reads it");
        }
    })
    .await;
}

fn set_caching(state: &State, on: bool) {
    if let Some(rights) = &state.rights {
        rights.set_caching(on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(what: Invalidation) -> Invalidation {
        let fanout = Fanout::new(None, crate::metrics::Metrics::new().fanout);
        let (scope, payload) = fanout.encoded(what).unwrap();
        assert!(payload.len() <= MAX_PAYLOAD, "{}", payload.len());
        let message: Message = serde_json::from_str(&payload).unwrap();
        assert_eq!(scope, message.what.scope());
        message.what
    }

    #[test]
    fn an_invalidation_too_long_for_notify_is_sent_coarser_never_dropped() {
        let content: Vec<String> = (0..500).map(|n| format!("series-episode-{n:04}")).collect();
        let small = Invalidation::Scoped {
            subject: Some("alice".into()),
            content: Some(content[..3].to_vec()),
        };
        assert_eq!(sent(small.clone()), small);
        let named = Invalidation::Scoped {
            subject: Some("alice".into()),
            content: Some(content.clone()),
        };
        assert_eq!(
            sent(named),
            Invalidation::Subject {
                subject: "alice".into()
            }
        );
        let unnamed = Invalidation::Scoped {
            subject: None,
            content: Some(content),
        };
        assert_eq!(sent(unnamed), Invalidation::All);
    }
}
