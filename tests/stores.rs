//! The store contract, checked on both backends: the embedded SQLite file and a real
//! PostgreSQL server (one per test binary, a fresh database per test). Then what only a
//! shared store has to get right: several nodes racing for the last activation, the same
//! idempotency key, the same webhook delivery, and a server that goes away and comes back.

mod support;

use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use support::postgres::Postgres;
use usher::config::PostgresConfig;
use usher::metrics::Metrics;
use usher::rights::model::{
    Account, Contacts, DeviceClass, HoursFrom, Media, Product, ProductType, Purchase,
    PurchaseStatus, Status,
};
use usher::rights::postgres::PostgresStore;
use usher::rights::sqlite::SqliteStore;
use usher::rights::store::{
    AuditEntry, AuditFilter, Bind, KeyedSale, NewDelivery, Page, PurchaseFilter, SaleKey, Store,
    StoreError, WebhookQueue,
};

/// The server every test of this binary shares; each test takes its own database. It is
/// stopped by its watchdog when the test process exits.
fn server() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

fn pg_config(url: &str) -> PostgresConfig {
    PostgresConfig {
        url: url.to_owned(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(3),
        ca_file: None,
    }
}

/// A store on a fresh database `name` of the shared server (another call with the same
/// URL is another node).
fn postgres(url: &str) -> PostgresStore {
    PostgresStore::connect(&pg_config(url), Metrics::new().store).unwrap()
}

/// Runs `check` on a fresh SQLite store and on a fresh PostgreSQL database.
fn on_both(name: &str, check: fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    check(&SqliteStore::open(dir.path()).unwrap());
    check(&postgres(&server().database(name)));
}

fn product(code: &str) -> Product {
    Product {
        code: code.into(),
        name: format!("Product {code}"),
        description: String::new(),
        kind: ProductType::Single,
        status: Status::Active,
        available_from: None,
        available_until: None,
        cost: None,
        currency: None,
        period_days: Some(2),
        access_start: None,
        access_expire: None,
        hours: None,
        hours_from: HoursFrom::Purchase,
        activations: None,
        max_devices: None,
        max_sessions: None,
        concurrency_policy: usher::sessions::Policy::Refuse,
        ip_recovery: false,
        preview_seconds: 0,
        device_classes: vec![DeviceClass::Ott],
        created_at: 1,
    }
}

fn media(code: &str, prefix: &str, editorial: Option<&str>) -> Media {
    Media {
        code: code.into(),
        title: code.into(),
        prefix: prefix.into(),
        playlist: "master.m3u8".into(),
        editorial: editorial.map(Into::into),
        live: false,
        live_title: None,
        created_at: 1,
    }
}

fn purchase(hash: &str, product: &str, account: &str, email: &str) -> Purchase {
    Purchase {
        hash: hash.into(),
        product: product.into(),
        media: None,
        account: account.into(),
        email: Some(email.into()),
        name: None,
        phone: None,
        access_start: None,
        access_expire: None,
        purchased_at: 10,
        first_play_at: None,
        activations: None,
        ticket: None,
        status: PurchaseStatus::Active,
    }
}

fn codes_and_prefixes_are_unique(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    assert!(matches!(
        store.create_product(&product("P1")),
        Err(StoreError::Conflict(_))
    ));
    store.create_media(&media("m1", "/a/", None)).unwrap();
    assert!(matches!(
        store.create_media(&media("m2", "/a/", None)),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.update_product(&product("nope")),
        Err(StoreError::NotFound(_))
    ));
}

fn a_purchase_of_a_missing_product_is_not_found_and_writes_nothing(store: &dyn Store) {
    let got = store.create_purchase(&purchase("h1", "ghost", "alice", "a@x"));
    assert_eq!(got, Err(StoreError::NotFound("product ghost".into())));
    assert_eq!(
        store.account("alice").unwrap(),
        None,
        "no account half-written"
    );
}

fn entitlements_follow_media_and_editorial_links(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store.create_product(&product("P2")).unwrap();
    store
        .create_media(&media("final-4k", "/final/4k/", Some("final")))
        .unwrap();
    store
        .create_media(&media("final-hd", "/final/hd/", Some("final")))
        .unwrap();
    store.link("P1", "final").unwrap();
    store.link("P2", "final-hd").unwrap();
    store.link("P2", "final-hd").unwrap(); // idempotent
    assert!(matches!(
        store.link("ghost", "x"),
        Err(StoreError::NotFound(_))
    ));
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    store
        .create_purchase(&purchase("h2", "P2", "bob", "b@x"))
        .unwrap();
    assert!(store.account("alice").unwrap().unwrap().enabled);

    let alice_4k = store
        .entitlements("alice", &["final-4k".into(), "final".into()])
        .unwrap();
    assert_eq!(alice_4k.len(), 1, "the editorial right covers 4K");
    assert_eq!(alice_4k[0].0.hash, "h1");
    let bob_4k = store
        .entitlements("bob", &["final-4k".into(), "final".into()])
        .unwrap();
    assert!(bob_4k.is_empty(), "bob bought HD only");
    assert_eq!(
        store
            .entitlements("bob", &["final-hd".into(), "final".into()])
            .unwrap()
            .len(),
        1
    );

    store.unlink("P2", "final-hd").unwrap();
    assert!(store
        .entitlements("bob", &["final-hd".into(), "final".into()])
        .unwrap()
        .is_empty());
    store.delete_product("P1", true).unwrap();
    assert_eq!(
        store.purchase("h1").unwrap(),
        None,
        "purchases go with their product"
    );
}

/// The products that sell a media (`sendVideoTicket.php`), found however many products
/// stand before them: by the media's code or by its editorial id, in list order.
fn the_products_holding_a_media_are_found_past_any_page(store: &dyn Store) {
    for n in 0..=Page::MAX_LIMIT {
        store.create_product(&product(&format!("P{n:04}"))).unwrap();
    }
    store.link("P1000", "final").unwrap();
    store.link("P0003", "final-hd").unwrap();
    store.link("P0004", "other").unwrap();
    let codes = |content: &str, editorial: &str| -> Vec<String> {
        let found = store.products_holding(content, editorial).unwrap();
        found.into_iter().map(|p| p.code).collect()
    };
    assert_eq!(codes("final-hd", "final"), ["P0003", "P1000"]);
    assert_eq!(codes("final", "final"), ["P1000"]);
    assert!(codes("nothing", "nothing").is_empty());
}

fn listing_filters_and_pages(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    for n in 0..5 {
        let mut p = purchase(
            &format!("h{n}"),
            "P1",
            &format!("acct{n}"),
            "same@example.com",
        );
        p.purchased_at = 100 + n;
        store.create_purchase(&p).unwrap();
    }
    let by_email = PurchaseFilter {
        email: Some("SAME@example.com".into()),
        ..PurchaseFilter::default()
    };
    assert_eq!(
        store.purchases(&by_email, Page::default()).unwrap().len(),
        5,
        "email is not unique"
    );
    let page = store
        .purchases(
            &by_email,
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .unwrap();
    assert_eq!(
        page.iter().map(|p| p.hash.as_str()).collect::<Vec<_>>(),
        ["h1", "h2"]
    );
    let before = store.purchase("h3").unwrap().unwrap();
    let mut revoked = before.clone();
    revoked.status = PurchaseStatus::Revoked;
    store.replace_purchase(&before, &revoked, &[]).unwrap();
    let only_revoked = PurchaseFilter {
        status: Some(PurchaseStatus::Revoked),
        ..PurchaseFilter::default()
    };
    assert_eq!(
        store.purchases(&only_revoked, Page::default()).unwrap(),
        vec![revoked]
    );
}

fn accounts_and_contacts(store: &dyn Store) {
    store
        .put_account(&Account {
            id: "a".into(),
            enabled: false,
            max_sessions: Some(2),
            max_devices: None,
        })
        .unwrap();
    let account = store.account("a").unwrap().unwrap();
    assert_eq!(store.accounts().unwrap(), vec![account.clone()]);
    assert!(!account.enabled);
    assert_eq!(account.max_sessions, Some(2));
    assert_eq!(store.contacts().unwrap(), Contacts::default());
    let c = Contacts {
        name: "Alex".into(),
        phone: "+0 000".into(),
        ..Contacts::default()
    };
    store.put_contacts(&c).unwrap();
    assert_eq!(store.contacts().unwrap(), c);
}

fn activations_are_counted_per_purchase_and_can_be_freed(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    assert_eq!(
        store.bind_device("h1", "d1", Some(2), 1).unwrap(),
        Bind::Bound
    );
    assert_eq!(
        store.bind_device("h1", "d1", Some(2), 2).unwrap(),
        Bind::Known
    );
    assert_eq!(
        store.bind_device("h1", "d2", Some(2), 3).unwrap(),
        Bind::Bound
    );
    assert_eq!(
        store.bind_device("h1", "d3", Some(2), 4).unwrap(),
        Bind::LimitReached
    );
    assert_eq!(store.devices("h1").unwrap().len(), 2);
    store.unbind_device("h1", "d1").unwrap();
    assert_eq!(
        store.bind_device("h1", "d3", Some(2), 5).unwrap(),
        Bind::Bound
    );
    store.rebind_device("h1", "d3", "d4", 6).unwrap();
    let devices: Vec<String> = store
        .devices("h1")
        .unwrap()
        .into_iter()
        .map(|b| b.device)
        .collect();
    assert_eq!(devices, ["d2", "d4"]);
    assert!(matches!(
        store.unbind_device("h1", "nope"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.bind_device("ghost", "d1", None, 1),
        Err(StoreError::NotFound(_))
    ));
    store.delete_purchase("h1").unwrap();
    assert!(
        store.devices("h1").unwrap().is_empty(),
        "bindings go with their purchase"
    );
}

fn a_sale_key_records_once_and_goes_with_its_purchase(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    let first = purchase("h1", "P1", "alice", "a@example.com");
    assert_eq!(
        store
            .create_purchase_keyed(&first, "order-1", "fp")
            .unwrap(),
        KeyedSale::Created
    );
    let second = purchase("h2", "P1", "alice", "a@example.com");
    let taken = SaleKey {
        purchase: "h1".into(),
        fingerprint: "fp".into(),
    };
    assert_eq!(
        store
            .create_purchase_keyed(&second, "order-1", "fp")
            .unwrap(),
        KeyedSale::Taken(taken.clone())
    );
    assert_eq!(
        store.purchase("h2").unwrap(),
        None,
        "the second wrote nothing"
    );
    assert_eq!(store.sale_key("order-1").unwrap(), Some(taken.clone()));
    assert_eq!(
        store.sale_keys().unwrap(),
        vec![("order-1".to_owned(), taken.clone())]
    );
    assert!(matches!(
        store.put_sale_key("order-1", &taken),
        Err(StoreError::Conflict(_))
    ));
    let ghost = SaleKey {
        purchase: "ghost".into(),
        fingerprint: "fp".into(),
    };
    assert!(matches!(
        store.put_sale_key("order-2", &ghost),
        Err(StoreError::NotFound(_))
    ));
    store.delete_purchase("h1").unwrap();
    assert_eq!(store.sale_key("order-1").unwrap(), None);
}

fn audit_entry(action: &str, purchase: Option<&str>, at: u64) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        actor: "admin".into(),
        interface: "api".into(),
        action: action.into(),
        target_kind: "purchase".into(),
        target: purchase.unwrap_or("-").into(),
        purchase: purchase.map(str::to_owned),
        account: Some("acct".into()),
        changes: serde_json::json!({"status": {"before": "active", "after": "revoked"}}),
    }
}

fn the_audit_trail_filters_and_pages(store: &dyn Store) {
    store
        .append_audit(&audit_entry("purchase.create", Some("h1"), 10))
        .unwrap();
    store
        .append_audit(&audit_entry("purchase.revoke", Some("h1"), 20))
        .unwrap();
    store
        .append_audit(&audit_entry("product.create", None, 30))
        .unwrap();
    let (all, total) = store
        .audit(&AuditFilter::default(), Page::default())
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["purchase.create", "purchase.revoke", "product.create"],
        "oldest first"
    );
    assert!(all[0].id < all[1].id && all[1].id < all[2].id);
    assert_eq!(all[1].changes["status"]["after"], "revoked");
    let filter = AuditFilter {
        purchase: Some("h1".into()),
        since: Some(15),
        ..AuditFilter::default()
    };
    let (found, total) = store.audit(&filter, Page::default()).unwrap();
    assert_eq!((found.len(), total), (1, 1));
    assert_eq!(found[0].action, "purchase.revoke");
    // Past the largest signed 64-bit second: after every entry, not before them all.
    let far = AuditFilter {
        since: Some(u64::MAX),
        ..AuditFilter::default()
    };
    let (found, total) = store.audit(&far, Page::default()).unwrap();
    assert_eq!((found.len(), total), (0, 0), "since = u64::MAX");
    let (page, total) = store
        .audit(
            &AuditFilter::default(),
            Page {
                offset: 1,
                limit: 1,
            },
        )
        .unwrap();
    assert_eq!((page.len(), total), (1, 3));
    assert_eq!(page[0].action, "purchase.revoke");
}

