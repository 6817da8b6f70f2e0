//! Buyers (purchases and their tickets), accounts, device activations, live sessions and
//! the seller's contacts.

use super::fields::{self, Fields, Reader};
use super::{
    after_purchase_write, blocking, find, get_media, get_product, new_code, product_media,
    AdminError,
};
use crate::proxy::State;
use crate::rights::decide::window;
use crate::rights::model::{Account, Contacts, Media, Product, Purchase, PurchaseStatus};
use crate::rights::store::{Page, PurchaseFilter};
use crate::ticket::{self, Claims, Kind};
use crate::webhooks::Event;

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
    state
        .webhooks
        .record(Event::Purchase((&purchase).into()))
        .await;
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
        media.prefix,
        media.playlist,
        state.config().token.ticket_param
    )
}

/// Updates a buyer's fields (dates, activations, name, status); reissues the ticket when
/// the window grew past it.
///
/// # Errors
/// Bad fields, or no such purchase.
pub async fn update_buyer(state: &State, hash: &str, f: &Fields) -> Result<Sold, AdminError> {
    let mut purchase = get_buyer(state, hash).await?;
    let was_revoked = purchase.status == PurchaseStatus::Revoked;
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
    if !was_revoked && purchase.status == PurchaseStatus::Revoked {
        state
            .webhooks
            .record(Event::Revoke((&purchase).into()))
            .await;
    }
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
    state
        .webhooks
        .record(Event::Revoke((&purchase).into()))
        .await;
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
    find(state, format!("buyer {hash}"), move |s| s.purchase(&h)).await
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
