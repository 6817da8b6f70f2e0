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
//! [`StoreError::Unavailable`] (admin writes answer 503) instead of a hang, or
//! [`StoreError::Unknown`] for a write whose connection or answer was lost after it was
//! sent (it may have committed).

use std::time::Duration;

use deadpool_postgres::Pool;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::model::{Account, Binding, Contacts, Media, Product, Purchase, PurchaseStatus};
use super::store::{
    AuditEntry, AuditFilter, Bind, KeyedSale, NewDelivery, Page, PurchaseFilter, SaleKey, Store,
    StoreError,
};
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
mod bind;
mod catalog;
mod client;
mod migrations;
mod sales;
mod tx;
mod webhooks;

pub use client::tls;
use sales::sale_key_in;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// Runs the client; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    metrics: StoreMetrics,
    /// Whether the last operation reached the server.
    reachable: std::sync::atomic::AtomicBool,
    /// Set on an import's store ([`PostgresStore::importing`]): its writes go into the
    /// import's one transaction, without savepoints.
    import: bool,
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(e.to_string()))
}

/// A client error: the server's own refusal is a backend failure; a statement the server
/// cancelled after `statement_timeout` (rolled back) is the store being unavailable; a
/// connection that broke under a statement leaves its outcome unknown (which
/// `StoreClient::run` reports as unavailable for operations that only read).
fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::QUERY_CANCELED) {
        return StoreError::Unavailable(
            "a statement ran past store.postgres.timeout and was rolled back".into(),
        );
    }
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("{} ({})", db.message(), db.code().code())),
        None => StoreError::Unknown(e.to_string()),
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

    fn products_holding(&self, content: &str, editorial: &str) -> Result<Vec<Product>, StoreError> {
        self.json_rows(
            "products_holding",
            "SELECT data FROM products WHERE code IN \
             (SELECT product FROM product_media WHERE content IN ($1, $2)) \
             ORDER BY created_at, seq",
            args![content.to_owned(), editorial.to_owned()],
        )
    }

    fn product_count(&self) -> Result<u64, StoreError> {
        self.count("product_count", "SELECT COUNT(*) FROM products", args![])
    }

    fn delete_product(&self, code: &str, force: bool) -> Result<(), StoreError> {
        catalog::delete_product(self, code, force)
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

    fn delete_media(&self, code: &str, force: bool) -> Result<(), StoreError> {
        catalog::delete_media(self, code, force)
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

    fn unlink(&self, product: &str, content: &str, force: bool) -> Result<(), StoreError> {
        catalog::unlink(self, product, content, force)
    }

    fn unlink_buyers(&self, product: &str, content: &str) -> Result<u64, StoreError> {
        catalog::unlink_buyers(self, product, content)
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

    fn record_sale(
        &self,
        purchase: &Purchase,
        key: Option<(&str, &str)>,
        events: &[NewDelivery],
        within: &[String],
    ) -> Result<KeyedSale, StoreError> {
        self.record(purchase, key, events, within)
    }

    fn sale_key(&self, key: &str) -> Result<Option<SaleKey>, StoreError> {
        let key = key.to_owned();
        self.run(
            "sale_key",
            move |c| async move { sale_key_in(&c, &key).await },
        )
    }

    fn replace_purchase(
        &self,
        before: &Purchase,
        after: &Purchase,
        events: &[NewDelivery],
    ) -> Result<(), StoreError> {
        self.replace(before, after, events)
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

    fn record_first_play(
        &self,
        hash: &str,
        now: u64,
        events: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        self.first_play(hash, now, events)
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
        self.all_sale_keys()
    }

    fn put_sale_key(&self, key: &str, sale: &SaleKey) -> Result<(), StoreError> {
        self.insert_sale_key(key, sale)
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
        self.bindings(purchase)
    }

    fn unbind_device(&self, purchase: &str, device: &str) -> Result<(), StoreError> {
        self.unbind(purchase, device)
    }

    fn rebind_device(
        &self,
        purchase: &str,
        from: &str,
        to: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.rebind(purchase, from, to, now)
    }

    fn contacts(&self) -> Result<Contacts, StoreError> {
        Ok(self
            .json_rows::<Contacts>(
                "contacts",
                "SELECT data FROM contacts WHERE id = 1",
                args![],
            )?
            .into_iter()
            .next()
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
