use super::*;
use crate::ticket::Key;

const NOW: u64 = 1_800_000_000;

fn ring() -> KeyRing {
    KeyRing::new(
        vec![Key::new("k1", b"0123456789abcdef0123456789abcdef").unwrap()],
        "k1",
    )
    .unwrap()
}

fn claims() -> Claims {
    Claims {
        sub: "buyer".into(),
        scope: "/vod/movie/".into(),
        nbf: 0,
        exp: NOW + 600,
        dev: None,
        ip: None,
        sid: None,
        cap: 0,
        allow: Vec::new(),
        cls: None,
    }
}

fn presented<'a>(ticket: Option<&'a str>, session: Option<&'a str>) -> Presented<'a> {
    Presented {
        ticket,
        ticket_in_query: ticket.is_some(),
        session,
        device: None,
        client_ip: "198.51.100.7".parse().unwrap(),
    }
}

fn ticket_with(edit: impl FnOnce(&mut Claims)) -> String {
    let mut c = claims();
    edit(&mut c);
    ticket::sign(&ring(), Kind::Ticket, &c)
}

const PATH: &str = "/vod/movie/720p/seg1.ts";

/// The decision with no live sessions (expired session tokens stay expired).
fn decide(
    ring: &KeyRing,
    skew: u64,
    path: &str,
    presented: &Presented<'_>,
    now: u64,
) -> Result<Grant, Denied> {
    super::decide(ring, skew, path, presented, now, &|_| false, false)
}

#[test]
fn nothing_presented_is_no_credential() {
    let got = decide(&ring(), 0, PATH, &presented(None, None), NOW);
    assert_eq!(got, Err(Denied::NoCredential));
    assert_eq!(Denied::NoCredential.reason(), "no_credential");
}

#[test]
fn a_valid_ticket_in_scope_is_granted() {
    let t = ticket_with(|_| {});
    let grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    assert_eq!(grant.kind, Kind::Ticket);
    assert_eq!(grant.claims.sub, "buyer");
}

#[test]
fn out_of_scope_paths_are_refused() {
    let t = ticket_with(|_| {});
    let got = decide(
        &ring(),
        0,
        "/vod/other/seg1.ts",
        &presented(Some(&t), None),
        NOW,
    );
    assert_eq!(got, Err(Denied::OutOfScope));
}

#[test]
fn credential_errors_pass_through_with_their_reason() {
    let t = ticket_with(|c| c.exp = NOW - 1);
    let got = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap_err();
    assert!(matches!(
        got,
        Denied::Credential(TicketError::Expired { .. })
    ));
    assert_eq!(got.reason(), "expired");
}

#[test]
fn device_bound_ticket_needs_that_device() {
    let t = ticket_with(|c| c.dev = Some("tv-1".into()));
    let mut p = presented(Some(&t), None);
    assert_eq!(decide(&ring(), 0, PATH, &p, NOW), Err(Denied::WrongDevice));
    p.device = Some("phone-2");
    assert_eq!(decide(&ring(), 0, PATH, &p, NOW), Err(Denied::WrongDevice));
    p.device = Some("tv-1");
    assert!(decide(&ring(), 0, PATH, &p, NOW).is_ok());
}

#[test]
fn ip_bound_ticket_needs_an_address_in_its_prefix() {
    let t = ticket_with(|c| c.ip = Some("198.51.100.0/24".parse().unwrap()));
    let mut p = presented(Some(&t), None);
    assert!(decide(&ring(), 0, PATH, &p, NOW).is_ok());
    p.client_ip = "198.51.101.7".parse().unwrap();
    assert_eq!(decide(&ring(), 0, PATH, &p, NOW), Err(Denied::IpMismatch));
}

#[test]
fn session_minted_from_a_ticket_carries_its_bindings_and_is_capped() {
    let t = ticket_with(|c| c.ip = Some("198.51.100.0/24".parse().unwrap()));
    let grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    let s = session_claims(&grant, Some("tv-1"), None, NOW, 3600, || "sid-1".into());
    assert_eq!(s.exp, NOW + 600, "never outlives the ticket");
    assert_eq!(s.cap, NOW + 600);
    assert_eq!(s.dev.as_deref(), Some("tv-1"));
    assert_eq!(s.ip, grant.claims.ip);
    assert_eq!(s.sid.as_deref(), Some("sid-1"));
    assert_eq!(s.scope, "/vod/movie/");
}

#[test]
fn a_session_token_is_preferred_and_keeps_its_session_id() {
    let t = ticket_with(|_| {});
    let grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    let s = session_claims(&grant, None, None, NOW, 60, || "sid-1".into());
    let token = ticket::sign(&ring(), Kind::Session, &s);
    let garbage = "t1.k1.xx.yy";
    let again = decide(
        &ring(),
        0,
        PATH,
        &presented(Some(garbage), Some(&token)),
        NOW + 30,
    )
    .unwrap();
    assert_eq!(again.kind, Kind::Session);
    let renewed = session_claims(&again, None, None, NOW + 30, 60, || "sid-2".into());
    assert_eq!(renewed.sid.as_deref(), Some("sid-1"));
    assert_eq!(renewed.exp, NOW + 90);
    assert_eq!(renewed.cap, NOW + 600);
}

#[test]
fn a_session_token_on_another_device_is_refused() {
    let t = ticket_with(|_| {});
    let grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    let s = session_claims(&grant, Some("tv-1"), None, NOW, 60, || "sid".into());
    let token = ticket::sign(&ring(), Kind::Session, &s);
    let mut p = presented(None, Some(&token));
    assert!(
        decide(&ring(), 0, PATH, &p, NOW).is_ok(),
        "no device named: the token carries it"
    );
    p.device = Some("laptop-9");
    assert_eq!(
        decide(&ring(), 0, PATH, &p, NOW),
        Err(Denied::SessionShared)
    );
}

