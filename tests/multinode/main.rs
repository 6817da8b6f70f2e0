//! Three usher nodes on loopback sharing one PostgreSQL (`store.backend = "postgres"`) and
//! one Redis (`sessions.backend = "redis"`), as behind a load balancer: a buyer sold on one
//! node plays on another, activations are counted once across nodes, a revoke on one node
//! stops the next segment on another while decisions are cached for ten minutes,
//! concurrency limits and `replace_oldest` hold across nodes, Redis killed mid-playback
//! follows `sessions.on_backend_error`, a session admitted by one node alone while Redis
//! stalled is written back and counted by the others (and one it replaced there is written
//! back replaced and stops on every node; one account Redis cannot read holds up the
//! write-back of no other, also after a gap), a session ended while Redis is away
//! lands once it is back (empty, or still holding it live) and one that idled out meanwhile
//! is not brought back, a stopped database refuses admin writes with 503
//! and loses nothing, acknowledged writes survive SIGKILL, and an embedded store moves to
//! PostgreSQL whole.
//!
//! The tests are grouped by the behaviour they cover, one module each; the helpers more
//! than one module uses are here.

#[path = "../support/mod.rs"]
mod support;

mod database;
mod rights;
mod sessions;
mod write_back;

use std::time::Duration;

use serde_json::{json, Value};

use support::admin::api;
use support::postgres::Postgres;
use support::redis::Redis;
use support::*;

/// A node's config: rights from the shared store, cached ten minutes (so a change seen
/// on another node proves the fan-out, not an expiry).
pub(crate) fn node_config(origin: &Origin, url: &str) -> String {
    rights_config(
        &origin.url(),
        &format!("[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{url}\"\ntimeout = \"2s\"\nconnect_timeout = \"1s\"\n"),
    )
}

/// A node's config with sessions shared through `redis` and `policy` when Redis is down.
fn shared_config(origin: &Origin, url: &str, redis: &Redis, policy: &str) -> String {
    format!(
        "{}\n[sessions]\nbackend = \"redis\"\non_backend_error = \"{policy}\"\n[sessions.redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
        node_config(origin, url),
        redis.url
    )
}

