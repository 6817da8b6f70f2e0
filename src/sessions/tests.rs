use super::*;

pub(super) const T0: u64 = 1_800_000_000;

pub(super) fn registry() -> Sessions {
    Sessions::new(60, 5, prometheus::IntGauge::new("g", "g").unwrap())
}

pub(super) fn start<'a>(device: &'a str, product: &'a str) -> Start<'a> {
    Start {
        sid: None,
        account: "alice",
        purchase: Some("h1"),
        product: Some(product),
        device: Some(device),
        ip: "198.51.100.7".parse().unwrap(),
        taking_over: None,
        per_device: false,
    }
}

pub(super) fn counter() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("s{n}")
    }
}

#[test]
fn the_same_device_joins_its_live_session() {
    let r = registry();
    let mut sid = counter();
    let a = r
        .start(start("tv", "P"), &Limits::default(), T0, &mut sid)
        .unwrap();
    let b = r
        .start(start("tv", "P"), &Limits::default(), T0 + 10, &mut sid)
        .unwrap();
    assert_eq!(a.sid, b.sid);
    assert_eq!(r.live(T0 + 10).len(), 1);
}

#[test]
fn sessions_end_after_the_idle_timeout_and_touches_are_throttled() {
    let r = registry();
    let s = r
        .start(start("tv", "P"), &Limits::default(), T0, counter())
        .unwrap();
    assert_eq!(r.touch(&s.sid, None, None, T0 + 3), Ok(Touch::Live));
    assert_eq!(s.last_seen(), T0, "within the touch interval: not written");
    assert_eq!(r.touch(&s.sid, None, None, T0 + 30), Ok(Touch::Live));
    assert_eq!(s.last_seen(), T0 + 30);
    assert!(r.is_live(&s.sid, T0 + 89));
    assert!(!r.is_live(&s.sid, T0 + 90), "60 s after the last request");
    assert_eq!(
        r.touch(&s.sid, None, None, T0 + 90),
        Ok(Touch::NotHere),
        "the caller must adopt it again"
    );
    assert!(r.live(T0 + 90).is_empty());
    r.sweep(T0 + 90, 0);
    assert_eq!(r.touch(&s.sid, None, None, T0 + 91), Ok(Touch::NotHere));
}

#[test]
fn refuse_policy_refuses_the_second_device() {
    let r = registry();
    let limits = Limits {
        product_devices: Some(1),
        ..Limits::default()
    };
    let mut sid = counter();
    r.start(start("tv", "P"), &limits, T0, &mut sid).unwrap();
    assert_eq!(
        r.start(start("phone", "P"), &limits, T0 + 1, &mut sid)
            .map(|s| s.sid.clone()),
        Err(SessionDenied::ConcurrencyLimit)
    );
    // Another product is not limited by this one.
    assert!(r
        .start(start("phone", "Q"), &limits, T0 + 1, &mut sid)
        .is_ok());
    // Once the first idles out, the second device may start.
    assert!(r
        .start(start("phone", "P"), &limits, T0 + 61, &mut sid)
        .is_ok());
}

#[test]
fn replace_oldest_ends_the_first_session() {
    let r = registry();
    let limits = Limits {
        product_sessions: Some(1),
        policy: Policy::ReplaceOldest,
        ..Limits::default()
    };
    let mut sid = counter();
    let first = r.start(start("tv", "P"), &limits, T0, &mut sid).unwrap();
    let second = r
        .start(start("phone", "P"), &limits, T0 + 5, &mut sid)
        .unwrap();
    assert_ne!(first.sid, second.sid);
    assert_eq!(
        r.touch(&first.sid, None, None, T0 + 6),
        Err(SessionDenied::Replaced)
    );
    assert_eq!(r.touch(&second.sid, None, None, T0 + 6), Ok(Touch::Live));
    assert_eq!(SessionDenied::Replaced.reason(), "session_replaced");
}

#[test]
fn account_limits_count_every_product() {
    let r = registry();
    let limits = Limits {
        account_sessions: Some(2),
        ..Limits::default()
    };
    let mut sid = counter();
    r.start(start("tv", "P"), &limits, T0, &mut sid).unwrap();
    r.start(start("phone", "Q"), &limits, T0, &mut sid).unwrap();
    assert_eq!(
        r.start(start("laptop", "R"), &limits, T0, &mut sid).err(),
        Some(SessionDenied::ConcurrencyLimit)
    );
}

