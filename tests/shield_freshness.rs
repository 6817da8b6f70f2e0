//! How long the shield keeps what the origin sends, through a real usher and a real
//! origin: the origin's `Age` counts against the lifetime it gives and is passed on,
//! `Expires` gives a lifetime when `Cache-Control` does not, and `must-revalidate` leaves
//! no stale copy to serve when the origin fails.

mod support;

use std::collections::HashMap;
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
