//! The admin listener, loopback by default. Endpoints:
//!
//! | method | path | answer |
//! | ------ | ---- | ------ |
//! | GET | `/metrics` | Prometheus text exposition of every usher metric |
//! | GET | `/healthz` | 200 `{"status":"ok"}` while the process runs |
//! | GET | `/readyz` | 200 once config, keys, store, TLS and listeners are loaded; 503 before |
//! | POST | `/reload` | re-read the config file (as SIGHUP); 200, or 400 with the problems and nothing changed (needs the admin credential) |
//! | GET, POST | `/api/v1/products` | list (`offset`, `limit`) / create a product |
//! | GET, PATCH, DELETE | `/api/v1/products/{code}` | one product |
//! | GET, POST | `/api/v1/products/{code}/media` | its media / add one (`{"media": code}`) |
//! | DELETE | `/api/v1/products/{code}/media/{content}` | take a media out |
//! | GET, POST | `/api/v1/media` | list / create a media (content id → path prefix) |
//! | GET, DELETE | `/api/v1/media/{code}` | one media |
//! | GET, POST | `/api/v1/buyers` | list (`product`, `media`, `email`, `account`, `status`, paging) / add a buyer: returns the purchase, its ticket and play URL |
//! | GET, PATCH, DELETE | `/api/v1/buyers/{hash}` | one purchase |
//! | POST | `/api/v1/buyers/{hash}/revoke` | revoke it |
//! | GET | `/api/v1/buyers/{hash}/devices` | the devices that activated a purchase |
//! | DELETE | `/api/v1/buyers/{hash}/devices/{device}` | free that activation |
//! | GET | `/api/v1/sessions` | live sessions (`account`, `product` filters) |
//! | DELETE | `/api/v1/sessions/{sid}` | end one: its next request gets `session_ended` |
//! | POST | `/api/v1/cache/purge` | drop shield entries under `{"prefix": "/path/"}`; answers `{"purged": n}` |
//! | GET | `/api/v1/cache` | the shield's size in bytes |
//! | POST | `/api/v1/rights/invalidate` | drop cached rights decisions about `{"subject": …}` and/or `{"content": …}` (for a billing system's revokes); answers `{"dropped": n}` |
//! | GET, PUT | `/api/v1/accounts/{id}` | an account; `{"enabled": false}` disables it; `max_sessions`, `max_devices` limit its streams |
//! | GET, POST | `/api/ppv/{method}` | the PPV REST API facade (XML), `apikey` = the admin credential |
//! | GET, POST | `/sendVideoTicket.php` | the video-ticket call (email, firstName, vidID) |
//!
//! Everything under `/api/` and the video-ticket call need the admin credential:
//! `Authorization: Bearer <token>`, or `apikey=<token>` for the facade and video ticket.

pub mod api;
pub mod facade;
pub mod fields;
pub mod ops;
pub mod xml;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::proxy::respond::{full, json, json_error};
use crate::proxy::server::Handler;
use crate::proxy::{readiness, Body, Peer, State};
use fields::Fields;
use ops::AdminError;

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;

/// The admin listener's handler.
#[derive(Clone)]
pub struct AdminHandler(pub Arc<State>);

impl Handler for AdminHandler {
    async fn call(self, req: Request<Incoming>, _peer: Peer) -> Response<Body> {
        let state = self.0;
        let path = req.uri().path().to_owned();
        if path == "/reload" && req.method() == Method::POST {
            return reload(&state, bearer(&req));
        }
        let api = if path.starts_with("/api/v1/") {
            "json"
        } else if path.starts_with("/api/ppv/") || path == "/sendVideoTicket.php" {
            "facade"
        } else {
            return operations(&state, req.method(), &path);
        };
        let response = match api {
            "json" => json_api(&state, req).await,
            _ => facade_api(&state, req).await,
        };
        state
            .metrics
            .admin_requests
            .with_label_values(&[api, response.status().as_str()])
            .inc();
        response
    }
}

