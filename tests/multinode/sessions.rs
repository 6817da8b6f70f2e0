//! Sessions shared through Redis: concurrency limits and `replace_oldest` hold across
//! nodes (also for a foreign token's second device), and Redis killed mid-playback follows `sessions.on_backend_error` (`deny`,
//! `local`).

use serde_json::json;

use crate::support::admin::api;
use crate::support::cluster::status_reason;
use crate::support::postgres::Postgres;
use crate::support::redis::Redis;
use crate::support::*;
use crate::{add_buyer, sell_event, shared_config, wait_converged};
use crate::{one_stream_playing_on_a_tv, phone_admitted_on, play, shared_setup, until, wait_ready};

#[tokio::test]
async fn with_shared_sessions_a_second_device_on_another_node_is_refused_by_max_sessions_1() {
    let (_backends, nodes, play_url, tv_segment) = one_stream_playing_on_a_tv().await;
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&phone), (403, "concurrency_limit".into()));
    assert_eq!(
        get(&tv_segment, &[("x-device-id", "tv")]).await.status,
        200,
        "the first viewer keeps watching"
    );
    let (again, _) = play(&nodes[1], &play_url, &[("x-device-id", "tv")]).await;
    assert_eq!(
        again.status, 200,
        "the same device on another node is the same viewer"
    );

    // The operator ends the tv's session through node B; node A, which plays it, refuses
    // its next segment, and the stream is free for the phone.
    let (_, listed) = api(&nodes[0], "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();
    let (status, _) = api(
        &nodes[1],
        "DELETE",
        &format!("/api/v1/sessions/{sid}"),
        None,
    )
    .await;
    assert!(status < 300, "{status}");
    let ended = until(
        || async { get(&tv_segment, &[("x-device-id", "tv")]).await },
        |r| r.status != 200,
    )
    .await;
    assert_eq!(status_reason(&ended), (403, "session_ended".into()));
    let phone = phone_admitted_on(&nodes[1], &play_url).await;
    assert_eq!(
        phone.status,
        200,
        "the ended session no longer counts: {}",
        phone.text()
    );
}

