//! CORS, so a browser player on another origin can read playlists and segments.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

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
pub fn apply(access: &Access, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    if access.cors_origins.is_empty() {
        return;
    }
    let any = access.cors_origins.iter().any(|o| o == "*");
    if !any {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
    let Some(origin) = origin else {
        return;
    };
    let allowed = if any {
        // Never credentials with `*`, whatever the origin's own answer said.
        headers.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
        HeaderValue::from_static("*")
    } else if access
        .cors_origins
        .iter()
        .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        origin.clone()
    } else {
        return;
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Length, Content-Range, X-Request-Id"),
    );
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
