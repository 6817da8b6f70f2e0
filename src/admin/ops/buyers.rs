//! Buyers (purchases and their tickets), accounts, device activations, live sessions and
//! the seller's contacts.

mod write;

use std::collections::HashMap;

use super::fields::{self, Fields, Reader};
use super::sales::{sale_key, OrderKey, KEY_FIELDS};
use super::{
    after_purchase_write, blocking, find, get_media, get_product, new_code, product_media,
    AdminError,
};
use crate::proxy::State;
use crate::rights::decide::{extension_fits, sellable, window};
use crate::rights::model::{Account, Contacts, Media, Product, Purchase, PurchaseStatus};
use crate::rights::store::{KeyedSale, Page, PurchaseFilter, SaleKey as StoredKey};

pub use super::sales::PurchaseView;
use crate::ticket::{self, Claims, Kind};
use crate::webhooks::Event;
use write::{replace, until_unchanged};

/// A purchase with its ticket and the URL that plays it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sold {
    /// The purchase, with its computed window.
    #[serde(flatten)]
    pub purchase: PurchaseView,
    /// The URL that plays it, when the purchase names one media (or the product has one).
    pub play_url: Option<String>,
}

/// `purchase` answered with its window and, when it names one media, the URL that plays it.
fn sold(state: &State, purchase: Purchase, product: &Product, media: Option<&Media>) -> Sold {
    let play_url = media.map(|m| play_url(state, m, purchase.ticket.as_deref().unwrap_or("")));
    Sold {
        purchase: PurchaseView::new(purchase, Some(product)),
        play_url,
    }
}

/// Adds a buyer to a product: records the purchase and issues its ticket.
///
/// # Errors
/// Bad fields, no such product or media, a product that cannot be sold now (409), or an
/// idempotency key reused with another request (422).
pub async fn add_buyer(state: &State, f: &Fields) -> Result<Sold, AdminError> {
    sell(state, f, f).await
}

/// Sells as [`add_buyer`] with `f`, where `request` is what the caller sent: it carries
/// the idempotency key and is what a resubmission must repeat (for `sendVideoTicket`,
/// which picks the product itself, it differs from `f`).
///
/// Every sale goes through here, whichever interface made it: the idempotency key is
/// looked up first (a resubmitted order answers its first sale, even if the product has
/// since stopped selling), then [`sellable`] decides, then the purchase and the key are
/// written in one transaction.
///
/// # Errors
/// As [`add_buyer`].
pub async fn sell(state: &State, f: &Fields, request: &Fields) -> Result<Sold, AdminError> {
    let key = sale_key(request)?;
    if let Some(key) = &key {
        let k = key.key.clone();
        if let Some(taken) = blocking(state, move |s| s.sale_key(&k)).await? {
            return replay(state, key, taken).await;
        }
    }
    let mut r = Reader::new(f);
    let product_code = sold_product(&mut r)?;
    let product = get_product(state, &product_code).await?;
    let media = match r.text("media") {
        Some(code) => Some(get_media(state, code).await?),
        None => None,
    };
    let within = match &media {
        Some(media) => in_product(state, &product, media).await?,
        None => Vec::new(),
    };
    if r.text("email").is_none() && r.text("phone").is_none() && r.text("account").is_none() {
        return Err(AdminError::invalid(
            "email",
            "one of email, phone or account is required",
        ));
    }
    let account = match r.text("account") {
        Some(a) => fields::id("account", a)?,
        None => new_code(12),
    };
    let now = (state.clock)();
    let mut purchase = Purchase {
        media: media.as_ref().map(|m| m.code.clone()),
        ..Purchase::new(new_code(10), &product.code, account, now)
    };
    fields::apply_purchase(&mut r, &mut purchase)?;
    let mut ignored = vec![
        "notification",
        "custom_url",
        "use_subscription_custom_url",
        "product",
        "code",
        "media",
        "account",
    ];
    ignored.extend_from_slice(KEY_FIELDS);
    r.finish(&ignored)?;
    fits(&purchase, &product)?;
    sellable(&purchase, &product, now).map_err(|why| AdminError::NotSellable {
        product: product.code.clone(),
        reason: why.reason(),
    })?;
    // A sale of no media is scoped to the product's only media, if it has one: checked in
    // the sale's transaction like a named one, so the unlink of that last media either
    // counts this buyer or refuses the sale.
    let (media, within) = match media {
        Some(m) => (Some(m), within),
        None => match only_media(state, &product.code).await? {
            Some(m) => {
                let within = in_product(state, &product, &m).await?;
                (Some(m), within)
            }
            None => (None, within),
        },
    };
    purchase.ticket = Some(issue_ticket(state, &purchase, &product, media.as_ref()));
    let events = state
        .webhooks
        .deliveries(&Event::Purchase((&purchase).into()));
    let (stored, queued) = (purchase.clone(), events.clone());
    let keyed = key.as_ref().map(|k| (k.key.clone(), k.fingerprint.clone()));
    let written = blocking(state, move |s| {
        let key = keyed.as_ref().map(|(k, fp)| (k.as_str(), fp.as_str()));
        s.record_sale(&stored, key, &queued, &within)
    })
    .await?;
    if let (KeyedSale::Taken(taken), Some(key)) = (written, &key) {
        // A concurrent submission with this key won: answer its sale.
        return replay(state, key, taken).await;
    }
    after_purchase_write(state, &purchase.account);
    state.webhooks.queued(&events);
    Ok(sold(state, purchase, &product, media.as_ref()))
}

