//! Issue 11 item 7, the audit trail: writes through the JSON API (two named credentials),
//! the facade, `usher admin`, `POST /reload` and SIGHUP each appear in `GET /api/v1/audit`
//! with who, through what, what, and the before/after of the changed fields; tickets and
//! tokens appear nowhere, neither there nor in the log; the filters select; the trail
//! survives a restart. Item 13 (part): wrong admin credentials are limited per client.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::admin::{api, api_as, facade};
use support::cli::usher_admin;
use support::*;

const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n";
const BILLING_ENV: &str = "USHER_AUDIT_TEST_BILLING_TOKEN";
const BILLING_TOKEN: &str = "billing-token-0123456789-abcdef";

async fn show_origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/shows/ep1/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/shows/ep1/seg1.ts".to_owned(), segment(100));
    spawn_origin(objects).await
}

/// A store-rights config with a second credential, `billing`, read from the environment.
fn config(origin: &str) -> String {
    std::env::set_var(BILLING_ENV, BILLING_TOKEN);
    rights_config(
        origin,
        &format!("[[admin.credentials]]\nname = \"billing\"\ntoken_env = \"{BILLING_ENV}\"\n"),
    )
}

async fn audit(usher: &impl support::admin::HasAdmin, query: &str) -> Value {
    let (status, body) = api(usher, "GET", &format!("/api/v1/audit{query}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().expect("items").clone()
}

/// `usher admin ARGS`, which must succeed; its stdout.
async fn cli(usher: &Usher, args: &[&str]) -> String {
    usher_admin(usher, args).await.ok().to_owned()
}

async fn post_reload(usher: &Usher) -> u16 {
    request(
        "POST",
        &format!("{}/reload", usher.admin.as_deref().unwrap()),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn item7_every_admin_write_is_audited_with_who_what_and_before_after() {
    let origin = show_origin().await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let log = data.path().join("usher.log");
    let config = config(&origin.url());
    let mut usher = Usher::start_logged(&config, &["--data-dir", &data_dir], &log);

    // The JSON API, main credential.
    for (path, body) in [
        (
            "/api/v1/products",
            json!({"code": "show", "name": "Show", "period": 2}),
        ),
        (
            "/api/v1/media",
            json!({"code": "ep1", "prefix": "/shows/ep1/", "playlist": "index.m3u8"}),
        ),
        ("/api/v1/products/show/media", json!({"media": "ep1"})),
    ] {
        let (status, answer) = api(&usher, "POST", path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    // A refused write is not recorded.
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "nope", "email": "x@example.com"})),
    )
    .await;
    assert_eq!(status, 404);
    // The JSON API, the billing credential sells.
    let (status, sold) = api_as(
        &usher,
        BILLING_TOKEN,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "show", "media": "ep1", "email": "ann@example.com", "account": "acct-ann"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    let hash = sold["hash"].as_str().unwrap().to_owned();
    let mut tickets = vec![sold["ticket"].as_str().unwrap().to_owned()];
    // A shorter window (the ticket, valid for a year, stays as it was).
    let ends = usher::clock::unix_now() + 36 * 3600;
    let (status, updated) = api(
        &usher,
        "PATCH",
        &format!("/api/v1/buyers/{hash}"),
        Some(json!({"name": "Ann", "access_expire": ends})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    tickets.push(updated["ticket"].as_str().unwrap().to_owned());
    // The facade.
    let reply = facade(
        &usher,
        &format!("/api/ppv/updatebuyer?hash={hash}&name=Bob"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The CLI.
    assert_eq!(cli(&usher, &["buyer", "revoke", &hash]).await.trim(), hash);
    // POST /reload, then SIGHUP.
    std::fs::write(
        usher.config_path(),
        config.replace("clock_skew = \"0s\"", "clock_skew = \"1s\""),
    )
    .unwrap();
    assert_eq!(post_reload(&usher).await, 200);
    std::fs::write(
        usher.config_path(),
        config.replace("clock_skew = \"0s\"", "clock_skew = \"2s\""),
    )
    .unwrap();
    usher.signal("HUP");
    let started = Instant::now();
    while audit(&usher, "?action=config.reload").await["total"] != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the SIGHUP reload is recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let all = audit(&usher, "").await;
    let entries = items(&all);
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["interface"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("admin", "api", "product.create"),
            ("admin", "api", "media.create"),
            ("admin", "api", "product.media.add"),
            ("billing", "api", "purchase.create"),
            ("admin", "api", "purchase.update"),
            ("admin", "facade", "purchase.update"),
            ("admin", "cli", "purchase.revoke"),
            ("admin", "reload", "config.reload"),
            ("signal", "signal", "config.reload"),
        ]
    );
    assert_eq!(all["total"], 9);
    let product = &entries[0];
    assert_eq!(
        (product["target_kind"].as_str(), product["target"].as_str()),
        (Some("product"), Some("show"))
    );
    assert_eq!(
        product["changes"]["name"],
        json!({"before": null, "after": "Show"})
    );
    assert_eq!(entries[2]["target"], "show/ep1");
    let create = &entries[3];
    assert_eq!(
        (create["purchase"].as_str(), create["account"].as_str()),
        (Some(hash.as_str()), Some("acct-ann"))
    );
    assert_eq!(create["changes"]["email"]["after"], "ann@example.com");
    assert_eq!(
        create["changes"]["ticket"],
        json!({"before": null, "after": "<redacted>"})
    );
    let by_api = &entries[4]["changes"];
    assert_eq!(by_api["name"], json!({"before": null, "after": "Ann"}));
    assert_eq!(
        by_api["access_expire"],
        json!({"before": null, "after": ends})
    );
    assert!(
        by_api.get("ticket").is_none(),
        "the reissued ticket is the same (it outlasts the window): {by_api}"
    );
    assert!(
        by_api.get("email").is_none(),
        "unchanged fields are left out: {by_api}"
    );
    assert_eq!(
        entries[5]["changes"]["name"],
        json!({"before": "Ann", "after": "Bob"})
    );
    assert_eq!(
        entries[6]["changes"]["status"],
        json!({"before": "active", "after": "revoked"})
    );
    assert_eq!(
        entries[7]["changes"],
        json!({"token.clock_skew": {"before": "<redacted>", "after": "<redacted>"}}),
        "the reload names the setting it changed, and only that"
    );
    assert_eq!(
        entries[8]["changes"],
        json!({"token.clock_skew": {"before": "<redacted>", "after": "<redacted>"}})
    );
    assert!(entries
        .iter()
        .all(|e| e["at"].as_u64().unwrap() > 1_700_000_000));

    // Filters.
    let of_purchase = audit(&usher, &format!("?purchase={hash}")).await;
    assert_eq!(of_purchase["total"], 4);
    assert_eq!(audit(&usher, "?account=acct-ann").await["total"], 4);
    let updates = audit(&usher, "?action=purchase.update").await;
    assert_eq!(
        items(&updates)
            .iter()
            .map(|e| e["interface"].clone())
            .collect::<Vec<_>>(),
        [json!("api"), json!("facade")]
    );
    assert_eq!(audit(&usher, "?since=2100-01-01").await["total"], 0);
    assert_eq!(audit(&usher, "?since=2000-01-01").await["total"], 9);
    let (status, refused) = api(&usher, "GET", "/api/v1/audit?acount=acct-ann", None).await;
    assert_eq!((status, refused["field"].as_str()), (400, Some("acount")));

    // No credential anywhere: not in the trail, not in the log.
    let text = all.to_string();
    let log_text = std::fs::read_to_string(&log).unwrap();
    for secret in tickets
        .iter()
        .map(String::as_str)
        .chain([ADMIN_TOKEN, BILLING_TOKEN])
    {
        assert!(!text.contains(secret), "the audit holds a credential");
        assert!(!log_text.contains(secret), "the log holds a credential");
    }
    // One log line per write, naming it.
    let lines: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("admin write"))
        .collect();
    assert_eq!(lines.len(), 9, "{log_text}");
    assert!(
        lines[3].contains("purchase.create") && lines[3].contains("billing"),
        "{}",
        lines[3]
    );

    // A restart on the same data keeps the trail.
    usher.terminate();
    usher.wait();
    let usher = Usher::start_logged(&config, &["--data-dir", &data_dir], &log);
    assert_eq!(audit(&usher, "").await["items"], all["items"]);
}

#[tokio::test]
async fn item13_wrong_admin_credentials_are_limited_per_client_with_429() {
    let origin = show_origin().await;
    // The default limit: 10 wrong credentials per client per minute.
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let admin = usher.admin.clone().unwrap();
    let products = format!("{admin}/api/v1/products");
    let as_token = |t: &str| format!("Bearer {t}");
    assert_eq!(
        request(
            "GET",
            &products,
            &[("authorization", &as_token(ADMIN_TOKEN))]
        )
        .await
        .status,
        200
    );
    for _ in 0..10 {
        let reply = request(
            "GET",
            &products,
            &[("authorization", "Bearer a-guess-0123456789")],
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    let limited = request(
        "GET",
        &products,
        &[("authorization", "Bearer another-guess-0123")],
    )
    .await;
    assert_eq!(
        (limited.status.as_u16(), limited.reason().as_str()),
        (429, "too_many_failed_credentials")
    );
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Until the minute is over, the right credential is refused too, on every door.
    let right = request(
        "GET",
        &products,
        &[("authorization", &as_token(ADMIN_TOKEN))],
    )
    .await;
    assert_eq!(right.status, 429);
    assert!(right.headers.contains_key("retry-after"));
    assert_eq!(facade(&usher, "/api/ppv/list").await.status, 429);
    // Operations endpoints need no credential and stay open.
    assert_eq!(get(&format!("{admin}/healthz"), &[]).await.status, 200);
    assert_eq!(
        metric(
            &usher,
            "usher_admin_auth_failures_total{outcome=\"unauthorized\"}"
        )
        .await,
        10.0
    );
    assert_eq!(
        metric(
            &usher,
            "usher_admin_auth_failures_total{outcome=\"limited\"}"
        )
        .await,
        3.0
    );
}

#[tokio::test]
async fn item7_facade_sales_links_sessions_and_deletes_name_their_targets() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let created = facade(&usher, "/api/ppv/create?name=Show&period=2").await;
    assert_eq!(created.status, 200, "{}", created.text());
    let code = support::admin::xml_text(&created.text(), "Code").unwrap();
    let (status, _) = api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "ep1", "prefix": "/shows/ep1/", "playlist": "index.m3u8"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        facade(&usher, &format!("/api/ppv/addmedia?code={code}&media=ep1"))
            .await
            .status,
        200
    );
    let sold = support::admin::post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=viewer%40example.com&firstName=Vi&vidID=ep1&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_eq!(sold.status, 200, "{}", sold.text());
    let (_, buyers) = api(
        &usher,
        "GET",
        "/api/v1/buyers?email=viewer@example.com",
        None,
    )
    .await;
    let hash = buyers["items"][0]["hash"].as_str().unwrap().to_owned();
    // Play, so there is a session to end.
    assert_eq!(get(&sold.text(), &[]).await.status, 200);
    let (_, sessions) = api(&usher, "GET", "/api/v1/sessions", None).await;
    let sid = sessions["items"][0]["sid"].as_str().unwrap().to_owned();
    assert_eq!(
        api(&usher, "DELETE", &format!("/api/v1/sessions/{sid}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        facade(&usher, &format!("/api/ppv/deletebuyer?hash={hash}"))
            .await
            .status,
        200
    );
    assert_eq!(
        facade(
            &usher,
            "/api/ppv/updatecontacts?name=Alex&email=a%40example.com"
        )
        .await
        .status,
        200
    );

    let entries = items(&audit(&usher, "").await);
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["interface"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    let link = format!("{code}/ep1");
    assert_eq!(
        seen,
        [
            ("facade", "product.create", code.as_str()),
            ("api", "media.create", "ep1"),
            ("facade", "product.media.add", link.as_str()),
            ("facade", "purchase.create", hash.as_str()),
            ("api", "session.end", sid.as_str()),
            ("facade", "purchase.delete", hash.as_str()),
            ("facade", "contacts.update", "contacts"),
        ]
    );
    assert_eq!(
        entries[3]["changes"]["name"],
        json!({"before": null, "after": "Vi"})
    );
    assert_eq!(entries[4]["purchase"], hash.as_str());
    assert_eq!(
        entries[5]["changes"]["email"],
        json!({"before": "viewer@example.com", "after": null})
    );
    assert_eq!(entries[6]["changes"]["name"]["after"], "Alex");
    assert_eq!(
        audit(&usher, &format!("?purchase={hash}")).await["total"],
        3
    );

    // A forced delete of a product with a buyer says how many purchases went with it.
    let sold = support::admin::post_form(
        &usher,
        "/sendVideoTicket.php",
        &format!("email=second%40example.com&firstName=Se&vidID=ep1&apikey={ADMIN_TOKEN}"),
    )
    .await;
    assert_eq!(sold.status, 200, "{}", sold.text());
    let deleted = facade(&usher, &format!("/api/ppv/delete?code={code}&force=1")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let entries = items(&audit(&usher, "?action=product.delete").await);
    assert_eq!(
        entries[0]["changes"]["buyers"],
        json!({"before": 1, "after": null})
    );
}

#[tokio::test]
async fn item7_an_idempotent_sale_answered_again_is_recorded_once() {
    let origin = show_origin().await;
    let usher = Usher::start(&config(&origin.url()), &[]);
    show_with_ep1(&usher).await;
    let sale = json!({"product": "show", "email": "ann@example.com", "order_id": "order-1"});
    let (status, first) = api(&usher, "POST", "/api/v1/buyers", Some(sale.clone())).await;
    assert_eq!(status, 201, "{first}");
    let (_, again) = api(&usher, "POST", "/api/v1/buyers", Some(sale)).await;
    assert_eq!(again["hash"], first["hash"], "{again}");

    let hash = first["hash"].as_str().unwrap();
    let page = audit(&usher, &format!("?action=purchase.create&purchase={hash}")).await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(items(&page).len(), 1, "{page}");
}

/// Taking out a media a buyer named: the refused unlink (409) wrote nothing and is not
/// recorded; the forced one is, as the link it removed, with how many buyers it affected.
#[tokio::test]
async fn a_refused_unlink_is_not_recorded_and_a_forced_one_is() {
    let origin = show_origin().await;
    let usher = Usher::start(&config(&origin.url()), &[]);
    show_with_ep1(&usher).await;
    let sale = json!({"product": "show", "media": "ep1", "email": "ann@example.com"});
    let (status, answer) = api(&usher, "POST", "/api/v1/buyers", Some(sale)).await;
    assert_eq!(status, 201, "{answer}");
    let path = "/api/v1/products/show/media/ep1";
    let (status, refused) = api(&usher, "DELETE", path, None).await;
    assert_eq!(status, 409, "{refused}");
    let page = audit(&usher, "?action=product.media.remove").await;
    assert_eq!(page["total"], 0, "{page}");

    let (status, body) = api(&usher, "DELETE", &format!("{path}?force=true"), None).await;
    assert_eq!(status, 200, "{body}");
    let entries = items(&audit(&usher, "?action=product.media.remove").await);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], "show/ep1");
    assert_eq!(
        entries[0]["changes"]["content"],
        json!({"before": "ep1", "after": null}),
        "{entries:?}"
    );
    assert_eq!(
        entries[0]["changes"]["buyers"],
        json!({"before": 1, "after": null}),
        "the forced unlink says how many buyers it took the media from: {entries:?}"
    );
}

/// A rights invalidation (and a cache purge) does not queue behind an admin write the
/// store has not answered yet: a revocation takes effect while a product write is held.
#[tokio::test]
async fn an_invalidation_does_not_wait_behind_a_held_store_write() {
    use usher::admin::audit::{self, Actor, Interface};
    use usher::admin::fields::Fields;
    use usher::admin::ops::AdminError;

    let origin = show_origin().await;
    let usher = support::inprocess::InProcess::start(&config(&origin.url())).await;
    let (started, held) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let state = usher.state.clone();
    let write = tokio::spawn(async move {
        let actor = Actor {
            name: "admin".to_owned(),
            interface: Interface::Api,
        };
        let segments = ["products", "P1"];
        let write = audit::api_write(&hyper::Method::PATCH, &segments);
        assert!(write.is_some());
        // A product update the store takes its time over: it holds its place in the
        // line of store writes until released.
        let op = async move {
            started.send(()).unwrap();
            let _ = released.await;
            Err::<String, _>(AdminError::NotFound("product P1".to_owned()))
        };
        audit::recorded(&state, &actor, write, &segments, &Fields::new(), op).await
    });
    held.await.unwrap();
    for (path, body) in [
        ("/api/v1/rights/invalidate", json!({"subject": "alice"})),
        ("/api/v1/cache/purge", json!({"prefix": "/shows/"})),
    ] {
        let answered = tokio::time::timeout(
            Duration::from_secs(30),
            api(&usher, "POST", path, Some(body)),
        )
        .await;
        let (status, body) = answered.unwrap_or_else(|_| panic!("{path} waited for the write"));
        assert_eq!(status, 200, "{path}: {body}");
    }
    release.send(()).unwrap();
    assert!(write.await.unwrap().is_err());
    let invalidations = audit(&usher, "?action=rights.invalidate").await;
    assert_eq!(items(&invalidations).len(), 1, "and it is on record");
}

/// A `since` past the largest signed 64-bit number of seconds lies in the far future: it
/// selects no entry (it used to wrap around to a time before any, and select them all).
#[tokio::test]
async fn an_audit_since_past_i64_selects_nothing() {
    let origin = show_origin().await;
    let usher = Usher::start(&config(&origin.url()), &[]);
    let product = json!({"code": "show", "name": "Show"});
    let (status, body) = api(&usher, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(audit(&usher, "").await["total"], 1);
    for since in ["9223372036854775808", "18446744073709551615"] {
        let page = audit(&usher, &format!("?since={since}")).await;
        assert_eq!(
            (&page["total"], &page["items"]),
            (&json!(0), &json!([])),
            "since={since}"
        );
    }
}

/// Product `show` holding media `ep1` (`/shows/ep1/`).
async fn show_with_ep1(usher: &Usher) {
    for (path, body) in [
        ("/api/v1/products", json!({"code": "show", "name": "Show"})),
        (
            "/api/v1/media",
            json!({"code": "ep1", "prefix": "/shows/ep1/", "playlist": "index.m3u8"}),
        ),
        ("/api/v1/products/show/media", json!({"media": "ep1"})),
    ] {
        let (status, answer) = api(usher, "POST", path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
}
