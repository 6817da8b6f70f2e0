//! Selling as an operator would, through every door (JSON API, PPV facade,
//! `sendVideoTicket.php`, `usher admin`): products that cannot play refuse the sale
//! (issue 11 item 2), extending a purchase moves the window, the ticket and the session
//! caps (item 5), PPV API fields that were ignored are checked (item 6), and a sale with
//! an idempotency key sells once (item 10).

mod support;

use std::collections::HashMap;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};
use support::admin::{api, facade, post_form, send, xml_text, HasAdmin};
use support::cli::usher_admin;
use support::inprocess::InProcess;
use support::*;
use usher::rights::date::{self, Edge};

const MEDIA: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXTINF:2,\nseg2.ts\n#EXT-X-ENDLIST\n";
const DAY: u64 = 86_400;

async fn show_origin() -> Origin {
    let mut objects = HashMap::new();
    for show in ["ep1", "ep2"] {
        objects.insert(format!("/shows/{show}/index.m3u8"), playlist(MEDIA));
        objects.insert(format!("/shows/{show}/seg1.ts"), segment(500));
        objects.insert(format!("/shows/{show}/seg2.ts"), segment(500));
    }
    spawn_origin(objects).await
}

/// Creates product `product` (its `code` in it) holding a new media `media` at
/// `/shows/<media>/`, or the existing one.
async fn product_with(usher: &impl HasAdmin, product: Value, media: &str) {
    let code = product["code"].as_str().unwrap().to_owned();
    let (status, body) = api(usher, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        usher,
        "POST",
        "/api/v1/media",
        Some(
            json!({"code": media, "prefix": format!("/shows/{media}/"), "playlist": "index.m3u8"}),
        ),
    )
    .await;
    assert!(status == 201 || status == 409, "{body}");
    let (status, body) = api(
        usher,
        "POST",
        &format!("/api/v1/products/{code}/media"),
        Some(json!({"media": media})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// POST /api/v1/buyers with an `Idempotency-Key` header.
async fn buy_with_key(usher: &impl HasAdmin, key: &str, body: &Value) -> (u16, Value) {
    buy_with_key_at(usher, "/api/v1/buyers", key, body).await
}

/// POST `path` (the buyers endpoint, however written) with an `Idempotency-Key` header.
async fn buy_with_key_at(
    usher: &impl HasAdmin,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, Value) {
    let request = Request::post(format!("{}{path}", usher.admin_url()))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let reply = send(request).await;
    (
        reply.status.as_u16(),
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

async fn buyers_of(usher: &impl HasAdmin, product: &str) -> Vec<Value> {
    let (status, body) = api(
        usher,
        "GET",
        &format!("/api/v1/buyers?product={product}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

async fn product_field(usher: &impl HasAdmin, code: &str, field: &str) -> Value {
    let (status, p) = api(usher, "GET", &format!("/api/v1/products/{code}"), None).await;
    assert_eq!(status, 200, "{p}");
    p[field].clone()
}

/// The claims of a ticket or session token signed with the test key.
fn claims_of(token: &str) -> usher::ticket::Claims {
    usher::ticket::verify_signature(&ring(), token).unwrap().1
}

/// The session token written into a playlist.
fn session_token(playlist: &str) -> String {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("seg1.ts"))
        .unwrap_or_else(|| panic!("a segment line in {playlist}"));
    line.split("token=").nth(1).unwrap().to_owned()
}

fn assert_refused_sale(reply: &Reply, reason: &str) {
    let body = reply.text();
    assert_eq!(reply.status, 409, "{body}");
    assert_eq!(
        xml_text(&body, "Status").as_deref(),
        Some("Failed"),
        "{body}"
    );
    assert_eq!(xml_text(&body, "Reason").as_deref(), Some(reason), "{body}");
}

// ---- item 2: products that cannot play do not sell --------------------------------------

#[tokio::test]
async fn item2_an_inactive_product_refuses_the_sale_in_every_interface() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with(
        &usher,
        json!({"code": "off", "name": "Switched off", "status": "inactive"}),
        "ep1",
    )
    .await;

    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "off", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "not_sellable");
    assert_eq!(body["reason"], "product_inactive");

    let reply = facade(
        &usher,
        "/api/ppv/addbuyer?code=off&media=ep1&email=a@example.com&notification=1",
    )
    .await;
    assert_refused_sale(&reply, "product_inactive");

    let reply = post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=a%40example.com&firstName=Ann&vidID=ep1&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_refused_sale(&reply, "product_inactive");

    let run = usher_admin(
        &usher,
        &[
            "buyer",
            "add",
            "--product",
            "off",
            "--email",
            "a@example.com",
        ],
    )
    .await;
    let line = run.failed();
    assert!(line.contains("product_inactive"), "{line}");

    assert!(
        buyers_of(&usher, "off").await.is_empty(),
        "nothing was sold"
    );
}

#[tokio::test]
async fn item2_a_sale_for_a_media_the_product_does_not_hold_is_refused() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with(&usher, json!({"code": "one", "name": "One"}), "ep1").await;
    product_with(&usher, json!({"code": "two", "name": "Two"}), "ep2").await;
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "one", "media": "ep2", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["reason"], "media_not_in_product", "{body}");
    assert!(
        buyers_of(&usher, "one").await.is_empty(),
        "nothing was sold"
    );
    let (status, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "one", "media": "ep1", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
}

#[tokio::test]
async fn item2_a_product_past_its_availability_or_window_refuses_but_a_future_one_presells() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let now = usher::clock::unix_now();
    product_with(
        &usher,
        json!({"code": "gone", "name": "Gone", "available_from": now - 10 * DAY, "available_until": now - DAY}),
        "ep1",
    )
    .await;
    product_with(
        &usher,
        json!({"code": "over", "name": "Over", "access_expire": now - DAY}),
        "ep1",
    )
    .await;
    product_with(
        &usher,
        json!({"code": "ahead", "name": "Next week", "available_from": now + 7 * DAY}),
        "ep2",
    )
    .await;

    for (product, reason) in [("gone", "product_unavailable"), ("over", "window_ended")] {
        let (status, body) = api(
            &usher,
            "POST",
            "/api/v1/buyers",
            Some(json!({"product": product, "email": "a@example.com"})),
        )
        .await;
        assert_eq!(status, 409, "{product}: {body}");
        assert_eq!(body["reason"], reason, "{product}: {body}");
        let reply = facade(
            &usher,
            &format!("/api/ppv/addbuyer?code={product}&media=ep1&email=a@example.com"),
        )
        .await;
        assert_refused_sale(&reply, reason);
    }
    // A buyer's own end in the past could never play either.
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "ahead", "email": "a@example.com", "access_expire": now - 60})),
    )
    .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (409, json!("window_ended"))
    );

    // Pre-selling a future event is a feature: it sells, and says when access starts.
    let (status, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "ahead", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    assert!(sold["access_starts_at"].as_u64().unwrap() >= now + 7 * DAY);
    let played = get(sold["play_url"].as_str().unwrap(), &[]).await;
    assert_eq!(played.status, 403);
    assert_eq!(played.reason(), "rights_not_started");

    // The video-ticket call sells the media through a product that can sell it now.
    product_with(&usher, json!({"code": "open", "name": "Open"}), "ep1").await;
    let reply = post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=b%40example.com&firstName=Bob&vidID=ep1&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(get(&reply.text(), &[]).await.status, 200);
    assert_eq!(buyers_of(&usher, "open").await.len(), 1);
}

