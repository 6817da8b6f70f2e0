//! One upstream request however many viewers ask at once: a hundred and twenty viewers of
//! one segment, a thousand LL-HLS players blocked on the next part, bytes to the first
//! viewer as they arrive; a failed fetch reaches every waiter and is not kept, a 404 is kept
//! briefly, `no-store` not at all, and an answer not kept is fetched again.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;

use crate::support::*;
use crate::{patient_config, viewers, wait_for_metric, Gate, Script, ScriptedOrigin};

#[tokio::test]
async fn a_hundred_and_twenty_viewers_of_one_segment_cost_one_upstream_request() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut script = Script::segment(&body);
    script.gate = rx;
    script.hold_head = true;
    origin.script("/live/s1.ts", script);
    let usher = Usher::start(&patient_config(&origin.url(), ""), &[]);

    // Every viewer has a ticket of their own; none of it reaches the cache key.
    let viewers = viewers(120, "/live/", |ticket| {
        format!("{}/live/s1.ts?ticket={ticket}", usher.url)
    });
    // The signal that all 120 are inside usher: one started the fetch, 119 joined it.
    wait_for_metric(
        &usher,
        "usher_cache_requests_total{kind=\"segment\",outcome=\"coalesced\"}",
        119.0,
    )
    .await;
    gate.open();
    for viewer in viewers {
        let reply = viewer.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body.as_ref(),
            body.as_slice(),
            "every viewer gets the same bytes"
        );
    }
    assert_eq!(
        origin.hits("/live/s1.ts"),
        1,
        "one upstream request for 120 viewers"
    );

    let later = get(
        &format!("{}/live/s1.ts?ticket={}", usher.url, mint("/live/")),
        &[],
    )
    .await;
    assert_eq!(later.headers["x-usher-cache"], "hit");
    assert_eq!(later.body.as_ref(), body.as_slice());
    assert_eq!(
        origin.hits("/live/s1.ts"),
        1,
        "a later viewer is served from the cache"
    );
    assert!(
        origin
            .all_hits()
            .iter()
            .all(|t| !t.contains("ticket") && !t.contains("token")),
        "no credential reaches the origin"
    );
    assert!(metric(&usher, "usher_cache_size_bytes").await >= body.len() as f64);
    assert!(metric(&usher, "usher_cache_bytes_total{source=\"cache\"}").await >= body.len() as f64);
}

#[tokio::test]
async fn the_first_viewer_gets_bytes_before_the_origin_has_sent_them_all() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let mut script = Script::segment(&[1u8; 40_000]);
    script.rest = Bytes::from(vec![2u8; 40_000]);
    script.gate = rx;
    origin.script("/live/s1.ts", script);
    let usher = Usher::start(&patient_config(&origin.url(), ""), &[]);
    let url = format!("{}/live/s1.ts?ticket={}", usher.url, mint("/live/"));

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let first = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-usher-cache"], "miss");
    let mut first_body = first.into_body();
    let mut early = Vec::new();
    while early.len() < 40_000 {
        let frame = tokio::time::timeout(Duration::from_secs(10), first_body.frame())
            .await
            .expect("the first half arrives while the origin holds the rest")
            .unwrap()
            .unwrap();
        early.extend_from_slice(frame.data_ref().unwrap());
    }
    assert!(
        early.iter().all(|b| *b == 1),
        "the first half, as the origin sent it"
    );

    // A second viewer joins the same fetch midway and still gets every byte.
    let second = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(second.headers()["x-usher-cache"], "coalesced");
    gate.open();
    let rest = first_body.collect().await.unwrap().to_bytes();
    assert_eq!(rest.len(), 40_000);
    let whole = second.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(whole.len(), 80_000);
    assert_eq!(&whole[..40_000], &early[..]);
    assert_eq!(origin.hits("/live/s1.ts"), 1);
}

#[tokio::test]
async fn a_failed_fetch_reaches_every_waiter_and_is_not_kept() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let mut script = Script::open(500, b"transcoder hiccup", "text/plain");
    script.gate = rx;
    script.hold_head = true;
    origin.script("/live/s1.ts", script);
    let usher = Usher::start(&patient_config(&origin.url(), ""), &[]);
    let url = format!("{}/live/s1.ts?ticket={}", usher.url, mint("/live/"));
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    wait_for_metric(
        &usher,
        "usher_cache_requests_total{kind=\"segment\",outcome=\"coalesced\"}",
        9.0,
    )
    .await;
    gate.open();
    for waiter in waiters {
        assert_eq!(
            waiter.await.unwrap().status,
            500,
            "every waiter gets the error"
        );
    }
    assert_eq!(origin.hits("/live/s1.ts"), 1);

    origin.script("/live/s1.ts", Script::segment(b"recovered"));
    let next = get(&url, &[]).await;
    assert_eq!(next.status, 200, "the error was not kept");
    assert_eq!(next.text(), "recovered");
    assert_eq!(origin.hits("/live/s1.ts"), 2);
}