/// The receiver [`delivery`]s go to.
const HOOK: &str = "http://127.0.0.1:1/hook";

fn delivery(n: u64) -> NewDelivery {
    NewDelivery {
        endpoint: HOOK.into(),
        event: "purchase".into(),
        event_id: format!("ev{n}"),
        body: format!("{{\"n\":{n}}}"),
        due: n,
    }
}

fn the_webhook_queue_leases_and_drops_the_oldest(store: &dyn Store) {
    let dropped = store
        .enqueue_webhooks(&[delivery(1), delivery(2), delivery(3)], 2)
        .unwrap();
    assert_eq!(dropped, 1, "the oldest made room");
    assert_eq!(store.webhook_queue_depth().unwrap(), 2);
    let pending = store.pending_webhooks().unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|q| q.delivery.clone())
            .collect::<Vec<_>>(),
        [delivery(2), delivery(3)]
    );
    let other = NewDelivery {
        endpoint: "http://127.0.0.1:2/hook".into(),
        ..delivery(4)
    };
    store.enqueue_webhooks(&[other], 10).unwrap();
    let backlog = store.webhook_backlog(3).unwrap();
    let counts: Vec<(&str, u64, u64)> = backlog
        .iter()
        .map(|b| (b.endpoint.as_str(), b.waiting, b.due))
        .collect();
    assert_eq!(
        counts,
        [
            ("http://127.0.0.1:1/hook", 2, 2),
            ("http://127.0.0.1:2/hook", 1, 0)
        ],
        "per receiver, and what is due at 3"
    );
    let theirs = store
        .claim_webhooks("http://127.0.0.1:2/hook", 10, 60, 10)
        .unwrap();
    assert_eq!(theirs.len(), 1, "only that receiver's");
    store.webhook_done(theirs[0].id).unwrap();
    let claimed = store.claim_webhooks(HOOK, 10, 60, 10).unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|q| q.delivery.event_id.as_str())
            .collect::<Vec<_>>(),
        ["ev2", "ev3"]
    );
    assert_eq!(claimed[0].delivery.due, 2, "the due time it was claimed at");
    assert!(
        store.claim_webhooks(HOOK, 20, 60, 10).unwrap().is_empty(),
        "leased"
    );
    store.webhook_failed(claimed[0].id, 30).unwrap();
    store.webhook_done(claimed[1].id).unwrap();
    let again = store.claim_webhooks(HOOK, 30, 60, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].delivery.event_id.as_str(), again[0].attempts),
        ("ev2", 1)
    );
    assert_eq!(store.webhook_queue_depth().unwrap(), 1);
}

