//! Writing purchases, alone or under an idempotency key, with the webhook deliveries that
//! announce them; and the catalogue writes that its buyers' purchases guard (deleting a
//! product or a media, taking a media out of a product).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{backend, conflict_or, from_json, status_text, to_json, tx, webhooks};
use crate::rights::model::Purchase;
use crate::rights::store::{KeyedSale, NewDelivery, SaleKey, StoreError};

/// Records `purchase` (under `key` unless the key is taken) with `events`, in one
/// immediate transaction; when `within` is not empty, only while the product links one
/// of those content ids (checked in that transaction, which no unlink can come into).
pub(super) fn record(
    conn: &mut Connection,
    purchase: &Purchase,
    key: Option<(&str, &str)>,
    events: &[NewDelivery],
    within: &[String],
) -> Result<KeyedSale, StoreError> {
    let tx = tx::begin(conn, TransactionBehavior::Immediate)?;
    if let Some((key, _)) = key {
        if let Some(taken) = sale_key(&tx, key)? {
            return Ok(KeyedSale::Taken(taken));
        }
    }
    if !within.is_empty() && !links_any(&tx, &purchase.product, within)? {
        if self_product_missing(&tx, &purchase.product) {
            // Deleted since the sale's first check: as the purchase's foreign key says.
            return Err(StoreError::NotFound(format!(
                "product {}",
                purchase.product
            )));
        }
        return Err(StoreError::NotInProduct {
            product: purchase.product.clone(),
            media: purchase.media.clone().unwrap_or_default(),
        });
    }
    insert_purchase(&tx, purchase)?;
    if let Some((key, fingerprint)) = key {
        tx.execute(
            "INSERT INTO sale_keys (key, fingerprint, purchase) VALUES (?1, ?2, ?3)",
            params![key, fingerprint, purchase.hash],
        )
        .map_err(backend)?;
    }
    webhooks::insert(&tx, events)?;
    tx.commit()?;
    Ok(KeyedSale::Created)
}

