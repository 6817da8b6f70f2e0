//! Writing purchases in PostgreSQL, alone or under an idempotency key, with the webhook
//! deliveries that announce them.

use tokio_postgres::error::SqlState;

use super::tx::Tx;
use super::{conflict_or, from_json, pg, status_name, to_json, webhooks, PostgresStore};
use crate::rights::model::Purchase;
use crate::rights::store::{KeyedSale, NewDelivery, SaleKey, StoreError};

/// Inserts a purchase and, if new, its account (enabled), inside `tx`.
async fn insert_purchase(tx: &Tx<'_>, purchase: &Purchase, data: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO purchases (hash, product, media, account, email, status, purchased_at, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &purchase.hash,
            &purchase.product,
            &purchase.media,
            &purchase.account,
            &purchase.email,
            &status_name(purchase.status),
            &(purchase.purchased_at as i64),
            &data,
        ],
    )
    .await
    .map_err(|e| {
        if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
            StoreError::NotFound(format!("product {}", purchase.product))
        } else {
            conflict_or(e, &format!("purchase {}", purchase.hash))
        }
    })?;
    tx.execute(
        "INSERT INTO accounts (id, enabled) VALUES ($1, TRUE) ON CONFLICT (id) DO NOTHING",
        &[&purchase.account],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Refuses a sale of one media unless its product links one of `within`. The product is
/// locked first (key share, as the purchase's foreign key would lock it): an unlink in
/// flight holds it for update, so this waits for it to end, and the check, a statement
/// of its own, then sees what it took out. An unlink that comes after waits for this sale
/// and counts it.
async fn still_linked(
    tx: &Tx<'_>,
    purchase: &Purchase,
    within: &[String],
) -> Result<(), StoreError> {
    let product = &purchase.product;
    tx.query_opt(
        "SELECT 1 FROM products WHERE code = $1 FOR KEY SHARE",
        &[product],
    )
    .await
    .map_err(pg)?
    .ok_or_else(|| StoreError::NotFound(format!("product {product}")))?;
    let linked = tx
        .query_opt(
            "SELECT 1 FROM product_media WHERE product = $1 AND content = ANY($2) LIMIT 1",
            &[product, &within],
        )
        .await
        .map_err(pg)?;
    match linked {
        Some(_) => Ok(()),
        None => Err(StoreError::NotInProduct {
            product: product.clone(),
            media: purchase.media.clone().unwrap_or_default(),
        }),
    }
}

pub(super) async fn sale_key_in(
    c: &tokio_postgres::Client,
    key: &str,
) -> Result<Option<SaleKey>, StoreError> {
    let row = c
        .query_opt(
            "SELECT purchase, fingerprint FROM sale_keys WHERE key = $1",
            &[&key],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| SaleKey {
        purchase: r.get(0),
        fingerprint: r.get(1),
    }))
}

impl PostgresStore {
    /// Records a purchase with its events, under an idempotency key if given, and only
    /// while its product links one of `within` when that is not empty (see
    /// [`Store::record_sale`](crate::rights::store::Store::record_sale)).
    pub(super) fn record(
        &self,
        purchase: &Purchase,
        key: Option<(&str, &str)>,
        events: &[NewDelivery],
        within: &[String],
    ) -> Result<KeyedSale, StoreError> {
        let data = to_json(purchase)?;
        let purchase = purchase.clone();
        let key = key.map(|(k, f)| (k.to_owned(), f.to_owned()));
        let events = events.to_vec();
        let within = within.to_vec();
        let op = if key.is_some() {
            "create_purchase_keyed"
        } else {
            "create_purchase"
        };
        let import = self.import;
        self.run(op, move |mut c| async move {
            if let Some((key, _)) = &key {
                if let Some(taken) = sale_key_in(&c, key).await? {
                    return Ok(KeyedSale::Taken(taken));
                }
            }
            let tx = Tx::begin(&mut c, import).await?;
            if !within.is_empty() {
                if let Err(refused) = still_linked(&tx, &purchase, &within).await {
                    let Some((key, _)) = key
                        .as_ref()
                        .filter(|_| matches!(refused, StoreError::NotInProduct { .. }))
                    else {
                        return Err(refused);
                    };
                    // A retry that read no key while its first attempt was in flight, and
                    // an unlink committed between them: the first attempt's sale stands,
                    // and is the answer.
                    tx.rollback().await?;
                    return match sale_key_in(&c, key).await? {
                        Some(taken) => Ok(KeyedSale::Taken(taken)),
                        None => Err(refused),
                    };
                }
            }
            insert_purchase(&tx, &purchase, &data).await?;
            webhooks::insert(&tx, &events).await?;
            let Some((key, fingerprint)) = key else {
                tx.commit().await.map_err(pg)?;
                return Ok(KeyedSale::Created);
            };
            // A concurrent sale under the same key waits here for the other to end; if
            // it committed, this inserts nothing and the whole transaction is dropped.
            let n = tx
                .execute(
                    "INSERT INTO sale_keys (key, fingerprint, purchase) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO NOTHING",
                    &[&key, &fingerprint, &purchase.hash],
                )
                .await
                .map_err(pg)?;
            if n == 1 {
                tx.commit().await.map_err(pg)?;
                return Ok(KeyedSale::Created);
            }
            tx.rollback().await?;
            match sale_key_in(&c, &key).await? {
                Some(taken) => Ok(KeyedSale::Taken(taken)),
                None => Err(StoreError::Backend(format!(
                    "sale key {key} was taken and then released"
                ))),
            }
        })
    }

