//! One test per rights row of DESIGN.md's PPV table, each walked across its window edges
//! with an explicit clock.

use super::*;
use crate::rights::date::{parse, Edge};
use crate::rights::model::ProductType;

const T0: u64 = 1_800_000_000;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

fn product() -> Product {
    Product {
        code: "P1".into(),
        name: "Final".into(),
        description: String::new(),
        kind: ProductType::Single,
        status: Status::Active,
        available_from: None,
        available_until: None,
        cost: Some("9.99".into()),
        currency: Some("EUR".into()),
        period_days: None,
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
        device_classes: vec![],
        created_at: T0 - DAY,
    }
}

fn purchase() -> Purchase {
    Purchase {
        hash: "h1".into(),
        product: "P1".into(),
        media: None,
        account: "alice".into(),
        email: Some("alice@example.com".into()),
        name: None,
        phone: None,
        access_start: None,
        access_expire: None,
        purchased_at: T0,
        first_play_at: None,
        activations: None,
        ticket: None,
        status: PurchaseStatus::Active,
    }
}

fn at(product: &Product, purchase: &Purchase, now: u64) -> Result<Entitled, RightsDenied> {
    decide(
        true,
        &[(purchase.clone(), product.clone())],
        DeviceClass::Ott,
        now,
    )
}

#[test]
fn hours_from_purchase_tvms_rule() {
    let p = Product {
        hours: Some(48),
        ..product()
    };
    let b = purchase();
    assert_eq!(at(&p, &b, T0).unwrap().until, Some(T0 + 48 * HOUR));
    assert!(at(&p, &b, T0 + 48 * HOUR - 1).is_ok());
    assert_eq!(
        at(&p, &b, T0 + 48 * HOUR),
        Err(RightsDenied::Expired { at: T0 + 48 * HOUR })
    );
    assert_eq!(at(&p, &b, T0 - 1), Err(RightsDenied::NotStarted { at: T0 }));
}

#[test]
fn hours_from_first_play() {
    let p = Product {
        hours: Some(24),
        hours_from: HoursFrom::FirstPlay,
        ..product()
    };
    let mut b = purchase();
    // Bought at T0, first played three days later: the 24 hours start then.
    let first = at(&p, &b, T0 + 3 * DAY).unwrap();
    assert_eq!(
        first.first_play,
        Some(FirstPlay {
            seconds: DAY,
            bound: None
        })
    );
    assert_eq!(first.until, Some(T0 + 4 * DAY));
    b.first_play_at = Some(T0 + 3 * DAY);
    let again = at(&p, &b, T0 + 3 * DAY + 10).unwrap();
    assert_eq!(again.first_play, None);
    assert!(at(&p, &b, T0 + 4 * DAY - 1).is_ok());
    assert_eq!(
        at(&p, &b, T0 + 4 * DAY),
        Err(RightsDenied::Expired { at: T0 + 4 * DAY })
    );
}

#[test]
fn an_unplayed_rental_ends_its_hours_after_the_play_within_its_window() {
    let p = Product {
        hours: Some(24),
        hours_from: HoursFrom::FirstPlay,
        access_expire: Some(T0 + 10 * DAY),
        ..product()
    };
    // Decided at T0 + DAY (a decision a cache may keep), played later.
    let decided = at(&p, &purchase(), T0 + DAY).unwrap();
    assert_eq!(decided.until, Some(T0 + 2 * DAY));
    let first_play = decided.first_play.unwrap();
    assert_eq!(first_play.ends(T0 + 2 * DAY - HOUR), T0 + 3 * DAY - HOUR);
    assert_eq!(
        first_play.ends(T0 + 9 * DAY + HOUR),
        T0 + 10 * DAY,
        "never past the window"
    );
}

#[test]
fn period_in_days_from_purchase() {
    let p = Product {
        period_days: Some(30),
        ..product()
    };
    let b = purchase();
    assert!(at(&p, &b, T0 + 30 * DAY - 1).is_ok());
    assert_eq!(
        at(&p, &b, T0 + 30 * DAY),
        Err(RightsDenied::Expired { at: T0 + 30 * DAY })
    );
}