/// Replaces `before` with `after` and queues `events`, in one immediate transaction, if
/// the stored purchase is still `before`.
pub(super) fn replace(
    conn: &mut Connection,
    before: &Purchase,
    after: &Purchase,
    events: &[NewDelivery],
) -> Result<(), StoreError> {
    let what = format!("purchase {}", before.hash);
    let tx = tx::begin(conn, TransactionBehavior::Immediate)?;
    let stored: Option<String> = tx
        .query_row(
            "SELECT data FROM purchases WHERE hash = ?1",
            [&before.hash],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    let Some(stored) = stored else {
        return Err(StoreError::NotFound(what));
    };
    if from_json::<Purchase>(&stored)? != *before {
        return Err(StoreError::Changed(what));
    }
    tx.execute(
        "UPDATE purchases SET status = ?2, data = ?3, email = ?4, media = ?5, account = ?6
         WHERE hash = ?1",
        params![
            before.hash,
            status_text(after),
            to_json(after)?,
            after.email,
            after.media,
            after.account,
        ],
    )
    .map_err(backend)?;
    webhooks::insert(&tx, events)?;
    tx.commit()
}

/// Records a first play and its `events` in one transaction, if none is recorded.
pub(super) fn first_play(
    conn: &mut Connection,
    hash: &str,
    now: u64,
    events: &[NewDelivery],
) -> Result<bool, StoreError> {
    let tx = tx::begin(conn, TransactionBehavior::Deferred)?;
    let n = tx
        .execute(
            "UPDATE purchases SET data = json_set(data, '$.first_play_at', ?2)
             WHERE hash = ?1 AND json_extract(data, '$.first_play_at') IS NULL",
            params![hash, now as i64],
        )
        .map_err(backend)?;
    if n == 0 {
        return Ok(false);
    }
    webhooks::insert(&tx, events)?;
    tx.commit()?;
    Ok(true)
}

/// Deletes a product with its purchases; unless `force`, refused with `Held` when active
/// purchases hold it, counted in the delete's own immediate transaction.
pub(super) fn delete_product(
    conn: &mut Connection,
    code: &str,
    force: bool,
) -> Result<(), StoreError> {
    let what = format!("product {code}");
    let tx = tx::begin(conn, TransactionBehavior::Immediate)?;
    if !force {
        let buyers: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM purchases WHERE product = ?1 AND status = 'active'",
                [code],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if buyers > 0 {
            let buyers = buyers as u64;
            return Err(StoreError::Held { what, buyers });
        }
    }
    match tx.execute("DELETE FROM products WHERE code = ?1", [code]) {
        Ok(0) => Err(StoreError::NotFound(what)),
        Ok(_) => tx.commit(),
        Err(e) => Err(backend(e)),
    }
}

/// Deletes media `code` and its links; unless `force`, refused with [`StoreError::Held`]
/// while active purchases hold it (bought for it, or of a product containing its code or
/// editorial id), counted in the same immediate transaction, so no sale comes between.
pub(super) fn delete_media(
    conn: &mut Connection,
    code: &str,
    force: bool,
) -> Result<(), StoreError> {
    let what = format!("media {code}");
    let tx = tx::begin(conn, TransactionBehavior::Immediate)?;
    let editorial: Option<Option<String>> = tx
        .query_row("SELECT editorial FROM media WHERE code = ?1", [code], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    let Some(editorial) = editorial else {
        return Err(StoreError::NotFound(what));
    };
    if !force {
        let buyers: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM purchases pu
                 WHERE pu.status = 'active'
                   AND (pu.media = ?1 OR EXISTS (SELECT 1 FROM product_media pm
                        WHERE pm.product = pu.product AND pm.content IN (?1, ?2)))",
                params![code, editorial.as_deref().unwrap_or(code)],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if buyers > 0 {
            let buyers = buyers as u64;
            return Err(StoreError::Held { what, buyers });
        }
    }
    tx.execute("DELETE FROM media WHERE code = ?1", [code])
        .map_err(backend)?;
    tx.execute("DELETE FROM product_media WHERE content = ?1", [code])
        .map_err(backend)?;
    tx.commit()
}

/// Whether `product` links any of the content ids `within`.
fn links_any(conn: &Connection, product: &str, within: &[String]) -> Result<bool, StoreError> {
    let within = to_json(&within)?;
    conn.query_row(
        "SELECT 1 FROM product_media
         WHERE product = ?1 AND content IN (SELECT value FROM json_each(?2))",
        params![product, within],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
    .map_err(backend)
}

/// The active purchases an unlink of `content` from `product` takes something from (see
/// [`Store::unlink_buyers`](crate::rights::store::Store::unlink_buyers)): those that name
/// the media, and every one when no other content is linked; none when `content` is not
/// linked.
pub(super) fn unlink_buyers(
    conn: &Connection,
    product: &str,
    content: &str,
) -> Result<u64, StoreError> {
    let buyers: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM purchases
             WHERE product = ?1 AND status = 'active'
               AND (media = ?2 OR media IN (SELECT code FROM media WHERE editorial = ?2)
                    OR NOT EXISTS (SELECT 1 FROM product_media
                                   WHERE product = ?1 AND content <> ?2))
               AND EXISTS (SELECT 1 FROM product_media WHERE product = ?1 AND content = ?2)",
            params![product, content],
            |r| r.get(0),
        )
        .map_err(backend)?;
    Ok(buyers as u64)
}

/// Takes content id `content` out of `product`; unless `force`, refused with
/// [`StoreError::Held`] while [`unlink_buyers`] stand, counted in the same immediate
/// transaction, so no sale comes between.
pub(super) fn unlink(
    conn: &mut Connection,
    product: &str,
    content: &str,
    force: bool,
) -> Result<(), StoreError> {
    let what = format!("media {content} in product {product}");
    let tx = tx::begin(conn, TransactionBehavior::Immediate)?;
    if !force {
        let buyers = unlink_buyers(&tx, product, content)?;
        if buyers > 0 {
            return Err(StoreError::Held { what, buyers });
        }
    }
    match tx.execute(
        "DELETE FROM product_media WHERE product = ?1 AND content = ?2",
        params![product, content],
    ) {
        Ok(0) => Err(StoreError::NotFound(what)),
        Ok(_) => tx.commit(),
        Err(e) => Err(backend(e)),
    }
}

fn insert_purchase(tx: &Connection, purchase: &Purchase) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO purchases (hash, product, media, account, email, status, purchased_at, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            purchase.hash,
            purchase.product,
            purchase.media,
            purchase.account,
            purchase.email,
            status_text(purchase),
            purchase.purchased_at as i64,
            to_json(purchase)?
        ],
    )
    .map_err(
        |e| match conflict_or(e, &format!("purchase {}", purchase.hash)) {
            // A foreign-key failure is a constraint violation too: name the product.
            StoreError::Conflict(_) if self_product_missing(tx, &purchase.product) => {
                StoreError::NotFound(format!("product {}", purchase.product))
            }
            other => other,
        },
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO accounts (id, enabled) VALUES (?1, 1)",
        [&purchase.account],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn sale_key(conn: &Connection, key: &str) -> Result<Option<SaleKey>, StoreError> {
    conn.query_row(
        "SELECT purchase, fingerprint FROM sale_keys WHERE key = ?1",
        [key],
        |r| {
            Ok(SaleKey {
                purchase: r.get(0)?,
                fingerprint: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(backend)
}

fn self_product_missing(tx: &Connection, product: &str) -> bool {
    tx.query_row("SELECT 1 FROM products WHERE code = ?1", [product], |_| {
        Ok(())
    })
    .optional()
    .map(|found| found.is_none())
    .unwrap_or(false)
}

/// Every idempotency key with the sale it made, by key.
pub(super) fn all_keys(conn: &Connection) -> Result<Vec<(String, SaleKey)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT key, purchase, fingerprint FROM sale_keys ORDER BY key")
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                SaleKey {
                    purchase: r.get(1)?,
                    fingerprint: r.get(2)?,
                },
            ))
        })
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)).collect()
}

/// Records `key` for a purchase already recorded: `NotFound` without it, `Conflict` when
/// the key is taken.
pub(super) fn put_key(conn: &Connection, key: &str, sale: &SaleKey) -> Result<(), StoreError> {
    let recorded = conn
        .query_row(
            "SELECT 1 FROM purchases WHERE hash = ?1",
            [&sale.purchase],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if !recorded {
        return Err(StoreError::NotFound(format!("purchase {}", sale.purchase)));
    }
    conn.execute(
        "INSERT INTO sale_keys (key, fingerprint, purchase) VALUES (?1, ?2, ?3)",
        params![key, sale.fingerprint, sale.purchase],
    )
    .map_err(|e| conflict_or(e, &format!("sale key {key}")))?;
    Ok(())
}
