//! `usher store export` and `usher store import` on the embedded database: an export file
//! only its owner can read, that ends with its own counts, made from a database that
//! exists; an import refused under a running server and for a file cut short. An export
//! of PostgreSQL reads one snapshot while other nodes go on writing. An import is all or
//! nothing, into SQLite and PostgreSQL alike: a file that fails part-way (a bad line, a
//! refused record, no end line) or a process killed mid-way leaves the target empty, and
//! the good file then goes in without emptying anything. An import into PostgreSQL takes
//! no subtransaction per record.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;
use support::admin::api;
use support::cli::CliRun;
use support::postgres::Postgres;
use support::*;
use usher::config::PostgresConfig;
use usher::metrics::Metrics;
use usher::rights::model::{Account, Media, Product, Purchase};
use usher::rights::postgres::PostgresStore;
use usher::rights::sqlite::SqliteStore;
use usher::rights::store::{AuditEntry, NewDelivery, Store, WebhookQueue};
use usher::rights::transfer;

async fn store_cli(args: &[&str]) -> CliRun {
    support::cli::run_cli(std::process::Command::new(usher_bin()), args).await
}

/// `usher store VERB` with `config` on the data directory `data` and `file`.
async fn transfer(verb: &str, config: &Path, data: &Path, file: &Path) -> CliRun {
    store_cli(&[
        "store",
        verb,
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ])
    .await
}

#[tokio::test]
async fn an_export_is_private_and_whole_and_an_import_waits_for_the_server_to_stop() {
    let origin = spawn_origin(HashMap::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("usher.toml");
    std::fs::write(&config, rights_config(&origin.url(), "")).unwrap();
    let file = dir.path().join("usher.jsonl");

    let node = Usher::start(
        &rights_config(&origin.url(), ""),
        &["--data-dir", data.to_str().unwrap()],
    );
    let product = json!({"code": "final", "name": "Final"});
    let (status, body) = api(&node, "POST", "/api/v1/products", Some(product)).await;
    assert_eq!(status, 201, "{body}");
    // A file left from before, readable by all and held open by a reader: the export
    // replaces it with a file of its own, 0600, and the reader never sees a ticket.
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut reader = std::fs::File::open(&file).unwrap();
    // An export reads a copy of the database: it may run beside the server.
    let exported = transfer("export", &config, &data, &file).await;
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut reader, &mut seen).unwrap();
    assert_eq!(seen, "old");
    assert!(
        exported.stderr.contains("exported 1 products"),
        "{exported:?}"
    );
    exported.ok();
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    // An import is refused while a server uses the database it would write.
    let under = transfer("import", &config, &data, &file).await;
    assert!(
        under.failed().contains("stop it before importing"),
        "{under:?}"
    );
    drop(node);

    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holds every ticket");
    let text = std::fs::read_to_string(&file).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("{\"kind\":\"end\""), "{last}");
    assert!(
        !std::fs::read_dir(&data).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("export-")),
        "the copy is gone"
    );

    // A file cut short is refused, not taken for the whole store.
    let cut = dir.path().join("cut.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n")).unwrap();
    let refused = transfer("import", &config, &fresh, &cut).await;
    assert!(refused.failed().contains("incomplete"), "{refused:?}");
    let whole = transfer("import", &config, &dir.path().join("fresh2"), &file).await;
    assert!(whole.stderr.contains("imported 1 products"), "{whole:?}");
    whole.ok();

    // A link is followed and stays a link; a device is written to, not replaced.
    let real = dir.path().join("2026-12.jsonl");
    std::fs::write(&real, "").unwrap();
    let link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    transfer("export", &config, &data, &link).await.ok();
    let kind = std::fs::symlink_metadata(&link).unwrap().file_type();
    assert!(kind.is_symlink(), "the link stays");
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        text,
        "its file holds the export"
    );
    transfer("export", &config, &data, Path::new("/dev/null"))
        .await
        .ok();
    let null = std::fs::metadata("/dev/null").unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&null));

    // A mistyped data directory is no empty store.
    let typo = dir.path().join("dta");
    let missing = transfer("export", &config, &typo, &dir.path().join("none.jsonl")).await;
    assert!(missing.failed().contains("no database at"), "{missing:?}");
    assert!(!typo.join("usher.db").exists(), "nothing made there");
}