#[test]
fn access_start_and_expire_dates_alone_are_00_00_01_and_23_59_59() {
    let start = parse("2027-03-01", Edge::Start).unwrap();
    let expire = parse("2027-03-31", Edge::End).unwrap();
    let p = Product {
        access_start: Some(start),
        access_expire: Some(expire),
        ..product()
    };
    let b = Purchase {
        purchased_at: start - 10 * DAY,
        ..purchase()
    };
    assert_eq!(
        at(&p, &b, start - 1),
        Err(RightsDenied::NotStarted { at: start })
    );
    assert!(at(&p, &b, start).is_ok(), "2027-03-01 00:00:01 is inside");
    assert!(at(&p, &b, expire - 1).is_ok());
    assert_eq!(
        at(&p, &b, expire),
        Err(RightsDenied::Expired { at: expire }),
        "23:59:59 is the end"
    );
}

#[test]
fn purchase_dates_override_the_products() {
    let p = Product {
        access_expire: Some(T0 + DAY),
        ..product()
    };
    let b = Purchase {
        access_expire: Some(T0 + 7 * DAY),
        ..purchase()
    };
    assert!(at(&p, &b, T0 + 2 * DAY).is_ok());
}

#[test]
fn live_pre_sale_opens_at_the_event_start() {
    let event = T0 + 5 * DAY;
    let p = Product {
        access_start: Some(event),
        hours: Some(6),
        ..product()
    };
    let b = purchase(); // bought five days ahead
    assert_eq!(
        at(&p, &b, event - 1),
        Err(RightsDenied::NotStarted { at: event })
    );
    assert_eq!(
        RightsDenied::NotStarted { at: event }.holds_until(),
        Some(event)
    );
    // Hours count from purchase by the TVMS rule, so an event sold days ahead uses an
    // explicit expiry instead; with hours only, the window would already be over.
    assert_eq!(
        at(&p, &b, event),
        Err(RightsDenied::Expired { at: T0 + 6 * HOUR })
    );
    let p = Product {
        access_expire: Some(event + 6 * HOUR),
        hours: None,
        ..p
    };
    assert!(at(&p, &b, event).is_ok());
    assert_eq!(
        at(&p, &b, event + 6 * HOUR),
        Err(RightsDenied::Expired {
            at: event + 6 * HOUR
        })
    );
}

#[test]
fn available_from_until_bound_playing_too() {
    let p = Product {
        available_from: Some(T0 + DAY),
        available_until: Some(T0 + 2 * DAY),
        ..product()
    };
    let b = purchase();
    assert_eq!(
        at(&p, &b, T0 + DAY - 1),
        Err(RightsDenied::NotStarted { at: T0 + DAY })
    );
    assert!(at(&p, &b, T0 + DAY).is_ok());
    assert_eq!(
        at(&p, &b, T0 + 2 * DAY),
        Err(RightsDenied::Expired { at: T0 + 2 * DAY })
    );
}

#[test]
fn inactive_products_and_revoked_purchases_and_disabled_accounts() {
    let b = purchase();
    let inactive = Product {
        status: Status::Inactive,
        ..product()
    };
    assert_eq!(at(&inactive, &b, T0), Err(RightsDenied::ProductInactive));
    let revoked = Purchase {
        status: PurchaseStatus::Revoked,
        ..purchase()
    };
    assert_eq!(at(&product(), &revoked, T0), Err(RightsDenied::Revoked));
    assert_eq!(
        decide(false, &[(b, product())], DeviceClass::Ott, T0),
        Err(RightsDenied::AccountDisabled)
    );
}

#[test]
fn device_classes() {
    let p = Product {
        device_classes: vec![DeviceClass::Iptv, DeviceClass::Hybrid],
        ..product()
    };
    let b = purchase();
    let on = |class| decide(true, &[(b.clone(), p.clone())], class, T0);
    assert_eq!(on(DeviceClass::Ott), Err(RightsDenied::DeviceClass));
    assert!(on(DeviceClass::Iptv).is_ok());
    assert!(on(DeviceClass::Hybrid).is_ok());
}

#[test]
fn no_candidates_is_no_rights_and_the_best_purchase_wins() {
    assert_eq!(
        decide(true, &[], DeviceClass::Ott, T0),
        Err(RightsDenied::NoRights)
    );
    let short = Product {
        hours: Some(1),
        ..product()
    };
    let long = Product {
        code: "P2".into(),
        period_days: Some(7),
        ..product()
    };
    let revoked = Purchase {
        status: PurchaseStatus::Revoked,
        ..purchase()
    };
    let b2 = Purchase {
        hash: "h2".into(),
        product: "P2".into(),
        ..purchase()
    };
    let got = decide(
        true,
        &[(revoked, short.clone()), (purchase(), short), (b2, long)],
        DeviceClass::Ott,
        T0 + 10,
    )
    .unwrap();
    assert_eq!((&*got.purchase, got.until), ("h2", Some(T0 + 7 * DAY)));
}

