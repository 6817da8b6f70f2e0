//! What operators sell and to whom: products, media, purchases (buyers) and accounts.
//! Times are Unix seconds (UTC). These are stored as JSON, so a field added later needs a
//! `#[serde(default)]`, not a migration.

use serde::{Deserialize, Serialize};

/// Single or group product (the PPV API's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProductType {
    /// One piece of content.
    #[default]
    Single,
    /// Several pieces of content sold together.
    Group,
}

/// Whether a product can be sold and played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Sellable and playable (inside its availability window).
    #[default]
    Active,
    /// Neither: purchases of it are refused with `product_inactive`.
    Inactive,
}

/// Where a purchase's rights run from when a product gives a number of hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HoursFrom {
    /// From the moment of purchase (the TVMS PPV rule).
    #[default]
    Purchase,
    /// From the first time the buyer plays it.
    FirstPlay,
}

/// Kinds of device a product may be played on (GVP's device classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    /// Apps and browsers over the internet.
    Ott,
    /// Managed set-top boxes.
    Iptv,
    /// Set-top boxes that do both.
    Hybrid,
}

impl DeviceClass {
    /// Parses `ott`, `iptv` or `hybrid` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "ott" => Some(DeviceClass::Ott),
            "iptv" => Some(DeviceClass::Iptv),
            "hybrid" => Some(DeviceClass::Hybrid),
            _ => None,
        }
    }
}

/// A PPV event, rental or subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Unique code (the PPV API's `code`).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Single or group.
    #[serde(default)]
    pub kind: ProductType,
    /// Active or inactive.
    #[serde(default)]
    pub status: Status,
    /// Not sellable or playable before this instant.
    #[serde(default)]
    pub available_from: Option<u64>,
    /// Not sellable or playable from this instant on.
    #[serde(default)]
    pub available_until: Option<u64>,
    /// Price, recorded as written (`"100.00"`), never charged by usher.
    #[serde(default)]
    pub cost: Option<String>,
    /// Currency of `cost` (ISO 4217).
    #[serde(default)]
    pub currency: Option<String>,
    /// Rights last this many days from purchase.
    #[serde(default)]
    pub period_days: Option<u32>,
    /// Rights start no earlier than this.
    #[serde(default)]
    pub access_start: Option<u64>,
    /// Rights end no later than this.
    #[serde(default)]
    pub access_expire: Option<u64>,
    /// Rights last this many hours from purchase or first play.
    #[serde(default)]
    pub hours: Option<u32>,
    /// Where `hours` counts from.
    #[serde(default)]
    pub hours_from: HoursFrom,
    /// How many distinct devices may ever activate one purchase.
    #[serde(default)]
    pub activations: Option<u32>,
    /// How many devices of one account may play it at once (`device_ban` is 1).
    #[serde(default)]
    pub max_devices: Option<u32>,
    /// How many sessions of one account may play it at once.
    #[serde(default)]
    pub max_sessions: Option<u32>,
    /// What a session past a limit does: refuse the new one, or replace the oldest.
    #[serde(default)]
    pub concurrency_policy: crate::sessions::Policy,
    /// Whether a viewer who lost a session may resume it from the same network without a
    /// new activation.
    #[serde(default)]
    pub ip_recovery: bool,
    /// Seconds at the start of each media that play without a ticket.
    #[serde(default)]
    pub preview_seconds: u32,
    /// Device classes it may be played on; empty means all.
    #[serde(default)]
    pub device_classes: Vec<DeviceClass>,
    /// When it was created.
    #[serde(default)]
    pub created_at: u64,
}

