//! How usher reads an upstream answer's framing, through a real usher process and an
//! origin that writes raw bytes: an answer with both `Content-Length` and
//! `Transfer-Encoding` is a 502 `upstream_error` only when it carries a body
//! (tests/shield/answers.rs shows that one); the answer to a HEAD, and a 304, have no body, so
//! their framing headers cannot disagree with it and they are passed on.

mod support;

use support::*;

/// The head of an origin's answer with `status` and both framings: the length a GET's
/// body would have beside `Transfer-Encoding: chunked`, as some origins send for HEAD.
fn both_framings(status: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: video/mp2t\r\ncontent-length: 1000\r\n\
         transfer-encoding: chunked\r\netag: \"v1\"\r\nconnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// usher without its shield (so the viewer's method and conditions go to the origin as
/// they came) in front of an origin that answers `answer`; the viewer's `method` on a
/// segment with `headers`, and the request line the origin read.
async fn through_usher(method: &str, headers: &[(&str, &str)], answer: Vec<u8>) -> (Reply, String) {
    let (origin, heads) = raw_origin(vec![answer]).await;
    let usher = Usher::start(&test_config(&origin, "[shield]\nenabled = false\n"), &[]);
    let url = format!("{}/vod/s1.ts?ticket={}", usher.url, mint("/vod/"));
    let reply = request(method, &url, headers).await;
    let line = heads
        .lock()
        .unwrap()
        .first()
        .map_or_else(String::new, |head| {
            head.lines().next().unwrap_or_default().to_owned()
        });
    (reply, line)
}

/// A HEAD answered with both framings: no body follows, so there is nothing they could
/// frame wrongly; the viewer gets the origin's 200 and its length, not 502.
#[tokio::test]
async fn a_head_answered_with_both_framings_is_passed_on() {
    let (reply, line) = through_usher("HEAD", &[], both_framings("200 OK")).await;
    assert!(
        line.starts_with("HEAD /vod/s1.ts"),
        "the origin read {line:?}"
    );
    assert_eq!(
        (reply.status.as_u16(), reply.reason()),
        (200, String::new()),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.headers["content-length"], "1000");
    assert!(reply.body.is_empty());
}

/// A revalidation the origin answers 304 with both framings: a 304 has no body either,
/// so the viewer (a CDN in front) gets the 304 and keeps its copy.
#[tokio::test]
async fn a_not_modified_answered_with_both_framings_is_passed_on() {
    let (reply, line) = through_usher(
        "GET",
        &[("if-none-match", "\"v1\"")],
        both_framings("304 Not Modified"),
    )
    .await;
    assert!(
        line.starts_with("GET /vod/s1.ts"),
        "the origin read {line:?}"
    );
    assert_eq!(
        (reply.status.as_u16(), reply.reason()),
        (304, String::new()),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.headers["etag"], "\"v1\"");
    assert!(reply.body.is_empty());
}
