//! The PPV REST API facade answers the document's sample queries with responses of the
//! same shape, and a whole sale round-trips over HTTP: create → addmedia → addbuyer →
//! play through usher → deletebuyer → refused. Also the video-ticket POST.

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::admin::{api, facade, post_form, xml_text};
use support::*;

const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n";

async fn start() -> (Origin, Usher) {
    let mut objects = HashMap::new();
    objects.insert("/vod/xxxxxxxx/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/vod/xxxxxxxx/seg1.ts".to_owned(), segment(500));
    let origin = spawn_origin(objects).await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    // Media are uploaded outside the PPV API; here the JSON API plays the upload.
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "xxxxxxxx", "title": "Тестовое видео", "prefix": "/vod/xxxxxxxx/", "playlist": "index.m3u8"})),
    )
    .await;
    assert_eq!(status, 201);
    (origin, usher)
}

fn assert_success(reply: &Reply) -> String {
    let body = reply.text();
    assert_eq!(reply.status, 200, "{body}");
    assert_eq!(
        reply.headers["content-type"],
        "application/xml; charset=utf-8"
    );
    assert!(body.starts_with("<?xml"), "{body}");
    assert_eq!(
        xml_text(&body, "Status").as_deref(),
        Some("Success"),
        "{body}"
    );
    body
}

