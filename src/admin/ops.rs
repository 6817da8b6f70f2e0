//! What an operator can do, shared by the JSON API and the PPV facade: each operation
//! checks its input, writes through the store in one transaction, invalidates the cached
//! decisions it touches, and only then returns, so the next request sees it.

use std::sync::Arc;

use super::fields::{self, Fields, Invalid, Reader};
use crate::proxy::State;
use crate::rights::decide::window;
use crate::rights::model::{Account, Contacts, Media, Product, Purchase, PurchaseStatus};
use crate::rights::store::{Page, PurchaseFilter, Store, StoreError};
use crate::ticket::{self, Claims, Kind};

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
    /// No such endpoint (404) or method (405).
    #[error("no such endpoint")]
    NoEndpoint,
    /// The store failed (500); nothing was written.
    #[error("store failure: {0}")]
    Store(String),
}

impl AdminError {
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
        }
    }
}

/// Runs a blocking store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    let store: Arc<dyn Store> = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?
        .map_err(AdminError::from)
}

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

fn after_product_write(state: &State) {
    if let Some(rights) = &state.rights {
        if let Err(e) = rights.invalidate_all() {
            tracing::error!(error = %e, "could not re-read the media index");
        }
    }
}

fn after_purchase_write(state: &State, account: &str) {
    if let Some(rights) = &state.rights {
        rights.invalidate_subject(account);
    }
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
    r.finish(&[
        "apikey",
        "subscription_type",
        "collection_type",
        "materials",
        "buy_redirect_url",
        "custom_url",
        "buyer_commission",
        "downloadable_origin",
        "watermark",
        "watermark_email",
        "watermark_name",
        "watermark_ip",
    ])?;
    let stored = product.clone();
    blocking(state, move |s| s.create_product(&stored)).await?;
    Ok(product)
}

/// Updates a product's fields.
///
/// # Errors
/// Bad fields, or no such product.
pub async fn update_product(state: &State, code: &str, f: &Fields) -> Result<Product, AdminError> {
    let mut product = get_product(state, code).await?;
    let mut r = Reader::new(f);
    r.text("code");
    fields::apply_product(&mut r, &mut product)?;
    r.finish(&[
        "apikey",
        "collection_type",
        "materials",
        "buy_redirect_url",
        "custom_url",
        "buyer_commission",
        "downloadable_origin",
        "watermark",
        "watermark_email",
        "watermark_name",
        "watermark_ip",
    ])?;
    let stored = product.clone();
    blocking(state, move |s| s.update_product(&stored)).await?;
    after_product_write(state);
    Ok(product)
}

/// A product by code.
///
/// # Errors
/// No such product.
pub async fn get_product(state: &State, code: &str) -> Result<Product, AdminError> {
    let code = code.to_owned();
    let what = format!("product {code}");
    blocking(state, move |s| s.product(&code))
        .await?
        .ok_or(AdminError::NotFound(what))
}

/// Deletes a product, its media links and its purchases.
///
/// # Errors
/// No such product.
pub async fn delete_product(state: &State, code: &str) -> Result<(), AdminError> {
    let code = code.to_owned();
    blocking(state, move |s| s.delete_product(&code)).await?;
    after_product_write(state);
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
    after_product_write(state);
    Ok(media)
}

/// A media by code.
///
/// # Errors
/// No such media.
pub async fn get_media(state: &State, code: &str) -> Result<Media, AdminError> {
    let code = code.to_owned();
    let what = format!("media {code}");
    blocking(state, move |s| s.media(&code))
        .await?
        .ok_or(AdminError::NotFound(what))
}

/// Every media.
///
/// # Errors
/// On a store failure.
pub async fn list_media(state: &State) -> Result<Vec<Media>, AdminError> {
    blocking(state, |s| s.all_media()).await
}

