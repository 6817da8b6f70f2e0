//! An expired session token on a node that never held its session, with sessions shared
//! through Redis: a VOD player keeps the segment URIs its playlist gave it for the whole
//! film, and when a load balancer moves it to another node (its node drained, restarted,
//! rebalanced), that node asks Redis whether the session lives on, and takes it up. An
//! ended or replaced session stays refused, and is refused for that (`session_ended`,
//! `session_replaced`), not as `expired`; Redis out of reach follows
//! `sessions.on_backend_error`. In-process nodes on one PostgreSQL and one Redis, with
//! clocks the test moves together (tokens live 30 s, sessions idle out after 60 s).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::admin::api;
use support::cluster::status_reason;
use support::inprocess::InProcess;
use support::inprocess::{only_sid, sell_event};
use support::postgres::Postgres;
use support::redis::Redis;
use support::*;

/// Seconds the clocks move: past the session token's 30 s, within the session's 60 s.
const PAST_THE_TOKEN: u64 = 40;

/// Seconds the clocks move: past the session's 60 s idle timeout.
const PAST_THE_IDLE_TIMEOUT: u64 = 70;

/// What the nodes run on (kept for the test's length).
struct Backends {
    _pg: Postgres,
    /// The database the nodes share.
    url: String,
    redis: Redis,
    origin: Origin,
}

impl Backends {
    async fn start() -> Backends {
        let pg = Postgres::start();
        Backends {
            url: pg.database("usher"),
            _pg: pg,
            redis: Redis::start(),
            origin: event_origin().await,
        }
    }

    /// A node on these backends, refusing (`deny`) or going on alone (`local`) when Redis
    /// does not answer; subscribed to the others' session changes.
    async fn node(&self, policy: &str) -> InProcess {
        let node = InProcess::start(&self.config(policy)).await;
        shared_up(&node).await;
        node
    }

    /// The config of [`Backends::node`].
    fn config(&self, policy: &str) -> String {
        let extra = format!(
            "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\ntimeout = \"2s\"\nconnect_timeout = \"1s\"\n[sessions]\nbackend = \"redis\"\non_backend_error = \"{policy}\"\nidle_timeout = \"60s\"\n[sessions.redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
            self.url,
            self.redis.url
        );
        rights_config(&self.origin.url(), &extra)
            .replace("[token]\n", "[token]\nsession_ttl = \"30s\"\n")
    }
}

/// `config` with a new signing key in place of the one the tests sign with, which is taken
/// out (runbook steps 2 and 4 at once): the tokens it signed are verified as a retired
/// key's.
fn retire_the_key(config: &str) -> String {
    let old = format!("[[token.keys]]\nid = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n");
    let new = "[[token.keys]]\nid = \"next\"\nsecret = \"a-secret-for-the-next-key-long-enough\"\n";
    let retired = config.replace(&old, new).replace(
        &format!("signing_key = \"{KEY_ID}\""),
        "signing_key = \"next\"",
    );
    assert!(!retired.contains(KEY_ID), "{retired}");
    retired
}

