//! The admin listener, loopback by default. Endpoints:
//!
//! | method | path | answer |
//! | ------ | ---- | ------ |
//! | GET | `/metrics` | Prometheus text exposition of every usher metric |
//! | GET | `/healthz` | 200 `{"status":"ok"}` while the process runs |
//! | GET | `/readyz` | 200 once config, keys, store, TLS and listeners are loaded; 503 before |
//! | POST | `/reload` | re-read the config file (as SIGHUP); 200 `{"status":"reloaded","restart_required":[dotted keys changed that only a restart applies]}`, or 400 with the problems and nothing changed (needs the admin credential) |
//! | GET, POST | `/api/v1/products` | list / create a product |
//! | GET, PATCH, DELETE | `/api/v1/products/{code}` | one product |
//! | GET, POST | `/api/v1/products/{code}/media` | its media / add one (`{"media": code}`) |
//! | DELETE | `/api/v1/products/{code}/media/{content}` | take a media out; while buyers of the product named it (or, for its last media, any active buyer of it), 409 `has_buyers` with their count unless `?force=true` |
//! | GET, POST | `/api/v1/media` | list / create a media (content id → path prefix) |
//! | GET, PATCH, DELETE | `/api/v1/media/{code}` | one media; PATCH changes `title`, `live_title`, `playlist`, `editorial`, `live` (not `prefix`: 400); DELETE of a media buyers hold is 409 `has_buyers` with their count unless `?force=true` |
//! | GET, POST | `/api/v1/buyers` | list (`product`, `media`, `email`, `account`, `status`; a `product` that does not exist is 404; CSV with `Accept: text/csv` or `format=csv`) / add a buyer: returns the purchase, its ticket and play URL; 409 `not_sellable`; `Idempotency-Key` or `order_id` sells once (422 when reused with another request) |
//! | GET, PATCH, DELETE | `/api/v1/buyers/{hash}` | one purchase (with `access_starts_at`/`access_ends_at`); PATCH reissues its ticket |
//! | POST | `/api/v1/buyers/{hash}/revoke` | revoke it |
//! | GET, POST | `/api/v1/buyers/{hash}/devices` | the devices that activated a purchase (hash, and the id of devices the operator added) / add one ahead of use (`{"device": id}`; 409 `activation_limit` when full) |
//! | DELETE | `/api/v1/buyers/{hash}/devices/{id-or-hash}` | free that activation, ending the device's sessions on every node; `{"freed": hash, "sessions_ended": n}` (with Redis sessions, `"announced"` too) |
//! | GET | `/api/v1/sessions` | live sessions (`account`, `product`, `purchase` filters) |
//! | DELETE | `/api/v1/sessions/{sid}` | end one: its next request gets `session_ended`; 404 when neither this node nor (with Redis sessions) Redis knows the id |
//! | POST | `/api/v1/cache/purge` | drop shield entries under `{"prefix": "/path/"}`, on every node with Redis sessions; answers `{"purged": n}` (this node's; with Redis sessions `"announced": true`, or 503 `purge_not_announced`) |
//! | GET | `/api/v1/cache` | the shield's size in bytes |
//! | POST | `/api/v1/rights/invalidate` | drop cached rights decisions about `{"subject": …}` and/or `{"content": …}` (for a billing system's revokes); answers `{"dropped": n}` |
//! | GET, PUT | `/api/v1/accounts/{id}` | an account; `{"enabled": false}` disables it; `max_sessions`, `max_devices` limit its streams |
//! | GET | `/api/v1/audit` | the audit trail of admin writes (`purchase`, `account`, `action`, `since` filters); see [`audit`] |
//! | GET, POST | `/api/ppv/{method}` | the PPV REST API facade (XML), `apikey` = the admin credential |
//! | GET, POST | `/sendVideoTicket.php` | the video-ticket call (email, firstName, vidID; `order_id`) |
//!
//! Everything under `/api/` and the video-ticket call need an admin credential:
//! `Authorization: Bearer <token>`, or `apikey=<token>` for the facade and video ticket.
//! Credentials have names (the main one is `admin`, more come from
//! `[[admin.credentials]]`) that the audit trail records. A client past
//! `admin.max_failed_auth_per_minute` wrong credentials is answered 429 with `Retry-After`
//! until its minute is over, whatever it presents (see [`auth`]).
//!
//! Lists (see [`lists`]) refuse unknown query parameters with 400 naming them, and answer
//! `items`, `offset`, `limit`, `total` and `next` (a cursor for `?cursor=`). Every write
//! that succeeds is recorded by [`audit::recorded`], which the JSON and facade routers
//! wrap around each call; a new write route needs one entry in [`audit::API_WRITES`] (or
//! [`audit::FACADE_WRITES`]).

