//! The audit table in PostgreSQL: appended by every admin write, read by
//! `GET /api/v1/audit`.

use super::{from_json, pg, refs, to_json, Args, PostgresStore};
use crate::rights::store::{AuditEntry, AuditFilter, Page, StoreError};

/// The `WHERE` of a listing: `$1`–`$4` are an [`AuditFilter`]'s fields.
macro_rules! filter {
    () => {
        "WHERE ($1::text IS NULL OR purchase = $1) AND ($2::text IS NULL OR account = $2)
           AND ($3::text IS NULL OR action = $3) AND ($4::bigint IS NULL OR at >= $4)"
    };
}

/// Appends `entry` (its `id` is the table's).
pub(super) fn append(store: &PostgresStore, entry: &AuditEntry) -> Result<(), StoreError> {
    let changes = to_json(&entry.changes)?;
    let e = entry.clone();
    store.run("append_audit", move |c| async move {
        c.execute(
            "INSERT INTO audit (at, actor, interface, action, target_kind, target, purchase, account, changes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &(e.at as i64),
                &e.actor,
                &e.interface,
                &e.action,
                &e.target_kind,
                &e.target,
                &e.purchase,
                &e.account,
                &changes,
            ],
        )
        .await
        .map_err(pg)?;
        Ok(())
    })
}

/// A page of the entries matching `filter`, oldest first, and how many match.
pub(super) fn list(
    store: &PostgresStore,
    filter: &AuditFilter,
    page: Page,
) -> Result<(Vec<AuditEntry>, u64), StoreError> {
    let args: Args = args![
        filter.purchase.clone(),
        filter.account.clone(),
        filter.action.clone(),
        filter.since.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        i64::from(page.limit),
        i64::from(page.offset),
    ];
    store.run("audit", move |c| async move {
        let all = refs(&args);
        let total: i64 = c
            .query_one(concat!("SELECT COUNT(*) FROM audit ", filter!()), &all[..4])
            .await
            .map_err(pg)?
            .get(0);
        let rows = c
            .query(
                concat!(
                    "SELECT id, at, actor, interface, action, target_kind, target, purchase,
                            account, changes FROM audit ",
                    filter!(),
                    " ORDER BY id LIMIT $5 OFFSET $6"
                ),
                &all,
            )
            .await
            .map_err(pg)?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.get::<_, i64>(0) as u64,
                    at: r.get::<_, i64>(1) as u64,
                    actor: r.get(2),
                    interface: r.get(3),
                    action: r.get(4),
                    target_kind: r.get(5),
                    target: r.get(6),
                    purchase: r.get(7),
                    account: r.get(8),
                    changes: from_json(r.get(9))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((entries, total as u64))
    })
}
