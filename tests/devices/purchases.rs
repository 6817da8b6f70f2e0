//! An account's several purchases: which one a device plays under (a pass, a rental for
//! later, a second purchase for a second device), when a rental's hours start, what a
//! session past its purchase may not carry on under, and an outage met under the next
//! purchase being the answer.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::admin::api;
use crate::support::cluster::status_reason;
use crate::support::inprocess::InProcess;
use crate::support::redis::Redis;
use crate::support::*;
use crate::{config, origin, reload, sell, Player};

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
