//! The embedded store: one SQLite file in WAL mode.
//!
//! Why SQLite: a single file created on first start, transactions that make every
//! multi-row write whole or absent, and a write-ahead log synced on every commit
//! (`synchronous=FULL`), so a write that returned is on disk before usher answers 2xx and
//! survives `kill -9` and power loss alike. Readers do not block the writer in WAL mode.
//! Entities are stored as JSON next to the columns that are queried, so a field added to
//! the model needs no migration; migrations are for new tables and indexes.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::{Account, Binding, Contacts, Media, Product, Purchase};
use super::store::{
    AuditEntry, AuditFilter, Bind, KeyedSale, NewDelivery, Page, PurchaseFilter, SaleKey, Store,
    StoreError,
};

mod audit;
mod bind;
mod migrations;
mod sales;
mod tx;
mod webhooks;

use migrations::MIGRATIONS;

/// The SQLite store. One connection behind a mutex: writes are serialised anyway, and the
/// hot path reads through the decision cache, not from here.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(backend)
}

fn status_text(purchase: &Purchase) -> &'static str {
    status_name(purchase.status)
}

fn status_name(status: super::model::PurchaseStatus) -> &'static str {
    match status {
        super::model::PurchaseStatus::Active => "active",
        super::model::PurchaseStatus::Revoked => "revoked",
    }
}

/// The `WHERE` of a purchase listing: `?1`–`?5` are a [`PurchaseFilter`]'s fields.
const PURCHASE_FILTER: &str = "WHERE (?1 IS NULL OR product = ?1) AND (?2 IS NULL OR media = ?2)
    AND (?3 IS NULL OR email = ?3 COLLATE NOCASE) AND (?4 IS NULL OR account = ?4)
    AND (?5 IS NULL OR status = ?5)";

