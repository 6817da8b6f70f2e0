//! CORS, so a browser player on another origin can read playlists and segments.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::respond::full;
use super::Body;
use crate::config::{Access, Config};

/// Adds `Access-Control-Allow-Origin` (and friends) when the request's `Origin` is allowed.
///
/// An origin listed by name may also send credentials (cookies: the cookie carrier, the
/// ticket cookie): it gets its own origin back and `Access-Control-Allow-Credentials`.
/// `"*"` never allows credentials, as browsers require.
///
/// With origins listed by name, every response says `Vary: Origin`, whether the request
/// named an allowed origin, another or none: a cache in front (or the browser's own) must
/// not hand one origin's answer to another.
///
/// Once `access.cors_origins` is set, usher alone decides: the upstream's own
/// `Access-Control-Allow-Origin`, `-Allow-Credentials` and `-Expose-Headers` are replaced
/// or dropped (an origin answering `*` would otherwise open every object to the pages the
/// list leaves out; under `*`, an upstream's own origin with credentials, kept by a shared
/// cache, would reach every page). Under `*` a request without `Origin` gets usher's
/// headers only when the upstream sent some. Without the setting they pass as the
/// upstream sent them.
pub fn apply(access: &Access, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    if access.cors_origins.is_empty() {
        return;
    }
    let any = access.cors_origins.iter().any(|o| o == "*");
    if !any {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
    let listed = |origin: &HeaderValue| {
        access
            .cors_origins
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    };
    let allowed = match origin {
        // Never credentials with `*`.
        Some(_) if any => {
            headers.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
            HeaderValue::from_static("*")
        }
        Some(origin) if listed(origin) => {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            origin.clone()
        }
        // `*` with no `Origin`: nothing to add, unless the upstream spoke. Then its word
        // becomes `*` without credentials: dropping it would keep out no page `*` lets in,
        // and a shared cache in front that kept the answer without it (or with the
        // upstream's own origin and credentials) would hand that to every page.
        None if any => {
            if !names_any(headers) {
                return;
            }
            headers.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
            HeaderValue::from_static("*")
        }
        _ => {
            drop_upstreams(headers);
            return;
        }
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Length, Content-Range, X-Request-Id"),
    );
}

/// The CORS headers of an upstream's answer that [`apply`] replaces or drops.
const UPSTREAMS: [HeaderName; 3] = [
    ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_EXPOSE_HEADERS,
];

/// Whether `headers` hold any of [`UPSTREAMS`]: one pass over the names.
fn names_any(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| UPSTREAMS.contains(name))
}

/// Removes the upstream's CORS headers, if it sent any: one pass over the names first,
/// as a request without an allowed `Origin` (most are: players on the page's own origin,
/// native players) usually finds none.
fn drop_upstreams(headers: &mut HeaderMap) {
    if names_any(headers) {
        for name in UPSTREAMS {
            headers.remove(name);
        }
    }
}

/// The answer to an `OPTIONS` preflight (the allow-origin header is added by [`apply`]).
pub fn preflight(config: &Config) -> Response<Body> {
    let allow_headers = format!(
        "Range, Authorization, {}, {}",
        config.token.device_header.as_str(),
        config.rights.device_class_header.as_str()
    );
    let mut response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")
        .header(ACCESS_CONTROL_MAX_AGE, "600")
        .body(full(bytes::Bytes::new()))
        .expect("valid response");
    if let Ok(value) = HeaderValue::from_str(&allow_headers) {
        response
            .headers_mut()
            .insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    response
}
