//! Webhooks through a real usher and a real receiver on loopback that checks every
//! signature: purchase, revoke, first play, activation refused and session replaced
//! events; a failed delivery retried; deliveries queued before a SIGKILL sent after the
//! restart; a receiver that never answers does not hold up the others; a node without a
//! receiver leaves its deliveries to the node that has it.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use sha2::Sha256;
use support::admin::api;
use support::*;
use tokio::sync::mpsc;

const SECRET_TEXT: &str = "webhook-secret-0123456789";
const LIVE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2,\ns1.ts\n";

/// One request the receiver got.
#[derive(Debug)]
struct Delivery {
    event: String,
    id: String,
    /// The signature matched `<timestamp>.<body>` under the secret (checked in constant
    /// time, as a receiver should).
    signed: bool,
    payload: Value,
    /// The status the receiver answered.
    answered: u16,
}

/// A webhook receiver: answers the queued statuses first, then 200.
struct Receiver {
    url: String,
    answers: Arc<Mutex<VecDeque<u16>>>,
    got: mpsc::UnboundedReceiver<Delivery>,
}

fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, got) = mpsc::unbounded_channel();
        let shared = answers.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (answers, tx) = (shared.clone(), tx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (answers, tx) = (answers.clone(), tx.clone());
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            let (event, id) = (header("x-usher-event"), header("x-usher-delivery"));
                            let (timestamp, signature) =
                                (header("x-usher-timestamp"), header("x-usher-signature"));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let signed =
                                verify(SECRET_TEXT.as_bytes(), &timestamp, &body, &signature);
                            let answered = answers.lock().unwrap().pop_front().unwrap_or(200);
                            let _ = tx.send(Delivery {
                                event,
                                id,
                                signed,
                                payload: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                answered,
                            });
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(answered)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Receiver { url, answers, got }
    }

    /// Answers `status` to the next `n` deliveries.
    fn answer(&self, status: u16, n: usize) {
        self.answers
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(status, n));
    }

    /// The next delivery of `event` (others are skipped), within 20 s.
    async fn next(&mut self, event: &str) -> Delivery {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let d = self.got.recv().await.expect("receiver runs");
                if d.event == event {
                    return d;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {event} delivery within 20 s"))
    }
}

/// A receiver that accepts connections and never answers: each delivery to it holds its
/// slot until `webhooks.timeout`. Signals each connection it accepted.
struct Silent {
    url: String,
    accepted: mpsc::UnboundedReceiver<()>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, accepted) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
                let _ = tx.send(());
            }
        });
        Silent { url, accepted }
    }
}

async fn origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/event/index.m3u8".to_owned(), playlist(LIVE));
    objects.insert("/event/s1.ts".to_owned(), segment(300));
    spawn_origin(objects).await
}

fn config(origin: &Origin, receiver: &Receiver) -> String {
    let hooks = format!(
        "[webhooks]\ntimeout = \"2s\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n\
         [[webhooks.endpoints]]\nurl = \"{}\"\nsecret = \"{SECRET_TEXT}\"\n",
        receiver.url
    );
    rights_config(&origin.url(), &hooks)
}

/// Sells `product` for `/event/` to `account`; the play URL and the purchase hash.
async fn sell(usher: &Usher, product: Value, account: &str) -> (String, String) {
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
    let media = format!("/api/v1/products/{code}/media");
    api(usher, "POST", &media, Some(json!({"media": "event"}))).await;
    buy(usher, &code, account).await
}

async fn buy(usher: &Usher, product: &str, account: &str) -> (String, String) {
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

#[tokio::test]
async fn item12_a_sale_and_a_revoke_reach_the_receiver_signed() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    let usher = Usher::start(&config(&origin, &receiver), &[]);
    let (_, hash) = sell(&usher, json!({"code": "p", "name": "Final"}), "alice").await;
    let purchase = receiver.next("purchase").await;
    assert!(purchase.signed, "{purchase:?}");
    assert_eq!(purchase.payload["type"], "purchase");
    assert_eq!(purchase.payload["id"], purchase.id.as_str());
    assert_eq!(purchase.payload["data"]["purchase"], hash.as_str());
    assert_eq!(purchase.payload["data"]["account"], "alice");
    assert_eq!(purchase.payload["data"]["product"], "p");
    assert!(
        purchase.payload["data"].get("ticket").is_none(),
        "no credential in a payload"
    );
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let revoke = receiver.next("revoke").await;
    assert!(revoke.signed);
    assert_eq!(revoke.payload["data"]["purchase"], hash.as_str());
    assert_eq!(revoke.payload["data"]["status"], "revoked");
    assert_ne!(revoke.id, purchase.id);
}

