//! Hot reload of token settings (SIGHUP and `POST /reload`): a key rotation with overlap
//! keeps every viewer playing, removing the old key retires its tickets, and a bad config
//! changes nothing and is reported.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use support::*;

const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n";
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

/// The session token of a playlist response.
fn token_of(reply: &Reply) -> String {
    reply.token_for("s1.ts").expect("a tokenized segment")
}

#[tokio::test]
async fn rotating_the_signing_key_twice_drops_no_viewer() {
    let mut objects = HashMap::new();
    objects.insert("/live/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/live/s1.ts".to_owned(), segment(100));
    let origin = spawn_origin(objects).await;
    let config = test_config(&origin.url(), "");
    let usher = Usher::start(&config, &[]);
    let playlist_url = format!("{}/live/index.m3u8", usher.url);
    let old_ticket = mint("/live/");
    let first = get(&format!("{playlist_url}?ticket={old_ticket}"), &[]).await;
    let old_session = token_of(&first);
    assert!(old_session.starts_with("s2.test-key."));

    // Rotation 1: add the new key and sign with it; the old one stays accepted.
    let rotated = config.replace(
        "signing_key = \"test-key\"",
        "signing_key = \"rotated-2027\"",
    ) + NEW_KEY;
    std::fs::write(usher.config_path(), &rotated).unwrap();
    assert_eq!(post_reload(&usher).await.0, 200);
    let after = get(&format!("{playlist_url}?token={old_session}"), &[]).await;
    assert_eq!(after.status, 200, "a session in progress is not cut");
    let new_session = token_of(&after);
    assert!(
        new_session.starts_with("s2.rotated-2027."),
        "new tokens use the new key"
    );
    assert_eq!(
        get(&format!("{playlist_url}?ticket={old_ticket}"), &[])
            .await
            .status,
        200,
        "old tickets keep working"
    );

    // Rotation 2, by SIGHUP: retire the old key.
    let retired = rotated.replace(
        &format!("[[token.keys]]\nid = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n"),
        "",
    );
    assert_ne!(retired, rotated);
    std::fs::write(usher.config_path(), &retired).unwrap();
    usher.signal("HUP");
    // The signal is handled asynchronously: wait for the reload counter, bounded.
    let started = Instant::now();
    while config_reloads(&usher, "ok").await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGHUP reload applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = get(&format!("{playlist_url}?ticket={old_ticket}"), &[]).await;
    assert_eq!(
        (refused.status.as_u16(), refused.reason().as_str()),
        (403, "unknown_key"),
        "a retired key opens no ticket"
    );
    let forged = mint_with("/live/", |c| c.sub = "someone-else".to_owned());
    assert_eq!(
        get(&format!("{playlist_url}?ticket={forged}"), &[])
            .await
            .reason(),
        "unknown_key"
    );
    // A session token the retired key signed before it went (a player's playlist URI from
    // its master) plays on until it expires or its session ends.
    let kept = get(&format!("{playlist_url}?token={old_session}"), &[]).await;
    assert_eq!(
        kept.status, 200,
        "a session in progress is not cut by the retirement"
    );
    assert!(
        token_of(&kept).starts_with("s2.rotated-2027."),
        "what it is given is signed with the new key"
    );
    // What the retired key signs now (a longer life than any token it signed before)
    // opens nothing.
    let mut late = claims("/live/");
    late.exp = usher::clock::unix_now() + 86_400;
    let late = usher::ticket::sign(&ring(), usher::ticket::Kind::Session, &late);
    let refused = get(&format!("{playlist_url}?token={late}"), &[]).await;
    assert_eq!(
        (refused.status.as_u16(), refused.reason().as_str()),
        (403, "unknown_key")
    );
    let still = get(&format!("{playlist_url}?token={new_session}"), &[]).await;
    assert_eq!(
        still.status, 200,
        "the viewer who reloaded after rotation 1 keeps playing"
    );
    let segment = format!("{}/live/s1.ts?token={}", usher.url, token_of(&still));
    assert_eq!(get(&segment, &[]).await.status, 200);
}

#[tokio::test]
async fn a_bad_config_changes_nothing_and_is_reported() {
    let mut objects = HashMap::new();
    objects.insert("/live/index.m3u8".to_owned(), playlist(MEDIA));
    let origin = spawn_origin(objects).await;
    let config = test_config(&origin.url(), "");
    let usher = Usher::start(&config, &[]);
    let url = format!("{}/live/index.m3u8?ticket={}", usher.url, mint("/live/"));
    for bad in [
        config.replace("signing_key = \"test-key\"", "signing_key = \"missing\""),
        config.replace("clock_skew = \"0s\"", "clock_skew = \"forever\""),
        format!("{config}\n[token.nonsense"),
    ] {
        std::fs::write(usher.config_path(), &bad).unwrap();
        let (status, answer) = post_reload(&usher).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "config_rejected");
        assert!(!answer["problems"].as_array().unwrap().is_empty());
        assert_eq!(
            get(&url, &[]).await.status,
            200,
            "the old config keeps serving"
        );
    }
    assert_eq!(config_reloads(&usher, "rejected").await, 3);
    assert_eq!(config_reloads(&usher, "ok").await, 0);
}

#[tokio::test]
async fn a_stop_asked_for_during_a_reload_is_kept() {
    let origin = spawn_origin(HashMap::new()).await;
    let mut usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    // Sent back to back, the stop arrives while the reload runs. Were it lost, usher would
    // go on serving until it is killed: no drain, no sessions kept.
    usher.signal("HUP");
    usher.signal("TERM");
    assert_eq!(usher.wait(), Some(0), "usher stopped after the reload");
}

#[tokio::test]
async fn a_key_retired_after_the_session_lifetime_was_shortened_keeps_its_tokens() {
    let mut objects = HashMap::new();
    objects.insert("/live/index.m3u8".to_owned(), playlist(MEDIA));
    let origin = spawn_origin(objects).await;
    let config = test_config(&origin.url(), "").replace(
        "clock_skew = \"0s\"\n",
        "clock_skew = \"0s\"\nsession_ttl = \"1h\"\n",
    );
    let usher = Usher::start(&config, &[]);
    let playlist_url = format!("{}/live/index.m3u8", usher.url);
    let ticket = mint_with("/live/", |c| c.exp += 3600);
    let session = token_of(&get(&format!("{playlist_url}?ticket={ticket}"), &[]).await);

    // Rotation with a shorter lifetime for the tokens signed from now on; then the old key
    // goes. The token it signed under the hour-long lifetime is still a session's.
    let rotated = config
        .replace(
            "signing_key = \"test-key\"",
            "signing_key = \"rotated-2027\"",
        )
        .replace("session_ttl = \"1h\"", "session_ttl = \"2m\"")
        + NEW_KEY;
    std::fs::write(usher.config_path(), &rotated).unwrap();
    assert_eq!(post_reload(&usher).await.0, 200);
    let retired = rotated.replace(
        &format!("[[token.keys]]\nid = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n"),
        "",
    );
    std::fs::write(usher.config_path(), &retired).unwrap();
    assert_eq!(post_reload(&usher).await.0, 200);
    let kept = get(&format!("{playlist_url}?token={session}"), &[]).await;
    assert_eq!(kept.status, 200, "{}", kept.text());
}
