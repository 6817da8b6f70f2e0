//! usher in front of a real HTTP origin: every denial reason, playlist rewriting followed
//! through usher, forwarding (credentials stripped, ranges, forwarding headers), path
//! normalisation, upstream failures, public and unrouted paths, CORS.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

const MASTER: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",DEFAULT=YES,URI=\"audio/en.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aud\"
video/720.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=400000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aud\"
ORIGIN/vod/movie/video/360.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI=\"video/iframes.m3u8\"
";

const MEDIA_720: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k1.key\",IV=0x00000000000000000000000000000001
#EXTINF:4.000,
seg1.m4s?v=2
#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://fairplay-id\",KEYFORMAT=\"com.apple.streamingkeydelivery\"
#EXTINF:4.000,
seg2.m4s
#EXTINF:4.000,
https://cdn.elsewhere.example/ads/ad1.m4s
#EXT-X-ENDLIST
";

const MEDIA_360: &str = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-BYTERANGE:1000@0
#EXTINF:4.000,
ORIGIN/vod/movie/video/all.ts
#EXT-X-BYTERANGE:1000@1000
#EXTINF:4.000,
//HOSTPORT/vod/movie/video/all.ts
#EXT-X-ENDLIST
";

const AUDIO: &str = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXTINF:4.000,
a1.aac
#EXT-X-ENDLIST
";

async fn origin_with_movie() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/vod/movie/audio/en.m3u8".to_owned(), playlist(AUDIO));
    objects.insert("/vod/movie/audio/a1.aac".to_owned(), segment(300));
    objects.insert("/vod/movie/video/init.mp4".to_owned(), segment(100));
    objects.insert("/vod/movie/video/seg1.m4s".to_owned(), segment(5000));
    objects.insert("/vod/movie/video/seg2.m4s".to_owned(), segment(5000));
    objects.insert("/vod/movie/video/all.ts".to_owned(), segment(2000));
    objects.insert("/vod/movie/video/iframes.m3u8".to_owned(), playlist(AUDIO));
    objects.insert("/vod/movie/video/a1.aac".to_owned(), segment(300));
    objects.insert("/vod/movie/keys/k1.key".to_owned(), segment(16));
    objects.insert(
        "/vod/broken/index.m3u8".to_owned(),
        playlist("this is not a playlist\n"),
    );
    objects.insert("/public/trailer.ts".to_owned(), segment(10));
    // An origin that opens its objects to every page, with credentials.
    objects.insert(
        "/vod/movie/video/open.ts".to_owned(),
        segment(10)
            .with_header("access-control-allow-origin", "*")
            .with_header("access-control-allow-credentials", "true")
            .with_header("access-control-expose-headers", "*"),
    );
    let slow = Object {
        delay: Some(Duration::from_secs(5)),
        ..segment(10)
    };
    objects.insert("/vod/movie/video/slow.ts".to_owned(), slow);
    let origin = spawn_origin(objects).await;
    // These playlists name the origin's own address, known only now.
    let host = origin.addr.to_string();
    for (path, text) in [
        ("/vod/movie/master.m3u8", MASTER),
        ("/vod/movie/video/720.m3u8", MEDIA_720),
        ("/vod/movie/video/360.m3u8", MEDIA_360),
    ] {
        let text = text
            .replace("ORIGIN", &format!("http://{host}"))
            .replace("HOSTPORT", &host);
        origin.insert(path, playlist(&text));
    }
    origin
}

fn start(origin: &Origin) -> Usher {
    let extra = "[access]\nprotected = [\"/vod/\"]\npublic = [\"/public/\"]\ncors_origins = [\"https://player.example\"]\n";
    Usher::start(&test_config(&origin.url(), extra), &[])
}