#[tokio::test]
async fn item12_the_first_play_of_a_purchase_is_announced_once() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    let usher = Usher::start(&config(&origin, &receiver), &[]);
    let product = json!({"code": "p", "name": "Final", "hours": 3, "hours_from": "first_play"});
    let (play, hash) = sell(&usher, product, "alice").await;
    assert_eq!(get(&play, &[("x-device-id", "tv")]).await.status, 200);
    let first = receiver.next("first_play").await;
    assert!(first.signed);
    assert_eq!(first.payload["data"]["purchase"], hash.as_str());
    assert_eq!(first.payload["data"]["account"], "alice");
    assert!(first.payload["data"]["at"].as_u64().is_some());
    // Played again: no second first play. A later sale's purchase event arrives after
    // anything queued before it, so nothing else came in between.
    assert_eq!(get(&play, &[("x-device-id", "tv")]).await.status, 200);
    buy(&usher, "p", "bob").await;
    let next = tokio::time::timeout(Duration::from_secs(20), receiver.got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.event, "purchase", "{next:?}");
}

#[tokio::test]
async fn item12_a_device_past_the_activation_limit_is_announced() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    let usher = Usher::start(&config(&origin, &receiver), &[]);
    let product = json!({"code": "p", "name": "Final", "activation": 1});
    let (play, hash) = sell(&usher, product, "alice").await;
    assert_eq!(get(&play, &[("x-device-id", "tv")]).await.status, 200);
    let refused = get(&play, &[("x-device-id", "laptop")]).await;
    assert_eq!(refused.reason(), "activation_limit");
    let event = receiver.next("activation_refused").await;
    assert!(event.signed);
    assert_eq!(event.payload["data"]["purchase"], hash.as_str());
    assert_eq!(event.payload["data"]["account"], "alice");
    assert_eq!(event.payload["data"]["limit"], 1);
    assert!(
        event.payload["data"]["device"].is_string(),
        "{:?}",
        event.payload
    );

    // The same computer retrying is announced once a minute, not on every request.
    for _ in 0..4 {
        assert_eq!(
            get(&play, &[("x-device-id", "laptop")]).await.reason(),
            "activation_limit"
        );
    }
    assert_eq!(
        get(&play, &[("x-device-id", "phone")]).await.reason(),
        "activation_limit"
    );
    let next = receiver.next("activation_refused").await;
    assert_ne!(
        next.payload["data"]["device"], event.payload["data"]["device"],
        "the next announcement is the other device's: {:?}",
        next.payload
    );
}

#[tokio::test]
async fn item12_a_replaced_session_is_announced() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    let usher = Usher::start(&config(&origin, &receiver), &[]);
    let product = json!({"code": "p", "name": "Final", "max_sessions": 1,
                         "concurrency_policy": "replace_oldest"});
    let (play, hash) = sell(&usher, product, "alice").await;
    assert_eq!(get(&play, &[("x-device-id", "tv")]).await.status, 200);
    assert_eq!(get(&play, &[("x-device-id", "phone")]).await.status, 200);
    let event = receiver.next("session_replaced").await;
    assert!(event.signed);
    assert_eq!(event.payload["data"]["purchase"], hash.as_str());
    assert_eq!(event.payload["data"]["account"], "alice");
    let (_, sessions) = api(&usher, "GET", "/api/v1/sessions", None).await;
    let live: Vec<&str> = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["sid"].as_str())
        .collect();
    assert!(
        !live.contains(&event.payload["data"]["sid"].as_str().unwrap()),
        "the replaced session is not live: {live:?}"
    );
}