/// A PostgreSQL export goes on while nodes sell and delete: it holds what the database held
/// when it began, nothing deleted after missing and nothing added after showing up.
#[tokio::test]
async fn a_postgres_export_reads_the_database_as_it_stood_when_it_began() {
    let pg = Postgres::start();
    let config = PostgresConfig {
        url: pg.database("snapshot"),
        pool_size: 4,
        connect_timeout: std::time::Duration::from_secs(2),
        timeout: std::time::Duration::from_secs(3),
        ca_file: None,
    };
    let node = PostgresStore::connect(&config, Metrics::new().store).unwrap();
    let product = |code: &str| -> Product {
        serde_json::from_value(json!({"code": code, "name": code})).unwrap()
    };
    node.create_product(&product("final")).unwrap();
    for hash in ["h1", "h2", "h3"] {
        let purchase = Purchase::new(hash.into(), "final", format!("acct-{hash}"), 10);
        node.create_purchase(&purchase).unwrap();
    }

    let snapshot = PostgresStore::snapshot(&config, Metrics::new().store).unwrap();
    // Another node goes on: a purchase deleted, a product and a purchase added.
    node.delete_purchase("h1").unwrap();
    node.create_product(&product("encore")).unwrap();
    let late = Purchase::new("h4".into(), "encore", "acct-h4".into(), 20);
    node.create_purchase(&late).unwrap();

    let mut out = Vec::new();
    let counts = transfer::export(&snapshot, &mut out).unwrap();
    assert_eq!((counts.products, counts.purchases), (1, 3), "{counts:?}");
    let file = String::from_utf8(out).unwrap();
    let hashes: Vec<&str> = ["h1", "h2", "h3", "h4"]
        .into_iter()
        .filter(|h| file.contains(&format!("\"hash\":\"{h}\"")))
        .collect();
    assert_eq!(hashes, ["h1", "h2", "h3"]);
    // Its connection cut: it refuses to read rather than read what stands now.
    let cut = pg
        .psql(
            "snapshot",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = 'snapshot' AND state = 'idle in transaction'",
        )
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cut.stdout).trim(), "1", "{cut:?}");
    // The read that meets the cut fails, and later ones do not go on on a new connection
    // (which would read the database as it stands now): the store refuses, and says why
    // in words an operator reads (once the cut connection is seen closed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let refused = transfer::export(&snapshot, &mut Vec::new())
            .expect_err("an export after the cut")
            .to_string();
        if refused.contains("snapshot") || std::time::Instant::now() > deadline {
            break refused;
        }
    };
    assert!(
        refused.starts_with("store unavailable: the snapshot's connection was lost (")
            && refused.contains("idle for three store.postgres.timeouts")
            && refused.ends_with("nothing was read outside the snapshot: start again"),
        "{refused:?}"
    );

    // `usher store export` on PostgreSQL reads one too: what stands now.
    let dir = tempfile::tempdir().unwrap();
    let pg_config = dir.path().join("usher.toml");
    let store = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        config.url
    );
    std::fs::write(&pg_config, rights_config("http://127.0.0.1:9", &store)).unwrap();
    let file = dir.path().join("pg.jsonl");
    let exported = transfer("export", &pg_config, &dir.path().join("data"), &file).await;
    exported.ok();
    assert!(
        exported
            .stderr
            .contains("exported 2 products, 0 media, 0 links, 4 accounts, 3 purchases"),
        "{exported:?}"
    );
}

/// What `usher store export` reports for a store that holds nothing.
const NOTHING: &str = "exported 0 products, 0 media, 0 links, 0 accounts, 0 purchases, \
    0 device bindings, 0 idempotency keys, 0 audit entries, 0 webhook deliveries";