#[tokio::test]
async fn every_uri_in_a_rewritten_playlist_is_tokenized_and_fetchable_through_usher() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let ticket = mint("/vod/movie/");

    // Walk the whole tree the way a player does: playlists lead to playlists and media.
    let mut queue = vec![format!(
        "{}/vod/movie/master.m3u8?ticket={ticket}",
        usher.url
    )];
    let mut fetched = 0;
    let mut foreign = Vec::new();
    while let Some(url) = queue.pop() {
        let reply = get(&url, &[]).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
        fetched += 1;
        if !url.split('?').next().unwrap().ends_with(".m3u8") {
            continue;
        }
        assert_eq!(reply.headers["cache-control"], "private, no-store");
        for uri in uris(&reply.text()) {
            if uri.starts_with("skd://") || uri.contains("cdn.elsewhere.example") {
                foreign.push(uri);
                continue;
            }
            assert!(uri.contains("token=s2."), "{uri} carries a session token");
            assert!(
                !uri.contains(&origin.addr.to_string()),
                "{uri} no longer names the origin"
            );
            queue.push(resolve(&url, &uri));
        }
    }
    // master, audio playlist + 1 segment, 720 playlist + init + key + 2 segments,
    // 360 playlist + 2 ranges of all.ts, iframe playlist + its segment.
    assert_eq!(fetched, 13);
    assert_eq!(
        foreign.len(),
        2,
        "skd:// and the foreign CDN are left alone: {foreign:?}"
    );
}

