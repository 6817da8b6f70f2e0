//! The store contract for the webhook queue, on both backends: leases and dropping the
//! oldest, and a sale or a first play announced in the same write that records it.

use usher::rights::store::{KeyedSale, NewDelivery, SaleKey, Store, StoreError};

use crate::{delivery, on_both, product, purchase, HOOK};

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
    let got = store.record_sale(&ghost, None, &[delivery(1)], &[]);
    assert!(matches!(got, Err(StoreError::NotFound(_))), "{got:?}");
    assert_eq!(store.webhook_queue_depth().unwrap(), 0, "nothing announced");
    let first = purchase("h1", "P1", "alice", "a@x");
    let sold = store
        .record_sale(
            &first,
            Some(("order-1", "fp")),
            &[delivery(2), delivery(3)],
            &[],
        )
        .unwrap();
    assert_eq!(sold, KeyedSale::Created);
    let again = purchase("h2", "P1", "alice", "a@x");
    let resubmitted = store
        .record_sale(&again, Some(("order-1", "fp")), &[delivery(4)], &[])
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
fn both_the_webhook_queue_leases_and_drops_the_oldest() {
    on_both(
        "the_webhook_queue_leases_and_drops_the_oldest",
        the_webhook_queue_leases_and_drops_the_oldest,
    );
}