/// What an import of [`source`]'s export reports.
const ALL: &str = "imported 1 products, 1 media, 1 links, 3 accounts, 3 purchases, \
    1 device bindings, 1 idempotency keys, 1 audit entries, 1 webhook deliveries";

/// An export of an embedded store holding a record of every kind, as lines (the end line
/// last): the good file, and the ways a file fails part-way.
async fn source(dir: &Path, config: &Path) -> Vec<String> {
    let data = dir.join("source");
    let store = SqliteStore::open(&data).unwrap();
    let product: Product =
        serde_json::from_value(json!({"code": "final", "name": "Final"})).unwrap();
    store.create_product(&product).unwrap();
    let media: Media =
        serde_json::from_value(json!({"code": "m1", "prefix": "/events/final/"})).unwrap();
    store.create_media(&media).unwrap();
    store.link("final", "m1").unwrap();
    for hash in ["h1", "h2", "h3"] {
        let purchase = Purchase::new(hash.into(), "final", format!("acct-{hash}"), 10);
        store.create_purchase(&purchase).unwrap();
    }
    store
        .put_account(&Account {
            id: "acct-h2".into(),
            enabled: false,
            max_sessions: Some(2),
            max_devices: None,
        })
        .unwrap();
    store.add_device("h1", "dev-1", "tv", None, 11).unwrap();
    let sale = usher::rights::store::SaleKey {
        purchase: "h3".into(),
        fingerprint: "f3".into(),
    };
    store.put_sale_key("order-3", &sale).unwrap();
    let entry: AuditEntry = serde_json::from_value(json!({
        "id": 0, "at": 12, "actor": "ops", "interface": "api", "action": "sale",
        "target_kind": "purchase", "target": "h1", "purchase": "h1", "account": "acct-h1",
        "changes": {}
    }))
    .unwrap();
    store.append_audit(&entry).unwrap();
    let delivery = NewDelivery {
        endpoint: "http://127.0.0.1:9/hook".into(),
        event: "purchase".into(),
        event_id: "e1".into(),
        body: "{}".into(),
        due: 13,
    };
    store.enqueue_webhooks(&[delivery], 100).unwrap();
    drop(store);
    let file = dir.join("source.jsonl");
    transfer("export", config, &data, &file).await.ok();
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Imports files that fail part-way into the (empty) store of `config` and `data`, each
/// leaving it empty, then the good file.
async fn failing_imports_leave_the_target_empty(dir: &Path, config: &Path, data: &Path) {
    let lines = source(dir, &dir.join("usher.toml")).await;
    let (end, records) = lines.split_last().unwrap();
    let with = |name: &str, lines: Vec<&str>| {
        let file = dir.join(name);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        file
    };
    let all: Vec<&str> = records.iter().map(String::as_str).collect();
    // Every record written, then a line that is none.
    let bad = with(
        "bad.jsonl",
        [&all[..], &["{\"kind\": \"nonsense\"}", end]].concat(),
    );
    // Every record written, then one the store refuses: a purchase it holds already.
    let purchase = all
        .iter()
        .find(|l| l.contains("\"kind\":\"purchase\""))
        .unwrap();
    let refused = with("refused.jsonl", [&all[..], &[purchase, end]].concat());
    // Every record, and no end line.
    let cut = with("cut.jsonl", all.clone());
    let good = with("good.jsonl", [&all[..], &[end]].concat());
    for (file, why) in [
        (
            &bad,
            format!("line {}: unknown variant `nonsense`", all.len() + 1),
        ),
        (
            &refused,
            format!("line {}: purchase h1 already exists", all.len() + 1),
        ),
        (
            &cut,
            "the file is incomplete: it stops before its end line".to_owned(),
        ),
    ] {
        let failed = transfer("import", config, data, file).await;
        let said = failed.failed();
        assert!(said.starts_with(&format!("usher: {why}")), "{failed:?}");
        let left = transfer("export", config, data, &dir.join("left.jsonl")).await;
        assert!(left.stderr.contains(NOTHING), "{file:?} left {left:?}");
        assert!(
            said.ends_with("nothing was imported (the store is as it was)"),
            "{failed:?}"
        );
    }
    let imported = transfer("import", config, data, &good).await;
    imported.ok();
    assert!(imported.stderr.contains(ALL), "{imported:?}");
    let moved = transfer("export", config, data, &dir.join("moved.jsonl")).await;
    moved.ok();
    // Audit ids are the target's own: PostgreSQL's sequence is not rolled back.
    let without_audit_ids = |file: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(file).unwrap();
        text.lines()
            .map(
                |line| match line.strip_prefix("{\"kind\":\"audit\",\"entry\":{\"id\":") {
                    Some(rest) => rest.split_once(',').unwrap().1.to_owned(),
                    None => line.to_owned(),
                },
            )
            .collect()
    };
    assert_eq!(
        without_audit_ids(&dir.join("moved.jsonl")),
        without_audit_ids(&good),
        "the target holds what the file held"
    );
}

