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

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::admin::api;
use support::cluster::status_reason;
use support::inprocess::InProcess;
use support::postgres::Postgres;
use support::redis::Redis;
use support::*;

/// A node's config: rights from the shared store, cached ten minutes (so a change seen
/// on another node proves the fan-out, not an expiry).
fn node_config(origin: &Origin, url: &str) -> String {
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
async fn wait_ready(node: &Usher, want: u16) {
    let url = format!("{}/readyz", node.admin.as_ref().unwrap());
    for _ in 0..200 {
        if get(&url, &[]).await.status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered {want}");
}

/// Three nodes on one PostgreSQL and one Redis, each subscribed to both.
async fn cluster(origin: &Origin, url: &str, redis: &Redis) -> Vec<Usher> {
    shared_cluster(origin, url, redis, "deny").await
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
async fn wait_converged(from: &Usher, to: &Usher, scope: &str) {
    let sent = format!("usher_invalidations_sent_total{{scope=\"{scope}\"}}");
    let n = metric(from, &sent).await;
    assert!(n >= 1.0, "{sent} is {n}");
    wait_received(to, scope, n).await;
}

/// Creates product `product` (JSON fields) holding the media `event` at `/event/`, through
/// `node`.
async fn sell_event(node: &Usher, product: Value) {
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

async fn add_buyer(node: &Usher, product: &str, account: &str) -> (String, String) {
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
fn on(node: &Usher, url: &str) -> String {
    let path = &url[url.find("/event/").unwrap()..];
    format!("{}{path}", node.url)
}

/// The playlist through `node` with `headers`, and its first segment's URL.
async fn play(node: &Usher, url: &str, headers: &[(&str, &str)]) -> (Reply, String) {
    let url = on(node, url);
    let reply = get(&url, headers).await;
    let segment = first_segment(&url, &reply);
    (reply, segment)
}

/// Repeats `request` (bounded: 200 tries, 5 ms apart) until its reply satisfies `done`
/// (a change made on one node reaching another); the last reply.
async fn until<F, Fut>(mut request: F, done: impl Fn(&Reply) -> bool) -> Reply
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

#[tokio::test]
async fn a_buyer_sold_on_node_a_plays_on_node_c_and_a_revoke_on_a_stops_the_next_segment_on_c() {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let redis = Redis::start();
    let nodes = cluster(&origin, &url, &redis).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    sell_event(a, json!({"code": "final", "name": "Final"})).await;
    // Node C learns the new media from A's invalidations (its media index is re-read).
    wait_converged(a, c, "all").await;
    wait_converged(a, b, "all").await;
    let (play_url, hash) = add_buyer(a, "final", "alice").await;

    let (playlist, segment) = play(c, &play_url, &[]).await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    assert_eq!(get(&segment, &[]).await.status, 200);
    assert_eq!(
        get(&segment, &[]).await.status,
        200,
        "again, from C's cache"
    );
    assert!(metric(c, "usher_rights_cache_total{outcome=\"hit\"}").await >= 1.0);
    let (from_b, _) = play(b, &play_url, &[]).await;
    assert_eq!(from_b.status, 200, "and on B");

    let (status, body) = api(a, "POST", &format!("/api/v1/buyers/{hash}/revoke"), None).await;
    assert_eq!(status, 200, "{body}");
    let revoked = Instant::now();
    let refused = until(|| async { get(&segment, &[]).await }, |r| r.status != 200).await;
    eprintln!(
        "revoke on A refused on C after {} ms",
        revoked.elapsed().as_millis()
    );
    assert_eq!(status_reason(&refused), (403, "revoked".into()));
    assert!(metric(c, "usher_invalidations_received_total{scope=\"subject\"}").await >= 1.0);
    assert!(metric(a, "usher_invalidations_sent_total{scope=\"subject\"}").await >= 1.0);
}

#[tokio::test]
async fn activations_are_counted_once_across_nodes_even_when_twenty_devices_race() {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let redis = Redis::start();
    let nodes = cluster(&origin, &url, &redis).await;
    sell_event(
        &nodes[0],
        json!({"code": "p", "name": "Final", "activation": 2}),
    )
    .await;
    for node in &nodes[1..] {
        wait_converged(&nodes[0], node, "all").await;
    }
    let (play_url, _) = add_buyer(&nodes[0], "p", "alice").await;
    let device = |d: &'static str| [("x-device-id", d)];
    assert_eq!(
        play(&nodes[0], &play_url, &device("tv")).await.0.status,
        200
    );
    assert_eq!(
        play(&nodes[1], &play_url, &device("phone")).await.0.status,
        200
    );
    let (third, _) = play(&nodes[2], &play_url, &device("laptop")).await;
    assert_eq!(status_reason(&third), (403, "activation_limit".into()));
    assert_eq!(
        play(&nodes[2], &play_url, &device("tv")).await.0.status,
        200,
        "a device bound on A plays on C without another activation"
    );

    // A second purchase, and 20 distinct devices playing it for the first time at once,
    // spread over the three nodes.
    let (race_url, race_hash) = add_buyer(&nodes[0], "p", "bob").await;
    let players: Vec<_> = (0..20)
        .map(|n| {
            let url = on(&nodes[n % 3], &race_url);
            tokio::spawn(async move {
                let id = format!("device-{n}");
                get(&url, &[("x-device-id", id.as_str())]).await
            })
        })
        .collect();
    let mut played = 0;
    let mut limited = 0;
    for player in players {
        match status_reason(&player.await.unwrap()) {
            (200, _) => played += 1,
            (403, reason) if reason == "activation_limit" => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((played, limited), (2, 18));
    let (_, devices) = api(
        &nodes[1],
        "GET",
        &format!("/api/v1/buyers/{race_hash}/devices"),
        None,
    )
    .await;
    assert_eq!(
        devices["items"].as_array().map(Vec::len),
        Some(2),
        "exactly 2 activations recorded: {devices}"
    );
}

#[tokio::test]
async fn with_the_database_stopped_admin_writes_answer_503_recent_viewers_play_by_grace_and_nothing_is_lost(
) {
    let mut pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let config = node_config(&origin, &url).replace(
        "negative_ttl = \"10m\"",
        "negative_ttl = \"10m\"\ngrace = \"10m\"",
    );
    let node = Usher::start(&config, &[]);
    wait_ready(&node, 200).await;
    sell_event(&node, json!({"code": "final", "name": "Final"})).await;
    let (play_url, hash) = add_buyer(&node, "final", "alice").await;
    let (late_url, _) = add_buyer(&node, "final", "bob").await;
    let (playlist, segment) = play(&node, &play_url, &[]).await;
    assert_eq!(playlist.status, 200);
    assert_eq!(get(&segment, &[]).await.status, 200);

    pg.stop();
    let (status, body) = api(
        &node,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "final", "media": "event", "account": "carol"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("store_unavailable"))
    );
    let (status, _) = api(
        &node,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 503, "the revoke is refused, not half-done");
    wait_ready(&node, 503).await;
    let readyz = get(&format!("{}/readyz", node.admin.as_ref().unwrap()), &[]).await;
    let health: Value = serde_json::from_str(&readyz.text()).unwrap();
    assert_eq!(
        (health["status"].as_str(), health["store"].as_str()),
        (Some("degraded"), Some("unavailable"))
    );
    // The subscription is lost, so the cache is dropped; the viewer seen playing within
    // the grace keeps playing, a viewer never seen is refused.
    assert_eq!(get(&segment, &[]).await.status, 200, "alice plays by grace");
    assert!(metric(&node, "usher_rights_lookups_total{outcome=\"grace\"}").await >= 1.0);
    let (unseen, _) = play(&node, &late_url, &[]).await;
    assert_eq!(status_reason(&unseen), (503, "rights_unavailable".into()));
    assert!(metric(&node, "usher_store_errors_total{error=\"unavailable\"}").await >= 1.0);

    pg.resume();
    wait_ready(&node, 200).await;
    assert_eq!(
        play(&node, &late_url, &[]).await.0.status,
        200,
        "bob plays once it is back"
    );
    let (status, body) = api(&node, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")));
    let (_, listed) = api(&node, "GET", "/api/v1/buyers?product=final", None).await;
    assert_eq!(
        listed["total"], 2,
        "the refused sale wrote nothing: {listed}"
    );
    let (status, _) = api(
        &node,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "final", "media": "event", "account": "carol"})),
    )
    .await;
    assert_eq!(status, 201, "writes work again");
}

#[tokio::test]
async fn acknowledged_writes_to_postgres_survive_sigkill() {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let config = node_config(&origin, &url);
    let mut node = Usher::start(&config, &[]);
    sell_event(
        &node,
        json!({"code": "final", "name": "Final", "activation": 1}),
    )
    .await;
    let mut acknowledged = Vec::new();
    for n in 0..40 {
        acknowledged.push(add_buyer(&node, "final", &format!("viewer-{n}")).await);
    }
    let (status, _) = api(
        &node,
        "POST",
        &format!("/api/v1/buyers/{}/revoke", acknowledged[0].1),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (tv, _) = play(&node, &acknowledged[1].0, &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "the tv takes the one activation");
    node.kill();

    let node = Usher::start(&config, &[]);
    for (_, hash) in &acknowledged {
        let (status, body) = api(&node, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
        assert_eq!(status, 200, "purchase {hash} survived: {body}");
    }
    let (_, revoked) = api(
        &node,
        "GET",
        &format!("/api/v1/buyers/{}", acknowledged[0].1),
        None,
    )
    .await;
    assert_eq!(revoked["status"], "revoked", "the revocation survived too");
    let (phone, _) = play(&node, &acknowledged[1].0, &[("x-device-id", "phone")]).await;
    assert_eq!(
        status_reason(&phone),
        (403, "activation_limit".into()),
        "the tv's activation survived"
    );
}

/// `usher store …` or `usher migrate …` with `args`.
async fn store_cli(args: &[&str]) -> support::cli::CliRun {
    support::cli::run_cli(std::process::Command::new(usher_bin()), args).await
}

#[tokio::test]
async fn an_embedded_store_moves_to_postgres_with_every_purchase_binding_key_and_audit_entry() {
    let origin = event_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sqlite_config = dir.path().join("sqlite.toml");
    std::fs::write(&sqlite_config, rights_config(&origin.url(), "")).unwrap();
    let data_arg = data.to_str().unwrap().to_owned();

    // A single node on the embedded store, with some history.
    let node = Usher::start(
        &rights_config(&origin.url(), ""),
        &["--data-dir", &data_arg],
    );
    sell_event(
        &node,
        json!({"code": "final", "name": "Final", "activation": 1}),
    )
    .await;
    let mut sold = Vec::new();
    for n in 0..25 {
        sold.push(add_buyer(&node, "final", &format!("viewer-{n}")).await);
    }
    let (tv, _) = play(&node, &sold[0].0, &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "viewer-0's tv takes the one activation");
    let (status, _) = api(
        &node,
        "PUT",
        "/api/v1/accounts/viewer-1",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    let keyed =
        json!({"product": "final", "media": "event", "account": "keyed", "order_id": "order-77"});
    let (status, first) = api(&node, "POST", "/api/v1/buyers", Some(keyed.clone())).await;
    assert_eq!(status, 201, "{first}");
    let (_, audit_before) = api(&node, "GET", "/api/v1/audit", None).await;
    drop(node);

    let file = dir.path().join("usher.jsonl");
    let file_arg = file.to_str().unwrap();
    let sqlite_arg = sqlite_config.to_str().unwrap();
    let exported = store_cli(&[
        "store",
        "export",
        "--config",
        sqlite_arg,
        "--data-dir",
        &data_arg,
        "--file",
        file_arg,
    ])
    .await;
    exported.ok();
    assert!(
        exported
            .stderr
            .contains("exported 1 products, 1 media, 1 links, 26 accounts, 26 purchases, 1 device bindings, 1 idempotency keys"),
        "{exported:?}"
    );

    let pg = Postgres::start();
    let url = pg.database("usher");
    let pg_config = dir.path().join("pg.toml");
    std::fs::write(&pg_config, node_config(&origin, &url)).unwrap();
    let pg_arg = pg_config.to_str().unwrap();
    let migrated = store_cli(&["migrate", "--config", pg_arg]).await;
    assert!(migrated.ok().starts_with("schema version "), "{migrated:?}");
    let imported = store_cli(&["store", "import", "--config", pg_arg, "--file", file_arg]).await;
    imported.ok();
    assert!(
        imported.stderr.contains("imported 1 products"),
        "{imported:?}"
    );
    let again = store_cli(&["store", "import", "--config", pg_arg, "--file", file_arg]).await;
    assert!(again.failed().contains("not empty"), "{again:?}");

    let node = Usher::start(&node_config(&origin, &url), &[]);
    for (_, hash) in &sold {
        let (status, body) = api(&node, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
        assert_eq!(status, 200, "purchase {hash} moved: {body}");
    }
    let (status, replay) = api(&node, "POST", "/api/v1/buyers", Some(keyed)).await;
    assert_eq!(
        (status, replay["hash"].as_str()),
        (201, first["hash"].as_str()),
        "the idempotency key answers the first sale again"
    );
    let (phone, _) = play(&node, &sold[0].0, &[("x-device-id", "phone")]).await;
    assert_eq!(
        status_reason(&phone),
        (403, "activation_limit".into()),
        "the tv's binding moved"
    );
    assert_eq!(
        play(&node, &sold[0].0, &[("x-device-id", "tv")])
            .await
            .0
            .status,
        200
    );
    let (disabled, _) = play(&node, &sold[1].0, &[]).await;
    assert_eq!(status_reason(&disabled), (403, "account_disabled".into()));
    assert_eq!(
        play(&node, &sold[2].0, &[]).await.0.status,
        200,
        "links sent before still play"
    );
    let (_, audit_after) = api(&node, "GET", "/api/v1/audit", None).await;
    assert_eq!(
        audit_after["total"].as_u64(),
        audit_before["total"].as_u64(),
        "every audit entry moved (the replayed sale adds none)"
    );
}

#[tokio::test]
async fn a_node_on_postgres_without_an_admin_token_makes_one_in_its_data_directory() {
    let pg = Postgres::start();
    let url = pg.database("usher");
    let origin = event_origin().await;
    let config = node_config(&origin, &url).replace(&format!("token = \"{ADMIN_TOKEN}\"\n"), "");
    assert!(!config.contains(ADMIN_TOKEN));
    let node = Usher::start(&config, &[]);
    let token = std::fs::read_to_string(node.config_path().with_file_name("data/admin.token"))
        .expect("the generated credential is kept in data_dir, which no SQLite file created");
    let (status, _) =
        support::admin::api_as(&node, token.trim(), "GET", "/api/v1/products", None).await;
    assert_eq!(status, 200);
}

/// Three nodes on one PostgreSQL and one Redis (`policy` when Redis is down), subscribed to
/// both.
async fn shared_cluster(origin: &Origin, url: &str, redis: &Redis, policy: &str) -> Vec<Usher> {
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
async fn shared_setup(policy: &str, product: Value) -> (Backends, Vec<Usher>, String) {
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

/// Waits (bounded) until `node` has written back at least `n` sessions it decided without
/// Redis (`usher_sessions_written_back_total{cause="local"}`), with its subscription up
/// throughout: written back as such, not by catching up after a gap.
async fn written_back_on(node: &Usher, n: f64) {
    let local = "usher_sessions_written_back_total{cause=\"local\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(node, local).await < n {
        assert!(Instant::now() < deadline, "{local} never reached {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gap = "usher_sessions_written_back_total{cause=\"gap\"}";
    assert_eq!(metric(node, gap).await, 0.0);
    let lost = "usher_sessions_backend_errors_total{op=\"subscribe\"}";
    assert_eq!(
        metric(node, lost).await,
        0.0,
        "the subscription never broke"
    );
}

/// The phone's start on `node`, asked until admitted (or the wait runs out): the stream
/// the tv held is free once its end has reached every node.
async fn phone_admitted_on(node: &Usher, play_url: &str) -> Reply {
    until(
        || async { play(node, play_url, &[("x-device-id", "phone")]).await.0 },
        |r| r.status == 200,
    )
    .await
}

/// Shared nodes refusing new sessions while Redis is down, a product of one stream at a
/// time, and alice's tv playing it on the first node: the backends, the nodes, her play
/// URL and the tv's segment URL.
async fn one_stream_playing_on_a_tv() -> (Backends, Vec<Usher>, String, String) {
    one_stream_playing_on_a_tv_on(Redis::start()).await
}

/// [`one_stream_playing_on_a_tv`] on `redis`.
async fn one_stream_playing_on_a_tv_on(redis: Redis) -> (Backends, Vec<Usher>, String, String) {
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

#[tokio::test]
async fn with_shared_sessions_a_second_device_on_another_node_is_refused_by_max_sessions_1() {
    let (_backends, nodes, play_url, tv_segment) = one_stream_playing_on_a_tv().await;
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&phone), (403, "concurrency_limit".into()));
    assert_eq!(
        get(&tv_segment, &[("x-device-id", "tv")]).await.status,
        200,
        "the first viewer keeps watching"
    );
    let (again, _) = play(&nodes[1], &play_url, &[("x-device-id", "tv")]).await;
    assert_eq!(
        again.status, 200,
        "the same device on another node is the same viewer"
    );

    // The operator ends the tv's session through node B; node A, which plays it, refuses
    // its next segment, and the stream is free for the phone.
    let (_, listed) = api(&nodes[0], "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();
    let (status, _) = api(
        &nodes[1],
        "DELETE",
        &format!("/api/v1/sessions/{sid}"),
        None,
    )
    .await;
    assert!(status < 300, "{status}");
    let ended = until(
        || async { get(&tv_segment, &[("x-device-id", "tv")]).await },
        |r| r.status != 200,
    )
    .await;
    assert_eq!(status_reason(&ended), (403, "session_ended".into()));
    let phone = phone_admitted_on(&nodes[1], &play_url).await;
    assert_eq!(
        phone.status,
        200,
        "the ended session no longer counts: {}",
        phone.text()
    );
}

#[tokio::test]
async fn with_shared_sessions_replace_oldest_ends_the_first_device_on_its_own_node() {
    let (_backends, nodes, play_url) = shared_setup("deny", json!({"code": "p", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"})).await;
    let (_, tv_segment) = play(&nodes[0], &play_url, &[("x-device-id", "tv")]).await;
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
    let (phone, phone_segment) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(phone.status, 200);
    let tv = until(
        || async { get(&tv_segment, &[("x-device-id", "tv")]).await },
        |r| r.status != 200,
    )
    .await;
    assert_eq!(status_reason(&tv), (403, "session_replaced".into()));
    assert_eq!(
        get(&phone_segment, &[("x-device-id", "phone")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn redis_killed_mid_playback_with_deny_keeps_viewers_refuses_new_sessions_and_recovers() {
    let (mut shared, nodes, play_url, tv_segment) = one_stream_playing_on_a_tv().await;

    shared.redis.kill();
    assert_eq!(
        get(&tv_segment, &[("x-device-id", "tv")]).await.status,
        200,
        "segments never wait on Redis"
    );
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&phone), (503, "sessions_unavailable".into()));
    assert!(
        metric(
            &nodes[1],
            "usher_sessions_backend_fallbacks_total{policy=\"deny\"}"
        )
        .await
            >= 1.0
    );
    wait_ready(&nodes[0], 503).await;

    // Redis comes back empty; node A writes its live session back, so the limit holds.
    shared.redis.resume();
    wait_ready(&nodes[0], 200).await;
    wait_ready(&nodes[1], 200).await;
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(status_reason(&phone), (403, "concurrency_limit".into()));
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
}

#[tokio::test]
async fn redis_killed_with_local_admits_new_sessions_by_each_nodes_own() {
    let (mut shared, nodes, play_url) = shared_setup(
        "local",
        json!({"code": "p", "name": "Final", "max_sessions": 1}),
    )
    .await;
    assert_eq!(
        play(&nodes[0], &play_url, &[("x-device-id", "tv")])
            .await
            .0
            .status,
        200
    );
    shared.redis.kill();
    let (phone, _) = play(&nodes[1], &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(phone.status, 200, "admitted by node B's own sessions");
    let (laptop, _) = play(&nodes[1], &play_url, &[("x-device-id", "laptop")]).await;
    assert_eq!(
        status_reason(&laptop),
        (403, "concurrency_limit".into()),
        "node B's own limit still holds"
    );
    assert!(
        metric(
            &nodes[1],
            "usher_sessions_backend_fallbacks_total{policy=\"local\"}"
        )
        .await
            >= 2.0
    );
}

/// A session admitted while Redis did not answer (`on_backend_error = "local"`; here Redis
/// stalls for the one start, too briefly for any node to lose its subscription) is written
/// to Redis once it answers again: another node then counts it against the account's one
/// stream, and ends it by id, which stops it on the node playing it and frees the stream.
#[tokio::test]
async fn a_session_admitted_locally_while_redis_stalled_is_written_back_and_counted_everywhere() {
    let (shared, nodes, play_url) = shared_setup(
        "local",
        json!({"code": "p", "name": "Final", "max_sessions": 1}),
    )
    .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let local = "usher_sessions_backend_fallbacks_total{policy=\"local\"}";
    let tv_device = [("x-device-id", "tv")];

    shared.redis.stall();
    let (tv, tv_segment) = play(a, &play_url, &tv_device).await;
    shared.redis.unstall();
    assert_eq!(tv.status, 200, "{}", tv.text());
    assert_eq!(
        metric(a, local).await,
        1.0,
        "admitted by node A's own sessions"
    );

    // Node A writes it back in the background.
    written_back_on(a, 1.0).await;
    let (phone, _) = play(b, &play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(
        status_reason(&phone),
        (403, "concurrency_limit".into()),
        "node B counts the tv node A admitted alone"
    );
    assert_eq!(get(&tv_segment, &tv_device).await.status, 200);

    // Node B, which does not hold it, ends it by id: node A stops it, the stream is free.
    let (_, listed) = api(a, "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();
    let (status, body) = api(b, "DELETE", &format!("/api/v1/sessions/{sid}"), None).await;
    assert!(status < 300, "{status} {body}");
    let ended = until(|| get(&tv_segment, &tv_device), |r| r.status != 200).await;
    assert_eq!(status_reason(&ended), (403, "session_ended".into()));
    let phone = phone_admitted_on(b, &play_url).await;
    assert_eq!(
        phone.status,
        200,
        "the ended tv no longer counts: {}",
        phone.text()
    );
    assert_eq!(
        metric(b, local).await,
        0.0,
        "node B decided with Redis throughout"
    );
}

/// A start admitted while Redis did not answer that replaced another session of this node
/// (`replace_oldest`): the replaced session is written back replaced too, and announced.
/// Node B, which played it as well, stops it, and node C, which never held it, refuses its
/// token rather than taking the session up again from a record Redis still held as live.
#[tokio::test]
async fn a_session_replaced_while_redis_stalled_is_written_back_replaced_and_stops_everywhere() {
    let (shared, nodes, play_url) = shared_setup(
        "local",
        json!({"code": "p", "name": "Final", "max_sessions": 1, "concurrency_policy": "replace_oldest"}),
    )
    .await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let tv_device = [("x-device-id", "tv")];
    let (tv, tv_segment) = play(a, &play_url, &tv_device).await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    assert_eq!(
        get(&on(b, &tv_segment), &tv_device).await.status,
        200,
        "node B plays it too"
    );

    shared.redis.stall();
    let (phone, _) = play(a, &play_url, &[("x-device-id", "phone")]).await;
    shared.redis.unstall();
    assert_eq!(phone.status, 200, "{}", phone.text());
    let tv_on_a = get(&tv_segment, &tv_device).await;
    assert_eq!(status_reason(&tv_on_a), (403, "session_replaced".into()));

    // Node A writes back the phone and, in the same write, the tv's replacement.
    written_back_on(a, 1.0).await;
    let tv_on_c = get(&on(c, &tv_segment), &tv_device).await;
    assert_eq!(
        status_reason(&tv_on_c),
        (403, "session_replaced".into()),
        "node C does not take the replaced tv up again"
    );
    let tv_b = on(b, &tv_segment);
    let tv_on_b = until(|| get(&tv_b, &tv_device), |r| r.status != 200).await;
    assert_eq!(
        status_reason(&tv_on_b),
        (403, "session_replaced".into()),
        "node B, which played the tv too, hears of its replacement"
    );
}

/// A node sharing sessions through `redis`, admitting by its own sessions when Redis
/// fails (`local`), with a product of one stream at a time: the node, and its origin
/// (keep it for the test's length).
async fn local_node(redis: &Redis) -> (Usher, Origin) {
    let origin = event_origin().await;
    let sessions = format!(
        "[sessions]\nbackend = \"redis\"\non_backend_error = \"local\"\n[sessions.redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
        redis.url
    );
    let node = Usher::start(&rights_config(&origin.url(), &sessions), &[]);
    wait_ready(&node, 200).await;
    sell_event(
        &node,
        json!({"code": "p", "name": "Final", "max_sessions": 1}),
    )
    .await;
    (node, origin)
}

/// The Redis hash holding `account`'s sessions.
fn sessions_key(account: &str) -> String {
    format!("usher:{{{account}}}:s")
}

/// Sells the product to `account` and starts its tv on `node`.
async fn tv_plays(node: &Usher, account: &str) {
    let play_url = add_buyer(node, "p", account).await.0;
    let (tv, _) = play(node, &play_url, &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "{account}: {}", tv.text());
}

/// Asserts that `node` admitted `n` starts by its own sessions, Redis failing.
async fn admitted_locally(node: &Usher, n: f64) {
    let fallbacks = "usher_sessions_backend_fallbacks_total{policy=\"local\"}";
    assert_eq!(
        metric(node, fallbacks).await,
        n,
        "admitted by the node's own"
    );
}

/// Waits (bounded) until `node` holds `n` sessions decided without Redis and not written
/// back yet (`usher_sessions_write_back_pending`).
async fn write_back_pending_becomes(node: &Usher, n: f64) {
    let pending = "usher_sessions_write_back_pending";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = metric(node, pending).await;
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} stayed at {now}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One account whose sessions Redis cannot read (its hash holds a plain string: every
/// call on it answers WRONGTYPE) holds up the write-back of its own sessions only. Every
/// start meets such a key, so the node admits each by its own sessions; then the other
/// accounts' keys are cleared, and each of their sessions is written back, whichever order
/// the accounts are tried in, while the broken account's stays waiting (and is counted).
#[tokio::test]
async fn an_account_redis_cannot_read_holds_up_only_its_own_sessions_write_back() {
    let redis = Redis::start();
    let (node, _origin) = local_node(&redis).await;
    let (broken, fine) = ("zoe", ["ann", "bob", "cat", "dan"]);
    for account in std::iter::once(broken).chain(fine) {
        assert_eq!(
            redis.cli(&["SET", &sessions_key(account), "not a hash"]),
            "OK"
        );
        tv_plays(&node, account).await;
    }
    admitted_locally(&node, 5.0).await;

    for account in fine {
        assert_eq!(redis.cli(&["DEL", &sessions_key(account)]), "1");
    }
    write_back_pending_becomes(&node, 1.0).await;
    written_back_on(&node, 4.0).await;
    for account in fine {
        // The version field and the tv's record.
        assert_eq!(
            redis.cli(&["HLEN", &sessions_key(account)]),
            "2",
            "{account}"
        );
    }
    assert_eq!(redis.cli(&["TYPE", &sessions_key(broken)]), "string");
    let failed = "usher_sessions_backend_errors_total{op=\"write_back\"}";
    assert!(
        metric(&node, failed).await >= 1.0,
        "{failed} counts the broken account"
    );
}

/// A session written to Redis as usual (never deferred), whose account Redis
/// cannot read after a gap, is left to the write-back by the gap's catch-up.
#[tokio::test]
async fn after_a_gap_an_account_written_before_that_redis_cannot_read_is_left_to_the_write_back() {
    let mut redis = Redis::start_keeping();
    let (node, _origin) = local_node(&redis).await;
    let broken = "zoe";
    tv_plays(&node, broken).await;
    assert_eq!(redis.cli(&["HLEN", &sessions_key(broken)]), "2");
    write_back_pending_becomes(&node, 0.0).await;
    assert_eq!(redis.cli(&["DEL", &sessions_key(broken)]), "1");
    assert_eq!(
        redis.cli(&["SET", &sessions_key(broken), "not a hash"]),
        "OK"
    );
    redis.save();
    redis.kill();
    wait_ready(&node, 503).await;
    redis.resume();
    wait_ready(&node, 200).await;
    write_back_pending_becomes(&node, 1.0).await;
    assert_eq!(redis.cli(&["DEL", &sessions_key(broken)]), "1");
    write_back_pending_becomes(&node, 0.0).await;
    assert_eq!(redis.cli(&["HLEN", &sessions_key(broken)]), "2");
}

/// As above, through the catch-up after a gap: Redis restarts holding only the broken
/// account's key, and the node, catching up, writes back the sessions it admitted alone
/// of every other account and is caught up (`/readyz` ready: one account does not keep it
/// degraded); the broken account's session waits for the write-back, which writes it
/// once its key can be read.
#[tokio::test]
async fn after_a_gap_an_account_redis_cannot_read_holds_up_only_its_own_sessions() {
    let mut redis = Redis::start_keeping();
    let (node, _origin) = local_node(&redis).await;
    let (broken, fine) = ("zoe", ["ann", "bob", "cat", "dan"]);
    assert_eq!(
        redis.cli(&["SET", &sessions_key(broken), "not a hash"]),
        "OK"
    );
    tv_plays(&node, broken).await;
    redis.save();
    redis.kill();
    wait_ready(&node, 503).await;
    for account in fine {
        tv_plays(&node, account).await;
    }
    admitted_locally(&node, 5.0).await;

    redis.resume();
    write_back_pending_becomes(&node, 1.0).await;
    let local = "usher_sessions_written_back_total{cause=\"local\"}";
    assert_eq!(metric(&node, local).await, 4.0);
    for account in fine {
        assert_eq!(
            redis.cli(&["HLEN", &sessions_key(account)]),
            "2",
            "{account}"
        );
    }
    wait_ready(&node, 200).await;
    assert_eq!(metric(&node, "usher_sessions_backend_up").await, 1.0);

    assert_eq!(redis.cli(&["DEL", &sessions_key(broken)]), "1");
    write_back_pending_becomes(&node, 0.0).await;
    assert_eq!(redis.cli(&["HLEN", &sessions_key(broken)]), "2");
    assert_eq!(metric(&node, local).await, 5.0);
}

/// Ending a session while Redis is down: through a node that does not play it, the end
/// reaches no one and the answer says so (503, not 200); through the node that plays it,
/// that node stops it at once, and writes the end to Redis once Redis is back, so the
/// stream is free for another device on another node.
#[tokio::test]
async fn a_session_ended_while_redis_is_down_is_said_so_and_lands_when_it_is_back() {
    let (mut shared, nodes, play_url, tv_segment) = one_stream_playing_on_a_tv().await;
    let (_, listed) = api(&nodes[0], "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();
    let end = format!("/api/v1/sessions/{sid}");

    shared.redis.kill();
    wait_ready(&nodes[1], 503).await;
    let (status, body) = api(&nodes[1], "DELETE", &end, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(&tv_segment, &[("x-device-id", "tv")]).await.status, 200);
    let (status, body) = api(&nodes[0], "DELETE", &end, None).await;
    assert_eq!(status, 503, "not recorded in Redis: {body}");
    let ended = get(&tv_segment, &[("x-device-id", "tv")]).await;
    assert_eq!(status_reason(&ended), (403, "session_ended".into()));

    shared.redis.resume();
    wait_ready(&nodes[0], 200).await;
    wait_ready(&nodes[1], 200).await;
    let phone = phone_admitted_on(&nodes[1], &play_url).await;
    assert_eq!(phone.status, 200, "the end landed: {}", phone.text());
}

/// As above, over a Redis that comes back with its data, which still holds the tv's
/// session live: the node that ended it writes the end over that copy once Redis is back,
/// so the stream is free for another device on another node.
#[tokio::test]
async fn a_session_ended_while_redis_is_down_lands_over_a_redis_that_kept_it_live() {
    let (mut shared, nodes, play_url, _) =
        one_stream_playing_on_a_tv_on(Redis::start_keeping()).await;
    let (_, listed) = api(&nodes[0], "GET", "/api/v1/sessions?account=alice", None).await;
    let sid = listed["items"][0]["sid"].as_str().unwrap().to_owned();

    shared.redis.save();
    shared.redis.kill();
    wait_ready(&nodes[0], 503).await;
    let (status, body) = api(
        &nodes[0],
        "DELETE",
        &format!("/api/v1/sessions/{sid}"),
        None,
    )
    .await;
    assert_eq!(status, 503, "not recorded in Redis: {body}");

    shared.redis.resume();
    wait_ready(&nodes[0], 200).await;
    wait_ready(&nodes[1], 200).await;
    let phone = phone_admitted_on(&nodes[1], &play_url).await;
    assert_eq!(phone.status, 200, "the end landed: {}", phone.text());
}

/// A session that idled out while Redis was away is not brought back by the node's
/// catch-up: Redis restarts empty, the node writes back what it remembers but not the idle
/// tv, so the one stream is free for the phone (it was written back as seen just now).
#[tokio::test]
async fn a_session_that_idled_out_is_not_written_back_to_count_again() {
    let mut redis = Redis::start();
    let origin = event_origin().await;
    let sessions = format!(
        "[sessions]\nbackend = \"redis\"\nidle_timeout = \"60s\"\n[sessions.redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
        redis.url
    );
    let node = InProcess::start(&rights_config(&origin.url(), &sessions)).await;
    for (path, body) in [
        (
            "/api/v1/products",
            json!({"code": "p", "name": "Final", "max_sessions": 1}),
        ),
        (
            "/api/v1/media",
            json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"}),
        ),
        ("/api/v1/products/p/media", json!({"media": "event"})),
    ] {
        let (status, answer) = api(&node, "POST", path, Some(body)).await;
        assert!(status < 300, "{path}: {answer}");
    }
    let (_, sold) = api(
        &node,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "p", "media": "event", "account": "alice"})),
    )
    .await;
    let play_url = sold["play_url"].as_str().unwrap().to_owned();
    assert_eq!(get(&play_url, &[("x-device-id", "tv")]).await.status, 200);
    node.advance(61);

    redis.kill();
    shared_up_becomes(&node, false).await;
    redis.resume();
    shared_up_becomes(&node, true).await;
    let phone = get(&play_url, &[("x-device-id", "phone")]).await;
    assert_eq!(
        phone.status,
        200,
        "the idle tv holds no stream: {}",
        phone.text()
    );
}

/// Waits (bounded) until `node` is subscribed to Redis (`up`), caught up, or not.
async fn shared_up_becomes(node: &InProcess, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.state.sessions.shared_up() != Some(up) {
        assert!(
            Instant::now() < deadline,
            "sessions never {}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