/// The first sale made under `key`, answered again; a different request under the same
/// key is refused.
async fn replay(state: &State, key: &OrderKey, taken: StoredKey) -> Result<Sold, AdminError> {
    if taken.fingerprint != key.fingerprint {
        return Err(AdminError::KeyReused { field: key.field });
    }
    let purchase = find_buyer(state, &taken.purchase).await?;
    let product = get_product(state, &purchase.product).await?;
    let media = match &purchase.media {
        Some(code) => Some(get_media(state, code).await?),
        None => only_media(state, &product.code).await?,
    };
    Ok(sold(state, purchase, &product, media.as_ref()))
}

/// A purchase's own end may not lie past the product's `available_until`: it would
/// answer success and change nothing.
fn fits(purchase: &Purchase, product: &Product) -> Result<(), AdminError> {
    extension_fits(purchase, product).map_err(|until| {
        AdminError::invalid(
            "access_expire",
            format!(
                "after the product's available_until ({}): it plays nowhere after that",
                crate::rights::date::format(until)
            ),
        )
    })
}

/// The product a sale names: `code` (the PPV API's name) or `product` (the JSON API's).
/// Both may come when they agree; two different products are refused (400 naming
/// `product`), since a sale must not bill one product and grant another.
fn sold_product(r: &mut Reader<'_>) -> Result<String, AdminError> {
    match (r.text("code"), r.text("product")) {
        (Some(code), Some(product)) if code != product => Err(AdminError::invalid(
            "product",
            format!("\"{product}\" differs from code \"{code}\": name the product sold once, or the same in both"),
        )),
        (Some(code), _) => Ok(code.to_owned()),
        (None, _) => Ok(r.required("product")?.to_owned()),
    }
}