#[tokio::test]
async fn an_import_into_sqlite_that_fails_part_way_leaves_the_target_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("usher.toml");
    std::fs::write(&config, rights_config("http://127.0.0.1:9", "")).unwrap();
    let target = dir.path().join("target");
    failing_imports_leave_the_target_empty(dir.path(), &config, &target).await;
}

/// An import that cannot begin says where: the file it could not open or read, the data
/// directory whose database it could not open.
#[tokio::test]
async fn an_import_that_cannot_begin_names_the_file_or_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("usher.toml");
    std::fs::write(&config, rights_config("http://127.0.0.1:9", "")).unwrap();
    let target = dir.path().join("target");
    // A mistyped file, and a folder given as the file.
    for unread in [dir.path().join("exprot.jsonl"), dir.path().to_path_buf()] {
        let run = transfer("import", &config, &target, &unread).await;
        let said = run.failed();
        assert!(
            said.contains(&format!("{}: ", unread.display()))
                && said.contains("nothing was imported"),
            "{run:?}"
        );
    }

    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("usher.db"), "not a database, a text file").unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let run = transfer("import", &config, &target, &empty).await;
    assert!(
        run.failed()
            .contains(&format!("data directory {}: ", target.display())),
        "{run:?}"
    );
}

/// A PostgreSQL config file in `dir` for database `db` of `pg`.
fn postgres_config(dir: &Path, pg: &Postgres, db: &str) -> std::path::PathBuf {
    let config = dir.join(format!("{db}.toml"));
    let store = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.database(db)
    );
    std::fs::write(&config, rights_config("http://127.0.0.1:9", &store)).unwrap();
    std::fs::write(
        dir.join("usher.toml"),
        rights_config("http://127.0.0.1:9", ""),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn an_import_into_postgres_that_fails_part_way_leaves_the_target_empty() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let config = postgres_config(dir.path(), &pg, "target");
    failing_imports_leave_the_target_empty(dir.path(), &config, &dir.path().join("data")).await;
}

