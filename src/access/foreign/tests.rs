//! The foreign-credential decision: subject, scope, window and refusals per format.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::foreign::{MediaCdn, SecureLink};
use crate::config::AkamaiMint;
use crate::ticket::edgeauth::{EdgeKey, EdgeToken, Options};
use crate::ticket::media_cdn::{MediaKey, MediaToken};
use crate::ticket::secure_link::Expression;
use crate::ticket::TicketError;

const NOW: u64 = 1_700_001_000;
const EXP: u64 = 1_700_003_600;

fn media_key() -> MediaKey {
    MediaKey::hmac(
        "k1",
        media_cdn::Algorithm::Sha256,
        b"0123456789abcdef0123456789abcdef",
    )
    .unwrap()
}

fn akamai_key() -> EdgeKey {
    EdgeKey::from_hex(
        "0123456789abcdef0123456789abcdef",
        edgeauth::Algorithm::Sha256,
    )
    .unwrap()
}

fn formats() -> Formats {
    Formats {
        akamai: Some(AkamaiMint {
            key: akamai_key(),
            verify_keys: vec![akamai_key()],
            options: Options::default(),
            token_name: "__token__".into(),
            ttl: Duration::from_secs(60),
        }),
        secure_link: Some(SecureLink {
            expression: Expression::new("$secure_link_expires$uri $secret", "s3cret"),
            ttl: Duration::from_secs(60),
        }),
        media_cdn: Some(Arc::new(MediaCdn {
            keys: vec![media_key()],
            signer: None,
            token_name: "edge-cache-token".into(),
            cookie_name: "Edge-Cache-Cookie".into(),
            ttl: Duration::from_secs(60),
        })),
    }
}

const ALL: &[Format] = &[Format::Akamai, Format::SecureLink, Format::MediaCdn];

fn facts<'a>(path: &'a str, headers: &'a HeaderMap) -> Facts<'a> {
    Facts {
        path,
        url: "",
        client_ip: "203.0.113.9".parse().unwrap(),
        headers,
    }
}

fn akamai_token(acl: &str, id: Option<&str>, ip: Option<&str>) -> String {
    let token = EdgeToken {
        exp: EXP,
        acl: Some(vec![acl.into()]),
        id: id.map(str::to_owned),
        ip: ip.map(str::to_owned),
        ..EdgeToken::default()
    };
    let f = formats();
    let a = f.akamai.as_ref().unwrap();
    edgeauth::mint(&token, None, &a.key, &a.options)
}

fn decide_one(carried: Carried<'_>, path: &str, accepts: &[Format]) -> Result<Grant, Denied> {
    let headers = HeaderMap::new();
    decide(
        &formats(),
        accepts,
        &carried,
        &facts(path, &headers),
        NOW,
        0,
    )
}

#[test]
fn an_akamai_token_with_an_id_grants_to_that_subject_within_its_acl() {
    let raw = akamai_token("/live/event1/*", Some("alice"), None);
    let carried = Carried {
        akamai: Some(&raw),
        ..Carried::default()
    };
    let grant = decide_one(carried, "/live/event1/v/seg.ts", ALL).unwrap();
    assert_eq!(grant.kind, Kind::Session);
    assert_eq!(grant.claims.sub, "alice");
    assert_eq!(grant.claims.scope, "/live/event1/");
    assert_eq!((grant.claims.exp, grant.claims.cap), (EXP, EXP));
    assert!(grant.claims.sid.is_some());
    let again = decide_one(carried, "/live/event1/other.ts", ALL).unwrap();
    assert_eq!(again.claims.sid, grant.claims.sid, "one token, one session");
    assert_eq!(
        decide_one(carried, "/live/event2/seg.ts", ALL),
        Err(Denied::OutOfScope)
    );
}

#[test]
fn a_credential_without_a_subject_is_unnamed() {
    let raw = akamai_token("/live/*.ts", None, None);
    let carried = Carried {
        akamai: Some(&raw),
        ..Carried::default()
    };
    let grant = decide_one(carried, "/live/a/seg.ts", ALL).unwrap();
    assert_eq!(grant.claims.sub, UNNAMED_SUBJECT);
    assert_eq!(
        grant.claims.scope, "/live/a/seg.ts",
        "a glob that is not a plain prefix grants only the path"
    );
}

