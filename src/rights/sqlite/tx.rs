//! A write's transaction: its own, or, on an import's store ([`SqliteStore::importing`]),
//! a savepoint inside the import's one transaction, so that the write's commit ends the
//! write and not the import (SQLite refuses a `BEGIN` inside a transaction).

use std::path::Path;

use rusqlite::{Connection, Savepoint, Transaction, TransactionBehavior};

use super::{backend, SqliteStore};
use crate::rights::store::StoreError;

/// A write's transaction (see the module); rolled back when dropped uncommitted.
pub(super) enum Tx<'c> {
    /// Its own.
    Own(Transaction<'c>),
    /// A savepoint in the transaction the connection is in.
    Nested(Savepoint<'c>),
}

/// Begins a write's transaction on `conn` (with `behavior` when it is its own).
pub(super) fn begin(
    conn: &mut Connection,
    behavior: TransactionBehavior,
) -> Result<Tx<'_>, StoreError> {
    if conn.is_autocommit() {
        conn.transaction_with_behavior(behavior).map(Tx::Own)
    } else {
        conn.savepoint().map(Tx::Nested)
    }
    .map_err(backend)
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Tx::Own(tx) => tx,
            Tx::Nested(savepoint) => savepoint,
        }
    }
}

impl Tx<'_> {
    /// Ends the write, keeping what it wrote.
    pub(super) fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Own(tx) => tx.commit(),
            Tx::Nested(savepoint) => savepoint.commit(),
        }
        .map_err(backend)
    }
}

impl SqliteStore {
    /// Opens the database in `dir` as [`SqliteStore::open`] does, and begins one
    /// transaction (`BEGIN IMMEDIATE`: the write lock, taken now) that every write goes
    /// into, each write's own transaction a savepoint in it, until
    /// [`SqliteStore::commit_import`] (`usher store import`). An import that fails, a
    /// store dropped before, or a process killed leaves nothing of it in the file.
    ///
    /// # Errors
    /// As [`SqliteStore::open`], and when the transaction cannot be begun.
    pub fn importing(dir: &Path) -> Result<Self, StoreError> {
        let store = Self::open(dir)?;
        store
            .conn()
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(backend)?;
        Ok(store)
    }

    /// Commits what an import's store wrote ([`SqliteStore::importing`]).
    ///
    /// # Errors
    /// When the commit fails (nothing is kept), or on a store not in a transaction.
    pub fn commit_import(self) -> Result<(), StoreError> {
        self.conn().execute_batch("COMMIT").map_err(backend)
    }
}
