//! Issue 11's playback rules through a real usher, sold through the admin API as an
//! operator sells: a nested media keeps the enclosing media's buyers playing (item 1),
//! the device class is decided at the playlist request and carried by the session token
//! (item 3), and the bare emailed link activates a purchase on the first computer through
//! usher's own device cookie, in a plain HTTP client and in ffprobe (item 4).

mod support;

use std::collections::HashMap;
use std::process::Command;

use serde_json::{json, Value};
use support::admin::api;
use support::cluster::status_reason;
use support::*;
use usher::rights::model::DeviceClass;

const MASTER: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=200000\n180p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n";
const LEVEL: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2,\ns1.ts\n#EXT-X-ENDLIST\n";

/// An origin with a master at `/demo/` and two renditions below it.
async fn origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/demo/master.m3u8".to_owned(), playlist(MASTER));
    for level in ["180p", "360p"] {
        objects.insert(format!("/demo/{level}/index.m3u8"), playlist(LEVEL));
        objects.insert(format!("/demo/{level}/s1.ts"), segment(300));
    }
    spawn_origin(objects).await
}

async fn ok(usher: &Usher, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = api(usher, method, path, Some(body)).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

/// Creates product `code` (with `fields`) containing a new media `media` at `prefix`.
async fn product_with_media(usher: &Usher, product: Value, media: &str, prefix: &str) {
    let code = product["code"].as_str().unwrap().to_owned();
    ok(usher, "POST", "/api/v1/products", product).await;
    ok(
        usher,
        "POST",
        "/api/v1/media",
        json!({"code": media, "prefix": prefix, "playlist": if prefix == "/demo/" { "master.m3u8" } else { "index.m3u8" }}),
    )
    .await;
    ok(
        usher,
        "POST",
        &format!("/api/v1/products/{code}/media"),
        json!({"media": media}),
    )
    .await;
}

/// Sells `product`/`media` to `account`; the play URL and the purchase's hash.
async fn sell_hash(usher: &Usher, product: &str, media: &str, account: &str) -> (String, String) {
    let sold = ok(
        usher,
        "POST",
        "/api/v1/buyers",
        json!({"product": product, "media": media, "account": account}),
    )
    .await;
    let text = |name: &str| sold[name].as_str().unwrap().to_owned();
    (text("play_url"), text("hash"))
}

/// Sells `product`/`media` to `account`; the play URL.
async fn sell(usher: &Usher, product: &str, media: &str, account: &str) -> String {
    sell_hash(usher, product, media, account).await.0
}

/// The first URI of a playlist whose line starts with `start`, resolved against `base`.
fn uri_of(base: &str, reply: &Reply, start: &str) -> String {
    let line = reply
        .text()
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no {start} in {}", reply.text()))
        .to_owned();
    resolve(base, &line)
}

#[tokio::test]
async fn item1_a_nested_media_prefix_keeps_the_enclosing_buyers_playing_and_sells_only_inside() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with_media(
        &usher,
        json!({"code": "p", "name": "Demo"}),
        "demo",
        "/demo/",
    )
    .await;
    let alice = sell(&usher, "p", "demo", "alice").await;
    let master = get(&alice, &[]).await;
    assert_eq!(master.status, 200, "{}", master.text());
    let level_180 = uri_of(&alice, &master, "180p/");
    assert_eq!(get(&level_180, &[]).await.status, 200);
    let alice_180_with_ticket = alice.replace("/demo/master.m3u8", "/demo/180p/index.m3u8");
    assert_eq!(get(&alice_180_with_ticket, &[]).await.status, 200);

    // The operator adds a media for the 180p rendition alone, and sells it to bob.
    product_with_media(
        &usher,
        json!({"code": "p180", "name": "Low"}),
        "m180",
        "/demo/180p/",
    )
    .await;
    let bob = sell(&usher, "p180", "m180", "bob").await;

    // alice's right on demo still covers /demo/180p/, with her ticket or her session.
    let again = get(&alice_180_with_ticket, &[]).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let segment = uri_of(&alice_180_with_ticket, &again, "s1.ts");
    assert_eq!(get(&segment, &[]).await.status, 200);
    assert_eq!(get(&level_180, &[]).await.status, 200);
    let master = get(&alice, &[]).await;
    let level_360 = uri_of(&alice, &master, "360p/");
    assert_eq!(get(&level_360, &[]).await.status, 200);

    // bob bought the 180p media only.
    let reply = get(&bob, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(bob.contains("/demo/180p/index.m3u8?"), "{bob}");
    let bob_360 = bob.replace("/demo/180p/", "/demo/360p/");
    assert_eq!(status_reason(&get(&bob_360, &[]).await).0, 403);
    // Even a ticket whose scope would open all of /demo/: no right covers /demo/360p/.
    let wide = mint_with("/demo/", |c| c.sub = "bob".into());
    let reply = get(
        &format!("{}/demo/360p/index.m3u8?ticket={wide}", usher.url),
        &[],
    )
    .await;
    assert_eq!(status_reason(&reply), (403, "no_rights".into()));
    let reply = get(
        &format!("{}/demo/180p/index.m3u8?ticket={wide}", usher.url),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);

    // The media goes again: /demo/180p/ is demo's alone, and alice plays on.
    let (status, _) = api(&usher, "DELETE", "/api/v1/media/m180?force=true", None).await;
    assert_eq!(status, 200);
    assert_eq!(get(&alice_180_with_ticket, &[]).await.status, 200);
}

#[tokio::test]
async fn item3_the_device_class_is_decided_at_the_playlist_and_segments_play_without_the_header() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    product_with_media(
        &usher,
        json!({"code": "box", "name": "Set-top boxes", "device_classes": "iptv"}),
        "demo",
        "/demo/",
    )
    .await;
    let play = sell(&usher, "box", "demo", "stb").await;
    let iptv = [("x-device-class", "iptv")];

    let master = get(&play, &iptv).await;
    assert_eq!(master.status, 200, "{}", master.text());
    // The player adds the header to its first request only, as players do.
    let level = uri_of(&play, &master, "180p/");
    let media = get(&level, &[]).await;
    assert_eq!(media.status, 200, "{}", media.text());
    let segment = uri_of(&level, &media, "s1.ts");
    assert_eq!(
        get(&segment, &[]).await.status,
        200,
        "no header on segments"
    );
    assert_eq!(
        get(&segment, &[("x-device-class", "ott")]).await.status,
        200,
        "a segment is judged by the session token's class, not a header"
    );

    // Without the header the playlist request is the default class, refused.
    assert_eq!(
        status_reason(&get(&play, &[]).await),
        (403, "device_class".into())
    );
    // A ticket that names its class: a header cannot open another.
    let ticket_url = |class| {
        let ticket = mint_with("/demo/", |c| {
            c.sub = "stb".into();
            c.cls = Some(class);
        });
        format!("{}/demo/master.m3u8?ticket={ticket}", usher.url)
    };
    assert_eq!(
        status_reason(&get(&ticket_url(DeviceClass::Ott), &iptv).await),
        (403, "device_class".into())
    );
    let named = ticket_url(DeviceClass::Iptv);
    let master = get(&named, &[]).await;
    assert_eq!(
        master.status, 200,
        "the ticket's own class, no header needed"
    );
    let level = uri_of(&named, &master, "360p/");
    assert_eq!(get(&level, &[("x-device-class", "ott")]).await.status, 200);

    // The operator issues such a ticket from the command line.
    let issued = Command::new(usher_bin())
        .args(["ticket", "issue", "--config"])
        .arg(usher.config_path())
        .args(["--sub", "stb", "--scope", "/demo/", "--class", "iptv"])
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let ticket = String::from_utf8(issued.stdout).unwrap();
    let url = format!("{}/demo/master.m3u8?ticket={}", usher.url, ticket.trim());
    let reply = get(&url, &[("x-device-class", "ott")]).await;
    assert_eq!(reply.status, 200, "the ticket's class, not the header's");
}

