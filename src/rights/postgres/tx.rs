//! A write's transaction: its own, or, on an import's store ([`PostgresStore::importing`]),
//! a savepoint inside the import's one transaction, so that the write's commit ends the
//! write and not the import (a `BEGIN` inside a transaction is ignored by the server, and
//! its `COMMIT` would commit the whole import so far).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{pg, PostgresStore};
use crate::config::PostgresConfig;
use crate::metrics::StoreMetrics;
use crate::rights::store::StoreError;

/// Statement arguments, borrowed.
type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// The savepoint a write takes inside an import's transaction.
const BEGIN_NESTED: &str = "SAVEPOINT usher_write";
/// Ends it, keeping what it wrote.
const COMMIT_NESTED: &str = "RELEASE SAVEPOINT usher_write";
/// Ends it, undoing what it wrote.
const ROLLBACK_NESTED: &str = "ROLLBACK TO SAVEPOINT usher_write; RELEASE SAVEPOINT usher_write";

/// What an import's store knows of its one transaction.
#[derive(Clone, Default)]
pub(super) struct Import {
    /// A write's savepoint was dropped unended (its `?` returned early): it is rolled back
    /// before anything else runs on the connection ([`Import::settle`]), as a write's own
    /// transaction is when it is dropped.
    left_open: Arc<AtomicBool>,
}

impl Import {
    /// Rolls back the savepoint a write left open, if any.
    pub(super) async fn settle(&self, client: &tokio_postgres::Client) -> Result<(), StoreError> {
        if self.left_open.swap(false, Ordering::SeqCst) {
            client.batch_execute(ROLLBACK_NESTED).await.map_err(pg)?;
        }
        Ok(())
    }
}

/// A write's transaction (see the module).
pub(super) enum Tx<'a> {
    /// Its own.
    Own(deadpool_postgres::Transaction<'a>),
    /// A savepoint in an import's transaction.
    Nested(Savepoint<'a>),
}

/// A write's savepoint in an import's transaction.
pub(super) struct Savepoint<'a> {
    client: &'a tokio_postgres::Client,
    import: Import,
    ended: bool,
}

impl Savepoint<'_> {
    async fn end(mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.ended = true;
        self.client.batch_execute(sql).await
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        // An own transaction rolls itself back when dropped; a savepoint cannot send
        // anything from here, so the next operation on the connection rolls it back.
        if !self.ended {
            self.import.left_open.store(true, Ordering::SeqCst);
        }
    }
}

impl<'a> Tx<'a> {
    /// Begins a write's transaction on `c`, nested when `import` is the import's.
    pub(super) async fn begin(
        c: &'a mut Object,
        import: Option<Import>,
    ) -> Result<Tx<'a>, StoreError> {
        match import {
            None => Ok(Tx::Own(c.transaction().await.map_err(pg)?)),
            Some(import) => {
                let client: &tokio_postgres::Client = c;
                client.batch_execute(BEGIN_NESTED).await.map_err(pg)?;
                Ok(Tx::Nested(Savepoint {
                    client,
                    import,
                    ended: false,
                }))
            }
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub(super) async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        match self {
            Tx::Own(tx) => tx.execute(sql, params).await,
            Tx::Nested(s) => s.client.execute(sql, params).await,
        }
    }

    /// The row of a query that returns at most one.
    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        match self {
            Tx::Own(tx) => tx.query_opt(sql, params).await,
            Tx::Nested(s) => s.client.query_opt(sql, params).await,
        }
    }

    /// The row of a query that returns exactly one.
    pub(super) async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        match self {
            Tx::Own(tx) => tx.query_one(sql, params).await,
            Tx::Nested(s) => s.client.query_one(sql, params).await,
        }
    }

    /// Ends the write, keeping what it wrote.
    pub(super) async fn commit(self) -> Result<(), tokio_postgres::Error> {
        match self {
            Tx::Own(tx) => tx.commit().await,
            Tx::Nested(s) => s.end(COMMIT_NESTED).await,
        }
    }

    /// Ends the write, undoing what it wrote.
    pub(super) async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        match self {
            Tx::Own(tx) => tx.rollback().await,
            Tx::Nested(s) => s.end(ROLLBACK_NESTED).await,
        }
    }
}

impl PostgresStore {
    /// A store that writes in one transaction on one connection, committed only by
    /// [`PostgresStore::commit_import`] (`usher store import`): until then no other
    /// connection sees what it wrote (a node cannot serve a purchase, nor deliver a
    /// webhook, that a failing import then takes back), and if the import fails, its
    /// process dies or its connection breaks, the server rolls it all back. Each write's
    /// own transaction is a savepoint in it. A second connection is refused (it would
    /// write outside the transaction). The schema is brought up to date first, on a
    /// connection of its own.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and when the transaction cannot be begun.
    pub fn importing(config: &PostgresConfig, metrics: StoreMetrics) -> Result<Self, StoreError> {
        drop(Self::connect(config, metrics.clone())?);
        let mut store = Self::open(config, metrics, super::client::Connections::Import)?;
        store.import = Some(Import::default());
        store.run("import_begin", |c| async move {
            c.query_one("SELECT 1", &[]).await.map_err(pg).map(drop)
        })?;
        Ok(store)
    }

    /// Commits what an import's store wrote ([`PostgresStore::importing`]).
    ///
    /// # Errors
    /// When the commit fails, or its answer is lost ([`StoreError::Unknown`]: read the
    /// target to know); or on a store that is not an import's.
    pub fn commit_import(self) -> Result<(), StoreError> {
        if self.import.is_none() {
            return Err(StoreError::Backend("not an import's store".into()));
        }
        self.run("import_commit", |c| async move {
            // A transaction that failed would answer COMMIT with a rollback, not an
            // error: the statement before it fails instead, and COMMIT is not sent.
            c.batch_execute("SELECT 1; COMMIT").await.map_err(pg)
        })
    }
}
