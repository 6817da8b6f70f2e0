//! Device activations: first-use binding and the N+1th device refused until one is freed,
//! `ip_recovery` from the same network only, ffprobe on its device, bindings surviving
//! SIGKILL, and a device named in the URL being the one named in the header.

use std::process::Command;

use serde_json::json;

use crate::support::admin::{api, HasAdmin};
use crate::support::cluster::status_reason;
use crate::support::*;
use crate::{config, origin, sell, Player};

#[tokio::test]
async fn first_use_binds_and_the_device_past_the_activation_count_is_refused_until_one_is_freed() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, hash) = sell(
        &usher,
        json!({"code": "p", "name": "Final", "activation": 2}),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    let phone = Player::at("phone", "198.51.100.8");
    let laptop = Player::at("laptop", "198.51.100.9");
    assert_eq!(tv.start(&play).await.0.status, 200);
    assert_eq!(phone.start(&play).await.0.status, 200);
    let (again, tv_segment) = tv.start(&play).await;
    assert_eq!(again.status, 200, "a known device comes back freely");
    assert_eq!(tv.get(&tv_segment).await.status, 200);
    assert_eq!(
        status_reason(&laptop.start(&play).await.0),
        (403, "activation_limit".into())
    );
    // A client that names no device gets one from usher (its device cookie): a third
    // device, past the two activations (issue 11 item 4; it used to be device_required).
    let nobody = get(&play, &[("x-forwarded-for", "198.51.100.10")]).await;
    assert_eq!(status_reason(&nobody), (403, "activation_limit".into()));

    let (_, devices) = api(
        &usher,
        "GET",
        &format!("/api/v1/buyers/{hash}/devices"),
        None,
    )
    .await;
    let devices = devices["items"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2);
    let tv_hash = usher::device::hash_id("tv", None);
    assert_eq!(
        devices[0]["device"],
        tv_hash.as_str(),
        "stored hashed, never raw"
    );
    let (status, _) = api(
        &usher,
        "DELETE",
        &format!("/api/v1/buyers/{hash}/devices/{tv_hash}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        status_reason(&tv.get(&tv_segment).await),
        (403, "session_ended".into()),
        "the freed device stops playing"
    );
    assert_eq!(
        laptop.start(&play).await.0.status,
        200,
        "the freed activation"
    );

    let metrics = get(&format!("{}/metrics", usher.admin_url()), &[])
        .await
        .text();
    assert!(
        metrics.contains(r#"usher_activations_total{outcome="limit"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"usher_denials_total{reason="activation_limit"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn ip_recovery_resumes_without_a_new_activation_from_the_same_network_only() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, hash) = sell(
        &usher,
        json!({"code": "p", "name": "Final", "activation": 1, "ip_recovery": true}),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    let (_, old_segment) = tv.start(&play).await;
    // The player lost its storage: a new device id, same home network.
    let reborn = Player::at("tv-after-reset", "198.51.100.7");
    let (reply, segment) = reborn.start(&play).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reborn.get(&segment).await.status, 200);
    assert_eq!(
        status_reason(&tv.get(&old_segment).await),
        (403, "session_ended".into())
    );
    let (_, devices) = api(
        &usher,
        "GET",
        &format!("/api/v1/buyers/{hash}/devices"),
        None,
    )
    .await;
    assert_eq!(
        devices["items"].as_array().unwrap().len(),
        1,
        "still one activation"
    );
    let stranger = Player::at("other", "203.0.113.5");
    assert_eq!(
        status_reason(&stranger.start(&play).await.0),
        (403, "activation_limit".into())
    );
}

#[tokio::test]
async fn ffprobe_plays_on_its_device_and_a_second_device_is_refused() {
    // The demo stream is real media ffprobe can read.
    let demo = demo_dir();
    let usher = Usher::start(&rights_config(demo.to_str().unwrap(), ""), &[]);
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "p", "name": "Demo", "activation": 1})),
    )
    .await;
    assert_eq!(status, 201);
    api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "demo", "prefix": "/demo/"})),
    )
    .await;
    api(
        &usher,
        "POST",
        "/api/v1/products/p/media",
        Some(json!({"media": "demo"})),
    )
    .await;
    let (_, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "p", "media": "demo", "email": "a@b.c"})),
    )
    .await;
    let play = sold["play_url"].as_str().unwrap();
    let probe = |device: &str| {
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "10000000"])
            .args(["-headers", &format!("X-Device-Id: {device}\r\n")])
            .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", play])
            .output()
            .unwrap()
    };
    let first = probe("living-room-tv");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("h264"));
    let second = probe("neighbours-tv");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("403"));
    assert!(
        probe("living-room-tv").status.success(),
        "the activated device keeps playing"
    );
}

#[tokio::test]
async fn bindings_survive_sigkill() {
    let origin = origin().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let mut usher = Usher::start(&config(&origin), &["--data-dir", &dir]);
    let (play, _) = sell(
        &usher,
        json!({"code": "p", "name": "Final", "activation": 1}),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    assert_eq!(tv.start(&play).await.0.status, 200);
    usher.kill();
    let usher = Usher::start(&config(&origin), &["--data-dir", &dir]);
    let play = play.replacen(play.split("/event").next().unwrap(), &usher.url, 1);
    let phone = Player::at("phone", "198.51.100.8");
    assert_eq!(
        status_reason(&phone.start(&play).await.0),
        (403, "activation_limit".into()),
        "the tv's activation survived"
    );
    assert_eq!(tv.start(&play).await.0.status, 200);
}

/// A device id the player sends in the URL (`?device=`, percent-encoded by its URL
/// encoder) is the same device as that id in the header: the box activated by its
/// header plays from a URL that names it, and takes no second activation.
#[tokio::test]
async fn a_device_named_in_the_url_is_the_device_named_in_the_header() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, hash) = sell(
        &usher,
        json!({"code": "box", "name": "Box", "activation": 1}),
    )
    .await;
    let by_header = get(
        &play,
        &[
            ("x-device-id", "living room #1"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
    )
    .await;
    assert_eq!(by_header.status, 200, "{}", by_header.text());
    for encoded in ["living%20room%20%231"] {
        let url = format!("{play}&device={encoded}");
        let by_url = get(&url, &[("x-forwarded-for", "198.51.100.7")]).await;
        assert_eq!(by_url.status, 200, "{encoded}: {}", by_url.text());
    }
    let (_, devices) = api(
        &usher,
        "GET",
        &format!("/api/v1/buyers/{hash}/devices"),
        None,
    )
    .await;
    assert_eq!(devices["total"], 1, "{devices}");
}
