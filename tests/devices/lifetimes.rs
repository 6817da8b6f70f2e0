//! How long a session plays: with a controllable clock, idle timeouts, a live session
//! outlasting its ticket and a revoke stopping it; without rights, a playlist URI outliving
//! its token while the session plays; and an extension reaching a viewer already watching.

use serde_json::json;

use crate::support::admin::api;
use crate::support::cluster::status_reason;
use crate::support::inprocess::InProcess;
use crate::support::*;
use crate::{config, origin, reload, sell, Player};

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
