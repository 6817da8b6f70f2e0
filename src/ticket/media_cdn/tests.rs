//! Google's published vectors and the verifier's refusals.
//!
//! The expected tokens are those of GoogleCloudPlatform/python-docs-samples,
//! `media_cdn/dualtoken_test.py` (the tests of `dualtoken.py`'s `sign_token`, the sample
//! the Media CDN "Generate tokens" page shows): HMAC key
//! `g_SlMILiIWKqsC6Z2L7gy0sReDOqtSrJrE7CXNr5Nl8=`, Ed25519 seed
//! `DJUcnLguVFKmVCFnWGubG1MZg7fWAnxacMjKDhVZMGI=`, `Starts` 2022-09-13T00:00:00Z,
//! `Expires` 2022-09-13T12:00:00Z.

use http::HeaderMap;

use super::*;

const HMAC_KEY: &str = "g_SlMILiIWKqsC6Z2L7gy0sReDOqtSrJrE7CXNr5Nl8=";
const ED25519_SEED: &str = "DJUcnLguVFKmVCFnWGubG1MZg7fWAnxacMjKDhVZMGI=";
const STARTS: u64 = 1_663_027_200;
const EXPIRES: u64 = 1_663_070_400;
const NOW: u64 = 1_663_050_000;

fn key(algorithm: Algorithm) -> SigningKey {
    match algorithm {
        Algorithm::Ed25519 => {
            MediaKey::ed25519_private("ed", &LENIENT.decode(ED25519_SEED).unwrap()).unwrap()
        }
        hmac => MediaKey::hmac("mac", hmac, &LENIENT.decode(HMAC_KEY).unwrap()).unwrap(),
    }
    .signing()
    .unwrap()
}

fn scope(which: &str) -> Scope {
    match which {
        "prefix" => Scope::UrlPrefix("http://10.20.30.40/".into()),
        "glob" => Scope::PathGlobs(vec!["/*".into()]),
        _ => Scope::FullPath("/example.m3u8".into()),
    }
}

fn all_params() -> MediaToken {
    MediaToken {
        scope: scope("glob"),
        starts: Some(STARTS),
        expires: EXPIRES,
        session_id: Some("test-id".into()),
        data: Some("test-data".into()),
        headers: vec![("Foo".into(), "bar".into()), ("BAZ".into(), "quux".into())],
        ip_ranges: Some("203.0.113.0/24,2001:db8:4a7f:a732/64".into()),
    }
}

/// (algorithm, scope, expected token) from `dualtoken_test.py`.
const VECTORS: &[(Algorithm, &str, &str)] = &[
    (Algorithm::Ed25519, "prefix", "URLPrefix=aHR0cDovLzEwLjIwLjMwLjQwLw~Expires=1663070400~Signature=OQLXEjnApFGJaGZ_jvp2R7VY5q3ic-HT3igFpi9iPsJRXtQuvPF4cxZUT-rtCqzteXx3vSRhk09FxgDQauO_DA"),
    (Algorithm::Ed25519, "glob", "PathGlobs=/*~Expires=1663070400~Signature=9pBdD_6O6LB-4V67HZ_SOc2G_jIkSZ_tMsKnVqElmPlwKB_xDiW7DKAnv8L8CmweeZquaLFlnLogbMcIV8bNCQ"),
    (Algorithm::Ed25519, "full", "FullPath~Expires=1663070400~Signature=X74OTNjtseIUmsab-YiOTZ8jyX_KG7v4YQWwcFpfFmjhzaX8NdweMc9Wglj8wxEsEW85g3_MBG3T9jzLZFQDCw"),
    (Algorithm::Sha1, "prefix", "URLPrefix=aHR0cDovLzEwLjIwLjMwLjQwLw~Expires=1663070400~hmac=6f5b4bb82536810d5ee111cba3e534d49c6ac3cb"),
    (Algorithm::Sha1, "glob", "PathGlobs=/*~Expires=1663070400~hmac=c1c446eea24faa31392519f975fea7eefb945625"),
    (Algorithm::Sha1, "full", "FullPath~Expires=1663070400~hmac=7af78177d6bc001d5626eefe387b1774a4a99ca2"),
    (Algorithm::Sha256, "prefix", "URLPrefix=aHR0cDovLzEwLjIwLjMwLjQwLw~Expires=1663070400~hmac=409722313cf6d987da44bb360e60dccc3d79764520fc5e3b57654e1d4d2c862e"),
    (Algorithm::Sha256, "glob", "PathGlobs=/*~Expires=1663070400~hmac=9439ecdd5c4919f76f915dea72afa85a045579794e63d8cda664f5a1140c8d93"),
    (Algorithm::Sha256, "full", "FullPath~Expires=1663070400~hmac=365b41fd77297371d890fc9a56e4e3d3baa4c7afbd230a0e9a81c8e1bcab9420"),
];

