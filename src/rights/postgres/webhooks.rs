//! The webhook queue in PostgreSQL. Nodes claim deliveries with `FOR UPDATE SKIP LOCKED`,
//! so two nodes never lease the same delivery at once.

use super::tx::Tx;
use super::{pg, PostgresStore};
use crate::rights::store::{Backlog, NewDelivery, QueuedDelivery, StoreError, WebhookQueue};

/// A delivery from a row of `id, endpoint, event, event_id, body, attempts, due`.
fn queued(r: &tokio_postgres::Row) -> QueuedDelivery {
    QueuedDelivery {
        id: r.get(0),
        delivery: NewDelivery {
            endpoint: r.get(1),
            event: r.get(2),
            event_id: r.get(3),
            body: r.get(4),
            due: r.get::<_, i64>(6) as u64,
        },
        attempts: r.get::<_, i32>(5) as u32,
    }
}

/// Queues `deliveries` inside `tx` (the queue's limit is applied by the next
/// [`WebhookQueue::enqueue_webhooks`]).
pub(super) async fn insert(tx: &Tx<'_>, deliveries: &[NewDelivery]) -> Result<(), StoreError> {
    for d in deliveries {
        tx.execute(
            "INSERT INTO webhook_queue (endpoint, event, event_id, body, next_attempt)
             VALUES ($1, $2, $3, $4, $5)",
            &[&d.endpoint, &d.event, &d.event_id, &d.body, &(d.due as i64)],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

impl WebhookQueue for PostgresStore {
    fn enqueue_webhooks(&self, deliveries: &[NewDelivery], limit: u64) -> Result<u64, StoreError> {
        let deliveries = deliveries.to_vec();
        let import = self.import;
        self.run("enqueue_webhooks", move |mut c| async move {
            let tx = Tx::begin(&mut c, import).await?;
            insert(&tx, &deliveries).await?;
            let depth: i64 = tx
                .query_one("SELECT COUNT(*) FROM webhook_queue", &[])
                .await
                .map_err(pg)?
                .get(0);
            let excess = (depth as u64).saturating_sub(limit);
            if excess > 0 {
                tx.execute(
                    "DELETE FROM webhook_queue WHERE id IN
                     (SELECT id FROM webhook_queue ORDER BY id LIMIT $1)",
                    &[&(excess as i64)],
                )
                .await
                .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(excess)
        })
    }

    fn claim_webhooks(
        &self,
        endpoint: &str,
        now: u64,
        lease: u64,
        max: u32,
    ) -> Result<Vec<QueuedDelivery>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.run("claim_webhooks", move |c| async move {
            let rows = c
                .query(
                    "WITH due AS (
                        SELECT id, next_attempt FROM webhook_queue
                        WHERE endpoint = $4 AND next_attempt <= $1
                        ORDER BY next_attempt, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     UPDATE webhook_queue q SET next_attempt = $2 FROM due WHERE q.id = due.id
                     RETURNING q.id, q.endpoint, q.event, q.event_id, q.body, q.attempts,
                               due.next_attempt",
                    &[
                        &(now as i64),
                        &(now.saturating_add(lease) as i64),
                        &i64::from(max),
                        &endpoint,
                    ],
                )
                .await
                .map_err(pg)?;
            let mut claimed: Vec<QueuedDelivery> = rows.iter().map(queued).collect();
            claimed.sort_by_key(|q| (q.delivery.due, q.id));
            Ok(claimed)
        })
    }

    fn webhook_done(&self, id: i64) -> Result<(), StoreError> {
        self.run("webhook_done", move |c| async move {
            c.execute("DELETE FROM webhook_queue WHERE id = $1", &[&id])
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn webhook_failed(&self, id: i64, next_attempt: u64) -> Result<(), StoreError> {
        self.run("webhook_failed", move |c| async move {
            c.execute(
                "UPDATE webhook_queue SET attempts = attempts + 1, next_attempt = $2 WHERE id = $1",
                &[&id, &(next_attempt as i64)],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    fn pending_webhooks(&self) -> Result<Vec<QueuedDelivery>, StoreError> {
        self.run("pending_webhooks", |c| async move {
            let rows = c
                .query(
                    "SELECT id, endpoint, event, event_id, body, attempts, next_attempt
                     FROM webhook_queue ORDER BY id",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(queued).collect())
        })
    }

    fn webhook_queue_depth(&self) -> Result<u64, StoreError> {
        self.count(
            "webhook_queue_depth",
            "SELECT COUNT(*) FROM webhook_queue",
            args![],
        )
    }

    fn webhook_backlog(&self, now: u64) -> Result<Vec<Backlog>, StoreError> {
        self.run("webhook_backlog", move |c| async move {
            let rows = c
                .query(
                    "SELECT endpoint, COUNT(*), COUNT(*) FILTER (WHERE next_attempt <= $1)
                     FROM webhook_queue GROUP BY endpoint ORDER BY endpoint",
                    &[&(now as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| Backlog {
                    endpoint: r.get(0),
                    waiting: r.get::<_, i64>(1) as u64,
                    due: r.get::<_, i64>(2) as u64,
                })
                .collect())
        })
    }
}