/// Asks `rounds` times for a missing segment and a `no-store` one, with the shield's
/// `negative_ttl` set; answers the origin's hits for each.
async fn missing_and_private_hits(negative_ttl: &str, rounds: usize) -> (usize, usize) {
    let origin = ScriptedOrigin::start().await;
    origin.script(
        "/vod/private.ts",
        Script::segment(b"per-request").header("cache-control", "no-store"),
    );
    let usher = Usher::start(
        &test_config(
            &origin.url(),
            &format!("[shield]\nnegative_ttl = \"{negative_ttl}\"\n"),
        ),
        &[],
    );
    let ticket = mint("/vod/");
    for _ in 0..rounds {
        let missing = get(
            &format!("{}/vod/missing.ts?ticket={ticket}", usher.url),
            &[],
        )
        .await;
        assert_eq!(missing.status, 404);
        let private = get(
            &format!("{}/vod/private.ts?ticket={ticket}", usher.url),
            &[],
        )
        .await;
        assert_eq!(private.status, 200);
        assert_eq!(private.text(), "per-request");
    }
    (
        origin.hits("/vod/missing.ts"),
        origin.hits("/vod/private.ts"),
    )
}

#[tokio::test]
async fn a_404_is_kept_briefly_and_no_store_is_not_kept() {
    let (missing, private) = missing_and_private_hits("10m", 2).await;
    assert_eq!(missing, 1, "the 404 was kept");
    assert_eq!(private, 2, "no-store was honoured");
}

/// A request sent after the whole answer was read never joins the fetch that brought it:
/// with nothing kept (no-store, a 404 with `negative_ttl = "0s"`), each request reaches
/// the origin. (A fetch used to leave the in-flight table only after its last byte went
/// out, so a quick player could be handed the previous answer again.)
#[tokio::test]
async fn an_answer_not_kept_is_fetched_again_by_the_next_request() {
    const ROUNDS: usize = 150;
    let (missing, private) = missing_and_private_hits("0s", ROUNDS).await;
    assert_eq!(missing, ROUNDS);
    assert_eq!(private, ROUNDS);
}

#[tokio::test]
async fn a_thousand_players_blocked_on_the_next_part_make_one_upstream_request() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let ll = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3\n#EXT-X-PART-INF:PART-TARGET=1\n#EXT-X-MEDIA-SEQUENCE:10\n#EXTINF:4,\ns10.m4s\n#EXT-X-PART:DURATION=1,URI=\"s11.0.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s11.1.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"../lo/index.m3u8\",LAST-MSN=11,LAST-PART=0\n";
    let mut script = Script::playlist(ll);
    script.gate = rx;
    script.hold_head = true;
    origin.script("/ll/hi/index.m3u8", script);
    let usher = Usher::start(&patient_config(&origin.url(), ""), &[]);
    const PLAYERS: usize = 1000;
    let players = viewers(PLAYERS, "/ll/", |ticket| {
        format!(
            "{}/ll/hi/index.m3u8?_HLS_msn=11&_HLS_part=1&ticket={ticket}",
            usher.url
        )
    });
    wait_for_metric(
        &usher,
        "usher_cache_requests_total{kind=\"playlist\",outcome=\"coalesced\"}",
        (PLAYERS - 1) as f64,
    )
    .await;
    gate.open();
    let mut tokens = std::collections::HashSet::new();
    for player in players {
        let reply = player.await.unwrap();
        assert_eq!(reply.status, 200);
        let text = reply.text();
        let token = reply.token_for("s10.m4s").expect("a tokenized segment");
        // The part and the preload hint carry the segments' token; the rendition report
        // names a rendition and carries none, so hls.js matches it to the variant URI it
        // has from the master playlist (which carries the master's token).
        assert!(text.contains(&format!("URI=\"s11.0.m4s?token={token}\"")));
        assert!(text.contains(&format!("URI=\"s11.1.m4s?token={token}\"")));
        assert!(text.contains("#EXT-X-RENDITION-REPORT:URI=\"../lo/index.m3u8\",LAST-MSN=11"));
        tokens.insert(token);
    }
    assert_eq!(
        tokens.len(),
        PLAYERS,
        "each player's playlist is rewritten for them"
    );
    assert_eq!(
        origin.all_hits(),
        vec!["/ll/hi/index.m3u8?_HLS_msn=11&_HLS_part=1".to_owned()],
        "one blocking request upstream, with the directives and nothing else"
    );
}