fn reload(state: &State, credential: Option<&str>) -> Response<Body> {
    if !authorised(state, credential) {
        return json_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    match state.reload() {
        Ok(()) => {
            tracing::info!("config reloaded (POST /reload)");
            json(StatusCode::OK, &json!({"status": "reloaded"}))
        }
        Err(e) => {
            let problems: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
            tracing::error!(problems = %problems.join("; "), "config reload rejected; the old config keeps serving");
            json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "config_rejected", "problems": problems}),
            )
        }
    }
}

fn operations(state: &State, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
    match path {
        "/metrics" => {
            state.shield.size();
            Response::builder()
                .header(CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(full(state.metrics.render()))
                .expect("valid response")
        }
        "/healthz" => json(StatusCode::OK, &json!({"status": "ok"})),
        "/readyz" => readiness(state),
        _ => json_error(StatusCode::NOT_FOUND, "not_found"),
    }
}

/// Whether `given` is the admin credential, compared in constant time.
fn authorised(state: &State, given: Option<&str>) -> bool {
    let expected = state.admin_token.as_bytes();
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected)))
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn read_body(body: Incoming) -> Result<Bytes, AdminError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    limited.collect().await.map(|c| c.to_bytes()).map_err(|_| {
        AdminError::invalid(
            "body",
            format!("unreadable or larger than {MAX_BODY} bytes"),
        )
    })
}

/// Status and JSON for an error, in one place.
fn error_json(e: &AdminError) -> (StatusCode, serde_json::Value) {
    match e {
        AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"})),
        AdminError::Invalid(i) => (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid", "field": i.field, "reason": i.reason}),
        ),
        AdminError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "what": what}),
        ),
        AdminError::Conflict(what) => (
            StatusCode::CONFLICT,
            json!({"error": "conflict", "what": what}),
        ),
        AdminError::NoEndpoint => (StatusCode::NOT_FOUND, json!({"error": "no_such_endpoint"})),
        AdminError::Store(why) => {
            tracing::error!(error = %why, "admin store failure");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "store_failure"}),
            )
        }
    }
}

async fn json_api(state: &State, req: Request<Incoming>) -> Response<Body> {
    let result = async {
        if !authorised(state, bearer(&req)) {
            return Err(AdminError::Unauthorized);
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req
            .uri()
            .query()
            .map(crate::form::pairs)
            .unwrap_or_default();
        let bytes = read_body(req.into_body()).await?;
        let body: Fields = if bytes.is_empty() {
            Fields::new()
        } else {
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| AdminError::invalid("body", format!("not JSON: {e}")))?;
            fields::from_json(&value)?
        };
        let segments: Vec<&str> = path
            .trim_start_matches("/api/v1/")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        api::route(state, &method, &segments, &query, &body).await
    }
    .await;
    let (status, value) = match result {
        Ok(answer) => answer,
        Err(e) => error_json(&e),
    };
    json(status, &value)
}

async fn facade_api(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let result = async {
        let bearer_token = bearer(&req).map(str::to_owned);
        let mut fields = req
            .uri()
            .query()
            .map(crate::form::pairs)
            .unwrap_or_default();
        if req.method() == Method::POST {
            let bytes = read_body(req.into_body()).await?;
            fields.extend(crate::form::pairs(&String::from_utf8_lossy(&bytes)));
        } else if req.method() != Method::GET {
            return Err(AdminError::NoEndpoint);
        }
        let given = fields.get("apikey").cloned().or(bearer_token);
        if !authorised(state, given.as_deref()) {
            return Err(AdminError::Unauthorized);
        }
        if path == "/sendVideoTicket.php" {
            return facade::video_ticket(state, &fields)
                .await
                .map(|url| (true, url));
        }
        let method = path.trim_start_matches("/api/ppv/");
        facade::call(state, method, &fields)
            .await
            .map(|xml| (false, xml))
    }
    .await;
    match result {
        Ok((plain, body)) => Response::builder()
            .header(
                CONTENT_TYPE,
                if plain {
                    "text/plain; charset=utf-8"
                } else {
                    "application/xml; charset=utf-8"
                },
            )
            .body(full(body))
            .expect("valid response"),
        Err(e) => {
            let (status, _) = error_json(&e);
            Response::builder()
                .status(status)
                .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                .body(full(facade::failure(&e.to_string())))
                .expect("valid response")
        }
    }
}