/// The all-parameters vectors of `dualtoken_test.py`.
const ALL_PARAMS: &[(Algorithm, &str)] = &[
    (Algorithm::Ed25519, "PathGlobs=/*~Starts=1663027200~Expires=1663070400~SessionID=test-id~Data=test-data~Headers=Foo,BAZ~IPRanges=MjAzLjAuMTEzLjAvMjQsMjAwMTpkYjg6NGE3ZjphNzMyLzY0~Signature=A7u67hveGxGvP8KBWZlUuH0IsqhS4a2lcsXwy3uc4X3zaVuw7LY-2FQT1ZF8UxkSFAsDS3_0LYnXwXB2XdepDg"),
    (Algorithm::Sha1, "PathGlobs=/*~Starts=1663027200~Expires=1663070400~SessionID=test-id~Data=test-data~Headers=Foo,BAZ~IPRanges=MjAzLjAuMTEzLjAvMjQsMjAwMTpkYjg6NGE3ZjphNzMyLzY0~hmac=b8242e8b76cbfbbd61b3540ed0eb60a2ec2fdbdb"),
    (Algorithm::Sha256, "PathGlobs=/*~Starts=1663027200~Expires=1663070400~SessionID=test-id~Data=test-data~Headers=Foo,BAZ~IPRanges=MjAzLjAuMTEzLjAvMjQsMjAwMTpkYjg6NGE3ZjphNzMyLzY0~hmac=dda9c3d6f3b2e867a09fbb76209ea138dd81f8512210f970d1e92f90927bef4b"),
];

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

struct Req {
    url: String,
    path: String,
    client: IpAddr,
    headers: HeaderMap,
}

impl Req {
    fn new(url: &str) -> Self {
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map_or("/".to_owned(), |p| format!("/{p}"));
        Self {
            url: url.to_owned(),
            path,
            client: "203.0.113.7".parse().unwrap(),
            headers: headers(&[("foo", "bar"), ("baz", "quux")]),
        }
    }

    fn as_request(&self) -> Request<'_> {
        Request {
            url: &self.url,
            path: &self.path,
            client: self.client,
            headers: &self.headers,
        }
    }
}

fn verifying_keys() -> Vec<MediaKey> {
    [Algorithm::Sha256, Algorithm::Sha1, Algorithm::Ed25519]
        .into_iter()
        .map(|a| key(a).key().clone())
        .collect()
}

#[test]
fn googles_vectors_are_minted_byte_for_byte() {
    for (algorithm, which, expected) in VECTORS {
        let token = MediaToken::new(scope(which), EXPIRES);
        assert_eq!(
            mint(&token, &key(*algorithm)),
            *expected,
            "{algorithm:?} {which}"
        );
    }
    for (algorithm, expected) in ALL_PARAMS {
        assert_eq!(
            mint(&all_params(), &key(*algorithm)),
            *expected,
            "{algorithm:?} all params"
        );
    }
}

#[test]
fn googles_vectors_verify_for_the_request_they_were_made_for() {
    let keys = verifying_keys();
    for (algorithm, which, raw) in VECTORS {
        let req = Req::new("http://10.20.30.40/example.m3u8");
        let got = verify(raw, &keys, &req.as_request(), NOW, 0)
            .unwrap_or_else(|e| panic!("{algorithm:?} {which}: {e:?}"));
        assert!(got.in_scope && got.client_allowed, "{algorithm:?} {which}");
        assert_eq!(got.token.expires, EXPIRES);
    }
    for (algorithm, raw) in ALL_PARAMS {
        let req = Req::new("http://cdn.example/any/path.ts");
        let got = verify(raw, &keys, &req.as_request(), NOW, 0)
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e:?}"));
        assert_eq!(got.token, all_params(), "{algorithm:?}");
        assert!(got.in_scope && got.client_allowed);
    }
}

#[test]
fn a_full_path_token_opens_only_its_path() {
    let raw = VECTORS[8].2;
    let keys = verifying_keys();
    let other = Req::new("http://10.20.30.40/other.m3u8");
    assert_eq!(
        verify(raw, &keys, &other.as_request(), NOW, 0),
        Err(TicketError::BadSignature)
    );
    // A `~` in the path would splice fields into the signed text.
    let spliced = Req::new("http://10.20.30.40/example.m3u8~Starts=1");
    assert_eq!(
        verify(raw, &keys, &spliced.as_request(), NOW, 0),
        Err(TicketError::Malformed)
    );
}

