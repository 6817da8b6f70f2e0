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

/// The claims of a session token as usher mints them: a 32-hex device hash, a 16-hex
/// session id, the right's end as its cap, a device class.
fn session_claims() -> Claims {
    Claims {
        sub: "buyer-17".into(),
        scope: "/events/final/".into(),
        nbf: 0,
        exp: NOW + 600,
        dev: Some(crate::device::hash_id("tv-1", None)),
        ip: None,
        sid: Some("0f1e2d3c4b5a6978".into()),
        cap: NOW + 86_400,
        allow: Vec::new(),
        cls: Some(DeviceClass::Ott),
    }
}

#[test]
fn session_tokens_are_packed_short_with_a_128_bit_mac() {
    let session = sign(&ring(), Kind::Session, &session_claims());
    assert!(session.starts_with("s2.k2026."), "{session}");
    let mac = session.rsplit('.').next().unwrap();
    assert_eq!(mac.len(), 22, "16 bytes of MAC");
    // 59 packed bytes: flags 1, exp 4, cap 4, sub 9, scope 15, device 17, session 9; the
    // demo's shorter names (`demo`, `/demo/`) make it 96 characters with its key id.
    assert_eq!(session.len(), "s2.k2026..".len() + 79 + 22, "{session}");
    let json = {
        let mut claims = session_claims();
        claims.exp = u64::MAX - 1; // does not pack: signed as s1 JSON
        sign(&ring(), Kind::Session, &claims)
    };
    assert!(
        json.starts_with("s1.") && json.len() > session.len() + 60,
        "{json}"
    );
    assert_eq!(
        verify(&ring(), &session, NOW, 0),
        Ok((Kind::Session, session_claims()))
    );
}

#[test]
fn first_format_session_tokens_still_verify() {
    let key = ring().signing_key().clone();
    let mut raw = String::from("s1.k2026.");
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&session_claims()).unwrap(), &mut raw);
    let mac = key.mac(raw.as_bytes());
    raw.push('.');
    URL_SAFE_NO_PAD.encode_string(&mac[..16], &mut raw);
    assert_eq!(
        verify(&ring(), &raw, NOW, 0),
        Ok((Kind::Session, session_claims()))
    );
    // The same claims under the packed prefix do not decode: the prefix is signed too.
    let relabelled = raw.replacen("s1.", "s2.", 1);
    assert_eq!(
        verify(&ring(), &relabelled, NOW, 0),
        Err(TicketError::BadSignature)
    );
}

#[test]
fn any_changed_character_is_refused() {
    for raw in [
        sign(&ring(), Kind::Ticket, &claims()),
        sign(&ring(), Kind::Session, &session_claims()),
    ] {
        refuses_every_change(&raw);
    }
}

fn refuses_every_change(raw: &str) {
    let raw = raw.to_owned();
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
