//! A real browser player through usher: hls.js in headless Chromium (see DEVELOPERS.md)
//! plays the demo VOD and a protected live stream from a real transcoder (ffmpeg) with a
//! ticket, and reports the refusal when the ticket is missing (401) or its purchase was
//! revoked (403). The player page is on another origin than usher, as a player on an
//! operator's web site would be, so usher's CORS answers are exercised too.

mod support;

use std::time::Duration;

use serde_json::json;
use support::admin::api;
use support::browser::{Player, PlayerPage, Seen};
use support::live::LiveOrigin;
use support::*;

/// Bound for everything a player is waited for (start-up included); never reached when
/// things work.
const WITHIN: Duration = Duration::from_secs(30);

fn no_network_errors(seen: &Seen) {
    assert!(
        seen.network_errors().is_empty(),
        "no request failed: {:#?}",
        seen.errors
    );
}

#[tokio::test]
async fn the_demo_vod_plays_to_the_end_with_a_ticket() {
    let demo = demo_dir();
    let usher = Usher::start(&test_config(demo.to_str().unwrap(), ""), &[]);
    let url = format!("{}/demo/master.m3u8?ticket={}", usher.url, mint("/demo/"));
    the_demo_plays_to_its_end(&url).await;
}

/// The variable carrier writes the session token once per playlist, as an `EXT-X-DEFINE`
/// variable every URI refers to; hls.js substitutes it and plays the demo to its end, every
/// fragment requested with the token in its query as under the query carrier.
#[tokio::test]
async fn a_variable_carrier_player_substitutes_the_token_and_plays_to_the_end() {
    let demo = demo_dir();
    let extra = "[[routes]]\nprefix = \"/demo/\"\ncarrier = \"variable\"\n";
    let usher = Usher::start(&test_config(demo.to_str().unwrap(), extra), &[]);
    let url = format!("{}/demo/master.m3u8?ticket={}", usher.url, mint("/demo/"));

    let master = get(&url, &[]).await.text();
    assert!(
        master.contains("\n#EXT-X-DEFINE:NAME=\"t\",VALUE=\"s2.")
            && master.contains("index.m3u8?token={$t}")
            && !master.contains("token=s2."),
        "the token is defined once and referenced: {master}"
    );
    the_demo_plays_to_its_end(&url).await;
}

/// Plays the demo VOD from `url` to its end: both renditions, every fragment of the 6 s
/// stream through usher with a session token in its query, and no request failed.
async fn the_demo_plays_to_its_end(url: &str) {
    let player = Player::open(url);
    let seen = player
        .wait_until("the demo plays to its end", WITHIN, |s| s.ended)
        .await;
    assert_eq!(seen.levels, Some(2), "both renditions in the master");
    assert!(
        seen.fragments.len() >= 3,
        "every fragment of the 6 s stream: {:?}",
        seen.fragments
    );
    assert!(
        seen.fragments
            .iter()
            .all(|f| f.starts_with("/demo/") && f.contains(".ts?token=s2.")),
        "fragments come through usher with a session token: {:?}",
        seen.fragments
    );
    assert!(seen.current_time > 5.0, "played 6 s: {}", seen.current_time);
    no_network_errors(&seen);
}

/// A live origin under `/live/`, usher with rights from its store in front of it, and the
/// stream sold as a PPV event to one buyer: the buyer's purchase hash and play URL.
async fn live_event() -> (LiveOrigin, Usher, String, String) {
    let origin = LiveOrigin::start(&["/live/"], Vec::new()).await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    for (path, body) in [
        (
            "/api/v1/products",
            json!({"code": "final", "name": "The final", "hours": 3}),
        ),
        (
            "/api/v1/media",
            json!({"code": "final-live", "prefix": "/live/", "playlist": "master.m3u8", "live": true}),
        ),
    ] {
        let (status, body) = api(&usher, "POST", path, Some(body)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products/final/media",
        Some(json!({"media": "final-live"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "final", "media": "final-live", "email": "viewer@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    let hash = sold["hash"].as_str().unwrap().to_owned();
    let play_url = sold["play_url"].as_str().unwrap().to_owned();
    (origin, usher, hash, play_url)
}

#[tokio::test]
async fn a_buyer_plays_the_live_event_until_the_purchase_is_revoked() {
    let (origin, usher, hash, play_url) = live_event().await;
    assert!(play_url.starts_with(&format!("{}/live/master.m3u8?ticket=t1.", usher.url)));
    let player = Player::open(&play_url);

    let start = player
        .wait_until("the live stream starts", WITHIN, |s| {
            s.fragments.len() >= 2 && s.current_time > 0.0
        })
        .await;
    assert_eq!(start.levels, Some(1));
    let playing = player
        .wait_for_progress("the live stream keeps playing", &start, 3, 2.0, WITHIN)
        .await;
    assert!(
        playing
            .fragments
            .iter()
            .all(|f| f.starts_with("/live/seg_") && f.contains(".ts?token=s2.")),
        "fragments come through usher with a session token: {:?}",
        playing.fragments
    );
    no_network_errors(&playing);
    assert!(
        origin.server.requests_under("/live/seg_") >= playing.fragments.len(),
        "the fragments came from the transcoder"
    );

    let (status, body) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fatal = player.wait_for_fatal(WITHIN).await;
    assert_eq!(
        (fatal.kind.as_str(), fatal.code),
        ("networkError", Some(403)),
        "the player stops with the refusal: {fatal:?}"
    );

    // A player opening the revoked ticket afresh is refused at the first playlist.
    let again = Player::open(&play_url);
    let fatal = again.wait_for_fatal(WITHIN).await;
    assert_eq!(
        (fatal.kind.as_str(), fatal.details.as_str(), fatal.code),
        ("networkError", "manifestLoadError", Some(403)),
        "{fatal:?}"
    );
}

#[tokio::test]
async fn without_a_ticket_the_player_reports_401() {
    let (_origin, usher, _hash, play_url) = live_event().await;
    let bare = play_url.split('?').next().unwrap();
    assert_eq!(bare, format!("{}/live/master.m3u8", usher.url));
    let player = Player::open(bare);
    let fatal = player.wait_for_fatal(WITHIN).await;
    assert_eq!(
        (fatal.kind.as_str(), fatal.details.as_str(), fatal.code),
        ("networkError", "manifestLoadError", Some(401)),
        "{fatal:?}"
    );
    assert!(player.seen().fragments.is_empty());
}

/// A player page on another origin can only use the cookie carrier with credentialed
/// requests (`withCredentials`): the browser then needs `Access-Control-Allow-Credentials:
/// true` with the exact origin in `Access-Control-Allow-Origin`, which usher sends to an
/// origin listed by name in `access.cors_origins` (never with `*`). Without them the
/// browser hides the first playlist (status 0), or ignores its `Set-Cookie`.
#[tokio::test]
async fn a_cookie_carrier_player_on_another_origin_plays() {
    let origin = LiveOrigin::start(&["/c/"], Vec::new()).await;
    let page = PlayerPage::serve();
    let extra = format!(
        "[access]\ncors_origins = [\"{}\"]\n[[routes]]\nprefix = \"/c/\"\ncarrier = \"cookie\"\n",
        page.origin()
    );
    let usher = Usher::start(&test_config(&origin.url(), &extra), &[]);
    let url = format!("{}/c/master.m3u8?ticket={}", usher.url, mint("/c/"));
    let player = page.open_with_credentials(&url);
    let seen = player
        .wait_until("the cookie-carrier stream plays", WITHIN, |s| {
            s.fragments.len() >= 3 && s.current_time > 1.0
        })
        .await;
    no_network_errors(&seen);
}