/// A sale for one media must be of a product that holds it: the media itself, its
/// editorial id, or a media enclosing it (a right on which covers it). Returns those
/// content ids, which the sale's own transaction checks again (an unlink may come
/// between this check and the sale).
///
/// # Errors
/// 409 `media_not_in_product`: the buyer would get a link that answers `no_rights`.
async fn in_product(
    state: &State,
    product: &Product,
    media: &Media,
) -> Result<Vec<String>, AdminError> {
    let code = product.code.clone();
    let linked = blocking(state, move |s| s.linked(&code)).await?;
    let covered_by = state
        .rights
        .as_ref()
        .and_then(|rights| rights.media_for(&media.prefix))
        // This node's index may not know the media yet (created on another node moments
        // ago) and answer an enclosing one: then its own code and editorial id.
        .filter(|m| m.code == media.code)
        .map(|m| m.covered_by.clone())
        .unwrap_or_else(|| {
            std::iter::once(media.code.clone())
                .chain(media.editorial.clone())
                .collect()
        });
    if covered_by.iter().any(|c| linked.contains(c)) {
        Ok(covered_by)
    } else {
        Err(AdminError::NotSellable {
            product: product.code.clone(),
            reason: "media_not_in_product",
        })
    }
}

async fn only_media(state: &State, product: &str) -> Result<Option<Media>, AdminError> {
    let mut media = product_media(
        state,
        product,
        Page {
            offset: 0,
            limit: 2,
        },
    )
    .await?;
    Ok(if media.len() == 1 { media.pop() } else { None })
}

/// The ticket for a purchase: its account as subject, the media's prefix (or `/`) as
/// scope, valid from purchase for at least a year (`token.ticket_ttl` when longer), or to
/// the end of its window when that is later. The rights check enforces the window itself
/// (`rights_expired`); the ticket only has to outlast it, so a link already sent keeps
/// working when the purchase or its product is extended.
fn issue_ticket(
    state: &State,
    purchase: &Purchase,
    product: &Product,
    media: Option<&Media>,
) -> String {
    let config = state.config();
    let settings = &config.token;
    let (_, end) = window(purchase, product);
    let year = purchase.purchased_at + 365 * 86_400;
    let claims = Claims {
        sub: purchase.account.clone(),
        scope: media.map_or_else(|| "/".to_owned(), |m| m.prefix.clone()),
        nbf: purchase
            .purchased_at
            .saturating_sub(settings.clock_skew.as_secs()),
        exp: end
            .unwrap_or(0)
            .max(year)
            .max(purchase.purchased_at + settings.ticket_ttl.as_secs()),
        dev: None,
        ip: None,
        sid: None,
        cap: 0,
        allow: Vec::new(),
        cls: None,
    };
    ticket::sign(&settings.keys, Kind::Ticket, &claims)
}

/// The URL that plays `media` with `ticket`.
pub fn play_url(state: &State, media: &Media, ticket: &str) -> String {
    let base = state.public_url.get().map_or("", String::as_str);
    format!(
        "{base}{}{}?{}={ticket}",
        media.prefix,
        media.playlist,
        state.config().token.ticket_param
    )
}

/// Updates a buyer's fields (dates, activations, name, status) and reissues its ticket
/// for the window they give. `code`, when sent (the PPV API sends it), must be the
/// purchase's product. A purchase written meanwhile (a revoke on another node, a first
/// play) is read again and the fields applied to it, so neither change is lost.
///
/// # Errors
/// Bad fields, a `code` that is not the purchase's product, an `access_expire` past the
/// product's `available_until`, no such purchase, or (409) a purchase that kept changing.
pub async fn update_buyer(state: &State, hash: &str, f: &Fields) -> Result<Sold, AdminError> {
    until_unchanged(|| update_once(state, hash, f)).await
}

async fn update_once(state: &State, hash: &str, f: &Fields) -> Result<Sold, AdminError> {
    let before = find_buyer(state, hash).await?;
    let mut purchase = before.clone();
    let mut r = Reader::new(f);
    bought(&purchase, r.text("code"))?;
    fields::apply_purchase(&mut r, &mut purchase)?;
    r.finish(&["apikey", "hash"])?;
    let product = get_product(state, &purchase.product).await?;
    // Only an end this update sets must fit: a product shortened since the sale must not
    // block a change of the buyer's name or email.
    if purchase.access_expire != before.access_expire {
        fits(&purchase, &product)?;
    }
    let media = match &purchase.media {
        Some(code) => Some(get_media(state, code).await?),
        None => only_media(state, &product.code).await?,
    };
    purchase.ticket = Some(issue_ticket(state, &purchase, &product, media.as_ref()));
    replace(state, before, &purchase).await?;
    Ok(sold(state, purchase, &product, media.as_ref()))
}