#[tokio::test]
async fn item12_a_failed_delivery_is_retried_until_the_receiver_takes_it() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    receiver.answer(500, 1);
    let usher = Usher::start(&config(&origin, &receiver), &[]);
    sell(&usher, json!({"code": "p", "name": "Final"}), "alice").await;
    let failed = receiver.next("purchase").await;
    assert_eq!(failed.answered, 500);
    let retried = receiver.next("purchase").await;
    assert_eq!(retried.answered, 200);
    assert!(retried.signed, "re-signed for its own timestamp");
    assert_eq!(retried.id, failed.id, "the same delivery");
    assert_eq!(retried.payload, failed.payload);
    // The receiver answered; usher counts it once it read the answer.
    let delivered = r#"usher_webhook_deliveries_total{outcome="delivered"}"#;
    tokio::time::timeout(Duration::from_secs(10), async {
        while metric(&usher, delivered).await < 1.0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the delivery is counted");
    assert_eq!(
        metric(
            &usher,
            r#"usher_webhook_deliveries_total{outcome="failed"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn item12_events_queued_before_a_sigkill_are_delivered_after_the_restart() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    receiver.answer(503, 1000);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let config = config(&origin, &receiver);
    let mut usher = Usher::start(&config, &["--data-dir", &data_dir]);
    let (_, hash) = sell(&usher, json!({"code": "p", "name": "Final"}), "alice").await;
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Both are queued and failing: the receiver is down.
    let purchase = receiver.next("purchase").await;
    let revoke = receiver.next("revoke").await;
    assert_eq!((purchase.answered, revoke.answered), (503, 503));
    usher.kill();
    receiver.answers.lock().unwrap().clear();
    let usher = Usher::start(&config, &["--data-dir", &data_dir]);
    // Delivered concurrently after the restart, in either order.
    let mut delivered = HashMap::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while delivered.len() < 2 {
            let d = receiver.got.recv().await.expect("receiver runs");
            if d.answered == 200 {
                assert!(d.signed, "{d:?}");
                delivered.insert(d.event.clone(), d.id.clone());
            }
        }
    })
    .await
    .expect("both deliveries after the restart");
    assert_eq!(
        delivered["purchase"], purchase.id,
        "queued before the crash"
    );
    assert_eq!(delivered["revoke"], revoke.id, "queued before the crash");
    drop(usher);
}

#[tokio::test]
async fn item12_a_reload_changes_which_events_are_sent() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    let only_revokes = config(&origin, &receiver).replace(
        &format!("secret = \"{SECRET_TEXT}\"\n"),
        &format!("secret = \"{SECRET_TEXT}\"\nevents = [\"revoke\"]\n"),
    );
    let usher = Usher::start(&only_revokes, &[]);
    let (_, hash) = sell(&usher, json!({"code": "p", "name": "Final"}), "alice").await;
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let first = tokio::time::timeout(Duration::from_secs(20), receiver.got.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.event, "revoke", "the purchase was not subscribed");
    std::fs::write(usher.config_path(), config(&origin, &receiver)).unwrap();
    let request = http::Request::post(format!("{}/reload", usher.admin.as_ref().unwrap()))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(read(send_any(request).await).await.status, 200);
    let (_, bob) = buy(&usher, "p", "bob").await;
    let purchase = receiver.next("purchase").await;
    assert_eq!(purchase.payload["data"]["purchase"], bob.as_str());
}

