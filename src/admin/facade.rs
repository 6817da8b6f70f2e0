//! The PPV REST API compatibility facade: `/api/ppv/<method>` with `apikey` and the
//! documented parameters (query string or form body), answering XML with the document's
//! element names and `<Status>`, so an integration written against that API works against
//! usher unchanged. Errors answer `<Status>Failed</Status>` with a `<Message>` and the
//! matching HTTP status. Also `sendVideoTicket.php` (email, firstName, vidID), which
//! issues a ticket and answers its link.

use super::fields::Fields;
use super::ops::PurchaseView;
use super::ops::{self, AdminError};
use super::xml::Xml;
use crate::proxy::State;
use crate::rights::date;
use crate::rights::decide::sellable;
use crate::rights::model::{Media, Product, Purchase};
use crate::rights::store::{Page, PurchaseFilter};

fn required<'f>(f: &'f Fields, name: &str) -> Result<&'f str, AdminError> {
    f.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            AdminError::Invalid(super::fields::Invalid {
                field: name.to_owned(),
                reason: "required".to_owned(),
            })
        })
}

/// The paging of a facade list, refusing any parameter it does not take besides `names`
/// (`apikey` and the document's `ver` are always taken).
fn list_page(f: &Fields, names: &[&'static str]) -> Result<Page, AdminError> {
    let mut r = super::fields::Reader::new(f);
    r.text("apikey");
    r.text("ver");
    for name in names {
        r.text(name);
    }
    let offset = r.number("offset")?.unwrap_or(0);
    let limit = r.number("limit")?.unwrap_or(100);
    if limit == 0 || limit > Page::MAX_LIMIT {
        return Err(AdminError::invalid(
            "limit",
            format!("must be 1..={}", Page::MAX_LIMIT),
        ));
    }
    r.deny_unknown()?;
    Ok(Page { offset, limit })
}

fn date_or_empty(t: Option<u64>) -> String {
    t.map(date::format).unwrap_or_default()
}

fn period(p: &Product) -> String {
    p.period_days.map(|d| d.to_string()).unwrap_or_default()
}

fn kind(p: &Product) -> &'static str {
    match p.kind {
        crate::rights::model::ProductType::Single => "single",
        crate::rights::model::ProductType::Group => "group",
    }
}

fn product_item(xml: &mut Xml, p: &Product, with_type: bool) {
    xml.open("Item");
    xml.leaf("Code", &p.code).leaf("Name", &p.name);
    if with_type {
        xml.leaf("Type", kind(p));
    }
    xml.leaf("Cost", p.cost.as_deref().unwrap_or(""))
        .leaf("Period", &period(p))
        .leaf("AccessExpirationDate", &date_or_empty(p.access_expire))
        .leaf("Description", &p.description);
    xml.close();
}

fn media_item(state: &State, xml: &mut Xml, m: &Media) {
    let base = state.public_url.get().map_or("", String::as_str);
    xml.open("Item");
    xml.leaf("Title", &m.title)
        .leaf("Code", &m.code)
        .leaf("PublishKey", "")
        .leaf("OnlineStatus", if m.live { "True" } else { "False" })
        .leaf("RecordStatus", "False")
        .leaf("Concurrent", "0")
        .leaf("CreationDate", &date::format(m.created_at))
        .leaf("Type", if m.live { "live" } else { "video" })
        .leaf("MediaStatus", "Done");
    xml.open("Adaptive")
        .leaf("AppleHLS", &format!("{base}{}{}", m.prefix, m.playlist))
        .close();
    xml.close();
}

/// A sale's answer: the buyer with its ticket and play URL, after an optional message.
async fn sold_answer(
    state: &State,
    sold: ops::Sold,
    message: Option<&str>,
) -> Result<String, AdminError> {
    let product = ops::get_product(state, &sold.purchase.product).await?;
    let mut xml = Xml::new("Response");
    if let Some(message) = message {
        xml.leaf("Message", message);
    }
    xml.open("Items");
    buyer_item(
        &mut xml,
        &sold.purchase,
        Some(&product),
        Some(sold.play_url.as_deref().unwrap_or("")),
    );
    xml.close();
    Ok(success(xml))
}

