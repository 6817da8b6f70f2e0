//! The frozen vectors of issue 6 (key hex `0123456789abcdef0123456789abcdef`).

use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_001_000;

fn key(algorithm: Algorithm) -> EdgeKey {
    EdgeKey::from_hex(KEY, algorithm).unwrap()
}

#[test]
fn acl_mode_vector() {
    let token = EdgeToken {
        start: Some(1_700_000_000),
        exp: 1_700_003_600,
        acl: Some(vec!["/live/event1/*".into()]),
        ..EdgeToken::default()
    };
    let raw = mint(&token, None, &key(Algorithm::Sha256), &Options::default());
    assert_eq!(
        raw,
        "st=1700000000~exp=1700003600~acl=/live/event1/*~hmac=d9e40b361e4127db68d712eb3feab22871ba42e53ae3f1f908e3b93cea44faed"
    );
    let got = verify(
        &raw,
        &[key(Algorithm::Sha256)],
        "/live/event1/seg1.ts",
        &Options::default(),
        NOW,
        0,
    )
    .unwrap();
    assert!(got.in_scope);
    let outside = verify(
        &raw,
        &[key(Algorithm::Sha256)],
        "/live/event2/seg1.ts",
        &Options::default(),
        NOW,
        0,
    )
    .unwrap();
    assert!(!outside.in_scope);
}

#[test]
fn url_mode_vector_never_carries_the_url() {
    let token = EdgeToken {
        exp: 1_700_003_600,
        ..EdgeToken::default()
    };
    let raw = mint(
        &token,
        Some("/vod/movie/index.m3u8"),
        &key(Algorithm::Sha256),
        &Options::default(),
    );
    assert_eq!(
        raw,
        "exp=1700003600~hmac=45f25ba910ba82d3c0a8225f6dde5d44db5d09e3c04af99aaea2fb4c9f6cb550"
    );
    assert!(verify(
        &raw,
        &[key(Algorithm::Sha256)],
        "/vod/movie/index.m3u8",
        &Options::default(),
        NOW,
        0
    )
    .is_ok());
    assert_eq!(
        verify(
            &raw,
            &[key(Algorithm::Sha256)],
            "/vod/movie/other.m3u8",
            &Options::default(),
            NOW,
            0
        ),
        Err(TicketError::BadSignature),
        "the MAC covers the path"
    );
}

#[test]
fn sha1_with_salt_vector() {
    let options = Options {
        salt: Some("pepper".into()),
        escape_early: false,
    };
    let token = EdgeToken {
        exp: 1_700_003_600,
        ..EdgeToken::default()
    };
    let raw = mint(&token, Some("/vod/a.ts"), &key(Algorithm::Sha1), &options);
    assert_eq!(
        raw,
        "exp=1700003600~hmac=de28bb5fef693f2065b1557dd23b78a7795086d2"
    );
    assert!(verify(&raw, &[key(Algorithm::Sha1)], "/vod/a.ts", &options, NOW, 0).is_ok());
    assert_eq!(
        verify(
            &raw,
            &[key(Algorithm::Sha1)],
            "/vod/a.ts",
            &Options::default(),
            NOW,
            0
        ),
        Err(TicketError::BadSignature),
        "the salt is part of the MAC"
    );
}

#[test]
fn every_key_is_tried_and_the_window_has_skew() {
    let old = EdgeKey::from_hex("00112233445566778899aabbccddeeff", Algorithm::Sha256).unwrap();
    let token = EdgeToken {
        start: Some(NOW - 10),
        exp: NOW + 10,
        acl: Some(vec!["/*".into()]),
        ..EdgeToken::default()
    };
    let raw = mint(&token, None, &old, &Options::default());
    let keys = [key(Algorithm::Sha256), old];
    assert!(verify(&raw, &keys, "/x", &Options::default(), NOW, 0).is_ok());
    assert_eq!(
        verify(&raw, &keys, "/x", &Options::default(), NOW + 10, 0),
        Err(TicketError::Expired { at: NOW + 10 })
    );
    assert!(verify(&raw, &keys, "/x", &Options::default(), NOW + 10, 5).is_ok());
    assert_eq!(
        verify(&raw, &keys, "/x", &Options::default(), NOW - 11, 0),
        Err(TicketError::NotYetValid { at: NOW - 10 })
    );
    assert_eq!(
        verify(&raw, &keys[..1], "/x", &Options::default(), NOW, 0),
        Err(TicketError::BadSignature)
    );
}

#[test]
fn tampering_and_garbage() {
    let token = EdgeToken {
        exp: NOW + 100,
        acl: Some(vec!["/a/*".into(), "/b/?.ts".into()]),
        ..EdgeToken::default()
    };
    let raw = mint(&token, None, &key(Algorithm::Md5), &Options::default());
    assert!(raw.contains("acl=/a/*!/b/?.ts~hmac="));
    let k = [key(Algorithm::Md5)];
    assert!(
        verify(&raw, &k, "/b/1.ts", &Options::default(), NOW, 0)
            .unwrap()
            .in_scope
    );
    assert!(
        !verify(&raw, &k, "/b/12.ts", &Options::default(), NOW, 0)
            .unwrap()
            .in_scope
    );
    let widened = raw.replace("acl=/a/*", "acl=/*");
    assert_eq!(
        verify(&widened, &k, "/x", &Options::default(), NOW, 0),
        Err(TicketError::BadSignature)
    );
    for bad in [
        "",
        "exp=1",
        "exp=x~hmac=00",
        "foo=1~hmac=00",
        "exp=1~hmac=zz",
    ] {
        assert!(
            matches!(
                verify(bad, &k, "/", &Options::default(), NOW, 0),
                Err(TicketError::Malformed)
            ),
            "{bad}"
        );
    }
}

#[test]
fn escape_early_is_quote_plus_with_lowercase_hex() {
    assert_eq!(
        quote_plus_lower("/vod/a b.ts?x=1"),
        "%2fvod%2fa+b.ts%3fx%3d1"
    );
    assert_eq!(quote_plus_lower("user-1_x.y~"), "user-1_x.y~");
    let options = Options {
        salt: None,
        escape_early: true,
    };
    let token = EdgeToken {
        exp: 1_700_003_600,
        ..EdgeToken::default()
    };
    // Made by akamai-edgeauth 0.3.2: EdgeAuth(key=KEY, end_time=1700003600,
    // escape_early=True).generate_url_token('/vod/a b.ts')
    let raw = mint(
        &token,
        Some("/vod/a b.ts"),
        &key(Algorithm::Sha256),
        &options,
    );
    assert_eq!(
        raw,
        "exp=1700003600~hmac=ce47fedd85295502841fd8949882031b49588bbc0fea6b26ab9c6f7339335c02"
    );
}

#[test]
fn a_key_that_is_not_hex_is_refused_not_a_panic() {
    for bad in ["\u{20ac}a", "zz", "abc", ""] {
        assert!(
            EdgeKey::from_hex(bad, Algorithm::Sha256).is_err(),
            "{bad:?}"
        );
    }
}
