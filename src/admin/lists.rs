//! The JSON API's lists. Each reads its query through a [`Reader`] and refuses any
//! parameter it does not take (400 naming it), so a misspelt filter never selects
//! everything. Each answers `{"items", "offset", "limit", "total", "next"}`: `next` is an
//! opaque cursor for the following page (`?cursor=`), `null` on the last; `offset` keeps
//! working. Buyers also export as CSV.

use http::StatusCode;
use serde_json::{json, Value};

use super::api::Answer;
use super::fields::{Fields, Reader};
use super::ops::{self, AdminError};
use crate::proxy::State;
use crate::rights::date;
use crate::rights::model::{Purchase, PurchaseStatus};
use crate::rights::store::{AuditFilter, Page, PurchaseFilter};

/// What a cursor says before encoding: the version and the offset it continues at.
const CURSOR_PREFIX: &str = "o1:";

/// The cursor that continues at `offset`.
fn cursor(offset: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{offset}"))
}

fn offset_of(cursor: &str) -> Option<u32> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix(CURSOR_PREFIX)?
        .parse()
        .ok()
}

/// `offset`, `limit` and `cursor` (which replaces `offset`).
///
/// # Errors
/// A bad number, a limit out of range, a cursor this API did not make, or both a cursor
/// and an offset.
pub fn page(r: &mut Reader<'_>) -> Result<Page, AdminError> {
    let offset = r.number("offset")?;
    let limit = r.number("limit")?.unwrap_or(100);
    if limit == 0 || limit > Page::MAX_LIMIT {
        return Err(AdminError::invalid(
            "limit",
            format!("must be 1..={}", Page::MAX_LIMIT),
        ));
    }
    let offset = match (r.text("cursor"), offset) {
        (Some(_), Some(_)) => {
            return Err(AdminError::invalid(
                "cursor",
                "give cursor or offset, not both",
            ))
        }
        (Some(c), None) => offset_of(c)
            .ok_or_else(|| AdminError::invalid("cursor", "not a cursor from this API"))?,
        (None, offset) => offset.unwrap_or(0),
    };
    Ok(Page { offset, limit })
}

/// A page of a listing with its total and the cursor of the next page.
fn listing<T: serde::Serialize>(items: Vec<T>, page: Page, total: u64) -> Answer {
    let end = u64::from(page.offset) + items.len() as u64;
    let next = (end < total && !items.is_empty()).then(|| cursor(end));
    (
        StatusCode::OK,
        json!({
            "items": items,
            "offset": page.offset,
            "limit": page.limit,
            "total": total,
            "next": next,
        }),
    )
}

/// A page cut from a whole list held in memory.
fn cut<T: serde::Serialize>(all: Vec<T>, page: Page) -> Answer {
    let total = all.len() as u64;
    let items: Vec<T> = all
        .into_iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .collect();
    listing(items, page, total)
}

/// A list that takes paging only.
fn paging_only(query: &Fields) -> Result<Page, AdminError> {
    let mut r = Reader::new(query);
    let page = page(&mut r)?;
    r.deny_unknown()?;
    Ok(page)
}

/// `GET /api/v1/products`.
///
/// # Errors
/// Bad or unknown parameters; a store failure.
pub async fn products(state: &State, query: &Fields) -> Result<Answer, AdminError> {
    let page = paging_only(query)?;
    let items = ops::list_products(state, page).await?;
    let total = ops::blocking(state, |s| s.product_count()).await?;
    Ok(listing(items, page, total))
}

/// `GET /api/v1/media`.
///
/// # Errors
/// Bad or unknown parameters; a store failure.
pub async fn media(state: &State, query: &Fields) -> Result<Answer, AdminError> {
    let page = paging_only(query)?;
    Ok(cut(ops::list_media(state).await?, page))
}

/// `GET /api/v1/products/{code}/media`.
///
/// # Errors
/// Bad or unknown parameters; no such product.
pub async fn product_media(
    state: &State,
    code: &str,
    query: &Fields,
) -> Result<Answer, AdminError> {
    let page = paging_only(query)?;
    let all = Page {
        offset: 0,
        limit: u32::MAX,
    };
    Ok(cut(ops::product_media(state, code, all).await?, page))
}

