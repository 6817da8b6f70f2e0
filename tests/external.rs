//! Rights from the operator's HTTP service (the TVMS "API provision"): claims mapped into
//! the URL, success read from the status and a JSON field, fail closed when the service is
//! down, and the optional grace mode that keeps a recent yes alive through an outage.

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::admin::api;
use support::*;

const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n";

/// An origin that also plays the operator's billing service under `/billing/`.
async fn origin_and_billing() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/shows/ep1/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/shows/ep1/seg1.ts".to_owned(), segment(100));
    objects.insert(
        "/billing/alice/ep1.json".to_owned(),
        json_object(r#"{"entitled": true}"#),
    );
    objects.insert(
        "/billing/bob/ep1.json".to_owned(),
        json_object(r#"{"entitled": false}"#),
    );
    objects.insert(
        "/billing/carol/ep1.json".to_owned(),
        json_object(r#"{"entitled": true}"#),
    );
    spawn_origin(objects).await
}

fn external_config(origin: &Origin, grace: &str) -> String {
    let rights = format!(
        "source = \"external\"\npositive_ttl = \"1ms\"\nnegative_ttl = \"1ms\"\n\
         [rights.external]\nurl = \"{}/billing/{{sub}}/{{content}}.json\"\ntimeout = \"2s\"\n\
         success_status = [200]\nsuccess_json_pointer = \"/entitled\"\nsuccess_json_value = true\n\
         grace = \"{grace}\"",
        origin.url()
    );
    config_with(&origin.url(), &rights, "")
}

async fn media(usher: &Usher) {
    let (status, body) = api(
        usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "ep1", "prefix": "/shows/ep1/", "playlist": "index.m3u8"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn url(usher: &Usher, who: &str) -> String {
    let ticket = mint_with("/shows/", |c| c.sub = who.into());
    format!("{}/shows/ep1/index.m3u8?ticket={ticket}", usher.url)
}

#[tokio::test]
async fn the_service_decides_by_status_and_json_field() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&external_config(&origin, "0s"), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    assert_eq!(
        get(&url(&usher, "bob"), &[]).await.reason(),
        "no_rights",
        "entitled: false"
    );
    assert_eq!(
        get(&url(&usher, "dave"), &[]).await.reason(),
        "no_rights",
        "404 from the service"
    );
    let asked: Vec<String> = origin
        .seen()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t.starts_with("/billing/"))
        .collect();
    assert_eq!(
        asked,
        [
            "/billing/alice/ep1.json",
            "/billing/bob/ep1.json",
            "/billing/dave/ep1.json"
        ]
    );
}

#[tokio::test]
async fn an_outage_fails_closed_without_grace() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&external_config(&origin, "0s"), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    let mut down = json_object("down for maintenance");
    down.status = Some(503);
    origin.insert("/billing/alice/ep1.json", down);
    let reply = get(&url(&usher, "alice"), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (503, "rights_unavailable")
    );
}

#[tokio::test]
async fn grace_keeps_a_recent_yes_through_an_outage_and_says_so() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&external_config(&origin, "10m"), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    let mut down = json_object("");
    down.status = Some(502);
    origin.insert("/billing/alice/ep1.json", down.clone());
    origin.insert("/billing/carol/ep1.json", down);
    assert_eq!(
        get(&url(&usher, "alice"), &[]).await.status,
        200,
        "a yes within the grace"
    );
    let carol = get(&url(&usher, "carol"), &[]).await;
    assert_eq!(
        carol.reason(),
        "rights_unavailable",
        "no recent yes for carol: fail closed"
    );
    let metrics = get(&format!("{}/metrics", usher.admin.as_ref().unwrap()), &[])
        .await
        .text();
    assert!(
        metrics.contains(r#"usher_rights_lookups_total{outcome="grace"} 1"#),
        "{metrics}"
    );
}
