//! Every way a request can fail, and the one place each becomes a response.
//!
//! The status follows whose fault it was: the viewer's credential → 401/403, a bad request
//! → 400/404/405, the origin → 502/504, ours → 500. The body is always
//! `{"error": "<reason>"}` with the same reason the metrics count.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::upstream::UpstreamError;
use super::Body;
use crate::access::Denied;
use crate::manifest::ManifestError;
use crate::path::BadPath;
use crate::rights::decide::RightsDenied;
use crate::sessions::SessionDenied;

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The access check refused it.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The credential is valid but the rights check refused it.
    #[error(transparent)]
    Rights(#[from] RightsDenied),
    /// Device activation or the session's limits refused it.
    #[error(transparent)]
    Session(#[from] SessionDenied),
    /// The path cannot be normalised safely.
    #[error(transparent)]
    BadPath(#[from] BadPath),
    /// The path is under no configured prefix.
    #[error("path not routed")]
    NotRouted,
    /// Not GET, HEAD or OPTIONS.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream's playlist cannot be rewritten.
    #[error(transparent)]
    BadPlaylist(#[from] ManifestError),
    /// The upstream's playlist is larger than `upstream.max_playlist_bytes`.
    #[error("playlist larger than {0} bytes")]
    PlaylistTooLarge(usize),
    /// The upstream's playlist came compressed despite `Accept-Encoding: identity`.
    #[error("playlist came with content-encoding {0}")]
    EncodedPlaylist(String),
    /// The playlist body broke off while being read.
    #[error("playlist body failed: {0}")]
    PlaylistBody(String),
}

impl ProxyError {
    /// The status and machine-readable reason for this error.
    pub fn status_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::Denied(Denied::NoCredential) => (StatusCode::UNAUTHORIZED, "no_credential"),
            ProxyError::Denied(denied) => (StatusCode::FORBIDDEN, denied.reason()),
            ProxyError::Rights(RightsDenied::Unavailable) => {
                (StatusCode::SERVICE_UNAVAILABLE, "rights_unavailable")
            }
            ProxyError::Rights(denied) => (StatusCode::FORBIDDEN, denied.reason()),
            ProxyError::Session(SessionDenied::Unavailable) => {
                (StatusCode::SERVICE_UNAVAILABLE, "sessions_unavailable")
            }
            ProxyError::Session(denied) => (StatusCode::FORBIDDEN, denied.reason()),
            ProxyError::BadPath(_) => (StatusCode::BAD_REQUEST, "bad_path"),
            ProxyError::NotRouted => (StatusCode::NOT_FOUND, "not_routed"),
            ProxyError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ProxyError::Upstream(UpstreamError::Timeout(_) | UpstreamError::BodyTimeout(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            ProxyError::Upstream(UpstreamError::Busy(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "upstream_busy")
            }
            ProxyError::Upstream(e) => (StatusCode::BAD_GATEWAY, e.reason()),
            ProxyError::BadPlaylist(ManifestError::OutputTooLarge { .. }) => {
                (StatusCode::BAD_GATEWAY, "playlist_too_large")
            }
            ProxyError::BadPlaylist(ManifestError::AssetList(_)) => {
                (StatusCode::BAD_GATEWAY, "bad_asset_list")
            }
            ProxyError::BadPlaylist(_) => (StatusCode::BAD_GATEWAY, "bad_playlist"),
            ProxyError::PlaylistTooLarge(_) => (StatusCode::BAD_GATEWAY, "playlist_too_large"),
            ProxyError::EncodedPlaylist(_) => (StatusCode::BAD_GATEWAY, "bad_playlist"),
            ProxyError::PlaylistBody(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
        }
    }

    /// The response for this error.
    pub fn to_response(&self) -> Response<Body> {
        let (status, reason) = self.status_and_reason();
        let mut response = json_error(status, reason);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
        }
        response
    }
}

/// `{"error": reason}` with `status`, never cached.
pub fn json_error(status: StatusCode, reason: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": reason }))
}

/// A JSON document with `status`, never cached.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = value.to_string();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(full(body))
        .expect("valid response")
}

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(Into::into).boxed()
}

/// `/readyz`: 200 once start-up finished, 503 `starting` before; 503 `degraded` while a
/// shared backend (the PostgreSQL store, its invalidations, Redis sessions) is unavailable.
pub fn readiness(state: &super::State) -> Response<Body> {
    if !state.ready.load(std::sync::atomic::Ordering::Acquire) {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "starting"}),
        );
    }
    let (store, subscribed) = state.fanout.health().unwrap_or((true, true));
    let sessions = state.sessions.shared_up().unwrap_or(true);
    if store && subscribed && sessions {
        return json(StatusCode::OK, &serde_json::json!({"status": "ready"}));
    }
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({
            "status": "degraded",
            "store": if store { "ok" } else { "unavailable" },
            "invalidations": if subscribed { "subscribed" } else { "unsubscribed" },
            "sessions": if sessions { "ok" } else { "unavailable" },
        }),
    )
}

