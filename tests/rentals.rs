//! Rentals counted from first play through a real usher, when the account holds another
//! purchase of the same content that a ticket's request tries first: the rental a
//! request falls back to starts its hours at that request, its session's tokens end with
//! them, and a first play the store could not write is written by a later request, after
//! a back-off during which the rental's requests do not try it.

mod support;

use serde_json::{json, Value};
use support::admin::api;
use support::cluster::status_reason;
use support::inprocess::{sell_event, InProcess};
use support::*;

/// Two hours from first play, one device.
const HOURS: u64 = 2;

/// Rights from the store (decisions cached for 10 minutes), session tokens that last
/// longer than the rental (so their expiry is the rental's end), and sessions that a
/// player pausing for a while keeps.
async fn start() -> (Origin, InProcess) {
    let origin = event_origin().await;
    let config = rights_config(&origin.url(), "[sessions]\nidle_timeout = \"3h\"\n")
        .replace("[token]\n", "[token]\nsession_ttl = \"3h\"\n");
    let usher = InProcess::start(&config).await;
    (origin, usher)
}

/// A one-device week's pass playing on the TV, and a rental bought for later: the pass
/// plays first, so the account's yes is cached with the unplayed rental among the
/// purchases a ticket may fall back to. Answers the rental's play URL and hash.
async fn pass_on_the_tv_and_a_rental(usher: &InProcess) -> (String, String) {
    let (pass, _) = sell_event(
        usher,
        json!({"code": "week", "name": "Week", "period": 7, "activation": 1}),
    )
    .await;
    let rental = sell_event(
        usher,
        json!({"code": "rental", "name": "Rental", "hours": HOURS, "hours_from": "first_play", "activation": 1}),
    )
    .await;
    let tv = get(&pass, &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    rental
}

/// The phone's playlist, loaded with the rental's ticket: the reply, and the session token
/// its segment URIs carry.
async fn phone_plays(play_url: &str) -> (Reply, String) {
    let reply = get(play_url, &[("x-device-id", "phone")]).await;
    let token = reply.token_for("s1.ts").unwrap_or_default();
    (reply, token)
}

/// Five minutes after the account's yes was cached, the phone starts under the rental (its
/// playlist answered 200): the session token its segment URIs carry.
async fn phone_starts_the_rental(usher: &InProcess, rental: &str) -> String {
    usher.advance(300);
    let (reply, token) = phone_plays(rental).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    token
}

/// The claims of a session token signed with the test key.
fn claims_of(token: &str) -> usher::ticket::Claims {
    usher::ticket::verify_signature(&ring(), token).unwrap().1
}

/// The end the store gives the purchase `hash` (`null` while its hours wait).
async fn access_ends_at(usher: &InProcess, hash: &str) -> Value {
    let (status, shown) = api(usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(status, 200, "{shown}");
    shown["access_ends_at"].clone()
}

/// Five minutes after the account's yes was cached, the phone (which the pass, the TV's,
/// cannot admit) starts under the rental: its hours run from this play, and the session
/// token's end is theirs, not two hours from when the yes was cached.
#[tokio::test]
async fn a_rental_a_ticket_falls_back_to_ends_hours_after_its_first_play() {
    let (_origin, usher) = start().await;
    let (rental, hash) = pass_on_the_tv_and_a_rental(&usher).await;
    let token = phone_starts_the_rental(&usher, &rental).await;
    let ends = usher.now() + HOURS * 3600;
    assert_eq!(access_ends_at(&usher, &hash).await.as_u64(), Some(ends));
    let claims = claims_of(&token);
    assert_eq!(
        (claims.cap, claims.exp),
        (ends, ends),
        "the phone's session ends with the rental ({}s after the cached yes)",
        300
    );
}

/// The phone, started under the rental while the account's yes was cached, fetching the
/// segment URI it holds: it plays until the rental's hours end, counted from its first
/// play (not from when the yes was cached), and not a moment longer.
#[tokio::test]
async fn a_rental_started_under_a_cached_yes_plays_its_full_hours_and_no_longer() {
    let (_origin, usher) = start().await;
    let (rental, hash) = pass_on_the_tv_and_a_rental(&usher).await;
    let token = phone_starts_the_rental(&usher, &rental).await;
    let ends = usher.now() + HOURS * 3600;
    let segment = format!("{}/event/s1.ts?token={token}", usher.url);
    // The player fetches its segment URI along the way, and once just before the end.
    while usher.now() + 600 < ends {
        usher.advance(600);
        let reply = get(&segment, &[("x-device-id", "phone")]).await;
        assert_eq!(
            reply.status,
            200,
            "at {}s before the rental's end: {}",
            ends - usher.now(),
            reply.text()
        );
    }
    usher.advance(ends - 1 - usher.now());
    let last = get(&segment, &[("x-device-id", "phone")]).await;
    assert_eq!(last.status, 200, "the last second: {}", last.text());
    usher.advance(1);
    let past = get(&segment, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&past).0, 403, "{}", past.text());
    assert_eq!(access_ends_at(&usher, &hash).await.as_u64(), Some(ends));
}

/// Makes `usher`'s SQLite store refuse every write of a first play (a trigger stands in for
/// a failing disk) until the trigger `refuse_first_play` is dropped on the connection
/// answered.
fn refuse_first_plays(usher: &InProcess) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(usher.data_dir().join("usher.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_first_play BEFORE UPDATE ON purchases
         WHEN json_extract(NEW.data, '$.first_play_at') IS NOT NULL
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    db
}

/// `usher_first_play_writes_total` on `usher`'s admin `/metrics`: the first plays that
/// failed, were deferred and were written (0 when absent).
async fn first_play_writes(usher: &InProcess) -> (f64, f64, f64) {
    let mut counts = [0.0; 3];
    for (count, outcome) in counts.iter_mut().zip(["failed", "deferred", "written"]) {
        let series = format!("usher_first_play_writes_total{{outcome=\"{outcome}\"}}");
        *count = metric_at(&usher.admin, &series).await;
    }
    (counts[0], counts[1], counts[2])
}

/// The store refuses the first play's write (a trigger stands in for a failing disk): the
/// paying phone plays anyway, its session tokens ending with the rental as the cached yes
/// counts it (never later than a first play another node may have written), and its next
/// request, once the store writes again, records the first play, so the rental's hours
/// start and it is not free while the cache holds.
#[tokio::test]
async fn a_first_play_the_store_could_not_write_is_written_by_the_next_request() {
    let (_origin, usher) = start().await;
    let (rental, hash) = pass_on_the_tv_and_a_rental(&usher).await;
    let cached = usher.now();
    let db = refuse_first_plays(&usher);
    usher.advance(300);
    let (reply, token) = phone_plays(&rental).await;
    assert_eq!(
        reply.status,
        200,
        "not refused for our failure: {}",
        reply.text()
    );
    assert_eq!(
        access_ends_at(&usher, &hash).await,
        Value::Null,
        "not written"
    );
    assert_eq!(
        claims_of(&token).cap,
        cached + HOURS * 3600,
        "not written here (another node may have written it earlier): the session ends no \
         later than the cached yes's end for the rental"
    );

    db.execute_batch("DROP TRIGGER refuse_first_play").unwrap();
    // Past the failed write's back-off (`rights.first_play_retry`, 5 s).
    usher.advance(60);
    let segment = format!("{}/event/s1.ts?token={token}", usher.url);
    let reply = get(&segment, &[("x-device-id", "phone")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ends = usher.now() + HOURS * 3600;
    assert_eq!(
        access_ends_at(&usher, &hash).await.as_u64(),
        Some(ends),
        "the next request writes the first play"
    );
    usher.advance(HOURS * 3600);
    let past = get(&segment, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&past).0, 403, "{}", past.text());
}

/// While the store cannot write the first play, the phone's requests under the rental (its
/// segments and playlist reloads) try the write once, not once each (each try would wait
/// for the store: a locked SQLite up to its busy timeout), and every one is served; nor
/// does another account's rental try its own. Once the store writes again, a request
/// within the back-off (`rights.first_play_retry`, 5 s) still does not try; the first one
/// after it writes the first play.
#[tokio::test]
async fn a_first_play_the_store_could_not_write_is_not_tried_again_until_its_back_off_passes() {
    let (_origin, usher) = start().await;
    let (rental, hash) = pass_on_the_tv_and_a_rental(&usher).await;
    let db = refuse_first_plays(&usher);
    let token = phone_starts_the_rental(&usher, &rental).await;
    let phone = [("x-device-id", "phone")];
    let under_the_rental = ["s1.ts", "s2.ts", "index.m3u8", "s1.ts"]
        .map(|object| format!("{}/event/{object}?token={token}", usher.url));
    for url in &under_the_rental {
        let reply = get(url, &phone).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
    }
    assert_eq!(
        first_play_writes(&usher).await,
        (1.0, 4.0, 0.0),
        "one write tried for the five requests; the other four served without trying"
    );
    assert_eq!(access_ends_at(&usher, &hash).await, Value::Null);
    // Another account's rental: the store failed, not the purchase, so it waits too.
    let (status, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "rental", "media": "event", "account": "bob"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    let bob = get(
        sold["play_url"].as_str().unwrap(),
        &[("x-device-id", "laptop")],
    )
    .await;
    assert_eq!(bob.status, 200, "{}", bob.text());
    assert_eq!(
        first_play_writes(&usher).await,
        (1.0, 5.0, 0.0),
        "no other rental's first play tried during the back-off either"
    );
    let bobs = sold["hash"].as_str().unwrap();
    assert_eq!(access_ends_at(&usher, bobs).await, Value::Null);

    db.execute_batch("DROP TRIGGER refuse_first_play").unwrap();
    usher.advance(4);
    let reply = get(&under_the_rental[0], &phone).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        access_ends_at(&usher, &hash).await,
        Value::Null,
        "not tried again within the back-off"
    );
    usher.advance(1);
    let reply = get(&under_the_rental[0], &phone).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ends = usher.now() + HOURS * 3600;
    assert_eq!(
        access_ends_at(&usher, &hash).await.as_u64(),
        Some(ends),
        "the first request after the back-off writes the first play"
    );
    assert_eq!(first_play_writes(&usher).await, (1.0, 6.0, 1.0));
}

/// A node on the PostgreSQL database `url`, listening for the other nodes' invalidations
/// as `usher serve` does (so it caches decisions).
async fn node_on(origin: &Origin, url: &str) -> InProcess {
    let extra = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{url}\"\ntimeout = \"2s\"\nconnect_timeout = \"1s\"\n[sessions]\nidle_timeout = \"3h\"\n"
    );
    let config = rights_config(&origin.url(), &extra)
        .replace("[token]\n", "[token]\nsession_ttl = \"3h\"\n");
    let node = InProcess::start(&config).await;
    let usher::config::StoreBackend::Postgres(pg) = &node.state.config().store else {
        unreachable!("a PostgreSQL store")
    };
    tokio::spawn(usher::fanout::listen(node.state.clone(), pg.clone()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while node.state.fanout.health() != Some((true, true)) {
        assert!(std::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    node
}

/// Two nodes on one store. Node B caches the account's yes (the pass plays on the TV
/// there) while the rental is unplayed; five minutes later the phone starts the rental on
/// node A. Its player, moved to node B a minute later, loads the master with its ticket
/// twice: B finds the first play written by A and keeps no decision that names the
/// rental unplayed, so its session there ends with the rental's hours from the play on A
/// (the first load's end, in between, is no later: not counted from B's minute).
#[tokio::test]
async fn a_node_that_finds_the_first_play_written_elsewhere_ends_the_session_with_it() {
    let pg = support::postgres::Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let a = node_on(&origin, &url).await;
    let (pass, _) = sell_event(
        &a,
        json!({"code": "week", "name": "Week", "period": 7, "activation": 1}),
    )
    .await;
    let (rental, hash) = sell_event(
        &a,
        json!({"code": "rental", "name": "Rental", "hours": HOURS, "hours_from": "first_play", "activation": 1}),
    )
    .await;
    let b = node_on(&origin, &url).await;
    a.advance(b.now() - a.now());
    let on_b = |url: &str| format!("{}{}", b.url, &url[url.find("/event/").unwrap()..]);
    let tv = get(&on_b(&pass), &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "{}", tv.text());

    a.advance(300);
    b.advance(300);
    let (reply, _) = phone_plays(&rental).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ends = a.now() + HOURS * 3600;
    assert_eq!(access_ends_at(&a, &hash).await.as_u64(), Some(ends));

    a.advance(60);
    b.advance(60);
    let (first, token) = phone_plays(&on_b(&rental)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(claims_of(&token).cap <= ends, "never past the rental");
    let (again, token) = phone_plays(&on_b(&rental)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        claims_of(&token).cap,
        ends,
        "ends with the rental's hours from its first play on node A"
    );
}

/// Rights from the store as in [`start`], with usher's default clock skew of 30 seconds
/// (a session token is accepted that long past its expiry).
async fn start_with_skew() -> (Origin, InProcess) {
    let origin = event_origin().await;
    let config = rights_config(&origin.url(), "[sessions]\nidle_timeout = \"3h\"\n")
        .replace("[token]\n", "[token]\nsession_ttl = \"3h\"\n")
        .replace("clock_skew = \"0s\"", "clock_skew = \"30s\"");
    let usher = InProcess::start(&config).await;
    (origin, usher)
}

/// The pass `product` playing on the TV, and an unplayed rental of the same content: the
/// segment URI the TV's session holds and the pass's hash; the rental's play URL and hash.
async fn tv_plays_with_a_rental_waiting(
    usher: &InProcess,
    product: Value,
) -> ((String, String), (String, String)) {
    let (pass, pass_hash) = sell_event(usher, product).await;
    let rental = sell_event(
        usher,
        json!({"code": "rental", "name": "Rental", "hours": HOURS, "hours_from": "first_play"}),
    )
    .await;
    let playlist = get(&pass, &[("x-device-id", "tv")]).await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    let token = playlist.token_for("s1.ts").unwrap();
    let segment = format!("{}/event/s1.ts?token={token}", usher.url);
    let reply = get(&segment, &[("x-device-id", "tv")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    ((segment, pass_hash), rental)
}

/// A pass with no end playing on the TV, then revoked, and an unplayed rental of the same
/// content: the TV's segment URI, and the rental's play URL and hash.
async fn tv_plays_a_revoked_pass_with_a_rental_waiting(
    usher: &InProcess,
) -> (String, (String, String)) {
    let ((segment, pass), rental) =
        tv_plays_with_a_rental_waiting(usher, json!({"code": "show", "name": "Show"})).await;
    let (status, revoked) = api(
        usher,
        "POST",
        &format!("/api/v1/buyers/{pass}/revoke"),
        None,
    )
    .await;
    assert!(status < 300, "{revoked}");
    (segment, rental)
}

/// The TV's session asks for a segment once the pass it plays under no longer grants,
/// while its token is still accepted: refused as expired, and the rental keeps its hours
/// waiting until its own ticket starts them.
async fn the_rental_waits_for_its_own_ticket(
    usher: &InProcess,
    segment: &str,
    (play, hash): &(String, String),
) {
    let past = get(segment, &[("x-device-id", "tv")]).await;
    assert_eq!(status_reason(&past), (403, "expired".into()));
    assert_eq!(
        access_ends_at(usher, hash).await,
        Value::Null,
        "the pass's session started none of the rental's hours"
    );
    let reply = get(play, &[("x-device-id", "tv")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        access_ends_at(usher, hash).await.as_u64(),
        Some(usher.now() + HOURS * 3600),
        "its own ticket starts its hours"
    );
}

/// A pass of an hour playing on the TV, a few seconds past its end (within the clock skew
/// its session token is still accepted for): the segment request is refused, not served
/// under the account's unplayed rental.
#[tokio::test]
async fn a_session_past_its_pass_within_the_clock_skew_starts_no_rental() {
    let (_origin, usher) = start_with_skew().await;
    let sold = usher.now();
    let ((segment, _), rental) =
        tv_plays_with_a_rental_waiting(&usher, json!({"code": "hour", "name": "Hour", "hours": 1}))
            .await;
    usher.advance(sold + 3600 + 5 - usher.now());
    the_rental_waits_for_its_own_ticket(&usher, &segment, &rental).await;
}

/// A pass with no end playing on the TV, revoked; the player comes back after its session
/// idled out (60 s here), its token (no cap, hours to live) still valid: refused, not taken
/// up as a new session under the account's unplayed rental, whose hours wait for its own
/// ticket.
#[tokio::test]
async fn an_idled_out_session_of_a_revoked_pass_starts_no_rental() {
    let origin = event_origin().await;
    let config = rights_config(&origin.url(), "[sessions]\nidle_timeout = \"60s\"\n")
        .replace("[token]\n", "[token]\nsession_ttl = \"3h\"\n");
    let usher = InProcess::start(&config).await;
    let (segment, rental) = tv_plays_a_revoked_pass_with_a_rental_waiting(&usher).await;
    usher.advance(120);
    the_rental_waits_for_its_own_ticket(&usher, &segment, &rental).await;
}

/// A pass with no end, revoked while its session plays on the TV (its session tokens have
/// no cap): the session's next segment request is refused, not served under the account's
/// unplayed rental.
#[tokio::test]
async fn a_session_of_a_revoked_pass_starts_no_rental() {
    let (_origin, usher) = start_with_skew().await;
    let (segment, rental) = tv_plays_a_revoked_pass_with_a_rental_waiting(&usher).await;
    usher.advance(60);
    the_rental_waits_for_its_own_ticket(&usher, &segment, &rental).await;
}

/// as [`a_session_of_a_revoked_pass_starts_no_rental`], the TV's app sending the
/// pass's ticket as `Authorization: Bearer` on every request (`token.bearer`, on by
/// default): the segment request of the pass's session is carried on under the rental by
/// the ticket beside it, and starts the rental's hours without the viewer opening it.
#[tokio::test]
async fn a_session_of_a_revoked_pass_beside_a_bearer_ticket_starts_no_rental() {
    let (_origin, usher) = start_with_skew().await;
    let (pass_url, pass) = sell_event(&usher, json!({"code": "show", "name": "Show"})).await;
    let (_, rental_hash) = sell_event(
        &usher,
        json!({"code": "rental", "name": "Rental", "hours": HOURS, "hours_from": "first_play"}),
    )
    .await;
    let ticket = pass_url
        .split("ticket=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {ticket}");
    let tv = [("x-device-id", "tv"), ("authorization", bearer.as_str())];
    let playlist = get(&pass_url, &tv).await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    let token = playlist.token_for("s1.ts").unwrap();
    let segment = format!("{}/event/s1.ts?token={token}", usher.url);
    assert_eq!(get(&segment, &tv).await.status, 200);
    let (status, revoked) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{pass}/revoke"),
        None,
    )
    .await;
    assert!(status < 300, "{revoked}");
    usher.advance(60);
    let past = get(&segment, &tv).await;
    assert_eq!(
        (
            past.status.as_u16(),
            access_ends_at(&usher, &rental_hash).await
        ),
        (403, Value::Null),
        "the pass's session's segment started the rental's hours"
    );
}