/// The element names of the first `<Item>` of a body, in order.
fn item_elements(body: &str) -> Vec<String> {
    let item = &body[body.find("<Item>").unwrap() + 6..body.find("</Item>").unwrap()];
    item.lines()
        .filter_map(|l| {
            let l = l.trim();
            let name = l.strip_prefix('<')?;
            let end = name.find(['>', '/'])?;
            (!name.starts_with('/')).then(|| name[..end].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn sample_queries_answer_in_the_documents_shape() {
    let (_origin, usher) = start().await;

    let created = facade(
        &usher,
        "/api/ppv/create?name=ppv&type=group&cost=100.00&period=1&description=some%20ftext",
    )
    .await;
    let body = assert_success(&created);
    assert_eq!(
        item_elements(&body),
        [
            "Code",
            "Name",
            "Type",
            "Cost",
            "Period",
            "AccessExpirationDate",
            "Description"
        ]
    );
    let code = xml_text(&body, "Code").unwrap();
    assert_eq!(code.len(), 8);
    assert_eq!(xml_text(&body, "Type").as_deref(), Some("group"));
    assert_eq!(
        xml_text(&body, "Description").as_deref(),
        Some("some ftext")
    );

    let updated = facade(&usher, &format!("/api/ppv/update?code={code}&name=payperview&cost=500.00&period=10&description=text&access_expire=2030-12-12")).await;
    let body = assert_success(&updated);
    assert_eq!(
        item_elements(&body),
        [
            "Code",
            "Name",
            "Cost",
            "Period",
            "AccessExpirationDate",
            "Description"
        ]
    );
    assert_eq!(
        xml_text(&body, "AccessExpirationDate").as_deref(),
        Some("2030-12-12 23:59:59"),
        "a date alone ends at 23:59:59"
    );

    let added = facade(
        &usher,
        &format!("/api/ppv/addmedia?code={code}&media=xxxxxxxx"),
    )
    .await;
    let body = assert_success(&added);
    assert!(body.contains("<Medias>"));
    assert_eq!(xml_text(&body, "Title").as_deref(), Some("Тестовое видео"));

    let listed = facade(&usher, "/api/ppv/list").await;
    let body = assert_success(&listed);
    assert_eq!(
        item_elements(&body),
        [
            "Name",
            "Code",
            "Cost",
            "Period",
            "AccessExpirationDate",
            "AmountFiles",
            "Type",
            "AddedDate",
            "Description"
        ]
    );
    assert_eq!(xml_text(&body, "AmountFiles").as_deref(), Some("1"));

    let media = facade(&usher, &format!("/api/ppv/listmedia?code={code}")).await;
    assert_eq!(
        xml_text(&assert_success(&media), "Code").as_deref(),
        Some("xxxxxxxx")
    );

    let buyer = facade(&usher, &format!("/api/ppv/addbuyer?code={code}&media=xxxxxxxx&email=example@example.com&notification=1&access_start=2026-01-01")).await;
    let body = assert_success(&buyer);
    let elements = item_elements(&body);
    assert_eq!(
        &elements[..6],
        [
            "Email",
            "Hash",
            "Period",
            "AccessStartDate",
            "AccessExpirationDate",
            "DatePurchase"
        ]
    );
    assert_eq!(
        xml_text(&body, "AccessStartDate").as_deref(),
        Some("2026-01-01 00:00:01"),
        "a date alone starts at 00:00:01"
    );
    let hash = xml_text(&body, "Hash").unwrap();

    facade(
        &usher,
        &format!(
            "/api/ppv/addbuyer?code={code}&media=xxxxxxxx&email=example@example.com&notification=0"
        ),
    )
    .await;
    let buyers = facade(
        &usher,
        &format!(
            "/api/ppv/listbuyers?code={code}&media=xxxxxxxx&email=example@example.com&ver=1.1"
        ),
    )
    .await;
    let body = assert_success(&buyers);
    assert_eq!(
        body.matches("<Item>").count(),
        2,
        "email is not unique: {body}"
    );
    assert_eq!(
        item_elements(&body),
        [
            "Email",
            "Hash",
            "Period",
            "AccessExpirationDate",
            "DatePurchase",
            "AccessEndsAt"
        ]
    );

    let renewed = facade(
        &usher,
        &format!(
            "/api/ppv/updatebuyer?code={code}&hash={hash}&activation=4&access_expire=2031-12-31"
        ),
    )
    .await;
    assert_eq!(
        xml_text(&assert_success(&renewed), "Message").as_deref(),
        Some("Recovery code is updated")
    );
    let deleted = facade(
        &usher,
        &format!("/api/ppv/deletebuyer?code={code}&hash={hash}"),
    )
    .await;
    assert_eq!(
        xml_text(&assert_success(&deleted), "Message").as_deref(),
        Some("Recovery code is deleted")
    );

    let contacts = facade(
        &usher,
        "/api/ppv/updatecontacts?name=Alex&phone=%2B0%20000%20000%20000",
    )
    .await;
    let body = assert_success(&contacts);
    assert_eq!(xml_text(&body, "Phone").as_deref(), Some("+0 000 000 000"));
    assert_eq!(
        xml_text(&body, "Message").as_deref(),
        Some("Updated success")
    );
    assert!(body.contains("<Email/>"));
    let shown = facade(&usher, "/api/ppv/contacts").await;
    assert_eq!(
        xml_text(&assert_success(&shown), "Name").as_deref(),
        Some("Alex")
    );

    // The buyers above bought that media: usher refuses to take it out of the product
    // unless forced (the document's deletemedia has no such guard).
    let refused = facade(
        &usher,
        &format!("/api/ppv/deletemedia?code={code}&media=xxxxxxxx"),
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_success(
        &facade(
            &usher,
            &format!("/api/ppv/deletemedia?code={code}&media=xxxxxxxx&force=1"),
        )
        .await,
    );
    // A buyer still holds the subscription: usher refuses to take it away unless forced
    // (the document's delete has no such guard).
    let refused = facade(&usher, &format!("/api/ppv/delete?code={code}")).await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(
        xml_text(&refused.text(), "Status").as_deref(),
        Some("Failed")
    );
    assert_success(&facade(&usher, &format!("/api/ppv/delete?code={code}&force=1")).await);
    let gone = facade(&usher, &format!("/api/ppv/listmedia?code={code}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(xml_text(&gone.text(), "Status").as_deref(), Some("Failed"));
}

#[tokio::test]
async fn a_sale_round_trips_through_the_facade_and_usher() {
    let (_origin, usher) = start().await;
    let code = xml_text(
        &facade(&usher, "/api/ppv/create?name=Rental&period=2")
            .await
            .text(),
        "Code",
    )
    .unwrap();
    assert_success(
        &facade(
            &usher,
            &format!("/api/ppv/addmedia?code={code}&media=xxxxxxxx"),
        )
        .await,
    );
    let body = assert_success(&facade(&usher, &format!("/api/ppv/addbuyer?code={code}&media=xxxxxxxx&email=viewer@example.com&notification=1")).await);
    let play = xml_text(&body, "PlayUrl").unwrap();
    let hash = xml_text(&body, "Hash").unwrap();
    let reply = get(&play, &[]).await;
    assert_eq!(reply.status, 200, "{play}");
    let segment = resolve(
        &play,
        reply
            .text()
            .lines()
            .find(|l| l.starts_with("seg1.ts"))
            .unwrap(),
    );
    assert_eq!(get(&segment, &[]).await.status, 200);

    assert_success(
        &facade(
            &usher,
            &format!("/api/ppv/deletebuyer?code={code}&hash={hash}"),
        )
        .await,
    );
    let refused = get(&segment, &[]).await;
    assert_eq!(
        (refused.status.as_u16(), refused.reason().as_str()),
        (403, "no_rights")
    );
    assert_eq!(get(&play, &[]).await.reason(), "no_rights");
}

#[tokio::test]
async fn bad_calls_fail_with_a_message() {
    let (_origin, usher) = start().await;
    let url = format!(
        "{}/api/ppv/list?apikey=wrong-key-wrong-key",
        usher.admin.as_ref().unwrap()
    );
    let reply = get(&url, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(xml_text(&reply.text(), "Status").as_deref(), Some("Failed"));
    let reply = facade(&usher, "/api/ppv/create?type=group").await;
    assert_eq!(reply.status, 400);
    assert!(xml_text(&reply.text(), "Message").unwrap().contains("name"));
    let reply = facade(&usher, "/api/ppv/create?name=x&access_expire=2018-13-45").await;
    assert!(xml_text(&reply.text(), "Message")
        .unwrap()
        .contains("access_expire"));
    assert_eq!(facade(&usher, "/api/ppv/frobnicate").await.status, 404);
}

/// A facade call with a credential in the query is checked before its body is read (a
/// wrong one is refused whatever the body); a form body, the only place left for a
/// credential otherwise, is read up to 64 KiB, not the JSON API's 1 MiB.
#[tokio::test]
async fn a_facade_body_is_read_only_up_to_a_form_s_size_or_after_the_credential() {
    let (_origin, usher) = start().await;
    let big = format!("name={}", "x".repeat(200 << 10));
    let wrong = post_form(&usher, "/api/ppv/create?apikey=wrong-key-wrong-key", &big).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let anonymous = post_form(&usher, "/api/ppv/create", &big).await;
    assert_eq!(anonymous.status, 400, "{}", anonymous.text());
    assert!(anonymous.text().contains("65536"), "{}", anonymous.text());
    // A key sent in the form itself still works.
    let in_form = post_form(
        &usher,
        "/api/ppv/create",
        &format!("apikey={ADMIN_TOKEN}&name=Movie"),
    )
    .await;
    assert_eq!(in_form.status, 200, "{}", in_form.text());
}

#[tokio::test]
async fn the_video_ticket_post_returns_a_link_that_plays() {
    let (_origin, usher) = start().await;
    let code = xml_text(
        &facade(&usher, "/api/ppv/create?name=Movie").await.text(),
        "Code",
    )
    .unwrap();
    facade(
        &usher,
        &format!("/api/ppv/addmedia?code={code}&media=xxxxxxxx"),
    )
    .await;
    let reply = post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=name%40techwerks.tv&firstName=Bill&vidID=xxxxxxxx&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let link = reply.text();
    assert!(link.starts_with(&usher.url), "{link}");
    assert_eq!(get(&link, &[]).await.status, 200);
    let (_, buyers) = api(
        &usher,
        "GET",
        "/api/v1/buyers?email=name@techwerks.tv",
        None,
    )
    .await;
    assert_eq!(buyers["items"][0]["name"], "Bill");
    let unknown = post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=a%40b.c&firstName=A&vidID=nope&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_eq!(unknown.status, 404);
}

/// A control character (a NUL, U+0001) in any field is refused with 400 naming the field,
/// through either door, so no stored name or address can make the facade's XML
/// unreadable; and the refusal itself is well-formed XML.
#[tokio::test]
async fn a_control_character_in_a_field_is_refused_naming_it() {
    let (_origin, usher) = start().await;
    let reply = facade(&usher, "/api/ppv/create?name=Evil%01%3Cb%3E").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = xml_text(&reply.text(), "Message").unwrap();
    assert!(message.starts_with("name: "), "{message}");
    assert!(!reply.text().contains('\u{1}'), "{}", reply.text());
    let reply = post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=a%00%40b.c&firstName=A&vidID=xxxxxxxx&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"name": "Movie", "description": "a\u{0}b"})),
    )
    .await;
    assert_eq!((status, &body["field"]), (400, &json!("description")));
    // A JSON string that is a lone NUL is not taken for `null` either.
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"name": "\u{0}"})),
    )
    .await;
    assert_eq!((status, &body["field"]), (400, &json!("name")));
    let (status, body) = api(&usher, "GET", "/api/v1/buyers?email=a%00b", None).await;
    assert_eq!((status, &body["field"]), (400, &json!("email")));
    let (_, products) = api(&usher, "GET", "/api/v1/products", None).await;
    assert_eq!(products["items"], json!([]), "nothing was created");
}