/// An import into PostgreSQL killed after it wrote every record but before the end line
/// leaves nothing: the server rolls back the transaction of a connection that closed.
#[tokio::test]
async fn an_import_into_postgres_killed_part_way_leaves_the_target_empty() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let config = postgres_config(dir.path(), &pg, "killed");
    let data = dir.path().join("data");
    let lines = source(dir.path(), &dir.path().join("usher.toml")).await;
    let mut import = std::process::Command::new(usher_bin())
        .args(["store", "import", "--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = import.stdin.take().unwrap();
    // Every record but the end line; the input stays open.
    let records = lines[..lines.len() - 1].join("\n") + "\n";
    std::io::Write::write_all(&mut input, records.as_bytes()).unwrap();
    // The last record is the webhook delivery: once the import's connection, idle in its
    // transaction, holds the lock of a write to the queue, every record is written.
    let written = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
        WHERE a.datname = 'killed' AND a.state = 'idle in transaction' \
        AND l.relation = 'webhook_queue'::regclass AND l.mode = 'RowExclusiveLock'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = pg.psql("killed", written).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never held its records in one open transaction: {out:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    import.kill().unwrap();
    import.wait().unwrap();
    drop(input);
    let left = transfer("export", &config, &data, &dir.path().join("left.jsonl")).await;
    assert!(left.stderr.contains(NOTHING), "{left:?}");
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, lines.join("\n") + "\n").unwrap();
    let imported = transfer("import", &config, &data, &good).await;
    imported.ok();
    assert!(imported.stderr.contains(ALL), "{imported:?}");
}

/// An import from a pipe whose writer takes longer than PostgreSQL lets a transaction idle
/// (three `store.postgres.timeout`s) before its first line (an export copying its
/// database, ssh asking for a password) goes in: the transaction begins with the input.
#[tokio::test]
async fn an_import_into_postgres_waits_for_its_input_before_its_transaction() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("late.toml");
    let store = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\ntimeout = \"1s\"\n",
        pg.database("late")
    );
    std::fs::write(&config, rights_config("http://127.0.0.1:9", &store)).unwrap();
    let embedded = dir.path().join("usher.toml");
    std::fs::write(&embedded, rights_config("http://127.0.0.1:9", "")).unwrap();
    let lines = source(dir.path(), &embedded).await;
    let mut import = std::process::Command::new(usher_bin())
        .args(["store", "import", "--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = import.stdin.take().unwrap();
    // Longer than the server lets a transaction idle (3s).
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    std::io::Write::write_all(&mut input, (lines.join("\n") + "\n").as_bytes()).unwrap();
    drop(input);
    let out = import.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(ALL), "{stderr}");
}

/// An import into PostgreSQL takes no subtransaction per record. One transaction holding
/// more than 64 of them makes the server "suboverflowed": every other session's visibility
/// checks go to `pg_subtrans` for as long as the import lasts, slowing every application on
/// that server. Each subtransaction that writes takes an id of the server's transaction
/// counter (this test's server is its own, no other test moves it), so the counter read
/// before and after the import tells how many it took: a handful (the import's
/// transaction, the schema's, the first read), not one per record.
#[tokio::test]
async fn an_import_into_postgres_takes_no_subtransaction_per_record() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let config = postgres_config(dir.path(), &pg, "many");
    // 200 purchases, each with a named device, and 100 waiting webhook deliveries: 500
    // records whose writes are transactions of their own outside an import.
    let source = dir.path().join("source");
    let store = SqliteStore::importing(&source).unwrap();
    let product: Product =
        serde_json::from_value(json!({"code": "final", "name": "Final"})).unwrap();
    store.create_product(&product).unwrap();
    for i in 0..200 {
        let hash = format!("h{i}");
        let purchase = Purchase::new(hash.clone(), "final", format!("acct-{i}"), 10);
        store.create_purchase(&purchase).unwrap();
        store.add_device(&hash, "dev", "tv", None, 11).unwrap();
    }
    let deliveries: Vec<NewDelivery> = (0..100)
        .map(|i| NewDelivery {
            endpoint: "http://127.0.0.1:9/hook".into(),
            event: "purchase".into(),
            event_id: format!("e{i}"),
            body: "{}".into(),
            due: 13,
        })
        .collect();
    store.enqueue_webhooks(&deliveries, 1000).unwrap();
    store.commit_import().unwrap();
    let file = dir.path().join("many.jsonl");
    transfer("export", &dir.path().join("usher.toml"), &source, &file)
        .await
        .ok();

    let xid = || -> u64 {
        let out = pg.psql("many", "SELECT txid_current()").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let before = xid();
    let imported = transfer("import", &config, &dir.path().join("data"), &file).await;
    imported.ok();
    assert!(
        imported
            .stderr
            .contains("200 purchases, 200 device bindings")
            && imported.stderr.contains("100 webhook deliveries"),
        "{imported:?}"
    );
    let after = xid();
    assert!(
        after - before < 10,
        "the import of 500 records took {} transaction ids ({before} before, {after} after)",
        after - before
    );
}
