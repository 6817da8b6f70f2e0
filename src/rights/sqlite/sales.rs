//! Writing purchases, alone or under an idempotency key.

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, conflict_or, status_text, to_json};
use crate::rights::model::Purchase;
use crate::rights::store::{KeyedSale, SaleKey, StoreError};

/// Records `purchase` under `key` unless the key is taken, in one immediate transaction.
pub(super) fn create_keyed(
    conn: &mut Connection,
    purchase: &Purchase,
    key: &str,
    fingerprint: &str,
) -> Result<KeyedSale, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    if let Some(taken) = sale_key(&tx, key)? {
        return Ok(KeyedSale::Taken(taken));
    }
    insert_purchase(&tx, purchase)?;
    tx.execute(
        "INSERT INTO sale_keys (key, fingerprint, purchase) VALUES (?1, ?2, ?3)",
        params![key, fingerprint, purchase.hash],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(KeyedSale::Created)
}

pub(super) fn insert_purchase(
    tx: &rusqlite::Transaction<'_>,
    purchase: &Purchase,
) -> Result<(), StoreError> {
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

fn self_product_missing(tx: &rusqlite::Transaction<'_>, product: &str) -> bool {
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