/// The event ids of the deliveries waiting in `store`'s webhook queue, in the order queued.
fn queued_events(store: &dyn Store) -> Vec<String> {
    store
        .pending_webhooks()
        .unwrap()
        .into_iter()
        .map(|q| q.delivery.event_id)
        .collect()
}

/// A sale and the webhook deliveries that announce it are one transaction: a sale that
/// is not written is not announced, and one that is, is.
fn a_sale_and_its_announcement_stand_or_fall_together(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    let ghost = purchase("h0", "ghost", "alice", "a@x");
    let got = store.record_sale(&ghost, None, &[delivery(1)]);
    assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}");
    assert_eq!(store.webhook_queue_depth().unwrap(), 0, "nothing announced");
    let first = purchase("h1", "P1", "alice", "a@x");
    let sold = store
        .record_sale(&first, Some(("order-1", "fp")), &[delivery(2), delivery(3)])
        .unwrap();
    assert_eq!(sold, KeyedSale::Created);
    let again = purchase("h2", "P1", "alice", "a@x");
    let resubmitted = store
        .record_sale(&again, Some(("order-1", "fp")), &[delivery(4)])
        .unwrap();
    assert_eq!(
        resubmitted,
        KeyedSale::Taken(SaleKey {
            purchase: "h1".into(),
            fingerprint: "fp".into()
        })
    );
    assert_eq!(store.purchase("h2").unwrap(), None);
    assert_eq!(
        queued_events(store),
        ["ev2", "ev3"],
        "the sale's events, once"
    );
}

