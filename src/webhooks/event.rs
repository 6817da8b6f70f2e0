//! What happened, as receivers see it in a payload's `data`.

use serde::Serialize;

use crate::config::webhooks::EventKind;
use crate::rights::model::{Purchase, PurchaseStatus};

/// A purchase as events describe it: no ticket (a credential), no contact details (read
/// them with `GET /api/v1/buyers/{hash}` when needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurchaseInfo {
    /// The purchase's hash.
    pub purchase: String,
    /// Its product.
    pub product: String,
    /// Its media, when it names one.
    pub media: Option<String>,
    /// The buyer's account.
    pub account: String,
    /// `active` or `revoked`.
    pub status: PurchaseStatus,
    /// When it was bought.
    pub purchased_at: u64,
    /// Start of access, when set.
    pub access_start: Option<u64>,
    /// End of access, when set.
    pub access_expire: Option<u64>,
}

impl From<&Purchase> for PurchaseInfo {
    fn from(p: &Purchase) -> Self {
        Self {
            purchase: p.hash.clone(),
            product: p.product.clone(),
            media: p.media.clone(),
            account: p.account.clone(),
            status: p.status,
            purchased_at: p.purchased_at,
            access_start: p.access_start,
            access_expire: p.access_expire,
        }
    }
}

/// One event. Serialised as the payload's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// A buyer was added.
    Purchase(PurchaseInfo),
    /// A purchase was revoked.
    Revoke(PurchaseInfo),
    /// A purchase played for the first time; `hours_from = "first_play"` windows start.
    FirstPlay {
        /// The purchase's hash.
        purchase: String,
        /// Its product.
        product: String,
        /// The buyer's account.
        account: String,
        /// When the first play was recorded.
        at: u64,
    },
    /// A device was refused: every activation of the purchase is used by other devices.
    ActivationRefused {
        /// The purchase's hash.
        purchase: String,
        /// Its product.
        product: String,
        /// The account.
        account: String,
        /// The refused device, hashed as in `GET /api/v1/buyers/{hash}/devices`.
        device: Option<String>,
        /// The activation limit.
        limit: Option<u32>,
    },
    /// A newer session replaced this one (policy `replace_oldest`).
    SessionReplaced {
        /// The replaced session's id.
        sid: String,
        /// The account.
        account: String,
        /// The purchase it played under.
        purchase: Option<String>,
        /// The product.
        product: Option<String>,
        /// The device (hashed).
        device: Option<String>,
    },
}

impl Event {
    /// Its kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Purchase(_) => EventKind::Purchase,
            Event::Revoke(_) => EventKind::Revoke,
            Event::FirstPlay { .. } => EventKind::FirstPlay,
            Event::ActivationRefused { .. } => EventKind::ActivationRefused,
            Event::SessionReplaced { .. } => EventKind::SessionReplaced,
        }
    }

    /// The payload: `{"id", "type", "created_at", "data"}`, as sent and signed.
    pub fn payload(&self, id: &str, now: u64) -> String {
        serde_json::json!({
            "id": id,
            "type": self.kind().as_str(),
            "created_at": now,
            "data": self,
        })
        .to_string()
    }
}
