//! HLS interstitials asset lists served through usher: the JSON an `X-ASSET-LIST` names
//! comes back with each listed asset's `URI` carrying the viewer's token, so a protected ad
//! or promo plays; foreign assets are left alone, and a list that is not JSON is refused.
//! A content steering manifest, JSON too, reloads with the token. Real usher, real origin.

mod support;

use std::collections::HashMap;

use bytes::Bytes;

use support::*;

const PROMO: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\np1.ts\n#EXT-X-ENDLIST\n";

/// A media playlist whose one interstitial names the asset list at `list`.
fn primary(list: &str) -> String {
    format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-12-07T05:00:00.000Z\n\
         #EXT-X-DATERANGE:ID=\"mid\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-12-07T05:00:02.000Z\",X-ASSET-LIST=\"{list}\"\n\
         #EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n#EXT-X-ENDLIST\n"
    )
}

/// An origin with a primary stream and a protected promo under `/q/` (query carrier) and
/// `/p/` (path carrier), and the asset lists `lists` (path, object).
async fn origin_with(lists: Vec<(&str, Object)>) -> Origin {
    let mut objects = HashMap::new();
    for route in ["q", "p"] {
        objects.insert(
            format!("/{route}/v/index.m3u8"),
            playlist(&primary("../ads/list.json")),
        );
        objects.insert(format!("/{route}/v/s1.ts"), segment(100));
        objects.insert(format!("/{route}/promo/index.m3u8"), playlist(PROMO));
        objects.insert(format!("/{route}/promo/p1.ts"), segment(100));
    }
    for (path, object) in lists {
        objects.insert(path.to_owned(), object);
    }
    spawn_origin(objects).await
}

fn start(origin: &Origin) -> Usher {
    let routes = "[[routes]]\nprefix = \"/q/\"\ncarrier = \"query\"\n\
                  [[routes]]\nprefix = \"/p/\"\ncarrier = \"path\"\n";
    Usher::start(&test_config(&origin.url(), routes), &[])
}