/// A change to a purchase is written only over the purchase it was made from: a revoke
/// read before the buyer's first play does not erase that play, and is written (with its
/// event) once made from the purchase as it now stands.
fn a_purchase_written_since_it_was_read_is_not_overwritten(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    let before = store.purchase("h1").unwrap().unwrap();
    assert!(
        store.record_first_play("h1", 500, &[]).unwrap(),
        "meanwhile"
    );
    let mut revoked = before.clone();
    revoked.status = PurchaseStatus::Revoked;
    let got = store.replace_purchase(&before, &revoked, &[delivery(1)]);
    assert!(matches!(got, Err(StoreError::Changed(_))), "{got:?}");
    let now = store.purchase("h1").unwrap().unwrap();
    assert_eq!(
        (now.status, now.first_play_at),
        (PurchaseStatus::Active, Some(500))
    );
    assert_eq!(
        store.webhook_queue_depth().unwrap(),
        0,
        "no revoke announced"
    );

    let mut revoked = now.clone();
    revoked.status = PurchaseStatus::Revoked;
    store
        .replace_purchase(&now, &revoked, &[delivery(2)])
        .unwrap();
    assert_eq!(store.purchase("h1").unwrap().unwrap(), revoked);
    assert_eq!(
        store.webhook_queue_depth().unwrap(),
        1,
        "the revoke announced"
    );

    store.delete_purchase("h1").unwrap();
    let gone = store.replace_purchase(&revoked, &now, &[]);
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
}