#[test]
fn routes_public_wins_then_protected_else_unrouted() {
    let access = Access {
        protected: vec!["/vod/".into()],
        public: vec!["/vod/trailers/".into()],
        cors_origins: vec![],
        protected_cache_control: Default::default(),
    };
    assert_eq!(route(&access, "/vod/movie/a.ts"), Route::Protected);
    assert_eq!(route(&access, "/vod/trailers/a.ts"), Route::Public);
    assert_eq!(route(&access, "/admin/secret"), Route::Unrouted);
    let free = Access {
        protected: vec!["/".into()],
        public: vec!["/vod/free".into()],
        cors_origins: vec![],
        protected_cache_control: Default::default(),
    };
    assert_eq!(route(&free, "/vod/free/a.ts"), Route::Public);
    assert_eq!(
        route(&free, "/vod/free-premium/a.ts"),
        Route::Protected,
        "a prefix ends at a segment"
    );
}

#[test]
fn a_preview_token_opens_only_its_listed_paths() {
    let mut c = claims();
    c.allow = vec![
        "/vod/movie/720p/seg1.ts".into(),
        "/vod/movie/720p/index.m3u8".into(),
    ];
    let token = ticket::sign(&ring(), Kind::Session, &c);
    let p = presented(None, Some(&token));
    assert!(decide(&ring(), 0, PATH, &p, NOW).is_ok());
    assert!(decide(&ring(), 0, "/vod/movie/720p/index.m3u8", &p, NOW).is_ok());
    assert_eq!(
        decide(&ring(), 0, "/vod/movie/720p/seg9.ts", &p, NOW),
        Err(Denied::OutOfScope)
    );
}

#[test]
fn a_session_token_from_another_network_is_shared() {
    let t = ticket_with(|_| {});
    let grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    let net: IpPrefix = "198.51.100.0/24".parse().unwrap();
    let s = session_claims(&grant, None, Some(net), NOW, 60, || "sid".into());
    assert_eq!(s.ip, Some(net));
    let token = ticket::sign(&ring(), Kind::Session, &s);
    let mut p = presented(None, Some(&token));
    p.client_ip = "198.51.100.200".parse().unwrap();
    assert!(
        decide(&ring(), 0, PATH, &p, NOW).is_ok(),
        "a mobile client moving inside its /24"
    );
    p.client_ip = "203.0.113.1".parse().unwrap();
    assert_eq!(
        decide(&ring(), 0, PATH, &p, NOW),
        Err(Denied::SessionShared)
    );
}

#[test]
fn an_expired_session_token_lives_on_while_its_session_does() {
    let t = ticket_with(|_| {});
    let grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    let s = session_claims(&grant, None, None, NOW, 60, || "sid-7".into());
    let token = ticket::sign(&ring(), Kind::Session, &s);
    let p = presented(None, Some(&token));
    let later = NOW + 120;
    assert!(matches!(
        decide(&ring(), 0, PATH, &p, later),
        Err(Denied::Credential(TicketError::Expired { .. }))
    ));
    let alive = |sid: &str| sid == "sid-7";
    assert!(super::decide(&ring(), 0, PATH, &p, later, &alive, false).is_ok());
    // A ticket is never renewed that way.
    let expired_ticket = ticket_with(|c| c.exp = NOW - 1);
    assert!(super::decide(
        &ring(),
        0,
        PATH,
        &presented(Some(&expired_ticket), None),
        NOW,
        &|_| true,
        false
    )
    .is_err());
}

#[test]
fn a_live_session_never_outlives_the_ticket_it_came_from() {
    // Without rights, a session token is capped by its ticket's expiry.
    let t = ticket_with(|c| c.exp = NOW + 30);
    let grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    let s = session_claims(&grant, None, None, NOW, 60, || "sid-7".into());
    assert_eq!(s.cap, NOW + 30);
    let token = ticket::sign(&ring(), Kind::Session, &s);
    let p = presented(None, Some(&token));
    let alive = |sid: &str| sid == "sid-7";
    assert!(super::decide(&ring(), 0, PATH, &p, NOW + 29, &alive, false).is_ok());
    assert!(
        matches!(
            super::decide(&ring(), 0, PATH, &p, NOW + 31, &alive, false),
            Err(Denied::Credential(TicketError::Expired { .. }))
        ),
        "its session is alive, but its ticket has ended"
    );
    assert!(
        super::decide(&ring(), 5, PATH, &p, NOW + 31, &alive, false).is_ok(),
        "within the skew"
    );
    // With a rights check to follow, the right's end is that check's: a right extended
    // since the token was minted reaches it.
    assert!(super::decide(&ring(), 0, PATH, &p, NOW + 31, &alive, true).is_ok());
    assert!(
        super::decide(&ring(), 0, PATH, &p, NOW + 31, &|_| false, true).is_err(),
        "but only while its session is alive"
    );
}

#[test]
fn sessions_are_capped_by_the_right_not_the_ticket_when_rights_are_checked() {
    let t = ticket_with(|_| {});
    let mut grant = decide(&ring(), 0, PATH, &presented(Some(&t), None), NOW).unwrap();
    grant.right_until = Some(NOW + 86_400);
    let s = session_claims(&grant, None, None, NOW + 3000, 600, || "sid".into());
    assert_eq!(
        s.exp,
        NOW + 3600,
        "past the ticket's own expiry at NOW + 600"
    );
    assert_eq!(s.cap, NOW + 86_400);
}
