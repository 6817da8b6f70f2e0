//! `[webhooks]`, checked: the receivers, their secrets and events, and the queue's bounds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One kind of event a receiver can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A buyer was added (JSON API, facade, video-ticket call, CLI).
    Purchase,
    /// A purchase was revoked.
    Revoke,
    /// A purchase was played for the first time (its first play was recorded).
    FirstPlay,
    /// A device was refused because every activation of the purchase is used.
    ActivationRefused,
    /// A session was replaced by a newer one (policy `replace_oldest`).
    SessionReplaced,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 5] = [
        EventKind::Purchase,
        EventKind::Revoke,
        EventKind::FirstPlay,
        EventKind::ActivationRefused,
        EventKind::SessionReplaced,
    ];

    /// The name used in config, payloads and the `X-Usher-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Purchase => "purchase",
            EventKind::Revoke => "revoke",
            EventKind::FirstPlay => "first_play",
            EventKind::ActivationRefused => "activation_refused",
            EventKind::SessionReplaced => "session_replaced",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A receiver.
#[derive(Clone)]
pub struct Endpoint {
    /// Where deliveries are POSTed; also its identity in the queue.
    pub url: String,
    /// The HMAC-SHA256 key.
    pub secret: Arc<[u8]>,
    /// The events it receives.
    pub events: Vec<EventKind>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("secret", &"<hidden>")
            .field("events", &self.events)
            .finish()
    }
}

/// `[webhooks]`, checked.
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    /// The receivers; none: no event is queued.
    pub endpoints: Vec<Endpoint>,
    /// Most deliveries waiting; when full the oldest is dropped.
    pub queue_limit: u64,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Wait before the first retry.
    pub retry_initial: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Attempts after which a delivery is given up.
    pub max_attempts: u32,
    /// Most deliveries in flight to one receiver at once (at most
    /// [`crate::webhooks::MAX_IN_FLIGHT`]): a receiver that stalls holds no more slots
    /// than this, and the others keep theirs.
    pub max_in_flight_per_endpoint: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            queue_limit: 10_000,
            timeout: Duration::from_secs(5),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            max_attempts: 15,
            max_in_flight_per_endpoint: 8,
        }
    }
}

impl WebhooksConfig {
    /// The receivers subscribed to `kind`.
    pub fn subscribed(&self, kind: EventKind) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(move |e| e.events.contains(&kind))
    }

    /// The receiver at `url`, if still configured.
    pub fn endpoint(&self, url: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.url == url)
    }

    /// Wait before attempt `attempts + 1`, after `attempts` failed: the initial wait
    /// doubled per failure, at most `retry_max`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.retry_initial
            .saturating_mul(factor)
            .min(self.retry_max)
    }
}
