//! Key rotation without a dropped viewer, in a real browser: an hls.js player in headless
//! Chromium plays a live stream from a real transcoder (ffmpeg) through usher, once per
//! session-token carrier (query, path, cookie), while the signing key is rotated twice with
//! SIGHUP. After each rotation the player keeps loading new fragments without an error,
//! its `currentTime` keeps advancing, and new viewers get tokens signed with the new key
//! (the query player's segment tokens move to it too; the path player keeps its session's
//! token, which names every segment the same way on each reload). A reload with an invalid
//! config then changes nothing, and is counted as rejected. Retiring the first key cuts no
//! one: the tokens of sessions still playing verify with the retired key until they end.
//!
//! The query and path players load their page from the harness (another origin than
//! usher). The cookie player loads it from usher itself (`/player/`, a public path served
//! from the origin); `tests/browser.rs` plays the cookie carrier from another origin.

mod support;

use std::time::{Duration, Instant};

use support::browser::{player_mounts, Player, Seen};
use support::live::LiveOrigin;
use support::*;

/// Bound for each wait on a player; never reached when things work.
const WITHIN: Duration = Duration::from_secs(30);

/// Fragments and seconds of media each player must get through after each reload: several
/// playlist reloads (the target duration is 1 s), so tokens minted after the reload are in
/// use.
const MORE_FRAGMENTS: usize = 3;
const MORE_SECONDS: f64 = 2.0;

const ROUTES: &str = "[access]\npublic = [\"/player/\"]\n\
    [[routes]]\nprefix = \"/q/\"\ncarrier = \"query\"\n\
    [[routes]]\nprefix = \"/p/\"\ncarrier = \"path\"\n\
    [[routes]]\nprefix = \"/c/\"\ncarrier = \"cookie\"\n";

/// The player of one carrier's route.
struct Viewer {
    carrier: &'static str,
    prefix: &'static str,
    player: Player,
}

impl Viewer {
    /// Whether the fragment URLs the page reports move to new-key tokens: in the query
    /// carrier each playlist reload mints a token for its segments. (The path carrier keeps
    /// its session's token, so that segment URIs stay the same across reloads; in the
    /// cookie carrier the token travels in an HttpOnly cookie, out of the page's reach.)
    fn token_in_urls(&self) -> bool {
        self.carrier == "query"
    }
}

/// `config` with `kid` added as a key and made the signing key in place of `from`, which
/// stays in the ring like every other key.
fn rotate(config: &str, from: &str, kid: &str) -> String {
    let rotated = config.replace(
        &format!("signing_key = \"{from}\""),
        &format!("signing_key = \"{kid}\""),
    );
    assert_ne!(rotated, config);
    format!("{rotated}\n[[token.keys]]\nid = \"{kid}\"\nsecret = \"a-secret-for-{kid}-that-is-long-enough\"\n")
}

