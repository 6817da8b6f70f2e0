//! Rights from the operator's HTTP service (the TVMS "API provision"): claims mapped into
//! the URL, success read from the status and a JSON field, fail closed when the service is
//! down, and the optional grace mode that keeps a recent yes alive through an outage.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::admin::api;
use support::*;

const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n";

/// An origin that also plays the operator's billing service under `/billing/`.
async fn origin_and_billing() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/shows/ep1/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/shows/ep1/seg1.ts".to_owned(), segment(100));
    objects.insert(
        "/billing/alice/ep1.json".to_owned(),
        json_object(r#"{"entitled": true}"#),
    );
    objects.insert(
        "/billing/bob/ep1.json".to_owned(),
        json_object(r#"{"entitled": false}"#),
    );
    objects.insert(
        "/billing/carol/ep1.json".to_owned(),
        json_object(r#"{"entitled": true}"#),
    );
    spawn_origin(objects).await
}

fn external_config(origin: &Origin, grace: &str) -> String {
    let rights = format!(
        "source = \"external\"\npositive_ttl = \"1ms\"\nnegative_ttl = \"1ms\"\n\
         [rights.external]\nurl = \"{}/billing/{{sub}}/{{content}}.json\"\ntimeout = \"2s\"\n\
         success_status = [200]\nsuccess_json_pointer = \"/entitled\"\nsuccess_json_value = true\n\
         grace = \"{grace}\"",
        origin.url()
    );
    config_with(&origin.url(), &rights, "")
}

async fn media(usher: &Usher) {
    let (status, body) = api(
        usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "ep1", "prefix": "/shows/ep1/", "playlist": "index.m3u8"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn url(usher: &Usher, who: &str) -> String {
    let ticket = mint_with("/shows/", |c| c.sub = who.into());
    format!("{}/shows/ep1/index.m3u8?ticket={ticket}", usher.url)
}

#[tokio::test]
async fn the_service_decides_by_status_and_json_field() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&external_config(&origin, "0s"), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    assert_eq!(
        get(&url(&usher, "bob"), &[]).await.reason(),
        "no_rights",
        "entitled: false"
    );
    assert_eq!(
        get(&url(&usher, "dave"), &[]).await.reason(),
        "no_rights",
        "404 from the service"
    );
    let asked: Vec<String> = origin
        .seen()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t.starts_with("/billing/"))
        .collect();
    assert_eq!(
        asked,
        [
            "/billing/alice/ep1.json",
            "/billing/bob/ep1.json",
            "/billing/dave/ep1.json"
        ]
    );
}

#[tokio::test]
async fn an_outage_fails_closed_without_grace() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&external_config(&origin, "0s"), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    let mut down = json_object("down for maintenance");
    down.status = Some(503);
    origin.insert("/billing/alice/ep1.json", down);
    let reply = get(&url(&usher, "alice"), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (503, "rights_unavailable")
    );
}

/// How often the service was asked about `who` and ep1.
fn asked(origin: &Origin, who: &str) -> usize {
    let target = format!("/billing/{who}/ep1.json");
    origin.seen().iter().filter(|s| s.target == target).count()
}

/// The first answer to `who` that asked the service (earlier ones come from the decision
/// cache, which keeps an answer for 1 ms here); each of those earlier answers is checked
/// by `cached`.
async fn asking(usher: &Usher, origin: &Origin, who: &str, cached: impl Fn(&Reply)) -> Reply {
    let before = asked(origin, who);
    for _ in 0..100 {
        let reply = get(&url(usher, who), &[]).await;
        if asked(origin, who) > before {
            return reply;
        }
        cached(&reply);
    }
    panic!("the service was never asked again about {who}");
}

#[tokio::test]
async fn a_refusal_ends_the_grace_a_yes_began() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&external_config(&origin, "10m"), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    // The billing system revokes by saying no (no invalidation call), then goes down.
    origin.insert(
        "/billing/alice/ep1.json",
        json_object(r#"{"entitled": false}"#),
    );
    let refused = asking(&usher, &origin, "alice", |_| {}).await;
    assert_eq!(refused.reason(), "no_rights");
    let mut down = json_object("");
    down.status = Some(502);
    origin.insert("/billing/alice/ep1.json", down);
    let reply = asking(&usher, &origin, "alice", |cached| {
        assert_eq!(cached.reason(), "no_rights", "the cached no")
    })
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (503, "rights_unavailable"),
        "the no stands through the outage"
    );
}