#[tokio::test]
async fn rewriting_changes_only_the_uris() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let ticket = mint("/vod/movie/");
    let reply = get(
        &format!("{}/vod/movie/video/720.m3u8?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    let text = reply.text();
    let token = reply.token_for("seg2.m4s").expect("segment tokenized");
    let expected = MEDIA_720
        .replace("\"init.mp4\"", &format!("\"init.mp4?token={token}\""))
        .replace(
            "\"../keys/k1.key\"",
            &format!("\"../keys/k1.key?token={token}\""),
        )
        .replace("seg1.m4s?v=2", &format!("seg1.m4s?v=2&token={token}"))
        .replace("seg2.m4s\n", &format!("seg2.m4s?token={token}\n"));
    assert_eq!(text, expected);
    assert_eq!(reply.headers["content-length"], text.len().to_string());
    assert!(
        reply.headers.get("etag").is_none(),
        "the origin's validator no longer applies"
    );
}

#[tokio::test]
async fn credentials_never_reach_the_origin_and_the_client_is_named() {
    let origin = origin_with_movie().await;
    // Requests that pass by the shield carry the client's headers; shared fetches carry
    // no viewer's (tests/shield/).
    let usher = Usher::start(
        &test_config(&origin.url(), "[shield]\nenabled = false\n"),
        &[],
    );
    let ticket = mint("/vod/movie/");
    let url = format!(
        "{}/vod/movie/video/seg1.m4s?v=2&ticket={ticket}&device=tv-1",
        usher.url
    );
    let reply = get(
        &url,
        &[
            ("x-device-id", "tv-1"),
            ("cookie", "usher_ticket=zzz; theme=dark"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = origin.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.target, "/vod/movie/video/seg1.m4s?v=2");
    assert!(last.headers.get("x-device-id").is_none());
    assert_eq!(last.headers["cookie"], "theme=dark");
    assert_eq!(last.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(last.headers["x-forwarded-proto"], "http");
    assert!(last.headers["forwarded"]
        .to_str()
        .unwrap()
        .starts_with("for=127.0.0.1;proto=http"));
    assert_eq!(last.headers["host"], origin.addr.to_string());
}

#[tokio::test]
async fn tickets_are_read_from_bearer_and_cookie_too() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let ticket = mint("/vod/movie/");
    let url = format!("{}/vod/movie/video/seg2.m4s", usher.url);
    let bearer = format!("Bearer {ticket}");
    assert_eq!(get(&url, &[("authorization", &bearer)]).await.status, 200);
    let cookie = format!("usher_ticket={ticket}");
    assert_eq!(get(&url, &[("cookie", &cookie)]).await.status, 200);
    for seen in origin.seen() {
        assert!(seen.headers.get("authorization").is_none());
        assert!(seen.headers.get("cookie").is_none());
    }
}

#[tokio::test]
async fn every_denial_has_its_status_and_reason() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let seg = format!("{}/vod/movie/video/seg1.m4s", usher.url);
    let now = usher::clock::unix_now();
    let other_ring = usher::ticket::KeyRing::new(
        vec![
            usher::ticket::Key::new("test-key", b"a-different-secret-with-enough-bytes!!").unwrap(),
        ],
        "test-key",
    )
    .unwrap();
    let unknown_ring = usher::ticket::KeyRing::new(
        vec![usher::ticket::Key::new("retired", b"a-retired-secret-with-enough-bytes!!!").unwrap()],
        "retired",
    )
    .unwrap();
    /// url, device header, status, reason
    type Case = (String, Option<&'static str>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (seg.clone(), None, 401, "no_credential"),
        (format!("{seg}?ticket=garbage"), None, 403, "malformed"),
        (
            format!(
                "{seg}?ticket={}",
                usher::ticket::sign(&unknown_ring, usher::ticket::Kind::Ticket, &claims("/vod/"))
            ),
            None,
            403,
            "unknown_key",
        ),
        (
            format!(
                "{seg}?ticket={}",
                usher::ticket::sign(&other_ring, usher::ticket::Kind::Ticket, &claims("/vod/"))
            ),
            None,
            403,
            "bad_signature",
        ),
        (
            format!("{seg}?ticket={}", mint_with("/vod/", |c| c.exp = now - 1)),
            None,
            403,
            "expired",
        ),
        (
            format!("{seg}?ticket={}", mint_with("/vod/", |c| c.nbf = now + 600)),
            None,
            403,
            "not_yet_valid",
        ),
        (
            format!("{seg}?ticket={}", mint("/vod/other/")),
            None,
            403,
            "out_of_scope",
        ),
        (
            format!(
                "{seg}?ticket={}",
                mint_with("/vod/", |c| c.dev =
                    Some(usher::device::hash_id("tv-1", None)))
            ),
            Some("phone-2"),
            403,
            "wrong_device",
        ),
        (
            format!(
                "{seg}?ticket={}",
                mint_with("/vod/", |c| c.ip = Some("203.0.113.0/24".parse().unwrap()))
            ),
            None,
            403,
            "ip_mismatch",
        ),
    ];
    for (url, device, status, reason) in cases {
        let headers: Vec<(&str, &str)> = device.map(|d| ("x-device-id", d)).into_iter().collect();
        let reply = get(&url, &headers).await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (status, reason),
            "{url}"
        );
    }
    assert!(
        origin.seen().is_empty(),
        "no refused request reached the origin"
    );
    // The bound ones work with their device and address.
    let ok = format!(
        "{seg}?ticket={}",
        mint_with("/vod/", |c| {
            c.dev = Some(usher::device::hash_id("tv-1", None));
            c.ip = Some("127.0.0.0/8".parse().unwrap());
        })
    );
    assert_eq!(get(&ok, &[("x-device-id", "tv-1")]).await.status, 200);
    let admin = usher.admin.clone().unwrap();
    let metrics = get(&format!("{admin}/metrics"), &[]).await.text();
    for reason in [
        "no_credential",
        "malformed",
        "unknown_key",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "out_of_scope",
        "wrong_device",
        "ip_mismatch",
    ] {
        assert!(
            metrics.contains(&format!("usher_denials_total{{reason=\"{reason}\"}} 1")),
            "{reason} counted"
        );
    }
}

#[tokio::test]
async fn session_tokens_open_segments_but_only_in_scope_and_on_their_device() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let ticket = mint("/vod/movie/");
    let reply = get(
        &format!(
            "{}/vod/movie/video/720.m3u8?ticket={ticket}&device=tv-1",
            usher.url
        ),
        &[],
    )
    .await;
    let token = reply.token_for("seg2.m4s").unwrap();
    let seg = format!("{}/vod/movie/video/seg2.m4s?token={token}", usher.url);
    assert_eq!(
        get(&seg, &[]).await.status,
        200,
        "the device travels inside the token"
    );
    let copied = get(&seg, &[("x-device-id", "laptop-9")]).await;
    assert_eq!(
        (copied.status.as_u16(), copied.reason().as_str()),
        (403, "session_shared")
    );
    // Players add their own parameters; the token check tolerates them.
    let with_hls = format!("{seg}&_HLS_msn=3&_HLS_part=1");
    assert_eq!(get(&with_hls, &[]).await.status, 200);
    assert_eq!(
        origin.seen().last().unwrap().target,
        "/vod/movie/video/seg2.m4s?_HLS_msn=3&_HLS_part=1"
    );
}

