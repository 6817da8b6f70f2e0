//! The shared store: one PostgreSQL database that every usher node reads and writes.
//!
//! Each [`Store`] method is one statement or one transaction, so a write that returned is
//! committed (and, with PostgreSQL's default `synchronous_commit`, on the server's disk)
//! before usher answers 2xx. Races between nodes are settled by the database: a device
//! binding locks its purchase row first, so two nodes racing for the last activation
//! cannot both get it; an idempotency key is a primary key, so one of two concurrent sales
//! under it commits and the other answers the first.
//!
//! The trait is blocking. The client (tokio-postgres, pooled by deadpool-postgres) runs on
//! a small runtime of its own, and a call waits on a channel for its answer, so the store
//! works the same from the blocking pool, from the CLI and from async code. Every call is
//! bounded by `store.postgres.timeout`: a server that is down or slow gives
//! [`StoreError::Unavailable`] (admin writes answer 503) instead of a hang.

use std::future::Future;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::model::{Account, Binding, Contacts, Media, Product, Purchase, PurchaseStatus};
use super::store::{
    AuditEntry, AuditFilter, Bind, KeyedSale, Page, PurchaseFilter, SaleKey, Store, StoreError,
};
use crate::config::PostgresConfig;
use crate::metrics::StoreMetrics;

/// Statement arguments, owned so a call can move them to the store's runtime.
type Args = Vec<Box<dyn ToSql + Sync + Send>>;

/// Builds [`Args`] from values.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$(Box::new($value) as Box<dyn tokio_postgres::types::ToSql + Sync + Send>),*]
    };
}

mod audit;
mod migrations;
mod webhooks;

use migrations::MIGRATIONS;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// Runs the client; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    metrics: StoreMetrics,
    /// Whether the last operation reached the server.
    reachable: std::sync::atomic::AtomicBool,
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(e.to_string()))
}

/// How many `store.postgres.timeout`s a whole operation may take before usher stops
/// waiting for it (each statement is cancelled by the server after one).
const GIVE_UP_FACTOR: u32 = 3;

/// A client error: the server's own refusal is a backend failure; a statement the server
/// cancelled after `statement_timeout` (rolled back), or a connection that broke or never
/// formed, is the store being unavailable.
fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::QUERY_CANCELED) {
        return StoreError::Unavailable(
            "a statement ran past store.postgres.timeout and was rolled back".into(),
        );
    }
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("{} ({})", db.message(), db.code().code())),
        None => StoreError::Unavailable(e.to_string()),
    }
}

/// [`pg`], but a unique violation is `Conflict(what)`.
fn conflict_or(e: tokio_postgres::Error, what: &str) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(what.to_owned())
    } else {
        pg(e)
    }
}

fn refs(args: &Args) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn status_name(status: PurchaseStatus) -> &'static str {
    match status {
        PurchaseStatus::Active => "active",
        PurchaseStatus::Revoked => "revoked",
    }
}