#[test]
fn an_akamai_ip_binding_is_kept() {
    let raw = akamai_token("/live/*", None, Some("198.51.100.1"));
    let carried = Carried {
        akamai: Some(&raw),
        ..Carried::default()
    };
    assert_eq!(
        decide_one(carried, "/live/seg.ts", ALL),
        Err(Denied::IpMismatch)
    );
    let raw = akamai_token("/live/*", None, Some("203.0.113.9"));
    let carried = Carried {
        akamai: Some(&raw),
        ..Carried::default()
    };
    let grant = decide_one(carried, "/live/seg.ts", ALL).unwrap();
    assert!(grant
        .claims
        .ip
        .unwrap()
        .contains("203.0.113.9".parse().unwrap()));
}

#[test]
fn formats_the_route_does_not_accept_are_refused_as_such() {
    let raw = akamai_token("/live/*", Some("alice"), None);
    let carried = Carried {
        akamai: Some(&raw),
        ..Carried::default()
    };
    assert_eq!(
        decide_one(carried, "/live/seg.ts", &[Format::Usher, Format::MediaCdn]),
        Err(Denied::NotAccepted)
    );
    assert_eq!(
        decide_one(Carried::default(), "/live/seg.ts", ALL),
        Err(Denied::NoCredential)
    );
}

#[test]
fn a_secure_link_grants_its_path_only_until_it_expires() {
    let f = formats();
    let hash = f
        .secure_link
        .as_ref()
        .unwrap()
        .expression
        .hash("/vod/a.ts", EXP, None);
    let expires = EXP.to_string();
    let carried = Carried {
        secure_link: Some((&hash, &expires)),
        ..Carried::default()
    };
    let grant = decide_one(carried, "/vod/a.ts", ALL).unwrap();
    assert_eq!(grant.claims.sub, UNNAMED_SUBJECT);
    assert_eq!(grant.claims.scope, "/vod/a.ts");
    assert_eq!(
        decide_one(carried, "/vod/b.ts", ALL),
        Err(Denied::Credential(TicketError::BadSignature))
    );
    let headers = HeaderMap::new();
    assert_eq!(
        decide(&f, ALL, &carried, &facts("/vod/a.ts", &headers), EXP, 0),
        Err(Denied::Credential(TicketError::Expired { at: EXP }))
    );
}

#[test]
fn a_media_cdn_token_names_its_subject_in_session_id() {
    let mut token = MediaToken::new(Scope::PathGlobs(vec!["/vod/movie/*".into()]), EXP);
    token.session_id = Some("bob".into());
    token.ip_ranges = Some("203.0.113.0/24".into());
    let raw = media_cdn::mint(&token, &media_key().signing().unwrap());
    let carried = Carried {
        media_cdn: Some(&raw),
        ..Carried::default()
    };
    let grant = decide_one(carried, "/vod/movie/360p/seg.ts", ALL).unwrap();
    assert_eq!(grant.claims.sub, "bob");
    assert_eq!(grant.claims.scope, "/vod/movie/");
    assert_eq!(grant.claims.ip, Some("203.0.113.0/24".parse().unwrap()));
    assert_eq!(
        decide_one(carried, "/vod/other/seg.ts", ALL),
        Err(Denied::OutOfScope)
    );
    let tampered = raw.replace("SessionID=bob", "SessionID=eve");
    let carried = Carried {
        media_cdn: Some(&tampered),
        ..Carried::default()
    };
    assert_eq!(
        decide_one(carried, "/vod/movie/seg.ts", ALL),
        Err(Denied::Credential(TicketError::BadSignature))
    );
}

#[test]
fn scopes_are_never_wider_than_the_credential() {
    assert_eq!(glob_scope("/live/*", "/live/a.ts"), "/live/");
    assert_eq!(glob_scope("/live/*.ts", "/live/a.ts"), "/live/a.ts");
    assert_eq!(glob_scope("/live/a.ts", "/live/a.ts"), "/live/a.ts");
    assert_eq!(glob_scope("*", "/live/a.ts"), "/live/a.ts");
    assert_eq!(
        url_prefix_scope("https://cdn.example/vod/", "/vod/a"),
        "/vod/"
    );
    assert_eq!(url_prefix_scope("https://cdn.example", "/vod/a"), "/");
    assert_eq!(
        url_prefix_scope("https://cdn.example/vod/a?x=1", "/vod/a"),
        "/vod/a"
    );
}
