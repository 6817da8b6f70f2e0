//! The one trait all rights state goes through, so a shared store (PostgreSQL, Redis) can
//! stand next to the embedded one. Every method is one transaction: it happens whole or not
//! at all, and once it returns `Ok` it survives a crash.
//!
//! # Concurrency
//! Methods block (they do file I/O); async callers run them on the blocking pool.

use super::model::{Account, Binding, Contacts, Media, Product, Purchase, PurchaseStatus};

/// What binding a device to a purchase did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// The device had activated this purchase before.
    Known,
    /// The device activated it now (one activation used).
    Bound,
    /// Every activation is used by other devices.
    LimitReached,
}

/// What recording a sale under an idempotency key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedSale {
    /// The key was new: the purchase is recorded under it.
    Created,
    /// The key was taken (by an earlier or a concurrent sale): nothing was written.
    Taken(SaleKey),
}

/// The sale an idempotency key made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SaleKey {
    /// The purchase it made.
    pub purchase: String,
    /// The fingerprint of the request that made it.
    pub fingerprint: String,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The thing named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique value is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The backend failed (disk, corruption); nothing was written.
    #[error("store failure: {0}")]
    Backend(String),
    /// A shared backend cannot be reached or did not answer in time; nothing was written
    /// (a transaction that did not commit is rolled back by the server).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A shared backend stopped answering after a write was sent (the connection broke,
    /// or no answer came in time): it may or may not stand. Repeat it with the same
    /// idempotency key, or read it back.
    #[error("store outcome unknown: {0}")]
    Unknown(String),
    /// The thing named was written by someone else since the caller read it; nothing was
    /// written.
    #[error("{0} changed since it was read")]
    Changed(String),
    /// The thing named is held by `buyers` active purchases, so it was not deleted.
    #[error("{what} has {buyers} buyers")]
    Held {
        /// What it is (`product P1`).
        what: String,
        /// How many active purchases hold it.
        buyers: u64,
    },
    /// A sale of one media found, in its own transaction, that the product no longer
    /// holds it (it was taken out since the seller checked); nothing was written.
    #[error("media {media} is not in product {product}")]
    NotInProduct {
        /// The product sold.
        product: String,
        /// The media the sale named.
        media: String,
    },
}

/// A page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Items to skip.
    pub offset: u32,
    /// Items to return, at most [`Page::MAX_LIMIT`].
    pub limit: u32,
}

impl Page {
    /// Largest page.
    pub const MAX_LIMIT: u32 = 1000;
    /// The first largest page: everything, for lists that are small by nature.
    pub const ALL: Page = Page {
        offset: 0,
        limit: Page::MAX_LIMIT,
    };
}

impl Default for Page {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: 100,
        }
    }
}

/// Which purchases a listing returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurchaseFilter {
    /// Of this product.
    pub product: Option<String>,
    /// Bought for this media.
    pub media: Option<String>,
    /// With this email (not unique: several may match).
    pub email: Option<String>,
    /// Of this account.
    pub account: Option<String>,
    /// In this status.
    pub status: Option<PurchaseStatus>,
}

/// One recorded admin write (see `crate::admin::audit`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Its number, in the order written (0 before it is appended).
    pub id: u64,
    /// When (Unix seconds).
    pub at: u64,
    /// Who: the name of the admin credential, or `signal` for a SIGHUP.
    pub actor: String,
    /// Through what: `api`, `facade`, `cli`, `reload` or `signal`.
    pub interface: String,
    /// What, such as `purchase.update`.
    pub action: String,
    /// The kind of thing written: `product`, `media`, `purchase`, …
    pub target_kind: String,
    /// Its id (`product/content` for a link, `purchase/device` for a device).
    pub target: String,
    /// The purchase concerned, if any.
    pub purchase: Option<String>,
    /// The account concerned, if any.
    pub account: Option<String>,
    /// The changed fields: `{"field": {"before": …, "after": …}}`, credentials redacted.
    pub changes: serde_json::Value,
}

