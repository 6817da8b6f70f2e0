use super::*;
use crate::rights::model::{DeviceClass, HoursFrom, ProductType, PurchaseStatus, Status};

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
