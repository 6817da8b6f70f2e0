//! Issue 11 item 8, lists refuse what they do not understand: an unknown parameter on any
//! list (JSON API and facade) is a 400 naming it, never a list of everything; lists answer
//! a `total` and a `next` cursor; sessions filter by purchase and page; buyers export as
//! CSV.

mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::admin::{api, facade, xml_text};
use support::*;

const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n";

/// A usher selling product `show` (media `ep1`) to three buyers; their hashes and tickets.
async fn selling() -> (Origin, Usher, Vec<(String, String)>) {
    let mut objects = HashMap::new();
    objects.insert("/shows/ep1/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/shows/ep1/seg1.ts".to_owned(), segment(100));
    let origin = spawn_origin(objects).await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    for (path, body) in [
        (
            "/api/v1/products",
            json!({"code": "show", "name": "Show", "period": 2}),
        ),
        (
            "/api/v1/media",
            json!({"code": "ep1", "prefix": "/shows/ep1/", "playlist": "index.m3u8"}),
        ),
        ("/api/v1/products/show/media", json!({"media": "ep1"})),
    ] {
        let (status, answer) = api(&usher, "POST", path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    let mut sold = Vec::new();
    for (email, name) in [
        ("a@example.com", "Doe, \"Jo\""),
        ("b@example.com", "Bea"),
        ("c@example.com", "Cy"),
    ] {
        let (status, buyer) = api(
            &usher,
            "POST",
            "/api/v1/buyers",
            Some(json!({"product": "show", "media": "ep1", "email": email, "name": name})),
        )
        .await;
        assert_eq!(status, 201, "{buyer}");
        sold.push((
            buyer["hash"].as_str().unwrap().to_owned(),
            buyer["ticket"].as_str().unwrap().to_owned(),
        ));
    }
    (origin, usher, sold)
}

#[tokio::test]
async fn item8_unknown_list_parameters_are_refused_by_name() {
    let (_origin, usher, sold) = selling().await;
    let hash = &sold[0].0;
    for (path, param) in [
        ("/api/v1/products?colour=red".to_owned(), "colour"),
        ("/api/v1/media?sort=title".to_owned(), "sort"),
        ("/api/v1/buyers?emial=a@example.com".to_owned(), "emial"),
        (
            "/api/v1/buyers?product=show&stauts=revoked".to_owned(),
            "stauts",
        ),
        ("/api/v1/products/show/media?page=2".to_owned(), "page"),
        (format!("/api/v1/buyers/{hash}/devices?all=1"), "all"),
        ("/api/v1/sessions?purchse=x".to_owned(), "purchse"),
        ("/api/v1/audit?who=admin".to_owned(), "who"),
    ] {
        let (status, body) = api(&usher, "GET", &path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "invalid", "{path}");
        assert_eq!(body["field"], param, "{path}: {body}");
    }
    // The facade's lists too; their documented parameters (and `ver`) still work.
    for (query, param) in [
        ("/api/ppv/list?colour=red", "colour"),
        ("/api/ppv/listmedia?code=show&sort=title", "sort"),
        (
            "/api/ppv/listbuyers?code=show&media=ep1&emial=a@example.com",
            "emial",
        ),
    ] {
        let reply = facade(&usher, query).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text());
        assert_eq!(xml_text(&reply.text(), "Status").as_deref(), Some("Failed"));
        assert!(reply.text().contains(param), "{query}: {}", reply.text());
    }
    let known = facade(
        &usher,
        "/api/ppv/listbuyers?code=show&media=ep1&email=a@example.com&ver=1.1",
    )
    .await;
    assert_eq!(known.status, 200, "{}", known.text());
    assert_eq!(known.text().matches("<Hash>").count(), 1);
}

#[tokio::test]
async fn item8_lists_answer_a_total_and_a_cursor_to_the_next_page() {
    let (_origin, usher, sold) = selling().await;
    for code in ["p2", "p3", "p4"] {
        let (status, _) = api(
            &usher,
            "POST",
            "/api/v1/products",
            Some(json!({"code": code, "name": code})),
        )
        .await;
        assert_eq!(status, 201);
    }
    // Products: 4 in pages of 3 by cursor.
    let (status, first) = api(&usher, "GET", "/api/v1/products?limit=3", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (
            first["total"].as_u64(),
            first["items"].as_array().unwrap().len()
        ),
        (Some(4), 3)
    );
    let next = first["next"].as_str().expect("a next cursor").to_owned();
    let (_, second) = api(
        &usher,
        "GET",
        &format!("/api/v1/products?limit=3&cursor={next}"),
        None,
    )
    .await;
    assert_eq!(second["items"][0]["code"], "p4");
    assert_eq!(second["next"], Value::Null, "the last page has no next");
    let (_, by_offset) = api(&usher, "GET", "/api/v1/products?limit=3&offset=3", None).await;
    assert_eq!(by_offset["items"], second["items"], "offset keeps working");
    let (status, bad) = api(&usher, "GET", "/api/v1/products?cursor=not-ours", None).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("cursor")));
    // Buyers: filtered total.
    let (_, buyers) = api(&usher, "GET", "/api/v1/buyers?product=show&limit=2", None).await;
    assert_eq!(
        (
            buyers["total"].as_u64(),
            buyers["items"].as_array().unwrap().len()
        ),
        (Some(3), 2)
    );
    let (_, one) = api(&usher, "GET", "/api/v1/buyers?email=b@example.com", None).await;
    assert_eq!(
        (one["total"].as_u64(), one["next"].clone()),
        (Some(1), Value::Null)
    );
    assert_eq!(one["items"][0]["hash"], sold[1].0.as_str());
    for list in [
        "/api/v1/media",
        "/api/v1/products/show/media",
        "/api/v1/sessions",
        "/api/v1/audit",
    ] {
        let (status, page) = api(&usher, "GET", list, None).await;
        assert_eq!(status, 200, "{list}: {page}");
        assert!(
            page["total"].is_u64() && page.get("next").is_some(),
            "{list}: {page}"
        );
    }
}

