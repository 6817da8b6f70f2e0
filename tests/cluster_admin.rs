//! Admin calls received by one node that must act on every node: two usher nodes share one
//! Redis (`sessions.backend = "redis"`) and, where purchases are involved, one PostgreSQL.
//! A shield purge through one node drops the old copy on the other too, also on a node
//! whose subscription heard nothing at the time (it applies the purge when it catches up);
//! a catch-up applies every purge missed in one pass over the shield, and leaves the purges
//! the node applied already; a purge that cannot be announced says so (503) and is on the
//! audit trail as such. Freeing a device through one node ends the device's
//! session on the node that plays it, also when that node hears nothing from Redis at the
//! time (it stops the session once it hears Redis again); a free while Redis is down
//! stands, and its answer says the other nodes were not told (`usher admin device delete`
//! says so on stderr).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use support::admin::api;
use support::cli::usher_admin;
use support::cluster::{
    playing, post, ready, sell_event, shared_sessions, status_reason, within, Cluster, Relayed,
};
use support::redis::Redis;
use support::relay::Relay;
use support::*;

/// A segment whose body is `text`.
fn segment_of(text: &'static str) -> Object {
    Object {
        content_type: "video/mp2t",
        body: Bytes::from_static(text.as_bytes()),
        delay: None,
        status: None,
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn a_purge_through_one_node_drops_the_old_copy_on_the_other_too() {
    let mut redis = Redis::start();
    let mut objects = HashMap::new();
    objects.insert("/vod/a/s1.ts".to_owned(), segment_of("old"));
    let origin = spawn_origin(objects).await;
    let config = test_config(&origin.url(), &shared_sessions(&redis.url));
    let (a, b) = (Usher::start(&config, &[]), Usher::start(&config, &[]));
    ready(&a).await;
    ready(&b).await;
    let ticket = mint("/vod/");
    let url = |node: &Usher| format!("{}/vod/a/s1.ts?ticket={ticket}", node.url);
    for node in [&a, &b] {
        assert_eq!(get(&url(node), &[]).await.status, 200);
        let again = get(&url(node), &[]).await;
        assert_eq!(
            (
                again.text().as_str(),
                again.headers["x-usher-cache"].to_str().unwrap()
            ),
            ("old", "hit"),
            "each node holds the old copy"
        );
    }

    // The operator replaces the segment on the origin and purges through A.
    origin.insert("/vod/a/s1.ts", segment_of("new"));
    let purge = json!({"prefix": "/vod/a/"});
    let (status, answer) = api(&a, "POST", "/api/v1/cache/purge", Some(purge.clone())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(get(&url(&a), &[]).await.text(), "new");
    let b_url = url(&b);
    let on_b = within(
        Duration::from_secs(10),
        || get(&b_url, &[]),
        |r| r.text() == "new",
    )
    .await;
    assert_eq!(on_b.text(), "new", "B stopped serving its old copy");
    assert_eq!(
        (&answer["purged"], &answer["announced"]),
        (&json!(1), &json!(true)),
        "{answer}"
    );

    // Without Redis the purge is this node's only, and the answer says so; so does the
    // audit trail, which holds it as it holds the announced one.
    redis.kill();
    let (status, answer) = api(&a, "POST", "/api/v1/cache/purge", Some(purge)).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(
        (&answer["error"], &answer["purged"]),
        (&json!("purge_not_announced"), &json!(1)),
        "{answer}"
    );
    let (status, trail) = api(&a, "GET", "/api/v1/audit?action=cache.purge", None).await;
    assert_eq!(status, 200, "{trail}");
    let entries: Vec<(&Value, &Value)> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e["target"], &e["changes"]))
        .collect();
    let untold = json!({"announced": {"before": null, "after": false}});
    assert_eq!(
        entries,
        [
            (&json!("/vod/a/"), &json!({})),
            (&json!("/vod/a/"), &untold)
        ],
        "{trail}"
    );
}

/// Two nodes sharing sessions and purges over one origin: A on Redis, B through a relay
/// the test can cut (its subscription then hears nothing).
struct PurgeNodes {
    origin: Origin,
    a: Usher,
    b: Usher,
    relay: Relay,
    _redis: Redis,
}

/// [`PurgeNodes`] over an origin serving `objects`, both nodes ready.
async fn purge_nodes(objects: HashMap<String, Object>) -> PurgeNodes {
    let redis = Redis::start();
    let relay = Relay::start(redis.url.trim_start_matches("redis://").to_owned());
    let origin = spawn_origin(objects).await;
    let on = |url: &str| test_config(&origin.url(), &shared_sessions(url));
    let (a, b) = (
        Usher::start(&on(&redis.url), &[]),
        Usher::start(&on(&relay.url), &[]),
    );
    ready(&a).await;
    ready(&b).await;
    PurgeNodes {
        origin,
        a,
        b,
        relay,
        _redis: redis,
    }
}

/// A purge announced while B's subscription hears nothing (its connections to Redis went
/// silent, still counted as a listener): B learns of it from Redis's record of purges
/// when it subscribes again, and stops serving its old copy.
#[tokio::test]
async fn a_purge_a_node_did_not_hear_is_applied_once_it_catches_up() {
    let mut objects = HashMap::new();
    objects.insert("/vod/a/s1.ts".to_owned(), segment_of("old"));
    // Bound in this order so that they go as they came: B, A, the origin, then Redis.
    let PurgeNodes {
        _redis,
        relay,
        origin,
        a,
        b,
    } = purge_nodes(objects).await;
    let ticket = mint("/vod/");
    let b_url = format!("{}/vod/a/s1.ts?ticket={ticket}", b.url);
    assert_eq!(get(&b_url, &[]).await.text(), "old");
    let again = get(&b_url, &[]).await;
    assert_eq!(
        again.headers["x-usher-cache"], "hit",
        "B holds the old copy"
    );

    relay.black_hole();
    origin.insert("/vod/a/s1.ts", segment_of("new"));
    let purge = json!({"prefix": "/vod/a/"});
    let (status, answer) = api(&a, "POST", "/api/v1/cache/purge", Some(purge)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["announced"], true, "Redis took it: {answer}");

    // B finds its subscription silent, subscribes anew, and catches up.
    let on_b = within(
        Duration::from_secs(30),
        || get(&b_url, &[]),
        |r| r.text() == "new",
    )
    .await;
    assert_eq!(on_b.text(), "new", "B stopped serving its old copy");
    ready(&b).await;
}

/// Purges that B did not hear, each under its own prefix: its catch-up applies them all
/// in one pass over its shield (`usher_cache_purge_scans_total` counts one), every purged
/// object comes from the origin again, and the object under no purged prefix is still a
/// hit.
#[tokio::test]
async fn a_catch_up_applies_every_missed_purge_in_one_pass() {
    let purged: Vec<String> = (0..5).map(|n| format!("/vod/p{n}/")).collect();
    let mut objects = HashMap::new();
    for prefix in &purged {
        objects.insert(format!("{prefix}s1.ts"), segment_of("old"));
    }
    objects.insert("/vod/kept/s1.ts".to_owned(), segment_of("kept"));
    // Bound in this order so that they go as they came: B, A, the origin, then Redis.
    let PurgeNodes {
        _redis,
        relay,
        origin,
        a,
        b,
    } = purge_nodes(objects).await;
    let ticket = mint("/vod/");
    let on_b = |prefix: &str| format!("{}{prefix}s1.ts?ticket={ticket}", b.url);
    let cache = |reply: &Reply| reply.headers["x-usher-cache"].to_str().unwrap().to_owned();
    for prefix in purged.iter().map(String::as_str).chain(["/vod/kept/"]) {
        get(&on_b(prefix), &[]).await;
        assert_eq!(cache(&get(&on_b(prefix), &[]).await), "hit", "{prefix}");
    }

    relay.black_hole();
    for prefix in &purged {
        origin.insert(&format!("{prefix}s1.ts"), segment_of("new"));
        let purge = json!({ "prefix": prefix });
        let (status, answer) = api(&a, "POST", "/api/v1/cache/purge", Some(purge)).await;
        assert_eq!(
            (status, &answer["announced"]),
            (200, &json!(true)),
            "{answer}"
        );
    }

    // B finds its subscription silent, subscribes anew, catches up, and is ready again.
    let scans = "usher_cache_purge_scans_total";
    let seen = within(Duration::from_secs(30), || metric(&b, scans), |n| *n > 0.0).await;
    assert!(seen > 0.0, "B caught up");
    ready(&b).await;
    assert_eq!(metric(&b, scans).await, 1.0, "one pass for the five purges");
    for prefix in &purged {
        let again = get(&on_b(prefix), &[]).await;
        assert_eq!((again.text(), cache(&again)), ("new".into(), "miss".into()));
    }
    let kept = get(&on_b("/vod/kept/"), &[]).await;
    assert_eq!((kept.text(), cache(&kept)), ("kept".into(), "hit".into()));
}

/// A purge B heard and applied, read back by its catch-up (which reads from a minute
/// before, in case Redis's clock stepped back), is not applied again: the copy B fetched
/// after it stays a hit, while the purge B missed meanwhile is applied.
#[tokio::test]
async fn a_catch_up_leaves_a_purge_the_node_applied_already() {
    let mut objects = HashMap::new();
    objects.insert("/vod/a/s1.ts".to_owned(), segment_of("old"));
    objects.insert("/vod/b/s1.ts".to_owned(), segment_of("old"));
    // Bound in this order so that they go as they came: B, A, the origin, then Redis.
    let PurgeNodes {
        _redis,
        relay,
        origin,
        a,
        b,
    } = purge_nodes(objects).await;
    let ticket = mint("/vod/");
    let on_b = |prefix: &str| format!("{}{prefix}s1.ts?ticket={ticket}", b.url);
    let purge = |prefix: &str| {
        origin.insert(&format!("{prefix}s1.ts"), segment_of("new"));
        api(
            &a,
            "POST",
            "/api/v1/cache/purge",
            Some(json!({ "prefix": prefix })),
        )
    };
    let refreshed = |prefix| {
        let url = on_b(prefix);
        async move {
            within(
                Duration::from_secs(30),
                || get(&url, &[]),
                |r| r.text() == "new",
            )
            .await
        }
    };
    for prefix in ["/vod/a/", "/vod/b/"] {
        assert_eq!(get(&on_b(prefix), &[]).await.text(), "old");
    }

    // B hears the purge of /vod/a/ and fetches the new copy.
    assert_eq!(purge("/vod/a/").await.0, 200);
    assert_eq!(
        refreshed("/vod/a/").await.text(),
        "new",
        "B heard the purge"
    );
    assert_eq!(
        get(&on_b("/vod/a/"), &[]).await.headers["x-usher-cache"],
        "hit"
    );

    // B misses the purge of /vod/b/, and applies it when it catches up.
    relay.black_hole();
    assert_eq!(purge("/vod/b/").await.0, 200);
    assert_eq!(refreshed("/vod/b/").await.text(), "new", "B caught up");
    let again = get(&on_b("/vod/a/"), &[]).await;
    assert_eq!(
        (
            again.text().as_str(),
            again.headers["x-usher-cache"].to_str().unwrap()
        ),
        ("new", "hit"),
        "the catch-up left the purge B applied already"
    );
}

/// The [`Cluster`] of these tests: A on Redis through the relay (so its connections can be
/// silenced), B directly.
async fn cluster() -> Cluster {
    Cluster::start(Relayed::A).await
}

/// Sells a product of two activations holding the media at `/event/` to alice, through
/// `node`: her play URL and purchase hash.
async fn sell(node: &Usher) -> (String, String) {
    let product = json!({"code": "p", "name": "Final", "activation": 2});
    let sold = sell_event(node, [(product, "alice")]).await;
    (
        sold[0]["play_url"].as_str().unwrap().to_owned(),
        sold[0]["hash"].as_str().unwrap().to_owned(),
    )
}

/// Frees `device` of purchase `hash` through `node`: the answer.
async fn free(node: &Usher, hash: &str, device: &str) -> Value {
    let path = format!("/api/v1/buyers/{hash}/devices/{device}");
    let (status, answer) = api(node, "DELETE", &path, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["freed"],
        usher::device::hash_id(device, None).as_str()
    );
    answer
}

#[tokio::test]
async fn a_device_freed_through_one_node_stops_playing_on_the_other() {
    let mut cluster = cluster().await;
    let Cluster { a, b, .. } = &cluster;
    let (play_url, hash) = sell(b).await;
    let tv = playing(a, &play_url, "tv").await;
    let phone = playing(a, &play_url, "phone").await;

    let freed = free(b, &hash, "tv").await;
    let on_a = within(
        Duration::from_secs(10),
        || get(&tv, &[("x-device-id", "tv")]),
        |r| r.status != 200,
    )
    .await;
    assert_eq!(status_reason(&on_a), (403, "session_ended".into()));
    assert_eq!(
        (&freed["sessions_ended"], &freed["announced"]),
        (&json!(1), &json!(true)),
        "{freed}"
    );
    assert_eq!(
        get(&phone, &[("x-device-id", "phone")]).await.status,
        200,
        "the other device plays on"
    );

    // Redis down: the free stands, and the answer says the other nodes were not told; so
    // does its entry on the audit trail.
    cluster.redis.kill();
    let freed = free(&cluster.b, &hash, "phone").await;
    assert_eq!(freed["announced"], false, "{freed}");
    assert!(freed["reason"].as_str().is_some(), "{freed}");
    let (status, trail) = api(&cluster.b, "GET", "/api/v1/audit?action=device.free", None).await;
    assert_eq!(status, 200, "{trail}");
    let announced: Vec<&Value> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["changes"]["announced"])
        .collect();
    let untold = json!({"before": null, "after": false});
    assert_eq!(announced, [&Value::Null, &untold], "{trail}");
    // Each entry shows the binding freed, named as the players named it.
    let freed: Vec<&Value> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["changes"]["device"]["before"])
        .collect();
    let hashed = |id| json!(usher::device::hash_id(id, None));
    assert_eq!(freed, [&hashed("tv"), &hashed("phone")], "{trail}");
}