#[test]
fn an_unknown_session_is_adopted_under_the_limits() {
    let r = registry();
    let limits = Limits {
        product_devices: Some(1),
        ..Limits::default()
    };
    r.start(start("tv", "P"), &limits, T0, counter()).unwrap();
    let mut adopted = start("phone", "P");
    adopted.sid = Some("from-before-restart");
    assert_eq!(
        r.start(adopted.clone(), &limits, T0, counter()).err(),
        Some(SessionDenied::ConcurrencyLimit)
    );
    adopted.device = Some("tv");
    let s = r.start(adopted, &limits, T0, counter()).unwrap();
    assert_eq!(s.sid, "from-before-restart");
}

#[test]
fn an_ended_session_is_refused_and_recovery_finds_live_ones_by_network() {
    let r = registry();
    let s = r
        .start(start("tv", "P"), &Limits::default(), T0, counter())
        .unwrap();
    let same = |ip: IpAddr| ip.to_string().starts_with("198.51.100.");
    assert_eq!(
        r.recoverable("h1", same, T0 + 1).map(|x| x.sid.clone()),
        Some(s.sid.clone())
    );
    assert!(r.recoverable("h1", |_| false, T0 + 1).is_none());
    assert!(r.end(&s.sid));
    assert_eq!(
        r.touch(&s.sid, None, None, T0 + 2),
        Err(SessionDenied::Ended)
    );
    assert!(r.recoverable("h1", same, T0 + 2).is_none());
}

#[test]
fn deferred_starts_replace_nobody_until_told_and_can_be_discarded() {
    let r = registry();
    let limits = Limits {
        product_sessions: Some(1),
        policy: Policy::ReplaceOldest,
        ..Limits::default()
    };
    let mut sid = counter();
    let first = r.start(start("tv", "P"), &limits, T0, &mut sid).unwrap();
    let (second, victims) = r
        .start_deferred(start("phone", "P"), &limits, T0 + 1, &mut sid)
        .unwrap();
    assert_eq!(victims.len(), 1);
    assert_eq!(
        r.touch(&first.sid, None, None, T0 + 2),
        Ok(Touch::Live),
        "not replaced yet"
    );
    r.discard(&second.sid);
    assert_eq!(r.live(T0 + 2).len(), 1, "the refused start left no trace");
    assert_eq!(r.touch(&first.sid, None, None, T0 + 3), Ok(Touch::Live));
    let (_, victims) = r
        .start_deferred(start("phone", "P"), &limits, T0 + 4, &mut sid)
        .unwrap();
    r.replace(&victims);
    assert_eq!(
        r.touch(&first.sid, None, None, T0 + 5),
        Err(SessionDenied::Replaced)
    );
}

#[test]
fn a_session_taken_over_does_not_count_against_the_limits() {
    let r = registry();
    let limits = Limits {
        product_devices: Some(1),
        ..Limits::default()
    };
    let mut sid = counter();
    let old = r.start(start("tv", "P"), &limits, T0, &mut sid).unwrap();
    let mut recovered = start("tv-after-reset", "P");
    assert_eq!(
        r.start(recovered.clone(), &limits, T0, &mut sid).err(),
        Some(SessionDenied::ConcurrencyLimit)
    );
    recovered.taking_over = Some(&old.sid);
    assert!(r.start(recovered, &limits, T0, &mut sid).is_ok());
}

#[test]
fn players_that_name_no_device_count_as_a_device_each() {
    let r = registry();
    let limits = Limits {
        product_devices: Some(1),
        ..Limits::default()
    };
    let mut sid = counter();
    let unnamed = |ip: &'static str| Start {
        device: None,
        ip: ip.parse().unwrap(),
        ..start("tv", "P")
    };
    r.start(unnamed("198.51.100.7"), &limits, T0, &mut sid)
        .unwrap();
    assert_eq!(
        r.start(unnamed("203.0.113.9"), &limits, T0 + 1, &mut sid)
            .map(|s| s.sid.clone()),
        Err(SessionDenied::ConcurrencyLimit),
        "a second player without a device id is a second device"
    );
    let two = Limits {
        product_devices: Some(2),
        ..Limits::default()
    };
    assert!(r
        .start(unnamed("203.0.113.9"), &two, T0 + 1, &mut sid)
        .is_ok());
    assert_eq!(
        r.start(start("tv", "P"), &two, T0 + 2, &mut sid)
            .map(|s| s.sid.clone()),
        Err(SessionDenied::ConcurrencyLimit)
    );
}

