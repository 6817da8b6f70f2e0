//! What an operator can do, shared by the JSON API and the PPV facade: each operation
//! checks its input, writes through the store in one transaction, invalidates the cached
//! decisions it touches, and only then returns, so the next request sees it.

use std::sync::Arc;

use super::fields::{self, Fields, Invalid, Reader};
use crate::proxy::State;
use crate::rights::model::{Media, Product};
use crate::rights::store::{Page, Store, StoreError};

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Missing or wrong admin credential (401).
    #[error("missing or wrong admin credential")]
    Unauthorized,
    /// Bad input (400), naming the field.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No such thing (404).
    #[error("{0} not found")]
    NotFound(String),
    /// Taken (409).
    #[error("{0} already exists")]
    Conflict(String),
    /// Written by someone else while this change was being made, every time it was
    /// tried (409): read it and try again.
    #[error("{0} kept changing while this change was being made; read it and try again")]
    Changed(String),
    /// Buyers hold what was to be deleted, or taken out of a product (409), unless forced.
    /// Its text names the JSON API's `?force=true`; the facade's names its own flag (see
    /// [`has_buyers_text`]).
    #[error("{}", has_buyers_text(what, *buyers, *unlink, "?force=true"))]
    HasBuyers {
        /// What it was (`media demo`, `media demo in product p`).
        what: String,
        /// How many purchases hold it.
        buyers: u64,
        /// Whether it was to be taken out of a product (an unlink), not deleted.
        unlink: bool,
    },
    /// Every activation of the purchase is used by other devices (409).
    #[error("buyer {purchase} has used all {limit} activations: delete a device first")]
    ActivationLimit {
        /// The purchase hash.
        purchase: String,
        /// Its activation limit.
        limit: u32,
    },
    /// The product cannot be sold now (409), with the machine-readable reason.
    #[error("product {product} cannot be sold: {reason}")]
    NotSellable {
        /// The product's code.
        product: String,
        /// Why: `product_inactive`, `product_unavailable`, `window_ended` or
        /// `media_not_in_product`.
        reason: &'static str,
    },
    /// An idempotency key came back with a different request (422).
    #[error("{field}: this key was used by a different sale")]
    KeyReused {
        /// Where the key came from: `Idempotency-Key` or `order_id`.
        field: &'static str,
    },
    /// Too many wrong credentials from this client (429): refused, whatever it presents,
    /// for `retry_after` more seconds.
    #[error("too many wrong admin credentials from this client; try again in {retry_after} s")]
    Limited {
        /// Seconds until the client's window is over.
        retry_after: u64,
    },
    /// No such endpoint (404) or method (405).
    #[error("no such endpoint")]
    NoEndpoint,
    /// The store failed (500); nothing was written.
    #[error("store failure: {0}")]
    Store(String),
    /// The shared store cannot be reached (503); nothing was written.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// The shared store stopped answering after the write was sent (503): it may or may
    /// not stand.
    #[error("store outcome unknown: {0}")]
    StoreOutcomeUnknown(String),
    /// A session's end could not be recorded in Redis (503): this node's copy is ended and
    /// the end was announced, but it may not reach the node playing the session.
    #[error("session end not recorded: {0}")]
    EndNotRecorded(String),
    /// A shield purge done on this node that could not be announced to the others (503):
    /// repeat it.
    #[error(
        "purged {purged} objects under {prefix} on this node only; the other nodes were not told"
    )]
    PurgeNotAnnounced {
        /// The prefix purged.
        prefix: String,
        /// How many objects this node purged.
        purged: usize,
        /// Why Redis did not take the announcement (logged, not answered).
        why: String,
    },
}

impl AdminError {
    /// For a 503 after which the write partly stands, the flag its audit entry records
    /// false: `announced` for a shield purge done on this node only, `recorded_in_redis`
    /// for a session end this node made (its copy ended, the end announced) that Redis
    /// could not record. `None` for a failure that wrote nothing.
    pub fn untold(&self) -> Option<&'static str> {
        match self {
            AdminError::PurgeNotAnnounced { .. } => Some("announced"),
            AdminError::EndNotRecorded(_) => Some("recorded_in_redis"),
            _ => None,
        }
    }

    /// A bad `field`, with the reason.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        AdminError::Invalid(Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        })
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AdminError::NotFound(what),
            StoreError::Conflict(what) => AdminError::Conflict(what),
            StoreError::Backend(why) => AdminError::Store(why),
            StoreError::Unavailable(why) => AdminError::StoreUnavailable(why),
            StoreError::Unknown(why) => AdminError::StoreOutcomeUnknown(why),
            StoreError::Changed(what) => AdminError::Changed(what),
            StoreError::Held { what, buyers } => AdminError::HasBuyers {
                what,
                buyers,
                unlink: false,
            },
            // The media was taken out of the product after the sale's first check.
            StoreError::NotInProduct { product, .. } => AdminError::NotSellable {
                product,
                reason: "media_not_in_product",
            },
        }
    }
}

