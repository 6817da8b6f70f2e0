//! The webhook queue in the embedded store: one row per delivery, removed once delivered
//! or given up.

use rusqlite::params;

use super::{backend, tx, SqliteStore};
use crate::rights::store::{Backlog, NewDelivery, QueuedDelivery, StoreError, WebhookQueue};

/// A delivery from a row of `id, endpoint, event, event_id, body, attempts, next_attempt`.
fn queued(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedDelivery> {
    Ok(QueuedDelivery {
        id: r.get(0)?,
        delivery: NewDelivery {
            endpoint: r.get(1)?,
            event: r.get(2)?,
            event_id: r.get(3)?,
            body: r.get(4)?,
            due: r.get::<_, i64>(6)? as u64,
        },
        attempts: r.get(5)?,
    })
}

/// Queues `deliveries` inside `tx` (the queue's limit is applied by the next
/// [`WebhookQueue::enqueue_webhooks`]).
pub(super) fn insert(
    tx: &rusqlite::Connection,
    deliveries: &[NewDelivery],
) -> Result<(), StoreError> {
    for d in deliveries {
        tx.execute(
            "INSERT INTO webhook_queue (endpoint, event, event_id, body, next_attempt)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![d.endpoint, d.event, d.event_id, d.body, d.due as i64],
        )
        .map_err(backend)?;
    }
    Ok(())
}

impl WebhookQueue for SqliteStore {
    fn enqueue_webhooks(&self, deliveries: &[NewDelivery], limit: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = tx::begin(&mut conn, rusqlite::TransactionBehavior::Deferred)?;
        insert(&tx, deliveries)?;
        let depth: i64 = tx
            .query_row("SELECT COUNT(*) FROM webhook_queue", [], |r| r.get(0))
            .map_err(backend)?;
        let excess = (depth as u64).saturating_sub(limit);
        if excess > 0 {
            tx.execute(
                "DELETE FROM webhook_queue WHERE id IN
                 (SELECT id FROM webhook_queue ORDER BY id LIMIT ?1)",
                [excess as i64],
            )
            .map_err(backend)?;
        }
        tx.commit()?;
        Ok(excess)
    }

    fn claim_webhooks(
        &self,
        endpoint: &str,
        now: u64,
        lease: u64,
        max: u32,
    ) -> Result<Vec<QueuedDelivery>, StoreError> {
        let mut conn = self.conn();
        let tx = tx::begin(&mut conn, rusqlite::TransactionBehavior::Deferred)?;
        let claimed = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, endpoint, event, event_id, body, attempts, next_attempt
                     FROM webhook_queue WHERE endpoint = ?3 AND next_attempt <= ?1
                     ORDER BY next_attempt, id LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![now as i64, max, endpoint], queued)
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)?
        };
        for q in &claimed {
            tx.execute(
                "UPDATE webhook_queue SET next_attempt = ?2 WHERE id = ?1",
                params![q.id, now.saturating_add(lease) as i64],
            )
            .map_err(backend)?;
        }
        tx.commit()?;
        Ok(claimed)
    }

    fn webhook_done(&self, id: i64) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM webhook_queue WHERE id = ?1", [id])
            .map_err(backend)?;
        Ok(())
    }

    fn webhook_failed(&self, id: i64, next_attempt: u64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE webhook_queue SET attempts = attempts + 1, next_attempt = ?2
                 WHERE id = ?1",
                params![id, next_attempt as i64],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn pending_webhooks(&self) -> Result<Vec<QueuedDelivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, endpoint, event, event_id, body, attempts, next_attempt
                 FROM webhook_queue ORDER BY id",
            )
            .map_err(backend)?;
        let rows = stmt.query_map([], queued).map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn webhook_queue_depth(&self) -> Result<u64, StoreError> {
        let depth: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM webhook_queue", [], |r| r.get(0))
            .map_err(backend)?;
        Ok(depth as u64)
    }

    fn webhook_backlog(&self, now: u64) -> Result<Vec<Backlog>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT endpoint, COUNT(*), SUM(next_attempt <= ?1) FROM webhook_queue
                 GROUP BY endpoint ORDER BY endpoint",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([now as i64], |r| {
                Ok(Backlog {
                    endpoint: r.get(0)?,
                    waiting: r.get::<_, i64>(1)? as u64,
                    due: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }
}
