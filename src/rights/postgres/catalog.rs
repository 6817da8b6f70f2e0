//! Deleting products and media, and taking a media out of a product, in PostgreSQL, with
//! the count of the buyers who hold them taken inside the write's transaction: a sale in
//! flight is waited for and counted, so a guarded write never takes away what someone has
//! just bought.

use super::tx::Tx;
use super::{pg, PostgresStore};
use crate::rights::store::StoreError;

/// Refuses `what` with [`StoreError::Held`] while `sql` counts active buyers of it: the
/// purchases it selects, each locked first, so a change in flight (a revoked buyer made
/// active again) is waited for and counted too. The `OFFSET` in each count keeps the
/// status test out of the locking scan: a row revoked in this snapshot is locked, then
/// read again as it is committed.
async fn refuse_if_held(
    tx: &Tx<'_>,
    what: &str,
    sql: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), StoreError> {
    let buyers: i64 = tx.query_one(sql, args).await.map_err(pg)?.get(0);
    match buyers {
        0 => Ok(()),
        _ => Err(StoreError::Held {
            what: what.to_owned(),
            buyers: buyers as u64,
        }),
    }
}

/// Deletes product `code` (its links and purchases cascade); unless `force`, refused with
/// [`StoreError::Held`] while active purchases of it stand.
pub(super) fn delete_product(
    store: &PostgresStore,
    code: &str,
    force: bool,
) -> Result<(), StoreError> {
    let code = code.to_owned();
    let import = store.import;
    store.run("delete_product", move |mut c| async move {
        let what = format!("product {code}");
        let tx = Tx::begin(&mut c, import).await?;
        // The row lock waits for sales in flight (their foreign-key check holds a key
        // share lock on the product until they commit) and holds new ones until this
        // ends, so the count below sees every sale that will stand.
        let found = tx
            .query_opt(
                "SELECT 1 FROM products WHERE code = $1 FOR UPDATE",
                &[&code],
            )
            .await
            .map_err(pg)?;
        if found.is_none() {
            return Err(StoreError::NotFound(what));
        }
        if !force {
            refuse_if_held(
                &tx,
                &what,
                "SELECT COUNT(*) FROM
                 (SELECT status FROM purchases WHERE product = $1 FOR UPDATE OFFSET 0) p
                 WHERE status = 'active'",
                &[&code],
            )
            .await?;
        }
        tx.execute("DELETE FROM products WHERE code = $1", &[&code])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    })
}

/// Deletes media `code` and its links; unless `force`, refused with [`StoreError::Held`]
/// while active purchases hold it: bought for it, or of a product that contains it (by
/// its code or its editorial id).
pub(super) fn delete_media(
    store: &PostgresStore,
    code: &str,
    force: bool,
) -> Result<(), StoreError> {
    let code = code.to_owned();
    let import = store.import;
    store.run("delete_media", move |mut c| async move {
        let what = format!("media {code}");
        let tx = Tx::begin(&mut c, import).await?;
        let found = tx
            .query_opt(
                "SELECT editorial FROM media WHERE code = $1 FOR UPDATE",
                &[&code],
            )
            .await
            .map_err(pg)?;
        let Some(row) = found else {
            return Err(StoreError::NotFound(what));
        };
        if !force {
            let editorial: String = row
                .get::<_, Option<String>>(0)
                .unwrap_or_else(|| code.clone());
            // The products that contain it are locked as a product delete locks its
            // product: sales of them in flight are waited for, new ones held.
            tx.execute(
                "SELECT 1 FROM products WHERE code IN
                 (SELECT product FROM product_media WHERE content IN ($1, $2)) FOR UPDATE",
                &[&code, &editorial],
            )
            .await
            .map_err(pg)?;
            refuse_if_held(
                &tx,
                &what,
                "SELECT COUNT(*) FROM
                 (SELECT status FROM purchases pu
                  WHERE pu.media = $1 OR pu.product IN
                    (SELECT product FROM product_media WHERE content IN ($1, $2))
                  FOR UPDATE OFFSET 0) p
                 WHERE status = 'active'",
                &[&code, &editorial],
            )
            .await?;
        }
        tx.execute("DELETE FROM media WHERE code = $1", &[&code])
            .await
            .map_err(pg)?;
        tx.execute("DELETE FROM product_media WHERE content = $1", &[&code])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    })
}

/// The purchases of product `$1` an unlink of content `$2` takes something from: those
/// that name the media (their `media` is the content, or a media whose editorial id it
/// is), and every one when the product links nothing else.
const UNLINK_HOLDERS: &str = "SELECT status FROM purchases
     WHERE product = $1 AND (media = $2 OR media IN
       (SELECT code FROM media WHERE editorial = $2)
       OR NOT EXISTS (SELECT 1 FROM product_media WHERE product = $1 AND content <> $2))";

/// Takes content id `content` out of `product`; unless `force`, refused with
/// [`StoreError::Held`] while active purchases of [`UNLINK_HOLDERS`] stand. Other
/// purchases of the whole product are not counted: the rest of it stays theirs.
pub(super) fn unlink(
    store: &PostgresStore,
    product: &str,
    content: &str,
    force: bool,
) -> Result<(), StoreError> {
    let (product, content) = (product.to_owned(), content.to_owned());
    let import = store.import;
    store.run("unlink", move |mut c| async move {
        let what = format!("media {content} in product {product}");
        let tx = Tx::begin(&mut c, import).await?;
        // The product first, as its delete locks it (so the two never wait for each
        // other's rows the other way round): sales of it in flight are waited for, new
        // ones held until this ends (a sale of one media checks its link only once it
        // holds a key-share lock on the product, so it sees this unlink). Another unlink
        // of the product waits here too, so "links nothing else" below is what stands.
        tx.execute(
            "SELECT 1 FROM products WHERE code = $1 FOR UPDATE",
            &[&product],
        )
        .await
        .map_err(pg)?;
        let found = tx
            .query_opt(
                "SELECT 1 FROM product_media WHERE product = $1 AND content = $2",
                &[&product, &content],
            )
            .await
            .map_err(pg)?;
        if found.is_none() {
            return Err(StoreError::NotFound(what));
        }
        if !force {
            let count = format!(
                "SELECT COUNT(*) FROM ({UNLINK_HOLDERS} FOR UPDATE OFFSET 0) p
                 WHERE status = 'active'"
            );
            refuse_if_held(&tx, &what, &count, &[&product, &content]).await?;
        }
        tx.execute(
            "DELETE FROM product_media WHERE product = $1 AND content = $2",
            &[&product, &content],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    })
}

/// The active purchases an unlink of `content` from `product` would take something from
/// ([`UNLINK_HOLDERS`]), read without locking; none when `content` is not linked.
pub(super) fn unlink_buyers(
    store: &PostgresStore,
    product: &str,
    content: &str,
) -> Result<u64, StoreError> {
    let (product, content) = (product.to_owned(), content.to_owned());
    store.run("unlink_buyers", move |c| async move {
        let count = format!(
            "SELECT COUNT(*) FROM ({UNLINK_HOLDERS}) p
             WHERE status = 'active' AND EXISTS
               (SELECT 1 FROM product_media WHERE product = $1 AND content = $2)"
        );
        let buyers: i64 = c
            .query_one(&count, &[&product, &content])
            .await
            .map_err(pg)?
            .get(0);
        Ok(buyers as u64)
    })
}