/// Revokes a purchase: the next request under it is refused with `revoked`.
///
/// # Errors
/// No such purchase, or (409) a purchase that kept changing.
pub async fn revoke_buyer(state: &State, hash: &str) -> Result<PurchaseView, AdminError> {
    until_unchanged(|| async {
        let before = find_buyer(state, hash).await?;
        let mut purchase = before.clone();
        purchase.status = PurchaseStatus::Revoked;
        replace(state, before, &purchase).await?;
        view(state, purchase).await
    })
    .await
}

/// A `code` the caller names a purchase's product by (the PPV API's `updatebuyer` and
/// `deletebuyer` send it) must be that product: the caller means another buyer.
///
/// # Errors
/// 400 naming `code`.
fn bought(purchase: &Purchase, code: Option<&str>) -> Result<(), AdminError> {
    match code {
        Some(code) if code != purchase.product => Err(AdminError::invalid(
            "code",
            format!(
                "buyer {} bought product {}, not {code}",
                purchase.hash, purchase.product
            ),
        )),
        _ => Ok(()),
    }
}

/// Deletes a purchase: the next request under it is refused with `no_rights`. `code`,
/// when given (the PPV API's `deletebuyer` sends it), must be the purchase's product, else
/// nothing is deleted.
///
/// # Errors
/// No such purchase, or a `code` that is not its product.
pub async fn delete_buyer(state: &State, hash: &str, code: Option<&str>) -> Result<(), AdminError> {
    let purchase = find_buyer(state, hash).await?;
    bought(&purchase, code)?;
    let h = hash.to_owned();
    blocking(state, move |s| s.delete_purchase(&h)).await?;
    after_purchase_write(state, &purchase.account);
    Ok(())
}

/// A purchase by hash, with its computed window.
///
/// # Errors
/// No such purchase.
pub async fn get_buyer(state: &State, hash: &str) -> Result<PurchaseView, AdminError> {
    let purchase = find_buyer(state, hash).await?;
    view(state, purchase).await
}

async fn find_buyer(state: &State, hash: &str) -> Result<Purchase, AdminError> {
    let h = hash.to_owned();
    find(state, format!("buyer {hash}"), move |s| s.purchase(&h)).await
}

async fn view(state: &State, purchase: Purchase) -> Result<PurchaseView, AdminError> {
    let code = purchase.product.clone();
    let product = blocking(state, move |s| s.product(&code)).await?;
    Ok(PurchaseView::new(purchase, product.as_ref()))
}

/// Purchases matching `filter`, each with its computed window.
///
/// # Errors
/// On a store failure.
pub async fn list_buyers(
    state: &State,
    filter: PurchaseFilter,
    page: Page,
) -> Result<Vec<PurchaseView>, AdminError> {
    blocking(state, move |s| {
        let mut products: HashMap<String, Option<Product>> = HashMap::new();
        s.purchases(&filter, page)?
            .into_iter()
            .map(|purchase| {
                if !products.contains_key(&purchase.product) {
                    let product = s.product(&purchase.product)?;
                    products.insert(purchase.product.clone(), product);
                }
                let product = products[&purchase.product].as_ref();
                Ok(PurchaseView::new(purchase, product))
            })
            .collect()
    })
    .await
}

