//! What viewers get from the shield: no hop-by-hop headers, a bad gateway (and nothing
//! kept) for an answer with both framings, a kept chunked object's length on HEAD, the
//! origin's gzipped bytes as it sent them, revalidations answered 304 from the copy
//! without counting bytes served, and a repeated query parameter's order kept in the key.

use crate::support::*;
use crate::{pattern, Script, ScriptedOrigin};

#[tokio::test]
async fn hop_by_hop_headers_from_the_origin_reach_no_viewer() {
    let origin = ScriptedOrigin::start().await;
    origin.script(
        "/vod/h.ts",
        Script::segment(b"segment")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept"),
    );
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    let url = format!("{}/vod/h.ts?ticket={}", usher.url, mint("/vod/"));
    // Filled by the shield, served from it, and (a range) fetched past it.
    let range = [("range", "bytes=0-3")];
    for (headers, cache) in [
        (&range[..0], Some("miss")),
        (&range[..0], Some("hit")),
        (&range[..], None),
    ] {
        let reply = get(&url, headers).await;
        assert_eq!(reply.status, 200);
        let header = |name: &str| reply.headers.get(name).map(|v| v.to_str().unwrap());
        assert_eq!(header("x-usher-cache"), cache);
        assert_eq!(header("x-hop"), None, "named by Connection: {cache:?}");
        assert_eq!(header("keep-alive"), None, "{cache:?}");
        assert!(
            !header("connection").unwrap_or("").contains("x-hop"),
            "{cache:?}"
        );
        assert_eq!(header("x-end-to-end"), Some("kept"), "{cache:?}");
    }
    assert_eq!(origin.hits("/vod/h.ts"), 2, "the miss and the range");
}

/// An origin that answers with both `Content-Length` and `Transfer-Encoding` (a chunked
/// body of 5 bytes under a length of 1000): the viewer gets 502 `upstream_error`, as from
/// nginx, never a body that is not the length it is announced with, and nothing is kept:
/// the next viewer gets the whole object from the origin.
#[tokio::test]
async fn an_answer_with_both_framings_is_a_bad_gateway_and_not_kept() {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 1000\r\nconnection: close\r\n";
    let short = format!("{head}transfer-encoding: chunked\r\n\r\n5\r\nshort\r\n0\r\n\r\n");
    let whole = [b'w'; 1000];
    let (origin, served) = raw_origin(vec![
        short.into(),
        [format!("{head}\r\n").as_bytes(), &whole].concat(),
    ])
    .await;
    let usher = Usher::start(&test_config(&origin, ""), &[]);
    let url = format!("{}/vod/s1.ts?ticket={}", usher.url, mint("/vod/"));

    let first = get(&url, &[]).await;
    assert_eq!(
        (first.status.as_u16(), first.reason()),
        (502, "upstream_error".into())
    );
    let next = get(&url, &[]).await;
    assert_eq!(
        (
            next.status.as_u16(),
            next.headers["x-usher-cache"].to_str().unwrap(),
            &next.body[..]
        ),
        (200, "miss", &whole[..]),
        "the next viewer gets the whole object, fetched again"
    );
    assert_eq!(served.lock().unwrap().len(), 2);
}

/// An object the origin sent chunked (no length announced): once kept, a HEAD answered
/// from the shield says its length, as the GET's body has it.
#[tokio::test]
async fn a_kept_chunked_object_has_its_length_on_head() {
    let chunked = "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let (origin, served) = raw_origin(vec![chunked.into()]).await;
    let usher = Usher::start(&test_config(&origin, ""), &[]);
    let url = format!("{}/vod/s1.ts?ticket={}", usher.url, mint("/vod/"));
    let first = get(&url, &[]).await;
    assert_eq!(
        (first.status.as_u16(), &first.body[..]),
        (200, &b"hello world"[..])
    );
    let head = request("HEAD", &url, &[]).await;
    assert_eq!(head.headers["x-usher-cache"], "hit");
    assert_eq!(head.headers["content-length"], "11");
    assert_eq!(served.lock().unwrap().len(), 1);
}

/// A segment the origin gzips although the shield asks for `identity` (an object store
/// serving a file stored gzipped): kept as it came and served so to every viewer, one
/// that sent no `Accept-Encoding` or `identity` too, which is what that origin answers
/// each of them with the shield off: the shield changes no viewer's bytes.
#[tokio::test]
async fn a_segment_the_origin_gzips_anyway_reaches_viewers_as_the_origin_sends_it() {
    use std::io::{Read, Write};
    let segment = pattern(10_000, 3);
    let mut packed = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    packed.write_all(&segment).unwrap();
    let gzipped = packed.finish().unwrap();
    let answer = [
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-encoding: gzip\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            gzipped.len()
        )
        .into_bytes(),
        gzipped.clone(),
    ]
    .concat();
    let viewers: [&[(&str, &str)]; 3] = [
        &[],
        &[("accept-encoding", "identity")],
        &[("accept-encoding", "gzip")],
    ];
    for shield in ["", "[shield]\nenabled = false\n"] {
        let (origin, served) = raw_origin(vec![answer.clone(); 3]).await;
        let usher = Usher::start(&test_config(&origin, shield), &[]);
        let url = format!("{}/vod/s1.ts?ticket={}", usher.url, mint("/vod/"));
        for headers in viewers {
            let reply = get(&url, headers).await;
            assert_eq!(reply.status, 200, "{shield:?} {headers:?}");
            assert_eq!(
                reply.headers["content-encoding"], "gzip",
                "{shield:?} {headers:?}"
            );
            assert_eq!(reply.headers["content-length"], gzipped.len().to_string());
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&reply.body[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert!(plain == segment, "{shield:?} {headers:?}");
        }
        let heads = served.lock().unwrap().clone();
        if shield.is_empty() {
            assert_eq!(heads.len(), 1, "kept: one fetch for the three viewers");
            assert!(
                heads[0]
                    .to_ascii_lowercase()
                    .contains("accept-encoding: identity"),
                "{heads:?}"
            );
        } else {
            assert_eq!(heads.len(), 3, "each viewer's own request");
        }
    }
}