/// One buyer. The access dates are the computed window (what the rights check enforces),
/// and `<AccessEndsAt>` repeats the end under the JSON API's name.
fn buyer_item(xml: &mut Xml, b: &PurchaseView, p: Option<&Product>, extra: Option<&str>) {
    xml.open("Item");
    xml.leaf("Email", b.email.as_deref().unwrap_or(""))
        .leaf("Hash", &b.hash)
        .leaf("Period", &p.map(period).unwrap_or_default());
    if extra.is_some() {
        xml.leaf("AccessStartDate", &date::format(b.access_starts_at));
    }
    xml.leaf("AccessExpirationDate", &date_or_empty(b.access_ends_at))
        .leaf("DatePurchase", &date::format(b.purchased_at));
    if let Some(url) = extra {
        xml.leaf("Ticket", b.ticket.as_deref().unwrap_or(""));
        xml.leaf("PlayUrl", url);
    }
    xml.leaf("AccessEndsAt", &date_or_empty(b.access_ends_at));
    xml.close();
}

fn success(mut xml: Xml) -> String {
    xml.leaf("Status", "Success");
    xml.finish()
}

fn message(text: &str) -> String {
    let mut xml = Xml::new("Response");
    xml.leaf("Message", text);
    success(xml)
}

/// The XML body for an error.
pub fn failure(message: &str) -> String {
    failure_with(message, None)
}

/// The XML body for an error with a machine-readable `<Reason>` (a refused sale:
/// `product_inactive`, `product_unavailable`, `window_ended`, `media_not_in_product`; a
/// reused idempotency key: `idempotency_key_reused`).
pub fn failure_with(message: &str, reason: Option<&str>) -> String {
    let mut xml = Xml::new("Response");
    xml.leaf("Message", message);
    if let Some(reason) = reason {
        xml.leaf("Reason", reason);
    }
    xml.leaf("Status", "Failed");
    xml.finish()
}

/// Answers `/api/ppv/<method>` with `fields` (already authenticated).
///
/// # Errors
/// Any [`AdminError`]; the caller renders it with [`failure`].
pub async fn call(state: &State, method: &str, f: &Fields) -> Result<String, AdminError> {
    // Every call of the document takes `ver`, its API version ("current version is 1.1");
    // usher answers the one it implements, so `ver` is taken and set aside here, never
    // refused as an unknown field nor read as a product's or a buyer's.
    let mut f = f.clone();
    f.remove("ver");
    let f = &f;
    match method {
        "create" => {
            let p = ops::create_product(state, f).await?;
            let mut xml = Xml::new("Response");
            xml.open("Items");
            product_item(&mut xml, &p, true);
            xml.close();
            Ok(success(xml))
        }
        "update" => {
            let p = ops::update_product(state, required(f, "code")?, f).await?;
            let mut xml = Xml::new("Response");
            xml.open("Items");
            product_item(&mut xml, &p, false);
            xml.close();
            Ok(success(xml))
        }
        "delete" => {
            let force = super::fields::Reader::new(f)
                .flag("force")?
                .unwrap_or(false);
            ops::delete_product(state, required(f, "code")?, force).await?;
            Ok(success(Xml::new("Response")))
        }
        "list" => {
            let products = ops::list_products(state, list_page(f, &[])?).await?;
            let mut xml = Xml::new("Response");
            xml.open("Items");
            for p in &products {
                let files = ops::product_media(state, &p.code, Page::ALL).await?;
                xml.open("Item");
                xml.leaf("Name", &p.name)
                    .leaf("Code", &p.code)
                    .leaf("Cost", p.cost.as_deref().unwrap_or(""))
                    .leaf("Period", &period(p))
                    .leaf("AccessExpirationDate", &date_or_empty(p.access_expire))
                    .leaf("AmountFiles", &files.len().to_string())
                    .leaf("Type", kind(p))
                    .leaf("AddedDate", &date::format(p.created_at))
                    .leaf("Description", &p.description);
                xml.close();
            }
            xml.close();
            Ok(success(xml))
        }
        "addmedia" => {
            let code = required(f, "code")?;
            let media = required(f, "media")?;
            ops::add_media(state, code, media).await?;
            let m = ops::get_media(state, media).await;
            let mut xml = Xml::new("Response");
            xml.open("Medias");
            if let Ok(m) = m {
                media_item(state, &mut xml, &m);
            }
            xml.close();
            Ok(success(xml))
        }
        "deletemedia" => {
            let force = super::fields::Reader::new(f)
                .flag("force")?
                .unwrap_or(false);
            let (code, media) = (required(f, "code")?, required(f, "media")?);
            ops::remove_media(state, code, media, force).await?;
            Ok(success(Xml::new("Response")))
        }
        "listmedia" => {
            let page = list_page(f, &["code"])?;
            let media = ops::product_media(state, required(f, "code")?, page).await?;
            let mut xml = Xml::new("Response");
            xml.open("Medias");
            for m in &media {
                media_item(state, &mut xml, m);
            }
            xml.close();
            Ok(success(xml))
        }
        "addbuyer" => sold_answer(state, ops::add_buyer(state, f).await?, None).await,
        "updatebuyer" => {
            let sold = ops::update_buyer(state, required(f, "hash")?, f).await?;
            sold_answer(state, sold, Some("Recovery code is updated")).await
        }
        "deletebuyer" => {
            let code = f.get("code").map(|c| c.trim()).filter(|c| !c.is_empty());
            ops::delete_buyer(state, required(f, "hash")?, code).await?;
            Ok(message("Recovery code is deleted"))
        }
        "listbuyers" => {
            let page = list_page(f, &["code", "media", "email"])?;
            let product = ops::get_product(state, required(f, "code")?).await?;
            let filter = PurchaseFilter {
                product: Some(product.code.clone()),
                media: f.get("media").filter(|m| !m.is_empty()).cloned(),
                email: f.get("email").filter(|m| !m.is_empty()).cloned(),
                ..PurchaseFilter::default()
            };
            let buyers = ops::list_buyers(state, filter, page).await?;
            let mut xml = Xml::new("Response");
            xml.open("Items");
            for b in &buyers {
                buyer_item(&mut xml, b, Some(&product), None);
            }
            xml.close();
            Ok(success(xml))
        }
        "contacts" => Ok(contacts_xml(&ops::contacts(state).await?, None)),
        "updatecontacts" => Ok(contacts_xml(
            &ops::update_contacts(state, f).await?,
            Some("Updated success"),
        )),
        _ => Err(AdminError::NoEndpoint),
    }
}

