//! When upstreams fail: cached segments and a stale playlist keep playing while the origin
//! is down, and a second upstream takes over while the first is.

use std::time::Duration;

use crate::support::*;
use crate::{wait_for_metric, Script, ScriptedOrigin, LIVE};

#[tokio::test]
async fn when_the_origin_dies_cached_segments_and_a_stale_playlist_keep_playing() {
    let mut origin = ScriptedOrigin::start().await;
    origin.script("/live/index.m3u8", Script::playlist(LIVE));
    origin.script("/live/s1.ts", Script::segment(&[7u8; 1000]));
    origin.script("/live/s2.ts", Script::segment(&[8u8; 1000]));
    // Live playlists are fresh for 1 ms here, so the next request after the origin dies is
    // past its lifetime and only the stale window can serve it.
    let extra = "[shield]\nlive_playlist_ttl = \"1ms\"\nstale_if_error = \"10m\"\n";
    let usher = Usher::start(&test_config(&origin.url(), extra), &[]);
    let ticket = mint("/live/");
    let playlist_url = format!("{}/live/index.m3u8?ticket={ticket}", usher.url);
    let playlist = get(&playlist_url, &[]).await;
    assert_eq!(playlist.status, 200);
    for uri in uris(&playlist.text()) {
        assert_eq!(get(&resolve(&playlist_url, &uri), &[]).await.status, 200);
    }

    origin.stop();
    let again = get(&playlist_url, &[]).await;
    assert_eq!(again.status, 200, "the playlist is served stale");
    assert_eq!(again.headers["x-usher-cache"], "stale");
    assert!(
        again.headers.contains_key("age"),
        "a stale copy says how old it is: {:?}",
        again.headers
    );
    for uri in uris(&again.text()) {
        let segment = get(&resolve(&playlist_url, &uri), &[]).await;
        assert_eq!(segment.status, 200, "cached segments keep playing");
        assert_eq!(segment.body.len(), 1000);
    }
    let uncached = get(&format!("{}/live/s3.ts?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(uncached.status, 502, "what was never cached is an error");
    assert_eq!(uncached.reason(), "upstream_unreachable");

    // Three failures in a row mark the origin down; from then on a stale answer does not
    // wait on it: the failure count stops. Whatever their reasons: a connection kept from
    // before the origin stopped fails as `upstream_error`, a new one as
    // `upstream_unreachable`.
    for _ in 0..6 {
        let reload = get(&playlist_url, &[]).await;
        assert_eq!(reload.headers["x-usher-cache"], "stale");
    }
    let metrics = get(&format!("{}/metrics", usher.admin.as_ref().unwrap()), &[])
        .await
        .text();
    let upstream = format!("upstream=\"{}\"}} ", origin.url());
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("usher_upstream_failures_total{"))
        .filter_map(|l| l.split_once(&upstream))
        .map(|(_, count)| count.parse::<f64>().unwrap())
        .sum();
    assert_eq!(failures, 3.0, "{metrics}");
    assert!(
        metric(
            &usher,
            "usher_cache_requests_total{kind=\"playlist\",outcome=\"stale\"}"
        )
        .await
            >= 7.0
    );
}

#[tokio::test]
async fn a_second_upstream_takes_over_while_the_first_is_down() {
    let primary = ScriptedOrigin::start().await;
    let secondary = ScriptedOrigin::start().await;
    primary.script("/vod/a.ts", Script::open(503, b"overloaded", "text/plain"));
    primary.script("/healthz", Script::open(503, b"", "text/plain"));
    secondary.script("/vod/a.ts", Script::segment(b"from the secondary"));
    secondary.script("/vod/b.ts", Script::segment(b"b from the secondary"));
    secondary.script("/healthz", Script::open(200, b"ok", "text/plain"));
    let config = test_config(
        &primary.url(),
        "[upstream.health]\nfailures = 2\ncool_off = \"10m\"\ncheck_path = \"/healthz\"\ncheck_interval = \"200ms\"\n[shield]\nenabled = false\n",
    )
    .replace(
        "timeout = \"2s\"\n",
        &format!("timeout = \"2s\"\nfallbacks = [\"{}\"]\n", secondary.url()),
    );
    let usher = Usher::start(&config, &[]);
    let ticket = mint("/vod/");
    let up = format!("usher_upstream_up{{upstream=\"{}\"}}", primary.url());

    let first = get(&format!("{}/vod/a.ts?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(first.status, 200, "the 503 was retried on the secondary");
    assert_eq!(first.text(), "from the secondary");
    let second = get(&format!("{}/vod/a.ts?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(second.text(), "from the secondary");
    // Two failures in a row (or the active check) mark the primary down ...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&usher, &up).await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the primary is marked down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and while it is down it is passed over.
    let asked = primary.hits("/vod/b.ts");
    let b = get(&format!("{}/vod/b.ts?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(b.text(), "b from the secondary");
    assert_eq!(
        primary.hits("/vod/b.ts"),
        asked,
        "a down upstream is not asked"
    );

    // The active check sees it healthy again and brings it back.
    primary.script("/healthz", Script::open(200, b"ok", "text/plain"));
    primary.script("/vod/b.ts", Script::segment(b"b from the primary"));
    wait_for_metric(&usher, &up, 1.0).await;
    let back = get(&format!("{}/vod/b.ts?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(back.text(), "b from the primary");
    assert!(
        metric(
            &usher,
            &format!(
                "usher_upstream_failures_total{{reason=\"status_5xx\",upstream=\"{}\"}}",
                primary.url()
            )
        )
        .await
            >= 1.0
    );
}
