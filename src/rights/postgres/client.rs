//! Connecting, migrating, and running one operation on the store's own runtime.

use std::future::Future;
use std::time::Instant;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde::de::DeserializeOwned;

use super::migrations::MIGRATIONS;
use super::{conflict_or, from_json, pg, refs, Args, PostgresStore};
use crate::config::PostgresConfig;
use crate::metrics::StoreMetrics;
use crate::rights::store::StoreError;

/// How many `store.postgres.timeout`s a whole operation may take before usher stops
/// waiting for it (each statement is cancelled by the server after one).
const GIVE_UP_FACTOR: u32 = 3;

/// The TLS connector for `config`: the system roots plus `ca_file`. Whether TLS is used
/// is the URL's `sslmode`: `disable`, `prefer` (the default: TLS when the server offers
/// it) or `require`.
///
/// # Errors
/// When `ca_file` cannot be read.
pub fn tls(
    config: &PostgresConfig,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    crate::proxy::upstream::client_tls(config.ca_file.as_deref())
        .map(tokio_postgres_rustls::MakeRustlsConnect::new)
        .map_err(|e| StoreError::Backend(format!("store.postgres.ca_file: {e:#}")))
}

impl PostgresStore {
    /// Connects to the database `config` names and brings its schema up to date (several
    /// nodes starting at once apply each migration once: they take an advisory lock).
    ///
    /// # Errors
    /// When the URL is bad, the server cannot be reached, or a migration fails.
    pub fn connect(config: &PostgresConfig, metrics: StoreMetrics) -> Result<Self, StoreError> {
        let store = Self::open(config, metrics, Connections::Pooled)?;
        store.migrate()?;
        Ok(store)
    }

    /// A store that reads the database as it stood when it was opened: one connection in
    /// one `REPEATABLE READ, READ ONLY` transaction, so writers that go on meanwhile
    /// change nothing in what it reads (`usher store export` beside running servers: no
    /// purchase appears twice or not at all). Every write fails. The schema is brought up
    /// to date first, on a connection of its own. If the connection breaks, every later
    /// read fails rather than reading outside the snapshot.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and when the transaction cannot be begun.
    pub fn snapshot(config: &PostgresConfig, metrics: StoreMetrics) -> Result<Self, StoreError> {
        drop(Self::connect(config, metrics.clone())?);
        let store = Self::open(config, metrics, Connections::Snapshot)?;
        // The snapshot is taken by the transaction's first statement: take it now.
        store.run("snapshot", |c| async move {
            c.query_one("SELECT 1", &[]).await.map_err(pg).map(drop)
        })?;
        Ok(store)
    }

