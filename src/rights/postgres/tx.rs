//! A write's transaction: its own, or, on an import's store ([`PostgresStore::importing`]),
//! the import's one transaction, which the write neither begins nor ends (a `BEGIN` inside
//! a transaction is ignored by the server, and its `COMMIT` would commit the whole import
//! so far).
//!
//! Inside an import a write takes no savepoint. Each savepoint that writes is a
//! subtransaction with an id of its own, and a transaction holding more than 64 of them
//! ("suboverflowed") sends every other session's visibility checks on that server to
//! `pg_subtrans` for as long as it lasts: an import of many records would slow every
//! application using the server. None is needed: an import is all or nothing, stopped by
//! the first write that fails and then rolled back whole. A write that returns without
//! committing has either failed (so the import stops; after a failed statement the server
//! refuses everything, `COMMIT` included) or written nothing (reads, row locks, an update
//! of no row), so there is nothing for a savepoint to undo. The one write that undoes
//! what it wrote and goes on, a keyed sale whose key another sale took, fails inside an
//! import instead ([`Tx::rollback`]); an import writes its sales and their keys apart.

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{pg, PostgresStore};
use crate::config::PostgresConfig;
use crate::metrics::StoreMetrics;
use crate::rights::store::StoreError;

/// Statement arguments, borrowed.
type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// A write's transaction (see the module).
pub(super) enum Tx<'a> {
    /// Its own.
    Own(deadpool_postgres::Transaction<'a>),
    /// The import's, on its one connection.
    Import(&'a tokio_postgres::Client),
}

impl<'a> Tx<'a> {
    /// Begins a write's transaction on `c`, or joins the import's when `import`.
    pub(super) async fn begin(c: &'a mut Object, import: bool) -> Result<Tx<'a>, StoreError> {
        if import {
            let client: &tokio_postgres::Client = c;
            return Ok(Tx::Import(client));
        }
        // Read committed whatever the server's default: the buyer counts and a sale's
        // link check read, after waiting for a lock, what the writer they waited for
        // committed; under repeatable read they would read the snapshot from before.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(pg)?;
        Ok(Tx::Own(tx))
    }

    /// Runs a statement; the number of rows it changed.
    pub(super) async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        match self {
            Tx::Own(tx) => tx.execute(sql, params).await,
            Tx::Import(client) => client.execute(sql, params).await,
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
            Tx::Import(client) => client.query_opt(sql, params).await,
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
            Tx::Import(client) => client.query_one(sql, params).await,
        }
    }

    /// Ends the write, keeping what it wrote (inside an import: until the import commits).
    pub(super) async fn commit(self) -> Result<(), tokio_postgres::Error> {
        match self {
            Tx::Own(tx) => tx.commit().await,
            Tx::Import(_) => Ok(()),
        }
    }

    /// Ends the write, undoing what it wrote.
    ///
    /// # Errors
    /// On a backend failure; and always inside an import, which cannot undo one write
    /// alone (see the module): the write fails, so the import stops and keeps nothing.
    pub(super) async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Own(tx) => tx.rollback().await.map_err(pg),
            Tx::Import(_) => Err(StoreError::Backend(
                "a write inside an import cannot undo itself alone; the import stops".into(),
            )),
        }
    }
}

impl PostgresStore {
    /// A store that writes in one transaction on one connection, committed only by
    /// [`PostgresStore::commit_import`] (`usher store import`): until then no other
    /// connection sees what it wrote (a node cannot serve a purchase, nor deliver a
    /// webhook, that a failing import then takes back), and if the import fails, its
    /// process dies or its connection breaks, the server rolls it all back. Its writes go
    /// straight into that transaction, without savepoints (see the module). A second
    /// connection is refused (it would write outside the transaction). The schema is
    /// brought up to date first, on a connection of its own.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and when the transaction cannot be begun.
    pub fn importing(config: &PostgresConfig, metrics: StoreMetrics) -> Result<Self, StoreError> {
        drop(Self::connect(config, metrics.clone())?);
        let mut store = Self::open(config, metrics, super::client::Connections::Import)?;
        store.import = true;
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
        if !self.import {
            return Err(StoreError::Backend("not an import's store".into()));
        }
        self.run("import_commit", |c| async move {
            // A transaction that failed would answer COMMIT with a rollback, not an
            // error: the statement before it fails instead, and COMMIT is not sent.
            c.batch_execute("SELECT 1; COMMIT").await.map_err(pg)
        })
    }
}
