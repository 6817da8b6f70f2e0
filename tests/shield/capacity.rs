//! The shield's limits on what it holds and asks: a full cache evicts what viewers stopped
//! asking for, a server at `max_requests` is asked nothing more until a body ends, and a
//! request its client abandons leaves the in-flight count.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;

use crate::support::*;
use crate::{patient_config, wait_for_metric, Gate, Script, ScriptedOrigin};

/// A full cache evicts the object viewers stopped asking for, not the one they keep asking
/// for, although each serving thread answers that one from its own front without the
/// shared cache: once a second a request for it goes to the cache, which marks it used.
#[tokio::test]
async fn a_full_cache_evicts_what_viewers_stopped_asking_for_not_what_they_keep_asking_for() {
    let origin = ScriptedOrigin::start().await;
    let body = vec![b'x'; 300_000];
    for name in ["hot", "c1", "c2", "c3"] {
        origin.script(&format!("/vod/a/{name}.ts"), Script::segment(&body));
    }
    // Room for three of the four objects.
    let usher = Usher::start(
        &test_config(&origin.url(), "[shield]\nmemory = 1048576\n"),
        &[],
    );
    let ticket = mint("/vod/a/");
    let fetch = |name: &'static str| {
        let url = format!("{}/vod/a/{name}.ts?ticket={ticket}", usher.url);
        async move {
            let reply = get(&url, &[]).await;
            assert_eq!(
                (reply.status.as_u16(), reply.body.len()),
                (200, 300_000),
                "{name}"
            );
            reply.headers["x-usher-cache"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(fetch("hot").await, "miss");
    // A connection each: both serving threads come to answer it from their fronts.
    for _ in 0..8 {
        assert_eq!(fetch("hot").await, "hit");
    }
    assert_eq!(fetch("c1").await, "miss");
    assert_eq!(fetch("c2").await, "miss");
    // Past the fronts' refresh interval (a time the behaviour is defined by, not a wait
    // for something to happen), viewers keep asking for `hot` only.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..8 {
        assert_eq!(fetch("hot").await, "hit");
    }
    assert_eq!(fetch("c3").await, "miss");
    // A scrape settles the cache's pending bookkeeping, evictions included.
    assert!(metric(&usher, "usher_cache_size_bytes").await <= 1_048_576.0);
    assert_eq!(fetch("hot").await, "hit", "the object in demand stayed");
    assert_eq!(origin.hits("/vod/a/hot.ts"), 1);
    assert_eq!(
        fetch("c1").await,
        "miss",
        "the one asked for longest ago went"
    );
    assert_eq!(origin.hits("/vod/a/c1.ts"), 2);
}

#[tokio::test]
async fn a_server_at_max_requests_is_asked_nothing_more_until_a_body_ends() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let mut held = Script::segment(&[1u8; 1000]);
    held.rest = Bytes::from(vec![2u8; 1000]);
    held.gate = rx;
    origin.script("/vod/a/held.ts", held);
    origin.script("/vod/a/next.ts", Script::segment(b"next"));
    let config = test_config(&origin.url(), "")
        .replace("timeout = \"2s\"\n", "timeout = \"2s\"\nmax_requests = 1\n");
    let usher = Usher::start(&config, &[]);
    let url = |name: &str| format!("{}/vod/a/{name}?ticket={}", usher.url, mint("/vod/"));

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let first = client.get(url("held.ts").parse().unwrap()).await.unwrap();
    assert_eq!(first.status(), 200);
    let in_flight = format!("usher_upstream_in_flight{{upstream=\"{}\"}}", origin.url());
    assert_eq!(metric(&usher, &in_flight).await, 1.0, "{in_flight}");

    let refused = get(&url("next.ts"), &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.reason(), "upstream_busy");
    assert_eq!(origin.hits("/vod/a/next.ts"), 0, "held back, not sent");

    gate.open();
    let whole = first.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(whole.len(), 2000);
    let served = get(&url("next.ts"), &[]).await;
    assert_eq!(served.status, 200, "the slot came back when the body ended");
    assert_eq!(served.text(), "next");
    assert_eq!(metric(&usher, &in_flight).await, 0.0);
}

/// A viewer who goes away while usher waits on the origin is no longer counted in
/// `usher_requests_in_flight` (the request is logged as cancelled, 499).
#[tokio::test]
async fn a_request_the_client_abandons_leaves_the_in_flight_count() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let mut script = Script::segment(b"late");
    script.gate = rx;
    script.hold_head = true;
    origin.script("/vod/late.ts", script);
    let usher = Usher::start(&patient_config(&origin.url(), ""), &[]);
    let url = format!("{}/vod/late.ts?ticket={}", usher.url, mint("/vod/"));
    let viewer = tokio::spawn(async move { get(&url, &[]).await });
    wait_for_metric(&usher, "usher_requests_in_flight", 1.0).await;
    viewer.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // The scrape itself is not counted: it goes to the admin listener.
        let left = metric(&usher, "usher_requests_in_flight").await;
        if left == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} still in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(
            &usher,
            "usher_requests_total{kind=\"segment\",status=\"499\"}"
        )
        .await,
        1.0
    );
    gate.open();
}