fn conflict_or(e: rusqlite::Error, what: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(what.to_owned())
        }
        other => backend(other),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `usher.db` in `dir`, and brings its schema up to date.
    ///
    /// # Errors
    /// When the directory or the file cannot be created or read, or a migration fails.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        crate::data_dir::create(dir).map_err(|e| backend(format!("{}: {e}", dir.display())))?;
        let path = dir.join("usher.db");
        let conn =
            Connection::open(&path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        let store = Self {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    /// A copy of the database as it stands now, made in `dir` (`VACUUM INTO`: one read
    /// transaction, so writers that go on meanwhile change nothing in it), and opened.
    ///
    /// # Errors
    /// When `dir` cannot be made or written, or the copy cannot be opened.
    pub fn snapshot_into(&self, dir: &Path) -> Result<SqliteStore, StoreError> {
        crate::data_dir::create(dir).map_err(|e| backend(format!("{}: {e}", dir.display())))?;
        let path = dir.join("usher.db");
        let text = path
            .to_str()
            .ok_or_else(|| backend(format!("{}: not UTF-8", path.display())))?;
        self.conn()
            .execute("VACUUM INTO ?1", [text])
            .map_err(|e| backend(format!("copying into {text}: {e}")))?;
        Self::open(dir)
    }

    /// The schema version (number of migrations applied).
    ///
    /// # Errors
    /// On a backend failure.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let conn = self.conn();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend)?;
        Ok(version as usize)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let applied = self.schema_version()?;
        if applied > MIGRATIONS.len() {
            return Err(StoreError::Backend(format!(
                "database schema version {applied} is newer than this usher knows ({})",
                MIGRATIONS.len()
            )));
        }
        let mut conn = self.conn();
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute_batch(sql).map_err(backend)?;
            tx.pragma_update(None, "user_version", (n + 1) as i64)
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        Ok(())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (SQLite
        // rolls back an unfinished one), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn one<T: DeserializeOwned>(&self, sql: &str, key: &str) -> Result<Option<T>, StoreError> {
        let conn = self.conn();
        let data: Option<String> = conn
            .query_row(sql, [key], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        data.map(|d| from_json(&d)).transpose()
    }

    fn many<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let rows = stmt
            .query_map(params, |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.map(|row| from_json(&row.map_err(backend)?)).collect()
    }

    fn count(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row(sql, params, |r| r.get(0))
            .map_err(backend)?;
        Ok(n as u64)
    }

    fn changed(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        what: &str,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(sql, params).map_err(backend)?;
        if n == 0 {
            Err(StoreError::NotFound(what.to_owned()))
        } else {
            Ok(())
        }
    }
}

impl Store for SqliteStore {
    fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO products (code, created_at, data) VALUES (?1, ?2, ?3)",
                params![product.code, product.created_at as i64, to_json(product)?],
            )
            .map_err(|e| conflict_or(e, &format!("product {}", product.code)))?;
        Ok(())
    }

    fn update_product(&self, product: &Product) -> Result<(), StoreError> {
        self.changed(
            "UPDATE products SET data = ?2 WHERE code = ?1",
            &[&product.code, &to_json(product)?],
            &format!("product {}", product.code),
        )
    }

    fn product(&self, code: &str) -> Result<Option<Product>, StoreError> {
        self.one("SELECT data FROM products WHERE code = ?1", code)
    }

    fn products(&self, page: Page) -> Result<Vec<Product>, StoreError> {
        self.many(
            "SELECT data FROM products ORDER BY created_at, rowid LIMIT ?1 OFFSET ?2",
            &[&page.limit, &page.offset],
        )
    }

    fn products_holding(&self, content: &str, editorial: &str) -> Result<Vec<Product>, StoreError> {
        self.many(
            "SELECT data FROM products WHERE code IN \
             (SELECT product FROM product_media WHERE content IN (?1, ?2)) \
             ORDER BY created_at, rowid",
            &[&content, &editorial],
        )
    }

    fn product_count(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) FROM products", &[])
    }

    fn delete_product(&self, code: &str, force: bool) -> Result<(), StoreError> {
        sales::delete_product(&mut self.conn(), code, force)
    }

    fn create_media(&self, media: &Media) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO media (code, prefix, editorial, created_at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    media.code,
                    media.prefix,
                    media.editorial,
                    media.created_at as i64,
                    to_json(media)?
                ],
            )
            .map_err(|e| conflict_or(e, &format!("media {} or prefix {}", media.code, media.prefix)))?;
        Ok(())
    }

    fn media(&self, code: &str) -> Result<Option<Media>, StoreError> {
        self.one("SELECT data FROM media WHERE code = ?1", code)
    }

    fn all_media(&self) -> Result<Vec<Media>, StoreError> {
        self.many("SELECT data FROM media ORDER BY created_at, rowid", &[])
    }

    fn delete_media(&self, code: &str, force: bool) -> Result<(), StoreError> {
        sales::delete_media(&mut self.conn(), code, force)
    }

    fn update_media(&self, media: &Media) -> Result<(), StoreError> {
        let what = format!("media {}", media.code);
        let n = self
            .conn()
            .execute(
                "UPDATE media SET prefix = ?2, editorial = ?3, data = ?4 WHERE code = ?1",
                params![media.code, media.prefix, media.editorial, to_json(media)?],
            )
            .map_err(|e| conflict_or(e, &format!("prefix {}", media.prefix)))?;
        if n == 0 {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    fn link(&self, product: &str, content: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO product_media (product, content)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM products WHERE code = ?1)",
                params![product, content],
            )
            .map_err(backend)?;
        if n == 0 && self.product(product)?.is_none() {
            return Err(StoreError::NotFound(format!("product {product}")));
        }
        Ok(())
    }

    fn unlink(&self, product: &str, content: &str, force: bool) -> Result<(), StoreError> {
        sales::unlink(&mut self.conn(), product, content, force)
    }

    fn unlink_buyers(&self, product: &str, content: &str) -> Result<u64, StoreError> {
        sales::unlink_buyers(&self.conn(), product, content)
    }

    fn linked(&self, product: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT content FROM product_media WHERE product = ?1 ORDER BY rowid")
            .map_err(backend)?;
        let rows = stmt.query_map([product], |r| r.get(0)).map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn record_sale(
        &self,
        purchase: &Purchase,
        key: Option<(&str, &str)>,
        events: &[NewDelivery],
        within: &[String],
    ) -> Result<KeyedSale, StoreError> {
        sales::record(&mut self.conn(), purchase, key, events, within)
    }

    fn sale_key(&self, key: &str) -> Result<Option<SaleKey>, StoreError> {
        sales::sale_key(&self.conn(), key)
    }

    fn replace_purchase(
        &self,
        before: &Purchase,
        after: &Purchase,
        events: &[NewDelivery],
    ) -> Result<(), StoreError> {
        sales::replace(&mut self.conn(), before, after, events)
    }

    fn purchase(&self, hash: &str) -> Result<Option<Purchase>, StoreError> {
        self.one("SELECT data FROM purchases WHERE hash = ?1", hash)
    }

    fn purchases(&self, filter: &PurchaseFilter, page: Page) -> Result<Vec<Purchase>, StoreError> {
        let status = filter.status.map(|s| match s {
            super::model::PurchaseStatus::Active => "active",
            super::model::PurchaseStatus::Revoked => "revoked",
        });
        self.many(
            "SELECT data FROM purchases
             WHERE (?1 IS NULL OR product = ?1) AND (?2 IS NULL OR media = ?2)
               AND (?3 IS NULL OR email = ?3 COLLATE NOCASE) AND (?4 IS NULL OR account = ?4)
               AND (?5 IS NULL OR status = ?5)
             ORDER BY purchased_at, rowid LIMIT ?6 OFFSET ?7",
            &[
                &filter.product,
                &filter.media,
                &filter.email,
                &filter.account,
                &status,
                &page.limit,
                &page.offset,
            ],
        )
    }

    fn purchase_count(&self, filter: &PurchaseFilter) -> Result<u64, StoreError> {
        let status = filter.status.map(status_name);
        self.count(
            &format!("SELECT COUNT(*) FROM purchases {PURCHASE_FILTER}"),
            &[
                &filter.product,
                &filter.media,
                &filter.email,
                &filter.account,
                &status,
            ],
        )
    }

    fn record_first_play(
        &self,
        hash: &str,
        now: u64,
        events: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        sales::first_play(&mut self.conn(), hash, now, events)
    }

    fn delete_purchase(&self, hash: &str) -> Result<(), StoreError> {
        self.changed(
            "DELETE FROM purchases WHERE hash = ?1",
            &[&hash],
            &format!("purchase {hash}"),
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
        // One statement per chain length (nesting is shallow), each cached once prepared.
        let marks = vec!["?"; contents.len()].join(", ");
        let sql = format!(
            "SELECT DISTINCT pu.data, pr.data FROM purchases pu
             JOIN products pr ON pr.code = pu.product
             JOIN product_media pm ON pm.product = pu.product
             WHERE pu.account = ? AND pm.content IN ({marks})"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        let args = std::iter::once(account).chain(contents.iter().map(String::as_str));
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(backend)?;
        rows.map(|row| {
            let (purchase, product) = row.map_err(backend)?;
            Ok((from_json(&purchase)?, from_json(&product)?))
        })
        .collect()
    }

    fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT enabled, max_sessions, max_devices FROM accounts WHERE id = ?1",
            [id],
            |r| {
                Ok(Account {
                    id: id.to_owned(),
                    enabled: r.get::<_, i64>(0)? != 0,
                    max_sessions: r.get(1)?,
                    max_devices: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(backend)
    }

    fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO accounts (id, enabled, max_sessions, max_devices) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled,
                   max_sessions = excluded.max_sessions, max_devices = excluded.max_devices",
                params![account.id, account.enabled, account.max_sessions, account.max_devices],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, enabled, max_sessions, max_devices FROM accounts ORDER BY id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Account {
                    id: r.get(0)?,
                    enabled: r.get::<_, i64>(1)? != 0,
                    max_sessions: r.get(2)?,
                    max_devices: r.get(3)?,
                })
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn sale_keys(&self) -> Result<Vec<(String, SaleKey)>, StoreError> {
        sales::all_keys(&self.conn())
    }

    fn put_sale_key(&self, key: &str, sale: &SaleKey) -> Result<(), StoreError> {
        sales::put_key(&self.conn(), key, sale)
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
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT device, bound_at, id FROM device_bindings WHERE purchase = ?1 ORDER BY bound_at, rowid",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([purchase], |r| {
                Ok(Binding {
                    device: r.get(0)?,
                    id: r.get(2)?,
                    bound_at: r.get::<_, i64>(1)? as u64,
                })
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn unbind_device(&self, purchase: &str, device: &str) -> Result<(), StoreError> {
        self.changed(
            "DELETE FROM device_bindings WHERE purchase = ?1 AND device = ?2",
            &[&purchase, &device],
            &format!("device {device} on purchase {purchase}"),
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
            "UPDATE device_bindings SET device = ?3, bound_at = ?4 WHERE purchase = ?1 AND device = ?2",
            &[&purchase, &from, &to, &(now as i64)],
            &format!("device {from} on purchase {purchase}"),
        )
    }

    fn contacts(&self) -> Result<Contacts, StoreError> {
        Ok(self
            .one::<Contacts>("SELECT data FROM contacts WHERE id = ?1", "1")?
            .unwrap_or_default())
    }

    fn put_contacts(&self, contacts: &Contacts) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO contacts (id, data) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                [to_json(contacts)?],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit::append(&self.conn(), entry)
    }

    fn audit(
        &self,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        audit::list(&self.conn(), filter, page)
    }
}