#[test]
fn headers_named_by_the_token_must_carry_the_signed_values() {
    let raw = ALL_PARAMS[2].1;
    let keys = verifying_keys();
    let mut req = Req::new("http://cdn.example/a.ts");
    req.headers = headers(&[("foo", "bar"), ("baz", "other")]);
    assert_eq!(
        verify(raw, &keys, &req.as_request(), NOW, 0),
        Err(TicketError::BadSignature)
    );
    req.headers = headers(&[("foo", "bar")]);
    assert_eq!(
        verify(raw, &keys, &req.as_request(), NOW, 0),
        Err(TicketError::BadSignature),
        "a missing header cannot be signed"
    );
}

#[test]
fn a_header_value_cannot_stand_in_for_fields_the_token_dropped() {
    let key = key(Algorithm::Sha256);
    let mut token = MediaToken::new(scope("glob"), EXPIRES);
    token.headers = vec![("x-foo".into(), "bar".into())];
    token.ip_ranges = Some("10.0.0.0/8".into());
    let raw = mint(&token, &key);
    let keys = vec![key.key().clone()];
    let mut req = Req::new("http://cdn.example/a.ts");
    req.headers = headers(&[("x-foo", "bar")]);
    let honest = verify(&raw, &keys, &req.as_request(), NOW, 0).unwrap();
    assert!(!honest.client_allowed, "203.0.113.7 is outside 10.0.0.0/8");

    // The same signed bytes, with the address binding moved from the token into the header.
    let ranges = format!("~IPRanges={}", URL_SAFE_NO_PAD.encode("10.0.0.0/8"));
    let forged = raw.replace(&ranges, "");
    assert_ne!(forged, raw);
    req.headers = headers(&[("x-foo", &format!("bar{ranges}"))]);
    assert_eq!(
        verify(&forged, &keys, &req.as_request(), NOW, 0),
        Err(TicketError::BadSignature)
    );

    // Two headers signed, one dropped from the token and carried in the other's value.
    token.ip_ranges = None;
    token.headers.push(("x-bar".into(), "baz".into()));
    let raw = mint(&token, &key);
    let forged = raw.replace("Headers=x-foo,x-bar", "Headers=x-foo");
    req.headers = headers(&[("x-foo", "bar,x-bar=baz")]);
    assert_eq!(
        verify(&forged, &keys, &req.as_request(), NOW, 0),
        Err(TicketError::BadSignature)
    );
}

#[test]
fn commas_in_ordinary_header_values_still_verify() {
    let key = key(Algorithm::Sha256);
    for (name, value) in [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        ),
        ("accept-language", "en-US,en;q=0.9"),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
    ] {
        let mut token = MediaToken::new(scope("glob"), EXPIRES);
        token.headers = vec![(name.into(), value.into())];
        let raw = mint(&token, &key);
        let mut req = Req::new("http://cdn.example/a.ts");
        req.headers = headers(&[(name, value)]);
        assert!(
            verify(&raw, &[key.key().clone()], &req.as_request(), NOW, 0).is_ok(),
            "{name}: {value}"
        );
    }
}

#[test]
fn tampering_with_any_field_or_the_signature_is_refused() {
    let keys = verifying_keys();
    let req = Req::new("http://10.20.30.40/example.m3u8");
    for (_, _, raw) in VECTORS {
        for tampered in [
            raw.replace("Expires=1663070400", "Expires=1663070401"),
            raw.replace("PathGlobs=/*", "PathGlobs=/**"),
            format!("{}0", &raw[..raw.len() - 1]),
        ] {
            if tampered != *raw {
                assert!(
                    verify(&tampered, &keys, &req.as_request(), NOW, 0).is_err(),
                    "{tampered}"
                );
            }
        }
    }
}