/// A product its buyers hold is kept unless the delete is forced.
fn a_product_with_buyers_is_kept_unless_forced(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    let got = store.delete_product("P1", false);
    assert!(
        matches!(&got, Err(StoreError::Held { buyers: 1, .. })),
        "{got:?}"
    );
    assert!(store.purchase("h1").unwrap().is_some(), "the buyer kept it");
    let before = store.purchase("h1").unwrap().unwrap();
    let mut revoked = before.clone();
    revoked.status = PurchaseStatus::Revoked;
    store.replace_purchase(&before, &revoked, &[]).unwrap();
    store.delete_product("P1", false).unwrap();
    assert_eq!(store.product("P1").unwrap(), None);
    let gone = store.delete_product("P1", false);
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
}

#[test]
fn both_a_product_with_buyers_is_kept_unless_forced() {
    on_both("product_held", a_product_with_buyers_is_kept_unless_forced);
}

/// A first play is announced with the write that records it, once.
fn a_first_play_is_announced_once_with_its_write(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    assert!(store.record_first_play("h1", 500, &[delivery(1)]).unwrap());
    assert!(!store.record_first_play("h1", 600, &[delivery(2)]).unwrap());
    assert!(!store.record_first_play("h2", 600, &[delivery(3)]).unwrap());
    assert_eq!(queued_events(store), ["ev1"]);
    assert_eq!(
        store.purchase("h1").unwrap().unwrap().first_play_at,
        Some(500)
    );
}

#[test]
fn both_a_first_play_is_announced_once_with_its_write() {
    on_both(
        "first_play_announced",
        a_first_play_is_announced_once_with_its_write,
    );
}

#[test]
fn both_a_sale_and_its_announcement_stand_or_fall_together() {
    on_both(
        "sale_announcement",
        a_sale_and_its_announcement_stand_or_fall_together,
    );
}

#[test]
fn both_a_purchase_written_since_it_was_read_is_not_overwritten() {
    on_both(
        "purchase_changed",
        a_purchase_written_since_it_was_read_is_not_overwritten,
    );
}

#[test]
fn both_codes_and_prefixes_are_unique() {
    on_both(
        "codes_and_prefixes_are_unique",
        codes_and_prefixes_are_unique,
    );
}

#[test]
fn both_a_purchase_of_a_missing_product_is_not_found_and_writes_nothing() {
    on_both(
        "a_purchase_of_a_missing_product_is_not_found_and_writes_noth",
        a_purchase_of_a_missing_product_is_not_found_and_writes_nothing,
    );
}

#[test]
fn both_entitlements_follow_media_and_editorial_links() {
    on_both(
        "entitlements_follow_media_and_editorial_links",
        entitlements_follow_media_and_editorial_links,
    );
}

#[test]
fn both_the_products_holding_a_media_are_found_past_any_page() {
    on_both(
        "products_holding_a_media",
        the_products_holding_a_media_are_found_past_any_page,
    );
}

