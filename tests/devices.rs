//! Devices and sessions through a real usher, driven the way players drive it: clients with
//! distinct device ids and addresses (through a trusted proxy's X-Forwarded-For), and
//! ffprobe. First-use binding and the N+1th device, freeing an activation, both
//! concurrency policies, IP prefix tolerance, ip_recovery, copied session tokens, bindings
//! surviving SIGKILL; with a controllable clock, idle timeouts, a live session outlasting
//! its ticket, and a revoke stopping it.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::admin::{api, HasAdmin};
use support::cluster::status_reason;
use support::inprocess::InProcess;
use support::redis::Redis;
use support::*;

const LIVE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n";

async fn origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/event/index.m3u8".to_owned(), playlist(LIVE));
    objects.insert("/event/s1.ts".to_owned(), segment(300));
    objects.insert("/event/s2.ts".to_owned(), segment(300));
    spawn_origin(objects).await
}

/// Rights from the store, the loopback client trusted as a proxy so tests can speak for
/// many client addresses, sessions bound to the client's /24.
fn config(origin: &Origin) -> String {
    rights_config(
        &origin.url(),
        "[sessions]\nbind_ip = true\nidle_timeout = \"60s\"\n",
    )
    .replace(
        "[listen]\n",
        "[listen]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    )
}

/// Sells product `code` (with `fields`) for `/event/` and returns a buyer's ticket URL.
async fn sell(usher: &impl HasAdmin, product: Value) -> (String, String) {
    let code = product["code"].as_str().unwrap().to_owned();
    let (status, body) = api(usher, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    api(
        usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"})),
    )
    .await;
    let (status, body) = api(
        usher,
        "POST",
        &format!("/api/v1/products/{code}/media"),
        Some(json!({"media": "event"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, sold) = api(
        usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": code, "media": "event", "account": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    (
        sold["play_url"].as_str().unwrap().to_owned(),
        sold["hash"].as_str().unwrap().to_owned(),
    )
}

/// A player: a device id and a client address.
struct Player<'a> {
    device: &'a str,
    ip: &'a str,
}

impl<'a> Player<'a> {
    /// The player of `device` at address `ip`.
    fn at(device: &'a str, ip: &'a str) -> Self {
        Self { device, ip }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        vec![("x-device-id", self.device), ("x-forwarded-for", self.ip)]
    }

    async fn get(&self, url: &str) -> Reply {
        get(url, &self.headers()).await
    }

    /// Loads the playlist with the ticket; returns the reply and its first segment's URL.
    async fn start(&self, play_url: &str) -> (Reply, String) {
        let reply = self.get(play_url).await;
        let segment = reply
            .text()
            .lines()
            .find(|l| l.starts_with("s1.ts"))
            .map(|l| resolve(play_url, l))
            .unwrap_or_default();
        (reply, segment)
    }
}

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
async fn refuse_policy_refuses_a_second_concurrent_device() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, _) = sell(
        &usher,
        json!({"code": "p", "name": "Final", "device_ban": true}),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    let phone = Player::at("phone", "198.51.100.8");
    let (_, tv_segment) = tv.start(&play).await;
    assert_eq!(
        status_reason(&phone.start(&play).await.0),
        (403, "concurrency_limit".into())
    );
    assert_eq!(
        tv.get(&tv_segment).await.status,
        200,
        "the first viewer keeps watching"
    );
    let (_, sessions) = api(&usher, "GET", "/api/v1/sessions?account=alice", None).await;
    let items = sessions["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    // The operator ends the session; the other device may now start.
    let sid = items[0]["sid"].as_str().unwrap();
    api(&usher, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!(
        status_reason(&tv.get(&tv_segment).await),
        (403, "session_ended".into())
    );
    assert_eq!(phone.start(&play).await.0.status, 200);
}

#[tokio::test]
async fn replace_oldest_policy_ends_the_first_session() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, _) = sell(&usher, json!({"code": "p", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"})).await;
    let tv = Player::at("tv", "198.51.100.7");
    let phone = Player::at("phone", "198.51.100.8");
    let (_, tv_segment) = tv.start(&play).await;
    let (reply, phone_segment) = phone.start(&play).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        status_reason(&tv.get(&tv_segment).await),
        (403, "session_replaced".into())
    );
    assert_eq!(phone.get(&phone_segment).await.status, 200);
}

#[tokio::test]
async fn session_tokens_tolerate_the_network_and_refuse_copies() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, _) = sell(&usher, json!({"code": "p", "name": "Final"})).await;
    let tv = Player::at("tv", "198.51.100.7");
    let (_, segment) = tv.start(&play).await;
    let moved = Player::at("tv", "198.51.100.201");
    assert_eq!(
        moved.get(&segment).await.status,
        200,
        "a new address inside the /24"
    );
    let elsewhere = Player::at("tv", "203.0.113.5");
    assert_eq!(
        status_reason(&elsewhere.get(&segment).await),
        (403, "session_shared".into())
    );
    let other_device = Player::at("laptop", "198.51.100.7");
    assert_eq!(
        status_reason(&other_device.get(&segment).await),
        (403, "session_shared".into())
    );
    let no_header = get(&segment, &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(
        no_header.status, 200,
        "players that cannot add headers: the token carries the device"
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

/// Reloads the live playlist with the session token it carries, as a live player does.
async fn reload(player: &Player<'_>, playlist_url: &str) -> (Reply, String) {
    let reply = player.get(playlist_url).await;
    let token = reply.token_for("s1.ts").unwrap_or_default();
    (reply, token)
}

#[tokio::test]
async fn with_a_controllable_clock_sessions_idle_out_live_playback_outlasts_the_ticket_and_revoke_stops_it(
) {
    let origin = origin().await;
    let usher =
        InProcess::start(&config(&origin).replace("[token]\n", "[token]\nsession_ttl = \"30s\"\n"))
            .await;
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "p", "name": "Six hours live", "hours": 6, "device_ban": true})),
    )
    .await;
    assert_eq!(status, 201);
    api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"})),
    )
    .await;
    api(
        &usher,
        "POST",
        "/api/v1/products/p/media",
        Some(json!({"media": "event"})),
    )
    .await;
    let (_, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "p", "media": "event", "account": "fan"})),
    )
    .await;
    let hash = sold["hash"].as_str().unwrap().to_owned();
    // A ticket that lives ten minutes, for a right that lasts six hours.
    let ticket = usher::ticket::sign(
        &usher.state.config().token.keys,
        usher::ticket::Kind::Ticket,
        &usher::ticket::Claims {
            sub: "fan".into(),
            scope: "/event/".into(),
            nbf: usher.now() - 1,
            exp: usher.now() + 600,
            dev: None,
            ip: None,
            sid: None,
            cap: 0,
            allow: Vec::new(),
            cls: None,
        },
    );
    let tv = Player::at("tv", "198.51.100.7");
    let playlist_url = format!("{}/event/index.m3u8", usher.url);
    let (reply, mut token) = reload(&tv, &format!("{playlist_url}?ticket={ticket}")).await;
    assert_eq!(reply.status, 200);
    // Two hours of reloads every 20 s, far past the ticket's ten minutes.
    for _ in 0..360 {
        usher.advance(20);
        let (reply, next) = reload(&tv, &format!("{playlist_url}?token={token}")).await;
        assert_eq!(reply.status, 200, "at +{}s: {}", usher.now(), reply.text());
        token = next;
    }
    let segment = format!("{}/event/s1.ts?token={token}", usher.url);
    assert_eq!(tv.get(&segment).await.status, 200);
    assert_eq!(usher.state.sessions.live(usher.now()).len(), 1);

    // A paused VOD-style viewer: the segment token expired, the session is alive.
    usher.advance(45);
    assert_eq!(
        tv.get(&segment).await.status,
        200,
        "renewed while the session lives"
    );

    // Idle past the timeout: the session is over, and the expired token with it.
    usher.advance(61);
    assert!(usher.state.sessions.live(usher.now()).is_empty());
    let expired = tv.get(&segment).await;
    assert_eq!(status_reason(&expired), (403, "expired".into()));

    // A fresh start, then a revoke: stopped on the next request.
    let (reply, token) = reload(
        &tv,
        &format!("{playlist_url}?ticket={}", sold["ticket"].as_str().unwrap()),
    )
    .await;
    assert_eq!(reply.status, 200);
    let segment = format!("{}/event/s1.ts?token={token}", usher.url);
    assert_eq!(tv.get(&segment).await.status, 200);
    api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(
        status_reason(&tv.get(&segment).await),
        (403, "revoked".into())
    );
}

