use super::*;

const NOW: u64 = 1_800_000_000;

fn ring() -> KeyRing {
    let old = Key::new("k2025", b"an-old-secret-that-is-32-bytes-long!").unwrap();
    let new = Key::new("k2026", b"a-brand-new-secret-of-32-bytes-or-more").unwrap();
    KeyRing::new(vec![old, new], "k2026").unwrap()
}

fn claims() -> Claims {
    Claims {
        sub: "buyer-17".into(),
        scope: "/events/final/".into(),
        nbf: NOW - 60,
        exp: NOW + 3600,
        dev: Some("tv-1".into()),
        ip: Some("203.0.113.0/24".parse().unwrap()),
        sid: None,
        cap: 0,
        allow: Vec::new(),
        cls: None,
    }
}

#[test]
fn a_signed_ticket_verifies_with_its_claims() {
    let raw = sign(&ring(), Kind::Ticket, &claims());
    assert!(raw.starts_with("t1.k2026."));
    assert!(raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    assert_eq!(verify(&ring(), &raw, NOW, 30), Ok((Kind::Ticket, claims())));
}

#[test]
fn session_tokens_carry_a_shorter_mac() {
    let ticket = sign(&ring(), Kind::Ticket, &claims());
    let session = sign(&ring(), Kind::Session, &claims());
    assert!(session.starts_with("s1."));
    assert_eq!(ticket.len() - session.len(), 43 - 22);
    assert_eq!(verify(&ring(), &session, NOW, 0).unwrap().0, Kind::Session);
}

#[test]
fn any_changed_character_is_refused() {
    let raw = sign(&ring(), Kind::Ticket, &claims());
    let start = raw.find('.').unwrap() + 1 + "k2026".len() + 1;
    for at in start..raw.len() {
        let mut bytes = raw.clone().into_bytes();
        if bytes[at] == b'.' {
            continue;
        }
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            verify(&ring(), &tampered, NOW, 0),
            Err(TicketError::BadSignature),
            "position {at}"
        );
    }
}

#[test]
fn a_key_outside_the_ring_is_unknown() {
    let other = KeyRing::new(
        vec![Key::new("k1999", b"some-other-secret-with-32-bytes-or-more").unwrap()],
        "k1999",
    )
    .unwrap();
    let raw = sign(&other, Kind::Ticket, &claims());
    assert_eq!(
        verify(&ring(), &raw, NOW, 0),
        Err(TicketError::UnknownKey("k1999".into()))
    );
}

#[test]
fn a_verify_only_key_still_verifies() {
    let old_ring = KeyRing::new(
        vec![Key::new("k2025", b"an-old-secret-that-is-32-bytes-long!").unwrap()],
        "k2025",
    )
    .unwrap();
    let raw = sign(&old_ring, Kind::Ticket, &claims());
    assert!(verify(&ring(), &raw, NOW, 0).is_ok());
}

#[test]
fn same_id_with_another_secret_is_a_bad_signature() {
    let forged = KeyRing::new(
        vec![Key::new("k2026", b"guessed-secret-guessed-secret-guessed").unwrap()],
        "k2026",
    )
    .unwrap();
    let raw = sign(&forged, Kind::Ticket, &claims());
    assert_eq!(
        verify(&ring(), &raw, NOW, 0),
        Err(TicketError::BadSignature)
    );
}

#[test]
fn time_window_edges_with_skew() {
    let raw = sign(&ring(), Kind::Ticket, &claims());
    let exp = NOW + 3600;
    assert!(verify(&ring(), &raw, exp - 1, 0).is_ok());
    assert_eq!(
        verify(&ring(), &raw, exp, 0),
        Err(TicketError::Expired { at: exp })
    );
    assert!(verify(&ring(), &raw, exp + 29, 30).is_ok());
    assert!(verify(&ring(), &raw, exp + 30, 30).is_err());
    let nbf = NOW - 60;
    assert_eq!(
        verify(&ring(), &raw, nbf - 1, 0),
        Err(TicketError::NotYetValid { at: nbf })
    );
    assert!(verify(&ring(), &raw, nbf - 30, 30).is_ok());
    assert!(verify(&ring(), &raw, nbf - 31, 30).is_err());
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    for raw in [
        "",
        ".",
        "...",
        "t1",
        "x1.k2026.e30.AAAA",
        "t1.k2026.a.b.c",
        "t1...",
    ] {
        let err = verify(&ring(), raw, NOW, 0).unwrap_err();
        assert!(
            matches!(err, TicketError::Malformed | TicketError::UnknownKey(_)),
            "{raw:?}: {err:?}"
        );
    }
}

#[test]
fn scope_covers_paths_below_it_only() {
    let mut c = claims();
    assert!(c.covers("/events/final/master.m3u8"));
    assert!(!c.covers("/events/finals/x.ts"));
    assert!(!c.covers("/events/"));
    c.scope = "/events/final".into();
    assert!(c.covers("/events/final"));
    assert!(c.covers("/events/final/a.ts"));
    assert!(!c.covers("/events/finale.ts"));
    c.scope = "/".into();
    assert!(c.covers("/anything"));
}

#[test]
fn keys_and_rings_refuse_bad_input() {
    assert!(Key::new("k", b"short").unwrap_err().contains("at least 32"));
    assert!(Key::new("bad id", &[0; 32]).is_err());
    assert!(Key::new("", &[0; 32]).is_err());
    let a = Key::new("a", &[1; 32]).unwrap();
    assert!(KeyRing::new(vec![a.clone(), a.clone()], "a")
        .unwrap_err()
        .contains("twice"));
    assert!(KeyRing::new(vec![a], "b")
        .unwrap_err()
        .contains("not among"));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let key = Key::new("k", b"super-secret-value-super-secret-value").unwrap();
    assert!(!format!("{key:?}").contains("super"));
}

#[test]
fn the_device_class_travels_as_one_letter() {
    let mut with_class = claims();
    with_class.cls = Some(DeviceClass::Iptv);
    let raw = sign(&ring(), Kind::Session, &with_class);
    let (_, _, decoded) = decode_unverified(&raw).unwrap();
    assert_eq!(decoded.cls, Some(DeviceClass::Iptv));
    let json = serde_json::to_string(&with_class).unwrap();
    assert!(json.ends_with(r#","c":"i"}"#), "{json}");
    let without = serde_json::to_string(&claims()).unwrap();
    assert!(
        !without.contains(r#""c":"#),
        "absent when not set: {without}"
    );
}
