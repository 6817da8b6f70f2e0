//! What only a shared store has to get right: nodes racing for the last activation, the
//! same idempotency key and the same webhook delivery, migrating once, a server that goes
//! away and comes back or takes TLS only, a write held past its timeout, and sales or
//! restores in flight holding their product against a delete (and their media against
//! an unlink), and an unlink in flight refusing a sale of the media it takes out.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use usher::metrics::Metrics;
use usher::rights::model::PurchaseStatus;
use usher::rights::postgres::PostgresStore;
use usher::rights::store::{
    Bind, KeyedSale, NewDelivery, PurchaseFilter, Store, StoreError, WebhookQueue,
};

use crate::support::postgres::Postgres;
use crate::{delivery, media, pg_config, postgres, product, purchase, server, HOOK};

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
/// wrote or locked are then held). psql sends the four statements as one query, so the
/// session is `active` with that text from before its first statement runs: only its
/// wait event (`PgSleep`) says it has reached the sleep.
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
         AND state = 'active' AND wait_event = 'PgSleep' AND datname = current_database() \
         AND pid <> pg_backend_pid()"
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

/// A sale naming a media, in flight, holds the media in its product against an unlink.
#[test]
fn a_sale_in_flight_holds_the_media_it_names_in_its_product_against_an_unlink() {
    let url = server().database("unlink_sale_in_flight");
    let store = postgres(&url);
    store.create_product(&product("P1")).unwrap();
    store.create_media(&media("M1", "/m1/", None)).unwrap();
    store.link("P1", "M1").unwrap();
    let mut named = purchase("h1", "P1", "alice", "a@x");
    named.media = Some("M1".into());
    let data = serde_json::to_string(&named).unwrap();
    let sale = format!(
        "INSERT INTO purchases (hash, product, media, account, email, status, purchased_at, data) \
         VALUES ('h1', 'P1', 'M1', 'alice', 'a@x', 'active', 0, '{data}')"
    );
    delete_is_held_by(&store, "unlink_sale_in_flight", &sale, || {
        store.unlink("P1", "M1", false)
    });
    assert_eq!(store.linked("P1").unwrap(), ["M1"]);
    store.unlink("P1", "M1", true).unwrap();
    assert!(store.linked("P1").unwrap().is_empty(), "forced, it goes");
}

/// A sale of one media that checked the product's links before an unlink (on another
/// node) took the media out, and is recorded while that unlink is still open: it waits
/// for the unlink and is refused, rather than landing on a link that is gone. Also on a
/// database whose default isolation is repeatable read, where a check that read its
/// snapshot from before the wait would see the link still there.
#[test]
fn a_sale_of_a_media_an_unlink_in_flight_takes_out_is_refused() {
    for (db, isolation) in [
        ("sale_during_unlink", None),
        ("sale_during_unlink_rr", Some("repeatable read")),
    ] {
        let url = server().database(db);
        if let Some(isolation) = isolation {
            let set =
                format!("ALTER DATABASE {db} SET default_transaction_isolation = '{isolation}'");
            assert!(server().psql(db, &set).status().unwrap().success());
        }
        let store = postgres(&url);
        store.create_product(&product("P1")).unwrap();
        store.create_media(&media("M1", "/m1/", None)).unwrap();
        store.link("P1", "M1").unwrap();
        assert_eq!(store.linked("P1").unwrap(), ["M1"], "the seller's check");
        // What an unlink does, in its order: the product locked, then the link deleted.
        let unlink = in_open_transaction(
            db,
            "SELECT 1 FROM products WHERE code = 'P1' FOR UPDATE; \
             DELETE FROM product_media WHERE product = 'P1' AND content = 'M1'",
            1,
        );
        let mut sale = purchase("h1", "P1", "alice", "a@x");
        sale.media = Some("M1".into());
        let got = store.record_sale(&sale, None, &[], &["M1".into()]);
        assert!(unlink.wait_with_output().unwrap().status.success());
        assert!(
            matches!(&got, Err(StoreError::NotInProduct { .. })),
            "{isolation:?}: {got:?}"
        );
        assert!(store.purchase("h1").unwrap().is_none(), "no sale landed");
        assert!(store.linked("P1").unwrap().is_empty());
    }
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