#[tokio::test]
async fn item8_sessions_filter_by_purchase_and_page() {
    let (_origin, usher, sold) = selling().await;
    for (_, ticket) in &sold[..2] {
        let reply = get(
            &format!("{}/shows/ep1/index.m3u8?ticket={ticket}", usher.url),
            &[],
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let (status, all) = api(&usher, "GET", "/api/v1/sessions", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 2);
    let (_, one) = api(
        &usher,
        "GET",
        &format!("/api/v1/sessions?purchase={}", sold[0].0),
        None,
    )
    .await;
    assert_eq!(one["total"], 1, "{one}");
    assert_eq!(one["items"][0]["purchase"], sold[0].0.as_str());
    let (_, none) = api(
        &usher,
        "GET",
        &format!("/api/v1/sessions?purchase={}", sold[2].0),
        None,
    )
    .await;
    assert_eq!(none["total"], 0);
    let (_, paged) = api(&usher, "GET", "/api/v1/sessions?limit=1", None).await;
    assert_eq!(paged["items"].as_array().unwrap().len(), 1);
    let next = paged["next"].as_str().expect("a second page");
    let (_, rest) = api(
        &usher,
        "GET",
        &format!("/api/v1/sessions?limit=1&cursor={next}"),
        None,
    )
    .await;
    assert_ne!(rest["items"][0]["sid"], paged["items"][0]["sid"]);
}

#[tokio::test]
async fn item8_buyers_export_as_csv_without_tickets() {
    let (_origin, usher, sold) = selling().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = format!(
        "{}/api/v1/buyers?product=show",
        usher.admin.as_deref().unwrap()
    );
    let by_accept = get(&url, &[("authorization", &auth), ("accept", "text/csv")]).await;
    assert_eq!(by_accept.status, 200, "{}", by_accept.text());
    assert_eq!(by_accept.headers["content-type"], "text/csv; charset=utf-8");
    let by_format = get(&format!("{url}&format=csv"), &[("authorization", &auth)]).await;
    assert_eq!(by_format.text(), by_accept.text());
    let csv = by_accept.text();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "a header and three buyers: {csv}");
    assert!(
        lines[0].starts_with("hash,product,media,account,email,name,"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("ticket"));
    assert!(
        lines[1].starts_with(&format!("{},show,ep1,", sold[0].0)),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains(",a@example.com,\"Doe, \"\"Jo\"\"\","),
        "quoted: {}",
        lines[1]
    );
    for (_, ticket) in &sold {
        assert!(!csv.contains(ticket.as_str()), "no ticket in the export");
    }
    let refused = get(
        &format!("{url}&format=csv&colour=red"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(refused.status, 400);
    // `format=json` wins over the Accept header.
    let json_anyway = get(
        &format!("{url}&format=json"),
        &[("authorization", &auth), ("accept", "text/csv")],
    )
    .await;
    assert_eq!(json_anyway.headers["content-type"], "application/json");
}

/// A buyers list of a product that does not exist is 404 naming it, as the facade's
/// `listbuyers` is, in JSON and in CSV: a mistyped code must not read as "no buyers".
/// A `media` filter naming no media lists nobody, in both (the facade does not check it).
#[tokio::test]
async fn a_buyers_or_sessions_list_of_a_product_that_does_not_exist_is_404_naming_it() {
    let (_origin, usher, _sold) = selling().await;
    let (status, body) = api(&usher, "GET", "/api/v1/buyers?product=shw", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body,
        json!({"error": "not_found", "what": "product shw"}),
        "{body}"
    );
    let (status, body) = api(&usher, "GET", "/api/v1/buyers?product=shw&format=csv", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["what"], "product shw", "{body}");
    let facade_list = facade(&usher, "/api/ppv/listbuyers?code=shw&media=ep1").await;
    assert_eq!(facade_list.status, 404, "{}", facade_list.text());
    // So does the sessions list, filtered by the same mistyped code.
    let (status, body) = api(&usher, "GET", "/api/v1/sessions?product=shw", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["what"], "product shw", "{body}");
    let (status, body) = api(&usher, "GET", "/api/v1/sessions?product=show", None).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = api(&usher, "GET", "/api/v1/buyers?product=show", None).await;
    assert_eq!((status, body["total"].clone()), (200, json!(3)), "{body}");
    let (status, body) = api(&usher, "GET", "/api/v1/buyers?media=ep2", None).await;
    assert_eq!((status, body["total"].clone()), (200, json!(0)), "{body}");
    let facade_list = facade(&usher, "/api/ppv/listbuyers?code=show&media=ep2").await;
    assert_eq!(facade_list.status, 200, "{}", facade_list.text());
    assert!(
        !facade_list.text().contains("<Hash>"),
        "{}",
        facade_list.text()
    );
}
