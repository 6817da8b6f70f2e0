//! Device bindings in PostgreSQL: activations under a purchase's limit, counted once
//! whichever nodes race for them.

use super::tx::Tx;
use super::{pg, PostgresStore};
use crate::rights::model::Binding;
use crate::rights::store::{Bind, StoreError};

impl PostgresStore {
    /// Binds a device under the activation limit: the purchase row is locked first, so
    /// binds of one purchase from every node take turns, and the count they see is the
    /// count they write against.
    pub(super) fn bind(
        &self,
        purchase: &str,
        device: &str,
        id: Option<&str>,
        limit: Option<u32>,
        now: u64,
    ) -> Result<Bind, StoreError> {
        let (purchase, device, id) = (
            purchase.to_owned(),
            device.to_owned(),
            id.map(str::to_owned),
        );
        let import = self.import;
        self.run("bind_device", move |mut c| async move {
            let known = "SELECT 1 FROM device_bindings WHERE purchase = $1 AND device = $2";
            // A device coming back is the common case: a read, no lock.
            if id.is_none()
                && c.query_opt(known, &[&purchase, &device])
                    .await
                    .map_err(pg)?
                    .is_some()
            {
                return Ok(Bind::Known);
            }
            let tx = Tx::begin(&mut c, import).await?;
            let locked = tx
                .query_opt(
                    "SELECT 1 FROM purchases WHERE hash = $1 FOR UPDATE",
                    &[&purchase],
                )
                .await
                .map_err(pg)?;
            if locked.is_none() {
                return Err(StoreError::NotFound(format!("purchase {purchase}")));
            }
            if tx
                .query_opt(known, &[&purchase, &device])
                .await
                .map_err(pg)?
                .is_some()
            {
                if let Some(id) = &id {
                    tx.execute(
                        "UPDATE device_bindings SET id = $3 WHERE purchase = $1 AND device = $2",
                        &[&purchase, &device, id],
                    )
                    .await
                    .map_err(pg)?;
                    tx.commit().await.map_err(pg)?;
                }
                return Ok(Bind::Known);
            }
            let used: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM device_bindings WHERE purchase = $1",
                    &[&purchase],
                )
                .await
                .map_err(pg)?
                .get(0);
            if limit.is_some_and(|l| used >= i64::from(l)) {
                return Ok(Bind::LimitReached);
            }
            tx.execute(
                "INSERT INTO device_bindings (purchase, device, bound_at, id) VALUES ($1, $2, $3, $4)",
                &[&purchase, &device, &(now as i64), &id],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Bind::Bound)
        })
    }

    /// The devices that activated `purchase`, oldest first.
    pub(super) fn bindings(&self, purchase: &str) -> Result<Vec<Binding>, StoreError> {
        let purchase = purchase.to_owned();
        self.run("devices", move |c| async move {
            let rows = c
                .query(
                    "SELECT device, bound_at, id FROM device_bindings WHERE purchase = $1
                     ORDER BY bound_at, seq",
                    &[&purchase],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| Binding {
                    device: r.get(0),
                    bound_at: r.get::<_, i64>(1) as u64,
                    id: r.get(2),
                })
                .collect())
        })
    }

    /// Frees the activation `device` holds on `purchase`.
    pub(super) fn unbind(&self, purchase: &str, device: &str) -> Result<(), StoreError> {
        self.changed(
            "unbind_device",
            "DELETE FROM device_bindings WHERE purchase = $1 AND device = $2",
            args![purchase.to_owned(), device.to_owned()],
            format!("device {device} on purchase {purchase}"),
        )
    }

    /// Moves an activation from one device to another.
    pub(super) fn rebind(
        &self,
        purchase: &str,
        from: &str,
        to: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.changed(
            "rebind_device",
            "UPDATE device_bindings SET device = $3, bound_at = $4
             WHERE purchase = $1 AND device = $2",
            args![
                purchase.to_owned(),
                from.to_owned(),
                to.to_owned(),
                now as i64
            ],
            format!("device {from} on purchase {purchase}"),
        )
    }
}