#[tokio::test]
async fn grace_keeps_a_recent_yes_through_an_outage_and_says_so() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&external_config(&origin, "10m"), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    let mut down = json_object("");
    down.status = Some(502);
    origin.insert("/billing/alice/ep1.json", down.clone());
    origin.insert("/billing/carol/ep1.json", down);
    assert_eq!(
        get(&url(&usher, "alice"), &[]).await.status,
        200,
        "a yes within the grace"
    );
    let carol = get(&url(&usher, "carol"), &[]).await;
    assert_eq!(
        carol.reason(),
        "rights_unavailable",
        "no recent yes for carol: fail closed"
    );
    let metrics = get(&format!("{}/metrics", usher.admin.as_ref().unwrap()), &[])
        .await
        .text();
    assert!(
        metrics.contains(r#"usher_rights_lookups_total{outcome="grace"} 1"#),
        "{metrics}"
    );
}

/// An external source with decisions cached for ten minutes: only an invalidation can make
/// a change visible.
fn cached_external_config(origin: &Origin) -> String {
    let rights = format!(
        "source = \"external\"\npositive_ttl = \"10m\"\nnegative_ttl = \"10m\"\n\
         [rights.external]\nurl = \"{}/billing/{{sub}}/{{content}}.json\"\ntimeout = \"2s\"\n\
         success_json_pointer = \"/entitled\"\nsuccess_json_value = true",
        origin.url()
    );
    config_with(&origin.url(), &rights, "")
}

async fn invalidate(usher: &Usher, body: serde_json::Value) -> (u16, serde_json::Value) {
    api(usher, "POST", "/api/v1/rights/invalidate", Some(body)).await
}