/// A product that may play on one computer only, sold for the demo's `/demo/`: the play
/// URL and the purchase's hash.
async fn one_computer(usher: &Usher) -> (String, String) {
    product_with_media(
        usher,
        json!({"code": "once", "name": "First computer", "activation": 1}),
        "demo",
        "/demo/",
    )
    .await;
    sell_hash(usher, "once", "demo", "buyer").await
}

#[tokio::test]
async fn item4_the_bare_link_binds_usher_s_device_cookie_and_a_second_computer_is_refused() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let (play, hash) = one_computer(&usher).await;

    // A ticket on a segment URL (an answer a cache may keep) makes up no device.
    let segment = play.replace("master.m3u8", "180p/s1.ts");
    let bare_segment = get(&segment, &[]).await;
    assert_eq!(
        status_reason(&bare_segment),
        (403, "device_required".into())
    );
    assert!(bare_segment.headers.get("set-cookie").is_none());

    // The bare link, as curl sends it: no device header, cookie or parameter.
    let first = get(&play, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let set_cookie = first
        .headers
        .get("set-cookie")
        .expect("usher sets its device cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.starts_with("usher_device="), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Max-Age=", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // A player that keeps no cookie: the device rides in the session token.
    let level = uri_of(&play, &first, "180p/");
    let media = get(&level, &[]).await;
    assert_eq!(media.status, 200);
    assert_eq!(get(&uri_of(&level, &media, "s1.ts"), &[]).await.status, 200);

    // The same computer comes back with its cookie: the same device.
    let back = get(&play, &[("cookie", &cookie)]).await;
    assert_eq!(back.status, 200, "{}", back.text());
    assert!(
        back.headers.get("set-cookie").is_none(),
        "nothing new to set"
    );
    // A second computer, which has no cookie, is a new device.
    assert_eq!(
        status_reason(&get(&play, &[]).await),
        (403, "activation_limit".into())
    );
    let (_, devices) = api(
        &usher,
        "GET",
        &format!("/api/v1/buyers/{hash}/devices"),
        None,
    )
    .await;
    let id = cookie.strip_prefix("usher_device=").unwrap();
    assert_eq!(
        devices["items"][0]["device"],
        usher::device::hash_id(id, None).as_str(),
        "bound to the cookie's device, hashed"
    );
    assert_eq!(devices["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn item4_with_usher_set_device_cookies_off_the_bare_link_needs_a_device() {
    let origin = origin().await;
    let config = rights_config(&origin.url(), "")
        .replace("[token]\n", "[token]\nset_device_cookie = false\n");
    let usher = Usher::start(&config, &[]);
    let (play, _) = one_computer(&usher).await;
    let bare = get(&play, &[]).await;
    assert_eq!(status_reason(&bare), (403, "device_required".into()));
    assert!(bare.headers.get("set-cookie").is_none());
    assert_eq!(get(&format!("{play}&device=stb-1"), &[]).await.status, 200);
}

#[tokio::test]
async fn item4_ffprobe_plays_the_bare_link_of_a_one_computer_purchase() {
    // The demo stream is real media ffprobe can read.
    let demo = demo_dir();
    let usher = Usher::start(&rights_config(demo.to_str().unwrap(), ""), &[]);
    let (play, _) = one_computer(&usher).await;
    let probe = || {
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "10000000"])
            .args([
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
                &play,
            ])
            .output()
            .expect("ffprobe is installed (scripts/test installs ffmpeg)")
    };
    let first = probe();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("h264"));
    // Another ffprobe run keeps no cookie: another device, past the one activation.
    let second = probe();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("403"));
}