pub mod api;
pub mod audit;
pub mod auth;
pub mod facade;
pub mod fields;
pub mod lists;
pub mod ops;
pub mod token_file;
pub mod xml;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use crate::proxy::respond::readiness;
use crate::proxy::respond::{full, json, json_error};
use crate::proxy::server::Handler;
use crate::proxy::{Body, Peer, State};
use audit::{Actor, Interface};
use fields::Fields;
use ops::AdminError;

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;
/// Largest form body of a PPV facade call (a handful of fields).
const MAX_FORM: usize = 64 << 10;

/// The admin listener's handler.
#[derive(Clone)]
pub struct AdminHandler(pub Arc<State>);

impl Handler for AdminHandler {
    async fn call(self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let state = self.0;
        let client = peer.addr.ip();
        let path = req.uri().path().to_owned();
        if path == "/reload" && req.method() == Method::POST {
            return reload(&state, client, bearer(&req)).await;
        }
        let api = if path.starts_with("/api/v1/") {
            "json"
        } else if path.starts_with("/api/ppv/") || path == "/sendVideoTicket.php" {
            "facade"
        } else {
            return operations(&state, req.method(), &path);
        };
        let response = match api {
            "json" => json_api(&state, client, req).await,
            _ => facade_api(&state, client, req).await,
        };
        state
            .metrics
            .admin_requests
            .with_label_values(&[api, response.status().as_str()])
            .inc();
        response
    }
}