#[tokio::test]
async fn with_shared_sessions_replace_oldest_ends_the_first_device_on_its_own_node() {
    let (_backends, nodes, play_url) = shared_setup("deny", json!({"code": "p", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"})).await;
    let (_, tv_segment) = play(&nodes[0], &play_url, &[("x-device-id", "tv")]).await;
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
    let (phone, phone_segment) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(phone.status, 200);
    let tv = until(
        || async { get(&tv_segment, &[("x-device-id", "tv")]).await },
        |r| r.status != 200,
    )
    .await;
    assert_eq!(status_reason(&tv), (403, "session_replaced".into()));
    assert_eq!(
        get(&phone_segment, &[("x-device-id", "phone")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn redis_killed_mid_playback_with_deny_keeps_viewers_refuses_new_sessions_and_recovers() {
    let (mut shared, nodes, play_url, tv_segment) = one_stream_playing_on_a_tv().await;

    shared.redis.kill();
    assert_eq!(
        get(&tv_segment, &[("x-device-id", "tv")]).await.status,
        200,
        "segments never wait on Redis"
    );
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&phone), (503, "sessions_unavailable".into()));
    assert!(
        metric(
            &nodes[1],
            "usher_sessions_backend_fallbacks_total{policy=\"deny\"}"
        )
        .await
            >= 1.0
    );
    wait_ready(&nodes[0], 503).await;

    // Redis comes back empty; node A writes its live session back, so the limit holds.
    shared.redis.resume();
    wait_ready(&nodes[0], 200).await;
    wait_ready(&nodes[1], 200).await;
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&phone), (403, "concurrency_limit".into()));
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
}

#[tokio::test]
async fn redis_killed_with_local_admits_new_sessions_by_each_nodes_own() {
    let (mut shared, nodes, play_url) = shared_setup(
        "local",
        json!({"code": "p", "name": "Final", "max_sessions": 1}),
    )
    .await;
    assert_eq!(
        play(&nodes[0], &play_url, &[("x-device-id", "tv")])
            .await
            .0
            .status,
        200
    );
    shared.redis.kill();
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(phone.status, 200, "admitted by node B's own sessions");
    let (laptop, _) = play(&nodes[1], &play_url, &[("x-device-id", "laptop")]).await;
    assert_eq!(
        status_reason(&laptop),
        (403, "concurrency_limit".into()),
        "node B's own limit still holds"
    );
    assert!(
        metric(
            &nodes[1],
            "usher_sessions_backend_fallbacks_total{policy=\"local\"}"
        )
        .await
            >= 2.0
    );
}

/// The Akamai key of [`foreign_cluster`]'s `/event/` route.
const AKAMAI_KEY: &str = "0123456789abcdef0123456789abcdef";

/// An Akamai token for `/event/*` naming `account` (its `id`), as a CMS hands it to every
/// device of the account.
fn akamai_for(account: &str) -> String {
    use usher::ticket::edgeauth::{self, EdgeKey, EdgeToken, Options};
    // One expiry for every token of the test run: each account's token stays the same
    // token (and so the same session) however many seconds the test takes.
    static EXPIRY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let token = EdgeToken {
        exp: *EXPIRY.get_or_init(|| usher::clock::unix_now() + 3600),
        acl: Some(vec!["/event/*".to_owned()]),
        id: Some(account.to_owned()),
        ..EdgeToken::default()
    };
    let key = EdgeKey::from_hex(AKAMAI_KEY, edgeauth::Algorithm::Sha256).unwrap();
    edgeauth::mint(&token, None, &key, &Options::default())
}

/// A foreign token's session on one node, and the same token on a second device through
/// another node: that node's copy of the session (joined by a request naming no device) is
/// on the device Redis records, so the second device is a start of its own there too,
/// refused by `max_sessions = 1` (not riding the first's stream), and under
/// `replace_oldest` it replaces the first device on its own node.
#[tokio::test]
async fn with_shared_sessions_a_foreign_token_on_a_second_device_is_its_own_start_on_any_node() {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let redis = Redis::start();
    let origin = event_origin().await;
    let config = format!(
        "{}\n[akamai]\nkey = \"{AKAMAI_KEY}\"\n[[routes]]\nprefix = \"/event/\"\naccept = [\"usher\", \"akamai\"]\n",
        shared_config(&origin, &url, &redis, "deny")
    );
    let nodes: Vec<Usher> = (0..2).map(|_| Usher::start(&config, &[])).collect();
    for node in &nodes {
        wait_ready(node, 200).await;
    }
    sell_event(
        &nodes[0],
        json!({"code": "p", "name": "Final", "max_sessions": 1}),
    )
    .await;
    let last = json!({"code": "r", "name": "Last", "max_sessions": 1, "concurrency_policy": "replace_oldest"});
    let (status, body) = api(&nodes[0], "POST", "/api/v1/products", Some(last)).await;
    assert_eq!(status, 201, "{body}");
    let media = Some(json!({"media": "event"}));
    let (status, body) = api(&nodes[0], "POST", "/api/v1/products/r/media", media).await;
    assert_eq!(status, 200, "{body}");
    wait_converged(&nodes[0], &nodes[1], "all").await;
    add_buyer(&nodes[0], "p", "alice").await;
    add_buyer(&nodes[0], "r", "bob").await;
    let segment = |node: &Usher, account: &str| {
        format!("{}/event/s1.ts?__token__={}", node.url, akamai_for(account))
    };
    let on = |node, account, device: Option<&'static str>| {
        let url = segment(node, account);
        async move {
            let named: &[(&str, &str)] = match device {
                Some(device) => &[("x-device-id", device)],
                None => &[],
            };
            get(&url, named).await
        }
    };

    let tv = on(&nodes[0], "alice", Some("tv")).await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let nameless = on(&nodes[1], "alice", None).await;
    assert_eq!(nameless.status, 200, "rides the tv's: {}", nameless.text());
    for (node, name) in [
        (&nodes[1], "B, which joined it"),
        (&nodes[0], "A, which holds it"),
    ] {
        let phone = on(node, "alice", Some("phone")).await;
        assert_eq!(
            status_reason(&phone),
            (403, "concurrency_limit".into()),
            "the phone on node {name}"
        );
    }
    assert_eq!(on(&nodes[0], "alice", Some("tv")).await.status, 200);

    assert_eq!(on(&nodes[0], "bob", Some("tv")).await.status, 200);
    let phone = on(&nodes[1], "bob", Some("phone")).await;
    assert_eq!(phone.status, 200, "replaces the tv: {}", phone.text());
    let tv = until(|| on(&nodes[0], "bob", Some("tv")), |r| r.status != 200).await;
    assert_eq!(status_reason(&tv), (403, "session_replaced".into()));
    for (node, name) in [(&nodes[1], "B"), (&nodes[0], "A")] {
        let phone = on(node, "bob", Some("phone")).await;
        assert_eq!(phone.status, 200, "on node {name}: {}", phone.text());
    }
}
