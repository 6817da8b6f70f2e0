//! Why a session's requests are refused once it is over, as a player sees it: a paused
//! player whose segment token expired meanwhile is told that its session was ended by the
//! operator (`session_ended`) or replaced by another device (`session_replaced`), not
//! `expired` (a player told `expired` starts again with its ticket, and under
//! `replace_oldest` takes the stream back from the device that replaced it, which then
//! does the same). And ending a session by an id no node knows is 404, on one node and
//! with sessions shared through Redis, where it writes nothing; an unreachable Redis is
//! 503, not 404. In-process nodes with clocks the test moves (tokens live 30 s, sessions
//! idle out after 60 s).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::admin::api;
use support::cli::usher_admin;
use support::cluster::{status_reason, within};
use support::inprocess::InProcess;
use support::inprocess::{only_sid, sell_event};
use support::redis::Redis;
use support::*;

/// Seconds the clock moves: past the session token's 30 s, within the session's 60 s.
const PAST_THE_TOKEN: u64 = 40;

/// A node with rights from its own store, sessions idle after 60 s, tokens for 30 s;
/// `sessions` is added to its `[sessions]` table (Redis, for one).
async fn node(origin: &Origin, sessions: &str) -> InProcess {
    let extra = format!("[sessions]\nidle_timeout = \"60s\"\n{sessions}");
    let config = rights_config(&origin.url(), &extra)
        .replace("[token]\n", "[token]\nsession_ttl = \"30s\"\n");
    InProcess::start(&config).await
}

/// Sessions shared through the Redis at `url`, refused while it does not answer.
fn on_redis(url: &str) -> String {
    format!(
        "backend = \"redis\"\non_backend_error = \"deny\"\n\
         [sessions.redis]\nurl = \"{url}\"\ntimeout = \"500ms\"\n"
    )
}