#[tokio::test]
async fn item11_invalidating_a_subject_refuses_the_very_next_request() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&cached_external_config(&origin), &[]);
    media(&usher).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    assert_eq!(get(&url(&usher, "carol"), &[]).await.status, 200);
    // The billing system revokes alice: its service now says no.
    origin.insert(
        "/billing/alice/ep1.json",
        json_object(r#"{"entitled": false}"#),
    );
    assert_eq!(
        get(&url(&usher, "alice"), &[]).await.status,
        200,
        "cached for ten minutes"
    );
    let (status, answer) = invalidate(&usher, json!({"subject": "alice"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dropped"], 1, "{answer}");
    assert_eq!(answer["subject"], "alice");
    assert_eq!(get(&url(&usher, "alice"), &[]).await.reason(), "no_rights");
    assert_eq!(
        get(&url(&usher, "carol"), &[]).await.status,
        200,
        "carol's decision was not touched"
    );
    assert_eq!(
        metric(
            &usher,
            r#"usher_rights_invalidations_total{scope="subject"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn item11_invalidation_needs_a_subject_or_a_content() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&cached_external_config(&origin), &[]);
    let (status, answer) = invalidate(&usher, json!({})).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = invalidate(&usher, json!({"subjct": "alice"})).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("subjct")));
}

#[tokio::test]
async fn item11_invalidation_by_content_works_with_the_embedded_store() {
    let origin = origin_and_billing().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    media(&usher).await;
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "shows", "name": "Shows"})),
    )
    .await;
    assert_eq!(status, 201);
    api(
        &usher,
        "POST",
        "/api/v1/products/shows/media",
        Some(json!({"media": "ep1"})),
    )
    .await;
    for who in ["alice", "carol"] {
        let (status, sold) = api(
            &usher,
            "POST",
            "/api/v1/buyers",
            Some(json!({"product": "shows", "account": who})),
        )
        .await;
        assert_eq!(status, 201, "{sold}");
        assert_eq!(get(&url(&usher, who), &[]).await.status, 200);
    }
    let (status, answer) = invalidate(&usher, json!({"content": "ep1"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dropped"], 2, "{answer}");
    let (_, answer) = invalidate(&usher, json!({"subject": "alice", "content": "ep1"})).await;
    assert_eq!(answer["dropped"], 0, "already dropped: {answer}");
    let misses = r#"usher_rights_cache_total{outcome="miss"}"#;
    let before = metric(&usher, misses).await;
    assert_eq!(get(&url(&usher, "alice"), &[]).await.status, 200);
    assert_eq!(metric(&usher, misses).await, before + 1.0, "decided afresh");
}

/// A billing service that answers yes only to callers presenting both headers, recording
/// the `Authorization` values it was sent.
async fn billing_with_auth(
    api_key: &'static str,
    auth: &'static str,
) -> (String, Arc<Mutex<Vec<String>>>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    record.lock().unwrap().push(header("authorization"));
                    let allowed = header("x-api-key") == api_key && header("authorization") == auth;
                    let (status, body) = if allowed {
                        (200, r#"{"entitled": true}"#)
                    } else {
                        (401, r#"{"error": "unauthorized"}"#)
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
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
    (format!("http://{addr}"), seen)
}

fn auth_config(origin: &Origin, billing: &str, headers: &str) -> String {
    let rights = format!(
        "source = \"external\"\n[rights.external]\nurl = \"{billing}/check/{{sub}}\"\n\
         success_json_pointer = \"/entitled\"\nsuccess_json_value = true\n{headers}"
    );
    config_with(&origin.url(), &rights, "")
}

#[tokio::test]
async fn item11_external_calls_carry_configured_headers_with_a_secret_from_the_environment() {
    let origin = origin_and_billing().await;
    let (billing, seen) = billing_with_auth("key-123", "Bearer billing-secret-from-env").await;
    let without = Usher::start(&auth_config(&origin, &billing, ""), &[]);
    media(&without).await;
    assert_eq!(
        get(&url(&without, "alice"), &[]).await.reason(),
        "no_rights",
        "the service refuses a caller without its headers"
    );
    let headers = "headers = { \"X-Api-Key\" = \"key-123\" }\n\
                   headers_env = { Authorization = \"USHER_TEST_BILLING_AUTH\" }";
    let with = Usher::start_env(
        &auth_config(&origin, &billing, headers),
        &[],
        &[("USHER_TEST_BILLING_AUTH", "Bearer billing-secret-from-env")],
    );
    media(&with).await;
    assert_eq!(get(&url(&with, "alice"), &[]).await.status, 200);
    assert_eq!(
        seen.lock().unwrap().last().map(String::as_str),
        Some("Bearer billing-secret-from-env"),
        "the value came from the environment"
    );
}

#[test]
fn item11_an_unset_header_variable_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usher.toml");
    let rights = "source = \"external\"\n[rights.external]\nurl = \"http://127.0.0.1:1/{sub}\"\n\
                  headers_env = { Authorization = \"USHER_TEST_UNSET_VARIABLE\" }";
    std::fs::write(&file, config_with("http://127.0.0.1:1", rights, "")).unwrap();
    let out = std::process::Command::new(usher_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("rights.external.headers_env.Authorization = \"USHER_TEST_UNSET_VARIABLE\": environment variable is not set"),
        "{err}"
    );
}

#[test]
fn item11_check_config_warns_when_grace_cannot_outlive_the_positive_cache() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usher.toml");
    let check = |positive: &str, grace: &str| {
        let rights = format!(
            "source = \"external\"\npositive_ttl = \"{positive}\"\n[rights.external]\n\
             url = \"http://127.0.0.1:1/{{sub}}\"\ngrace = \"{grace}\""
        );
        std::fs::write(&file, config_with("http://127.0.0.1:1", &rights, "")).unwrap();
        let out = std::process::Command::new(usher_bin())
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "a warning is not an error");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = check("10m", "5m");
    assert!(err.contains("warning: rights.external.grace"), "{err}");
    assert!(err.contains("grace never applies"), "{err}");
    assert!(check("10m", "10m").contains("grace never applies"), "equal");
    assert!(
        !check("30s", "10m").contains("warning"),
        "grace outlives the cache"
    );
    assert!(!check("10m", "0s").contains("warning"), "no grace at all");
}