/// Waits (bounded) until `node` answers `/readyz` with `want`: subscribed to the others'
/// invalidations and reaching the store, or not.
pub(crate) async fn wait_ready(node: &Usher, want: u16) {
    let url = format!("{}/readyz", node.admin.as_ref().unwrap());
    for _ in 0..200 {
        if get(&url, &[]).await.status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered {want}");
}

/// Waits (bounded) until `node` has applied `n` invalidations of `scope` from the others.
async fn wait_received(node: &Usher, scope: &str, n: f64) {
    let series = format!("usher_invalidations_received_total{{scope=\"{scope}\"}}");
    for _ in 0..200 {
        if metric(node, &series).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{series} never reached {n}");
}

/// Waits (bounded) until `to` has applied every invalidation of `scope` that `from` sent.
pub(crate) async fn wait_converged(from: &Usher, to: &Usher, scope: &str) {
    let sent = format!("usher_invalidations_sent_total{{scope=\"{scope}\"}}");
    let n = metric(from, &sent).await;
    assert!(n >= 1.0, "{sent} is {n}");
    wait_received(to, scope, n).await;
}

/// Creates product `product` (JSON fields) holding the media `event` at `/event/`, through
/// `node`.
pub(crate) async fn sell_event(node: &Usher, product: Value) {
    let code = product["code"].as_str().unwrap().to_owned();
    let (status, body) = api(node, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        node,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        node,
        "POST",
        &format!("/api/v1/products/{code}/media"),
        Some(json!({"media": "event"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

pub(crate) async fn add_buyer(node: &Usher, product: &str, account: &str) -> (String, String) {
    let (status, sold) = api(
        node,
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

/// `url` (minted by some node) pointed at `node`.
pub(crate) fn on(node: &Usher, url: &str) -> String {
    let path = &url[url.find("/event/").unwrap()..];
    format!("{}{path}", node.url)
}

/// The playlist through `node` with `headers`, and its first segment's URL.
pub(crate) async fn play(node: &Usher, url: &str, headers: &[(&str, &str)]) -> (Reply, String) {
    let url = on(node, url);
    let reply = get(&url, headers).await;
    let segment = first_segment(&url, &reply);
    (reply, segment)
}

/// Repeats `request` (bounded: 200 tries, 5 ms apart) until its reply satisfies `done`
/// (a change made on one node reaching another); the last reply.
pub(crate) async fn until<F, Fut>(mut request: F, done: impl Fn(&Reply) -> bool) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut reply = request().await;
    for _ in 0..200 {
        if done(&reply) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        reply = request().await;
    }
    reply
}

/// Three nodes on one PostgreSQL and one Redis (`policy` when Redis is down), subscribed to
/// both.
pub(crate) async fn shared_cluster(
    origin: &Origin,
    url: &str,
    redis: &Redis,
    policy: &str,
) -> Vec<Usher> {
    let nodes: Vec<Usher> = (0..3)
        .map(|_| Usher::start(&shared_config(origin, url, redis, policy), &[]))
        .collect();
    for node in &nodes {
        wait_ready(node, 200).await;
    }
    nodes
}

/// The backends shared nodes run on (kept for the test's length).
struct Backends {
    _pg: Postgres,
    redis: Redis,
    _origin: Origin,
}

/// PostgreSQL, Redis, the origin and three shared nodes (`policy` when Redis is down), with
/// `product` sold to alice through the first: the backends, the nodes and her play URL.
pub(crate) async fn shared_setup(policy: &str, product: Value) -> (Backends, Vec<Usher>, String) {
    shared_setup_on(Redis::start(), policy, product).await
}

/// [`shared_setup`] on `redis`.
async fn shared_setup_on(
    redis: Redis,
    policy: &str,
    product: Value,
) -> (Backends, Vec<Usher>, String) {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let nodes = shared_cluster(&origin, &url, &redis, policy).await;
    let play_url = sell_on_pair(&nodes, product).await;
    let backends = Backends {
        _pg: pg,
        redis,
        _origin: origin,
    };
    (backends, nodes, play_url)
}

/// The phone's start on `node`, asked until admitted (or the wait runs out): the stream
/// the tv held is free once its end has reached every node.
pub(crate) async fn phone_admitted_on(node: &Usher, play_url: &str) -> Reply {
    until(
        || async { play(node, play_url, &[("x-device-id", "phone")]).await.0 },
        |r| r.status == 200,
    )
    .await
}

/// Shared nodes refusing new sessions while Redis is down, a product of one stream at a
/// time, and alice's tv playing it on the first node: the backends, the nodes, her play
/// URL and the tv's segment URL.
pub(crate) async fn one_stream_playing_on_a_tv() -> (Backends, Vec<Usher>, String, String) {
    one_stream_playing_on_a_tv_on(Redis::start()).await
}

/// [`one_stream_playing_on_a_tv`] on `redis`.
pub(crate) async fn one_stream_playing_on_a_tv_on(
    redis: Redis,
) -> (Backends, Vec<Usher>, String, String) {
    let product = json!({"code": "p", "name": "Final", "max_sessions": 1});
    let (backends, nodes, play_url) = shared_setup_on(redis, "deny", product).await;
    let (tv, tv_segment) = play(&nodes[0], &play_url, &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200);
    (backends, nodes, play_url, tv_segment)
}

/// Sells `product` through `nodes[0]` and waits until the others know its media.
async fn sell_on_pair(nodes: &[Usher], product: Value) -> String {
    let code = product["code"].as_str().unwrap().to_owned();
    sell_event(&nodes[0], product).await;
    for node in &nodes[1..] {
        wait_converged(&nodes[0], node, "all").await;
    }
    add_buyer(&nodes[0], &code, "alice").await.0
}
