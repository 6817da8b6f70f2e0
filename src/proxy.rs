//! The request flow.
//!
//! ```text
//! request ─► method: OPTIONS → CORS preflight; only GET/HEAD go on        (405)
//!         ─► path: normalise (%2e%2e, //, ..) once, used for check and fetch (400)
//!         ─► /healthz, /readyz
//!         ─► route: public prefix → no check │ protected → check │ neither (404)
//!         ─► credentials: session token (query) or ticket (query, Bearer, cookie),
//!            or the foreign tokens the route accepts; device id (header, cookie or
//!            query; none on a purchase that counts activations: usher's own cookie)
//!         ─► access::decide: signature (kid, constant time) → nbf/exp ± skew
//!            → scope → device → client IP                                  (401/403)
//!         ─► rights: cached decision for subject + media + device class:
//!            bought, in window, active, not revoked, account enabled       (403/503)
//!         ─► upstream request: credentials stripped from query and headers,
//!            hop-by-hop removed, X-Forwarded-*/Forwarded added             (502/504)
//!         ─► playlist or asset list? → read whole (bounded) → rewrite with one
//!            session token minted for this response → private, no-store    (502)
//!            otherwise → stream the body through as it arrives
//!         ─► CORS headers, x-request-id; metrics and one log line at the end
//! ```

pub mod authorize;
pub mod cache_control;
pub mod compress;
pub mod conditional;
pub mod credentials;
pub mod forward;
pub mod idle;
pub mod respond;
pub mod sendfile;
pub mod server;
pub mod upstream;

mod cors;
mod in_flight;
mod playlist;
mod reload;
mod state;

pub use reload::{Reloaded, RetiredKey};
pub use state::{open_store, OpenedStore, State};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;

use crate::access::{self, Presented, Route};
use crate::config::Config;
use crate::path::{self, ObjectKind};
use in_flight::InFlight;
use respond::ProxyError;
use upstream::{UpstreamError, UpstreamRequest};

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body usher sends: streamed upstream bytes or a complete buffer.
pub type Body = BoxBody<Bytes, BoxError>;

/// The wall clock as Unix seconds; replaced in tests to walk across window edges.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's socket address.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub proto: &'static str,
}

/// What the outer handler records about a request once it is answered.
struct Outcome {
    kind: ObjectKind,
    reason: Option<&'static str>,
    /// usher's device cookie for a device it made up for this request: set on whatever
    /// the answer turns out to be, since the purchase is already bound to that device.
    device_cookie: Option<HeaderValue>,
}

/// Serves one request: records, logs once and responds; [`handle_inner`] does the work.
pub async fn handle(state: Arc<State>, req: Request<Incoming>, peer: Peer) -> Response<Body> {
    let started = Instant::now();
    let id = state.requests.fetch_add(1, Ordering::Relaxed);
    state.metrics.in_flight.inc();
    let mut in_flight = InFlight {
        state: &state,
        id,
        client: peer.addr.ip(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        started,
        kind: ObjectKind::of(req.uri().path()),
        answered: false,
    };
    let origin_header = req.headers().get(http::header::ORIGIN).cloned();
    let mut outcome = Outcome {
        kind: in_flight.kind,
        reason: None,
        device_cookie: None,
    };
    // One config snapshot for the whole request: a reload never changes the rules midway.
    let config = state.config();
    let mut response = match handle_inner(&state, &config, req, peer, started, &mut outcome).await {
        Ok(response) => response,
        Err(err) => {
            let (_, reason) = err.status_and_reason();
            outcome.reason = Some(reason);
            if matches!(
                err,
                ProxyError::Denied(_) | ProxyError::Rights(_) | ProxyError::Session(_)
            ) {
                state.metrics.denials.with_label_values(&[reason]).inc();
            }
            err.to_response()
        }
    };
    if let Some(cookie) = outcome.device_cookie.take() {
        // The cookie names this browser's device: no shared cache may keep it for the next
        // viewer of the URL, whatever the origin said (a playlist's own answer already is
        // `private, no-store`; an origin's error or a passed-through answer may not be).
        cache_control::make_private(response.headers_mut());
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, cookie);
    }
    cors::apply(
        &config.access,
        origin_header.as_ref(),
        response.headers_mut(),
    );
    response
        .headers_mut()
        .insert("x-request-id", request_id_header(id));
    in_flight.kind = outcome.kind;
    in_flight.log(response.status(), outcome.reason.unwrap_or(""));
    drop(in_flight);
    response
}

