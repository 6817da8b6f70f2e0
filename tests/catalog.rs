//! Issue 11 item 9, media and devices as the TVMS/OpenTV APIs have them, through a real
//! usher: `PATCH /api/v1/media/{code}` (titles, live title, playlist, editorial; the prefix
//! refused), deleting media that buyers hold (409 with their count unless forced), taking
//! out of a product a media its buyers named (the same), devices
//! added ahead of use (AddDeviceToCustomer) under the activation limit, listed with the
//! operator's id and the hash, deleted by either, and the `usher admin device …` /
//! `usher admin session …` commands.

mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::admin::api;
use support::cli::{usher_admin, CliRun};
use support::*;

const VOD: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n#EXT-X-ENDLIST\n";

async fn origin() -> Origin {
    let mut objects = HashMap::new();
    for playlist_name in ["index.m3u8", "main.m3u8"] {
        objects.insert(format!("/event/{playlist_name}"), playlist(VOD));
    }
    objects.insert("/event/s1.ts".to_owned(), segment(300));
    objects.insert("/event/s2.ts".to_owned(), segment(300));
    spawn_origin(objects).await
}

/// Creates `product` (JSON) and the media `event` (`/event/`), links `content` into the
/// product.
async fn catalogue(usher: &Usher, product: Value, content: &str) {
    let code = product["code"].as_str().unwrap().to_owned();
    let (status, body) = api(usher, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8", "live": true})),
    )
    .await;
    assert!(status == 201 || status == 409, "{body}");
    let (status, body) = api(
        usher,
        "POST",
        &format!("/api/v1/products/{code}/media"),
        Some(json!({ "media": content })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Sells `product` to `account` for the media `event`: (play URL, purchase hash).
async fn sell(usher: &Usher, product: &str, account: &str) -> (String, String) {
    let (status, sold) = api(
        usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": product, "media": "event", "account": account})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    (
        sold["play_url"].as_str().unwrap().to_owned(),
        sold["hash"].as_str().unwrap().to_owned(),
    )
}

/// A playlist request from a player naming `device`: (status, reason).
async fn play(url: &str, device: &str) -> (u16, String) {
    let reply = get(url, &[("x-device-id", device)]).await;
    (reply.status.as_u16(), reply.reason())
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().expect("a listing").clone()
}

#[tokio::test]
async fn item9_media_patch_changes_titles_playlist_and_editorial_and_refuses_the_prefix() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(&usher, json!({"code": "p", "name": "Final"}), "event").await;

    let (status, media) = api(
        &usher,
        "PATCH",
        "/api/v1/media/event",
        Some(json!({"title": "The final", "live_title": "Jan 1", "playlist": "main.m3u8"})),
    )
    .await;
    assert_eq!(status, 200, "{media}");
    let (_, media) = api(&usher, "GET", "/api/v1/media/event", None).await;
    assert_eq!(media["title"], "The final");
    assert_eq!(media["live_title"], "Jan 1");
    assert_eq!(media["playlist"], "main.m3u8");
    assert_eq!(media["prefix"], "/event/");
    let (play_url, _) = sell(&usher, "p", "alice").await;
    assert!(play_url.contains("/event/main.m3u8?"), "{play_url}");
    assert_eq!(play(&play_url, "tv").await.0, 200);

    // The live title changes at any time (the seeds' Jan 1, Jan 2 …); the code stays.
    let (status, _) = api(
        &usher,
        "PATCH",
        "/api/v1/media/event",
        Some(json!({"live_title": "Jan 2"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, media) = api(&usher, "GET", "/api/v1/media/event", None).await;
    assert_eq!(media["live_title"], "Jan 2");
    assert_eq!(media["title"], "The final", "untouched fields stay");

    let (status, refused) = api(
        &usher,
        "PATCH",
        "/api/v1/media/event",
        Some(json!({"prefix": "/elsewhere/"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["field"], "prefix", "{refused}");
    let (status, _) = api(
        &usher,
        "PATCH",
        "/api/v1/media/event",
        Some(json!({"prefix": "/event/", "title": "Final"})),
    )
    .await;
    assert_eq!(status, 200, "the same prefix is no change");
    let (status, refused) = api(
        &usher,
        "PATCH",
        "/api/v1/media/event",
        Some(json!({"colour": "red"})),
    )
    .await;
    assert_eq!((status, refused["field"].as_str()), (400, Some("colour")));
    let (status, _) = api(
        &usher,
        "PATCH",
        "/api/v1/media/nope",
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!(status, 404);
}

/// Codes do not change: a PATCH of a product or a media whose body names another `code`
/// (a rename) is refused with 400 naming `code` and writes nothing, instead of answering
/// 200 with the old code and the other fields changed. Sending its own code is fine (the
/// PPV API's `update` does).
#[tokio::test]
async fn a_patch_naming_another_code_is_refused_not_ignored() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(&usher, json!({"code": "p", "name": "Final"}), "event").await;

    for (path, what) in [
        ("/api/v1/products/p", "name"),
        ("/api/v1/media/event", "title"),
    ] {
        let (status, refused) = api(
            &usher,
            "PATCH",
            path,
            Some(json!({"code": "renamed", what: "Changed"})),
        )
        .await;
        assert_eq!(status, 400, "{path}: {refused}");
        assert_eq!(refused["field"], "code", "{path}: {refused}");
        let (_, kept) = api(&usher, "GET", path, None).await;
        assert_ne!(kept[what], "Changed", "{path}: nothing was written: {kept}");
        let (status, _) = api(
            &usher,
            "PATCH",
            path,
            Some(json!({"code": kept["code"], what: "Same"})),
        )
        .await;
        assert_eq!(status, 200, "{path}: its own code is no change");
    }
    let (status, _) = api(&usher, "GET", "/api/v1/products/renamed", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn item9_media_patch_of_the_editorial_id_changes_rights_at_once() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(&usher, json!({"code": "other", "name": "Other"}), "event").await;
    let (status, _) = api(
        &usher,
        "PATCH",
        "/api/v1/media/event",
        Some(json!({"editorial": "final-ed"})),
    )
    .await;
    assert_eq!(status, 200);
    // A product sold by the editorial id covers the media that names it.
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "ed", "name": "By editorial id"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products/ed/media",
        Some(json!({"media": "final-ed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (play_url, _) = sell(&usher, "ed", "bob").await;
    assert_eq!(play(&play_url, "tv").await.0, 200);

    // Clearing the editorial id takes the right away on the next request (decisions are
    // cached for ten minutes in this config, so this proves the invalidation).
    let (status, media) = api(
        &usher,
        "PATCH",
        "/api/v1/media/event",
        Some(json!({"editorial": ""})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(media["editorial"], Value::Null);
    assert_eq!(play(&play_url, "tv").await, (403, "no_rights".into()));
}

#[tokio::test]
async fn item9_deleting_media_that_buyers_hold_is_refused_with_their_count_unless_forced() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(&usher, json!({"code": "p", "name": "Final"}), "event").await;
    // One bought for the media, one of the product without naming it, one revoked.
    sell(&usher, "p", "alice").await;
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "p", "account": "bob"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, carol) = sell(&usher, "p", "carol").await;
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{carol}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, refused) = api(&usher, "DELETE", "/api/v1/media/event", None).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"], "has_buyers", "{refused}");
    assert_eq!(
        refused["buyers"], 2,
        "revoked purchases hold nothing: {refused}"
    );
    assert_eq!(
        refused["reason"],
        "media event has 2 buyers: add ?force=true to delete it anyway"
    );
    let (status, _) = api(&usher, "GET", "/api/v1/media/event", None).await;
    assert_eq!(status, 200, "nothing was deleted");

    let (status, body) = api(&usher, "DELETE", "/api/v1/media/event?force=true", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api(&usher, "GET", "/api/v1/media/event", None).await;
    assert_eq!(status, 404);

    // The product its buyers bought is refused the same way: deleting it would take
    // their purchases and device bindings with it.
    let (status, refused) = api(&usher, "DELETE", "/api/v1/products/p", None).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        (refused["error"].as_str(), refused["buyers"].as_u64()),
        (Some("has_buyers"), Some(2)),
        "{refused}"
    );
    assert_eq!(
        refused["reason"],
        "product p has 2 buyers: add ?force=true to delete it anyway"
    );
    let (status, buyers) = api(&usher, "GET", "/api/v1/buyers?product=p", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        buyers["items"].as_array().map(Vec::len),
        Some(3),
        "{buyers}"
    );
    let (status, body) = api(&usher, "DELETE", "/api/v1/products/p?force=true", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api(&usher, "GET", "/api/v1/products/p", None).await;
    assert_eq!(status, 404);

    // Media nobody bought goes without force.
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "unsold", "prefix": "/unsold/"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = api(&usher, "DELETE", "/api/v1/media/unsold", None).await;
    assert_eq!(status, 200);
}

/// Taking a media out of a group product takes it from the buyers who bought that one
/// item: refused with their count unless forced. Buyers of the whole product and revoked
/// ones do not hold it, so another title rotates out as a plain unlink.
#[tokio::test]
async fn taking_out_a_media_its_buyers_named_is_refused_with_their_count_unless_forced() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(
        &usher,
        json!({"code": "season", "name": "Season", "type": "group"}),
        "event",
    )
    .await;
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "extra", "prefix": "/extra/"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products/season/media",
        Some(json!({"media": "extra"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Alice bought the one item; Bob the whole season; Carol's item was revoked.
    let (alice_url, _) = sell(&usher, "season", "alice").await;
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "season", "account": "bob"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, carol) = sell(&usher, "season", "carol").await;
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{carol}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, refused) = api(
        &usher,
        "DELETE",
        "/api/v1/products/season/media/event",
        None,
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        (refused["error"].as_str(), refused["buyers"].as_u64()),
        (Some("has_buyers"), Some(1)),
        "only alice named it: {refused}"
    );
    // An unlink takes the media out of the product; the media itself stays.
    assert_eq!(
        refused["reason"],
        "media event in product season has 1 buyers: add ?force=true to take it out anyway"
    );
    let (_, linked) = api(&usher, "GET", "/api/v1/products/season/media", None).await;
    assert_eq!(
        items(&linked)
            .iter()
            .map(|m| m["code"].clone())
            .collect::<Vec<_>>(),
        [json!("event"), json!("extra")],
        "nothing was taken out"
    );
    assert_eq!(play(&alice_url, "tv").await.0, 200, "alice still plays");

    // Nobody named the other title: it rotates out without force.
    let (status, body) = api(
        &usher,
        "DELETE",
        "/api/v1/products/season/media/extra",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = api(
        &usher,
        "DELETE",
        "/api/v1/products/season/media/event?force=true",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"], "event", "{body}");
    let (_, linked) = api(&usher, "GET", "/api/v1/products/season/media", None).await;
    assert!(items(&linked).is_empty(), "{linked}");
    assert_eq!(play(&alice_url, "tv").await, (403, "no_rights".into()));
}

#[tokio::test]
async fn item9_a_device_added_ahead_of_use_uses_an_activation_and_then_plays_without_another() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(
        &usher,
        json!({"code": "p", "name": "Final", "activation": 1}),
        "event",
    )
    .await;
    let (play_url, hash) = sell(&usher, "p", "alice").await;
    let devices = format!("/api/v1/buyers/{hash}/devices");

    let (status, added) = api(&usher, "POST", &devices, Some(json!({"device": "stb-1"}))).await;
    assert_eq!(status, 201, "{added}");
    let stb_hash = usher::device::hash_id("stb-1", None);
    assert_eq!(added["device"], stb_hash.as_str());
    assert_eq!(added["id"], "stb-1");
    let (status, again) = api(&usher, "POST", &devices, Some(json!({"device": "stb-1"}))).await;
    assert_eq!(
        status, 201,
        "adding it twice keeps its one activation: {again}"
    );
    let (status, full) = api(&usher, "POST", &devices, Some(json!({"device": "stb-2"}))).await;
    assert_eq!(status, 409, "{full}");
    assert_eq!(full["error"], "activation_limit", "{full}");
    let (status, missing) = api(&usher, "POST", &devices, Some(json!({}))).await;
    assert_eq!((status, missing["field"].as_str()), (400, Some("device")));

    assert_eq!(
        play(&play_url, "stb-1").await.0,
        200,
        "the added device plays"
    );
    assert_eq!(
        play(&play_url, "stb-2").await,
        (403, "activation_limit".into()),
        "it holds the only activation"
    );
    let (_, list) = api(&usher, "GET", &devices, None).await;
    let list = items(&list);
    assert_eq!(list.len(), 1, "playing used no second activation: {list:?}");
    assert_eq!(list[0]["id"], "stb-1");
    assert_eq!(list[0]["device"], stb_hash.as_str());

    // Deleted by the id the operator knows; the answer names the hash freed.
    let (status, freed) = api(&usher, "DELETE", &format!("{devices}/stb-1"), None).await;
    assert_eq!(status, 200, "{freed}");
    assert_eq!(freed["freed"], stb_hash.as_str());
    assert_eq!(
        play(&play_url, "stb-2").await.0,
        200,
        "the freed activation"
    );

    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/buyers/nope/devices",
        Some(json!({"device": "x"})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn item9_a_device_a_player_activated_is_listed_by_hash_only_and_deleted_by_id_or_hash() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(
        &usher,
        json!({"code": "p", "name": "Final", "activation": 2}),
        "event",
    )
    .await;
    let (play_url, hash) = sell(&usher, "p", "alice").await;
    assert_eq!(play(&play_url, "tv").await.0, 200);
    assert_eq!(play(&play_url, "phone").await.0, 200);
    let devices = format!("/api/v1/buyers/{hash}/devices");
    let (_, list) = api(&usher, "GET", &devices, None).await;
    let list = items(&list);
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0]["device"],
        usher::device::hash_id("tv", None).as_str()
    );
    assert_eq!(list[0]["id"], Value::Null, "a player's id is never stored");

    let (status, freed) = api(&usher, "DELETE", &format!("{devices}/tv"), None).await;
    assert_eq!(status, 200, "by the id the player names: {freed}");
    let phone_hash = usher::device::hash_id("phone", None);
    let (status, _) = api(&usher, "DELETE", &format!("{devices}/{phone_hash}"), None).await;
    assert_eq!(status, 200, "by the hash");
    let (_, list) = api(&usher, "GET", &devices, None).await;
    assert!(items(&list).is_empty(), "{list}");
    let (status, _) = api(&usher, "DELETE", &format!("{devices}/tv"), None).await;
    assert_eq!(status, 404);
}

/// `usher admin ARGS` with the test credential.
async fn admin(usher: &Usher, args: &[&str]) -> CliRun {
    usher_admin(usher, args).await
}

fn json_lines(run: &CliRun) -> Vec<Value> {
    assert_eq!(run.code, Some(0), "{run:?}");
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[tokio::test]
async fn item9_cli_device_and_session_commands_follow_the_output_contract() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    catalogue(
        &usher,
        json!({"code": "p", "name": "Final", "activation": 1}),
        "event",
    )
    .await;
    let (play_url, hash) = sell(&usher, "p", "alice").await;
    let stb_hash = usher::device::hash_id("stb-1", None);

    let added = admin(&usher, &["device", "add", &hash, "stb-1"]).await;
    assert_eq!(
        (added.code, added.stdout.as_str()),
        (Some(0), format!("{stb_hash}\n").as_str()),
        "{added:?}"
    );
    let full = admin(&usher, &["device", "add", &hash, "stb-2"]).await;
    assert_eq!(full.code, Some(1), "{full:?}");
    assert_eq!(full.stdout, "");
    assert_eq!(full.stderr.lines().count(), 1, "{full:?}");
    assert!(full.stderr.contains("activation_limit"), "{full:?}");
    let listed = json_lines(&admin(&usher, &["device", "list", &hash]).await);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "stb-1");
    assert_eq!(listed[0]["device"], stb_hash.as_str());

    assert_eq!(play(&play_url, "stb-1").await.0, 200);
    let sessions = json_lines(&admin(&usher, &["session", "list", "--account", "alice"]).await);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["device"], stb_hash.as_str());
    let sid = sessions[0]["sid"].as_str().unwrap().to_owned();
    assert!(json_lines(&admin(&usher, &["session", "list", "--account", "bob"]).await).is_empty());
    let ended = admin(&usher, &["session", "end", &sid]).await;
    assert_eq!(
        (ended.code, ended.stdout.clone()),
        (Some(0), format!("{sid}\n")),
        "{ended:?}"
    );
    assert!(json_lines(&admin(&usher, &["session", "list"]).await).is_empty());
    let again = admin(&usher, &["session", "end", "no-such-session"]).await;
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("not found"), "{again:?}");

    let deleted = admin(&usher, &["device", "delete", &hash, "stb-1"]).await;
    assert_eq!(
        (deleted.code, deleted.stdout.clone()),
        (Some(0), format!("{stb_hash}\n")),
        "{deleted:?}"
    );
    assert!(json_lines(&admin(&usher, &["device", "list", &hash]).await).is_empty());

    let usage = admin(&usher, &["device", "add", &hash]).await;
    assert_eq!(
        usage.code,
        Some(2),
        "a missing device id is a usage error: {usage:?}"
    );
    assert_eq!(usage.stdout, "");
}
