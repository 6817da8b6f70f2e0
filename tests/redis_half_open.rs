//! A node whose Redis connections went half-open (a Redis that moved behind its address
//! without closing them, or a partition that sends no reset) replaces them: two usher
//! nodes share one PostgreSQL and one Redis, the second through a relay
//! ([`support::relay`]) that then swallows everything on the connections it holds while it
//! lets new ones through.
//! The second node's session starts are decided by the limits Redis holds again, and a
//! session it plays that the first node replaced is refused there, though the
//! announcement went to its silent subscription. A session ended through the first node,
//! which does not hold it, while the second's subscription is silent, stays ended: the
//! second node stops it once it hears Redis again.
//!
//! End markers on the same two nodes: a session ended by id whose record is gone is still
//! refused where its token is taken up; a reload joining a session that is ended by id
//! between the start's read and its touch is refused; and an end whose marker Redis
//! refuses to write is still announced, so the node playing the session stops it. A
//! replacement whose announcement Redis did not take is read at the next touch.

mod support;

use serde_json::{json, Value};
use support::admin::api;
use support::cluster::{on, play, playing, ready, sell_event, within_30s, Cluster, Relayed};
use support::*;

/// Sells `products` through `node`, the first to alice and the second to bob: their play
/// URLs.
async fn sell(node: &Usher, products: [Value; 2]) -> Vec<String> {
    let sold = sell_event(node, products.into_iter().zip(["alice", "bob"])).await;
    sold.iter()
        .map(|buyer| buyer["play_url"].as_str().unwrap().to_owned())
        .collect()
}

/// The id of alice's one session, as `node` lists it.
async fn alice_s_session(node: &Usher) -> String {
    let (status, listed) = api(node, "GET", "/api/v1/sessions?account=alice", None).await;
    assert_eq!(status, 200, "{listed}");
    listed["items"][0]["sid"].as_str().unwrap().to_owned()
}

/// The [`Cluster`] of these tests: B on Redis through the relay, A directly.
async fn cluster() -> Cluster {
    Cluster::start(Relayed::B).await
}