// ---- item 5: extending a purchase extends it ---------------------------------------------

#[tokio::test]
async fn item5_extending_a_purchase_moves_the_window_the_ticket_the_session_cap_and_access_ends_at()
{
    let origin = show_origin().await;
    let usher = InProcess::start(&rights_config(&origin.url(), "")).await;
    product_with(
        &usher,
        json!({"code": "rental", "name": "Two-hour rental", "hours": 2}),
        "ep1",
    )
    .await;
    let bought = usher.now();
    let (status, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "rental", "media": "ep1", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    let old_end = bought + 2 * 3600;
    assert_eq!(sold["access_ends_at"], old_end);
    assert_eq!(sold["access_starts_at"], bought);
    let old_url = sold["play_url"].as_str().unwrap().to_owned();
    let hash = sold["hash"].as_str().unwrap().to_owned();
    assert_eq!(get(&old_url, &[]).await.status, 200);

    // Past the old end: refused. Then extended by PATCH to three days.
    usher.advance(3 * 3600);
    assert_eq!(get(&old_url, &[]).await.status, 403);
    let new_end = bought + 3 * DAY;
    let (status, patched) = api(
        &usher,
        "PATCH",
        &format!("/api/v1/buyers/{hash}"),
        Some(json!({"access_expire": new_end})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["access_ends_at"], new_end);
    let ticket = patched["ticket"].as_str().unwrap();
    assert!(
        claims_of(ticket).exp >= new_end,
        "the reissued ticket outlasts the new end"
    );
    let replayed = get(&old_url, &[]).await;
    assert_eq!(
        replayed.status,
        200,
        "the link the buyer already holds plays past the old end: {}",
        replayed.text()
    );
    let new_url = patched["play_url"].as_str().unwrap().to_owned();
    let playlist = get(&new_url, &[]).await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    assert_eq!(
        claims_of(&session_token(&playlist.text())).cap,
        new_end,
        "session tokens are capped at the new end"
    );
    let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(shown["access_ends_at"], new_end);
    assert_eq!(
        buyers_of(&usher, "rental").await[0]["access_ends_at"],
        new_end
    );

    // The facade's updatebuyer, on a one-day purchase, with a date as the PPV API sends it.
    product_with(
        &usher,
        json!({"code": "day", "name": "Day pass", "period": 1}),
        "ep2",
    )
    .await;
    let reply = facade(
        &usher,
        "/api/ppv/addbuyer?code=day&media=ep2&email=b@example.com&notification=1",
    )
    .await;
    let body = reply.text();
    assert_eq!(reply.status, 200, "{body}");
    let day_hash = xml_text(&body, "Hash").unwrap();
    let day_end = usher.now() + DAY;
    assert_eq!(xml_text(&body, "AccessEndsAt"), Some(date::format(day_end)));
    usher.advance(2 * DAY);
    let until = date::format(usher.now() + 5 * DAY)[..10].to_owned();
    let reply = facade(
        &usher,
        &format!("/api/ppv/updatebuyer?code=day&hash={day_hash}&access_expire={until}"),
    )
    .await;
    let body = reply.text();
    assert_eq!(reply.status, 200, "{body}");
    assert_eq!(xml_text(&body, "Status").as_deref(), Some("Success"));
    let extended = date::parse(&until, Edge::End).unwrap();
    assert_eq!(
        xml_text(&body, "AccessEndsAt"),
        Some(date::format(extended))
    );
    let ticket = xml_text(&body, "Ticket").unwrap();
    assert!(claims_of(&ticket).exp >= extended);
    let played = get(&xml_text(&body, "PlayUrl").unwrap(), &[]).await;
    assert_eq!(played.status, 200, "granted a day past the old end");
    let listed = facade(&usher, "/api/ppv/listbuyers?code=day&media=ep2").await;
    assert_eq!(
        xml_text(&listed.text(), "AccessExpirationDate"),
        Some(date::format(extended))
    );

    // An extension the product cannot honour is refused, not answered with a no-op.
    let (status, _) = api(
        &usher,
        "PATCH",
        "/api/v1/products/day",
        Some(json!({"available_until": usher.now() + 10 * DAY})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        &usher,
        "PATCH",
        &format!("/api/v1/buyers/{day_hash}"),
        Some(json!({"access_expire": usher.now() + 20 * DAY})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "access_expire");

    // A product cut short after the sale does not block a change that leaves the end
    // alone: the buyer's new address is taken.
    let (status, _) = api(
        &usher,
        "PATCH",
        "/api/v1/products/day",
        Some(json!({"available_until": usher.now() + 3600})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        &usher,
        "PATCH",
        &format!("/api/v1/buyers/{day_hash}"),
        Some(json!({"email": "new@example.com"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "new@example.com");
}

#[tokio::test]
async fn item5_extending_a_product_keeps_the_links_already_sent_playing() {
    let origin = show_origin().await;
    let usher = InProcess::start(&rights_config(&origin.url(), "")).await;
    product_with(
        &usher,
        json!({"code": "rental", "name": "Two-hour rental", "hours": 2}),
        "ep1",
    )
    .await;
    let (status, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "rental", "media": "ep1", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    let emailed = sold["play_url"].as_str().unwrap().to_owned();
    let hash = sold["hash"].as_str().unwrap().to_owned();
    usher.advance(3 * 3600);
    assert_eq!(get(&emailed, &[]).await.status, 403, "past the two hours");

    let (status, body) = api(
        &usher,
        "PATCH",
        "/api/v1/products/rental",
        Some(json!({"hours": 48})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let replayed = get(&emailed, &[]).await;
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert!(shown["access_ends_at"].as_u64().unwrap() > usher.now());
}

// ---- item 6: subscription_type, clearing limits, updatebuyer's code ----------------------

#[tokio::test]
async fn item6_subscription_type_is_validated_and_password_or_collection_refused() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let ok = facade(
        &usher,
        "/api/ppv/create?name=ppv&subscription_type=subscription",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    for kind in ["password", "collection", "pay-per-view"] {
        let reply = facade(
            &usher,
            &format!("/api/ppv/create?name=ppv&subscription_type={kind}"),
        )
        .await;
        let body = reply.text();
        assert_eq!(reply.status, 400, "{kind}: {body}");
        assert!(
            xml_text(&body, "Message")
                .unwrap()
                .starts_with("subscription_type: "),
            "{body}"
        );
        let (status, body) = api(
            &usher,
            "POST",
            "/api/v1/products",
            Some(json!({"name": "x", "subscription_type": kind})),
        )
        .await;
        assert_eq!(
            (status, body["field"].clone()),
            (400, json!("subscription_type"))
        );
    }
    let reply = facade(&usher, "/api/ppv/create?name=ppv&collection_type=protect").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
}

#[tokio::test]
async fn item6_device_ban_0_or_null_and_a_json_null_clear_a_limit() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let code = xml_text(
        &facade(&usher, "/api/ppv/create?name=ppv&device_ban=1")
            .await
            .text(),
        "Code",
    )
    .unwrap();
    let code = code.as_str();
    assert_eq!(product_field(&usher, code, "max_devices").await, 1);
    for clear in ["0", "null"] {
        let reply = facade(
            &usher,
            &format!("/api/ppv/update?code={code}&device_ban={clear}"),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            product_field(&usher, code, "max_devices").await,
            Value::Null,
            "device_ban={clear}"
        );
        facade(&usher, &format!("/api/ppv/update?code={code}&device_ban=1")).await;
        assert_eq!(product_field(&usher, code, "max_devices").await, 1);
    }
    let path = format!("/api/v1/products/{code}");
    let (status, _) = api(
        &usher,
        "PATCH",
        &path,
        Some(json!({"max_devices": 3, "max_sessions": 2})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, p) = api(
        &usher,
        "PATCH",
        &path,
        Some(json!({"max_devices": null, "max_sessions": null})),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (p["max_devices"].clone(), p["max_sessions"].clone()),
        (Value::Null, Value::Null)
    );
    let (_, a) = api(
        &usher,
        "PUT",
        "/api/v1/accounts/acc",
        Some(json!({"max_devices": 2})),
    )
    .await;
    assert_eq!(a["max_devices"], 2);
    let (_, a) = api(
        &usher,
        "PUT",
        "/api/v1/accounts/acc",
        Some(json!({"max_devices": null})),
    )
    .await;
    assert_eq!(a["max_devices"], Value::Null);
}

#[tokio::test]
async fn item6_updatebuyer_with_another_products_code_fails_naming_code() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with(&usher, json!({"code": "mine", "name": "Mine"}), "ep1").await;
    product_with(&usher, json!({"code": "other", "name": "Other"}), "ep2").await;
    let (_, sold) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "mine", "email": "a@example.com"})),
    )
    .await;
    let hash = sold["hash"].as_str().unwrap();
    let reply = facade(
        &usher,
        &format!("/api/ppv/updatebuyer?code=other&hash={hash}&access_expire=2031-12-31"),
    )
    .await;
    let body = reply.text();
    assert_eq!(reply.status, 400, "{body}");
    assert!(
        xml_text(&body, "Message").unwrap().starts_with("code: "),
        "{body}"
    );
    let (status, body) = api(
        &usher,
        "PATCH",
        &format!("/api/v1/buyers/{hash}"),
        Some(json!({"code": "other", "name": "X"})),
    )
    .await;
    assert_eq!((status, body["field"].clone()), (400, json!("code")));
    let (_, shown) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(shown["access_expire"], Value::Null, "nothing was written");
    // Its own code is fine.
    let ok = facade(
        &usher,
        &format!("/api/ppv/updatebuyer?code=mine&hash={hash}&name=Ann"),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

/// A sale naming two different products, `code` and `product`, is refused (400 naming
/// `product`) through the JSON API and the facade, and sells neither: it would bill one
/// and grant the other. The same product in both sells it.
#[tokio::test]
async fn a_sale_naming_two_different_products_is_refused_naming_product() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with(&usher, json!({"code": "cheap", "name": "Cheap"}), "ep1").await;
    product_with(&usher, json!({"code": "dear", "name": "Dear"}), "ep2").await;

    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"code": "cheap", "product": "dear", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("product")),
        "{body}"
    );
    let reply = facade(
        &usher,
        "/api/ppv/addbuyer?code=cheap&product=dear&email=a%40example.com",
    )
    .await;
    let text = reply.text();
    assert_eq!(reply.status, 400, "{text}");
    assert!(
        xml_text(&text, "Message").unwrap().starts_with("product: "),
        "{text}"
    );
    assert!(buyers_of(&usher, "cheap").await.is_empty(), "nothing sold");
    assert!(buyers_of(&usher, "dear").await.is_empty(), "nothing sold");

    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"code": "dear", "product": "dear", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["product"], "dear", "{body}");
}

// ---- item 10: idempotent sales -----------------------------------------------------------

#[tokio::test]
async fn item10_a_double_submitted_video_ticket_sells_once_and_first_name_is_required() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with(&usher, json!({"code": "movie", "name": "Movie"}), "ep1").await;
    let form = format!(
        "email=a%40example.com&firstName=Ann&vidID=ep1&order_id=order-77&apikey={ADMIN_TOKEN}"
    );
    let first = post_form(&usher, "/sendVideoTicket.php", &form).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = post_form(&usher, "/sendVideoTicket.php", &form).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.text(), first.text(), "the same link, the same ticket");
    assert_eq!(buyers_of(&usher, "movie").await.len(), 1, "sold once");

    let other = post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!(
            "email=z%40example.com&firstName=Zed&vidID=ep1&order_id=order-77&apikey={ADMIN_TOKEN}"
        ),
    )
    .await;
    assert_eq!(other.status, 422, "{}", other.text());
    assert_eq!(buyers_of(&usher, "movie").await.len(), 1);

    let nameless = post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=a%40example.com&vidID=ep1&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_eq!(nameless.status, 400, "{}", nameless.text());
    assert!(
        xml_text(&nameless.text(), "Message")
            .unwrap()
            .starts_with("firstName: "),
        "{}",
        nameless.text()
    );
}

#[tokio::test]
async fn item10_an_idempotency_key_answers_the_first_sale_again_even_after_a_restart() {
    let origin = show_origin().await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let config = rights_config(&origin.url(), "");
    let mut usher = Usher::start(&config, &["--data-dir", &data_dir]);
    product_with(&usher, json!({"code": "movie", "name": "Movie"}), "ep1").await;
    let order = json!({"product": "movie", "media": "ep1", "email": "a@example.com"});
    let (status, first) = buy_with_key(&usher, "k-1", &order).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = buy_with_key(&usher, "k-1", &order).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again, first, "the first sale, answered again");
    let (status, slashed) = buy_with_key_at(&usher, "/api/v1/buyers/", "k-1", &order).await;
    assert_eq!(status, 201, "{slashed}");
    assert_eq!(slashed, first, "the path as the router reads it");

    // The key in the body (order_id) is the same key.
    let mut with_order_id = order.clone();
    with_order_id["order_id"] = json!("k-1");
    let (status, body) = api(&usher, "POST", "/api/v1/buyers", Some(with_order_id)).await;
    assert_eq!((status, body["hash"].clone()), (201, first["hash"].clone()));

    usher.kill();
    let usher = Usher::start(&config, &["--data-dir", &data_dir]);
    let (status, after) = buy_with_key(&usher, "k-1", &order).await;
    assert_eq!(status, 201, "{after}");
    assert_eq!(after["hash"], first["hash"], "the key survived the restart");
    assert_eq!(after["ticket"], first["ticket"]);

    let (status, body) = buy_with_key(
        &usher,
        "k-1",
        &json!({"product": "movie", "media": "ep1", "email": "b@example.com"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "idempotency_key_reused");
    assert_eq!(buyers_of(&usher, "movie").await.len(), 1);

    // The facade's addbuyer takes the header too.
    let request = |key: &str| {
        Request::get(format!(
            "{}/api/ppv/addbuyer?code=movie&media=ep1&email=c@example.com&apikey={ADMIN_TOKEN}",
            usher.admin_url()
        ))
        .header("idempotency-key", key)
        .body(Full::new(Bytes::new()))
        .unwrap()
    };
    let one = send(request("k-2")).await;
    let two = send(request("k-2")).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(xml_text(&one.text(), "Hash"), xml_text(&two.text(), "Hash"));
    assert_eq!(buyers_of(&usher, "movie").await.len(), 2);

    // And `usher admin buyer add --order-id`.
    let args = [
        "buyer",
        "add",
        "--product",
        "movie",
        "--media",
        "ep1",
        "--email",
        "d@example.com",
        "--order-id",
        "cli-1",
    ];
    let once = usher_admin(&usher, &args).await;
    let twice = usher_admin(&usher, &args).await;
    assert_eq!(once.ok(), twice.ok(), "the same hash and play URL");
    assert_eq!(buyers_of(&usher, "movie").await.len(), 3);
}

#[tokio::test]
async fn item10_an_order_id_in_the_query_of_a_sale_is_refused_not_ignored() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with(&usher, json!({"code": "movie", "name": "Movie"}), "ep1").await;
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers?order_id=order-7",
        Some(json!({"product": "movie", "media": "ep1", "email": "a@example.com"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "order_id", "{body}");
    assert!(
        buyers_of(&usher, "movie").await.is_empty(),
        "nothing was sold"
    );
}

#[tokio::test]
async fn item10_concurrent_identical_submits_sell_once() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with(&usher, json!({"code": "movie", "name": "Movie"}), "ep1").await;
    let order = json!({"product": "movie", "media": "ep1", "email": "a@example.com"});
    let answers = futures_util::future::join_all(
        (0..8).map(|_| buy_with_key(&usher, "thank-you-page-1", &order)),
    )
    .await;
    let hash = answers[0].1["hash"].clone();
    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body["hash"], hash);
        assert_eq!(body["ticket"], answers[0].1["ticket"]);
    }
    assert_eq!(buyers_of(&usher, "movie").await.len(), 1, "sold once");
}

