//! Issue 11 item 13b: a reload says which changed settings need a restart instead of
//! ignoring them silently, and still applies the rest.

mod support;

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use support::*;

const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n";
const NEW_KEY: &str = "[[token.keys]]\nid = \"rotated-2027\"\nsecret = \"a-rotated-secret-that-is-long-enough-to-use\"\n";

async fn post_reload(usher: &Usher) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{}/reload", usher.admin.as_ref().unwrap()))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = read(client.request(request).await.unwrap()).await;
    (
        reply.status.as_u16(),
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn item13b_reload_names_sessions_idle_timeout_as_needing_a_restart_and_applies_the_key() {
    let mut objects = HashMap::new();
    objects.insert("/live/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/live/s1.ts".to_owned(), segment(100));
    let origin = spawn_origin(objects).await;
    let config = test_config(&origin.url(), "[sessions]\nidle_timeout = \"60s\"\n");
    let usher = Usher::start(&config, &[]);
    let playlist_url = format!("{}/live/index.m3u8?ticket={}", usher.url, mint("/live/"));
    let first = get(&playlist_url, &[]).await;
    assert!(
        first.text().contains("token=s2.test-key."),
        "{}",
        first.text()
    );

    // Nothing changed: nothing to restart for.
    assert_eq!(
        post_reload(&usher).await,
        (200, json!({"status": "reloaded", "restart_required": []}))
    );

    let changed = config
        .replace("idle_timeout = \"60s\"", "idle_timeout = \"90s\"")
        .replace(
            "signing_key = \"test-key\"",
            "signing_key = \"rotated-2027\"",
        )
        + NEW_KEY;
    std::fs::write(usher.config_path(), &changed).unwrap();
    let (status, answer) = post_reload(&usher).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["restart_required"],
        json!(["sessions.idle_timeout"]),
        "{answer}"
    );
    let after = get(&playlist_url, &[]).await;
    assert_eq!(after.status, 200);
    assert!(
        after.text().contains("token=s2.rotated-2027."),
        "the new signing key took effect: {}",
        after.text()
    );

    // A listener change is named too, by its dotted key, and the idle timeout still waits.
    let moved = changed.replace("drain_timeout = \"5s\"", "drain_timeout = \"6s\"");
    std::fs::write(usher.config_path(), &moved).unwrap();
    let (status, answer) = post_reload(&usher).await;
    assert_eq!(status, 200, "{answer}");
    let mut pending: Vec<&str> = answer["restart_required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    pending.sort_unstable();
    assert_eq!(
        pending,
        ["listen.drain_timeout", "sessions.idle_timeout"],
        "a change still waiting for a restart stays named: {answer}"
    );
}
