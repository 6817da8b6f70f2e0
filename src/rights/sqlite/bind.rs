//! Binding a device to a purchase under its activation limit, in one transaction.

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, conflict_or, tx, SqliteStore};
use crate::rights::store::{Bind, StoreError};

impl SqliteStore {
    /// Binds a device, with the operator's id when it added the device (see
    /// [`crate::rights::store::Store::add_device`]).
    pub(super) fn bind(
        &self,
        purchase: &str,
        device: &str,
        id: Option<&str>,
        limit: Option<u32>,
        now: u64,
    ) -> Result<Bind, StoreError> {
        let mut conn = self.conn();
        // The common case, a device coming back, is a read; only a new device takes the
        // write lock (and checks again inside it).
        if id.is_none() && is_bound(&conn, purchase, device)? {
            return Ok(Bind::Known);
        }
        let tx = tx::begin(&mut conn, rusqlite::TransactionBehavior::Immediate)?;
        if is_bound(&tx, purchase, device)? {
            if let Some(id) = id {
                tx.execute(
                    "UPDATE device_bindings SET id = ?3 WHERE purchase = ?1 AND device = ?2",
                    params![purchase, device, id],
                )
                .map_err(backend)?;
                tx.commit()?;
            }
            return Ok(Bind::Known);
        }
        let used: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM device_bindings WHERE purchase = ?1",
                [purchase],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if limit.is_some_and(|l| used >= i64::from(l)) {
            return Ok(Bind::LimitReached);
        }
        tx.execute(
            "INSERT INTO device_bindings (purchase, device, bound_at, id) VALUES (?1, ?2, ?3, ?4)",
            params![purchase, device, now as i64, id],
        )
        .map_err(|e| conflict_or(e, &format!("purchase {purchase}")))
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::NotFound(format!("purchase {purchase}")),
            other => other,
        })?;
        tx.commit()?;
        Ok(Bind::Bound)
    }
}

fn is_bound(conn: &Connection, purchase: &str, device: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT 1 FROM device_bindings WHERE purchase = ?1 AND device = ?2",
        [purchase, device],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
    .map_err(backend)
}