// ---- dates as Unix seconds, costs ----------------------------------------------------------

/// 9999-12-31 23:59:59 UTC, the last second a date text names.
const LATEST: u64 = 253_402_300_799;

/// A date text past the year 9999 is refused naming its field, and so now are Unix seconds
/// past it (they were stored as given), and negative ones, as before; the last second of
/// 9999 is taken either way.
#[tokio::test]
async fn unix_seconds_past_the_year_9999_are_refused_as_a_date_text_is() {
    let origin = show_origin().await;
    let usher = InProcess::start(&rights_config(&origin.url(), "")).await;
    let past = (LATEST + 1).to_string();
    for field in ["available_until", "access_start", "access_expire"] {
        for value in [
            json!("10000-01-01"),
            json!(past),
            json!(LATEST + 1),
            json!("-1"),
            json!(-1),
        ] {
            let mut product = json!({"name": "x"});
            product[field] = value.clone();
            let (status, body) = api(&usher, "POST", "/api/v1/products", Some(product)).await;
            assert_eq!(
                (status, body["field"].as_str()),
                (400, Some(field)),
                "{field} = {value}: {body}"
            );
        }
        let reply = facade(&usher, &format!("/api/ppv/create?name=x&{field}={past}")).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        let message = xml_text(&reply.text(), "Message").unwrap();
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
    }
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "last", "name": "x", "access_expire": LATEST})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["access_expire"],
        json!(date::parse("9999-12-31", Edge::End).unwrap())
    );
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "text", "name": "x", "access_expire": "9999-12-31"})),
    )
    .await;
    assert_eq!(
        (status, body["access_expire"].clone()),
        (201, json!(LATEST))
    );
    // A buyer's window is read the same way.
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "last", "email": "a@example.com", "access_expire": LATEST + 1})),
    )
    .await;
    assert_eq!(
        (status, body["field"].clone()),
        (400, json!("access_expire"))
    );
    let (status, body) = api(&usher, "GET", "/api/v1/buyers?product=last", None).await;
    assert_eq!(
        (status, body["total"].clone()),
        (200, json!(0)),
        "sold nothing"
    );
}