async fn reload(state: &State, client: IpAddr, credential: Option<&str>) -> Response<Body> {
    let actor = match authenticate(state, client, credential, Interface::Reload) {
        Ok(actor) => actor,
        Err(e) => {
            let (status, value) = error_json(&e);
            return with_retry_after(json(status, &value), &e);
        }
    };
    match audit::reload(state, &actor).await {
        Ok(done) => {
            if done.restart_required.is_empty() {
                tracing::info!("config reloaded (POST /reload)");
            } else {
                tracing::warn!(
                    restart_required = ?done.restart_required,
                    "config reloaded (POST /reload); these changed settings take effect only after a restart"
                );
            }
            json(
                StatusCode::OK,
                &json!({"status": "reloaded", "restart_required": done.restart_required}),
            )
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

/// Who `given` is (the credential's name), for a call from `client` through `interface`;
/// refusals are counted in `usher_admin_auth_failures_total`.
fn authenticate(
    state: &State,
    client: IpAddr,
    given: Option<&str>,
    interface: Interface,
) -> Result<Actor, AdminError> {
    match state.admin_guard.check(client, given, (state.clock)()) {
        Ok(name) => Ok(Actor {
            name: name.to_owned(),
            interface,
        }),
        Err(refused) => {
            let (outcome, error) = match refused {
                auth::Refused::Unauthorized => ("unauthorized", AdminError::Unauthorized),
                auth::Refused::Limited { retry_after } => {
                    ("limited", AdminError::Limited { retry_after })
                }
            };
            state
                .metrics
                .admin_auth_failures
                .with_label_values(&[outcome])
                .inc();
            tracing::warn!(%client, outcome, "admin credential refused");
            Err(error)
        }
    }
}

/// Adds `Retry-After` to the answer of a [`AdminError::Limited`].
fn with_retry_after(mut response: Response<Body>, e: &AdminError) -> Response<Body> {
    if let AdminError::Limited { retry_after } = e {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(*retry_after));
    }
    response
}

/// The interface a JSON API call came through: `usher admin` says so in a header.
fn json_interface(req: &Request<Incoming>) -> Interface {
    let cli = req
        .headers()
        .get("x-usher-interface")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cli"));
    if cli {
        Interface::Cli
    } else {
        Interface::Api
    }
}

/// The `Idempotency-Key` header, when a request sends one (checked where it is read).
fn idempotency_key(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(fields::IDEMPOTENCY_KEY)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn read_body(body: Incoming, max: usize) -> Result<Bytes, AdminError> {
    let limited = http_body_util::Limited::new(body, max);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| AdminError::invalid("body", format!("unreadable or larger than {max} bytes")))
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
        AdminError::Changed(what) => (
            StatusCode::CONFLICT,
            json!({"error": "changed_concurrently", "what": what, "reason": e.to_string()}),
        ),
        AdminError::HasBuyers { what, buyers, .. } => (
            StatusCode::CONFLICT,
            json!({"error": "has_buyers", "what": what, "buyers": buyers, "reason": e.to_string()}),
        ),
        AdminError::ActivationLimit { purchase, limit } => (
            StatusCode::CONFLICT,
            json!({"error": "activation_limit", "buyer": purchase, "limit": limit, "reason": e.to_string()}),
        ),
        AdminError::NotSellable { product, reason } => (
            StatusCode::CONFLICT,
            json!({"error": "not_sellable", "reason": reason, "product": product}),
        ),
        AdminError::KeyReused { field } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "idempotency_key_reused", "field": field,
                   "reason": "this key was used by a different sale"}),
        ),
        AdminError::Limited { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "too_many_failed_credentials", "retry_after": retry_after}),
        ),
        AdminError::NoEndpoint => (StatusCode::NOT_FOUND, json!({"error": "no_such_endpoint"})),
        AdminError::Store(why) => {
            tracing::error!(error = %why, "admin store failure");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "store_failure"}),
            )
        }
        AdminError::StoreUnavailable(why) => {
            tracing::error!(error = %why, "admin store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "store_unavailable",
                       "reason": "the shared store cannot be reached; nothing was written"}),
            )
        }
        AdminError::EndNotRecorded(why) => {
            tracing::error!(error = %why, "session end not recorded in the shared session store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "store_unavailable",
                       "reason": "the end could not be recorded in the shared session store; \
                                  this node ended its copy and announced the end, which may \
                                  not reach the node playing it: repeat the call"}),
            )
        }
        AdminError::StoreOutcomeUnknown(why) => {
            tracing::error!(error = %why, "admin store outcome unknown");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "store_outcome_unknown",
                       "reason": "the shared store stopped answering after the write was sent; \
                                  it may or may not stand: repeat it with the same \
                                  Idempotency-Key, or read it back"}),
            )
        }
        AdminError::PurgeNotAnnounced {
            prefix,
            purged,
            why,
        } => {
            tracing::error!(error = %why, "shield purge not announced to the other nodes");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "purge_not_announced", "prefix": prefix, "purged": purged,
                       "reason": "purged on this node only: Redis did not take the \
                                  announcement to the other nodes; repeat the purge"}),
            )
        }
    }
}

/// What a JSON API call answers: JSON, or the buyers list as CSV.
enum Reply {
    Json(api::Answer),
    Csv(String),
}

impl audit::Answered for Reply {
    fn field(&self, name: &str) -> Option<String> {
        match self {
            Reply::Json(answer) => answer.field(name),
            Reply::Csv(_) => None,
        }
    }
}

