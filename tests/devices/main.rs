//! Devices and sessions through a real usher, driven the way players drive it: clients with
//! distinct device ids and addresses (through a trusted proxy's X-Forwarded-For), and
//! ffprobe. First-use binding and the N+1th device, freeing an activation, both
//! concurrency policies, IP prefix tolerance, ip_recovery, copied session tokens, bindings
//! surviving SIGKILL; with a controllable clock, idle timeouts, a live session outlasting
//! its ticket, and a revoke stopping it.
//!
//! The tests are grouped by the behaviour they cover, one module each; the helpers more
//! than one module uses are here.

#[path = "../support/mod.rs"]
mod support;

mod activations;
mod lifetimes;
mod purchases;
mod sessions;

use std::collections::HashMap;

use serde_json::{json, Value};

use support::admin::{api, HasAdmin};
use support::*;

const LIVE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n";

pub(crate) async fn origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/event/index.m3u8".to_owned(), playlist(LIVE));
    objects.insert("/event/s1.ts".to_owned(), segment(300));
    objects.insert("/event/s2.ts".to_owned(), segment(300));
    spawn_origin(objects).await
}

/// Rights from the store, the loopback client trusted as a proxy so tests can speak for
/// many client addresses, sessions bound to the client's /24.
pub(crate) fn config(origin: &Origin) -> String {
    rights_config(
        &origin.url(),
        "[sessions]\nbind_ip = true\nidle_timeout = \"60s\"\n",
    )
    .replace(
        "[listen]\n",
        "[listen]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    )
}

/// Sells product `code` (with `fields`) for `/event/` and returns a buyer's ticket URL.
pub(crate) async fn sell(usher: &impl HasAdmin, product: Value) -> (String, String) {
    let code = product["code"].as_str().unwrap().to_owned();
    let (status, body) = api(usher, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    api(
        usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"})),
    )
    .await;
    let (status, body) = api(
        usher,
        "POST",
        &format!("/api/v1/products/{code}/media"),
        Some(json!({"media": "event"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, sold) = api(
        usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": code, "media": "event", "account": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    (
        sold["play_url"].as_str().unwrap().to_owned(),
        sold["hash"].as_str().unwrap().to_owned(),
    )
}

/// A player: a device id and a client address.
pub(crate) struct Player<'a> {
    device: &'a str,
    ip: &'a str,
}

impl<'a> Player<'a> {
    /// The player of `device` at address `ip`.
    fn at(device: &'a str, ip: &'a str) -> Self {
        Self { device, ip }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        vec![("x-device-id", self.device), ("x-forwarded-for", self.ip)]
    }

    async fn get(&self, url: &str) -> Reply {
        get(url, &self.headers()).await
    }

    /// Loads the playlist with the ticket; returns the reply and its first segment's URL.
    async fn start(&self, play_url: &str) -> (Reply, String) {
        let reply = self.get(play_url).await;
        let segment = reply
            .text()
            .lines()
            .find(|l| l.starts_with("s1.ts"))
            .map(|l| resolve(play_url, l))
            .unwrap_or_default();
        (reply, segment)
    }
}

/// Reloads the live playlist with the session token it carries, as a live player does.
pub(crate) async fn reload(player: &Player<'_>, playlist_url: &str) -> (Reply, String) {
    let reply = player.get(playlist_url).await;
    let token = reply.token_for("s1.ts").unwrap_or_default();
    (reply, token)
}
