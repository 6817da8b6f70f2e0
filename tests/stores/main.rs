//! The store contract, checked on both backends: the embedded SQLite file and a real
//! PostgreSQL server (one per test binary, a fresh database per test). Then what only a
//! shared store has to get right: several nodes racing for the last activation, the same
//! idempotency key, the same webhook delivery, and a server that goes away and comes back.
//!
//! The tests are grouped by the behaviour they cover, one module each; the helpers more
//! than one module uses are here.

#[path = "../support/mod.rs"]
mod support;

mod catalog;
mod purchases;
mod shared;
mod webhooks;

use std::sync::OnceLock;
use std::time::Duration;

use usher::config::PostgresConfig;
use usher::metrics::Metrics;
use usher::rights::model::{
    DeviceClass, HoursFrom, Media, Product, ProductType, Purchase, PurchaseStatus, Status,
};
use usher::rights::postgres::PostgresStore;
use usher::rights::sqlite::SqliteStore;
use usher::rights::store::{NewDelivery, Store};

use support::postgres::Postgres;

/// The server every test of this binary shares; each test takes its own database. It is
/// stopped by its watchdog when the test process exits.
pub(crate) fn server() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

pub(crate) fn pg_config(url: &str) -> PostgresConfig {
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
pub(crate) fn postgres(url: &str) -> PostgresStore {
    PostgresStore::connect(&pg_config(url), Metrics::new().store).unwrap()
}

/// Runs `check` on a fresh SQLite store and on a fresh PostgreSQL database.
pub(crate) fn on_both(name: &str, check: fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    check(&SqliteStore::open(dir.path()).unwrap());
    check(&postgres(&server().database(name)));
}

pub(crate) fn product(code: &str) -> Product {
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

pub(crate) fn media(code: &str, prefix: &str, editorial: Option<&str>) -> Media {
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

pub(crate) fn purchase(hash: &str, product: &str, account: &str, email: &str) -> Purchase {
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

/// The receiver [`delivery`]s go to.
pub(crate) const HOOK: &str = "http://127.0.0.1:1/hook";

pub(crate) fn delivery(n: u64) -> NewDelivery {
    NewDelivery {
        endpoint: HOOK.into(),
        event: "purchase".into(),
        event_id: format!("ev{n}"),
        body: format!("{{\"n\":{n}}}"),
        due: n,
    }
}
