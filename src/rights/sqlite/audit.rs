//! The audit table: appended by every admin write, read by `GET /api/v1/audit`.

use rusqlite::{params, Connection};

use super::{backend, from_json, to_json};
use crate::rights::store::{AuditEntry, AuditFilter, Page, StoreError};

/// The `WHERE` of a listing: `?1`–`?4` are an [`AuditFilter`]'s fields.
const FILTER: &str = "WHERE (?1 IS NULL OR purchase = ?1) AND (?2 IS NULL OR account = ?2)
    AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR at >= ?4)";

/// Appends `entry` (its `id` is the table's).
pub(super) fn append(conn: &Connection, entry: &AuditEntry) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit (at, actor, interface, action, target_kind, target, purchase, account, changes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            entry.at as i64,
            entry.actor,
            entry.interface,
            entry.action,
            entry.target_kind,
            entry.target,
            entry.purchase,
            entry.account,
            to_json(&entry.changes)?,
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// A page of the entries matching `filter`, oldest first, and how many match.
pub(super) fn list(
    conn: &Connection,
    filter: &AuditFilter,
    page: Page,
) -> Result<(Vec<AuditEntry>, u64), StoreError> {
    let since = filter.since.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    let total: i64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM audit {FILTER}"),
            params![filter.purchase, filter.account, filter.action, since],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT id, at, actor, interface, action, target_kind, target, purchase, account, changes
             FROM audit {FILTER} ORDER BY id LIMIT ?5 OFFSET ?6"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![
                filter.purchase,
                filter.account,
                filter.action,
                since,
                page.limit,
                page.offset
            ],
            |r| {
                Ok((
                    AuditEntry {
                        id: r.get::<_, i64>(0)? as u64,
                        at: r.get::<_, i64>(1)? as u64,
                        actor: r.get(2)?,
                        interface: r.get(3)?,
                        action: r.get(4)?,
                        target_kind: r.get(5)?,
                        target: r.get(6)?,
                        purchase: r.get(7)?,
                        account: r.get(8)?,
                        changes: serde_json::Value::Null,
                    },
                    r.get::<_, String>(9)?,
                ))
            },
        )
        .map_err(backend)?;
    let entries = rows
        .map(|row| {
            let (mut entry, changes) = row.map_err(backend)?;
            entry.changes = from_json(&changes)?;
            Ok(entry)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((entries, total as u64))
}