#[test]
fn a_purchase_that_starts_no_rental_comes_before_one_that_would() {
    let day = Product {
        period_days: Some(1),
        ..product()
    };
    let rental = Product {
        code: "R".into(),
        hours: Some(48),
        hours_from: HoursFrom::FirstPlay,
        ..product()
    };
    let unplayed = Purchase {
        hash: "r1".into(),
        product: "R".into(),
        ..purchase()
    };
    let got = decide(
        true,
        &[
            (unplayed.clone(), rental.clone()),
            (purchase(), day.clone()),
        ],
        DeviceClass::Ott,
        T0 + 10,
    )
    .unwrap();
    assert_eq!(
        (&*got.purchase, got.first_play.is_some()),
        ("h1", false),
        "the pass, though the rental reaches further"
    );
    let order: Vec<&str> = got.in_order().map(|e| &*e.purchase).collect();
    assert_eq!(order, ["h1", "r1"]);
    assert!(got.others.as_ref().unwrap()[0].first_play.is_some());

    // Once the pass has ended, the rental is the one.
    let got = decide(
        true,
        &[(unplayed, rental), (purchase(), day)],
        DeviceClass::Ott,
        T0 + DAY,
    )
    .unwrap();
    assert_eq!(
        (&*got.purchase, got.first_play.is_some(), got.others),
        ("r1", true, None)
    );
}

#[test]
fn refusals_name_the_closest_to_a_yes() {
    let revoked = Purchase {
        status: PurchaseStatus::Revoked,
        ..purchase()
    };
    let later = Product {
        access_start: Some(T0 + DAY),
        ..product()
    };
    let got = decide(
        true,
        &[(revoked, product()), (purchase(), later)],
        DeviceClass::Ott,
        T0,
    );
    assert_eq!(got, Err(RightsDenied::NotStarted { at: T0 + DAY }));
}

#[test]
fn item5_a_purchases_own_end_replaces_the_products_hours_period_and_expiry() {
    let p = Product {
        hours: Some(2),
        period_days: Some(1),
        access_expire: Some(T0 + DAY),
        ..product()
    };
    let extended = Purchase {
        access_expire: Some(T0 + 7 * DAY),
        ..purchase()
    };
    assert_eq!(window(&purchase(), &p), (T0, Some(T0 + 2 * HOUR)));
    assert_eq!(window(&extended, &p), (T0, Some(T0 + 7 * DAY)));
    assert!(at(&p, &extended, T0 + 3 * DAY).is_ok(), "past the old end");
    let first_play = Product {
        hours_from: HoursFrom::FirstPlay,
        ..p.clone()
    };
    let granted = at(&first_play, &extended, T0 + DAY).unwrap();
    assert_eq!(granted.first_play, None, "hours no longer count");
    assert_eq!(granted.until, Some(T0 + 7 * DAY));
    // available_until still bounds it; an extension past it does not fit.
    let ending = Product {
        available_until: Some(T0 + 3 * DAY),
        ..p
    };
    assert_eq!(window(&extended, &ending).1, Some(T0 + 3 * DAY));
    assert_eq!(extension_fits(&extended, &ending), Err(T0 + 3 * DAY));
}

#[test]
fn item2_inactive_unavailable_or_ended_products_are_not_sellable_but_future_ones_are() {
    let b = purchase();
    assert_eq!(sellable(&b, &product(), T0), Ok(()));
    let off = Product {
        status: Status::Inactive,
        ..product()
    };
    assert_eq!(sellable(&b, &off, T0), Err(NotSellable::ProductInactive));
    let gone = Product {
        available_until: Some(T0),
        ..product()
    };
    assert_eq!(
        sellable(&b, &gone, T0),
        Err(NotSellable::ProductUnavailable)
    );
    let over = Product {
        access_expire: Some(T0 - 1),
        ..product()
    };
    assert_eq!(sellable(&b, &over, T0), Err(NotSellable::WindowEnded));
    let never = Product {
        access_start: Some(T0 + 5 * DAY),
        hours: Some(6),
        ..product()
    };
    assert_eq!(
        sellable(&b, &never, T0),
        Err(NotSellable::WindowEnded),
        "hours from purchase end before the event starts"
    );
    let ahead = Product {
        available_from: Some(T0 + 7 * DAY),
        ..product()
    };
    assert_eq!(sellable(&b, &ahead, T0), Ok(()), "pre-sale");
    assert_eq!(NotSellable::ProductInactive.reason(), "product_inactive");
}