fn contacts_xml(c: &crate::rights::model::Contacts, note: Option<&str>) -> String {
    let mut xml = Xml::new("Response");
    xml.leaf("Name", &c.name)
        .leaf("Phone", &c.phone)
        .leaf("Email", &c.email)
        .leaf("Site", &c.site)
        .leaf("Description", &c.description);
    if let Some(note) = note {
        xml.leaf("Message", note);
    }
    success(xml)
}

/// `sendVideoTicket.php`: `email`, `firstName` (both required, as documented), `vidID` (a
/// media code) → a purchase of the first product that contains the media and can be sold
/// now, and the link that plays it. An `order_id` (or `Idempotency-Key` header) makes a
/// resubmitted thank-you page answer the first sale's link again.
///
/// # Errors
/// Missing fields, no product sells that media, or none can sell it now (409, the first
/// product's reason).
pub async fn video_ticket(state: &State, f: &Fields) -> Result<VideoTicket, AdminError> {
    let email = required(f, "email")?;
    let name = required(f, "firstName")?;
    let media = required(f, "vidID")?;
    let code = media.to_owned();
    // A product holds the media by its code, or by its editorial id (all renditions).
    let mut sellers = ops::blocking(state, move |s| match s.media(&code)? {
        Some(m) => s.products_holding(&m.code, m.editorial.as_deref().unwrap_or(&m.code)),
        None => Ok(Vec::new()),
    })
    .await?;
    let now = (state.clock)();
    let sale_now = |p: &Product| {
        let probe = Purchase::new(String::new(), &p.code, String::new(), now);
        sellable(&probe, p, now).is_ok()
    };
    // The first product that can sell it now; else the first, whose refusal is the answer.
    let product = match sellers.iter().position(sale_now) {
        Some(i) => sellers.swap_remove(i),
        None if !sellers.is_empty() => sellers.swap_remove(0),
        None => return Err(AdminError::NotFound(format!("a product selling {media}"))),
    };
    let mut fields = Fields::new();
    fields.insert("code".into(), product.code);
    fields.insert("media".into(), media.to_owned());
    fields.insert("email".into(), email.to_owned());
    fields.insert("name".into(), name.to_owned());
    let sold = ops::sell(state, &fields, f).await?;
    Ok(VideoTicket {
        hash: sold.purchase.purchase.hash,
        play_url: sold.play_url.unwrap_or_default(),
    })
}

/// What `sendVideoTicket.php` sold: the purchase (for the audit trail) and the link that
/// plays it (the answer).
pub struct VideoTicket {
    /// The purchase's hash.
    pub hash: String,
    /// The link, answered as plain text.
    pub play_url: String,
}

impl super::audit::Answered for VideoTicket {
    fn field(&self, name: &str) -> Option<String> {
        (name == "hash").then(|| self.hash.clone())
    }
}