/// A store failure's own text (it can name tables, files, hosts) goes to the log only:
/// the facade's answer says the store failed, as the JSON API does, and no more.
#[tokio::test]
async fn a_store_failure_answers_without_the_stores_own_text() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let origin = spawn_origin(HashMap::new()).await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &["--data-dir", data_dir]);
    assert_success(&facade(&usher, "/api/ppv/list").await);
    // The products table taken away underneath: each read of it fails in SQLite with
    // "no such table: products".
    let db = rusqlite::Connection::open(data.path().join("usher.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute_batch("ALTER TABLE products RENAME TO products_gone")
        .unwrap();

    let reply = facade(&usher, "/api/ppv/list").await;
    let body = reply.text();
    assert_eq!(reply.status, 500, "{body}");
    assert_eq!(xml_text(&body, "Status").as_deref(), Some("Failed"));
    assert!(!body.contains("no such table"), "{body}");
}

/// `deletebuyer` names the buyer by `code` and `hash`, as `updatebuyer` does: a `code`
/// that is not the purchase's product is refused (400 naming `code`) and deletes nothing,
/// as `updatebuyer` refuses it; the buyer's own code deletes it.
#[tokio::test]
async fn deletebuyer_with_another_products_code_deletes_nothing() {
    let (_origin, usher) = start().await;
    for code in ["mine", "other"] {
        let reply = facade(&usher, &format!("/api/ppv/create?name={code}&code={code}")).await;
        assert_success(&reply);
    }
    assert_success(&facade(&usher, "/api/ppv/addmedia?code=mine&media=xxxxxxxx").await);
    let sold = facade(
        &usher,
        "/api/ppv/addbuyer?code=mine&media=xxxxxxxx&email=a%40example.com",
    )
    .await;
    let hash = xml_text(&assert_success(&sold), "Hash").unwrap();

    let refused = facade(
        &usher,
        &format!("/api/ppv/deletebuyer?code=other&hash={hash}"),
    )
    .await;
    let body = refused.text();
    assert_eq!(refused.status, 400, "{body}");
    assert_eq!(
        xml_text(&body, "Status").as_deref(),
        Some("Failed"),
        "{body}"
    );
    assert!(
        xml_text(&body, "Message").unwrap().starts_with("code: "),
        "{body}"
    );
    let (status, kept) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(status, 200, "the buyer is still there: {kept}");

    let deleted = facade(
        &usher,
        &format!("/api/ppv/deletebuyer?code=mine&hash={hash}"),
    )
    .await;
    assert_success(&deleted);
    let (status, _) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!(status, 404);
}

/// `deletemedia` of a media a buyer bought from the product is refused (409, the count in
/// the message) and takes nothing out, unless `force=1`; the message names `force=1` (not
/// the JSON API's `?force=true`), for `delete` too.
#[tokio::test]
async fn deletemedia_of_a_media_a_buyer_named_is_refused_unless_forced() {
    let (_origin, usher) = start().await;
    assert_success(&facade(&usher, "/api/ppv/create?name=s&code=s&type=group").await);
    assert_success(&facade(&usher, "/api/ppv/addmedia?code=s&media=xxxxxxxx").await);
    let sold = facade(
        &usher,
        "/api/ppv/addbuyer?code=s&media=xxxxxxxx&email=a%40example.com",
    )
    .await;
    assert_success(&sold);

    let refused = facade(&usher, "/api/ppv/deletemedia?code=s&media=xxxxxxxx").await;
    let body = refused.text();
    assert_eq!(refused.status, 409, "{body}");
    assert_eq!(
        xml_text(&body, "Status").as_deref(),
        Some("Failed"),
        "{body}"
    );
    // The facade's flag is force=1, and an unlink takes the media out (it is not deleted).
    assert_eq!(
        xml_text(&body, "Message").as_deref(),
        Some("media xxxxxxxx in product s has 1 buyers: add force=1 to take it out anyway"),
        "{body}"
    );
    let listed = assert_success(&facade(&usher, "/api/ppv/listmedia?code=s").await);
    assert!(
        listed.contains("xxxxxxxx"),
        "still in the product: {listed}"
    );

    assert_success(&facade(&usher, "/api/ppv/deletemedia?code=s&media=xxxxxxxx&force=1").await);
    let listed = assert_success(&facade(&usher, "/api/ppv/listmedia?code=s").await);
    assert!(!listed.contains("xxxxxxxx"), "forced, it goes: {listed}");

    let refused = facade(&usher, "/api/ppv/delete?code=s").await;
    let body = refused.text();
    assert_eq!(refused.status, 409, "{body}");
    assert_eq!(
        xml_text(&body, "Message").as_deref(),
        Some("product s has 1 buyers: add force=1 to delete it anyway"),
        "{body}"
    );
}

/// Every call of the document takes `ver` (listbuyers' "current version is 1.1"):
/// `create`, `update`, `addbuyer` and `updatebuyer` take it as the lists do, not refuse it
/// as an unknown field, and it becomes nothing of the product or the buyer.
#[tokio::test]
async fn every_call_takes_the_api_version_ver() {
    let (_origin, usher) = start().await;
    let created = assert_success(
        &facade(
            &usher,
            "/api/ppv/create?name=ppv&code=v&type=group&cost=100.00&ver=1.1",
        )
        .await,
    );
    assert_eq!(
        xml_text(&created, "Code").as_deref(),
        Some("v"),
        "{created}"
    );
    let updated =
        assert_success(&facade(&usher, "/api/ppv/update?code=v&name=payperview&ver=1.1").await);
    assert_eq!(
        xml_text(&updated, "Name").as_deref(),
        Some("payperview"),
        "{updated}"
    );
    assert_success(&facade(&usher, "/api/ppv/addmedia?code=v&media=xxxxxxxx&ver=1.1").await);
    let sold = assert_success(
        &facade(
            &usher,
            "/api/ppv/addbuyer?code=v&media=xxxxxxxx&email=a%40example.com&notification=0&ver=1.1",
        )
        .await,
    );
    let hash = xml_text(&sold, "Hash").unwrap();
    assert_success(
        &facade(
            &usher,
            &format!("/api/ppv/updatebuyer?code=v&hash={hash}&name=Al&ver=1.1"),
        )
        .await,
    );
    assert_success(&facade(&usher, "/api/ppv/updatecontacts?name=Alex&phone=1&ver=1.1").await);
    let listed =
        assert_success(&facade(&usher, "/api/ppv/listbuyers?code=v&media=xxxxxxxx&ver=1.1").await);
    assert_eq!(xml_text(&listed, "Hash").as_deref(), Some(hash.as_str()));
    // A misspelt parameter is still refused by name.
    let refused = facade(&usher, "/api/ppv/update?code=v&nmae=x&ver=1.1").await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        xml_text(&refused.text(), "Message")
            .unwrap()
            .starts_with("nmae: "),
        "{}",
        refused.text()
    );
}