#[test]
fn both_listing_filters_and_pages() {
    on_both("listing_filters_and_pages", listing_filters_and_pages);
}

#[test]
fn both_accounts_and_contacts() {
    on_both("accounts_and_contacts", accounts_and_contacts);
}

#[test]
fn both_activations_are_counted_per_purchase_and_can_be_freed() {
    on_both(
        "activations_are_counted_per_purchase_and_can_be_freed",
        activations_are_counted_per_purchase_and_can_be_freed,
    );
}

#[test]
fn both_a_sale_key_records_once_and_goes_with_its_purchase() {
    on_both(
        "a_sale_key_records_once_and_goes_with_its_purchase",
        a_sale_key_records_once_and_goes_with_its_purchase,
    );
}

#[test]
fn both_the_audit_trail_filters_and_pages() {
    on_both(
        "the_audit_trail_filters_and_pages",
        the_audit_trail_filters_and_pages,
    );
}

#[test]
fn both_the_webhook_queue_leases_and_drops_the_oldest() {
    on_both(
        "the_webhook_queue_leases_and_drops_the_oldest",
        the_webhook_queue_leases_and_drops_the_oldest,
    );
}

/// The embedded store is one file: its schema is made once, and what was written (a sale
/// under its idempotency key, the audit trail) is there after reopening it.
#[test]
fn the_embedded_store_keeps_its_schema_sale_keys_and_audit_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let version = {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.create_product(&product("P1")).unwrap();
        let sale = purchase("h1", "P1", "alice", "a@example.com");
        store.create_purchase_keyed(&sale, "order-1", "fp").unwrap();
        store
            .append_audit(&audit_entry("purchase.create", Some("h1"), 10))
            .unwrap();
        store.schema_version().unwrap()
    };
    assert!(version > 0);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), version, "migrated once");
    assert_eq!(store.product("P1").unwrap(), Some(product("P1")));
    assert_eq!(store.sale_key("order-1").unwrap().unwrap().purchase, "h1");
    let (audit, total) = store.audit(&AuditFilter::default(), Page::ALL).unwrap();
    assert_eq!((total, audit[0].id), (1, 1));
}

/// Nodes racing for the last activations of one purchase: three stores on one database,
/// each with its own pool, 20 distinct devices at once. Exactly the limit wins.
#[test]
fn nodes_racing_for_the_last_activations_bind_exactly_the_limit() {
    let url = server().database("race_activations");
    let nodes: Vec<Arc<PostgresStore>> = (0..3).map(|_| Arc::new(postgres(&url))).collect();
    nodes[0].create_product(&product("P1")).unwrap();
    nodes[0]
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    let start = Arc::new(Barrier::new(20));
    let racers: Vec<_> = (0..20)
        .map(|n| {
            let (node, start) = (nodes[n % 3].clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                node.bind_device("h1", &format!("device-{n}"), Some(2), 1)
                    .unwrap()
            })
        })
        .collect();
    let binds: Vec<Bind> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let bound = binds.iter().filter(|b| **b == Bind::Bound).count();
    let refused = binds.iter().filter(|b| **b == Bind::LimitReached).count();
    assert_eq!((bound, refused), (2, 18), "{binds:?}");
    assert_eq!(nodes[2].devices("h1").unwrap().len(), 2);
}

/// One order submitted to two nodes at once, 10 times over: each sells once.
#[test]
fn one_idempotency_key_on_two_nodes_at_once_sells_once() {
    let url = server().database("race_keys");
    let nodes = [Arc::new(postgres(&url)), Arc::new(postgres(&url))];
    nodes[0].create_product(&product("P1")).unwrap();
    for order in 0..10 {
        let start = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|n| {
                let (node, start) = (nodes[n].clone(), start.clone());
                std::thread::spawn(move || {
                    let sale = purchase(&format!("h{order}-{n}"), "P1", "alice", "a@x");
                    start.wait();
                    node.create_purchase_keyed(&sale, &format!("order-{order}"), "fp")
                        .unwrap()
                })
            })
            .collect();
        let outcomes: Vec<KeyedSale> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let created = outcomes
            .iter()
            .filter(|o| **o == KeyedSale::Created)
            .count();
        assert_eq!(created, 1, "order {order}: {outcomes:?}");
    }
    let all = PurchaseFilter::default();
    assert_eq!(nodes[1].purchase_count(&all).unwrap(), 10);
}