/// `GET /api/v1/buyers/{hash}/devices`.
///
/// # Errors
/// Bad or unknown parameters; no such purchase.
pub async fn devices(state: &State, hash: &str, query: &Fields) -> Result<Answer, AdminError> {
    let page = paging_only(query)?;
    Ok(cut(ops::devices(state, hash).await?, page))
}

/// `GET /api/v1/sessions`: filters `account`, `product`, `purchase`.
///
/// # Errors
/// Bad or unknown parameters; a `product` that does not exist (404, as for the buyers
/// list: a mistyped code would read as "nobody plays it").
pub async fn sessions(state: &State, query: &Fields) -> Result<Answer, AdminError> {
    let mut r = Reader::new(query);
    let page = page(&mut r)?;
    let (account, product, purchase) = (r.text("account"), r.text("product"), r.text("purchase"));
    r.deny_unknown()?;
    if let Some(code) = product {
        ops::get_product(state, code).await?;
    }
    let all: Vec<_> = ops::list_sessions(state, account, product)
        .into_iter()
        .filter(|s| purchase.is_none_or(|p| s.purchase.as_deref() == Some(p)))
        .collect();
    Ok(cut(all, page))
}

/// The filters of the buyers list, and whether CSV was asked for with `format`.
fn buyer_filter(r: &mut Reader<'_>) -> Result<(PurchaseFilter, Option<bool>), AdminError> {
    let status = match r.text("status") {
        None => None,
        Some("active") => Some(PurchaseStatus::Active),
        Some("revoked") => Some(PurchaseStatus::Revoked),
        Some(other) => {
            return Err(AdminError::invalid(
                "status",
                format!("\"{other}\": use active or revoked"),
            ))
        }
    };
    let csv = match r.text("format") {
        None => None,
        Some("json") => Some(false),
        Some("csv") => Some(true),
        Some(other) => {
            return Err(AdminError::invalid(
                "format",
                format!("\"{other}\": use json or csv"),
            ))
        }
    };
    let mut text = |name| r.text(name).map(str::to_owned);
    let filter = PurchaseFilter {
        product: text("product"),
        media: text("media"),
        email: text("email"),
        account: text("account"),
        status,
    };
    Ok((filter, csv))
}

/// Refuses a `product` filter naming no product (404), as the facade's `listbuyers`
/// does: a mistyped code would otherwise list nobody, as if the product had no buyers.
async fn known_product(state: &State, filter: &PurchaseFilter) -> Result<(), AdminError> {
    match &filter.product {
        Some(code) => ops::get_product(state, code).await.map(drop),
        None => Ok(()),
    }
}

/// Whether a buyers list call asks for CSV: `format=csv`, or `Accept: text/csv` without
/// `format=json`.
pub fn wants_csv(query: &Fields, accept: Option<&str>) -> bool {
    match query.get("format").map(|f| f.trim()) {
        Some("csv") => true,
        Some("json") => false,
        _ => accept.is_some_and(|a| a.contains("text/csv")),
    }
}

/// `GET /api/v1/buyers`: filters `product`, `media`, `email`, `account`, `status`.
///
/// # Errors
/// Bad or unknown parameters; a `product` that does not exist; a store failure.
pub async fn buyers(state: &State, query: &Fields) -> Result<Answer, AdminError> {
    let mut r = Reader::new(query);
    let page = page(&mut r)?;
    let (filter, _) = buyer_filter(&mut r)?;
    r.deny_unknown()?;
    known_product(state, &filter).await?;
    let f = filter.clone();
    let total = ops::blocking(state, move |s| s.purchase_count(&f)).await?;
    let items = ops::list_buyers(state, filter, page).await?;
    Ok(listing(items, page, total))
}

/// The CSV export's columns, in order. The ticket is left out: a CSV file travels
/// (spreadsheets, mail) where a credential should not; `GET /api/v1/buyers/{hash}` has it.
pub const CSV_COLUMNS: &[&str] = &[
    "hash",
    "product",
    "media",
    "account",
    "email",
    "name",
    "phone",
    "status",
    "access_start",
    "access_expire",
    "purchased_at",
    "first_play_at",
    "activations",
];