/// A CDN in front revalidating a segment it holds: `If-None-Match` with the copy's entity
/// tag, or `If-Modified-Since` its date, is answered 304 from the shield's copy, with
/// the validators and no body; another tag gets the whole object. The origin is asked
/// once.
#[tokio::test]
async fn revalidations_are_answered_not_modified_from_the_copy() {
    let answer = "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 5\r\netag: \"v1\"\r\nlast-modified: Mon, 07 Dec 2026 08:00:00 GMT\r\ncache-control: max-age=60\r\nconnection: close\r\n\r\nhello";
    let (origin, served) = raw_origin(vec![answer.into()]).await;
    let usher = Usher::start(&test_config(&origin, ""), &[]);
    let url = format!("{}/vod/s1.ts?ticket={}", usher.url, mint("/vod/"));
    assert_eq!(&get(&url, &[]).await.body[..], b"hello");
    for condition in [
        ("if-none-match", "\"v0\", \"v1\""),
        ("if-none-match", "W/\"v1\""),
        ("if-modified-since", "Mon, 07 Dec 2026 08:00:00 GMT"),
    ] {
        let reply = get(&url, &[condition]).await;
        assert_eq!(reply.status, 304, "{condition:?}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.headers["etag"], "\"v1\"");
        assert_eq!(reply.headers["cache-control"], "max-age=60");
        assert_eq!(reply.headers["x-usher-cache"], "hit");
        assert!(!reply.headers.contains_key("content-type"));
    }
    let changed = get(&url, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(
        (changed.status.as_u16(), &changed.body[..]),
        (200, &b"hello"[..])
    );
    let older = get(
        &url,
        &[("if-modified-since", "Mon, 07 Dec 2026 07:00:00 GMT")],
    )
    .await;
    assert_eq!(older.status, 200);
    assert_eq!(served.lock().unwrap().len(), 1);
}

/// A 304 answered from the copy sends no body: `usher_cache_bytes_total{source="cache"}`
/// (bytes served from the cache) does not count the copy's length for it.
#[tokio::test]
async fn a_not_modified_answer_counts_no_bytes_served() {
    let answer = "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 5\r\netag: \"v1\"\r\ncache-control: max-age=60\r\nconnection: close\r\n\r\nhello";
    let (origin, _served) = raw_origin(vec![answer.into()]).await;
    let usher = Usher::start(&test_config(&origin, ""), &[]);
    let url = format!("{}/vod/s1.ts?ticket={}", usher.url, mint("/vod/"));
    assert_eq!(&get(&url, &[]).await.body[..], b"hello");
    assert_eq!(&get(&url, &[]).await.body[..], b"hello");
    let before = metric(&usher, "usher_cache_bytes_total{source=\"cache\"}").await;
    for _ in 0..3 {
        let reply = get(&url, &[("if-none-match", "\"v1\"")]).await;
        assert_eq!(reply.status, 304);
        assert!(reply.body.is_empty());
    }
    let after = metric(&usher, "usher_cache_bytes_total{source=\"cache\"}").await;
    assert_eq!(after, before, "three 304s sent no body bytes");
}

/// A parameter the packager repeats is read in its order by the origin (the first value,
/// the last, a list): `?v=1&v=2` and `?v=2&v=1` are two objects, each viewer gets the one
/// it asked for, not the other's copy. Other parameters in another order are one object.
#[tokio::test]
async fn a_repeated_query_parameter_in_another_order_is_another_object() {
    let answer = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let (origin, heads) = raw_origin(vec![answer("first-is-1"), answer("first-is-2")]).await;
    let usher = Usher::start(&test_config(&origin, ""), &[]);
    let ticket = mint("/vod/");
    let url = |query: &str| format!("{}/vod/r.ts?{query}&ticket={ticket}", usher.url);
    let one = get(&url("v=1&v=2&b=0"), &[]).await;
    assert_eq!(
        (one.status.as_u16(), one.text()),
        (200, "first-is-1".into())
    );
    let hit = get(&url("b=0&v=1&v=2"), &[]).await;
    assert_eq!(hit.headers["x-usher-cache"], "hit", "the same object");
    assert_eq!(hit.text(), "first-is-1");
    let two = get(&url("v=2&v=1&b=0"), &[]).await;
    assert_eq!(
        (two.status.as_u16(), two.text()),
        (200, "first-is-2".into()),
        "{:?}",
        two.headers
    );
    assert_eq!(two.headers["x-usher-cache"], "miss");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2);
    assert!(
        heads[1].starts_with("GET /vod/r.ts?v=2&v=1&b=0 "),
        "{}",
        heads[1]
    );
}