/// Two nodes claiming webhook deliveries at once never lease the same one.
#[test]
fn two_nodes_claiming_webhooks_never_take_the_same_delivery() {
    let url = server().database("race_webhooks");
    let nodes = [Arc::new(postgres(&url)), Arc::new(postgres(&url))];
    let queued: Vec<NewDelivery> = (0..200).map(delivery).collect();
    nodes[0].enqueue_webhooks(&queued, 1000).unwrap();
    let start = Arc::new(Barrier::new(2));
    let claimers: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (node, start) = (node.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut ids = Vec::new();
                loop {
                    let claimed = node.claim_webhooks(HOOK, 1000, 600, 7).unwrap();
                    if claimed.is_empty() {
                        return ids;
                    }
                    ids.extend(claimed.into_iter().map(|q| q.id));
                }
            })
        })
        .collect();
    let mut ids: Vec<i64> = claimers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    ids.sort_unstable();
    let claimed = ids.len();
    ids.dedup();
    assert_eq!(
        (claimed, ids.len()),
        (200, 200),
        "each claimed exactly once"
    );
}

/// Nodes starting together on an empty database apply the schema once.
#[test]
fn nodes_starting_together_migrate_once() {
    let url = server().database("migrate_together");
    let starters: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || postgres(&url).schema_version().unwrap())
        })
        .collect();
    let versions: Vec<usize> = starters.into_iter().map(|s| s.join().unwrap()).collect();
    assert!(
        versions.iter().all(|v| *v == versions[0] && *v > 0),
        "{versions:?}"
    );
    let store = postgres(&url);
    store.create_product(&product("P1")).unwrap();
    drop(store);
    assert_eq!(
        postgres(&url).product("P1").unwrap().map(|p| p.code),
        Some("P1".into()),
        "a reconnecting node keeps the data"
    );
}

/// With its server stopped, the store answers `Unavailable` within its timeout, writes
/// nothing, and works again once the server is back.
#[test]
fn a_stopped_server_is_unavailable_and_the_store_recovers_when_it_returns() {
    let mut own = Postgres::start();
    let url = own.database("outage");
    let store = postgres(&url);
    store.create_product(&product("P1")).unwrap();
    own.stop();
    let got = store.create_purchase(&purchase("h1", "P1", "alice", "a@x"));
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    own.resume();
    // The pool drops the broken connections and opens new ones.
    let mut recovered = store.product("P1");
    for _ in 0..3 {
        if recovered.is_ok() {
            break;
        }
        recovered = store.product("P1");
    }
    assert_eq!(recovered.unwrap().map(|p| p.code), Some("P1".into()));
    assert_eq!(
        store.purchase("h1").unwrap(),
        None,
        "the failed sale wrote nothing"
    );
}

/// A server that takes TCP connections over TLS only: with `sslmode=require` and its
/// certificate trusted (`ca_file`) the store works; without the certificate trusted it is
/// unavailable rather than talking in the clear.
#[test]
fn a_server_that_takes_tls_only_is_reached_over_tls_with_its_ca_trusted() {
    let (pg, ca) = Postgres::start_tls_only();
    let url = format!("{}?sslmode=require", pg.database("tls"));
    let mut config = pg_config(&url);
    config.ca_file = Some(ca);
    let store = PostgresStore::connect(&config, Metrics::new().store).unwrap();
    store.create_product(&product("P1")).unwrap();
    assert_eq!(
        store.product("P1").unwrap().map(|p| p.code),
        Some("P1".into())
    );

    let untrusted = PostgresStore::connect(&pg_config(&url), Metrics::new().store);
    assert!(
        matches!(untrusted, Err(StoreError::Unavailable(_))),
        "an untrusted certificate is refused: {:?}",
        untrusted.err()
    );
}

