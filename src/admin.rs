//! The operations listener, loopback by default. Endpoints:
//!
//! | method | path       | answer |
//! | ------ | ---------- | ------ |
//! | GET    | `/metrics` | Prometheus text exposition of every usher metric |
//! | GET    | `/healthz` | 200 `{"status":"ok"}` while the process runs |
//! | GET    | `/readyz`  | 200 once config, keys, TLS and listeners are loaded; 503 before |
//!
//! Anything else is 404. The PPV admin API (issue 3) will join these, behind a credential.

use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::proxy::respond::{full, json, json_error};
use crate::proxy::server::Handler;
use crate::proxy::{readiness, Body, Peer, State};

/// The admin listener's handler.
#[derive(Clone)]
pub struct AdminHandler(pub Arc<State>);

impl Handler for AdminHandler {
    async fn call(self, req: Request<Incoming>, _peer: Peer) -> Response<Body> {
        answer(&self.0, req.method(), req.uri().path())
    }
}

fn answer(state: &State, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
    match path {
        "/metrics" => Response::builder()
            .header(CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(full(state.metrics.render()))
            .expect("valid response"),
        "/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        "/readyz" => readiness(state),
        _ => json_error(StatusCode::NOT_FOUND, "not_found"),
    }
}
