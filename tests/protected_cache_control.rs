//! `access.protected_cache_control`: a protected object whose credential came in a cookie
//! or `Authorization` goes out private for shared caches (a CDN in front would otherwise
//! keep it under its bare URL and hand it to anyone), on every way it leaves usher: a
//! shield miss and hit, a 304, a HEAD, a range streamed past the shield, a directory
//! origin. Under a credential in the URL the origin's header goes out as it is; `origin`
//! keeps it always, `private` never.

mod support;

use std::collections::HashMap;

use support::*;

const MASTER: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/index.m3u8\n";
const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXT-X-ENDLIST\n";

/// The origin says every object may be kept by any cache for ten minutes.
async fn origin() -> Origin {
    let public = |object: Object| object.with_header("cache-control", "public, max-age=600");
    let mut objects = HashMap::new();
    for route in ["vod", "c", "free"] {
        objects.insert(format!("/{route}/master.m3u8"), public(playlist(MASTER)));
        objects.insert(format!("/{route}/v/index.m3u8"), public(playlist(MEDIA)));
        objects.insert(format!("/{route}/v/s1.ts"), public(segment(100)));
    }
    objects.insert(
        "/vod/v/s2.ts".to_owned(),
        segment(100)
            .with_header(
                "cache-control",
                "public, s-maxage=3600, max-age=600, proxy-revalidate, immutable",
            )
            .with_header("cdn-cache-control", "max-age=3600"),
    );
    spawn_origin(objects).await
}

/// `[access]` with `setting` (none: the default), `/free/` public, and `/c/` a
/// cookie-carrier route.
fn start(origin: &str, setting: Option<&str>) -> Usher {
    let setting = setting.map_or(String::new(), |s| {
        format!("protected_cache_control = \"{s}\"\n")
    });
    let extra = format!(
        "[access]\nprotected = [\"/\"]\npublic = [\"/free/\"]\n{setting}\
         [[routes]]\nprefix = \"/c/\"\ncarrier = \"cookie\"\n"
    );
    Usher::start(&test_config(origin, &extra), &[])
}