/// A trusted proxy that adds its own `X-Forwarded-For` line (HAProxy's `option forwardfor`)
/// beside the one a client wrote: usher judges the client by the whole chain, and the
/// origin hears that same chain, with usher's peer appended, not the client's line alone
/// (from which it would take the address the client made up). `X-Real-IP` names the
/// client usher judged, and the page's `Referer` goes without its query (its ticket).
#[tokio::test]
async fn a_chain_in_several_forwarding_lines_reaches_the_origin_whole() {
    let origin = origin_with_movie().await;
    let config = test_config(&origin.url(), "[shield]\nenabled = false\n").replace(
        "[listen]\n",
        "[listen]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    );
    let usher = Usher::start(&config, &[]);
    let ticket = mint_with("/vod/movie/", |c| {
        c.ip = Some("203.0.113.0/24".parse().unwrap())
    });
    let url = format!("{}/vod/movie/video/seg1.m4s?ticket={ticket}", usher.url);
    let reply = get(
        &url,
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=6.6.6.6"),
            ("forwarded", "for=203.0.113.7"),
            ("x-real-ip", "6.6.6.6"),
            (
                "referer",
                &format!("https://site.example/watch?ticket={ticket}"),
            ),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "usher names the client 203.0.113.7");
    let seen = origin.seen();
    let last = seen.last().unwrap();
    let all = |name: &str| -> Vec<String> {
        last.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(all("x-forwarded-for"), ["6.6.6.6, 203.0.113.7, 127.0.0.1"]);
    assert_eq!(all("x-real-ip"), ["203.0.113.7"], "the client usher judged");
    assert_eq!(
        all("referer"),
        ["https://site.example/watch"],
        "the page's ticket stays with usher"
    );
    assert_eq!(all("forwarded").len(), 1, "{:?}", all("forwarded"));
    assert!(
        all("forwarded")[0].starts_with("for=6.6.6.6, for=203.0.113.7, for=127.0.0.1;"),
        "{:?}",
        all("forwarded")
    );
}

#[tokio::test]
async fn ranges_pass_through() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let ticket = mint("/vod/movie/");
    let url = format!("{}/vod/movie/video/all.ts?ticket={ticket}", usher.url);
    let reply = get(&url, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.headers["content-range"], "bytes 1000-1999/2000");
    let expected: Vec<u8> = (1000..2000).map(|i| (i % 251) as u8).collect();
    assert_eq!(reply.body.as_ref(), expected.as_slice());
    assert_eq!(
        origin.seen().last().unwrap().headers["range"],
        "bytes=1000-1999"
    );
}

/// A GET that comes with a body (and says so in `Content-Length`) is sent upstream
/// without one and without saying so: otherwise the upstream would read the next request
/// on the pooled connection as this one's body, and answer a request smuggled into its
/// headers. The next request reaches the upstream as it was sent.
#[tokio::test]
async fn a_request_body_never_reaches_the_upstream_nor_its_length() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let smuggler = http::Request::get(format!("{}/public/trailer.ts", usher.url))
        .header("range", "bytes=0-9")
        .header("expect", "100-continue")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"hello",
        )))
        .unwrap();
    let reply = support::admin::send(smuggler).await;
    assert_eq!(reply.status, 206);
    let next = get(
        &format!("{}/public/trailer.ts", usher.url),
        &[
            ("range", "bytes=0-9"),
            ("x-a", "GET /vod/movie/keys/k1.key HTTP/1.1"),
        ],
    )
    .await;
    assert_eq!(next.status, 206);
    assert_eq!(next.body.len(), 10, "the trailer, not the key");
    let seen = origin.seen();
    assert_eq!(
        seen.len(),
        2,
        "{:?}",
        seen.iter().map(|s| &s.target).collect::<Vec<_>>()
    );
    for seen in &seen {
        assert_eq!(seen.target, "/public/trailer.ts");
        assert!(
            seen.headers.get("content-length").is_none(),
            "{:?}",
            seen.headers
        );
        assert!(seen.headers.get("expect").is_none(), "{:?}", seen.headers);
    }
}

