//! Rights across nodes: a buyer sold on one node plays on another, a revoke on one node
//! stops the next segment on another while decisions are cached for ten minutes, and
//! activations are counted once across nodes however many devices race.

use std::time::Instant;

use serde_json::json;

use crate::support::admin::api;
use crate::support::cluster::status_reason;
use crate::support::postgres::Postgres;
use crate::support::redis::Redis;
use crate::support::*;
use crate::{add_buyer, on, play, sell_event, shared_cluster, until, wait_converged};

/// Three nodes on one PostgreSQL and one Redis, each subscribed to both.
async fn cluster(origin: &Origin, url: &str, redis: &Redis) -> Vec<Usher> {
    shared_cluster(origin, url, redis, "deny").await
}

#[tokio::test]
async fn a_buyer_sold_on_node_a_plays_on_node_c_and_a_revoke_on_a_stops_the_next_segment_on_c() {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let redis = Redis::start();
    let nodes = cluster(&origin, &url, &redis).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    sell_event(a, json!({"code": "final", "name": "Final"})).await;
    // Node C learns the new media from A's invalidations (its media index is re-read).
    wait_converged(a, c, "all").await;
    wait_converged(a, b, "all").await;
    let (play_url, hash) = add_buyer(a, "final", "alice").await;

    let (playlist, segment) = play(c, &play_url, &[]).await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    assert_eq!(get(&segment, &[]).await.status, 200);
    assert_eq!(
        get(&segment, &[]).await.status,
        200,
        "again, from C's cache"
    );
    assert!(metric(c, "usher_rights_cache_total{outcome=\"hit\"}").await >= 1.0);
    let (from_b, _) = play(b, &play_url, &[]).await;
    assert_eq!(from_b.status, 200, "and on B");

    let (status, body) = api(a, "POST", &format!("/api/v1/buyers/{hash}/revoke"), None).await;
    assert_eq!(status, 200, "{body}");
    let revoked = Instant::now();
    let refused = until(|| async { get(&segment, &[]).await }, |r| r.status != 200).await;
    eprintln!(
        "revoke on A refused on C after {} ms",
        revoked.elapsed().as_millis()
    );
    assert_eq!(status_reason(&refused), (403, "revoked".into()));
    assert!(metric(c, "usher_invalidations_received_total{scope=\"subject\"}").await >= 1.0);
    assert!(metric(a, "usher_invalidations_sent_total{scope=\"subject\"}").await >= 1.0);
}

#[tokio::test]
async fn activations_are_counted_once_across_nodes_even_when_twenty_devices_race() {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let redis = Redis::start();
    let nodes = cluster(&origin, &url, &redis).await;
    sell_event(
        &nodes[0],
        json!({"code": "p", "name": "Final", "activation": 2}),
    )
    .await;
    for node in &nodes[1..] {
        wait_converged(&nodes[0], node, "all").await;
    }
    let (play_url, _) = add_buyer(&nodes[0], "p", "alice").await;
    let device = |d: &'static str| [("x-device-id", d)];
    assert_eq!(
        play(&nodes[0], &play_url, &device("tv")).await.0.status,
        200
    );
    assert_eq!(
        play(&nodes[1], &play_url, &device("phone")).await.0.status,
        200
    );
    let (third, _) = play(&nodes[2], &play_url, &device("laptop")).await;
    assert_eq!(status_reason(&third), (403, "activation_limit".into()));
    assert_eq!(
        play(&nodes[2], &play_url, &device("tv")).await.0.status,
        200,
        "a device bound on A plays on C without another activation"
    );

    // A second purchase, and 20 distinct devices playing it for the first time at once,
    // spread over the three nodes.
    let (race_url, race_hash) = add_buyer(&nodes[0], "p", "bob").await;
    let players: Vec<_> = (0..20)
        .map(|n| {
            let url = on(&nodes[n % 3], &race_url);
            tokio::spawn(async move {
                let id = format!("device-{n}");
                get(&url, &[("x-device-id", id.as_str())]).await
            })
        })
        .collect();
    let mut played = 0;
    let mut limited = 0;
    for player in players {
        match status_reason(&player.await.unwrap()) {
            (200, _) => played += 1,
            (403, reason) if reason == "activation_limit" => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((played, limited), (2, 18));
    let (_, devices) = api(
        &nodes[1],
        "GET",
        &format!("/api/v1/buyers/{race_hash}/devices"),
        None,
    )
    .await;
    assert_eq!(
        devices["items"].as_array().map(Vec::len),
        Some(2),
        "exactly 2 activations recorded: {devices}"
    );
}
