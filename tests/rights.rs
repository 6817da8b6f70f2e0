//! PPV rights through a real usher: selling through the admin API, playing, revoking while
//! decisions are cached, accounts, editorial ids, live pre-sale, device classes, bad input,
//! and acknowledged writes surviving SIGKILL.

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::admin::api;
use support::*;

const MEDIA: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXTINF:2,\nseg2.ts\n#EXT-X-ENDLIST\n";

async fn event_origin() -> Origin {
    let mut objects = HashMap::new();
    for rendition in ["/events/final/hd/", "/events/final/4k/", "/events/semi/hd/"] {
        objects.insert(format!("{rendition}index.m3u8"), playlist(MEDIA));
        objects.insert(format!("{rendition}seg1.ts"), segment(1000));
        objects.insert(format!("{rendition}seg2.ts"), segment(1000));
    }
    spawn_origin(objects).await
}

/// Creates product `code` with `fields`, media for each `(code, prefix, editorial)`, and
/// puts `content` into the product.
async fn sell(
    usher: &Usher,
    product: serde_json::Value,
    media: &[(&str, &str, Option<&str>)],
    content: &[&str],
) {
    let code = product["code"].as_str().unwrap().to_owned();
    let (status, body) = api(usher, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    for (m, prefix, editorial) in media {
        let (status, body) = api(
            usher,
            "POST",
            "/api/v1/media",
            Some(json!({"code": m, "prefix": prefix, "playlist": "index.m3u8", "editorial": editorial})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for c in content {
        let (status, body) = api(
            usher,
            "POST",
            &format!("/api/v1/products/{code}/media"),
            Some(json!({"media": c})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn add_buyer(usher: &Usher, body: serde_json::Value) -> serde_json::Value {
    let (status, sold) = api(usher, "POST", "/api/v1/buyers", Some(body)).await;
    assert_eq!(status, 201, "{sold}");
    sold
}

/// The play URL's playlist, and the URL of its first segment (with the session token).
async fn play(url: &str) -> (Reply, String) {
    let reply = get(url, &[]).await;
    let first = reply
        .text()
        .lines()
        .find(|l| l.starts_with("seg1.ts"))
        .map(|l| resolve(url, l))
        .unwrap_or_default();
    (reply, first)
}

#[tokio::test]
async fn a_buyer_sold_through_the_api_plays_and_a_revocation_stops_the_next_segment() {
    let origin = event_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    sell(
        &usher,
        json!({"code": "final", "name": "Final", "period": 2, "cost": "9.99", "currency": "EUR"}),
        &[("final-hd", "/events/final/hd/", None)],
        &["final-hd"],
    )
    .await;
    let sold = add_buyer(
        &usher,
        json!({"product": "final", "media": "final-hd", "email": "alice@example.com"}),
    )
    .await;
    let url = sold["play_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "{}/events/final/hd/index.m3u8?ticket=t1.",
            usher.url
        )),
        "{url}"
    );
    assert_eq!(sold["status"], "active");

    let (playlist, segment_url) = play(url).await;
    assert_eq!(playlist.status, 200);
    assert_eq!(get(&segment_url, &[]).await.status, 200);
    assert_eq!(
        get(&segment_url, &[]).await.status,
        200,
        "and again, from the decision cache"
    );

    let hash = sold["hash"].as_str().unwrap();
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let refused = get(&segment_url, &[]).await;
    assert_eq!(
        (refused.status.as_u16(), refused.reason().as_str()),
        (403, "revoked")
    );
    let (_, listed) = api(
        &usher,
        "GET",
        "/api/v1/buyers?product=final&status=revoked",
        None,
    )
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let metrics = get(&format!("{}/metrics", usher.admin.as_ref().unwrap()), &[])
        .await
        .text();
    assert!(
        metrics.contains(r#"usher_rights_cache_total{outcome="hit"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"usher_denials_total{reason="revoked"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_ticket_opens_only_what_its_holder_bought() {
    let origin = event_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    sell(
        &usher,
        json!({"code": "final", "name": "Final"}),
        &[
            ("final-hd", "/events/final/hd/", None),
            ("semi-hd", "/events/semi/hd/", None),
        ],
        &["final-hd"],
    )
    .await;
    add_buyer(&usher, json!({"product": "final", "account": "alice"})).await;
    // A valid ticket for everything, held by someone who bought only the final.
    let ticket = mint_with("/", |c| c.sub = "alice".into());
    let final_hd = get(
        &format!("{}/events/final/hd/index.m3u8?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    assert_eq!(final_hd.status, 200);
    let semi = get(
        &format!("{}/events/semi/hd/index.m3u8?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    assert_eq!(
        (semi.status.as_u16(), semi.reason().as_str()),
        (403, "no_rights")
    );
    let stranger = mint_with("/", |c| c.sub = "mallory".into());
    let reply = get(
        &format!("{}/events/final/hd/index.m3u8?ticket={stranger}", usher.url),
        &[],
    )
    .await;
    assert_eq!(reply.reason(), "no_rights");
}

#[tokio::test]
async fn disabling_an_account_refuses_everything_it_holds_at_once() {
    let origin = event_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    sell(
        &usher,
        json!({"code": "final", "name": "Final"}),
        &[("final-hd", "/events/final/hd/", None)],
        &["final-hd"],
    )
    .await;
    let sold = add_buyer(
        &usher,
        json!({"product": "final", "media": "final-hd", "account": "acct-7"}),
    )
    .await;
    let (_, segment_url) = play(sold["play_url"].as_str().unwrap()).await;
    assert_eq!(get(&segment_url, &[]).await.status, 200);
    let (status, body) = api(
        &usher,
        "PUT",
        "/api/v1/accounts/acct-7",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!((status, body["enabled"].as_bool()), (200, Some(false)));
    assert_eq!(get(&segment_url, &[]).await.reason(), "account_disabled");
    api(
        &usher,
        "PUT",
        "/api/v1/accounts/acct-7",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(get(&segment_url, &[]).await.status, 200);
}

#[tokio::test]
async fn a_right_on_the_editorial_id_covers_every_technical_rendition() {
    let origin = event_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    sell(
        &usher,
        json!({"code": "final", "name": "Final (all qualities)"}),
        &[
            ("final-hd", "/events/final/hd/", Some("final-ed")),
            ("final-4k", "/events/final/4k/", Some("final-ed")),
            ("semi-hd", "/events/semi/hd/", None),
        ],
        &["final-ed"],
    )
    .await;
    add_buyer(&usher, json!({"product": "final", "account": "bob"})).await;
    let ticket = mint_with("/events/", |c| c.sub = "bob".into());
    for rendition in ["hd", "4k"] {
        let reply = get(
            &format!(
                "{}/events/final/{rendition}/index.m3u8?ticket={ticket}",
                usher.url
            ),
            &[],
        )
        .await;
        assert_eq!(reply.status, 200, "{rendition}");
    }
    let semi = get(
        &format!("{}/events/semi/hd/index.m3u8?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    assert_eq!(semi.reason(), "no_rights");
}

#[tokio::test]
async fn a_live_event_is_sold_before_its_stream_exists() {
    let origin = event_origin().await;
    // 404s not kept by the shield, so the stream plays the moment it exists (by default a
    // 404 is kept for 2 s).
    let usher = Usher::start(
        &rights_config(&origin.url(), "[shield]\nnegative_ttl = \"0s\"\n"),
        &[],
    );
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "jan1", "name": "Jan 1 live"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = api(&usher, "POST", "/api/v1/media", Some(json!({"code": "jan1-live", "prefix": "/live/jan1/", "playlist": "index.m3u8", "live": true}))).await;
    assert_eq!(status, 201);
    api(
        &usher,
        "POST",
        "/api/v1/products/jan1/media",
        Some(json!({"media": "jan1-live"})),
    )
    .await;
    let sold = add_buyer(
        &usher,
        json!({"product": "jan1", "media": "jan1-live", "email": "fan@example.com"}),
    )
    .await;
    let url = sold["play_url"].as_str().unwrap().to_owned();
    // Sold and valid, but the transcoder has not started: the origin's 404 comes through.
    assert_eq!(get(&url, &[]).await.status, 404);
    origin.insert("/live/jan1/index.m3u8", playlist(MEDIA));
    origin.insert("/live/jan1/seg1.ts", segment(10));
    let (reply, segment_url) = play(&url).await;
    assert_eq!(reply.status, 200);
    assert_eq!(get(&segment_url, &[]).await.status, 200);
}

#[tokio::test]
async fn products_sold_per_device_class_refuse_other_classes() {
    let origin = event_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    sell(
        &usher,
        json!({"code": "stb", "name": "Set-top only", "device_classes": ["iptv", "hybrid"]}),
        &[("final-hd", "/events/final/hd/", None)],
        &["final-hd"],
    )
    .await;
    let sold = add_buyer(
        &usher,
        json!({"product": "stb", "media": "final-hd", "account": "box-owner"}),
    )
    .await;
    let url = sold["play_url"].as_str().unwrap();
    assert_eq!(
        get(url, &[]).await.reason(),
        "device_class",
        "no header: the default class, ott"
    );
    assert_eq!(
        get(url, &[("x-device-class", "ott")]).await.reason(),
        "device_class"
    );
    assert_eq!(get(url, &[("x-device-class", "iptv")]).await.status, 200);
    assert_eq!(get(url, &[("x-device-class", "hybrid")]).await.status, 200);
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let origin = event_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let cases = [
        (
            json!({"name": "x", "access_expire": "31/12/2026"}),
            "access_expire",
        ),
        (json!({"name": "x", "period": "ten"}), "period"),
        (json!({"name": "x", "type": "triple"}), "type"),
        (json!({"description": "no name"}), "name"),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (json!({"name": "x", "code": "has space"}), "code"),
    ];
    for (body, field) in cases {
        let (status, answer) = api(&usher, "POST", "/api/v1/products", Some(body)).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
    }
    let (_, listed) = api(&usher, "GET", "/api/v1/products", None).await;
    assert_eq!(listed["items"], json!([]), "nothing half-written");
    let (status, answer) = api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"prefix": "/a/../b/"})),
    )
    .await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("prefix")));
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "ghost", "email": "a@b.c"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, answer) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!("not an object")),
    )
    .await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("body")));
    let (status, _) = support::admin::api_as(
        &usher,
        "wrong-token-wrong-token",
        "GET",
        "/api/v1/products",
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "dup", "name": "x"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "dup", "name": "y"})),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn buyers_list_by_email_with_paging() {
    let origin = event_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    sell(
        &usher,
        json!({"code": "final", "name": "Final"}),
        &[("final-hd", "/events/final/hd/", None)],
        &["final-hd"],
    )
    .await;
    for account in ["a1", "a2", "a3"] {
        add_buyer(
            &usher,
            json!({"product": "final", "email": "family@example.com", "account": account}),
        )
        .await;
    }
    add_buyer(
        &usher,
        json!({"product": "final", "email": "other@example.com"}),
    )
    .await;
    let (_, all) = api(
        &usher,
        "GET",
        "/api/v1/buyers?email=family@example.com",
        None,
    )
    .await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        3,
        "email is not unique"
    );
    let (_, page) = api(
        &usher,
        "GET",
        "/api/v1/buyers?email=family@example.com&limit=2&offset=2",
        None,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["account"], "a3");
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let origin = event_origin().await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let config = rights_config(&origin.url(), "");
    let mut usher = Usher::start(&config, &["--data-dir", &data_dir]);
    sell(
        &usher,
        json!({"code": "final", "name": "Final"}),
        &[("final-hd", "/events/final/hd/", None)],
        &["final-hd"],
    )
    .await;
    let mut acknowledged = Vec::new();
    for n in 0..40 {
        let sold = add_buyer(
            &usher,
            json!({"product": "final", "media": "final-hd", "account": format!("viewer-{n}")}),
        )
        .await;
        acknowledged.push((
            sold["hash"].as_str().unwrap().to_owned(),
            sold["play_url"].as_str().unwrap().to_owned(),
        ));
    }
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{}/revoke", acknowledged[0].0),
        None,
    )
    .await;
    assert_eq!(status, 200);
    usher.kill();

    let usher = Usher::start(&config, &["--data-dir", &data_dir]);
    for (hash, _) in &acknowledged {
        let (status, body) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
        assert_eq!(status, 200, "purchase {hash} survived: {body}");
    }
    let (_, revoked) = api(
        &usher,
        "GET",
        &format!("/api/v1/buyers/{}", acknowledged[0].0),
        None,
    )
    .await;
    assert_eq!(revoked["status"], "revoked", "the revocation survived too");
    // The tickets issued before the crash still play: same keys, same store.
    let last = &acknowledged.last().unwrap().1;
    let url = last.replacen(last.split("/events").next().unwrap(), &usher.url, 1);
    assert_eq!(get(&url, &[]).await.status, 200);
}

/// A live event's playlist slides along the stream: a viewer without a ticket who keeps
/// reloading it gets the stream's first seconds, not each new window's (which would add
/// up to the whole event).
#[tokio::test]
async fn a_live_preview_ends_with_the_streams_first_seconds_however_the_window_slides() {
    let window = |sequence: u32| {
        let mut text =
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{sequence}\n");
        for n in sequence..sequence + 3 {
            text.push_str(&format!("#EXTINF:2,\ns{n}.ts\n"));
        }
        playlist(&text)
    };
    let mut objects = HashMap::new();
    objects.insert("/live/final/index.m3u8".to_owned(), window(0));
    for n in 0..6 {
        objects.insert(format!("/live/final/s{n}.ts"), segment(100));
    }
    let origin = spawn_origin(objects).await;
    // The shield off, so that each reload reads the origin's window of the moment.
    let config = rights_config(&origin.url(), "[shield]\nenabled = false\n");
    let usher = Usher::start(&config, &[]);
    sell(
        &usher,
        json!({"code": "final", "name": "Final", "preview": 4}),
        &[("final", "/live/final/", None)],
        &["final"],
    )
    .await;
    let url = format!("{}/live/final/index.m3u8", usher.url);
    let segments = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let first = get(&url, &[]).await;
    assert_eq!(first.status, 200);
    let first = segments(first.text());
    assert!(first[0].contains("token=") && first[1].contains("token="));
    assert_eq!(first[2], "s2.ts");
    // Four seconds later the window starts at s2: past the preview.
    origin.insert("/live/final/index.m3u8", window(2));
    let later = get(&url, &[]).await;
    assert_eq!(later.status, 200);
    let later = segments(later.text());
    assert_eq!(
        later,
        ["s2.ts", "s3.ts", "s4.ts"],
        "no token past the stream's first 4 s"
    );
    assert_eq!(get(&resolve(&url, &later[0]), &[]).await.status, 401);
}

#[tokio::test]
async fn without_a_ticket_the_first_seconds_of_a_product_with_a_preview_play() {
    let mut objects = HashMap::new();
    objects.insert(
        "/films/heist/master.m3u8".to_owned(),
        playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhd/index.m3u8\n"),
    );
    let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n#EXTINF:2,\ns3.ts\n#EXT-X-ENDLIST\n";
    objects.insert("/films/heist/hd/index.m3u8".to_owned(), playlist(media));
    for s in ["s1", "s2", "s3"] {
        objects.insert(format!("/films/heist/hd/{s}.ts"), segment(100));
    }
    let origin = spawn_origin(objects).await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    sell(
        &usher,
        json!({"code": "heist", "name": "Heist", "preview": 4}),
        &[("heist", "/films/heist/", None)],
        &["heist"],
    )
    .await;

    // No ticket: the master and the media playlist come in preview mode.
    let master_url = format!("{}/films/heist/master.m3u8", usher.url);
    let master = get(&master_url, &[]).await;
    assert_eq!(master.status, 200);
    let variant = resolve(
        &master_url,
        master
            .text()
            .lines()
            .find(|l| l.starts_with("hd/"))
            .unwrap(),
    );
    let media = get(&variant, &[]).await;
    assert_eq!(media.status, 200);
    let lines: Vec<String> = media.text().lines().map(str::to_owned).collect();
    let s1 = lines.iter().find(|l| l.starts_with("s1.ts")).unwrap();
    let s2 = lines.iter().find(|l| l.starts_with("s2.ts")).unwrap();
    let s3 = lines.iter().find(|l| l.starts_with("s3.ts")).unwrap();
    assert!(
        s1.contains("token=") && s2.contains("token="),
        "the first 4 seconds: {lines:?}"
    );
    assert_eq!(s3, "s3.ts", "the rest gets no token");
    assert_eq!(get(&resolve(&variant, s1), &[]).await.status, 200);
    assert_eq!(get(&resolve(&variant, s2), &[]).await.status, 200);
    assert_eq!(get(&resolve(&variant, s3), &[]).await.status, 401);
    // The preview token opens nothing else, whatever the path.
    let token = s1.split("token=").nth(1).unwrap();
    let stolen = get(
        &format!("{}/films/heist/hd/s3.ts?token={token}", usher.url),
        &[],
    )
    .await;
    assert_eq!(
        (stolen.status.as_u16(), stolen.reason().as_str()),
        (403, "out_of_scope")
    );

    // Content without a preview still needs a ticket for its playlist.
    sell(
        &usher,
        json!({"code": "final", "name": "Final"}),
        &[("final-hd", "/events/final/hd/", None)],
        &["final-hd"],
    )
    .await;
    assert_eq!(
        get(&format!("{}/events/final/hd/index.m3u8", usher.url), &[])
            .await
            .status,
        401
    );
}
