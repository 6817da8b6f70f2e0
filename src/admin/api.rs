//! The JSON admin API, `/api/v1/…`. Bodies and answers are JSON; bad input is 400
//! `{"error":"invalid","field":…,"reason":…}`. Lists are in [`super::lists`]; which calls
//! are writes, and how they are recorded, is in [`super::audit`].

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::fields::{self, Fields};
use super::lists;
use super::ops::{self, AdminError};
use crate::proxy::State;

/// One API answer: a status and a JSON document.
pub type Answer = (StatusCode, Value);

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
    // Writes take their fields from the body; a parameter in the query (a sale's
    // `order_id`, say) would be ignored, so it is refused by name. Deleting a media or a
    // product, or taking a media out of one, reads its `force` itself.
    let reads_query = method == Method::GET
        || (method == Method::DELETE
            && matches!(
                segments,
                ["media", _] | ["products", _] | ["products", _, "media", _]
            ));
    if !reads_query {
        fields::Reader::new(query).deny_unknown()?;
    }
    match (method, segments) {
        (&Method::GET, ["products"]) => lists::products(state, query).await,
        (&Method::POST, ["products"]) => ok(S::CREATED, ops::create_product(state, body).await?),
        (&Method::GET, ["products", code]) => ok(S::OK, ops::get_product(state, code).await?),
        (&Method::PATCH | &Method::PUT, ["products", code]) => {
            ok(S::OK, ops::update_product(state, code, body).await?)
        }
        (&Method::DELETE, ["products", code]) => {
            let mut r = fields::Reader::new(query);
            let force = r.flag("force")?.unwrap_or(false);
            r.deny_unknown()?;
            ops::delete_product(state, code, force).await?;
            ok(S::OK, json!({ "deleted": code }))
        }
        (&Method::GET, ["products", code, "media"]) => {
            lists::product_media(state, code, query).await
        }
        (&Method::POST, ["products", code, "media"]) => {
            let content = body.get("media").map(String::as_str).unwrap_or("");
            ops::add_media(state, code, content).await?;
            ok(S::OK, json!({ "product": code, "media": content }))
        }
        (&Method::DELETE, ["products", code, "media", content]) => {
            let mut r = fields::Reader::new(query);
            let force = r.flag("force")?.unwrap_or(false);
            r.deny_unknown()?;
            ops::remove_media(state, code, content, force).await?;
            ok(S::OK, json!({ "product": code, "removed": content }))
        }
        (&Method::GET, ["media"]) => lists::media(state, query).await,
        (&Method::POST, ["media"]) => ok(S::CREATED, ops::create_media(state, body).await?),
        (&Method::GET, ["media", code]) => ok(S::OK, ops::get_media(state, code).await?),
        (&Method::PATCH | &Method::PUT, ["media", code]) => {
            ok(S::OK, ops::update_media(state, code, body).await?)
        }
        (&Method::DELETE, ["media", code]) => {
            let mut r = fields::Reader::new(query);
            let force = r.flag("force")?.unwrap_or(false);
            r.deny_unknown()?;
            ops::delete_media(state, code, force).await?;
            ok(S::OK, json!({ "deleted": code }))
        }
        (&Method::GET, ["buyers"]) => lists::buyers(state, query).await,
        (&Method::POST, ["buyers"]) => ok(S::CREATED, ops::add_buyer(state, body).await?),
        (&Method::GET, ["buyers", hash]) => ok(S::OK, ops::get_buyer(state, hash).await?),
        (&Method::PATCH | &Method::PUT, ["buyers", hash]) => {
            ok(S::OK, ops::update_buyer(state, hash, body).await?)
        }
        (&Method::DELETE, ["buyers", hash]) => {
            ops::delete_buyer(state, hash, None).await?;
            ok(S::OK, json!({ "deleted": hash }))
        }
        (&Method::POST, ["buyers", hash, "revoke"]) => {
            ok(S::OK, ops::revoke_buyer(state, hash).await?)
        }
        (&Method::GET, ["buyers", hash, "devices"]) => lists::devices(state, hash, query).await,
        (&Method::POST, ["buyers", hash, "devices"]) => {
            ok(S::CREATED, ops::add_device(state, hash, body).await?)
        }
        (&Method::DELETE, ["buyers", hash, "devices", device]) => {
            ok(S::OK, ops::free_device(state, hash, device).await?)
        }
        (&Method::GET, ["sessions"]) => lists::sessions(state, query).await,
        (&Method::GET, ["audit"]) => lists::audit(state, query).await,
        (&Method::DELETE, ["sessions", sid]) => {
            ops::end_session(state, sid).await?;
            ok(S::OK, json!({ "ended": sid }))
        }
        (&Method::POST, ["cache", "purge"]) => {
            let prefix = body
                .get("prefix")
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| {
                    AdminError::invalid("prefix", "required: a path prefix starting with /")
                })?;
            ok(S::OK, ops::purge_cache(state, prefix).await?)
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