/// `GET /api/v1/buyers` as CSV: a header row, then one row per purchase (every match,
/// unless `limit`, `offset` or `cursor` say otherwise); times as `YYYY-MM-DD HH:MM:SS` UTC.
///
/// # Errors
/// Bad or unknown parameters; a `product` that does not exist; a store failure.
pub async fn buyers_csv(state: &State, query: &Fields) -> Result<String, AdminError> {
    let mut r = Reader::new(query);
    let paged = ["offset", "limit", "cursor"]
        .iter()
        .any(|k| query.get(*k).is_some_and(|v| !v.trim().is_empty()));
    let first = page(&mut r)?;
    let (filter, _) = buyer_filter(&mut r)?;
    r.deny_unknown()?;
    known_product(state, &filter).await?;
    let mut out = csv_row(CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
    let mut page = if paged {
        first
    } else {
        Page {
            offset: 0,
            limit: Page::MAX_LIMIT,
        }
    };
    loop {
        let rows = ops::list_buyers(state, filter.clone(), page).await?;
        for p in &rows {
            out.push_str(&csv_row(csv_values(p)));
        }
        if paged || (rows.len() as u32) < page.limit {
            return Ok(out);
        }
        page.offset += page.limit;
    }
}

fn csv_values(p: &Purchase) -> impl Iterator<Item = String> {
    let v = serde_json::to_value(p).expect("model serialises");
    CSV_COLUMNS.iter().map(move |c| match v.get(*c) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if c.ends_with("_at") || c.starts_with("access_") => n
            .as_u64()
            .map(date::format)
            .unwrap_or_else(|| n.to_string()),
        Some(other) => other.to_string(),
    })
}

/// One CSV line (RFC 4180): fields with a comma, quote or line break are quoted, quotes
/// doubled; a field starting with `= + - @`, a tab or a CR gets a leading `'` so a spreadsheet does not
/// run it as a formula.
fn csv_row(fields: impl Iterator<Item = String>) -> String {
    let mut line = fields
        .map(|f| {
            let f = if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{f}")
            } else {
                f
            };
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// `GET /api/v1/audit`: filters `purchase`, `account`, `action`, `since` (a date or Unix
/// seconds); oldest first.
///
/// # Errors
/// Bad or unknown parameters; a store failure.
pub async fn audit(state: &State, query: &Fields) -> Result<Answer, AdminError> {
    let mut r = Reader::new(query);
    let page = page(&mut r)?;
    let mut text = |name| r.text(name).map(str::to_owned);
    let (purchase, account, action) = (text("purchase"), text("account"), text("action"));
    let filter = AuditFilter {
        purchase,
        account,
        action,
        since: r.since("since")?,
    };
    r.deny_unknown()?;
    let (items, total) = ops::blocking(state, move |s| s.audit(&filter, page)).await?;
    Ok(listing(items, page, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        assert_eq!(offset_of(&cursor(300)), Some(300));
        assert_eq!(offset_of("300"), None);
        let q: Fields = [("cursor".to_owned(), "bm9wZQ".to_owned())].into();
        let err = page(&mut Reader::new(&q)).unwrap_err();
        assert!(matches!(err, AdminError::Invalid(i) if i.field == "cursor"));
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let row = csv_row(
            ["plain", "a,b", "say \"hi\"", "=SUM(A1)", ""]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        assert_eq!(row, "plain,\"a,b\",\"say \"\"hi\"\"\",'=SUM(A1),\r\n");
    }

    #[test]
    fn an_unknown_filter_is_named() {
        let q: Fields = [("emial".to_owned(), "a@x".to_owned())].into();
        let mut r = Reader::new(&q);
        page(&mut r).unwrap();
        buyer_filter(&mut r).unwrap();
        let err = r.deny_unknown().unwrap_err();
        assert_eq!(err.field, "emial");
        assert!(err.reason.contains("email"), "{}", err.reason);
    }
}