/// Which audit entries a listing returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Concerning this purchase.
    pub purchase: Option<String>,
    /// Concerning this account.
    pub account: Option<String>,
    /// Of this action.
    pub action: Option<String>,
    /// At or after this time (Unix seconds).
    pub since: Option<u64>,
}

/// Rights state.
pub trait Store: WebhookQueue + Send + Sync + 'static {
    /// Creates a product. `Conflict` when the code is taken.
    fn create_product(&self, product: &Product) -> Result<(), StoreError>;
    /// Replaces a product. `NotFound` when it does not exist.
    fn update_product(&self, product: &Product) -> Result<(), StoreError>;
    /// A product by code.
    fn product(&self, code: &str) -> Result<Option<Product>, StoreError>;
    /// Products, oldest first.
    fn products(&self, page: Page) -> Result<Vec<Product>, StoreError>;
    /// How many products there are.
    fn product_count(&self) -> Result<u64, StoreError>;
    /// Deletes a product with its media links and its purchases. Unless `force`, a product
    /// that active (not revoked) purchases hold is refused with `Held`, checked in the
    /// delete's own transaction: a sale that commits while the delete runs is counted, not
    /// deleted with the product.
    fn delete_product(&self, code: &str, force: bool) -> Result<(), StoreError>;

    /// Creates a media. `Conflict` when the code or the prefix is taken.
    fn create_media(&self, media: &Media) -> Result<(), StoreError>;
    /// A media by code.
    fn media(&self, code: &str) -> Result<Option<Media>, StoreError>;
    /// Every media (for the in-memory path index).
    fn all_media(&self) -> Result<Vec<Media>, StoreError>;
    /// Deletes a media and the links to it. Unless `force`, refused with `Held` while
    /// purchases not revoked hold it (bought for it, or of a product that contains it or
    /// its editorial id), counted inside the delete's transaction so that a sale in flight
    /// is counted too.
    fn delete_media(&self, code: &str, force: bool) -> Result<(), StoreError>;
    /// Replaces a media's fields (its code stays). `NotFound` when it does not exist,
    /// `Conflict` when a new prefix is taken.
    fn update_media(&self, media: &Media) -> Result<(), StoreError>;

    /// Puts a content id (a media code or an editorial id) in a product. Idempotent.
    fn link(&self, product: &str, content: &str) -> Result<(), StoreError>;
    /// Takes a content id out of a product. `NotFound` when it was not in it. Unless
    /// `force`, refused with `Held` while any of [`Store::unlink_buyers`] stand, counted
    /// in the unlink's own transaction as [`Store::delete_product`] counts its buyers.
    fn unlink(&self, product: &str, content: &str, force: bool) -> Result<(), StoreError>;
    /// The active (not revoked) purchases an unlink of `content` from `product` takes
    /// something from: those of the product that name that media (bought for it, or for
    /// a media whose editorial id it is); and, when the product links nothing else (the
    /// unlink leaves it empty), every active purchase of it, whole-product ones included.
    /// Other purchases of the whole product are not counted: the rest of it stays theirs.
    fn unlink_buyers(&self, product: &str, content: &str) -> Result<u64, StoreError>;
    /// The content ids in a product.
    fn linked(&self, product: &str) -> Result<Vec<String>, StoreError>;
    /// The products holding `content` or `editorial` (a media's code and editorial id),
    /// in list order, however many products there are.
    fn products_holding(&self, content: &str, editorial: &str) -> Result<Vec<Product>, StoreError>;

    /// Records a purchase, creating its account (enabled) if new, with `events` (the
    /// webhook deliveries that announce it) in the same transaction: the sale and its
    /// announcement stand or fall together. Under `key` (an idempotency key and the
    /// request's fingerprint) the check is in that transaction too: of two concurrent
    /// sales with one key, one records and the other gets [`KeyedSale::Taken`] with the
    /// first's purchase, and writes nothing. The key lives as long as its purchase.
    ///
    /// When `within` is not empty (a sale of one media: the content ids that cover it, as
    /// [`super::index::MediaRef::covered_by`] lists them), the product must still link one
    /// of them, checked in that transaction too: else [`StoreError::NotInProduct`], and
    /// nothing is written. So a sale and an unlink of the link it was sold under never both
    /// stand without the unlink having counted the sale, as far as the unlink counts (not
    /// a media nested under the content taken out; see the README's unlink row).
    ///
    /// # Concurrency
    /// On PostgreSQL such a sale takes a key-share lock on its product before it checks,
    /// so an unlink in flight (which locks the product for update) is waited for and seen.
    fn record_sale(
        &self,
        purchase: &Purchase,
        key: Option<(&str, &str)>,
        events: &[NewDelivery],
        within: &[String],
    ) -> Result<KeyedSale, StoreError>;
    /// Records a purchase without key or events, and without checking its media is still
    /// in its product (see [`Store::record_sale`]).
    fn create_purchase(&self, purchase: &Purchase) -> Result<(), StoreError> {
        self.record_sale(purchase, None, &[], &[]).map(drop)
    }
    /// Records a purchase under an idempotency `key`, without events (see
    /// [`Store::record_sale`]).
    fn create_purchase_keyed(
        &self,
        purchase: &Purchase,
        key: &str,
        fingerprint: &str,
    ) -> Result<KeyedSale, StoreError> {
        self.record_sale(purchase, Some((key, fingerprint)), &[], &[])
    }
    /// The sale an idempotency key made, if any.
    fn sale_key(&self, key: &str) -> Result<Option<SaleKey>, StoreError>;
    /// Replaces purchase `before` with `after` (same hash), with `events` in the same
    /// transaction, if the stored purchase is still `before`. `Changed` when it was
    /// written since `before` was read (nothing is written: read it again and redo the
    /// change), `NotFound` when it is gone.
    fn replace_purchase(
        &self,
        before: &Purchase,
        after: &Purchase,
        events: &[NewDelivery],
    ) -> Result<(), StoreError>;
    /// A purchase by hash.
    fn purchase(&self, hash: &str) -> Result<Option<Purchase>, StoreError>;
    /// Purchases matching `filter`, in the order they were made.
    fn purchases(&self, filter: &PurchaseFilter, page: Page) -> Result<Vec<Purchase>, StoreError>;
    /// How many purchases match `filter`.
    fn purchase_count(&self, filter: &PurchaseFilter) -> Result<u64, StoreError>;
    /// Records the first play of a purchase at `now`, only if none is recorded (one
    /// statement, so it cannot undo a concurrent revoke), with `events` (the webhook
    /// deliveries that announce it) in the same transaction when it writes. `Ok(true)`
    /// when it wrote.
    fn record_first_play(
        &self,
        hash: &str,
        now: u64,
        events: &[NewDelivery],
    ) -> Result<bool, StoreError>;
    /// Deletes a purchase.
    fn delete_purchase(&self, hash: &str) -> Result<(), StoreError>;
    /// The account's purchases of products that contain any of `contents` (content ids:
    /// a media's code and editorial id, and those of the media enclosing it, as
    /// [`super::index::MediaRef::covered_by`] lists them), each purchase once, with its
    /// product: everything a rights decision needs.
    fn entitlements(
        &self,
        account: &str,
        contents: &[String],
    ) -> Result<Vec<(Purchase, Product)>, StoreError>;

    /// An account by id.
    fn account(&self, id: &str) -> Result<Option<Account>, StoreError>;
    /// Creates or replaces an account.
    fn put_account(&self, account: &Account) -> Result<(), StoreError>;
    /// Every account, by id (for `usher store export`).
    fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// Every idempotency key with the sale it made, by key (for `usher store export`).
    fn sale_keys(&self) -> Result<Vec<(String, SaleKey)>, StoreError>;
    /// Records `key` for a purchase already recorded (for `usher store import`).
    /// `Conflict` when the key is taken, `NotFound` when the purchase is not recorded.
    fn put_sale_key(&self, key: &str, sale: &SaleKey) -> Result<(), StoreError>;

    /// Activates `purchase` on `device` (hashed) unless `limit` devices already did, in one
    /// transaction, so two devices racing for the last activation cannot both get it.
    fn bind_device(
        &self,
        purchase: &str,
        device: &str,
        limit: Option<u32>,
        now: u64,
    ) -> Result<Bind, StoreError>;
    /// Binds `device` (hashed) to `purchase` ahead of use, as [`Store::bind_device`] does
    /// (the same activation limit), remembering the operator's `id` for it. A device bound
    /// before keeps its activation and gains the id.
    fn add_device(
        &self,
        purchase: &str,
        device: &str,
        id: &str,
        limit: Option<u32>,
        now: u64,
    ) -> Result<Bind, StoreError>;
    /// The devices that activated `purchase`, oldest first.
    fn devices(&self, purchase: &str) -> Result<Vec<Binding>, StoreError>;
    /// Frees the activation `device` holds on `purchase`. `NotFound` if it held none.
    fn unbind_device(&self, purchase: &str, device: &str) -> Result<(), StoreError>;
    /// Moves an activation from one device to another (IP recovery), keeping the count.
    fn rebind_device(
        &self,
        purchase: &str,
        from: &str,
        to: &str,
        now: u64,
    ) -> Result<(), StoreError>;

    /// The seller's contacts.
    fn contacts(&self) -> Result<Contacts, StoreError>;
    /// Replaces the seller's contacts.
    fn put_contacts(&self, contacts: &Contacts) -> Result<(), StoreError>;

    /// Appends an entry to the audit trail (its `id` is ignored); durable like every write.
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Audit entries matching `filter`, oldest first, and how many match in all.
    fn audit(&self, filter: &AuditFilter, page: Page)
        -> Result<(Vec<AuditEntry>, u64), StoreError>;
}

