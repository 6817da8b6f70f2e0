//! The JSON admin API, `/api/v1/…`. Bodies and answers are JSON; bad input is 400
//! `{"error":"invalid","field":…,"reason":…}`.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::fields::{self, Fields};
use super::ops::{self, AdminError};
use crate::proxy::State;
use crate::rights::model::PurchaseStatus;
use crate::rights::store::{Page, PurchaseFilter};

/// One API answer: a status and a JSON document.
pub type Answer = (StatusCode, Value);

fn page(query: &Fields) -> Result<Page, AdminError> {
    let mut r = fields::Reader::new(query);
    let offset = r.number("offset")?.unwrap_or(0);
    let limit = r.number("limit")?.unwrap_or(100);
    if limit == 0 || limit > Page::MAX_LIMIT {
        return Err(AdminError::invalid(
            "limit",
            format!("must be 1..={}", Page::MAX_LIMIT),
        ));
    }
    Ok(Page { offset, limit })
}

fn listing<T: serde::Serialize>(items: Vec<T>, page: Page) -> Answer {
    (
        StatusCode::OK,
        json!({ "items": items, "offset": page.offset, "limit": page.limit }),
    )
}

fn ok<T: serde::Serialize>(status: StatusCode, value: T) -> Result<Answer, AdminError> {
    Ok((
        status,
        serde_json::to_value(value).expect("model serialises"),
    ))
}

/// Routes one API call. `segments` are the path segments after `/api/v1/`.
///
/// # Errors
/// Any [`AdminError`], rendered by the caller.
pub async fn route(
    state: &State,
    method: &Method,
    segments: &[&str],
    query: &Fields,
    body: &Fields,
) -> Result<Answer, AdminError> {
    use StatusCode as S;
    match (method, segments) {
        (&Method::GET, ["products"]) => {
            let page = page(query)?;
            Ok(listing(ops::list_products(state, page).await?, page))
        }
        (&Method::POST, ["products"]) => ok(S::CREATED, ops::create_product(state, body).await?),
        (&Method::GET, ["products", code]) => ok(S::OK, ops::get_product(state, code).await?),
        (&Method::PATCH | &Method::PUT, ["products", code]) => {
            ok(S::OK, ops::update_product(state, code, body).await?)
        }
        (&Method::DELETE, ["products", code]) => {
            ops::delete_product(state, code).await?;
            ok(S::OK, json!({ "deleted": code }))
        }
        (&Method::GET, ["products", code, "media"]) => {
            let page = page(query)?;
            Ok(listing(ops::product_media(state, code, page).await?, page))
        }
        (&Method::POST, ["products", code, "media"]) => {
            let content = body.get("media").map(String::as_str).unwrap_or("");
            ops::add_media(state, code, content).await?;
            ok(S::OK, json!({ "product": code, "media": content }))
        }
        (&Method::DELETE, ["products", code, "media", content]) => {
            ops::remove_media(state, code, content).await?;
            ok(S::OK, json!({ "product": code, "removed": content }))
        }
        (&Method::GET, ["media"]) => {
            let page = page(query)?;
            let all = ops::list_media(state).await?;
            let items = all
                .into_iter()
                .skip(page.offset as usize)
                .take(page.limit as usize)
                .collect::<Vec<_>>();
            Ok(listing(items, page))
        }
        (&Method::POST, ["media"]) => ok(S::CREATED, ops::create_media(state, body).await?),
        (&Method::GET, ["media", code]) => ok(S::OK, ops::get_media(state, code).await?),
        (&Method::DELETE, ["media", code]) => {
            ops::delete_media(state, code).await?;
            ok(S::OK, json!({ "deleted": code }))
        }
        (&Method::GET, ["buyers"]) => {
            let page = page(query)?;
            let status = match query.get("status").map(String::as_str) {
                None | Some("") => None,
                Some("active") => Some(PurchaseStatus::Active),
                Some("revoked") => Some(PurchaseStatus::Revoked),
                Some(other) => {
                    return Err(AdminError::invalid(
                        "status",
                        format!("\"{other}\": use active or revoked"),
                    ))
                }
            };
            let text = |name: &str| query.get(name).filter(|v| !v.is_empty()).cloned();
            let filter = PurchaseFilter {
                product: text("product"),
                media: text("media"),
                email: text("email"),
                account: text("account"),
                status,
            };
            Ok(listing(ops::list_buyers(state, filter, page).await?, page))
        }
        (&Method::POST, ["buyers"]) => ok(S::CREATED, ops::add_buyer(state, body).await?),
        (&Method::GET, ["buyers", hash]) => ok(S::OK, ops::get_buyer(state, hash).await?),
        (&Method::PATCH | &Method::PUT, ["buyers", hash]) => {
            ok(S::OK, ops::update_buyer(state, hash, body).await?)
        }
        (&Method::DELETE, ["buyers", hash]) => {
            ops::delete_buyer(state, hash).await?;
            ok(S::OK, json!({ "deleted": hash }))
        }
        (&Method::POST, ["buyers", hash, "revoke"]) => {
            ok(S::OK, ops::revoke_buyer(state, hash).await?)
        }
        (&Method::GET, ["buyers", hash, "devices"]) => {
            Ok(listing(ops::devices(state, hash).await?, Page::ALL))
        }
        (&Method::DELETE, ["buyers", hash, "devices", device]) => {
            ops::free_device(state, hash, device).await?;
            ok(S::OK, json!({ "freed": device }))
        }
        (&Method::GET, ["sessions"]) => {
            let text = |name: &str| {
                query
                    .get(name)
                    .map(String::as_str)
                    .filter(|v| !v.is_empty())
            };
            let items = ops::list_sessions(state, text("account"), text("product"));
            ok(S::OK, json!({ "items": items }))
        }
        (&Method::DELETE, ["sessions", sid]) => {
            ops::end_session(state, sid)?;
            ok(S::OK, json!({ "ended": sid }))
        }
        (&Method::POST, ["cache", "purge"]) => {
            let prefix = body
                .get("prefix")
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| {
                    AdminError::invalid("prefix", "required: a path prefix starting with /")
                })?;
            let purged = state.shield.purge(prefix);
            ok(S::OK, json!({ "prefix": prefix, "purged": purged }))
        }
        (&Method::POST, ["rights", "invalidate"]) => {
            ok(S::OK, ops::invalidate_rights(state, body).await?)
        }
        (&Method::GET, ["cache"]) => ok(S::OK, json!({ "bytes": state.shield.size() })),
        (&Method::GET, ["accounts", id]) => ok(S::OK, ops::get_account(state, id).await?),
        (&Method::PUT | &Method::PATCH, ["accounts", id]) => {
            ok(S::OK, ops::set_account(state, id, body).await?)
        }
        _ => Err(AdminError::NoEndpoint),
    }
}
