use super::*;
use crate::rights::model::{DeviceClass, HoursFrom, ProductType, PurchaseStatus, Status};
use crate::rights::store::Bind;

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
        concurrency_policy: crate::sessions::Policy::Refuse,
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

#[test]
fn schema_is_created_once_and_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        store.create_product(&product("P1")).unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
    assert_eq!(store.product("P1").unwrap(), Some(product("P1")));
}

#[test]
fn codes_and_prefixes_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
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

#[test]
fn a_purchase_of_a_missing_product_is_not_found_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let got = store.create_purchase(&purchase("h1", "ghost", "alice", "a@x"));
    assert_eq!(got, Err(StoreError::NotFound("product ghost".into())));
    assert_eq!(
        store.account("alice").unwrap(),
        None,
        "no account half-written"
    );
}

#[test]
fn entitlements_follow_media_and_editorial_links() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
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
    store.delete_product("P1").unwrap();
    assert_eq!(
        store.purchase("h1").unwrap(),
        None,
        "purchases go with their product"
    );
}

#[test]
fn listing_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
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
    let mut revoked = store.purchase("h3").unwrap().unwrap();
    revoked.status = PurchaseStatus::Revoked;
    store.update_purchase(&revoked).unwrap();
    let only_revoked = PurchaseFilter {
        status: Some(PurchaseStatus::Revoked),
        ..PurchaseFilter::default()
    };
    assert_eq!(
        store.purchases(&only_revoked, Page::default()).unwrap(),
        vec![revoked]
    );
}

#[test]
fn accounts_and_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .put_account(&Account {
            id: "a".into(),
            enabled: false,
            max_sessions: Some(2),
            max_devices: None,
        })
        .unwrap();
    let account = store.account("a").unwrap().unwrap();
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

#[test]
fn activations_are_counted_per_purchase_and_can_be_freed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
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

#[test]
fn item10_a_sale_key_records_once_survives_reopening_and_goes_with_its_purchase() {
    use crate::rights::store::{KeyedSale, SaleKey};
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
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
        assert_eq!(store.sale_key("order-1").unwrap(), Some(taken));
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.sale_key("order-1").unwrap().unwrap().purchase, "h1");
    store.delete_purchase("h1").unwrap();
    assert_eq!(store.sale_key("order-1").unwrap(), None);
}
