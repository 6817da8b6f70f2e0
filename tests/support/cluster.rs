//! Two usher nodes sharing one PostgreSQL and one Redis, one of them on Redis through a
//! [`Relay`] (so its connections can be silenced), with an origin serving the media
//! `event` at `/event/`; and what tests on them do: sell, play, wait until something shows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::admin::api;
use super::postgres::Postgres;
use super::redis::Redis;
use super::relay::Relay;
use super::{
    first_segment, get, playlist, rights_config, segment, spawn_origin, Origin, Reply, Usher,
};

/// The media playlist at `/event/index.m3u8`: two segments, of which the origin serves
/// `s1.ts`.
const MEDIA: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n#EXT-X-ENDLIST\n";

/// Which node of a [`Cluster`] reaches Redis through the relay.
#[derive(Clone, Copy)]
pub enum Relayed {
    /// Node A (B on Redis directly).
    A,
    /// Node B (A on Redis directly).
    B,
}

/// PostgreSQL, Redis, the origin and two ready nodes, one of them on Redis through
/// `relay`. The nodes go first when it is dropped.
pub struct Cluster {
    /// Node A.
    pub a: Usher,
    /// Node B.
    pub b: Usher,
    /// The relay between the node it was started with and Redis.
    pub relay: Relay,
    /// The Redis both nodes share.
    pub redis: Redis,
    _origin: Origin,
    _pg: Postgres,
}

impl Cluster {
    /// Starts everything, `relayed` on Redis through the relay, and waits until both
    /// nodes are ready.
    pub async fn start(relayed: Relayed) -> Cluster {
        let pg = Postgres::start();
        let database = pg.database("usher");
        let redis = Redis::start();
        let mut objects = HashMap::new();
        objects.insert("/event/index.m3u8".to_owned(), playlist(MEDIA));
        objects.insert("/event/s1.ts".to_owned(), segment(300));
        let origin = spawn_origin(objects).await;
        let relay = Relay::start(redis.url.trim_start_matches("redis://").to_owned());
        let (on_a, on_b) = match relayed {
            Relayed::A => (&relay.url, &redis.url),
            Relayed::B => (&redis.url, &relay.url),
        };
        let a = Usher::start(&node_config(&origin, &database, on_a), &[]);
        let b = Usher::start(&node_config(&origin, &database, on_b), &[]);
        ready(&a).await;
        ready(&b).await;
        Cluster {
            a,
            b,
            relay,
            redis,
            _origin: origin,
            _pg: pg,
        }
    }
}

/// Sessions shared through Redis at `url`, refused while Redis does not answer.
pub fn shared_sessions(url: &str) -> String {
    format!(
        "[sessions]\nbackend = \"redis\"\non_backend_error = \"deny\"\n\
         [sessions.redis]\nurl = \"{url}\"\ntimeout = \"500ms\"\n"
    )
}

/// A node's config: rights from PostgreSQL at `pg`, sessions shared through Redis at
/// `redis` ([`shared_sessions`]).
pub fn node_config(origin: &Origin, pg: &str, redis: &str) -> String {
    rights_config(
        &origin.url(),
        &format!(
            "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{pg}\"\n\
             timeout = \"2s\"\nconnect_timeout = \"1s\"\n{}",
            shared_sessions(redis)
        ),
    )
}

/// Polls `check` (bounded by `limit`) until it says done; the last value it saw.
pub async fn within<T, F, Fut>(limit: Duration, mut check: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    loop {
        let seen = check().await;
        if done(&seen) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`within`] 30 s.
pub async fn within_30s<T, F, Fut>(check: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    within(Duration::from_secs(30), check, done).await
}

/// Waits (bounded: 30 s) until `node` is ready: subscribed to Redis and reaching its
/// store.
pub async fn ready(node: &Usher) {
    let url = format!("{}/readyz", node.admin.as_ref().unwrap());
    let status = within_30s(|| async { get(&url, &[]).await.status }, |s| *s == 200).await;
    assert_eq!(status, 200, "{url}");
}

/// A reply's status and the `error` of its JSON body.
pub fn status_reason(reply: &Reply) -> (u16, String) {
    (reply.status.as_u16(), reply.reason())
}

/// POSTs `body` to `path` on `node`, expecting success.
pub async fn post(node: &Usher, path: &str, body: Value) -> Value {
    let (status, answer) = api(node, "POST", path, Some(body)).await;
    assert!(status < 300, "{path}: {status} {answer}");
    answer
}

/// Sells through `node` each of `sales` (a product as JSON fields, and the account that
/// buys it), each product holding the media `event` at `/event/`: the buyers' answers
/// (`play_url`, `hash`…).
pub async fn sell_event(
    node: &Usher,
    sales: impl IntoIterator<Item = (Value, &str)>,
) -> Vec<Value> {
    let media = json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"});
    post(node, "/api/v1/media", media).await;
    let mut sold = Vec::new();
    for (product, account) in sales {
        let code = product["code"].as_str().unwrap().to_owned();
        post(node, "/api/v1/products", product).await;
        let link = json!({"media": "event"});
        post(node, &format!("/api/v1/products/{code}/media"), link).await;
        let buyer = json!({"product": code, "media": "event", "account": account});
        sold.push(post(node, "/api/v1/buyers", buyer).await);
    }
    sold
}

/// `url` (minted by some node) pointed at `node`.
pub fn on(node: &Usher, url: &str) -> String {
    format!("{}{}", node.url, &url[url.find("/event/").unwrap()..])
}

/// The playlist through `node` for `device`, and its first segment's URL.
pub async fn play(node: &Usher, url: &str, device: &str) -> (Reply, String) {
    let url = on(node, url);
    let reply = get(&url, &[("x-device-id", device)]).await;
    let segment = first_segment(&url, &reply);
    (reply, segment)
}

/// `device` starts playing `url` on `node` (asked until admitted: `node` may not know the
/// media yet) and gets its first segment; that segment's URL.
pub async fn playing(node: &Usher, url: &str, device: &str) -> String {
    let (reply, segment) = within_30s(|| play(node, url, device), |(r, _)| r.status == 200).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(get(&segment, &[("x-device-id", device)]).await.status, 200);
    segment
}