#[tokio::test]
async fn a_node_whose_redis_connections_went_half_open_replaces_them() {
    let cluster = cluster().await;
    let Cluster { a, b, relay, .. } = &cluster;
    // One stream each: alice's refuses a second, bob's replaces the first.
    let urls = sell(
        a,
        [
            json!({"code": "p", "name": "Final", "max_sessions": 1}),
            json!({"code": "r", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"}),
        ],
    )
    .await;
    let (alice, bob) = (&urls[0], &urls[1]);
    playing(b, alice, "tv").await;
    let bob_tv = playing(b, bob, "tv").await;

    relay.black_hole();

    // A start on B is decided by the limit Redis holds again (at first it waits for an
    // answer that never comes: 503 sessions_unavailable).
    let phone = within_30s(
        || async { play(b, alice, "phone").await.0 },
        |r| r.status != 503,
    )
    .await;
    assert_eq!(
        (phone.status.as_u16(), phone.reason()),
        (403, "concurrency_limit".to_owned()),
        "B reads Redis again"
    );

    // Bob's phone on A replaces his tv on B. Segments never wait on Redis: B refuses the
    // tv's next one only once it hears of it, through a subscription that answers.
    assert_eq!(play(a, bob, "phone").await.0.status, 200);
    let tv = within_30s(
        || get(&bob_tv, &[("x-device-id", "tv")]),
        |r| r.status != 200,
    )
    .await;
    assert_eq!(
        (tv.status.as_u16(), tv.reason()),
        (403, "session_replaced".to_owned()),
        "B hears of the replacement"
    );
    ready(b).await;
}

#[tokio::test]
async fn a_session_ended_through_a_node_that_does_not_hold_it_stays_ended() {
    let cluster = cluster().await;
    let Cluster { a, b, relay, .. } = &cluster;
    let urls = sell(
        a,
        [
            json!({"code": "p", "name": "Final"}),
            json!({"code": "r", "name": "Final"}),
        ],
    )
    .await;
    let tv = playing(b, &urls[0], "tv").await;
    let sid = alice_s_session(b).await;

    // B's subscription still counts as a listener in Redis, but hears nothing.
    relay.black_hole();
    let (status, answer) = api(a, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert!(status < 300, "{status} {answer}");

    // A does not hold the session: a request of its token there is refused, not adopted.
    let on_a = get(&on(a, &tv), &[("x-device-id", "tv")]).await;
    assert_eq!(
        (on_a.status.as_u16(), on_a.reason()),
        (403, "session_ended".to_owned()),
        "A reads the end"
    );

    // B stops the tv once it hears Redis again (its touch or its catch-up reads the end).
    let on_b = within_30s(|| get(&tv, &[("x-device-id", "tv")]), |r| r.status != 200).await;
    assert_eq!(
        (on_b.status.as_u16(), on_b.reason()),
        (403, "session_ended".to_owned()),
        "B stops the ended session"
    );
    ready(b).await;
}

/// A session ended by id whose record is gone from Redis (dropped when its lifetime has
/// passed; here by hand) is still refused where its token is taken up: the start reads
/// the session's own end marker. Taken up as new, under `replace_oldest` it would have
/// replaced the stream the account plays now.
#[tokio::test]
async fn a_session_ended_by_id_whose_record_is_gone_is_not_taken_up() {
    let cluster = cluster().await;
    let Cluster { a, b, redis, .. } = &cluster;
    let urls = sell(
        a,
        [
            json!({"code": "p", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"}),
            json!({"code": "r", "name": "Final"}),
        ],
    )
    .await;
    let tv = playing(b, &urls[0], "tv").await;
    let sid = alice_s_session(b).await;
    let (status, answer) = api(a, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert!(status < 300, "{status} {answer}");
    // B heard the end and wrote it into the record; then the record goes.
    let sessions = "usher:{alice}:s";
    let record = within_30s(
        || async { redis.cli(&["HGET", sessions, &sid]) },
        |r| r.contains("\"state\":2"),
    )
    .await;
    assert!(record.contains("\"state\":2"), "ended in Redis: {record}");
    let phone = playing(a, &urls[0], "phone").await;
    assert_eq!(redis.cli(&["HDEL", sessions, &sid]), "1");
    redis.cli(&["HDEL", "usher:{alice}:seen", &sid]);

    let on_a = get(&on(a, &tv), &[("x-device-id", "tv")]).await;
    assert_eq!(
        (on_a.status.as_u16(), on_a.reason()),
        (403, "session_ended".to_owned()),
        "A reads the session's end marker"
    );
    assert_eq!(
        get(&phone, &[("x-device-id", "phone")]).await.status,
        200,
        "the phone's stream is not replaced"
    );
}

/// The tv reloads its master with the ticket, which joins its live session, just as
/// another node ends that session by id (the marker is written after the start read the
/// account's sessions, before the join's touch): the touch finds the marker and the
/// reload is refused rather than joined to an ended session.
#[tokio::test]
async fn a_join_whose_touch_finds_the_end_marker_is_refused() {
    let cluster = cluster().await;
    let Cluster { a, b, relay, .. } = &cluster;
    let urls = sell(
        a,
        [
            json!({"code": "p", "name": "Final"}),
            json!({"code": "r", "name": "Final"}),
        ],
    )
    .await;
    playing(b, &urls[0], "tv").await;
    let sid = alice_s_session(b).await;

    relay.end_before_touch(&sid);
    let (reload, _) = play(b, &urls[0], "tv").await;
    assert!(relay.ended(), "the marker was written before B's touch");
    assert_eq!(
        (reload.status.as_u16(), reload.reason()),
        (403, "session_ended".to_owned())
    );
}

/// An end through a node that does not hold the session, while Redis refuses the marker's
/// write (an ACL, here): the operator is told (503: the end is not sure to reach every
/// node), and the end is announced all the same, so the node playing the session stops it.
/// The audit trail holds the end, saying it was not recorded in Redis.
#[tokio::test]
async fn an_end_whose_marker_cannot_be_written_is_still_announced() {
    let cluster = cluster().await;
    let Cluster { a, b, redis, .. } = &cluster;
    let urls = sell(
        a,
        [
            json!({"code": "p", "name": "Final"}),
            json!({"code": "r", "name": "Final"}),
        ],
    )
    .await;
    let tv = playing(b, &urls[0], "tv").await;
    let sid = alice_s_session(b).await;

    assert_eq!(redis.cli(&["ACL", "SETUSER", "default", "-set"]), "OK");
    let (status, answer) = api(a, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "store_unavailable", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("announced the end"),
        "the operator learns the end went out but may not have landed: {answer}"
    );
    let on_b = within_30s(|| get(&tv, &[("x-device-id", "tv")]), |r| r.status != 200).await;
    assert_eq!(
        (on_b.status.as_u16(), on_b.reason()),
        (403, "session_ended".to_owned()),
        "B heard the end"
    );
    let (status, trail) = api(a, "GET", "/api/v1/audit?action=session.end", None).await;
    assert_eq!(status, 200, "{trail}");
    let entries = trail["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{trail}");
    assert_eq!(
        (&entries[0]["target"], &entries[0]["changes"]),
        (
            &json!(sid),
            &json!({"recorded_in_redis": {"before": null, "after": false}})
        ),
        "{trail}"
    );
}

/// A replacement whose announcement Redis does not take (PUBLISH refused, here by an ACL;
/// in life, a PUBLISH that failed at that moment or a subscription that missed it): the
/// node playing the replaced session reads the replacement in its record at its next
/// touch, and stops it.
#[tokio::test]
async fn a_replacement_whose_announcement_is_lost_is_read_at_the_next_touch() {
    let cluster = cluster().await;
    let Cluster { a, b, redis, .. } = &cluster;
    let urls = sell(
        a,
        [
            json!({"code": "p", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"}),
            json!({"code": "r", "name": "Final"}),
        ],
    )
    .await;
    let tv = playing(b, &urls[0], "tv").await;

    assert_eq!(redis.cli(&["ACL", "SETUSER", "default", "-publish"]), "OK");
    assert_eq!(play(a, &urls[0], "phone").await.0.status, 200);
    let refused = within_30s(|| get(&tv, &[("x-device-id", "tv")]), |r| r.status != 200).await;
    assert_eq!(
        (refused.status.as_u16(), refused.reason()),
        (403, "session_replaced".to_owned()),
        "B reads the replacement in the session's record"
    );
}