/// Without rights (`rights.source = "none"`) sessions are still kept, so a player that
/// reloads the media playlist URI its master gave it, with the session token of that
/// moment, plays on past the token's expiry while it keeps playing, and stops once idle.
#[tokio::test]
async fn without_rights_a_players_playlist_uri_outlives_its_token_while_the_session_plays() {
    let origin = origin().await;
    let usher = InProcess::start(
        &test_config(&origin.url(), "[sessions]\nidle_timeout = \"60s\"\n")
            .replace("[token]\n", "[token]\nsession_ttl = \"30s\"\n"),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    let playlist_url = format!("{}/event/index.m3u8", usher.url);
    let (reply, token) = reload(&tv, &format!("{playlist_url}?ticket={}", mint("/event/"))).await;
    assert_eq!(reply.status, 200);
    let level_url = format!("{playlist_url}?token={token}");
    // Five minutes of reloads every 20 s on one 30-second token.
    for _ in 0..15 {
        usher.advance(20);
        let (reply, _) = reload(&tv, &level_url).await;
        assert_eq!(reply.status, 200, "at +{}s: {}", usher.now(), reply.text());
    }
    assert_eq!(usher.state.sessions.live(usher.now()).len(), 1);
    usher.advance(61);
    assert_eq!(
        status_reason(&tv.get(&level_url).await),
        (403, "expired".into()),
        "idle past the timeout, the session and its expired token are over"
    );
}

/// A 48-hour rental counted from first play, one activation, the set-top box added by the
/// operator ahead of use: a phone refused for the activation limit, and a ticket sent
/// for a segment, do not start the rental's hours; the box's first play does.
#[tokio::test]
async fn a_refused_request_does_not_start_a_rental_s_hours() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, hash) = sell(
        &usher,
        json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play", "activation": 1}),
    )
    .await;
    let (status, body) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/devices"),
        Some(json!({"device": "stb-0042"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ends = || async {
        let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
        shown["access_ends_at"].clone()
    };
    let phone = Player::at("phone", "198.51.100.8");
    assert_eq!(
        status_reason(&phone.start(&play).await.0),
        (403, "activation_limit".into())
    );
    let segment_url = play.replace("index.m3u8", "s1.ts");
    let on_segment = phone.get(&segment_url).await;
    assert_eq!(on_segment.status, 403, "{}", on_segment.text());
    assert_eq!(ends().await, Value::Null, "no hours started by a refusal");

    let stb = Player::at("stb-0042", "198.51.100.7");
    assert_eq!(stb.start(&play).await.0.status, 200);
    assert!(
        ends().await.as_u64().is_some(),
        "the first play starts the hours"
    );
}

/// A one-hour purchase extended by the operator while its viewer watches a film: the
/// segment URIs the player already holds (their tokens capped at the old end) keep
/// playing past the old end, and stop at the new one.
#[tokio::test]
async fn an_extension_reaches_a_viewer_already_watching() {
    let origin = origin().await;
    let usher =
        InProcess::start(&config(&origin).replace("[token]\n", "[token]\nsession_ttl = \"30s\"\n"))
            .await;
    let (play, hash) = sell(&usher, json!({"code": "p", "name": "Film", "hours": 1})).await;
    let tv = Player::at("tv", "198.51.100.7");
    let (reply, segment) = tv.start(&play).await;
    assert_eq!(reply.status, 200);
    let sold_at = usher.now();
    let (status, body) = api(
        &usher,
        "PATCH",
        &format!("/api/v1/buyers/{hash}"),
        Some(json!({"access_expire": sold_at + 2 * 3600})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The player keeps fetching the segment URI it holds, every 50 s, past the old end.
    while usher.now() < sold_at + 3600 + 100 {
        usher.advance(50);
        let reply = tv.get(&segment).await;
        assert_eq!(
            reply.status,
            200,
            "at +{}s: {}",
            usher.now() - sold_at,
            reply.text()
        );
    }
    while usher.now() < sold_at + 2 * 3600 {
        usher.advance(50);
        tv.get(&segment).await;
    }
    assert_eq!(tv.get(&segment).await.status, 403, "the new end holds");
}

/// A product that allows one device at a time, and a browser that names no device: usher
/// makes one up (its device cookie), so the browser reloading the master with its ticket
/// joins its own session instead of being refused as a second stream; a second browser
/// without the cookie is that second stream.
#[tokio::test]
async fn a_browser_that_names_no_device_reloads_into_its_own_session() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, _) = sell(
        &usher,
        json!({"code": "one", "name": "One screen", "device_ban": true}),
    )
    .await;
    let at_home = [("x-forwarded-for", "198.51.100.7")];
    let first = get(&play, &at_home).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let cookie = first.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("usher_device="), "{cookie}");
    let reload = get(&play, &[at_home[0], ("cookie", cookie.as_str())]).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let other = get(&play, &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(status_reason(&other), (403, "concurrency_limit".into()));
}

/// A segment URI past the end of the purchase its session was minted under does not carry
/// on under another purchase of the account: that one plays with its own ticket (its
/// activation check), not on a token of the old session.
#[tokio::test]
async fn a_session_past_its_purchase_does_not_carry_on_under_another() {
    let origin = origin().await;
    let usher =
        InProcess::start(&config(&origin).replace("[token]\n", "[token]\nsession_ttl = \"30s\"\n"))
            .await;
    let (play, _) = sell(&usher, json!({"code": "hour", "name": "Hour", "hours": 1})).await;
    let tv = Player::at("tv", "198.51.100.7");
    let (reply, segment) = tv.start(&play).await;
    assert_eq!(reply.status, 200);
    let started = usher.now();
    let (later, _) = sell(
        &usher,
        json!({"code": "later", "name": "Later", "hours": 48, "hours_from": "first_play"}),
    )
    .await;
    while usher.now() < started + 3600 - 50 {
        usher.advance(50);
        assert_eq!(tv.get(&segment).await.status, 200);
    }
    usher.advance(100);
    let past = tv.get(&segment).await;
    assert_eq!(status_reason(&past), (403, "expired".into()));
    let (reply, _) = tv.start(&later).await;
    assert_eq!(
        reply.status, 200,
        "the other purchase plays with its own ticket"
    );
}

/// A buyer who buys the one-device rental again, to watch on a second device while the
/// first purchase plays on the TV: the second purchase plays on the phone.
#[tokio::test]
async fn a_second_purchase_plays_on_a_second_device_while_the_first_plays() {
    let origin = origin().await;
    let usher = InProcess::start(&config(&origin)).await;
    let rental = json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play", "activation": 1});
    let (first, _) = sell(&usher, rental).await;
    let tv = Player::at("tv", "198.51.100.7");
    assert_eq!(tv.start(&first).await.0.status, 200);
    usher.advance(3600);
    let (status, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "rental", "media": "event", "account": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    let phone = Player::at("phone", "198.51.100.8");
    let (reply, _) = phone.start(sold["play_url"].as_str().unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A viewer with a day's pass who also rented the film for later (48 hours from first
/// play, so it would reach further than the pass): watching while the pass covers it does
/// not start the rental's hours; once the pass has ended, the next play does.
#[tokio::test]
async fn a_rental_bought_for_later_keeps_its_hours_while_a_pass_covers() {
    let origin = origin().await;
    let usher = InProcess::start(&config(&origin)).await;
    let (pass, _) = sell(&usher, json!({"code": "day", "name": "Day", "period": 1})).await;
    let (rental, hash) = sell(
        &usher,
        json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play"}),
    )
    .await;
    let rental_ends = || async {
        let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
        shown["access_ends_at"].clone()
    };
    let tv = Player::at("tv", "198.51.100.7");
    for play in [&pass, &rental] {
        let (reply, segment) = tv.start(play).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(tv.get(&segment).await.status, 200);
    }
    assert_eq!(rental_ends().await, Value::Null, "the rental's hours wait");

    usher.advance(86_400);
    let (reply, _) = tv.start(&rental).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        rental_ends().await.as_u64(),
        Some(usher.now() + 48 * 3600),
        "the first play after the pass starts them"
    );
}

/// A one-device pass playing on the TV, and a rental bought for the phone: the phone,
/// which the pass cannot admit, plays under the rental (whose hours it starts), and the
/// TV keeps playing under the pass.
#[tokio::test]
async fn a_device_the_preferred_purchase_cannot_admit_plays_under_the_next() {
    let origin = origin().await;
    let usher = InProcess::start(&config(&origin)).await;
    let (pass, _) = sell(
        &usher,
        json!({"code": "week", "name": "Week", "period": 7, "activation": 1}),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    let (reply, tv_segment) = tv.start(&pass).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (rental, hash) = sell(
        &usher,
        json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play", "activation": 1}),
    )
    .await;
    let phone = Player::at("phone", "198.51.100.8");
    let (reply, phone_segment) = phone.start(&rental).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(phone.get(&phone_segment).await.status, 200);
    assert_eq!(tv.get(&tv_segment).await.status, 200);
    let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(
        shown["access_ends_at"].as_u64(),
        Some(usher.now() + 48 * 3600)
    );
    let (_, devices) = api(
        &usher,
        "GET",
        &format!("/api/v1/buyers/{hash}/devices"),
        None,
    )
    .await;
    assert_eq!(
        devices["total"], 1,
        "the phone holds the rental's activation: {devices}"
    );

    let laptop = Player::at("laptop", "198.51.100.9");
    assert_eq!(
        status_reason(&laptop.start(&rental).await.0),
        (403, "activation_limit".into()),
        "a third device fits under neither"
    );
}

/// The same pass and rental with sessions shared through a Redis that is down (`deny`):
/// the pass cannot admit the phone and the rental meets the outage, so the phone is told
/// of the outage (503 `sessions_unavailable`, worth a retry), not of the pass's
/// `activation_limit`; nothing of the rental is used, and once Redis is back it plays.
#[tokio::test]
async fn an_outage_met_under_the_next_purchase_is_the_answer() {
    let mut redis = Redis::start();
    let origin = origin().await;
    let shared = "[sessions]\nbackend = \"redis\"\non_backend_error = \"deny\"\n";
    let config = config(&origin).replace("[sessions]\n", shared);
    let redis_table = format!(
        "[sessions.redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
        redis.url
    );
    let usher = InProcess::start(&format!("{config}{redis_table}")).await;
    let week = json!({"code": "week", "name": "Week", "period": 7, "activation": 1});
    let (pass, _) = sell(&usher, week).await;
    let tv = Player::at("tv", "198.51.100.7");
    assert_eq!(tv.start(&pass).await.0.status, 200);
    let (rental, hash) = sell(
        &usher,
        json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play", "activation": 1}),
    )
    .await;

    redis.kill();
    let phone = Player::at("phone", "198.51.100.8");
    assert_eq!(
        status_reason(&phone.start(&rental).await.0),
        (503, "sessions_unavailable".into())
    );
    let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(
        shown["access_ends_at"],
        Value::Null,
        "the rental's hours wait"
    );

    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let (reply, _) = phone.start(&rental).await;
        if reply.status != 503 || Instant::now() >= deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply.status, 200, "{}", reply.text());
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

/// The same for a limit on the account rather than the product: an account allowed one
/// stream, a product with no limits of its own. The browser reloading its master joins
/// its own session; a second browser is the second stream.
#[tokio::test]
async fn a_browser_reloads_into_its_own_session_under_an_account_limit() {
    let origin = origin().await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, _) = sell(&usher, json!({"code": "open", "name": "Open"})).await;
    let (status, body) = api(
        &usher,
        "PATCH",
        "/api/v1/accounts/alice",
        Some(json!({"max_sessions": 1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let at_home = [("x-forwarded-for", "198.51.100.7")];
    let first = get(&play, &at_home).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let cookie = first.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let reload = get(&play, &[at_home[0], ("cookie", cookie.as_str())]).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let other = get(&play, &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(status_reason(&other), (403, "concurrency_limit".into()));
}

/// A day `pass` plays on the TV (198.51.100.7); the phone at `phone_ip` starts its own
/// rental (`rental`): it plays under the rental, whose hours it starts, and the TV keeps
/// playing under the pass.
async fn the_phone_plays_under_its_rental_beside_the_tv(
    pass: Value,
    rental: Value,
    phone_ip: &str,
) {
    let origin = origin().await;
    let usher = InProcess::start(&config(&origin)).await;
    let (pass, _) = sell(&usher, pass).await;
    let tv = Player::at("tv", "198.51.100.7");
    let (reply, tv_segment) = tv.start(&pass).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (rental, hash) = sell(&usher, rental).await;
    let phone = Player::at("phone", phone_ip);
    let (reply, phone_segment) = phone.start(&rental).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(phone.get(&phone_segment).await.status, 200);
    assert_eq!(
        status_reason(&tv.get(&tv_segment).await),
        (200, String::new()),
        "the TV keeps playing under its pass"
    );
    let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(
        shown["access_ends_at"].as_u64(),
        Some(usher.now() + 48 * 3600),
        "the phone played under its rental"
    );
}

/// The household's one-device day pass, with IP recovery, and the phone on the same home
/// network (one public address): the pass's IP recovery is for a player that lost its
/// device id, not for a second device the account bought for, so the TV keeps its
/// activation and its session.
#[tokio::test]
async fn a_second_device_on_the_same_network_plays_under_its_own_purchase_not_by_recovery() {
    the_phone_plays_under_its_rental_beside_the_tv(
        json!({"code": "day", "name": "Day", "period": 1, "activation": 1, "ip_recovery": true}),
        json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play", "activation": 1}),
        "198.51.100.7",
    )
    .await;
}

/// A one-stream day pass under `replace_oldest`: the phone's own rental plays, and the
/// TV's session is not replaced.
#[tokio::test]
async fn a_second_device_plays_under_its_own_purchase_rather_than_replacing_the_first() {
    the_phone_plays_under_its_rental_beside_the_tv(
        json!({"code": "day", "name": "Day", "period": 1, "max_sessions": 1, "concurrency_policy": "replace_oldest"}),
        json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play"}),
        "198.51.100.8",
    )
    .await;
}

/// The phone plays under its own rental because the week's pass is the TV's: once the
/// rental has ended its tokens stop (README: "Past the end of its own purchase its tokens
/// stop"), even though its session's requests are checked against the account's rights
/// as a whole, where the pass still holds.
#[tokio::test]
async fn a_session_under_the_next_purchase_stops_at_that_purchase_s_end() {
    let origin = origin().await;
    let usher = InProcess::start(
        &config(&origin)
            .replace("idle_timeout = \"60s\"", "idle_timeout = \"7200s\"")
            .replace("[token]\n", "[token]\nsession_ttl = \"3600s\"\n"),
    )
    .await;
    let (pass, _) = sell(
        &usher,
        json!({"code": "week", "name": "Week", "period": 7, "activation": 1}),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    assert_eq!(tv.start(&pass).await.0.status, 200);
    let (rental, _) = sell(
        &usher,
        json!({"code": "rental", "name": "Rental", "hours": 2, "hours_from": "first_play", "activation": 1}),
    )
    .await;
    let phone = Player::at("phone", "198.51.100.8");
    let (reply, token) = reload(&phone, &rental).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let rental_ends = usher.now() + 2 * 3600;
    let playlist_url = format!("{}/event/index.m3u8", usher.url);
    let mut token = token;
    // A live player reloads its playlist with its session token.
    while usher.now() + 1800 < rental_ends {
        usher.advance(1800);
        let (reply, next) = reload(&phone, &format!("{playlist_url}?token={token}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        token = next;
    }
    usher.advance(1900);
    assert!(usher.now() > rental_ends);
    let (reply, _) = reload(&phone, &format!("{playlist_url}?token={token}")).await;
    assert_eq!(
        status_reason(&reply),
        (403, "expired".into()),
        "the rental ended {}s ago; the pass's one activation is the TV's",
        usher.now() - rental_ends
    );
}

/// A cached yes names, besides the preferred purchase, the others a ticket may fall back
/// to: one of them ending ends the cached yes, so a device is not admitted under a rental
/// that has ended (here within `positive_ttl` of its end).
#[tokio::test]
async fn a_ticket_does_not_fall_back_to_a_purchase_that_ended_since_the_yes_was_cached() {
    let origin = origin().await;
    let usher = InProcess::start(&config(&origin)).await;
    let (pass, _) = sell(
        &usher,
        json!({"code": "week", "name": "Week", "period": 7, "activation": 1}),
    )
    .await;
    let tv = Player::at("tv", "198.51.100.7");
    assert_eq!(tv.start(&pass).await.0.status, 200);
    let (rental, _) = sell(
        &usher,
        json!({"code": "rental", "name": "Rental", "hours": 2, "hours_from": "first_play", "activation": 1}),
    )
    .await;
    let phone = Player::at("phone", "198.51.100.8");
    assert_eq!(phone.start(&rental).await.0.status, 200);
    let rental_ends = usher.now() + 2 * 3600;
    usher.advance(2 * 3600 - 60);
    // The TV plays on: a yes for the account, cached (rights.positive_ttl is 10 minutes).
    let (reply, tv_segment) = tv.start(&pass).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(tv.get(&tv_segment).await.status, 200);
    usher.advance(120);
    assert!(usher.now() > rental_ends);
    assert_eq!(
        status_reason(&phone.start(&rental).await.0),
        (403, "activation_limit".into()),
        "the rental ended; the pass's one activation is the TV's"
    );
}