/// A piece of content: a content id mapped to an origin path prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// Unique content id (the PPV API's media `code`).
    pub code: String,
    /// Display title.
    #[serde(default)]
    pub title: String,
    /// Origin path prefix holding it, normalised, ending in `/` (`/events/final/`).
    pub prefix: String,
    /// Entry playlist below the prefix (`master.m3u8`).
    #[serde(default = "default_playlist")]
    pub playlist: String,
    /// Editorial id grouping technical renditions (4K/HD/SD): a right on the editorial id
    /// covers every media that names it.
    #[serde(default)]
    pub editorial: Option<String>,
    /// A live event: may be sold before its stream exists at the origin.
    #[serde(default)]
    pub live: bool,
    /// The title of the live event the media stands for at the moment (the seeds' "LIVE
    /// Title": one media sold ahead for Jan 1, retitled for Jan 2; it may change at any
    /// time, unlike the code buyers hold).
    #[serde(default)]
    pub live_title: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created_at: u64,
}

fn default_playlist() -> String {
    "master.m3u8".to_owned()
}

/// Whether a purchase still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PurchaseStatus {
    /// In force (within its window).
    #[default]
    Active,
    /// Revoked by the operator: refused with `revoked`.
    Revoked,
}

/// A buyer's purchase of a product (the PPV API's buyer, identified by its `hash`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    /// Unique id (the PPV API's `hash`, the access password).
    pub hash: String,
    /// The product bought.
    pub product: String,
    /// The media it was bought for, when bought for one (the PPV API's `media`).
    #[serde(default)]
    pub media: Option<String>,
    /// The account (subject of its tickets).
    pub account: String,
    /// Buyer's email; not unique.
    #[serde(default)]
    pub email: Option<String>,
    /// Buyer's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Buyer's phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Rights start no earlier than this (overrides the product's).
    #[serde(default)]
    pub access_start: Option<u64>,
    /// Rights end at this instant: replaces every end the product gives (its
    /// `access_expire`, `period`, `hours`); only its `available_until` still bounds it.
    #[serde(default)]
    pub access_expire: Option<u64>,
    /// When it was bought.
    pub purchased_at: u64,
    /// First play, recorded when the product counts hours from it.
    #[serde(default)]
    pub first_play_at: Option<u64>,
    /// Devices that may activate it (overrides the product's).
    #[serde(default)]
    pub activations: Option<u32>,
    /// The ticket issued for it.
    #[serde(default)]
    pub ticket: Option<String>,
    /// Active or revoked.
    #[serde(default)]
    pub status: PurchaseStatus,
}

impl Purchase {
    /// An active purchase of `product` by `account` at `now`, with nothing else set yet.
    pub fn new(hash: String, product: &str, account: String, now: u64) -> Self {
        Self {
            hash,
            product: product.to_owned(),
            media: None,
            account,
            email: None,
            name: None,
            phone: None,
            access_start: None,
            access_expire: None,
            purchased_at: now,
            first_play_at: None,
            activations: None,
            ticket: None,
            status: PurchaseStatus::Active,
        }
    }
}

/// An account: a buyer id with an on/off switch and account-wide stream limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account id (the subject of tickets).
    pub id: String,
    /// Disabled accounts hold nothing: every check says `account_disabled`.
    pub enabled: bool,
    /// Concurrent sessions over all its products.
    #[serde(default)]
    pub max_sessions: Option<u32>,
    /// Concurrent devices over all its products.
    #[serde(default)]
    pub max_devices: Option<u32>,
}

/// A device that activated a purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The hashed device id.
    pub device: String,
    /// The device id as the operator gave it, for devices the operator added ahead of use
    /// (`POST /api/v1/buyers/{hash}/devices`); `None` for devices a player activated, whose
    /// id usher never stores.
    #[serde(default)]
    pub id: Option<String>,
    /// When it activated the purchase.
    pub bound_at: u64,
}

/// The seller's contacts (the PPV API's `contacts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    /// Seller's name.
    #[serde(default)]
    pub name: String,
    /// Seller's phone.
    #[serde(default)]
    pub phone: String,
    /// Shop email.
    #[serde(default)]
    pub email: String,
    /// Shop site.
    #[serde(default)]
    pub site: String,
    /// Shop description.
    #[serde(default)]
    pub description: String,
}