/// `id` in lower-case hex, as the log line writes it, without formatting a string first.
fn request_id_header(id: u64) -> HeaderValue {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = id;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&digits[at..]).expect("hex digits are a valid header value")
}

async fn handle_inner(
    state: &State,
    config: &Config,
    req: Request<Incoming>,
    peer: Peer,
    started: Instant,
    outcome: &mut Outcome,
) -> Result<Response<Body>, ProxyError> {
    if req.method() == Method::OPTIONS {
        return Ok(cors::preflight(config));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ProxyError::MethodNotAllowed);
    }
    // A session token carried as the first path segment is a credential, never part of
    // the content's path: it is split off before anything else looks at the path.
    let (path_token, raw_path) = credentials::split_path_token(req.uri().path());
    let path = path::normalize(raw_path)?;
    match path.as_str() {
        "/healthz" => {
            return Ok(respond::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ok"}),
            ))
        }
        "/readyz" => return Ok(respond::readiness(state)),
        _ => {}
    }
    let kind = ObjectKind::of(&path);
    outcome.kind = kind;
    let settings = &config.token;
    let query = req.uri().query();
    let carried = credentials::read(settings, query, req.headers());
    let client_ip = forward::client_ip(
        peer.addr.ip(),
        req.headers(),
        &config.listen.trusted_proxies,
    );
    // `https` behind a balancer that ends TLS, when it is trusted and says so.
    let proto = forward::client_proto(
        peer.addr.ip(),
        peer.proto,
        req.headers(),
        &config.listen.trusted_proxies,
    );
    let device = carried.device.as_deref().map(|id| {
        let agent = settings
            .device_with_user_agent
            .then(|| req.headers().get(http::header::USER_AGENT))
            .flatten()
            .and_then(|v| v.to_str().ok());
        crate::device::hash_id(id, agent)
    });
    let route = access::route(&config.access, &path);
    // Whether the answer goes out private for shared caches (`cache_control`).
    let mut private = false;
    let grant = match route {
        Route::Unrouted => return Err(ProxyError::NotRouted),
        Route::Public => None,
        Route::Protected => {
            let presented = Presented {
                ticket: carried.ticket,
                ticket_in_query: carried.ticket.is_some() && !carried.ticket_in_header,
                session: carried.session.or(path_token),
                device: device.as_deref(),
                client_ip,
            };
            let foreign = credentials::read_foreign(&config.formats, query, req.headers());
            let url = credentials::request_url(&foreign, proto, &req, &path);
            let facts = access::foreign::Facts {
                path: &path,
                url: &url,
                client_ip,
                headers: req.headers(),
            };
            let grant =
                authorize::authorize(state, config, kind, &presented, &foreign, &facts, started)
                    .await?;
            private = cache_control::private_for(config, &carried, path_token, &foreign, &path);
            if let (Some(minted), Some(name)) = (&grant.minted_device, &settings.device_cookie) {
                outcome.device_cookie =
                    HeaderValue::from_str(&minted.set_cookie(name, proto == "https")).ok();
            }
            Some(grant)
        }
    };
    let device = grant
        .as_ref()
        .and_then(|g| g.minted_device.as_ref())
        .map(|minted| minted.hash.clone())
        .or(device);

    let upstream_query = credentials::strip_query(query, |name| {
        credentials::is_credential_param(settings, &config.formats, name)
    });
    let by_path = playlist::Document::by_path(&config.playlists, kind, &path);
    let rewrite = grant.is_some() && by_path.is_some();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()));
    let client = forward::Client {
        ip: peer.addr.ip(),
        judged: client_ip,
        proto,
        host,
    };
    let head_only = req.method() == Method::HEAD;
    let conditions = conditional::Conditions::of(req.headers())
        .filter(|_| kind != ObjectKind::Playlist && !rewrite);
    let group = state.upstreams.group(config.upstream_for(&path));
    let shielded = if state
        .shield
        .applies(req.method(), kind, &path, req.headers())
    {
        state
            .shield
            .fetch(
                group,
                &path,
                upstream_query.as_deref(),
                kind,
                crate::shield::Wants {
                    head_only: head_only && !rewrite,
                    conditions,
                    private: private && !rewrite,
                },
                started,
            )
            .await
            .transpose()
    } else {
        if kind != ObjectKind::Other {
            state.shield.pass(kind);
        }
        None
    };
    // The request to the upstream: `whole` asks for the whole object, as a playlist to
    // rewrite needs (GET, identity, no range or condition), else the viewer's request.
    let upstream_request = |whole: bool| {
        let mut path_and_query = path.clone();
        if let Some(q) = &upstream_query {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        UpstreamRequest {
            method: if whole {
                Method::GET
            } else {
                req.method().clone()
            },
            path_and_query,
            headers: credentials::without_foreign_cookies(
                forward::upstream_headers(req.headers(), settings, client, whole),
                &config.formats,
            ),
            bounded: false,
        }
    };
    let from_shield = shielded.is_some();
    let fetched = match shielded {
        Some(answer) => answer,
        None => {
            Box::pin(fetch_past_shield(
                state,
                group,
                kind,
                upstream_request(rewrite),
            ))
            .await
        }
    };
    let mut response = respond::counted(state, fetched)?;
    if private && !from_shield {
        cache_control::make_private(response.headers_mut());
    }
    // What the upstream says this is, whatever the path looked like.
    let answer = playlist::Document::by_answer(kind, &response);
    if grant.is_some() && answer.is_some() && !rewrite && !playlist::is_whole(&response, head_only)
    {
        // A protected playlist or asset list at a path that did not say so, fetched as the
        // viewer asked (a range, a condition, another coding, HEAD): fetched whole, to rewrite.
        let whole = Box::pin(fetch_past_shield(
            state,
            group,
            kind,
            upstream_request(true),
        ))
        .await;
        response = respond::counted(state, whole)?;
    }
    match (grant, answer.or(by_path)) {
        (Some(grant), Some(document)) => {
            let request = playlist::PlaylistRequest {
                document,
                config,
                path: &path,
                grant: &grant,
                device: device.as_deref(),
                client_ip,
                https: proto == "https",
                query: upstream_query.as_deref(),
                head_only,
                path_token: path_token.filter(|_| carried.session.is_none()),
                headers: req.headers(),
            };
            Box::pin(playlist::serve(state, request, response)).await
        }
        _ if kind == ObjectKind::Playlist || answer == Some(playlist::Document::Playlist) => {
            Box::pin(playlist::pass_through(
                state,
                config,
                req.headers(),
                head_only,
                response,
            ))
            .await
        }
        // The shield fetched it whole, without the viewer's conditions: they are judged
        // here, against its copy.
        _ if from_shield
            && conditions
                .is_some_and(|c| c.not_modified(response.status(), response.headers())) =>
        {
            Ok(conditional::into_not_modified(response))
        }
        // `Range: bytes=0-` (ffmpeg's), answered from the shield's whole copy.
        _ if from_shield && crate::shield::whole_range(req.headers()) => {
            Ok(crate::shield::whole_range_answer(response))
        }
        _ => Ok(response),
    }
}

/// Fetches `upstream_req` from `group`, not through the shield, and counts its time. What
/// the shield answers was stripped once, when it was stored. Boxed by its callers, as are
/// the playlist paths: a hit never takes them, and held inline their futures would make
/// every request's future (moved whole into the connection's task) several kilobytes
/// larger.
async fn fetch_past_shield(
    state: &State,
    group: &Arc<upstream::Group>,
    kind: ObjectKind,
    upstream_req: UpstreamRequest,
) -> Result<Response<Body>, UpstreamError> {
    let fetch_started = Instant::now();
    let fetched = group.fetch(upstream_req).await;
    state
        .metrics
        .kind(kind)
        .upstream_seconds
        .observe(fetch_started.elapsed().as_secs_f64());
    fetched.map(|mut response| {
        forward::strip_hop_by_hop(response.headers_mut());
        response
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_written_in_hex_as_the_log_writes_them() {
        for id in [0, 4, 0xabc, 0x1234_5678_9abc, u64::MAX] {
            assert_eq!(super::request_id_header(id), format!("{id:x}").as_str());
        }
    }
}