    /// A store on `config`'s database holding its `connections` so, not migrated.
    pub(super) fn open(
        config: &PostgresConfig,
        metrics: StoreMetrics,
        connections: Connections,
    ) -> Result<Self, StoreError> {
        let mut pg_config: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Backend(format!("store.postgres.url: {e}")))?;
        pg_config.connect_timeout(config.connect_timeout);
        // The server bounds every statement by the same timeout and rolls back what it
        // cancels, so a slow write fails whole and known ("nothing written") instead of
        // landing after usher gave up on it; a transaction a vanished client left open is
        // ended too.
        let ms = config.timeout.as_millis();
        let bounds = format!(
            "-c statement_timeout={ms} -c idle_in_transaction_session_timeout={}",
            ms * GIVE_UP_FACTOR as u128
        );
        let options = match pg_config.get_options() {
            Some(theirs) => format!("{theirs} {bounds}"),
            None => bounds,
        };
        pg_config.options(&options);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("usher");
        }
        let manager = Manager::from_config(
            pg_config,
            tls(config)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("usher-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("store runtime: {e}")))?;
        let pool = {
            let _entered = runtime.enter();
            let builder = Pool::builder(manager);
            match connections {
                Connections::Pooled => builder.max_size(config.pool_size as usize),
                Connections::Snapshot => builder.max_size(1).post_create(one_transaction(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                    SNAPSHOT_LOST,
                )),
                Connections::Import => builder
                    .max_size(1)
                    .post_create(one_transaction("BEGIN", IMPORT_LOST)),
            }
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("store pool: {e}")))?
        };
        Ok(Self {
            pool,
            runtime: Some(runtime),
            timeout: config.timeout,
            metrics,
            reachable: std::sync::atomic::AtomicBool::new(true),
            import: false,
        })
    }

    /// The schema version (number of migrations applied).
    ///
    /// # Errors
    /// On a backend failure.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        self.run("schema", |c| async move {
            let exists: bool = c
                .query_one("SELECT to_regclass('usher_schema') IS NOT NULL", &[])
                .await
                .map_err(pg)?
                .get(0);
            if !exists {
                return Ok(0);
            }
            let version: i32 = c
                .query_one("SELECT version FROM usher_schema", &[])
                .await
                .map_err(pg)?
                .get(0);
            Ok(version as usize)
        })
    }

    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        self.run("migrate", |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // One node migrates at a time; the others find the work done.
            // Migrations may wait for another node's, and may take long on a big table:
            // the per-statement bound does not apply to them.
            tx.batch_execute("SET LOCAL statement_timeout = 0")
                .await
                .map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock(7567236572)", &[])
                .await
                .map_err(pg)?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS usher_schema (version INTEGER NOT NULL);")
                .await
                .map_err(pg)?;
            let row = tx
                .query_opt("SELECT version FROM usher_schema", &[])
                .await
                .map_err(pg)?;
            let applied = match row {
                Some(row) => row.get::<_, i32>(0) as usize,
                None => {
                    tx.execute("INSERT INTO usher_schema (version) VALUES (0)", &[])
                        .await
                        .map_err(pg)?;
                    0
                }
            };
            if applied > MIGRATIONS.len() {
                return Err(StoreError::Backend(format!(
                    "database schema version {applied} is newer than this usher knows ({})",
                    MIGRATIONS.len()
                )));
            }
            for sql in &MIGRATIONS[applied..] {
                tx.batch_execute(sql).await.map_err(pg)?;
            }
            tx.execute(
                "UPDATE usher_schema SET version = $1",
                &[&(MIGRATIONS.len() as i32)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    /// Runs `f` with a pooled connection on the store's runtime and waits for its answer:
    /// a connection within `store.postgres.timeout`, each statement within it (the server
    /// cancels it after), the whole at most three times it. `op` names
    /// the operation in metrics.
    pub(super) fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Unavailable("the store is shutting down".into()));
        };
        let (pool, timeout) = (self.pool.clone(), self.timeout);
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let started = Instant::now();
        runtime.spawn(async move {
            let work = async {
                let client = pool.get().await.map_err(no_connection)?;
                f(client).await
            };
            let give_up = timeout * GIVE_UP_FACTOR;
            let result = tokio::time::timeout(give_up, work)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unknown(format!("no answer within {give_up:?}")))
                });
            let _ = answer.send(settle(op, result));
        });
        let result = answered
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store stopped".into())));
        self.metrics.observe(op, started.elapsed(), &result);
        self.reachable.store(
            !matches!(
                result,
                Err(StoreError::Unavailable(_) | StoreError::Unknown(_))
            ),
            std::sync::atomic::Ordering::Relaxed,
        );
        let status = self.pool.status();
        self.metrics.pool(
            status.size as i64,
            status.available as i64,
            status.max_size as i64,
        );
        result
    }

    /// Rows of JSON in column 0, decoded.
    pub(super) fn json_rows<T: DeserializeOwned + Send + 'static>(
        &self,
        op: &'static str,
        sql: &'static str,
        args: Args,
    ) -> Result<Vec<T>, StoreError> {
        self.run(op, move |c| async move {
            let rows = c.query(sql, &refs(&args)).await.map_err(pg)?;
            rows.iter()
                .map(|row| from_json(row.get::<_, &str>(0)))
                .collect()
        })
    }

    /// The JSON in column 0 of the row `sql` finds, if any.
    pub(super) fn json_row<T: DeserializeOwned + Send + 'static>(
        &self,
        op: &'static str,
        sql: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .json_rows(op, sql, args![key.to_owned()])?
            .into_iter()
            .next())
    }

    pub(super) fn count(
        &self,
        op: &'static str,
        sql: &'static str,
        args: Args,
    ) -> Result<u64, StoreError> {
        self.run(op, move |c| async move {
            let n: i64 = c.query_one(sql, &refs(&args)).await.map_err(pg)?.get(0);
            Ok(n as u64)
        })
    }

    /// Runs a write; `NotFound(what)` when it touched no row, `Conflict(what)` on a taken
    /// unique value.
    pub(super) fn changed(
        &self,
        op: &'static str,
        sql: &'static str,
        args: Args,
        what: String,
    ) -> Result<(), StoreError> {
        self.run(op, move |c| async move {
            let n = c
                .execute(sql, &refs(&args))
                .await
                .map_err(|e| conflict_or(e, &what))?;
            if n == 0 {
                Err(StoreError::NotFound(what))
            } else {
                Ok(())
            }
        })
    }

    /// Sends `payload` to every node listening on `channel` (PostgreSQL `NOTIFY`).
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub fn notify(&self, channel: &'static str, payload: String) -> Result<(), StoreError> {
        self.run("notify", move |c| async move {
            c.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    /// Whether the last operation reached the server.
    pub fn reachable(&self) -> bool {
        self.reachable.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How a store holds its connections.
#[derive(Clone, Copy)]
pub(super) enum Connections {
    /// A pool of `store.postgres.pool_size`, each operation its own transaction.
    Pooled,
    /// One connection in one read-only snapshot transaction ([`PostgresStore::snapshot`]).
    Snapshot,
    /// One connection in one read-write transaction ([`PostgresStore::importing`]).
    Import,
}

/// Why a snapshot store refuses a second connection, as the operator reads it.
const SNAPSHOT_LOST: &str = "the snapshot's connection was lost (the server ends a \
    transaction idle for three store.postgres.timeouts, e.g. while the output is not read, \
    or it restarted, or the network broke); nothing was read outside the snapshot: start again";

/// Why an import's store refuses a second connection, as the operator reads it.
const IMPORT_LOST: &str = "the import's connection was lost (the server ends a transaction \
    idle for three store.postgres.timeouts, e.g. while the input does not come, or it \
    restarted, or the network broke); the server rolled back what it had written";

/// The pool's failure to give a connection, as the store being unavailable: a snapshot's
/// or an import's refusal ([`SNAPSHOT_LOST`], [`IMPORT_LOST`]) as it is, any other as "no connection" and deadpool's text
/// (which ends a hook's failure with a line break).
fn no_connection(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::PostCreateHook(deadpool_postgres::HookError::Message(
            why,
        )) => StoreError::Unavailable(why.into_owned()),
        e => StoreError::Unavailable(format!("no connection: {}", e.to_string().trim_end())),
    }
}

/// The hook that begins, with `begin`, the one transaction of a snapshot's or an import's
/// store on its one connection, and refuses a second connection with `lost` (the first
/// broke: a new one would work outside that transaction).
fn one_transaction(begin: &'static str, lost: &'static str) -> deadpool_postgres::Hook {
    let begun = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    deadpool_postgres::Hook::async_fn(move |client, _| {
        let begun = begun.clone();
        Box::pin(async move {
            if begun.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Err(deadpool_postgres::HookError::message(lost));
            }
            client
                .batch_execute(begin)
                .await
                .map_err(deadpool_postgres::HookError::Backend)
        })
    })
}

/// The operations that only read: one of them that loses its connection or its answer
/// has written nothing, so the store was simply unavailable. Every other operation is
/// taken to write (one that loses its answer after sending may have been carried out), so
/// a new operation left off this list is reported the careful way ("outcome unknown"),
/// never as "nothing was written".
const READS: &[&str] = &[
    "account",
    "accounts",
    "all_media",
    "audit",
    "contacts",
    "devices",
    "entitlements",
    "import_begin",
    "linked",
    "media",
    "pending_webhooks",
    "product",
    "product_count",
    "products",
    "purchase",
    "purchase_count",
    "purchases",
    "sale_key",
    "sale_keys",
    "schema",
    "snapshot",
    "webhook_backlog",
    "webhook_queue_depth",
];

/// `result` of `op` as the caller should read it: an unknown outcome of an operation that
/// only reads is the store being unavailable.
fn settle<T>(op: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Err(StoreError::Unknown(why)) if READS.contains(&op) => Err(StoreError::Unavailable(why)),
        other => other,
    }
}

#[cfg(test)]
mod settle_tests {
    use super::*;

    #[test]
    fn a_lost_answer_is_unknown_for_a_write_and_unavailable_for_a_read() {
        let lost = || Err::<(), _>(StoreError::Unknown("connection closed".into()));
        assert_eq!(
            settle("create_purchase", lost()),
            Err(StoreError::Unknown("connection closed".into()))
        );
        assert_eq!(
            settle("entitlements", lost()),
            Err(StoreError::Unavailable("connection closed".into()))
        );
        let refused = Err::<(), _>(StoreError::Unavailable("no connection".into()));
        assert_eq!(settle("create_purchase", refused.clone()), refused);
        assert_eq!(settle("linked", Ok(())), Ok(()));
        assert_eq!(
            settle("a_new_operation", lost()),
            Err(StoreError::Unknown("connection closed".into())),
            "an operation not known to only read is reported as a write"
        );
    }
}
