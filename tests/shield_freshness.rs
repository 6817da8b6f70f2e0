//! How long the shield keeps what the origin sends, through a real usher and a real
//! origin: the origin's `Age` counts against the lifetime it gives and is passed on,
//! `Expires` gives a lifetime when `Cache-Control` does not, and `must-revalidate` leaves
//! no stale copy to serve when the origin fails. A body that breaks before its first bytes
//! is such a failure too.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use support::*;

const PATH: &str = "/vod/a/s1.ts";

/// An origin serving `object` at [`PATH`], and a usher in front of it (`extra` appended to
/// its config), with the URL a viewer asks for it at.
async fn shielded(object: Object, extra: &str) -> (Origin, Usher, String) {
    let origin = spawn_origin(HashMap::from([(PATH.to_owned(), object)])).await;
    let usher = Usher::start(&test_config(&origin.url(), extra), &[]);
    let url = format!("{}{PATH}?ticket={}", usher.url, mint("/vod/"));
    (origin, usher, url)
}

fn upstream_requests(origin: &Origin) -> usize {
    origin.seen().iter().filter(|s| s.target == PATH).count()
}

/// Asks for `url` until `done` holds for an answer (bounded at 10 s), and returns it.
async fn ask_until(url: &str, what: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(url, &[]).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {} {:?}",
            reply.status,
            reply.headers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn age(reply: &Reply) -> u64 {
    reply.headers["age"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_copy_that_arrives_old_is_kept_only_for_what_is_left_of_its_lifetime() {
    // A CDN in front of the packager kept it 3,596 of its 3,600 seconds already: 4 s are
    // left (room for the hit below on a loaded machine).
    let object = segment(1000)
        .with_header("cache-control", "max-age=3600")
        .with_header("age", "3596");
    let (origin, _usher, url) = shielded(object, "").await;
    assert_eq!(get(&url, &[]).await.status, 200);
    let hit = get(&url, &[]).await;
    assert_eq!(hit.headers["x-usher-cache"], "hit");
    assert!(
        age(&hit) >= 3596,
        "a hit says how old the copy is, the CDN's time included: {:?}",
        hit.headers
    );
    assert_eq!(upstream_requests(&origin), 1);
    // Four seconds after it arrived it is an hour old: asked for again, not served for
    // another hour.
    ask_until(&url, "the old copy fetched again", |_| {
        upstream_requests(&origin) >= 2
    })
    .await;
}

#[tokio::test]
async fn expires_gives_the_lifetime_when_cache_control_does_not() {
    let now = SystemTime::now();
    let object = segment(1000)
        .with_header("date", httpdate::fmt_http_date(now))
        .with_header(
            "expires",
            httpdate::fmt_http_date(now + Duration::from_secs(1)),
        );
    let (origin, _usher, url) = shielded(object, "").await;
    assert_eq!(get(&url, &[]).await.status, 200);
    // Kept for the second Expires allows, not the ten minutes usher gives a segment.
    ask_until(&url, "fetched again once Expires passed", |_| {
        upstream_requests(&origin) >= 2
    })
    .await;

    // An Expires in the past (or `0`) says the answer is already stale: never kept.
    for expires in ["Thu, 01 Jan 1970 00:00:00 GMT", "0"] {
        let object = segment(1000).with_header("expires", expires);
        let (origin, _usher, url) = shielded(object, "").await;
        for _ in 0..3 {
            let reply = get(&url, &[]).await;
            assert_eq!(reply.status, 200);
            assert_ne!(reply.headers["x-usher-cache"], "hit", "Expires: {expires}");
        }
        assert_eq!(upstream_requests(&origin), 3, "Expires: {expires}");
    }
}

/// The first answer once the copy usher kept of a segment sent with `cache_control` is
/// past its lifetime and the origin answers 500: a stale copy or the failure.
async fn once_the_origin_fails(cache_control: &str) -> Reply {
    let extra = "[shield]\nstale_if_error = \"10m\"\n";
    let object = segment(1000).with_header("cache-control", cache_control);
    let (origin, _usher, url) = shielded(object.clone(), extra).await;
    assert_eq!(get(&url, &[]).await.status, 200);
    origin.insert(
        PATH,
        Object {
            status: Some(500),
            ..object
        },
    );
    ask_until(&url, "a stale copy or the origin's failure", |r| {
        r.status != 200 || r.headers.get("x-usher-cache").is_some_and(|v| v == "stale")
    })
    .await
}

#[tokio::test]
async fn must_revalidate_is_never_served_stale_when_the_origin_fails() {
    // Without the directive, the stale window serves the copy.
    let stale = once_the_origin_fails("max-age=1").await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.headers["x-usher-cache"], "stale");
    assert_eq!(stale.body.len(), 1000);

    let failed = once_the_origin_fails("max-age=1, must-revalidate").await;
    assert_eq!(
        failed.status, 500,
        "the origin's own answer, not a stale copy"
    );
    assert_ne!(failed.headers["x-usher-cache"], "stale");
}

#[tokio::test]
async fn a_long_lifetime_caps_what_is_left_of_it_and_an_endless_age_is_not_ignored() {
    // nginx's `expires max` (ten years) from a CDN that has held the copy for a year and
    // a half: more than usher's one-year cap is left, so it is kept.
    let object = segment(1000)
        .with_header("cache-control", "max-age=315360000")
        .with_header("age", "47304000");
    let (origin, _usher, url) = shielded(object, "").await;
    assert_eq!(get(&url, &[]).await.status, 200);
    let hit = get(&url, &[]).await;
    assert_eq!(hit.headers["x-usher-cache"], "hit", "{:?}", hit.headers);
    assert!(age(&hit) >= 47_304_000, "{:?}", hit.headers);
    assert_eq!(upstream_requests(&origin), 1);

    // An Age too large for any number is as old as can be: never kept, not kept an hour.
    let object = segment(1000)
        .with_header("cache-control", "max-age=3600")
        .with_header("age", "99999999999999999999");
    let (origin, _usher, url) = shielded(object, "").await;
    for _ in 0..3 {
        let reply = get(&url, &[]).await;
        assert_eq!(reply.status, 200);
        assert_ne!(reply.headers["x-usher-cache"], "hit");
    }
    assert_eq!(upstream_requests(&origin), 3);
}

/// A usher (`extra` appended to its config) in front of an origin that answers the first
/// request for [`PATH`] with `segment(1000)` sent with `cache_control`, the second with
/// `broken`, and then closes its port (a connection refused). Asks until an answer is not
/// a hit (the copy is past its lifetime and a fetch went upstream) and returns it, with
/// the usher, the URL and the request heads the origin read.
async fn past_its_lifetime(
    cache_control: &str,
    broken: &str,
    extra: &str,
) -> (Reply, Usher, String, Arc<Mutex<Vec<String>>>) {
    let kept = [
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 1000\r\n\
             etag: \"v1\"\r\ncache-control: {cache_control}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes(),
        segment(1000).body.to_vec(),
    ]
    .concat();
    let (origin, heads) = raw_origin(vec![kept, broken.into()]).await;
    let usher = Usher::start(&test_config(&origin, extra), &[]);
    let url = format!("{}{PATH}?ticket={}", usher.url, mint("/vod/"));
    let first = get(&url, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-usher-cache"], "miss");
    let reply = ask_until(&url, "the copy past its lifetime", |r| {
        r.headers.get("x-usher-cache").is_none_or(|v| v != "hit")
    })
    .await;
    (reply, usher, url, heads)
}

/// An origin whose answer breaks off before its first body bytes (its head sent, then
/// the connection closed) has failed as one that refuses the connection or answers 5xx:
/// within the stale window (`shield.stale_if_error`, or the origin's `stale-if-error`) the
/// viewer gets the kept copy with the same headers a refused connection gets it with, and
/// the shield counts a stale answer, not an upstream error. Whether its body was sent
/// chunked or with a length.
#[tokio::test]
async fn a_body_that_breaks_before_its_first_bytes_is_served_stale_like_any_failure() {
    let chunked =
        "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ntransfer-encoding: chunked\r\n\r\n";
    let with_length = "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 1000\r\n\r\n";
    for (broken, cache_control, extra) in [
        (chunked, "max-age=1", "[shield]\nstale_if_error = \"10m\"\n"),
        (
            with_length,
            "max-age=1, stale-if-error=600",
            "[shield]\nstale_if_error = \"0s\"\n",
        ),
    ] {
        let (stale, usher, url, heads) = past_its_lifetime(cache_control, broken, extra).await;
        assert_eq!(
            heads.lock().unwrap().len(),
            2,
            "the origin sent its broken answer, and no other, for this one"
        );
        assert_eq!(
            stale.status,
            200,
            "{broken:?}: {:?} {}",
            stale.headers,
            stale.text()
        );
        assert_eq!(stale.headers["x-usher-cache"], "stale");
        assert!(age(&stale) >= 1, "{:?}", stale.headers);
        assert_eq!(stale.body, segment(1000).body);

        // The origin's port is closed now: the connection refused gets the copy too, with
        // the same headers.
        let refused = get(&url, &[]).await;
        assert_eq!(refused.headers["x-usher-cache"], "stale");
        let comparable = |reply: &Reply| {
            let mut headers = reply.headers.clone();
            for varying in ["date", "age", "x-request-id"] {
                headers.remove(varying);
            }
            headers
        };
        assert_eq!(comparable(&stale), comparable(&refused));
        assert_eq!(refused.body, stale.body);
        assert_eq!(
            metric(
                &usher,
                "usher_cache_requests_total{kind=\"segment\",outcome=\"stale\"}"
            )
            .await,
            2.0
        );
        assert_eq!(
            metric(
                &usher,
                "usher_upstream_errors_total{error=\"upstream_error\"}"
            )
            .await,
            0.0,
            "the viewer was served"
        );
    }

    // Without a stale window, such a body is a 502, never a 200 cut short.
    let (failed, usher, _url, _heads) =
        past_its_lifetime("max-age=1", chunked, "[shield]\nstale_if_error = \"0s\"\n").await;
    assert_eq!(
        (failed.status.as_u16(), failed.reason()),
        (502, "upstream_error".to_owned())
    );
    assert_eq!(
        metric(
            &usher,
            "usher_upstream_errors_total{error=\"upstream_error\"}"
        )
        .await,
        1.0
    );
}

/// A live media playlist is kept half its target duration, not the `playlist_ttl` of
/// master and VOD playlists: also one the origin gzips although the shield asks for
/// identity (kept as it came, and read through its gzip), and one whose first segment is
/// not out yet (a transcoder starting: its segments must show as soon as they are out).
#[tokio::test]
async fn a_live_playlist_gzipped_or_before_its_first_segment_is_kept_half_its_target() {
    use std::io::Write as _;
    const LIVE: &str = "/vod/a/index.m3u8";
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\ns0.ts\n";
    let mut packed = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    packed.write_all(text.as_bytes()).unwrap();
    let gzipped = Object {
        body: packed.finish().unwrap().into(),
        ..playlist(text)
    }
    .with_header("content-encoding", "gzip");
    let starting = playlist("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n");
    for (what, object, shows) in [
        ("gzipped", gzipped, "s0.ts"),
        (
            "before its first segment",
            starting,
            "#EXT-X-MEDIA-SEQUENCE:0",
        ),
    ] {
        let origin = spawn_origin(HashMap::from([(LIVE.to_owned(), object)])).await;
        // An hour for other playlists: a live one kept that long is never fetched again here.
        let extra = "[shield]\nplaylist_ttl = \"1h\"\n";
        let usher = Usher::start(&test_config(&origin.url(), extra), &[]);
        let url = format!("{}{LIVE}?ticket={}", usher.url, mint("/vod/"));
        let first = get(&url, &[]).await;
        assert_eq!(first.status, 200, "{what}");
        assert!(first.text().contains(shows), "{what}: {}", first.text());
        let fetches = || origin.seen().iter().filter(|s| s.target == LIVE).count();
        ask_until(&url, what, |reply| {
            assert_eq!(reply.status, 200, "{what}");
            fetches() >= 2
        })
        .await;
    }
}