async fn json_api(state: &State, client: IpAddr, req: Request<Incoming>) -> Response<Body> {
    let result = async {
        let actor = authenticate(state, client, bearer(&req), json_interface(&req))?;
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let key = idempotency_key(&req);
        let accept = req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let query = req
            .uri()
            .query()
            .map(crate::form::pairs)
            .unwrap_or_default();
        fields::plain_text(&query)?;
        let bytes = read_body(req.into_body(), MAX_BODY).await?;
        let mut body: Fields = if bytes.is_empty() {
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
        // By segments, as the router reads the path: `/api/v1/buyers/` sells too.
        if let Some(key) = key.filter(|_| method == Method::POST && segments == ["buyers"]) {
            body.insert(fields::IDEMPOTENCY_KEY.to_owned(), key);
        }
        if method == Method::GET
            && segments == ["buyers"]
            && lists::wants_csv(&query, accept.as_deref())
        {
            return lists::buyers_csv(state, &query).await.map(Reply::Csv);
        }
        let write = audit::api_write(&method, &segments);
        let call = async {
            api::route(state, &method, &segments, &query, &body)
                .await
                .map(Reply::Json)
        };
        audit::recorded(state, &actor, write, &segments, &body, call).await
    }
    .await;
    match result {
        Ok(Reply::Json((status, value))) => json(status, &value),
        Ok(Reply::Csv(text)) => Response::builder()
            .header(CONTENT_TYPE, "text/csv; charset=utf-8")
            .body(full(text))
            .expect("valid response"),
        Err(e) => {
            let (status, value) = error_json(&e);
            with_retry_after(json(status, &value), &e)
        }
    }
}

async fn facade_api(state: &State, client: IpAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let result = async {
        let bearer_token = bearer(&req).map(str::to_owned);
        let key = idempotency_key(&req);
        let mut fields = req
            .uri()
            .query()
            .map(crate::form::pairs)
            .unwrap_or_default();
        // A credential in the query or the header is checked before the body is read, so
        // a caller without one cannot make usher hold a body; one sent in the form is read
        // from a body of at most MAX_FORM.
        let early = fields.get("apikey").cloned().or(bearer_token);
        let actor = match &early {
            Some(given) => Some(authenticate(state, client, Some(given), Interface::Facade)?),
            None => None,
        };
        if req.method() == Method::POST {
            let bytes = read_body(req.into_body(), MAX_FORM).await?;
            fields.extend(crate::form::pairs(&String::from_utf8_lossy(&bytes)));
        } else if req.method() != Method::GET {
            return Err(AdminError::NoEndpoint);
        }
        let actor = match actor {
            Some(actor) => actor,
            None => {
                let given = fields.get("apikey").cloned();
                authenticate(state, client, given.as_deref(), Interface::Facade)?
            }
        };
        fields::plain_text(&fields)?;
        if let Some(key) =
            key.filter(|_| path == "/sendVideoTicket.php" || path == "/api/ppv/addbuyer")
        {
            fields.insert(fields::IDEMPOTENCY_KEY.to_owned(), key);
        }
        if path == "/sendVideoTicket.php" {
            let write = audit::facade_write("sendVideoTicket");
            let call = facade::video_ticket(state, &fields);
            return audit::recorded(state, &actor, write, &[], &fields, call)
                .await
                .map(|sold| (true, sold.play_url));
        }
        let method = path.trim_start_matches("/api/ppv/");
        let call = facade::call(state, method, &fields);
        audit::recorded(
            state,
            &actor,
            audit::facade_write(method),
            &[],
            &fields,
            call,
        )
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
            let (status, value) = error_json(&e);
            // The machine-readable reason of a refused sale, as the JSON API gives it.
            let reason = match &e {
                AdminError::NotSellable { reason, .. } => Some(*reason),
                AdminError::KeyReused { .. } => value["error"].as_str(),
                _ => None,
            };
            // A store's own error text goes to the log only (`error_json`), as in the
            // JSON API: it can name tables, hosts and the rejected bytes.
            let message = match &e {
                AdminError::Store(_) => "store failure (logged)".to_owned(),
                AdminError::StoreUnavailable(_)
                | AdminError::StoreOutcomeUnknown(_)
                | AdminError::EndNotRecorded(_) => {
                    value["reason"].as_str().unwrap_or_default().to_owned()
                }
                // The facade's flag is `force=1`, not the JSON API's `?force=true`.
                AdminError::HasBuyers {
                    what,
                    buyers,
                    unlink,
                } => ops::has_buyers_text(what, *buyers, *unlink, "force=1"),
                _ => e.to_string(),
            };
            let response = Response::builder()
                .status(status)
                .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                .body(full(facade::failure_with(&message, reason)))
                .expect("valid response");
            with_retry_after(response, &e)
        }
    }
}
