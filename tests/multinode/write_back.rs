//! What a node decided without Redis reaches Redis once it answers: a session admitted
//! alone is written back and counted by the others (one it replaced is written back
//! replaced and stops everywhere), one account Redis cannot read holds up the write-back of
//! no other (also after a gap), a session ended while Redis is away lands once it is back,
//! and one that idled out meanwhile is not brought back.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::admin::api;
use crate::support::cluster::status_reason;
use crate::support::inprocess::InProcess;
use crate::support::redis::Redis;
use crate::support::*;
use crate::{
    add_buyer, on, one_stream_playing_on_a_tv, one_stream_playing_on_a_tv_on, phone_admitted_on,
    play, sell_event, shared_setup, until, wait_ready,
};

/// Waits (bounded) until `node` has written back at least `n` sessions it decided without
/// Redis (`usher_sessions_written_back_total{cause="local"}`), with its subscription up
/// throughout: written back as such, not by catching up after a gap.
async fn written_back_on(node: &Usher, n: f64) {
    let local = "usher_sessions_written_back_total{cause=\"local\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(node, local).await < n {
        assert!(Instant::now() < deadline, "{local} never reached {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gap = "usher_sessions_written_back_total{cause=\"gap\"}";
    assert_eq!(metric(node, gap).await, 0.0);
    let lost = "usher_sessions_backend_errors_total{op=\"subscribe\"}";
    assert_eq!(
        metric(node, lost).await,
        0.0,
        "the subscription never broke"
    );
}

/// A session admitted while Redis did not answer (`on_backend_error = "local"`; here Redis
/// stalls for the one start, too briefly for any node to lose its subscription) is written
/// to Redis once it answers again: another node then counts it against the account's one
/// stream, and ends it by id, which stops it on the node playing it and frees the stream.
#[tokio::test]
async fn a_session_admitted_locally_while_redis_stalled_is_written_back_and_counted_everywhere() {
    let (shared, nodes, play_url) = shared_setup(
        "local",
        json!({"code": "p", "name": "Final", "max_sessions": 1}),
    )
    .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let local = "usher_sessions_backend_fallbacks_total{policy=\"local\"}";
    let tv_device = [("x-device-id", "tv")];

    shared.redis.stall();
    let (tv, tv_segment) = play(a, &play_url, &tv_device).await;
    shared.redis.unstall();
    assert_eq!(tv.status, 200, "{}", tv.text());
    assert_eq!(
        metric(a, local).await,
        1.0,
        "admitted by node A's own sessions"
    );

    // Node A writes it back in the background.
    written_back_on(a, 1.0).await;
    let (phone, _) = play(b, &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(
        status_reason(&phone),
        (403, "concurrency_limit".into()),
        "node B counts the tv node A admitted alone"
    );
    assert_eq!(get(&tv_segment, &tv_device).await.status, 200);

    // Node B, which does not hold it, ends it by id: node A stops it, the stream is free.
    let (_, listed) = api(a, "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();
    let (status, body) = api(b, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert!(status < 300, "{status} {body}");
    let ended = until(|| get(&tv_segment, &tv_device), |r| r.status != 200).await;
    assert_eq!(status_reason(&ended), (403, "session_ended".into()));
    let phone = phone_admitted_on(b, &play_url).await;
    assert_eq!(
        phone.status,
        200,
        "the ended tv no longer counts: {}",
        phone.text()
    );
    assert_eq!(
        metric(b, local).await,
        0.0,
        "node B decided with Redis throughout"
    );
}

/// A start admitted while Redis did not answer that replaced another session of this node
/// (`replace_oldest`): the replaced session is written back replaced too, and announced.
/// Node B, which played it as well, stops it, and node C, which never held it, refuses its
/// token rather than taking the session up again from a record Redis still held as live.
#[tokio::test]
async fn a_session_replaced_while_redis_stalled_is_written_back_replaced_and_stops_everywhere() {
    let (shared, nodes, play_url) = shared_setup(
        "local",
        json!({"code": "p", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"}),
    )
    .await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let tv_device = [("x-device-id", "tv")];
    let (tv, tv_segment) = play(a, &play_url, &tv_device).await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    assert_eq!(
        get(&on(b, &tv_segment), &tv_device).await.status,
        200,
        "node B plays it too"
    );

    shared.redis.stall();
    let (phone, _) = play(a, &play_url, &[("x-device-id", "phone")]).await;
    shared.redis.unstall();
    assert_eq!(phone.status, 200, "{}", phone.text());
    let tv_on_a = get(&tv_segment, &tv_device).await;
    assert_eq!(status_reason(&tv_on_a), (403, "session_replaced".into()));

    // Node A writes back the phone and, in the same write, the tv's replacement.
    written_back_on(a, 1.0).await;
    let tv_on_c = get(&on(c, &tv_segment), &tv_device).await;
    assert_eq!(
        status_reason(&tv_on_c),
        (403, "session_replaced".into()),
        "node C does not take the replaced tv up again"
    );
    let tv_b = on(b, &tv_segment);
    let tv_on_b = until(|| get(&tv_b, &tv_device), |r| r.status != 200).await;
    assert_eq!(
        status_reason(&tv_on_b),
        (403, "session_replaced".into()),
        "node B, which played the tv too, hears of its replacement"
    );
}

/// A node sharing sessions through `redis`, admitting by its own sessions when Redis
/// fails (`local`), with a product of one stream at a time: the node, and its origin
/// (keep it for the test's length).
async fn local_node(redis: &Redis) -> (Usher, Origin) {
    let origin = event_origin().await;
    let sessions = format!(
        "[sessions]\nbackend = \"redis\"\non_backend_error = \"local\"\n[sessions.redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
        redis.url
    );
    let node = Usher::start(&rights_config(&origin.url(), &sessions), &[]);
    wait_ready(&node, 200).await;
    sell_event(
        &node,
        json!({"code": "p", "name": "Final", "max_sessions": 1}),
    )
    .await;
    (node, origin)
}

/// The Redis hash holding `account`'s sessions.
fn sessions_key(account: &str) -> String {
    format!("usher:{{{account}}}:s")
}

/// Sells the product to `account` and starts its tv on `node`.
async fn tv_plays(node: &Usher, account: &str) {
    let play_url = add_buyer(node, "p", account).await.0;
    let (tv, _) = play(node, &play_url, &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "{account}: {}", tv.text());
}

/// Asserts that `node` admitted `n` starts by its own sessions, Redis failing.
async fn admitted_locally(node: &Usher, n: f64) {
    let fallbacks = "usher_sessions_backend_fallbacks_total{policy=\"local\"}";
    assert_eq!(
        metric(node, fallbacks).await,
        n,
        "admitted by the node's own"
    );
}

/// Waits (bounded) until `node` holds `n` sessions decided without Redis and not written
/// back yet (`usher_sessions_write_back_pending`).
async fn write_back_pending_becomes(node: &Usher, n: f64) {
    let pending = "usher_sessions_write_back_pending";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = metric(node, pending).await;
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} stayed at {now}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One account whose sessions Redis cannot read (its hash holds a plain string: every
/// call on it answers WRONGTYPE) holds up the write-back of its own sessions only. Every
/// start meets such a key, so the node admits each by its own sessions; then the other
/// accounts' keys are cleared, and each of their sessions is written back, whichever order
/// the accounts are tried in, while the broken account's stays waiting (and is counted).
#[tokio::test]
async fn an_account_redis_cannot_read_holds_up_only_its_own_sessions_write_back() {
    let redis = Redis::start();
    let (node, _origin) = local_node(&redis).await;
    let (broken, fine) = ("zoe", ["ann", "bob", "cat", "dan"]);
    for account in std::iter::once(broken).chain(fine) {
        assert_eq!(
            redis.cli(&["SET", &sessions_key(account), "not a hash"]),
            "OK"
        );
        tv_plays(&node, account).await;
    }
    admitted_locally(&node, 5.0).await;

    for account in fine {
        assert_eq!(redis.cli(&["DEL", &sessions_key(account)]), "1");
    }
    write_back_pending_becomes(&node, 1.0).await;
    written_back_on(&node, 4.0).await;
    for account in fine {
        // The version field and the tv's record.
        assert_eq!(
            redis.cli(&["HLEN", &sessions_key(account)]),
            "2",
            "{account}"
        );
    }
    assert_eq!(redis.cli(&["TYPE", &sessions_key(broken)]), "string");
    let failed = "usher_sessions_backend_errors_total{op=\"write_back\"}";
    assert!(
        metric(&node, failed).await >= 1.0,
        "{failed} counts the broken account"
    );
}

/// A session written to Redis as usual (never deferred), whose account Redis
/// cannot read after a gap, is left to the write-back by the gap's catch-up.
#[tokio::test]
async fn after_a_gap_an_account_written_before_that_redis_cannot_read_is_left_to_the_write_back() {
    let mut redis = Redis::start_keeping();
    let (node, _origin) = local_node(&redis).await;
    let broken = "zoe";
    tv_plays(&node, broken).await;
    assert_eq!(redis.cli(&["HLEN", &sessions_key(broken)]), "2");
    write_back_pending_becomes(&node, 0.0).await;
    assert_eq!(redis.cli(&["DEL", &sessions_key(broken)]), "1");
    assert_eq!(
        redis.cli(&["SET", &sessions_key(broken), "not a hash"]),
        "OK"
    );
    redis.save();
    redis.kill();
    wait_ready(&node, 503).await;
    redis.resume();
    wait_ready(&node, 200).await;
    write_back_pending_becomes(&node, 1.0).await;
    assert_eq!(redis.cli(&["DEL", &sessions_key(broken)]), "1");
    write_back_pending_becomes(&node, 0.0).await;
    assert_eq!(redis.cli(&["HLEN", &sessions_key(broken)]), "2");
}

/// As above, through the catch-up after a gap: Redis restarts holding only the broken
/// account's key, and the node, catching up, writes back the sessions it admitted alone
/// of every other account and is caught up (`/readyz` ready: one account does not keep it
/// degraded); the broken account's session waits for the write-back, which writes it
/// once its key can be read.
#[tokio::test]
async fn after_a_gap_an_account_redis_cannot_read_holds_up_only_its_own_sessions() {
    let mut redis = Redis::start_keeping();
    let (node, _origin) = local_node(&redis).await;
    let (broken, fine) = ("zoe", ["ann", "bob", "cat", "dan"]);
    assert_eq!(
        redis.cli(&["SET", &sessions_key(broken), "not a hash"]),
        "OK"
    );
    tv_plays(&node, broken).await;
    redis.save();
    redis.kill();
    wait_ready(&node, 503).await;
    for account in fine {
        tv_plays(&node, account).await;
    }
    admitted_locally(&node, 5.0).await;

    redis.resume();
    write_back_pending_becomes(&node, 1.0).await;
    let local = "usher_sessions_written_back_total{cause=\"local\"}";
    assert_eq!(metric(&node, local).await, 4.0);
    for account in fine {
        assert_eq!(
            redis.cli(&["HLEN", &sessions_key(account)]),
            "2",
            "{account}"
        );
    }
    wait_ready(&node, 200).await;
    assert_eq!(metric(&node, "usher_sessions_backend_up").await, 1.0);

    assert_eq!(redis.cli(&["DEL", &sessions_key(broken)]), "1");
    write_back_pending_becomes(&node, 0.0).await;
    assert_eq!(redis.cli(&["HLEN", &sessions_key(broken)]), "2");
    assert_eq!(metric(&node, local).await, 5.0);
}

/// Ending a session while Redis is down: through a node that does not play it, the end
/// reaches no one and the answer says so (503, not 200); through the node that plays it,
/// that node stops it at once, and writes the end to Redis once Redis is back, so the
/// stream is free for another device on another node.
#[tokio::test]
async fn a_session_ended_while_redis_is_down_is_said_so_and_lands_when_it_is_back() {
    let (mut shared, nodes, play_url, tv_segment) = one_stream_playing_on_a_tv().await;
    let (_, listed) = api(&nodes[0], "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();
    let end = format!("/api/v1/sessions/{sid}");

    shared.redis.kill();
    wait_ready(&nodes[1], 503).await;
    let (status, body) = api(&nodes[1], "DELETE", &end, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
    let (status, body) = api(&nodes[0], "DELETE", &end, None).await;
    assert_eq!(status, 503, "not recorded in Redis: {body}");
    let ended = get(&tv_segment, &[("x-device-id", "tv")]).await;
    assert_eq!(status_reason(&ended), (403, "session_ended".into()));

    shared.redis.resume();
    wait_ready(&nodes[0], 200).await;
    wait_ready(&nodes[1], 200).await;
    let phone = phone_admitted_on(&nodes[1], &play_url).await;
    assert_eq!(phone.status, 200, "the end landed: {}", phone.text());
}

/// As above, over a Redis that comes back with its data, which still holds the tv's
/// session live: the node that ended it writes the end over that copy once Redis is back,
/// so the stream is free for another device on another node.
#[tokio::test]
async fn a_session_ended_while_redis_is_down_lands_over_a_redis_that_kept_it_live() {
    let (mut shared, nodes, play_url, _) =
        one_stream_playing_on_a_tv_on(Redis::start_keeping()).await;
    let (_, listed) = api(&nodes[0], "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();

    shared.redis.save();
    shared.redis.kill();
    wait_ready(&nodes[0], 503).await;
    let (status, body) = api(
        &nodes[0],
        "DELETE",
        &format!("/api/v1/sessions/{sid}"),
        None,
    )
    .await;
    assert_eq!(status, 503, "not recorded in Redis: {body}");

    shared.redis.resume();
    wait_ready(&nodes[0], 200).await;
    wait_ready(&nodes[1], 200).await;
    let phone = phone_admitted_on(&nodes[1], &play_url).await;
    assert_eq!(phone.status, 200, "the end landed: {}", phone.text());
}

/// A session that idled out while Redis was away is not brought back by the node's
/// catch-up: Redis restarts empty, the node writes back what it remembers but not the idle
/// tv, so the one stream is free for the phone (it was written back as seen just now).
#[tokio::test]
async fn a_session_that_idled_out_is_not_written_back_to_count_again() {
    let mut redis = Redis::start();
    let origin = event_origin().await;
    let sessions = format!(
        "[sessions]\nbackend = \"redis\"\nidle_timeout = \"60s\"\n[sessions.redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
        redis.url
    );
    let node = InProcess::start(&rights_config(&origin.url(), &sessions)).await;
    for (path, body) in [
        (
            "/api/v1/products",
            json!({"code": "p", "name": "Final", "max_sessions": 1}),
        ),
        (
            "/api/v1/media",
            json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"}),
        ),
        ("/api/v1/products/p/media", json!({"media": "event"})),
    ] {
        let (status, answer) = api(&node, "POST", path, Some(body)).await;
        assert!(status < 300, "{path}: {answer}");
    }
    let (_, sold) = api(
        &node,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "p", "media": "event", "account": "alice"})),
    )
    .await;
    let play_url = sold["play_url"].as_str().unwrap().to_owned();
    assert_eq!(get(&play_url, &[("x-device-id", "tv")]).await.status, 200);
    node.advance(61);

    redis.kill();
    shared_up_becomes(&node, false).await;
    redis.resume();
    shared_up_becomes(&node, true).await;
    let phone = get(&play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(
        phone.status,
        200,
        "the idle tv holds no stream: {}",
        phone.text()
    );
}

/// Waits (bounded) until `node` is subscribed to Redis (`up`), caught up, or not.
async fn shared_up_becomes(node: &InProcess, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.state.sessions.shared_up() != Some(up) {
        assert!(
            Instant::now() < deadline,
            "sessions never {}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
