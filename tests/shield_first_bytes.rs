//! An origin answer whose body breaks off (or never starts within the server's total
//! timeout) before its first bytes is a failed exchange with that server, through a real
//! usher and real origins: the shield's fetch goes on to the group's next server, the
//! failure counts against the server's health and in `usher_upstream_failures_total`, and
//! a total timeout with no other server left is a 504.

mod support;

use std::collections::HashMap;

use support::*;

const PATH: &str = "/vod/a/s1.ts";

/// The head of a 200 whose body is chunked.
const CHUNKED: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ntransfer-encoding: chunked\r\n\r\n";

/// The head of a 200 whose body is 1000 bytes long.
const WITH_LENGTH: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 1000\r\n\r\n";

/// A usher with its shield in front of `primary` (one failure marks a server down, for
/// ten minutes), `fallback` after it when given, `timeouts` replacing the test config's
/// first-byte timeout; and the URL a viewer asks for [`PATH`] at.
fn usher(primary: &str, fallback: Option<&str>, timeouts: &str) -> (Usher, String) {
    let fallbacks = fallback.map_or(String::new(), |f| format!("fallbacks = [\"{f}\"]\n"));
    let config = test_config(
        primary,
        "[upstream.health]\nfailures = 1\ncool_off = \"10m\"\n",
    )
    .replace("timeout = \"2s\"\n", &format!("{timeouts}{fallbacks}"));
    let usher = Usher::start(&config, &[]);
    let url = format!("{}{PATH}?ticket={}", usher.url, mint("/vod/"));
    (usher, url)
}

/// A healthy origin serving `segment(1000)` at [`PATH`].
async fn healthy() -> Origin {
    spawn_origin(HashMap::from([(PATH.to_owned(), segment(1000))])).await
}

/// `usher_upstream_failures_total` for `server` and `reason`.
async fn failures(usher: &Usher, server: &str, reason: &str) -> f64 {
    let series =
        format!("usher_upstream_failures_total{{reason=\"{reason}\",upstream=\"{server}\"}}");
    metric(usher, &series).await
}

/// A primary whose answer breaks off before its first body bytes (its head sent, then the
/// connection closed), chunked or of an announced length, and a healthy fallback: the
/// viewer gets the fallback's bytes, and the primary's failure is counted and marks it
/// down (one failure is the threshold here).
#[tokio::test]
async fn a_body_that_breaks_before_its_first_bytes_goes_to_the_next_server() {
    for broken in [CHUNKED, WITH_LENGTH] {
        let (primary, heads) = raw_origin(vec![broken.into()]).await;
        let fallback = healthy().await;
        let (usher, url) = usher(&primary, Some(&fallback.url()), "timeout = \"2s\"\n");

        let reply = get(&url, &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.len()),
            (200, 1000),
            "{broken:?}: {:?} {}",
            reply.headers,
            reply.reason()
        );
        assert_eq!(reply.body, segment(1000).body, "the fallback's bytes");
        assert_eq!(heads.lock().unwrap().len(), 1, "the primary was asked once");
        assert_eq!(fallback.seen().len(), 1, "then the fallback");
        assert_eq!(failures(&usher, &primary, "body_broken").await, 1.0);
        assert_eq!(
            metric(
                &usher,
                &format!("usher_upstream_up{{upstream=\"{primary}\"}}")
            )
            .await,
            0.0,
            "the failure counted against the primary's health"
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
}

/// A server whose head came but whose body has not started when its total timeout
/// passes failed as one that gave no head in time: with no server left and no stale
/// copy, a 504 `upstream_timeout` (not a 502, nor a 200 cut short), whether its length
/// was announced or not; with a fallback, the fallback's bytes.
#[tokio::test]
async fn a_total_timeout_before_the_first_bytes_is_a_504_or_the_next_server() {
    let timeouts = "timeout = \"1s\"\ntotal_timeout = \"1s\"\n";
    for stalled in [CHUNKED, WITH_LENGTH] {
        let (primary, asked) = stalled_origin(stalled).await;
        let (usher, url) = usher(&primary, None, timeouts);
        let reply = get(&url, &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason()),
            (504, "upstream_timeout".to_owned()),
            "{stalled:?}: {:?}",
            reply.headers
        );
        assert_eq!(*asked.lock().unwrap(), 1);
        assert_eq!(failures(&usher, &primary, "body_timeout").await, 1.0);
        assert_eq!(
            metric(
                &usher,
                "usher_upstream_errors_total{error=\"upstream_timeout\"}"
            )
            .await,
            1.0
        );
    }

    let (primary, _asked) = stalled_origin(CHUNKED).await;
    let fallback = healthy().await;
    let (usher, url) = usher(&primary, Some(&fallback.url()), timeouts);
    let reply = get(&url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.reason());
    assert_eq!(reply.body, segment(1000).body, "the fallback's bytes");
    assert_eq!(failures(&usher, &primary, "body_timeout").await, 1.0);
}