#[tokio::test]
async fn a_device_freed_while_the_node_playing_it_hears_nothing_stops_once_it_hears_again() {
    let cluster = cluster().await;
    let Cluster { a, b, relay, .. } = &cluster;
    let (play_url, hash) = sell(b).await;
    let tv = playing(a, &play_url, "tv").await;

    // A's subscription still counts as a listener in Redis, but hears nothing.
    relay.black_hole();
    let freed = free(b, &hash, "tv").await;

    // A stops the tv once it hears Redis again (its touch or its catch-up reads the end).
    let on_a = within(
        Duration::from_secs(30),
        || get(&tv, &[("x-device-id", "tv")]),
        |r| r.status != 200,
    )
    .await;
    assert_eq!(status_reason(&on_a), (403, "session_ended".into()));
    assert_eq!(freed["sessions_ended"], 1, "{freed}");
}

#[tokio::test]
async fn the_cli_says_when_a_freed_device_may_play_on_other_nodes() {
    let mut redis = Redis::start();
    let origin = spawn_origin(HashMap::new()).await;
    let node = Usher::start(
        &rights_config(&origin.url(), &shared_sessions(&redis.url)),
        &[],
    );
    ready(&node).await;
    let (_, hash) = sell(&node).await;
    let devices = format!("/api/v1/buyers/{hash}/devices");
    for device in ["tv", "phone"] {
        post(&node, &devices, json!({"device": device})).await;
    }
    let printed = |device: &str| format!("{}\n", usher::device::hash_id(device, None));

    let told = usher_admin(&node, &["device", "delete", &hash, "tv"]).await;
    assert_eq!(told.ok(), printed("tv"));
    assert_eq!(told.stderr, "", "every node was told");

    // Redis down: the free stands (the hash is printed, exit 0), and the operator hears
    // that the device may play on elsewhere, as the API's answer says.
    redis.kill();
    let untold = usher_admin(&node, &["device", "delete", &hash, "phone"]).await;
    assert_eq!(untold.ok(), printed("phone"));
    assert!(
        untold.stderr.starts_with("usher: ") && untold.stderr.contains("may play on"),
        "{untold:?}"
    );
}