#[test]
fn a_touch_under_another_purchase_records_nothing() {
    let r = registry();
    let s = r
        .start(start("tv", "P"), &Limits::default(), T0, counter())
        .unwrap();
    assert_eq!(r.touch(&s.sid, Some("h1"), None, T0 + 10), Ok(Touch::Live));
    assert_eq!(
        r.touch(&s.sid, Some("h2"), None, T0 + 60),
        Ok(Touch::UnderAnother)
    );
    // The request at T0 + 60 was not recorded: idle since T0 + 10, the session is over
    // at T0 + 70 and is then taken up afresh, whatever it played under.
    assert_eq!(
        r.touch(&s.sid, Some("h2"), None, T0 + 70),
        Ok(Touch::NotHere)
    );
}

/// A foreign credential's session (named after its token, which a CMS hands every device
/// of the account) taken up by another named device is that device's own session, under
/// the limits; a request naming no device, or the session's own, is the session's; a
/// session token's take-up joins it as before.
#[test]
fn a_foreign_session_taken_up_on_another_device_is_that_device_s_own() {
    let r = registry();
    let s = r
        .start(start("tv", "P"), &Limits::default(), T0, counter())
        .unwrap();
    assert_eq!(
        r.touch(&s.sid, None, Some("phone"), T0 + 1),
        Ok(Touch::OnAnotherDevice)
    );
    assert_eq!(r.touch(&s.sid, None, None, T0 + 1), Ok(Touch::Live));
    assert_eq!(r.touch(&s.sid, None, Some("tv"), T0 + 1), Ok(Touch::Live));
    let taken_up = |device| Start {
        sid: Some(&s.sid),
        per_device: true,
        ..start(device, "P")
    };
    let one = Limits {
        product_sessions: Some(1),
        ..Limits::default()
    };
    assert_eq!(
        r.start(taken_up("phone"), &one, T0 + 2, counter())
            .map(|s| s.sid.clone()),
        Err(SessionDenied::ConcurrencyLimit),
        "the limit's own refusal"
    );
    let own = device_session(&s.sid, "phone");
    assert_eq!(device_session(&new_id(), "phone").len(), new_id().len());
    let phone = r
        .start(taken_up("phone"), &Limits::default(), T0 + 2, counter())
        .unwrap();
    assert_eq!((&phone.sid, phone.device.as_deref()), (&own, Some("phone")));
    assert_eq!(r.live(T0 + 2).len(), 2);
    let again = r.start(taken_up("phone"), &Limits::default(), T0 + 3, counter());
    assert_eq!(again.unwrap().sid, own, "joins its own");
    let tv = r.start(taken_up("tv"), &Limits::default(), T0 + 3, counter());
    assert_eq!(tv.unwrap().sid, s.sid);
    let token = Start {
        per_device: false,
        ..taken_up("laptop")
    };
    let joined = r.start(token, &Limits::default(), T0 + 3, counter());
    assert_eq!(
        joined.unwrap().sid,
        s.sid,
        "a session token joins as before"
    );
}

/// Under `replace_oldest` a second device's own session replaces the first device's; the
/// second is not refused for the replaced session its credential names.
#[test]
fn a_second_device_s_own_session_replaces_the_first_under_replace_oldest() {
    let r = registry();
    let s = r
        .start(start("tv", "P"), &Limits::default(), T0, counter())
        .unwrap();
    let limits = Limits {
        product_sessions: Some(1),
        policy: Policy::ReplaceOldest,
        ..Limits::default()
    };
    let phone = Start {
        sid: Some(&s.sid),
        per_device: true,
        ..start("phone", "P")
    };
    let own = r.start(phone.clone(), &limits, T0 + 1, counter()).unwrap();
    assert_eq!(own.sid, device_session(&s.sid, "phone"));
    assert_eq!(
        r.touch(&s.sid, None, Some("tv"), T0 + 2),
        Err(SessionDenied::Replaced)
    );
    assert_eq!(
        r.touch(&s.sid, None, Some("phone"), T0 + 2),
        Ok(Touch::OnAnotherDevice)
    );
    assert_eq!(r.touch(&own.sid, None, None, T0 + 2), Ok(Touch::Live));
    let again = r.start(phone, &limits, T0 + 3, counter()).unwrap();
    assert_eq!(again.sid, own.sid, "its own, not the replaced one");
}