/// An upstream answer, its failure counted (`usher_upstream_errors_total`) and logged; the
/// failure as the viewer's error.
///
/// # Errors
/// The upstream's failure, as [`ProxyError::Upstream`].
pub fn counted(
    state: &super::State,
    fetched: Result<Response<Body>, UpstreamError>,
) -> Result<Response<Body>, ProxyError> {
    Ok(fetched.inspect_err(|e| {
        state
            .metrics
            .upstream_errors
            .with_label_values(&[e.reason()])
            .inc();
        tracing::warn!(error = %e, "upstream fetch failed");
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::AssetListError;
    use crate::ticket::TicketError;
    use std::time::Duration;

    fn status(e: ProxyError) -> (u16, &'static str) {
        let (s, r) = e.status_and_reason();
        (s.as_u16(), r)
    }

    #[test]
    fn viewer_faults_are_401_or_403() {
        assert_eq!(status(Denied::NoCredential.into()), (401, "no_credential"));
        assert_eq!(
            status(Denied::Credential(TicketError::BadSignature).into()),
            (403, "bad_signature")
        );
        assert_eq!(
            status(Denied::Credential(TicketError::Expired { at: 1 }).into()),
            (403, "expired")
        );
        assert_eq!(
            status(Denied::Credential(TicketError::NotYetValid { at: 1 }).into()),
            (403, "not_yet_valid")
        );
        assert_eq!(
            status(Denied::Credential(TicketError::UnknownKey("k".into())).into()),
            (403, "unknown_key")
        );
        assert_eq!(
            status(Denied::Credential(TicketError::Malformed).into()),
            (403, "malformed")
        );
        assert_eq!(status(Denied::OutOfScope.into()), (403, "out_of_scope"));
        assert_eq!(status(Denied::WrongDevice.into()), (403, "wrong_device"));
        assert_eq!(status(Denied::IpMismatch.into()), (403, "ip_mismatch"));
        assert_eq!(
            status(Denied::SessionShared.into()),
            (403, "session_shared")
        );
        assert_eq!(
            status(Denied::NotAccepted.into()),
            (403, "format_not_accepted")
        );
        for (denied, reason) in [
            (SessionDenied::ConcurrencyLimit, "concurrency_limit"),
            (SessionDenied::Replaced, "session_replaced"),
            (SessionDenied::Ended, "session_ended"),
            (SessionDenied::ActivationLimit, "activation_limit"),
            (SessionDenied::DeviceRequired, "device_required"),
        ] {
            assert_eq!(status(denied.into()), (403, reason));
        }
        assert_eq!(
            status(SessionDenied::Unavailable.into()),
            (503, "sessions_unavailable")
        );
    }

    #[test]
    fn rights_refusals_are_403_and_an_unreachable_source_is_503() {
        for (denied, reason) in [
            (RightsDenied::NoRights, "no_rights"),
            (RightsDenied::NotStarted { at: 1 }, "rights_not_started"),
            (RightsDenied::Expired { at: 1 }, "rights_expired"),
            (RightsDenied::ProductInactive, "product_inactive"),
            (RightsDenied::AccountDisabled, "account_disabled"),
            (RightsDenied::Revoked, "revoked"),
            (RightsDenied::DeviceClass, "device_class"),
        ] {
            assert_eq!(status(denied.into()), (403, reason));
        }
        assert_eq!(
            status(RightsDenied::Unavailable.into()),
            (503, "rights_unavailable")
        );
    }

    #[test]
    fn request_faults_are_4xx() {
        assert_eq!(status(BadPath::AboveRoot.into()), (400, "bad_path"));
        assert_eq!(status(ProxyError::NotRouted), (404, "not_routed"));
        assert_eq!(
            status(ProxyError::MethodNotAllowed),
            (405, "method_not_allowed")
        );
    }

    #[test]
    fn origin_faults_are_502_or_504() {
        assert_eq!(
            status(UpstreamError::Timeout(Duration::from_secs(1)).into()),
            (504, "upstream_timeout")
        );
        assert_eq!(
            status(UpstreamError::BodyTimeout(Duration::from_secs(1)).into()),
            (504, "upstream_timeout")
        );
        assert_eq!(
            status(UpstreamError::Connect("refused".into()).into()),
            (502, "upstream_unreachable")
        );
        assert_eq!(
            status(UpstreamError::Protocol("reset".into()).into()),
            (502, "upstream_error")
        );
        assert_eq!(
            status(UpstreamError::Busy(8).into()),
            (503, "upstream_busy")
        );
        assert_eq!(
            status(ManifestError::NoHeader.into()),
            (502, "bad_playlist")
        );
        assert_eq!(
            status(ManifestError::AssetList(AssetListError::NotJson("eof".into())).into()),
            (502, "bad_asset_list")
        );
        assert_eq!(
            status(ManifestError::OutputTooLarge { limit: 10 }.into()),
            (502, "playlist_too_large")
        );
        assert_eq!(
            status(ProxyError::PlaylistTooLarge(10)),
            (502, "playlist_too_large")
        );
        assert_eq!(
            status(ProxyError::EncodedPlaylist("gzip".into())),
            (502, "bad_playlist")
        );
        assert_eq!(
            status(ProxyError::PlaylistBody("reset".into())),
            (502, "upstream_error")
        );
    }

    #[test]
    fn unauthorized_says_how_to_authenticate() {
        let response = ProxyError::from(Denied::NoCredential).to_response();
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
    }
}