/// The text of a [`AdminError::HasBuyers`] for a caller whose force flag is `flag`
/// (`?force=true` in the JSON API, `force=1` in the facade): "product p has 2 buyers: add
/// ?force=true to delete it anyway", or "… to take it out anyway" for an unlink.
pub fn has_buyers_text(what: &str, buyers: u64, unlink: bool, flag: &str) -> String {
    let verb = if unlink { "take it out" } else { "delete it" };
    format!("{what} has {buyers} buyers: add {flag} to {verb} anyway")
}

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    let store: Arc<dyn Store> = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?
        .map_err(AdminError::from)
}

/// Reads one thing through `f`; `NotFound(what)` when it is not there.
pub(crate) async fn find<T: Send + 'static>(
    state: &State,
    what: String,
    f: impl FnOnce(&dyn Store) -> Result<Option<T>, StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    blocking(state, f).await?.ok_or(AdminError::NotFound(what))
}

/// Fields of the PPV API's `create`/`update` that usher accepts and ignores (they concern
/// payment pages, e-mails and DRM features usher does not run).
const IGNORED_PRODUCT_FIELDS: &[&str] = &[
    "apikey",
    "materials",
    "buy_redirect_url",
    "custom_url",
    "buyer_commission",
    "downloadable_origin",
    "watermark",
    "watermark_email",
    "watermark_name",
    "watermark_ip",
];

/// A random code of `len` characters from `A-Z a-z 0-9` (the PPV API's codes look so).
pub fn new_code(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Drops every cached decision and re-reads the media index (on the blocking pool: the
/// store may be a network away), here and on the other nodes.
pub(crate) async fn after_product_write(state: &State) {
    if let Some(rights) = state.rights.clone() {
        let result = tokio::task::spawn_blocking(move || rights.invalidate_all())
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(e.to_string())));
        if let Err(e) = result {
            tracing::error!(error = %e, "could not re-read the media index; retrying every second");
        }
    }
    state.fanout.publish(crate::fanout::Invalidation::All);
}

/// Drops the cached decisions about `account`, here and on the other nodes.
pub(crate) fn after_purchase_write(state: &State, account: &str) {
    if let Some(rights) = &state.rights {
        rights.invalidate_subject(account);
    }
    state.fanout.publish(crate::fanout::Invalidation::Subject {
        subject: account.to_owned(),
    });
}

/// Creates a product from fields (`code` optional: one is made).
///
/// # Errors
/// Bad fields, or a taken code.
pub async fn create_product(state: &State, f: &Fields) -> Result<Product, AdminError> {
    let mut r = Reader::new(f);
    let code = match r.text("code") {
        Some(code) => fields::id("code", code)?,
        None => new_code(8),
    };
    let mut product: Product =
        serde_json::from_value(serde_json::json!({"code": code, "name": ""}))
            .expect("a product from code and name");
    product.created_at = (state.clock)();
    fields::apply_product(&mut r, &mut product)?;
    r.finish(IGNORED_PRODUCT_FIELDS)?;
    let stored = product.clone();
    blocking(state, move |s| s.create_product(&stored)).await?;
    Ok(product)
}

/// Updates a product's fields; a `code` naming another product is refused (see
/// [`same_code`]).
///
/// # Errors
/// Bad fields (a different `code` among them), or no such product.
pub async fn update_product(state: &State, code: &str, f: &Fields) -> Result<Product, AdminError> {
    let mut product = get_product(state, code).await?;
    let mut r = Reader::new(f);
    same_code(&mut r, "product", code)?;
    fields::apply_product(&mut r, &mut product)?;
    r.finish(IGNORED_PRODUCT_FIELDS)?;
    let stored = product.clone();
    blocking(state, move |s| s.update_product(&stored)).await?;
    after_product_write(state).await;
    Ok(product)
}

/// Refuses a `code` in an update's fields that is not the code updated (400 naming
/// `code`): codes do not change (tickets, links and purchases name them), so a rename
/// would be answered 200 and change nothing. The same code (the PPV API's `update` sends
/// it) is fine.
pub(crate) fn same_code(r: &mut Reader<'_>, what: &str, code: &str) -> Result<(), AdminError> {
    match r.text("code") {
        Some(given) if given != code => Err(AdminError::invalid(
            "code",
            format!("\"{given}\": a {what}'s code cannot change (this is {what} {code})"),
        )),
        _ => Ok(()),
    }
}

/// A product by code.
///
/// # Errors
/// No such product.
pub async fn get_product(state: &State, code: &str) -> Result<Product, AdminError> {
    let code = code.to_owned();
    find(state, format!("product {code}"), move |s| s.product(&code)).await
}