/// Every `Cache-Control` line of `reply`.
fn cache_control(reply: &Reply) -> Vec<&str> {
    reply
        .headers
        .get_all("cache-control")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// The shield's word on `reply`.
fn served(reply: &Reply) -> &str {
    reply.headers["x-usher-cache"].to_str().unwrap()
}

#[tokio::test]
async fn a_segment_opened_by_a_cookie_or_bearer_goes_out_private_however_it_is_served() {
    let origin = origin().await;
    let usher = start(&origin.url(), None);
    let ticket = mint("/vod/");
    let bearer = format!("Bearer {ticket}");
    let cookie = format!("usher_ticket={ticket}");
    let url = format!("{}/vod/v/s1.ts", usher.url);

    let miss = get(&url, &[("authorization", &bearer)]).await;
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(served(&miss), "miss");
    assert_eq!(cache_control(&miss), ["private, max-age=600"]);
    let hit = get(&url, &[("cookie", &cookie)]).await;
    assert_eq!((hit.status.as_u16(), served(&hit)), (200, "hit"));
    assert_eq!(cache_control(&hit), ["private, max-age=600"]);
    let revalidated = get(&url, &[("cookie", &cookie), ("if-none-match", "\"v1\"")]).await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(cache_control(&revalidated), ["private, max-age=600"]);
    let head = request("HEAD", &url, &[("authorization", &bearer)]).await;
    assert_eq!((head.status.as_u16(), served(&head)), (200, "hit"));
    assert_eq!(cache_control(&head), ["private, max-age=600"]);
    // A range passes by the shield, streamed from the origin, whose 206 says nothing.
    let range = get(&url, &[("authorization", &bearer), ("range", "bytes=0-9")]).await;
    assert_eq!(range.status, 206);
    assert!(!range.headers.contains_key("x-usher-cache"));
    assert_eq!(cache_control(&range), ["private"]);

    // What speaks to shared caches goes; what the player's cache reads stays.
    let s2 = format!("{}/vod/v/s2.ts", usher.url);
    for reply in [
        get(&s2, &[("cookie", &cookie)]).await,
        get(&s2, &[("cookie", &cookie)]).await,
    ] {
        assert_eq!(reply.status, 200);
        assert_eq!(cache_control(&reply), ["private, max-age=600, immutable"]);
        assert!(!reply.headers.contains_key("cdn-cache-control"));
    }

    // The same objects under a ticket in the query: a shared cache keys them with it.
    let query = format!("{url}?ticket={ticket}");
    let hit = get(&query, &[]).await;
    assert_eq!((hit.status.as_u16(), served(&hit)), (200, "hit"));
    assert_eq!(cache_control(&hit), ["public, max-age=600"]);
    let range = get(&query, &[("range", "bytes=0-9")]).await;
    assert_eq!(range.status, 206);
    assert!(
        cache_control(&range).is_empty(),
        "the origin's 206 said none"
    );
    // And under the session token the playlist hands the player, in the query.
    let playlist = format!("{}/vod/v/index.m3u8?ticket={ticket}", usher.url);
    let segment = first_segment(&playlist, &get(&playlist, &[]).await);
    assert!(segment.contains("?token="), "{segment}");
    let hit = get(&segment, &[]).await;
    assert_eq!((hit.status.as_u16(), served(&hit)), (200, "hit"));
    assert_eq!(cache_control(&hit), ["public, max-age=600"]);
    let s2 = get(&format!("{s2}?ticket={ticket}"), &[]).await;
    assert_eq!(
        cache_control(&s2),
        ["public, s-maxage=3600, max-age=600, proxy-revalidate, immutable"]
    );
    assert_eq!(s2.headers["cdn-cache-control"], "max-age=3600");

    // A rewritten playlist is private, no-store whatever carried the ticket.
    for headers in [[("authorization", bearer.as_str())], [("cookie", &cookie)]] {
        let master = get(&format!("{}/vod/master.m3u8", usher.url), &headers).await;
        assert_eq!(master.status, 200, "{}", master.text());
        assert_eq!(cache_control(&master), ["private, no-store"]);
    }
}

/// The cookie carrier: the session token lives in usher's cookie, and the playlist URIs
/// hold none. A ticket in the query that is not what opened the request (the session
/// cookie comes first) does not make the answer the origin's.
#[tokio::test]
async fn a_segment_under_the_session_cookie_goes_out_private() {
    let origin = origin().await;
    let usher = start(&origin.url(), None);
    let master = get(
        &format!("{}/c/master.m3u8?ticket={}", usher.url, mint("/c/")),
        &[],
    )
    .await;
    assert_eq!(master.status, 200, "{}", master.text());
    let session = master
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .find(|pair| pair.starts_with("usher_session="))
        .expect("the session cookie is set");
    let url = format!("{}/c/v/s1.ts", usher.url);
    for (url, outcome) in [
        (url.clone(), "miss"),
        (url.clone(), "hit"),
        (format!("{url}?ticket=not-a-ticket"), "hit"),
    ] {
        let reply = get(&url, &[("cookie", session)]).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
        assert_eq!(served(&reply), outcome);
        assert_eq!(cache_control(&reply), ["private, max-age=600"], "{url}");
    }
}

#[tokio::test]
async fn origin_keeps_the_origins_header_and_private_makes_every_protected_answer_private() {
    let origin = origin().await;
    let ticket = mint("/vod/");
    let cookie = format!("usher_ticket={ticket}");

    let usher = start(&origin.url(), Some("origin"));
    let url = format!("{}/vod/v/s1.ts", usher.url);
    for outcome in ["miss", "hit"] {
        let reply = get(&url, &[("cookie", &cookie)]).await;
        assert_eq!((reply.status.as_u16(), served(&reply)), (200, outcome));
        assert_eq!(cache_control(&reply), ["public, max-age=600"]);
    }
    drop(usher);

    let usher = start(&origin.url(), Some("private"));
    let url = format!("{}/vod/v/s1.ts?ticket={ticket}", usher.url);
    for outcome in ["miss", "hit"] {
        let reply = get(&url, &[]).await;
        assert_eq!((reply.status.as_u16(), served(&reply)), (200, outcome));
        assert_eq!(cache_control(&reply), ["private, max-age=600"]);
    }
    let revalidated = get(&url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(cache_control(&revalidated), ["private, max-age=600"]);
    // A public path is nobody's to protect: the origin's header, cookie or not.
    let free = format!("{}/free/v/s1.ts", usher.url);
    for outcome in ["miss", "hit"] {
        let reply = get(&free, &[("cookie", &cookie)]).await;
        assert_eq!((reply.status.as_u16(), served(&reply)), (200, outcome));
        assert_eq!(cache_control(&reply), ["public, max-age=600"]);
    }
}

/// A directory origin sends no `Cache-Control`: a segment opened by a cookie gets
/// `private` (kept in a file and sent with `sendfile` on a hit), one opened by a ticket in
/// the query none.
#[tokio::test]
async fn a_directory_origins_segment_under_a_cookie_goes_out_private() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("vod")).unwrap();
    std::fs::write(dir.path().join("vod/s1.ts"), vec![7u8; 100_000]).unwrap();
    let usher = start(dir.path().to_str().unwrap(), None);
    let ticket = mint("/vod/");
    let url = format!("{}/vod/s1.ts", usher.url);
    let cookie = format!("usher_ticket={ticket}");
    for outcome in ["miss", "hit"] {
        let reply = get(&url, &[("cookie", &cookie)]).await;
        assert_eq!((reply.status.as_u16(), served(&reply)), (200, outcome));
        assert_eq!(reply.body.len(), 100_000);
        assert_eq!(cache_control(&reply), ["private"]);
    }
    let range = get(&url, &[("cookie", &cookie), ("range", "bytes=0-9")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(cache_control(&range), ["private"]);
    let reply = get(&format!("{url}?ticket={ticket}"), &[]).await;
    assert_eq!((reply.status.as_u16(), served(&reply)), (200, "hit"));
    assert!(cache_control(&reply).is_empty());
}

/// A rewritten playlist holds the viewer's session token: a header that instructs shared
/// caches over its `private, no-store` goes too, whether the shield fetched it (a miss) or
/// had it (a hit), and whatever carried the ticket.
#[tokio::test]
async fn a_rewritten_playlist_keeps_no_header_that_lets_a_shared_cache_keep_it() {
    let mut objects = HashMap::new();
    objects.insert(
        "/vod/master.m3u8".to_owned(),
        playlist(MASTER)
            .with_header("cache-control", "public, max-age=600")
            .with_header("cdn-cache-control", "max-age=600")
            .with_header("surrogate-control", "max-age=600"),
    );
    let origin = spawn_origin(objects).await;
    let usher = start(&origin.url(), None);
    let ticket = mint("/vod/");
    let bearer = format!("Bearer {ticket}");
    let url = format!("{}/vod/master.m3u8", usher.url);
    for (url, headers) in [
        (url.clone(), vec![("authorization", bearer.as_str())]),
        (url.clone(), vec![("authorization", bearer.as_str())]),
        (format!("{url}?ticket={ticket}"), vec![]),
    ] {
        let reply = get(&url, &headers).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(cache_control(&reply), ["private, no-store"]);
        for name in ["cdn-cache-control", "surrogate-control"] {
            assert!(!reply.headers.contains_key(name), "{url}: {name}");
        }
    }
}

/// a stale session token in the query (refused) beside a ticket in
/// `Authorization`: the request is opened by the header's ticket, yet its answer goes out
/// with the origin's `public` header, for a CDN to keep under the URL of the refused token.
#[tokio::test]
async fn a_bearer_ticket_beside_a_refused_query_token_goes_out_private() {
    let origin = origin().await;
    let usher = start(&origin.url(), None);
    let ticket = mint("/vod/");
    let bearer = format!("Bearer {ticket}");
    let mut stale = claims("/vod/");
    stale.sid = Some("a-session-long-over".into());
    stale.exp = usher::clock::unix_now() - 3600;
    stale.cap = stale.exp;
    let stale = usher::ticket::sign(&ring(), usher::ticket::Kind::Session, &stale);
    let url = format!("{}/vod/v/s1.ts?token={stale}", usher.url);
    let reply = get(&url, &[("authorization", &bearer)]).await;
    assert!(
        reply.status != 200 || cache_control(&reply) == ["private, max-age=600"],
        "{} {:?}",
        reply.status,
        cache_control(&reply)
    );
}