#[test]
fn any_configured_key_verifies_and_other_keys_do_not() {
    let raw = VECTORS[7].2;
    let req = Req::new("http://10.20.30.40/example.m3u8");
    let stranger = MediaKey::hmac("old", Algorithm::Sha256, b"another secret").unwrap();
    assert_eq!(
        verify(
            raw,
            std::slice::from_ref(&stranger),
            &req.as_request(),
            NOW,
            0
        ),
        Err(TicketError::BadSignature)
    );
    let rotated = [stranger, key(Algorithm::Sha256).key().clone()];
    assert!(verify(raw, &rotated, &req.as_request(), NOW, 0).is_ok());
    let public_only = MediaKey::ed25519_public(
        "pub",
        &[
            0x9f, 0xb9, 0xf0, 0xbe, 0x1c, 0xda, 0xd7, 0x50, 0xb4, 0x4a, 0xe5, 0x3d, 0x6b, 0x2d,
            0x6e, 0x5a, 0x30, 0xd2, 0x7f, 0x31, 0xfe, 0x0a, 0x92, 0x01, 0x81, 0x7c, 0x6a, 0x23,
            0x3f, 0x98, 0x77, 0xd4,
        ],
    )
    .unwrap();
    // The public key of Google's sample seed (dualtoken_test.py writes it to example.pub).
    assert!(verify(
        VECTORS[1].2,
        std::slice::from_ref(&public_only),
        &req.as_request(),
        NOW,
        0
    )
    .is_ok());
    assert!(public_only.signing().is_err(), "a public key cannot sign");
}

#[test]
fn the_window_has_skew_on_both_ends() {
    let raw = ALL_PARAMS[2].1;
    let keys = verifying_keys();
    let req = Req::new("http://cdn.example/a.ts");
    let r = req.as_request();
    assert_eq!(
        verify(raw, &keys, &r, STARTS - 11, 10),
        Err(TicketError::NotYetValid { at: STARTS })
    );
    assert!(verify(raw, &keys, &r, STARTS - 10, 10).is_ok());
    assert!(verify(raw, &keys, &r, EXPIRES + 9, 10).is_ok());
    assert_eq!(
        verify(raw, &keys, &r, EXPIRES + 10, 10),
        Err(TicketError::Expired { at: EXPIRES })
    );
}

#[test]
fn scope_and_address_are_reported() {
    let keys = verifying_keys();
    let prefix = VECTORS[6].2;
    let elsewhere = Req::new("https://10.20.30.40/example.m3u8");
    let got = verify(prefix, &keys, &elsewhere.as_request(), NOW, 0).unwrap();
    assert!(!got.in_scope, "another scheme is outside the URL prefix");

    let signer = key(Algorithm::Sha256);
    let mut token = MediaToken::new(Scope::PathGlobs(vec!["/live/*.ts".into()]), EXPIRES);
    token.ip_ranges = Some("198.51.100.0/24".into());
    let raw = mint(&token, &signer);
    let mut req = Req::new("http://cdn.example/live/a/b.ts");
    let got = verify(&raw, &keys, &req.as_request(), NOW, 0).unwrap();
    assert!(got.in_scope);
    assert!(!got.client_allowed);
    req.client = "198.51.100.9".parse().unwrap();
    req.path = "/live/a/b.m3u8".into();
    let got = verify(&raw, &keys, &req.as_request(), NOW, 0).unwrap();
    assert!(got.client_allowed);
    assert!(!got.in_scope);
}

#[test]
fn malformed_tokens_are_named_so() {
    let keys = verifying_keys();
    let req = Req::new("http://cdn.example/a.ts");
    for raw in [
        "",
        "hmac=00",
        "Expires=1~hmac=00",
        "PathGlobs=/*~hmac=00",
        "PathGlobs=/*~Expires=soon~hmac=00",
        "PathGlobs=/*~FullPath~Expires=1~hmac=00",
        "PathGlobs=/*~Expires=1~Expires=2~hmac=00",
        "PathGlobs=/*~Expires=1~Colour=red~hmac=00",
        "URLPrefix=%%%~Expires=1~hmac=00",
        "PathGlobs=/*~Expires=1~mac=00",
    ] {
        assert_eq!(
            verify(raw, &keys, &req.as_request(), NOW, 0),
            Err(TicketError::Malformed),
            "{raw}"
        );
    }
}

#[test]
fn globs() {
    assert!(glob_matches("/*", "/a/b.ts"));
    assert!(glob_matches("/live/*.ts", "/live/x/y.ts"));
    assert!(!glob_matches("/live/*.ts", "/live/x/y.m3u8"));
    assert!(glob_matches("/a*b*c", "/aXbYbZc"));
    assert!(!glob_matches("/a*b*c", "/aXbYbZ"));
    assert!(glob_matches("/exact.m3u8", "/exact.m3u8"));
    assert!(!glob_matches("/exact.m3u8", "/exact.m3u8x"));
    assert!(glob_matches("/*/**", "/a/"));
}