    /// Replaces `before` with `after` and queues `events`, in one transaction that locks
    /// the purchase's row, if the stored purchase is still `before` (see
    /// [`Store::replace_purchase`](crate::rights::store::Store::replace_purchase)).
    pub(super) fn replace(
        &self,
        before: &Purchase,
        after: &Purchase,
        events: &[NewDelivery],
    ) -> Result<(), StoreError> {
        let data = to_json(after)?;
        let (before, after, events) = (before.clone(), after.clone(), events.to_vec());
        let import = self.import;
        self.run("replace_purchase", move |mut c| async move {
            let what = format!("purchase {}", before.hash);
            let tx = Tx::begin(&mut c, import).await?;
            let stored = tx
                .query_opt(
                    "SELECT data FROM purchases WHERE hash = $1 FOR UPDATE",
                    &[&before.hash],
                )
                .await
                .map_err(pg)?;
            let Some(stored) = stored else {
                return Err(StoreError::NotFound(what));
            };
            if from_json::<Purchase>(stored.get(0))? != before {
                return Err(StoreError::Changed(what));
            }
            tx.execute(
                "UPDATE purchases SET status = $2, data = $3, email = $4, media = $5, account = $6
                 WHERE hash = $1",
                &[
                    &before.hash,
                    &status_name(after.status),
                    &data,
                    &after.email,
                    &after.media,
                    &after.account,
                ],
            )
            .await
            .map_err(pg)?;
            webhooks::insert(&tx, &events).await?;
            tx.commit().await.map_err(pg)
        })
    }

    /// Records a first play and its `events` in one transaction, if none is recorded
    /// (see [`Store::record_first_play`](crate::rights::store::Store::record_first_play)).
    pub(super) fn first_play(
        &self,
        hash: &str,
        now: u64,
        events: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        let (hash, events) = (hash.to_owned(), events.to_vec());
        let import = self.import;
        self.run("record_first_play", move |mut c| async move {
            let tx = Tx::begin(&mut c, import).await?;
            let n = tx
                .execute(
                    "UPDATE purchases
                     SET data = jsonb_set(data::jsonb, '{first_play_at}', to_jsonb($2::bigint))::text
                     WHERE hash = $1
                       AND COALESCE(data::jsonb -> 'first_play_at', 'null'::jsonb) = 'null'::jsonb",
                    &[&hash, &(now as i64)],
                )
                .await
                .map_err(pg)?;
            if n == 0 {
                return Ok(false);
            }
            webhooks::insert(&tx, &events).await?;
            tx.commit().await.map_err(pg)?;
            Ok(true)
        })
    }

    /// Every idempotency key with its sale.
    pub(super) fn all_sale_keys(&self) -> Result<Vec<(String, SaleKey)>, StoreError> {
        self.run("sale_keys", |c| async move {
            let rows = c
                .query(
                    "SELECT key, purchase, fingerprint FROM sale_keys ORDER BY key",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        SaleKey {
                            purchase: r.get(1),
                            fingerprint: r.get(2),
                        },
                    )
                })
                .collect())
        })
    }

    /// Records a key for a purchase already recorded.
    pub(super) fn insert_sale_key(&self, key: &str, sale: &SaleKey) -> Result<(), StoreError> {
        let (key, sale) = (key.to_owned(), sale.clone());
        self.run("put_sale_key", move |c| async move {
            c.execute(
                "INSERT INTO sale_keys (key, fingerprint, purchase) VALUES ($1, $2, $3)",
                &[&key, &sale.fingerprint, &sale.purchase],
            )
            .await
            .map_err(|e| {
                if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                    StoreError::NotFound(format!("purchase {}", sale.purchase))
                } else {
                    conflict_or(e, &format!("sale key {key}"))
                }
            })?;
            Ok(())
        })
    }
}