/// A webhook delivery to queue: one event for one receiver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewDelivery {
    /// The receiver's URL (its identity; the secret is never stored).
    pub endpoint: String,
    /// The event's kind (`purchase`, …).
    pub event: String,
    /// The event's id, the same for every receiver and attempt.
    pub event_id: String,
    /// The JSON payload, exactly as it is sent and signed.
    pub body: String,
    /// When it is first due (Unix seconds).
    pub due: u64,
}

/// A queued webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDelivery {
    /// Queue id.
    pub id: i64,
    /// What was queued.
    pub delivery: NewDelivery,
    /// Attempts that failed so far.
    pub attempts: u32,
}

/// One receiver's deliveries waiting in the webhook queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// The receiver's URL.
    pub endpoint: String,
    /// Deliveries waiting: due, leased (in flight) or backing off.
    pub waiting: u64,
    /// Those of them that can be claimed now.
    pub due: u64,
}

/// The persisted webhook queue: deliveries survive a restart until they are delivered or
/// given up. At least once: a delivery claimed before a crash is claimed again after it.
pub trait WebhookQueue {
    /// Queues `deliveries`; when that makes more than `limit`, drops the oldest to `limit`
    /// in the same transaction. The number dropped.
    fn enqueue_webhooks(&self, deliveries: &[NewDelivery], limit: u64) -> Result<u64, StoreError>;
    /// Up to `max` deliveries to `endpoint` due at `now`, oldest due first, each leased
    /// until `now + lease` (not claimed again before, unless marked).
    fn claim_webhooks(
        &self,
        endpoint: &str,
        now: u64,
        lease: u64,
        max: u32,
    ) -> Result<Vec<QueuedDelivery>, StoreError>;
    /// Removes a delivery: delivered, or given up.
    fn webhook_done(&self, id: i64) -> Result<(), StoreError>;
    /// Records a failed attempt; the delivery is due again at `next_attempt`.
    fn webhook_failed(&self, id: i64, next_attempt: u64) -> Result<(), StoreError>;
    /// Deliveries waiting.
    fn webhook_queue_depth(&self) -> Result<u64, StoreError>;
    /// The deliveries waiting for each receiver that has any, and how many of them are due
    /// at `now`, by endpoint.
    fn webhook_backlog(&self, now: u64) -> Result<Vec<Backlog>, StoreError>;
    /// Every delivery waiting, in the order queued, leases ignored (for
    /// `usher store export`).
    fn pending_webhooks(&self) -> Result<Vec<QueuedDelivery>, StoreError>;
}