/// Writes `config`, sends SIGHUP, and waits (bounded) until usher counts reload number
/// `n` with `outcome`. The signal is handled asynchronously and the counter is the only
/// sign of it, so this polls.
async fn sighup(usher: &Usher, config: &str, outcome: &str, n: u64) {
    std::fs::write(usher.config_path(), config).unwrap();
    usher.signal("HUP");
    let started = Instant::now();
    while config_reloads(usher, outcome).await < n {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGHUP reload {n} counted as {outcome}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the viewer got `MORE_FRAGMENTS` fragments and `MORE_SECONDS` of media past
/// `before`, and, where the token shows in the URLs, until the fragments it loads are
/// signed with `kid`. Returns what it has seen.
async fn keep_playing(viewer: &Viewer, before: &Seen, kid: &str, when: &str) -> Seen {
    let signed = format!("s2.{kid}.");
    let from = before.fragments.len();
    let what = format!("{when}: the {} player keeps playing", viewer.carrier);
    let seen = viewer
        .player
        .wait_until(&what, WITHIN, |s| {
            let new = &s.fragments[from.min(s.fragments.len())..];
            let signed_new = new.iter().filter(|f| f.contains(&signed)).count();
            let tokens_ok = !viewer.token_in_urls() || signed_new >= MORE_FRAGMENTS;
            new.len() >= MORE_FRAGMENTS
                && tokens_ok
                && s.current_time >= before.current_time + MORE_SECONDS
        })
        .await;
    assert!(
        seen.network_errors().is_empty(),
        "{what}: no request failed: {:#?}",
        seen.errors
    );
    let new = &seen.fragments[from..];
    assert!(
        new.iter().all(|f| f.starts_with(viewer.prefix)
            || (f.starts_with("/s2.") && f.contains(&format!("{}seg_", viewer.prefix)))),
        "{what}: fragments of its own route: {new:?}"
    );
    if viewer.token_in_urls() {
        // Once the player is on the new key it stays there.
        let first = new.iter().position(|f| f.contains(&signed)).unwrap();
        assert!(
            new[first..].iter().all(|f| f.contains(&signed)),
            "{what}: every fragment after the first new one is signed with {kid}: {new:?}"
        );
    }
    seen
}

/// The key id that signs the session tokens usher mints now, read from what a new viewer
/// of the route gets: the session cookie, or the token in the master's variant URI.
async fn signing_kid(usher: &Usher, prefix: &str) -> String {
    let master = format!("{}{prefix}master.m3u8?ticket={}", usher.url, mint(prefix));
    let reply = get(&master, &[]).await;
    assert_eq!(reply.status, 200);
    let token = match reply.headers.get("set-cookie") {
        Some(cookie) => cookie
            .to_str()
            .unwrap()
            .strip_prefix("usher_session=")
            .expect("the session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned(),
        None => {
            let text = reply.text();
            let variant = uris(&text).into_iter().next().expect("a variant");
            let at = variant.find("s2.").expect("a session token");
            variant[at..].split(['/', '&']).next().unwrap().to_owned()
        }
    };
    token.split('.').nth(1).unwrap().to_owned()
}

/// A live transcoder, usher in front of it with the three routes and the test key, and a
/// player on the `carrier` route that has started playing: the config usher runs with,
/// and what the player has seen.
async fn start_playing(
    carrier: &'static str,
    prefix: &'static str,
) -> (LiveOrigin, Usher, String, Viewer, Seen) {
    let origin = LiveOrigin::start(&[prefix], player_mounts()).await;
    let config = test_config(&origin.url(), ROUTES);
    let usher = Usher::start(&config, &[]);
    let stream = format!("{}{prefix}master.m3u8?ticket={}", usher.url, mint(prefix));
    let player = if carrier == "cookie" {
        Player::open_from(&usher.url, &stream)
    } else {
        Player::open(&stream)
    };
    let viewer = Viewer {
        carrier,
        prefix,
        player,
    };
    let started = viewer
        .player
        .wait_until("the player starts", WITHIN, |s| {
            s.fragments.len() >= 2 && s.current_time > 0.0
        })
        .await;
    let seen = keep_playing(&viewer, &started, KEY_ID, "before any rotation").await;
    (origin, usher, config, viewer, seen)
}

/// Runbook steps 2 and 4 while a player plays: a new key signs, then the first key is
/// removed. A player whose requests all moved to new-key tokens keeps playing.
async fn retire_the_first_key_while_playing(carrier: &'static str, prefix: &'static str) {
    let (_origin, usher, config, viewer, seen) = start_playing(carrier, prefix).await;
    let rotated = rotate(&config, KEY_ID, "rotated-1");
    sighup(&usher, &rotated, "ok", 1).await;
    let seen = keep_playing(&viewer, &seen, "rotated-1", "after the rotation").await;
    let retired = rotated.replace(
        &format!("[[token.keys]]\nid = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n"),
        "",
    );
    assert_ne!(retired, rotated);
    sighup(&usher, &retired, "ok", 2).await;
    keep_playing(&viewer, &seen, "rotated-1", "after retiring the first key").await;
}

/// One usher in front of a live transcoder, one player on the `carrier` route; the key is
/// rotated twice by SIGHUP while it plays, then an invalid config is sent.
async fn rotate_twice_while_playing(carrier: &'static str, prefix: &'static str) {
    let (_origin, usher, config, viewer, seen) = start_playing(carrier, prefix).await;

    // Rotation 1: a new key signs; the first stays accepted.
    let first = rotate(&config, KEY_ID, "rotated-1");
    sighup(&usher, &first, "ok", 1).await;
    let seen = keep_playing(&viewer, &seen, "rotated-1", "after rotation 1").await;
    assert_eq!(signing_kid(&usher, prefix).await, "rotated-1");

    // Rotation 2: another new key signs; both earlier keys stay accepted (the runbook
    // retires a key only once nothing signed with it is in use).
    let second = rotate(&first, "rotated-1", "rotated-2");
    sighup(&usher, &second, "ok", 2).await;
    let seen = keep_playing(&viewer, &seen, "rotated-2", "after rotation 2").await;
    assert_eq!(signing_kid(&usher, prefix).await, "rotated-2");

    // An invalid config (a signing key that is not in the ring) changes nothing.
    let invalid = second.replace(
        "signing_key = \"rotated-2\"",
        "signing_key = \"not-in-the-ring\"",
    );
    sighup(&usher, &invalid, "rejected", 1).await;
    keep_playing(&viewer, &seen, "rotated-2", "after the rejected reload").await;
    assert_eq!(signing_kid(&usher, prefix).await, "rotated-2");
    assert_eq!(
        config_reloads(&usher, "ok").await,
        2,
        "the bad config was not applied"
    );

    let metrics = get(&format!("{}/metrics", usher.admin.as_ref().unwrap()), &[])
        .await
        .text();
    let denials: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("usher_denials_total{"))
        .collect();
    assert!(denials.is_empty(), "usher refused nothing: {denials:?}");
}

#[tokio::test]
async fn a_query_carrier_player_keeps_playing_through_two_sighup_rotations() {
    rotate_twice_while_playing("query", "/q/").await;
}

#[tokio::test]
async fn a_cookie_carrier_player_keeps_playing_through_two_sighup_rotations() {
    rotate_twice_while_playing("cookie", "/c/").await;
}

/// hls.js (since 1.6) refuses a live playlist reload in which the URI of a segment it
/// already knows changed other than in its query ("media sequence mismatch"). So the path
/// carrier gives a playlist requested under a session token that same token again.
#[tokio::test]
async fn a_path_carrier_player_keeps_playing_through_two_sighup_rotations() {
    rotate_twice_while_playing("path", "/p/").await;
}

/// In the cookie carrier every playlist reload sets a fresh cookie, so once the new key
/// signs, the player's requests carry only new-key tokens, and the old key can go. This is
/// what shows that the player itself (not only a new viewer) moved to the new key, since
/// its HttpOnly cookie is out of the page's reach.
#[tokio::test]
async fn a_cookie_carrier_player_keeps_playing_when_the_old_key_is_retired() {
    retire_the_first_key_while_playing("cookie", "/c/").await;
}

/// hls.js keeps reloading the media playlist at the URI the master gave it, with the
/// session token minted then, signed with the old key. A key retired by a reload still
/// verifies session tokens of live sessions, so the player goes on.
#[tokio::test]
async fn a_query_carrier_player_keeps_playing_when_the_old_key_is_retired() {
    retire_the_first_key_while_playing("query", "/q/").await;
}

/// The path player's every URI carries its session's token, signed with the old key.
#[tokio::test]
async fn a_path_carrier_player_keeps_playing_when_the_old_key_is_retired() {
    retire_the_first_key_while_playing("path", "/p/").await;
}