/// Deletes a media and its links.
///
/// # Errors
/// No such media.
pub async fn delete_media(state: &State, code: &str) -> Result<(), AdminError> {
    let code = code.to_owned();
    blocking(state, move |s| s.delete_media(&code)).await?;
    after_product_write(state);
    Ok(())
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
    after_product_write(state);
    Ok(())
}

/// Takes a content id out of a product.
///
/// # Errors
/// When it was not in it.
pub async fn remove_media(state: &State, product: &str, content: &str) -> Result<(), AdminError> {
    let (product, content) = (product.to_owned(), content.to_owned());
    blocking(state, move |s| s.unlink(&product, &content)).await?;
    after_product_write(state);
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

/// A purchase with its ticket and the URL that plays it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sold {
    /// The purchase.
    #[serde(flatten)]
    pub purchase: Purchase,
    /// The URL that plays it, when the purchase names one media (or the product has one).
    pub play_url: Option<String>,
}

/// Adds a buyer to a product: records the purchase and issues its ticket.
///
/// # Errors
/// Bad fields, no such product or media.
pub async fn add_buyer(state: &State, f: &Fields) -> Result<Sold, AdminError> {
    let mut r = Reader::new(f);
    let product_code = r
        .required("code")
        .map(str::to_owned)
        .or_else(|_| r.required("product").map(str::to_owned))?;
    let product = get_product(state, &product_code).await?;
    let media = match r.text("media") {
        Some(code) => Some(get_media(state, code).await?),
        None => None,
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
        hash: new_code(10),
        product: product.code.clone(),
        media: media.as_ref().map(|m| m.code.clone()),
        account,
        email: None,
        name: None,
        phone: None,
        access_start: None,
        access_expire: None,
        purchased_at: now,
        first_play_at: None,
        activations: None,
        ticket: None,
        status: PurchaseStatus::Active,
    };
    fields::apply_purchase(&mut r, &mut purchase)?;
    r.finish(&[
        "apikey",
        "notification",
        "custom_url",
        "use_subscription_custom_url",
        "product",
        "code",
        "media",
        "account",
    ])?;
    let media = match media {
        Some(m) => Some(m),
        None => only_media(state, &product.code).await?,
    };
    purchase.ticket = Some(issue_ticket(state, &purchase, &product, media.as_ref()));
    let stored = purchase.clone();
    blocking(state, move |s| s.create_purchase(&stored)).await?;
    after_purchase_write(state, &purchase.account);
    let play_url = media
        .as_ref()
        .map(|m| play_url(state, m, purchase.ticket.as_deref().unwrap_or("")));
    Ok(Sold { purchase, play_url })
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
/// scope, valid from purchase to the end of its window or, when the window has no end yet,
/// for a year. The rights check enforces the window itself; the ticket only has to outlast
/// it.
fn issue_ticket(
    state: &State,
    purchase: &Purchase,
    product: &Product,
    media: Option<&Media>,
) -> String {
    let settings = &state.config.token;
    let (_, end) = window(purchase, product);
    let year = purchase.purchased_at + 365 * 86_400;
    let claims = Claims {
        sub: purchase.account.clone(),
        scope: media.map_or_else(|| "/".to_owned(), |m| m.prefix.clone()),
        nbf: purchase
            .purchased_at
            .saturating_sub(settings.clock_skew.as_secs()),
        exp: end.map_or(year, |e| {
            e.max(purchase.purchased_at + settings.ticket_ttl.as_secs())
        }),
        dev: None,
        ip: None,
        sid: None,
        cap: 0,
        allow: Vec::new(),
    };
    ticket::sign(&settings.keys, Kind::Ticket, &claims)
}

/// The URL that plays `media` with `ticket`.
pub fn play_url(state: &State, media: &Media, ticket: &str) -> String {
    let base = state.public_url.get().map_or("", String::as_str);
    format!(
        "{base}{}{}?{}={ticket}",
        media.prefix, media.playlist, state.config.token.ticket_param
    )
}

/// Updates a buyer's fields (dates, activations, name, status); reissues the ticket when
/// the window grew past it.
///
/// # Errors
/// Bad fields, or no such purchase.
pub async fn update_buyer(state: &State, hash: &str, f: &Fields) -> Result<Sold, AdminError> {
    let mut purchase = get_buyer(state, hash).await?;
    let mut r = Reader::new(f);
    fields::apply_purchase(&mut r, &mut purchase)?;
    r.finish(&["apikey", "code", "hash"])?;
    let product = get_product(state, &purchase.product).await?;
    let media = match &purchase.media {
        Some(code) => Some(get_media(state, code).await?),
        None => only_media(state, &product.code).await?,
    };
    purchase.ticket = Some(issue_ticket(state, &purchase, &product, media.as_ref()));
    let stored = purchase.clone();
    blocking(state, move |s| s.update_purchase(&stored)).await?;
    after_purchase_write(state, &purchase.account);
    let play_url = media
        .as_ref()
        .map(|m| play_url(state, m, purchase.ticket.as_deref().unwrap_or("")));
    Ok(Sold { purchase, play_url })
}

/// Revokes a purchase: the next request under it is refused with `revoked`.
///
/// # Errors
/// No such purchase.
pub async fn revoke_buyer(state: &State, hash: &str) -> Result<Purchase, AdminError> {
    let mut purchase = get_buyer(state, hash).await?;
    purchase.status = PurchaseStatus::Revoked;
    let stored = purchase.clone();
    blocking(state, move |s| s.update_purchase(&stored)).await?;
    after_purchase_write(state, &purchase.account);
    Ok(purchase)
}

/// Deletes a purchase: the next request under it is refused with `no_rights`.
///
/// # Errors
/// No such purchase.
pub async fn delete_buyer(state: &State, hash: &str) -> Result<(), AdminError> {
    let purchase = get_buyer(state, hash).await?;
    let h = hash.to_owned();
    blocking(state, move |s| s.delete_purchase(&h)).await?;
    after_purchase_write(state, &purchase.account);
    Ok(())
}

/// A purchase by hash.
///
/// # Errors
/// No such purchase.
pub async fn get_buyer(state: &State, hash: &str) -> Result<Purchase, AdminError> {
    let h = hash.to_owned();
    let what = format!("buyer {hash}");
    blocking(state, move |s| s.purchase(&h))
        .await?
        .ok_or(AdminError::NotFound(what))
}

/// Purchases matching `filter`.
///
/// # Errors
/// On a store failure.
pub async fn list_buyers(
    state: &State,
    filter: PurchaseFilter,
    page: Page,
) -> Result<Vec<Purchase>, AdminError> {
    blocking(state, move |s| s.purchases(&filter, page)).await
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
    if let Some(n) = r.number("max_sessions")? {
        account.max_sessions = (n > 0).then_some(n);
    }
    if let Some(n) = r.number("max_devices")? {
        account.max_devices = (n > 0).then_some(n);
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
    let what = format!("account {id}");
    blocking(state, move |s| s.account(&i))
        .await?
        .ok_or(AdminError::NotFound(what))
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
/// No such session.
pub fn end_session(state: &State, sid: &str) -> Result<(), AdminError> {
    if state.sessions.end(sid) {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!("session {sid}")))
    }
}

/// The devices that activated a purchase.
///
/// # Errors
/// No such purchase.
pub async fn devices(
    state: &State,
    hash: &str,
) -> Result<Vec<crate::rights::model::Binding>, AdminError> {
    get_buyer(state, hash).await?;
    let h = hash.to_owned();
    blocking(state, move |s| s.devices(&h)).await
}

/// Frees the activation a device holds on a purchase ("delete device from customer").
///
/// # Errors
/// No such purchase or binding.
pub async fn free_device(state: &State, hash: &str, device: &str) -> Result<(), AdminError> {
    let (h, d) = (hash.to_owned(), device.to_owned());
    blocking(state, move |s| s.unbind_device(&h, &d)).await
}