#[tokio::test]
async fn paths_are_normalised_before_the_check_and_the_fetch() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let ticket = mint("/vod/movie/");
    let cases = [
        ("/vod/movie//video/./seg1.m4s", 200, ""),
        ("/vod/movie/video/%2e%2e/video/seg1.m4s", 200, ""),
        ("/vod/movie/../other/seg1.m4s", 403, "out_of_scope"),
        ("/vod/movie/%2e%2e/other/seg1.m4s", 403, "out_of_scope"),
        ("/vod/movie/%2e%2e/%2E%2E/etc/passwd", 404, "not_routed"),
        ("/vod/movie/..%2f..%2fetc/passwd", 400, "bad_path"),
        ("/vod/movie/%2e%2e/%2e%2e/%2e%2e/x", 400, "bad_path"),
        // In scope for usher, `..` to Tomcat or Jetty upstreams, or to one that decodes twice.
        ("/vod/movie/video/..;/../other/seg1.m4s", 400, "bad_path"),
        (
            "/vod/movie/video/%252e%252e/%252e%252e/other/seg1.m4s",
            400,
            "bad_path",
        ),
        // Public to usher, `/vod/movie/keys/k1.key` to an upstream that reads overlong
        // UTF-8 (`%C0%AE` as `.`).
        (
            "/public/%C0%AE%C0%AE/vod/movie/keys/k1.key",
            400,
            "bad_path",
        ),
    ];
    for (path, status, reason) in cases {
        let reply = get(&format!("{}{path}?ticket={ticket}", usher.url), &[]).await;
        assert_eq!(reply.status.as_u16(), status, "{path}");
        assert_eq!(reply.reason(), reason, "{path}");
    }
    for seen in origin.seen() {
        assert_eq!(seen.target, "/vod/movie/video/seg1.m4s");
    }
}

#[tokio::test]
async fn a_playlist_that_does_not_parse_is_502_never_passed_through() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let reply = get(
        &format!(
            "{}/vod/broken/index.m3u8?ticket={}",
            usher.url,
            mint("/vod/")
        ),
        &[],
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (502, "bad_playlist")
    );
    assert!(!reply.text().contains("not a playlist"));
}

