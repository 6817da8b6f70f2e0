//! Sessions: both concurrency policies, session tokens tolerating the network's prefix and
//! refusing copies, and a browser that names no device reloading into its own session
//! (under a product's limit or an account's), and an answer that sets the device cookie
//! going out private for shared caches.

use std::collections::HashMap;

use serde_json::json;

use crate::support::admin::api;
use crate::support::cluster::status_reason;
use crate::support::*;
use crate::{config, origin, sell, Player};

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

/// The device cookie usher hands a browser names that browser: an answer carrying it may
/// not be kept by a shared cache in front of usher (a CDN would hand the cookie, and the
/// device, to the next viewer of the URL), whatever the origin says. Here the origin
/// answers the play URL 404 and lets any cache keep that for a minute, as origins do
/// while a live event has not begun.
#[tokio::test]
async fn an_answer_that_sets_the_device_cookie_goes_out_private() {
    let mut not_yet = playlist("not yet").with_header("cache-control", "public, max-age=60");
    not_yet.status = Some(404);
    let origin = spawn_origin(HashMap::from([("/event/index.m3u8".to_owned(), not_yet)])).await;
    let usher = Usher::start(&config(&origin), &[]);
    let (play, _) = sell(
        &usher,
        json!({"code": "one", "name": "One screen", "device_ban": true}),
    )
    .await;
    let reply = get(&play, &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    let cookie = reply.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("usher_device="), "{cookie}");
    assert_eq!(reply.headers["cache-control"], "private, max-age=60");
}