fn opt_u32(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

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
            Pool::builder(manager)
                .max_size(config.pool_size as usize)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(config.timeout))
                .create_timeout(Some(config.connect_timeout))
                .recycle_timeout(Some(config.timeout))
                .build()
                .map_err(|e| StoreError::Backend(format!("store pool: {e}")))?
        };
        let store = Self {
            pool,
            runtime: Some(runtime),
            timeout: config.timeout,
            metrics,
            reachable: std::sync::atomic::AtomicBool::new(true),
        };
        store.migrate()?;
        Ok(store)
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

    fn migrate(&self) -> Result<(), StoreError> {
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
    fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
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
                let client = pool
                    .get()
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("no connection: {e}")))?;
                f(client).await
            };
            let give_up = timeout * GIVE_UP_FACTOR;
            let result = tokio::time::timeout(give_up, work)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(format!(
                        "no answer within {give_up:?}"
                    )))
                });
            let _ = answer.send(result);
        });
        let result = answered
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store stopped".into())));
        self.metrics.observe(op, started.elapsed(), &result);
        self.reachable.store(
            !matches!(result, Err(StoreError::Unavailable(_))),
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
    fn json_rows<T: DeserializeOwned + Send + 'static>(
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
    fn json_row<T: DeserializeOwned + Send + 'static>(
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

    fn count(&self, op: &'static str, sql: &'static str, args: Args) -> Result<u64, StoreError> {
        self.run(op, move |c| async move {
            let n: i64 = c.query_one(sql, &refs(&args)).await.map_err(pg)?.get(0);
            Ok(n as u64)
        })
    }

    /// Runs a write; `NotFound(what)` when it touched no row, `Conflict(what)` on a taken
    /// unique value.
    fn changed(
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

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which async code may not do; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The `WHERE` of a purchase listing: `$1`–`$5` are a [`PurchaseFilter`]'s fields.
macro_rules! purchase_filter {
    () => {
        "WHERE ($1::text IS NULL OR product = $1) AND ($2::text IS NULL OR media = $2)
           AND ($3::text IS NULL OR lower(email) = lower($3)) AND ($4::text IS NULL OR account = $4)
           AND ($5::text IS NULL OR status = $5)"
    };
}

fn filter_args(filter: &PurchaseFilter) -> Args {
    args![
        filter.product.clone(),
        filter.media.clone(),
        filter.email.clone(),
        filter.account.clone(),
        filter.status.map(status_name),
    ]
}

/// Inserts a purchase and, if new, its account (enabled), inside `tx`.
async fn insert_purchase(
    tx: &deadpool_postgres::Transaction<'_>,
    purchase: &Purchase,
    data: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO purchases (hash, product, media, account, email, status, purchased_at, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &purchase.hash,
            &purchase.product,
            &purchase.media,
            &purchase.account,
            &purchase.email,
            &status_name(purchase.status),
            &(purchase.purchased_at as i64),
            &data,
        ],
    )
    .await
    .map_err(|e| {
        if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
            StoreError::NotFound(format!("product {}", purchase.product))
        } else {
            conflict_or(e, &format!("purchase {}", purchase.hash))
        }
    })?;
    tx.execute(
        "INSERT INTO accounts (id, enabled) VALUES ($1, TRUE) ON CONFLICT (id) DO NOTHING",
        &[&purchase.account],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn sale_key_in(c: &tokio_postgres::Client, key: &str) -> Result<Option<SaleKey>, StoreError> {
    let row = c
        .query_opt(
            "SELECT purchase, fingerprint FROM sale_keys WHERE key = $1",
            &[&key],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| SaleKey {
        purchase: r.get(0),
        fingerprint: r.get(1),
    }))
}

impl Store for PostgresStore {
    fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        let data = to_json(product)?;
        let (code, at) = (product.code.clone(), product.created_at as i64);
        let what = format!("product {code}");
        self.run("create_product", move |c| async move {
            c.execute(
                "INSERT INTO products (code, created_at, data) VALUES ($1, $2, $3)",
                &[&code, &at, &data],
            )
            .await
            .map_err(|e| conflict_or(e, &what))?;
            Ok(())
        })
    }

    fn update_product(&self, product: &Product) -> Result<(), StoreError> {
        self.changed(
            "update_product",
            "UPDATE products SET data = $2 WHERE code = $1",
            args![product.code.clone(), to_json(product)?],
            format!("product {}", product.code),
        )
    }

    fn product(&self, code: &str) -> Result<Option<Product>, StoreError> {
        self.json_row("product", "SELECT data FROM products WHERE code = $1", code)
    }

    fn products(&self, page: Page) -> Result<Vec<Product>, StoreError> {
        self.json_rows(
            "products",
            "SELECT data FROM products ORDER BY created_at, seq LIMIT $1 OFFSET $2",
            args![i64::from(page.limit), i64::from(page.offset)],
        )
    }

    fn product_count(&self) -> Result<u64, StoreError> {
        self.count("product_count", "SELECT COUNT(*) FROM products", args![])
    }

    fn delete_product(&self, code: &str) -> Result<(), StoreError> {
        self.changed(
            "delete_product",
            "DELETE FROM products WHERE code = $1",
            args![code.to_owned()],
            format!("product {code}"),
        )
    }

    fn create_media(&self, media: &Media) -> Result<(), StoreError> {
        let data = to_json(media)?;
        let m = media.clone();
        self.run("create_media", move |c| async move {
            c.execute(
                "INSERT INTO media (code, prefix, editorial, created_at, data)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &m.code,
                    &m.prefix,
                    &m.editorial,
                    &(m.created_at as i64),
                    &data,
                ],
            )
            .await
            .map_err(|e| conflict_or(e, &format!("media {} or prefix {}", m.code, m.prefix)))?;
            Ok(())
        })
    }

    fn media(&self, code: &str) -> Result<Option<Media>, StoreError> {
        self.json_row("media", "SELECT data FROM media WHERE code = $1", code)
    }

    fn all_media(&self) -> Result<Vec<Media>, StoreError> {
        self.json_rows(
            "all_media",
            "SELECT data FROM media ORDER BY created_at, seq",
            args![],
        )
    }

    fn delete_media(&self, code: &str) -> Result<(), StoreError> {
        let code = code.to_owned();
        self.run("delete_media", move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let n = tx
                .execute("DELETE FROM media WHERE code = $1", &[&code])
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("media {code}")));
            }
            tx.execute("DELETE FROM product_media WHERE content = $1", &[&code])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    fn update_media(&self, media: &Media) -> Result<(), StoreError> {
        let data = to_json(media)?;
        let m = media.clone();
        self.run("update_media", move |c| async move {
            let n = c
                .execute(
                    "UPDATE media SET prefix = $2, editorial = $3, data = $4 WHERE code = $1",
                    &[&m.code, &m.prefix, &m.editorial, &data],
                )
                .await
                .map_err(|e| conflict_or(e, &format!("prefix {}", m.prefix)))?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("media {}", m.code)));
            }
            Ok(())
        })
    }

    fn media_buyers(&self, code: &str, editorial: Option<&str>) -> Result<u64, StoreError> {
        self.count(
            "media_buyers",
            "SELECT COUNT(*) FROM purchases pu
             WHERE pu.status = 'active'
               AND (pu.media = $1 OR EXISTS (SELECT 1 FROM product_media pm
                    WHERE pm.product = pu.product AND pm.content IN ($1, $2)))",
            args![code.to_owned(), editorial.unwrap_or(code).to_owned()],
        )
    }

    fn link(&self, product: &str, content: &str) -> Result<(), StoreError> {
        let (product, content) = (product.to_owned(), content.to_owned());
        self.run("link", move |c| async move {
            let exists = c
                .query_opt("SELECT 1 FROM products WHERE code = $1", &[&product])
                .await
                .map_err(pg)?
                .is_some();
            // The foreign key settles a product deleted in between.
            let inserted = c
                .execute(
                    "INSERT INTO product_media (product, content) VALUES ($1, $2)
                     ON CONFLICT (product, content) DO NOTHING",
                    &[&product, &content],
                )
                .await;
            match inserted {
                Ok(_) if exists => Ok(()),
                Err(e) if e.code() != Some(&SqlState::FOREIGN_KEY_VIOLATION) => Err(pg(e)),
                _ => Err(StoreError::NotFound(format!("product {product}"))),
            }
        })
    }

    fn unlink(&self, product: &str, content: &str) -> Result<(), StoreError> {
        self.changed(
            "unlink",
            "DELETE FROM product_media WHERE product = $1 AND content = $2",
            args![product.to_owned(), content.to_owned()],
            format!("media {content} in product {product}"),
        )
    }

    fn linked(&self, product: &str) -> Result<Vec<String>, StoreError> {
        let product = product.to_owned();
        self.run("linked", move |c| async move {
            let rows = c
                .query(
                    "SELECT content FROM product_media WHERE product = $1 ORDER BY seq",
                    &[&product],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn create_purchase(&self, purchase: &Purchase) -> Result<(), StoreError> {
        let data = to_json(purchase)?;
        let purchase = purchase.clone();
        self.run("create_purchase", move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            insert_purchase(&tx, &purchase, &data).await?;
            tx.commit().await.map_err(pg)
        })
    }

    fn create_purchase_keyed(
        &self,
        purchase: &Purchase,
        key: &str,
        fingerprint: &str,
    ) -> Result<KeyedSale, StoreError> {
        let data = to_json(purchase)?;
        let (purchase, key, fingerprint) =
            (purchase.clone(), key.to_owned(), fingerprint.to_owned());
        self.run("create_purchase_keyed", move |mut c| async move {
            if let Some(taken) = sale_key_in(&c, &key).await? {
                return Ok(KeyedSale::Taken(taken));
            }
            let tx = c.transaction().await.map_err(pg)?;
            insert_purchase(&tx, &purchase, &data).await?;
            // A concurrent sale under the same key waits here for the other to end; if
            // it committed, this inserts nothing and the whole transaction is dropped.
            let n = tx
                .execute(
                    "INSERT INTO sale_keys (key, fingerprint, purchase) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO NOTHING",
                    &[&key, &fingerprint, &purchase.hash],
                )
                .await
                .map_err(pg)?;
            if n == 1 {
                tx.commit().await.map_err(pg)?;
                return Ok(KeyedSale::Created);
            }
            tx.rollback().await.map_err(pg)?;
            match sale_key_in(&c, &key).await? {
                Some(taken) => Ok(KeyedSale::Taken(taken)),
                None => Err(StoreError::Backend(format!(
                    "sale key {key} was taken and then released"
                ))),
            }
        })
    }

    fn sale_key(&self, key: &str) -> Result<Option<SaleKey>, StoreError> {
        let key = key.to_owned();
        self.run(
            "sale_key",
            move |c| async move { sale_key_in(&c, &key).await },
        )
    }

    fn update_purchase(&self, purchase: &Purchase) -> Result<(), StoreError> {
        self.changed(
            "update_purchase",
            "UPDATE purchases SET status = $2, data = $3, email = $4, media = $5, account = $6
             WHERE hash = $1",
            args![
                purchase.hash.clone(),
                status_name(purchase.status),
                to_json(purchase)?,
                purchase.email.clone(),
                purchase.media.clone(),
                purchase.account.clone(),
            ],
            format!("purchase {}", purchase.hash),
        )
    }

    fn purchase(&self, hash: &str) -> Result<Option<Purchase>, StoreError> {
        self.json_row(
            "purchase",
            "SELECT data FROM purchases WHERE hash = $1",
            hash,
        )
    }

    fn purchases(&self, filter: &PurchaseFilter, page: Page) -> Result<Vec<Purchase>, StoreError> {
        let mut args = filter_args(filter);
        args.push(Box::new(i64::from(page.limit)));
        args.push(Box::new(i64::from(page.offset)));
        self.json_rows(
            "purchases",
            concat!(
                "SELECT data FROM purchases ",
                purchase_filter!(),
                " ORDER BY purchased_at, seq LIMIT $6 OFFSET $7"
            ),
            args,
        )
    }

    fn purchase_count(&self, filter: &PurchaseFilter) -> Result<u64, StoreError> {
        self.count(
            "purchase_count",
            concat!("SELECT COUNT(*) FROM purchases ", purchase_filter!()),
            filter_args(filter),
        )
    }

    fn record_first_play(&self, hash: &str, now: u64) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.run("record_first_play", move |c| async move {
            let n = c
                .execute(
                    "UPDATE purchases
                     SET data = jsonb_set(data::jsonb, '{first_play_at}', to_jsonb($2::bigint))::text
                     WHERE hash = $1
                       AND COALESCE(data::jsonb -> 'first_play_at', 'null'::jsonb) = 'null'::jsonb",
                    &[&hash, &(now as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn delete_purchase(&self, hash: &str) -> Result<(), StoreError> {
        self.changed(
            "delete_purchase",
            "DELETE FROM purchases WHERE hash = $1",
            args![hash.to_owned()],
            format!("purchase {hash}"),
        )
    }

    fn entitlements(
        &self,
        account: &str,
        contents: &[String],
    ) -> Result<Vec<(Purchase, Product)>, StoreError> {
        if contents.is_empty() {
            return Ok(Vec::new());
        }
        let (account, contents) = (account.to_owned(), contents.to_vec());
        self.run("entitlements", move |c| async move {
            let rows = c
                .query(
                    "SELECT DISTINCT pu.data, pr.data FROM purchases pu
                     JOIN products pr ON pr.code = pu.product
                     JOIN product_media pm ON pm.product = pu.product
                     WHERE pu.account = $1 AND pm.content = ANY($2)",
                    &[&account, &contents],
                )
                .await
                .map_err(pg)?;
            rows.iter()
                .map(|r| Ok((from_json(r.get(0))?, from_json(r.get(1))?)))
                .collect()
        })
    }

    fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let id = id.to_owned();
        self.run("account", move |c| async move {
            let row = c
                .query_opt(
                    "SELECT enabled, max_sessions, max_devices FROM accounts WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| Account {
                id,
                enabled: r.get(0),
                max_sessions: opt_u32(r.get(1)),
                max_devices: opt_u32(r.get(2)),
            }))
        })
    }

    fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        let a = account.clone();
        self.run("put_account", move |c| async move {
            c.execute(
                "INSERT INTO accounts (id, enabled, max_sessions, max_devices)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled,
                   max_sessions = excluded.max_sessions, max_devices = excluded.max_devices",
                &[
                    &a.id,
                    &a.enabled,
                    &a.max_sessions.map(i64::from),
                    &a.max_devices.map(i64::from),
                ],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.run("accounts", |c| async move {
            let rows = c
                .query(
                    "SELECT id, enabled, max_sessions, max_devices FROM accounts ORDER BY id",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| Account {
                    id: r.get(0),
                    enabled: r.get(1),
                    max_sessions: opt_u32(r.get(2)),
                    max_devices: opt_u32(r.get(3)),
                })
                .collect())
        })
    }

    fn sale_keys(&self) -> Result<Vec<(String, SaleKey)>, StoreError> {
        self.run("sale_keys", |c| async move {
            let rows = c
                .query(
                    "SELECT key, purchase, fingerprint FROM sale_keys ORDER BY key",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        SaleKey {
                            purchase: r.get(1),
                            fingerprint: r.get(2),
                        },
                    )
                })
                .collect())
        })
    }

    fn put_sale_key(&self, key: &str, sale: &SaleKey) -> Result<(), StoreError> {
        let (key, sale) = (key.to_owned(), sale.clone());
        self.run("put_sale_key", move |c| async move {
            c.execute(
                "INSERT INTO sale_keys (key, fingerprint, purchase) VALUES ($1, $2, $3)",
                &[&key, &sale.fingerprint, &sale.purchase],
            )
            .await
            .map_err(|e| {
                if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                    StoreError::NotFound(format!("purchase {}", sale.purchase))
                } else {
                    conflict_or(e, &format!("sale key {key}"))
                }
            })?;
            Ok(())
        })
    }

    fn bind_device(
        &self,
        purchase: &str,
        device: &str,
        limit: Option<u32>,
        now: u64,
    ) -> Result<Bind, StoreError> {
        self.bind(purchase, device, None, limit, now)
    }

    fn add_device(
        &self,
        purchase: &str,
        device: &str,
        id: &str,
        limit: Option<u32>,
        now: u64,
    ) -> Result<Bind, StoreError> {
        self.bind(purchase, device, Some(id), limit, now)
    }

    fn devices(&self, purchase: &str) -> Result<Vec<Binding>, StoreError> {
        let purchase = purchase.to_owned();
        self.run("devices", move |c| async move {
            let rows = c
                .query(
                    "SELECT device, bound_at, id FROM device_bindings WHERE purchase = $1
                     ORDER BY bound_at, seq",
                    &[&purchase],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| Binding {
                    device: r.get(0),
                    bound_at: r.get::<_, i64>(1) as u64,
                    id: r.get(2),
                })
                .collect())
        })
    }

    fn unbind_device(&self, purchase: &str, device: &str) -> Result<(), StoreError> {
        self.changed(
            "unbind_device",
            "DELETE FROM device_bindings WHERE purchase = $1 AND device = $2",
            args![purchase.to_owned(), device.to_owned()],
            format!("device {device} on purchase {purchase}"),
        )
    }

    fn rebind_device(
        &self,
        purchase: &str,
        from: &str,
        to: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.changed(
            "rebind_device",
            "UPDATE device_bindings SET device = $3, bound_at = $4
             WHERE purchase = $1 AND device = $2",
            args![
                purchase.to_owned(),
                from.to_owned(),
                to.to_owned(),
                now as i64
            ],
            format!("device {from} on purchase {purchase}"),
        )
    }

    fn contacts(&self) -> Result<Contacts, StoreError> {
        Ok(self
            .json_row::<Contacts>(
                "contacts",
                "SELECT data FROM contacts WHERE id = $1::text::integer",
                "1",
            )?
            .unwrap_or_default())
    }

    fn put_contacts(&self, contacts: &Contacts) -> Result<(), StoreError> {
        self.changed(
            "put_contacts",
            "INSERT INTO contacts (id, data) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            args![to_json(contacts)?],
            "contacts".into(),
        )
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit::append(self, entry)
    }

    fn audit(
        &self,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        audit::list(self, filter, page)
    }
}