/// Waits (bounded) until `node` is subscribed to Redis and caught up.
async fn shared_up(node: &InProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.state.sessions.shared_up() != Some(true) {
        assert!(Instant::now() < deadline, "sessions never up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ending the id `0123abcd`, which no session has, through `node`: 404 from the API, and
/// the CLI says it was not found.
async fn unknown_id_is_not_found(node: &InProcess) {
    let (status, answer) = api(node, "DELETE", "/api/v1/sessions/0123abcd", None).await;
    let not_found = json!({"error": "not_found", "what": "session 0123abcd"});
    assert_eq!((status, answer), (404, not_found));
    let cli = usher_admin(node, &["session", "end", "0123abcd"]).await;
    assert_eq!(cli.failed(), "usher: session 0123abcd not found");
}

/// The playlist by `device`, and its first segment's URL (its session token in it).
async fn play(play_url: &str, device: &str) -> (Reply, String) {
    let reply = get(play_url, &[("x-device-id", device)]).await;
    let segment = first_segment(play_url, &reply);
    (reply, segment)
}

/// The tv plays; the operator ends its session while its player is paused. When the player
/// resumes, its segment token has expired: it is told its session was ended.
#[tokio::test]
async fn an_expired_token_of_an_ended_session_is_refused_as_ended() {
    let origin = event_origin().await;
    let usher = node(&origin, "").await;
    let (play_url, _) = sell_event(&usher, json!({"code": "p", "name": "Film"})).await;
    let (tv, tv_segment) = play(&play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let sid = only_sid(&usher).await;
    let (status, ended) = api(&usher, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!((status, ended), (200, json!({ "ended": sid })));

    usher.advance(PAST_THE_TOKEN);
    let resumed = get(&tv_segment, &[("x-device-id", "tv")]).await;
    assert_eq!(status_reason(&resumed), (403, "session_ended".into()));
}

/// One stream at a time, the oldest giving way: the phone replaces the paused tv. When the
/// tv resumes with its expired segment token, it is told it was replaced (the app can say
/// the film plays elsewhere, instead of taking the stream back), and the phone, whose
/// token expired too, plays on.
#[tokio::test]
async fn an_expired_token_of_a_replaced_session_is_refused_as_replaced() {
    let origin = event_origin().await;
    let usher = node(&origin, "").await;
    let product = json!({"code": "p", "name": "Film", "max_sessions": 1,
                         "concurrency_policy": "replace_oldest"});
    let (play_url, _) = sell_event(&usher, product).await;
    let (tv, tv_segment) = play(&play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let (phone, phone_segment) = play(&play_url, "phone").await;
    assert_eq!(phone.status, 200, "{}", phone.text());

    usher.advance(PAST_THE_TOKEN);
    let resumed = get(&tv_segment, &[("x-device-id", "tv")]).await;
    assert_eq!(status_reason(&resumed), (403, "session_replaced".into()));
    // So it is with its ticket beside the token (a session cookie beside the play URL's
    // ticket): the ticket would take the stream back from the phone.
    let token = tv_segment.split("token=").nth(1).unwrap();
    let with_ticket = get(
        &format!("{play_url}&token={token}"),
        &[("x-device-id", "tv")],
    )
    .await;
    assert_eq!(
        status_reason(&with_ticket),
        (403, "session_replaced".into())
    );
    let phone = get(&phone_segment, &[("x-device-id", "phone")]).await;
    assert_eq!(phone.status, 200, "{}", phone.text());
}

/// On one node, ending a session it never had is 404, with the API's error document, and
/// `usher admin session end` says so; a session it holds is ended, again and again.
#[tokio::test]
async fn ending_an_unknown_session_on_one_node_is_not_found() {
    let origin = event_origin().await;
    let usher = node(&origin, "").await;
    let (play_url, _) = sell_event(&usher, json!({"code": "p", "name": "Film"})).await;
    assert_eq!(play(&play_url, "tv").await.0.status, 200);
    let sid = only_sid(&usher).await;

    unknown_id_is_not_found(&usher).await;
    for _ in 0..2 {
        let cli = usher_admin(&usher, &["session", "end", &sid]).await;
        assert_eq!(cli.ok(), format!("{sid}\n"));
    }
}

/// With sessions shared through Redis, node B ends by id a session node A plays (Redis
/// holds it): 200, and A's player stops. An id neither B nor Redis knows is 404 (the CLI
/// says it was not found) and leaves no end marker in Redis. While Redis cannot be reached
/// B cannot tell: 503, as for any end it cannot record, never 404.
#[tokio::test]
async fn with_redis_ending_an_id_no_node_knows_is_not_found_unless_redis_is_down() {
    let mut redis = Redis::start();
    let origin = event_origin().await;
    let a = node(&origin, &on_redis(&redis.url)).await;
    let b = node(&origin, &on_redis(&redis.url)).await;
    shared_up(&a).await;
    shared_up(&b).await;
    let (play_url, _) = sell_event(&a, json!({"code": "p", "name": "Film"})).await;
    let (tv, tv_segment) = play(&play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let sid = only_sid(&a).await;
    assert!(
        b.state.sessions.live(b.now()).is_empty(),
        "B does not hold it"
    );

    unknown_id_is_not_found(&b).await;
    assert_eq!(redis.cli(&["EXISTS", "usher:end:{0123abcd}"]), "0");

    let (status, answer) = api(&b, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!((status, answer), (200, json!({ "ended": sid })));
    let stopped = within(
        Duration::from_secs(10),
        || get(&tv_segment, &[("x-device-id", "tv")]),
        |reply| reply.status != 200,
    )
    .await;
    assert_eq!(status_reason(&stopped), (403, "session_ended".into()));
    let (status, answer) = api(&b, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!(
        (status, answer),
        (200, json!({ "ended": sid })),
        "still known"
    );

    redis.kill();
    let (status, answer) = api(&b, "DELETE", "/api/v1/sessions/0123abcd", None).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "store_unavailable", "{answer}");
}

/// A session Redis holds without an index entry (one a node of an earlier version started;
/// here the entry is deleted by hand) is indexed again by its next touch, so ending it
/// through a node that does not hold it is not answered 404.
#[tokio::test]
async fn a_session_missing_from_the_index_is_indexed_again_by_its_touch() {
    let redis = Redis::start();
    let origin = event_origin().await;
    let a = node(&origin, &on_redis(&redis.url)).await;
    let b = node(&origin, &on_redis(&redis.url)).await;
    shared_up(&a).await;
    shared_up(&b).await;
    let (play_url, _) = sell_event(&a, json!({"code": "p", "name": "Film"})).await;
    let (tv, tv_segment) = play(&play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let sid = only_sid(&a).await;
    let index = format!("usher:sid:{{{sid}}}");
    assert_eq!(redis.cli(&["GET", &index]), "alice", "indexed at its start");
    assert_eq!(redis.cli(&["DEL", &index]), "1");

    // Past the touch interval (5 s): the tv's next segment has the touch written.
    a.advance(10);
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cli(&["GET", &index]) != "alice" {
        assert!(Instant::now() < deadline, "never indexed again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, answer) = api(&b, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!((status, answer), (200, json!({ "ended": sid })));
}

/// Without rights (`rights.source = "none"`: a valid ticket is enough) a session lives in
/// the memory of the node playing it, and Redis holds no record of it; its touches index
/// it all the same. Ending it through a node that does not hold it is not 404: the node
/// playing it stops it.
#[tokio::test]
async fn without_rights_a_session_ends_through_a_node_that_does_not_hold_it() {
    let redis = Redis::start();
    let origin = event_origin().await;
    let extra = format!(
        "[sessions]\nidle_timeout = \"60s\"\n{}",
        on_redis(&redis.url)
    );
    let a = InProcess::start(&test_config(&origin.url(), &extra)).await;
    let b = InProcess::start(&test_config(&origin.url(), &extra)).await;
    shared_up(&a).await;
    shared_up(&b).await;
    let play_url = format!("{}/event/index.m3u8?ticket={}", a.url, mint("/event/"));
    let (tv, tv_segment) = play(&play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let (_, listed) = api(&a, "GET", "/api/v1/sessions", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();
    // Past the touch interval (5 s): the tv's next segment has the touch written.
    a.advance(10);
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
    let index = format!("usher:sid:{{{sid}}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cli(&["GET", &index]) != "viewer-1" {
        assert!(Instant::now() < deadline, "never indexed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (status, answer) = api(&b, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!((status, answer), (200, json!({ "ended": sid })));
    let stopped = within(
        Duration::from_secs(10),
        || get(&tv_segment, &[("x-device-id", "tv")]),
        |reply| reply.status != 200,
    )
    .await;
    assert_eq!(status_reason(&stopped), (403, "session_ended".into()));
}

/// a replaced session's token refused for its network (`bind_ip`: the tv moved
/// from wifi to another network) beside the ticket its app sends on every request
/// (`Authorization: Bearer`, on by default), or beside the play URL's ticket, stays refused
/// as replaced: a new session under the ticket would take the stream back from the phone
/// under `replace_oldest`.
#[tokio::test]
async fn a_replaced_sessions_token_from_another_network_beside_a_bearer_ticket_stays_replaced() {
    let origin = event_origin().await;
    let config = rights_config(
        &origin.url(),
        "[sessions]\nidle_timeout = \"60s\"\nbind_ip = true\n",
    )
    .replace("[token]\n", "[token]\nsession_ttl = \"30s\"\n")
    .replace(
        "[listen]\n",
        "[listen]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    );
    let usher = InProcess::start(&config).await;
    let product = json!({"code": "p", "name": "Film", "max_sessions": 1,
                         "concurrency_policy": "replace_oldest"});
    let (play_url, _) = sell_event(&usher, product).await;
    let ticket = play_url
        .split("ticket=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let tv_home = [("x-device-id", "tv"), ("x-forwarded-for", "198.51.100.7")];
    let tv = get(&play_url, &tv_home).await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let tv_segment = first_segment(&play_url, &tv);
    let phone_at = [("x-device-id", "phone"), ("x-forwarded-for", "192.0.2.5")];
    let phone = get(&play_url, &phone_at).await;
    assert_eq!(phone.status, 200, "{}", phone.text());
    let phone_segment = first_segment(&play_url, &phone);

    let resumed = get(&tv_segment, &tv_home).await;
    assert_eq!(status_reason(&resumed), (403, "session_replaced".into()));
    let bearer = format!("Bearer {ticket}");
    let moved = get(
        &tv_segment,
        &[
            ("x-device-id", "tv"),
            ("x-forwarded-for", "203.0.113.9"),
            ("authorization", &bearer),
        ],
    )
    .await;
    // Nor does the play URL opened again with that token beside its ticket: the ticket would
    // decide only for a session that is not known to be over.
    let token = tv_segment.split("token=").nth(1).unwrap();
    let reopened = get(
        &format!("{play_url}&token={token}"),
        &[("x-device-id", "tv"), ("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    assert_eq!(status_reason(&reopened), (403, "session_replaced".into()));
    let phone_again = get(&phone_segment, &phone_at).await;
    assert_eq!(
        (moved.status.as_u16(), phone_again.status.as_u16()),
        (403, 200),
        "the tv took the stream back from the phone: {}",
        phone_again.text()
    );
}
