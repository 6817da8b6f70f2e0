//! The store contract for purchases, on both backends: activations counted per purchase and
//! freed, a sale key recorded once, a purchase written only over the one it was read as,
//! and the audit trail; then the embedded file keeping its schema, sale keys and audit
//! across reopening.

use usher::rights::model::PurchaseStatus;
use usher::rights::sqlite::SqliteStore;
use usher::rights::store::{
    AuditEntry, AuditFilter, Bind, KeyedSale, Page, SaleKey, Store, StoreError,
};

use crate::{delivery, on_both, product, purchase};

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

#[test]
fn both_a_purchase_written_since_it_was_read_is_not_overwritten() {
    on_both(
        "purchase_changed",
        a_purchase_written_since_it_was_read_is_not_overwritten,
    );
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