impl PostgresStore {
    /// Binds a device under the activation limit: the purchase row is locked first, so
    /// binds of one purchase from every node take turns, and the count they see is the
    /// count they write against.
    fn bind(
        &self,
        purchase: &str,
        device: &str,
        id: Option<&str>,
        limit: Option<u32>,
        now: u64,
    ) -> Result<Bind, StoreError> {
        let (purchase, device, id) = (
            purchase.to_owned(),
            device.to_owned(),
            id.map(str::to_owned),
        );
        self.run("bind_device", move |mut c| async move {
            let known = "SELECT 1 FROM device_bindings WHERE purchase = $1 AND device = $2";
            // A device coming back is the common case: a read, no lock.
            if id.is_none()
                && c.query_opt(known, &[&purchase, &device])
                    .await
                    .map_err(pg)?
                    .is_some()
            {
                return Ok(Bind::Known);
            }
            let tx = c.transaction().await.map_err(pg)?;
            let locked = tx
                .query_opt(
                    "SELECT 1 FROM purchases WHERE hash = $1 FOR UPDATE",
                    &[&purchase],
                )
                .await
                .map_err(pg)?;
            if locked.is_none() {
                return Err(StoreError::NotFound(format!("purchase {purchase}")));
            }
            if tx
                .query_opt(known, &[&purchase, &device])
                .await
                .map_err(pg)?
                .is_some()
            {
                if let Some(id) = &id {
                    tx.execute(
                        "UPDATE device_bindings SET id = $3 WHERE purchase = $1 AND device = $2",
                        &[&purchase, &device, id],
                    )
                    .await
                    .map_err(pg)?;
                    tx.commit().await.map_err(pg)?;
                }
                return Ok(Bind::Known);
            }
            let used: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM device_bindings WHERE purchase = $1",
                    &[&purchase],
                )
                .await
                .map_err(pg)?
                .get(0);
            if limit.is_some_and(|l| used >= i64::from(l)) {
                return Ok(Bind::LimitReached);
            }
            tx.execute(
                "INSERT INTO device_bindings (purchase, device, bound_at, id) VALUES ($1, $2, $3, $4)",
                &[&purchase, &device, &(now as i64), &id],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Bind::Bound)
        })
    }
}