/// Deletes a product, its media links and its purchases. A product with active purchases
/// is refused with 409 naming how many, unless `force`: deleting it would take away what
/// its buyers paid for, with their device bindings, for good.
///
/// # Errors
/// No such product, or buyers hold it.
pub async fn delete_product(state: &State, code: &str, force: bool) -> Result<(), AdminError> {
    let code = code.to_owned();
    blocking(state, move |s| s.delete_product(&code, force)).await?;
    after_product_write(state).await;
    Ok(())
}

/// Products, a page at a time.
///
/// # Errors
/// On a store failure.
pub async fn list_products(state: &State, page: Page) -> Result<Vec<Product>, AdminError> {
    blocking(state, move |s| s.products(page)).await
}

/// Creates a media from fields.
///
/// # Errors
/// Bad fields, or a taken code or prefix.
pub async fn create_media(state: &State, f: &Fields) -> Result<Media, AdminError> {
    let mut r = Reader::new(f);
    let code = match r.text("code") {
        Some(code) => fields::id("code", code)?,
        None => new_code(8),
    };
    let media = fields::media(&mut r, code, (state.clock)())?;
    r.finish(&["apikey"])?;
    let stored = media.clone();
    blocking(state, move |s| s.create_media(&stored)).await?;
    after_product_write(state).await;
    Ok(media)
}

/// A media by code.
///
/// # Errors
/// No such media.
pub async fn get_media(state: &State, code: &str) -> Result<Media, AdminError> {
    let code = code.to_owned();
    find(state, format!("media {code}"), move |s| s.media(&code)).await
}

/// Every media.
///
/// # Errors
/// On a store failure.
pub async fn list_media(state: &State) -> Result<Vec<Media>, AdminError> {
    blocking(state, |s| s.all_media()).await
}

/// Puts a media (or an editorial id) into a product. A content id that is neither a media
/// nor any media's editorial id is refused, so typos do not sell nothing.
///
/// # Errors
/// No such product or content.
pub async fn add_media(state: &State, product: &str, content: &str) -> Result<(), AdminError> {
    let content = fields::id("media", content)?;
    let (product, c) = (product.to_owned(), content.clone());
    blocking(state, move |s| {
        let known = s.media(&c)?.is_some()
            || s.all_media()?
                .iter()
                .any(|m| m.editorial.as_deref() == Some(c.as_str()));
        if !known {
            return Err(StoreError::NotFound(format!("media {c}")));
        }
        s.link(&product, &c)
    })
    .await?;
    after_product_write(state).await;
    Ok(())
}

/// Takes a content id out of a product. While buyers of the product named that media
/// (active purchases bought for it, or for a media whose editorial id it is), or, when
/// it is the last content of the product, while it has any active buyer, it is refused
/// with 409 naming how many, unless `force`: the unlink would take away what they paid
/// for (see [`Store::unlink_buyers`]). Other buyers of the whole product are not counted
/// (a title rotated out of a subscription is a plain unlink).
///
/// # Errors
/// When it was not in it, or buyers hold it.
pub async fn remove_media(
    state: &State,
    product: &str,
    content: &str,
    force: bool,
) -> Result<(), AdminError> {
    let (product, content) = (product.to_owned(), content.to_owned());
    blocking(state, move |s| s.unlink(&product, &content, force))
        .await
        .map_err(|e| match e {
            AdminError::HasBuyers { what, buyers, .. } => AdminError::HasBuyers {
                what,
                buyers,
                unlink: true,
            },
            e => e,
        })?;
    after_product_write(state).await;
    Ok(())
}

/// The media in a product (editorial ids expanded to their media).
///
/// # Errors
/// No such product.
pub async fn product_media(
    state: &State,
    product: &str,
    page: Page,
) -> Result<Vec<Media>, AdminError> {
    get_product(state, product).await?;
    let product = product.to_owned();
    let linked = blocking(state, move |s| {
        let links = s.linked(&product)?;
        let all = s.all_media()?;
        Ok(all
            .into_iter()
            .filter(|m| {
                links.contains(&m.code) || m.editorial.as_ref().is_some_and(|e| links.contains(e))
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(linked
        .into_iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .collect())
}

mod buyers;
mod cache;
mod devices;
mod invalidate;
mod media;
mod sales;

pub use buyers::*;
pub use cache::*;
pub use devices::*;
pub use invalidate::*;
pub use media::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sale_refused_in_its_transaction_is_a_media_not_in_the_product() {
        let e = AdminError::from(StoreError::NotInProduct {
            product: "P1".into(),
            media: "M1".into(),
        });
        assert!(
            matches!(&e, AdminError::NotSellable { product, reason: "media_not_in_product" } if product == "P1"),
            "{e:?}"
        );
    }
}