/// Another session on database `db` that runs `statement` in a transaction and then
/// sleeps `seconds` inside it before committing; returned once it sleeps (whatever rows it
/// wrote or locked are then held).
fn in_open_transaction(db: &str, statement: &str, seconds: u32) -> std::process::Child {
    let mut session = server()
        .psql(
            db,
            &format!("BEGIN; {statement}; SELECT pg_sleep({seconds}); COMMIT;"),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep({seconds})%' \
         AND state = 'active' AND datname = current_database() AND pid <> pg_backend_pid()"
    );
    for _ in 0..200 {
        let out = server().psql(db, &sleeping).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            return session;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = session.kill();
    let _ = session.wait();
    panic!("the other session never reached its sleep");
}

/// A write held up past `store.postgres.timeout` (another session holds the row) is
/// cancelled by the server and rolled back: usher reports the store unavailable, and the
/// write does not land later, when the row comes free.
#[test]
fn a_write_held_past_the_timeout_is_rolled_back_not_left_to_land_later() {
    let url = server().database("slow_write");
    let mut config = pg_config(&url);
    config.timeout = Duration::from_millis(300);
    let store = PostgresStore::connect(&config, Metrics::new().store).unwrap();
    store.create_product(&product("P1")).unwrap();
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    let holder = in_open_transaction(
        "slow_write",
        "SELECT 1 FROM purchases WHERE hash = 'h1' FOR UPDATE",
        2,
    );
    let before = store.purchase("h1").unwrap().unwrap();
    let mut revoked = before.clone();
    revoked.status = PurchaseStatus::Revoked;
    let got = store.replace_purchase(&before, &revoked, &[]);
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    assert!(holder.wait_with_output().unwrap().status.success());
    assert_eq!(
        store.purchase("h1").unwrap().unwrap().status,
        PurchaseStatus::Active,
        "the cancelled write never landed"
    );
}

/// A sale that commits while a delete of its product runs (another node sold it) is
/// counted by the delete, not deleted with the product.
#[test]
fn a_sale_in_flight_holds_its_product_against_a_delete() {
    let url = server().database("sale_in_flight");
    let store = postgres(&url);
    store.create_product(&product("P1")).unwrap();
    let sale = sale_of_h1_in_p1();
    delete_is_held_by(&store, "sale_in_flight", &sale, || {
        store.delete_product("P1", false)
    });
    assert!(store.product("P1").unwrap().is_some());
}

/// The same for the media of the product sold: a sale in flight holds it too.
#[test]
fn a_sale_in_flight_holds_the_media_of_its_product_against_a_delete() {
    let url = server().database("media_sale_in_flight");
    let store = postgres(&url);
    store.create_product(&product("P1")).unwrap();
    store.create_media(&media("M1", "/m1/", None)).unwrap();
    store.link("P1", "M1").unwrap();
    let sale = sale_of_h1_in_p1();
    delete_is_held_by(&store, "media_sale_in_flight", &sale, || {
        store.delete_media("M1", false)
    });
    assert!(store.media("M1").unwrap().is_some());
    store.delete_media("M1", true).unwrap();
    assert!(store.media("M1").unwrap().is_none(), "forced, it goes");
    assert!(store.linked("P1").unwrap().is_empty());
}

/// The SQL of a sale: purchase h1 of product P1, active.
fn sale_of_h1_in_p1() -> String {
    let data = serde_json::to_string(&purchase("h1", "P1", "alice", "a@x")).unwrap();
    format!(
        "INSERT INTO purchases (hash, product, account, email, status, purchased_at, data) \
         VALUES ('h1', 'P1', 'alice', 'a@x', 'active', 0, '{data}')"
    )
}

/// Runs `delete` (not forced) while another session of `db` runs `statement` in an open
/// transaction, and checks that the delete counted purchase h1 and left it standing.
fn delete_is_held_by(
    store: &PostgresStore,
    db: &str,
    statement: &str,
    delete: impl FnOnce() -> Result<(), StoreError>,
) {
    let other = in_open_transaction(db, statement, 1);
    let got = delete();
    assert!(other.wait_with_output().unwrap().status.success());
    assert!(
        matches!(&got, Err(StoreError::Held { buyers: 1, .. })),
        "{got:?}"
    );
    assert!(store.purchase("h1").unwrap().is_some(), "the buyer stands");
}

/// A revoked buyer made active again while a delete of its product runs (on another node)
/// is counted by the delete too, not deleted with the product.
#[test]
fn a_buyer_restored_in_flight_holds_its_product_against_a_delete() {
    let url = server().database("restore_in_flight");
    let store = postgres(&url);
    store.create_product(&product("P1")).unwrap();
    let mut revoked = purchase("h1", "P1", "alice", "a@x");
    revoked.status = PurchaseStatus::Revoked;
    store.create_purchase(&revoked).unwrap();
    delete_is_held_by(
        &store,
        "restore_in_flight",
        "UPDATE purchases SET status = 'active' WHERE hash = 'h1'",
        || store.delete_product("P1", false),
    );
    assert!(store.product("P1").unwrap().is_some());
}