#[tokio::test]
async fn origin_errors_pass_through_and_failures_are_502_or_504() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let ticket = mint("/vod/");
    let missing = get(
        &format!("{}/vod/movie/video/nope.ts?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    assert_eq!(missing.status, 404);
    let slow = get(
        &format!("{}/vod/movie/video/slow.ts?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    assert_eq!(
        (slow.status.as_u16(), slow.reason().as_str()),
        (504, "upstream_timeout")
    );

    // An origin that is not there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let usher = Usher::start(&test_config(&dead, ""), &[]);
    let reply = get(&format!("{}/vod/a.ts?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (502, "upstream_unreachable")
    );
}

#[tokio::test]
async fn public_paths_need_nothing_and_unrouted_paths_are_not_served() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    assert_eq!(
        get(&format!("{}/public/trailer.ts", usher.url), &[])
            .await
            .status,
        200
    );
    let reply = get(
        &format!("{}/etc/passwd?ticket={}", usher.url, mint("/")),
        &[],
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (404, "not_routed")
    );
    let reply = request("POST", &format!("{}/vod/movie/master.m3u8", usher.url), &[]).await;
    assert_eq!(reply.status, 405);
}

/// Under `cors_origins = ["*"]` (the default) every page may read; an answer to a request
/// without `Origin` whose upstream spoke CORS says `*` without credentials too, so a shared
/// cache in front that kept it hands every page what `*` allows, no more, no less.
#[tokio::test]
async fn under_any_origin_an_answer_without_origin_says_any_origin_without_credentials() {
    let origin = origin_with_movie().await;
    let extra = "[access]\nprotected = [\"/vod/\"]\ncors_origins = [\"*\"]\n";
    let usher = Usher::start(&test_config(&origin.url(), extra), &[]);
    let open = format!(
        "{}/vod/movie/video/open.ts?ticket={}",
        usher.url,
        mint("/vod/movie/")
    );
    let bare = get(&open, &[]).await;
    assert_eq!(bare.status, 200);
    assert_eq!(bare.headers["access-control-allow-origin"], "*");
    assert!(
        bare.headers
            .get("access-control-allow-credentials")
            .is_none(),
        "the origin's credentials, kept by a cache, would reach every page"
    );
    let page = get(&open, &[("origin", "https://any.example")]).await;
    assert_eq!(page.headers["access-control-allow-origin"], "*");
    assert!(page
        .headers
        .get("access-control-allow-credentials")
        .is_none());
}

#[tokio::test]
async fn browsers_on_allowed_origins_may_read_responses() {
    let origin = origin_with_movie().await;
    let usher = start(&origin);
    let url = format!(
        "{}/vod/movie/master.m3u8?ticket={}",
        usher.url,
        mint("/vod/movie/")
    );
    let allowed = get(&url, &[("origin", "https://player.example")]).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://player.example"
    );
    assert_eq!(
        allowed.headers["access-control-allow-credentials"], "true",
        "an origin listed by name may send cookies"
    );
    // The origin's own answer opens an object to every page: usher's list decides, on a
    // miss and on a hit.
    let open = format!(
        "{}/vod/movie/video/open.ts?ticket={}",
        usher.url,
        mint("/vod/movie/")
    );
    for url in [&url, &open, &open] {
        let denied = get(url, &[("origin", "https://evil.example")]).await;
        assert_eq!(denied.status, 200, "{url}");
        for name in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-expose-headers",
        ] {
            assert!(denied.headers.get(name).is_none(), "{url}: {name}");
        }
    }
    let allowed = get(&open, &[("origin", "https://player.example")]).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://player.example"
    );
    let refused = get(
        &format!("{}/vod/movie/master.m3u8", usher.url),
        &[("origin", "https://player.example")],
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.headers["access-control-allow-origin"], "https://player.example",
        "the player can read why"
    );
    let preflight = request(
        "OPTIONS",
        &url,
        &[
            ("origin", "https://player.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.headers["access-control-allow-credentials"],
        "true"
    );
    assert!(preflight.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    let allow_headers = preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allow_headers.contains("x-device-id") && allow_headers.contains("x-device-class"),
        "{allow_headers}"
    );
    // Whatever the request's origin, allowed, another or none, a cache in front must
    // keep answers apart by it.
    let segment = format!(
        "{}/vod/movie/video/seg1.m4s?ticket={}",
        usher.url,
        mint("/vod/movie/")
    );
    for headers in [
        vec![("origin", "https://player.example")],
        vec![("origin", "https://evil.example")],
        vec![],
    ] {
        let reply = get(&segment, &headers).await;
        assert_eq!(reply.status, 200);
        let vary: Vec<_> = reply.headers.get_all("vary").iter().collect();
        assert!(
            vary.iter().any(|v| v.to_str().unwrap().contains("Origin")),
            "{headers:?}: {vary:?}"
        );
    }
}