/// Waits (bounded) until `node` is subscribed to Redis and caught up.
async fn shared_up(node: &InProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.state.sessions.shared_up() != Some(true) {
        assert!(Instant::now() < deadline, "sessions never up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Backends, two nodes on them that refuse without Redis (`deny`), and alice's play URL
/// for `product`, sold through the first. The second starts after the sale: in-process nodes
/// do not listen for the store's invalidations, so one running before would not know it.
async fn two_nodes(product: serde_json::Value) -> (Backends, InProcess, InProcess, String) {
    let backends = Backends::start().await;
    let a = backends.node("deny").await;
    let (play_url, _) = sell_event(&a, product).await;
    let b = backends.node("deny").await;
    (backends, a, b, play_url)
}

/// Two nodes (as [`two_nodes`], a film sold), the tv playing on the first with a token the
/// tests' key signed, then that key retired on both (`retire_the_key`): the backends, the
/// nodes and the tv's first segment URL.
async fn tv_plays_then_the_key_is_retired() -> (Backends, InProcess, InProcess, String) {
    let (backends, a, b, play_url) = two_nodes(json!({"code": "p", "name": "Film"})).await;
    let (tv, tv_segment) = play(&a, &play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let retired = retire_the_key(&backends.config("deny"));
    a.reload(&retired);
    b.reload(&retired);
    (backends, a, b, tv_segment)
}

/// `url` (minted by some node) pointed at `node`.
fn on(node: &InProcess, url: &str) -> String {
    let path = &url[url.find("/event/").unwrap()..];
    format!("{}{path}", node.url)
}

/// The playlist through `node` by `device`, and its first segment's URL (its session
/// token in it).
async fn play(node: &InProcess, play_url: &str, device: &str) -> (Reply, String) {
    let url = on(node, play_url);
    let reply = get(&url, &[("x-device-id", device)]).await;
    let segment = first_segment(&url, &reply);
    (reply, segment)
}

/// `segment` through `node` by `device`.
async fn fetch(node: &InProcess, segment: &str, device: &str) -> Reply {
    get(&on(node, segment), &[("x-device-id", device)]).await
}

/// The clocks of `nodes` moved on by `seconds`, together.
fn advance(nodes: &[&InProcess], seconds: u64) {
    for node in nodes {
        node.advance(seconds);
    }
}

/// The laptop and the tv play on node A; their tokens expire while their sessions live.
/// The tv, moved to node B, plays on. The laptop's session, ended by id through B (which
/// does not hold it), is refused on B (its end marker in Redis) and, once A has heard the
/// end, on A, as ended: its token has expired, but that is not why.
#[tokio::test]
async fn an_expired_token_plays_on_a_node_that_never_held_its_session_until_it_is_ended() {
    let (_backends, a, b, play_url) = two_nodes(json!({"code": "p", "name": "Film"})).await;
    let (laptop, laptop_segment) = play(&a, &play_url, "laptop").await;
    assert_eq!(laptop.status, 200, "{}", laptop.text());
    let laptop_sid = only_sid(&a).await;
    let (tv, tv_segment) = play(&a, &play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());

    advance(&[&a, &b], PAST_THE_TOKEN);
    let moved = fetch(&b, &tv_segment, "tv").await;
    assert_eq!(
        moved.status,
        200,
        "the tv's session lives on node A: {}",
        moved.text()
    );
    assert_eq!(fetch(&b, &tv_segment, "tv").await.status, 200, "and on");

    let (status, body) = api(
        &b,
        "DELETE",
        &format!("/api/v1/sessions/{laptop_sid}"),
        None,
    )
    .await;
    assert!(status < 300, "{status}: {body}");
    let refused = fetch(&b, &laptop_segment, "laptop").await;
    assert_eq!(status_reason(&refused), (403, "session_ended".into()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let on_a = loop {
        let reply = fetch(&a, &laptop_segment, "laptop").await;
        if reply.status != 200 || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status_reason(&on_a), (403, "session_ended".into()));
    assert_eq!(fetch(&b, &tv_segment, "tv").await.status, 200);
}

/// A session that idled out (no request within the idle timeout) is over on every node: its
/// expired token, moved to node B, is refused there, not taken up as a new session, and so
/// it is on node A, which held it.
#[tokio::test]
async fn an_expired_token_of_an_idled_out_session_stays_refused_on_another_node() {
    let (_backends, a, b, play_url) = two_nodes(json!({"code": "p", "name": "Film"})).await;
    let (tv, tv_segment) = play(&a, &play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());

    advance(&[&a, &b], PAST_THE_IDLE_TIMEOUT);
    let moved = fetch(&b, &tv_segment, "tv").await;
    assert_eq!(status_reason(&moved), (403, "expired".into()));
    let back = fetch(&a, &tv_segment, "tv").await;
    assert_eq!(status_reason(&back), (403, "expired".into()));
}

/// The signing key is replaced on both nodes, the old one retired, while the tv plays on
/// node A with a token the old key signed. Once that token has expired, node B, to which
/// the tv is moved, takes the session up as it would a current key's token (A holds it
/// live); once the session has idled out, both refuse the token as expired, as they would a
/// current key's, not as signed by an unknown key.
#[tokio::test]
async fn an_expired_token_signed_by_a_retired_key_plays_on_another_node_while_its_session_lives() {
    let (_backends, a, b, tv_segment) = tv_plays_then_the_key_is_retired().await;

    advance(&[&a, &b], PAST_THE_TOKEN);
    let moved = fetch(&b, &tv_segment, "tv").await;
    assert_eq!(
        status_reason(&moved),
        (200, String::new()),
        "the tv's session lives on node A"
    );
    assert_eq!(fetch(&a, &tv_segment, "tv").await.status, 200, "and on A");

    advance(&[&a, &b], PAST_THE_IDLE_TIMEOUT);
    for node in [&b, &a] {
        let over = fetch(node, &tv_segment, "tv").await;
        assert_eq!(status_reason(&over), (403, "expired".into()));
    }
}

/// A token the retired key could not have signed before its retirement (an expiry past
/// the retirement plus the tokens' lifetime: made with the key after it was taken out, as
/// by someone who has it) is refused as signed by an unknown key, also for a session that
/// lives on another node, while the genuine token of that session plays.
#[tokio::test]
async fn a_retired_keys_token_expiring_past_the_retirement_stays_unknown() {
    let (_backends, a, b, tv_segment) = tv_plays_then_the_key_is_retired().await;
    let latest = b.state.retired_keys()[0].latest_exp;
    let (base, genuine) = tv_segment.split_once("token=").unwrap();
    let genuine = genuine.split('&').next().unwrap();
    let (_, mut claims) = usher::ticket::verify_signature(&ring(), genuine).unwrap();
    claims.exp = latest + 5;
    let late = usher::ticket::sign(&ring(), usher::ticket::Kind::Session, &claims);
    let late_segment = format!("{base}token={late}");
    // The session kept live on A (its genuine token, through A) until the late token has
    // expired too.
    while a.now() <= latest + 5 {
        advance(&[&a, &b], 20);
        assert_eq!(fetch(&a, &tv_segment, "tv").await.status, 200, "live on A");
    }
    let refused = fetch(&b, &late_segment, "tv").await;
    assert_eq!(status_reason(&refused), (403, "unknown_key".into()));
    let moved = fetch(&b, &tv_segment, "tv").await;
    assert_eq!(
        status_reason(&moved),
        (200, String::new()),
        "the genuine token plays on B"
    );
}

/// One stream at a time, the oldest giving way: the tv plays on node A, and the phone,
/// started later on A, replaces it. Node B refuses the tv's expired token as replaced (the
/// record in Redis says so) and, once the phone's has expired too, plays the phone's (live
/// on A); node A, which holds the tv replaced, refuses it as replaced too.
#[tokio::test]
async fn an_expired_token_of_a_replaced_session_stays_refused_on_another_node() {
    let product = json!({"code": "p", "name": "Film", "max_sessions": 1, "concurrency_policy": "replace_oldest"});
    let (_backends, a, b, play_url) = two_nodes(product).await;
    let (tv, tv_segment) = play(&a, &play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());

    advance(&[&a, &b], PAST_THE_TOKEN);
    let (phone, phone_segment) = play(&a, &play_url, "phone").await;
    assert_eq!(phone.status, 200, "{}", phone.text());
    let replaced = fetch(&b, &tv_segment, "tv").await;
    assert_eq!(status_reason(&replaced), (403, "session_replaced".into()));

    advance(&[&a, &b], PAST_THE_TOKEN);
    let moved = fetch(&b, &phone_segment, "phone").await;
    assert_eq!(
        moved.status,
        200,
        "the phone's session lives on node A: {}",
        moved.text()
    );
    let replaced = fetch(&b, &tv_segment, "tv").await;
    assert_eq!(status_reason(&replaced), (403, "session_replaced".into()));
    let on_a = fetch(&a, &tv_segment, "tv").await;
    assert_eq!(status_reason(&on_a), (403, "session_replaced".into()));
}

/// Redis out of reach when a moved player's token has expired: a node that refuses new
/// sessions then (`deny`) answers 503, as to a start; one that goes on alone (`local`)
/// knows no such session, and refuses the token as expired.
#[tokio::test]
async fn an_expired_token_on_a_node_without_its_session_follows_on_backend_error() {
    let mut backends = Backends::start().await;
    let a = backends.node("deny").await;
    let (play_url, _) = sell_event(&a, json!({"code": "p", "name": "Film"})).await;
    let deny = backends.node("deny").await;
    let local = backends.node("local").await;
    let (tv, tv_segment) = play(&a, &play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());

    advance(&[&a, &deny, &local], PAST_THE_TOKEN);
    backends.redis.kill();
    let unavailable = fetch(&deny, &tv_segment, "tv").await;
    assert_eq!(
        status_reason(&unavailable),
        (503, "sessions_unavailable".into())
    );
    let alone = fetch(&local, &tv_segment, "tv").await;
    assert_eq!(status_reason(&alone), (403, "expired".into()));
    assert_eq!(
        fetch(&a, &tv_segment, "tv").await.status,
        200,
        "node A, which holds the session, plays on without Redis"
    );
}

/// A rental extended while it plays: the segment URIs the player holds carry the old end
/// (their `cap`), and past it the node playing the session lets them through (the rights
/// check knows the new end, the session plays under that purchase). So does node B, to
/// which the player is moved: Redis's record of the session names its purchase.
#[tokio::test]
async fn an_extended_rentals_token_past_its_old_end_plays_on_a_node_that_never_held_its_session() {
    let backends = Backends::start().await;
    let a = backends.node("deny").await;
    let old_end = a.now() + 20;
    let product = json!({"code": "p", "name": "Rental", "access_expire": old_end});
    let (play_url, hash) = sell_event(&a, product).await;
    let b = backends.node("deny").await;
    let (tv, tv_segment) = play(&a, &play_url, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let (status, patched) = api(
        &a,
        "PATCH",
        &format!("/api/v1/buyers/{hash}"),
        Some(json!({"access_expire": old_end + 3600})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");

    advance(&[&a, &b], PAST_THE_TOKEN);
    let moved = fetch(&b, &tv_segment, "tv").await;
    assert_eq!(
        moved.status,
        200,
        "the tv's session lives on node A, under the extended rental: {}",
        moved.text()
    );
    assert_eq!(
        fetch(&a, &tv_segment, "tv").await.status,
        200,
        "as on node A"
    );
}

/// A one-device pass plays on the tv; the phone, which the pass cannot admit, plays under
/// a rental, on node A. Moved to node B with its token (unexpired), the phone goes on under
/// the rental: B takes its session up under the purchase Redis names, not under the
/// account's preferred pass, whose one activation the tv holds.
#[tokio::test]
async fn a_session_under_the_next_purchase_is_taken_up_under_it_on_another_node() {
    let backends = Backends::start().await;
    let a = backends.node("deny").await;
    let pass = json!({"code": "week", "name": "Week", "period": 7, "activation": 1});
    let (pass, _) = sell_event(&a, pass).await;
    let (tv, tv_segment) = play(&a, &pass, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let rental = json!({"code": "rental", "name": "Rental", "hours": 48,
                        "hours_from": "first_play", "activation": 1});
    let (rental, _) = sell_event(&a, rental).await;
    let (phone, phone_segment) = play(&a, &rental, "phone").await;
    assert_eq!(phone.status, 200, "{}", phone.text());
    assert_eq!(fetch(&a, &phone_segment, "phone").await.status, 200);

    // B starts after the sales: in-process nodes do not listen for the store's
    // invalidations, so one running before would not know the products.
    let b = backends.node("deny").await;
    let moved = fetch(&b, &phone_segment, "phone").await;
    assert_eq!(
        status_reason(&moved),
        (200, String::new()),
        "the phone plays on under its rental on node B"
    );
    assert_eq!(fetch(&b, &tv_segment, "tv").await.status, 200);
}

/// Node B caches the account's yes (the pass plays on the tv there)
/// while the rental is unplayed; the phone then starts the rental on node A (its first play
/// written). Moved to B with its unexpired token, the phone goes on: B's cached decision
/// still names the rental unplayed, and Redis says the session plays under it on A.
#[tokio::test]
async fn a_rental_session_moved_to_a_node_whose_cache_names_it_unplayed_plays_on() {
    let backends = Backends::start().await;
    let a = backends.node("deny").await;
    let pass = json!({"code": "week", "name": "Week", "period": 7, "activation": 1});
    let (pass, _) = sell_event(&a, pass).await;
    let rental = json!({"code": "rental", "name": "Rental", "hours": 48,
                        "hours_from": "first_play", "activation": 1});
    let (rental, _) = sell_event(&a, rental).await;
    let b = backends.node("deny").await;
    for node in [&a, &b] {
        let usher::config::StoreBackend::Postgres(pg) = &node.state.config().store else {
            unreachable!()
        };
        tokio::spawn(usher::fanout::listen(node.state.clone(), pg.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.state.fanout.health() != Some((true, true)) {
            assert!(Instant::now() < deadline, "never subscribed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (tv, tv_segment) = play(&b, &pass, "tv").await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let (phone, phone_segment) = play(&a, &rental, "phone").await;
    assert_eq!(phone.status, 200, "{}", phone.text());
    assert_eq!(fetch(&a, &phone_segment, "phone").await.status, 200);
    let moved = fetch(&b, &phone_segment, "phone").await;
    assert_eq!(
        status_reason(&moved),
        (200, String::new()),
        "the phone plays on under its rental on node B"
    );
    assert_eq!(fetch(&b, &tv_segment, "tv").await.status, 200);
}