/// The `X-ASSET-LIST` URL of the playlist at `url`, resolved as a player resolves it.
async fn asset_list_url(url: &str) -> String {
    let reply = get(url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let start = text.find("X-ASSET-LIST=\"").expect("an asset list") + 14;
    let list = &text[start..];
    resolve(url, &list[..list.find('"').unwrap()])
}

/// The `URI` of every asset in an asset list.
fn asset_uris(reply: &Reply) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()));
    json["ASSETS"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text()))
        .iter()
        .map(|asset| asset["URI"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_listed_protected_asset_carries_the_token_and_plays() {
    let list = r#"{"ASSETS": [
        {"URI": "../promo/index.m3u8", "DURATION": 2.000, "X-AD-ID": "promo-1"},
        {"URI": "https://ads.example.net/spot.m3u8", "DURATION": 15}
    ], "SKIP-CONTROL": {"OFFSET": 5}}"#;
    let origin = origin_with(vec![("/q/ads/list.json", json_object(list))]).await;
    let usher = start(&origin);
    let media_url = format!("{}/q/v/index.m3u8?ticket={}", usher.url, mint("/q/"));
    let list_url = asset_list_url(&media_url).await;
    assert!(list_url.contains("ads/list.json?token=s2."), "{list_url}");

    let reply = get(&list_url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let uris = asset_uris(&reply);
    assert!(
        uris[0].starts_with("../promo/index.m3u8?token=s2."),
        "{uris:?}"
    );
    assert_eq!(
        uris[1], "https://ads.example.net/spot.m3u8",
        "a foreign asset is left alone"
    );
    // Per viewer, as a rewritten playlist is.
    assert_eq!(reply.headers["cache-control"], "private, no-store");
    assert!(!reply.headers.contains_key("etag"), "no validator");
    assert_eq!(reply.headers["content-type"], "application/json");
    // Everything but the protected asset's URI is as the origin wrote it.
    assert_eq!(
        reply.text().replacen(&uris[0], "../promo/index.m3u8", 1),
        list
    );

    // The player plays the asset through usher, segments and all.
    let asset_url = resolve(&list_url, &uris[0]);
    let asset = get(&asset_url, &[]).await;
    assert_eq!(asset.status, 200, "{}", asset.text());
    let segment = asset
        .text()
        .lines()
        .find(|l| l.starts_with("p1.ts?token="))
        .map(|l| resolve(&asset_url, l))
        .unwrap_or_else(|| panic!("{}", asset.text()));
    assert_eq!(get(&segment, &[]).await.status, 200, "the promo plays");
    let bare = get(&resolve(&list_url, "../promo/index.m3u8"), &[]).await;
    assert_eq!(bare.status, 401, "the asset stays protected");
    for seen in origin.seen() {
        assert!(!seen.target.contains("token"), "{}", seen.target);
    }
}

#[tokio::test]
async fn an_asset_list_is_known_by_its_json_type_whatever_its_path() {
    // An ad server's list has no extension; the origin's type says what it is.
    let list = r#"{"ASSETS":[{"URI":"/q/promo/index.m3u8","DURATION":2}]}"#;
    let origin = origin_with(vec![("/q/ads/break", json_object(list))]).await;
    origin.insert("/q/v/index.m3u8", playlist(&primary("../ads/break?b=1")));
    let usher = start(&origin);
    let media_url = format!("{}/q/v/index.m3u8?ticket={}", usher.url, mint("/q/"));
    let list_url = asset_list_url(&media_url).await;
    let reply = get(&list_url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let uris = asset_uris(&reply);
    assert!(
        uris[0].starts_with("/q/promo/index.m3u8?token=s2."),
        "{uris:?}"
    );
    let asset = get(&resolve(&list_url, &uris[0]), &[]).await;
    assert_eq!(asset.status, 200, "{}", asset.text());
}

#[tokio::test]
async fn under_the_path_carrier_a_path_absolute_asset_gets_the_token_too() {
    let list = r#"{"ASSETS":[{"URI":"/p/promo/index.m3u8","DURATION":2},{"URI":"../promo/index.m3u8","DURATION":2}]}"#;
    let origin = origin_with(vec![("/p/ads/list.json", json_object(list))]).await;
    let usher = start(&origin);
    let media_url = format!("{}/p/v/index.m3u8?ticket={}", usher.url, mint("/p/"));
    let list_url = asset_list_url(&media_url).await;
    let reply = get(&list_url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let uris = asset_uris(&reply);
    // The list came under the path token: a relative asset inherits it as it is, and the
    // path-absolute one is written under it.
    assert_eq!(uris[1], "../promo/index.m3u8");
    assert!(uris[0].starts_with("/s2."), "{uris:?}");
    for uri in &uris {
        let asset = get(&resolve(&list_url, uri), &[]).await;
        assert_eq!(asset.status, 200, "{uri}: {}", asset.text());
    }
}

/// Content steering: the JSON manifest `SERVER-URI` names is served as an asset list is,
/// and the `RELOAD-URI` the player fetches the next one from carries the token, so
/// steering goes on past its first manifest.
#[tokio::test]
async fn a_steering_manifest_reloads_through_usher_with_the_token() {
    let master = "#EXTM3U\n\
        #EXT-X-CONTENT-STEERING:SERVER-URI=\"../steer/manifest.json\",PATHWAY-ID=\"A\"\n\
        #EXT-X-STREAM-INF:BANDWIDTH=1,PATHWAY-ID=\"A\"\nindex.m3u8\n";
    let steering = |next: &str| {
        json_object(&format!(
            r#"{{"VERSION":1,"TTL":300,"RELOAD-URI":"{next}","PATHWAY-PRIORITY":["A"]}}"#
        ))
    };
    let origin = origin_with(vec![
        ("/q/steer/manifest.json", steering("next.json?session=7")),
        ("/q/steer/next.json", steering("next.json?session=8")),
    ])
    .await;
    origin.insert("/q/v/master.m3u8", playlist(master));
    let usher = start(&origin);
    let master_url = format!("{}/q/v/master.m3u8?ticket={}", usher.url, mint("/q/"));
    let reply = get(&master_url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let start = text.find("SERVER-URI=\"").expect("a steering URI") + 12;
    let server_uri = &text[start..start + text[start..].find('"').unwrap()];
    let steering_url = resolve(&master_url, server_uri);
    let mut url = steering_url;
    // The first manifest, then the two the player reloads.
    for _ in 0..3 {
        let reply = get(&url, &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (200, ""),
            "{url}"
        );
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        url = resolve(&url, json["RELOAD-URI"].as_str().unwrap());
    }
    for seen in origin.seen() {
        assert!(!seen.target.contains("token"), "{}", seen.target);
    }
}

#[tokio::test]
async fn an_asset_list_that_is_not_json_or_not_a_list_is_refused() {
    let broken = json_object(r#"{"ASSETS": [{"URI": "../promo/index.m3u8", "DURATION": 2}"#);
    let no_uri = json_object(r#"{"ASSETS": [{"URI": 7, "DURATION": 2}]}"#);
    let missing = json_object(r#"{"error": "no such break"}"#);
    let missing = Object {
        status: Some(404),
        ..missing
    };
    // Latin-1, as an ad server misconfigured for its charset writes it: no JSON.
    let latin1 = Object {
        body: Bytes::from_static(
            b"{\"ASSETS\": [{\"URI\": \"../promo/index.m3u8\", \"X-AD-ID\": \"\xe9t\xe9\"}]}",
        ),
        ..json_object("")
    };
    // An ad server with no ad for this break answers 204.
    let no_ads = Object {
        status: Some(204),
        body: Bytes::new(),
        ..json_object("")
    };
    let origin = origin_with(vec![
        ("/q/ads/list.json", broken),
        ("/q/ads/numbers.json", no_uri),
        ("/q/ads/latin1.json", latin1),
        ("/q/ads/gone", missing),
        ("/q/ads/none.json", no_ads),
    ])
    .await;
    let usher = start(&origin);
    let ticket = mint("/q/");
    for path in [
        "/q/ads/list.json",
        "/q/ads/numbers.json",
        "/q/ads/latin1.json",
    ] {
        let reply = get(&format!("{}{path}?ticket={ticket}", usher.url), &[]).await;
        assert_eq!(reply.status, 502, "{path}: {}", reply.text());
        assert_eq!(reply.reason(), "bad_asset_list", "{path}");
    }
    assert_eq!(
        metric(
            &usher,
            "usher_playlist_rewrites_total{outcome=\"error\",playlist=\"asset_list\"}"
        )
        .await,
        3.0
    );
    // An origin's JSON error is no asset list: it goes out as it came, fetched once.
    let before = origin.seen().len();
    let reply = get(&format!("{}/q/ads/gone?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), r#"{"error": "no such break"}"#);
    assert_eq!(origin.seen().len(), before + 1);
    let reply = get(
        &format!("{}/q/ads/none.json?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
}