/// `cost` is an amount from 0 to 10^12 with at most 6 decimals: non-finite and absurd
/// values are refused naming it, and `-0` is 0, in the JSON API and the facade.
#[tokio::test]
async fn cost_is_an_amount_up_to_a_trillion_and_minus_zero_is_zero() {
    let origin = show_origin().await;
    let usher = InProcess::start(&rights_config(&origin.url(), "")).await;
    for value in [
        json!("1e308"),
        json!(1e308),
        json!("1000000000000.01"),
        json!("inf"),
        json!("NaN"),
        json!("-1"),
        // More decimals than a price has: a slip, also where it would round into range.
        json!("1e-300"),
        json!("0.1234567"),
        json!("1000000000000.00000000001"),
    ] {
        let (status, body) = api(
            &usher,
            "POST",
            "/api/v1/products",
            Some(json!({"name": "x", "cost": value})),
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some("cost")),
            "{value}: {body}"
        );
    }
    let reply = facade(&usher, "/api/ppv/create?name=x&cost=1e308").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = xml_text(&reply.text(), "Message").unwrap();
    assert!(message.starts_with("cost: "), "{message}");
    let (status, body) = api(&usher, "GET", "/api/v1/products", None).await;
    assert_eq!((status, body["total"].clone()), (200, json!(0)), "{body}");

    for (code, given, kept) in [
        ("a", json!("-0"), "0"),
        ("b", json!(-0.0), "0"),
        ("c", json!("100.00"), "100.00"),
        ("d", json!("1000000000000"), "1000000000000"),
        ("e", json!("+1.5e2"), "150"),
        ("g", json!("2.5e-1"), "0.25"),
    ] {
        let (status, body) = api(
            &usher,
            "POST",
            "/api/v1/products",
            Some(json!({"code": code, "name": "x", "cost": given})),
        )
        .await;
        assert_eq!(
            (status, body["cost"].clone()),
            (201, json!(kept)),
            "{given}"
        );
        assert_eq!(product_field(&usher, code, "cost").await, json!(kept));
    }
    let created = facade(&usher, "/api/ppv/create?name=x&code=f&cost=-0").await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(xml_text(&created.text(), "Cost").as_deref(), Some("0"));
    let listed = facade(&usher, "/api/ppv/list").await;
    assert!(!listed.text().contains("<Cost>-0"), "{}", listed.text());
}