#[tokio::test]
async fn a_reload_that_removes_every_receiver_drops_what_was_queued_for_them() {
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    receiver.answer(500, 1);
    let usher = Usher::start(&config(&origin, &receiver), &[]);
    sell(&usher, json!({"code": "p", "name": "Final"}), "alice").await;
    assert_eq!(
        receiver.next("purchase").await.answered,
        500,
        "queued again"
    );
    let none = config(&origin, &receiver).replace(
        &format!(
            "[[webhooks.endpoints]]\nurl = \"{}\"\nsecret = \"{SECRET_TEXT}\"\n",
            receiver.url
        ),
        "",
    );
    assert!(!none.contains("webhooks.endpoints"));
    std::fs::write(usher.config_path(), none).unwrap();
    let request = http::Request::post(format!("{}/reload", usher.admin.as_ref().unwrap()))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(read(send_any(request).await).await.status, 200);
    let dropped = r#"usher_webhook_dropped_total{reason="unconfigured"}"#;
    let depth = "usher_webhook_queue_depth";
    tokio::time::timeout(Duration::from_secs(10), async {
        while metric(&usher, dropped).await < 1.0 || metric(&usher, depth).await > 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("dropped once it is due again, and the queue seen empty");
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_up_the_others() {
    let origin = origin().await;
    let mut silent = Silent::start().await;
    let mut healthy = Receiver::start().await;
    // Each delivery to the silent receiver waits a minute for its answer; it takes the
    // purchases, the healthy one the revokes.
    let hooks = format!(
        "[webhooks]\ntimeout = \"60s\"\n\
         [[webhooks.endpoints]]\nurl = \"{}\"\nsecret = \"{SECRET_TEXT}\"\nevents = [\"purchase\"]\n\
         [[webhooks.endpoints]]\nurl = \"{}\"\nsecret = \"{SECRET_TEXT}\"\nevents = [\"revoke\"]\n",
        silent.url, healthy.url
    );
    let usher = Usher::start(&rights_config(&origin.url(), &hooks), &[]);
    // More sales than there are delivery slots in all: a backlog for the silent receiver,
    // queued before the revoke.
    let (_, hash) = sell(&usher, json!({"code": "p", "name": "Final"}), "alice").await;
    for n in 0..40 {
        buy(&usher, "p", &format!("buyer{n}")).await;
    }
    tokio::time::timeout(Duration::from_secs(20), silent.accepted.recv())
        .await
        .expect("the silent receiver is being delivered to")
        .expect("it runs");
    let (status, _) = api(
        &usher,
        "POST",
        &format!("/api/v1/buyers/{hash}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Well before the silent receiver's deliveries time out.
    let revoke = healthy.next("revoke").await;
    assert!(revoke.signed);
    assert_eq!(revoke.payload["data"]["purchase"], hash.as_str());
    // Nothing for the silent receiver was lost: all 41 still wait in the store, and it
    // holds its share of the slots (max_in_flight_per_endpoint, 8 by default).
    let silent_origin = silent.url.trim_end_matches("/hook");
    let backlog = format!("usher_webhook_backlog{{receiver=\"{silent_origin}\"}}");
    let in_flight = format!("usher_webhook_in_flight{{receiver=\"{silent_origin}\"}}");
    tokio::time::timeout(Duration::from_secs(10), async {
        while metric(&usher, &backlog).await != 41.0 || metric(&usher, &in_flight).await != 8.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the silent receiver's deliveries are kept, and shown");
}

/// Two nodes on one PostgreSQL queue, a receiver in only one's config (a reload that has
/// reached node A and not yet node B): B leaves the receiver's deliveries in the store,
/// and A delivers them. Before, B claimed them and dropped them as `unconfigured`.
#[tokio::test]
async fn a_node_without_a_receiver_leaves_its_deliveries_to_the_node_that_has_it() {
    let pg = support::postgres::Postgres::start();
    let url = pg.database("usher");
    let origin = origin().await;
    let mut receiver = Receiver::start().await;
    let store = format!("[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{url}\"\n");
    let b = Usher::start(&rights_config(&origin.url(), &store), &[]);
    // A delivery node A queued for its receiver.
    let body = json!({"id": "ev1", "type": "purchase", "created_at": 1, "data": {}});
    let insert = format!(
        "INSERT INTO webhook_queue (endpoint, event, event_id, body, next_attempt) \
         VALUES ('{}', 'purchase', 'ev1', '{body}', 0)",
        receiver.url
    );
    assert!(pg.psql("usher", &insert).status().unwrap().success());
    // Node B has read it: shown waiting, or (before the fix) dropped.
    let shown = receiver.url.trim_end_matches("/hook");
    let backlog = format!("usher_webhook_backlog{{receiver=\"{shown}\"}}");
    let dropped = r#"usher_webhook_dropped_total{reason="unconfigured"}"#;
    tokio::time::timeout(Duration::from_secs(10), async {
        while metric(&b, &backlog).await != 1.0 && metric(&b, dropped).await == 0.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("node B reads the queue");
    let a = Usher::start(&format!("{}{store}", config(&origin, &receiver)), &[]);
    let delivered = receiver.next("purchase").await;
    assert_eq!((delivered.id.as_str(), delivered.signed), ("ev1", true));
    assert_eq!(metric(&b, dropped).await, 0.0, "node B dropped nothing");
    drop(a);
}

async fn send_any(
    request: http::Request<http_body_util::Empty<Bytes>>,
) -> http::Response<hyper::body::Incoming> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http()
        .request(request)
        .await
        .unwrap()
}
