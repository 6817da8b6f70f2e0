//! The shared PostgreSQL: a stopped database refuses admin writes with 503 and loses
//! nothing, acknowledged writes survive SIGKILL, an embedded store moves to PostgreSQL
//! whole, and a node on PostgreSQL without an admin token makes one.

use serde_json::{json, Value};

use crate::support;
use crate::support::admin::api;
use crate::support::cluster::status_reason;
use crate::support::postgres::Postgres;
use crate::support::*;
use crate::{add_buyer, node_config, play, sell_event, wait_ready};

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