/// Creates or updates an account: `enabled` (disabling refuses everything it holds from the
/// next request on), `max_sessions` and `max_devices` (account-wide stream limits; 0 lifts
/// one).
///
/// # Errors
/// On a store failure.
pub async fn set_account(state: &State, id: &str, f: &Fields) -> Result<Account, AdminError> {
    let id = fields::id("account", id)?;
    let i = id.clone();
    let mut account = blocking(state, move |s| s.account(&i))
        .await?
        .unwrap_or(Account {
            id,
            enabled: true,
            max_sessions: None,
            max_devices: None,
        });
    let mut r = Reader::new(f);
    if let Some(enabled) = r.flag("enabled")? {
        account.enabled = enabled;
    }
    if let Some(n) = r.limit("max_sessions")? {
        account.max_sessions = n;
    }
    if let Some(n) = r.limit("max_devices")? {
        account.max_devices = n;
    }
    r.finish(&[])?;
    let stored = account.clone();
    blocking(state, move |s| s.put_account(&stored)).await?;
    after_purchase_write(state, &account.id);
    Ok(account)
}

/// An account by id.
///
/// # Errors
/// No such account.
pub async fn get_account(state: &State, id: &str) -> Result<Account, AdminError> {
    let i = id.to_owned();
    find(state, format!("account {id}"), move |s| s.account(&i)).await
}

/// The seller's contacts.
///
/// # Errors
/// On a store failure.
pub async fn contacts(state: &State) -> Result<Contacts, AdminError> {
    blocking(state, |s| s.contacts()).await
}

/// Updates the seller's contacts (`name` required; `phone` or `email` too).
///
/// # Errors
/// Bad fields.
pub async fn update_contacts(state: &State, f: &Fields) -> Result<Contacts, AdminError> {
    let mut r = Reader::new(f);
    let mut c = contacts(state).await?;
    c.name = r.required("name")?.to_owned();
    let phone = r.text("phone");
    let email = r.text("email");
    if phone.is_none() && email.is_none() && c.phone.is_empty() && c.email.is_empty() {
        return Err(AdminError::invalid("phone", "phone or email is required"));
    }
    if let Some(phone) = phone {
        c.phone = phone.to_owned();
    }
    if let Some(email) = email {
        c.email = email.to_owned();
    }
    if let Some(site) = r.text("site") {
        c.site = site.to_owned();
    }
    if let Some(description) = r.text("description") {
        c.description = description.to_owned();
    }
    r.finish(&["apikey"])?;
    let stored = c.clone();
    blocking(state, move |s| s.put_contacts(&stored)).await?;
    Ok(c)
}

/// A live session, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    /// Session id.
    pub sid: String,
    /// The account playing.
    pub account: String,
    /// The purchase it plays under.
    pub purchase: Option<String>,
    /// The product.
    pub product: Option<String>,
    /// The device (hashed).
    pub device: Option<String>,
    /// The client address at start.
    pub ip: String,
    /// When it started.
    pub started_at: u64,
    /// When a request last touched it.
    pub last_seen: u64,
}

/// Live sessions, optionally of one account or product.
pub fn list_sessions(
    state: &State,
    account: Option<&str>,
    product: Option<&str>,
) -> Vec<SessionView> {
    state
        .sessions
        .live((state.clock)())
        .into_iter()
        .filter(|s| account.is_none_or(|a| s.account == a))
        .filter(|s| product.is_none_or(|p| s.product.as_deref() == Some(p)))
        .map(|s| SessionView {
            sid: s.sid.clone(),
            account: s.account.clone(),
            purchase: s.purchase.clone(),
            product: s.product.clone(),
            device: s.device.clone(),
            ip: s.ip.to_string(),
            started_at: s.started_at,
            last_seen: s.last_seen(),
        })
        .collect()
}

/// Ends a session: its next request is refused with `session_ended`.
///
/// # Errors
/// No session by that id here (nor in Redis, when shared), or an end Redis could not record.
pub async fn end_session(state: &State, sid: &str) -> Result<(), AdminError> {
    match state.sessions.end_everywhere(sid).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(AdminError::NotFound(format!("session {sid}"))),
        Err(e) => Err(AdminError::EndNotRecorded(e.to_string())),
    }
}
