//! The `Cache-Control` a protected answer goes out with (`access.protected_cache_control`).
//!
//! A credential that came in a cookie or `Authorization` leaves the URL bare: a shared
//! cache in front of usher (a CDN) that kept the answer under that URL, as the origin's
//! `public, max-age=…` allows, would hand the paid object to anyone asking for the URL
//! without a credential. Such an answer is made private for shared caches: `public`,
//! `s-maxage`, `proxy-revalidate` and a `private` naming fields go, an unqualified
//! `private` comes first, and every other directive (`max-age`, `immutable`,
//! `no-transform`…) stays, so the player's own cache works as before. The headers that
//! instruct shared caches over `Cache-Control` (`CDN-Cache-Control` and the other
//! `…-Cache-Control` of RFC 9213, `Surrogate-Control`, `Edge-Control`,
//! `X-Accel-Expires`) go too. A credential in the URL (query or path) is part of the key
//! a shared cache keeps the answer under, and the origin's header goes out as it is.
//!
//! Decided once per request ([`private_for`]); the shield keeps the private form of a
//! copy's headers once made, so a hit under it allocates nothing more than one under the
//! origin's header.

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::credentials::Carried;
use crate::access::foreign;
use crate::config::foreign::Format;
use crate::config::{Config, ProtectedCacheControl};

/// Whether the answer to a protected request goes out private for shared caches, by
/// `access.protected_cache_control`: always (`private`), never (`origin`), or (`auto`)
/// when the credential that opened it came in a header, which [`opened_by_header`] tells.
pub fn private_for(
    config: &Config,
    carried: &Carried<'_>,
    path_token: Option<&str>,
    foreign: &foreign::Carried<'_>,
    path: &str,
) -> bool {
    match config.access.protected_cache_control {
        ProtectedCacheControl::Origin => false,
        ProtectedCacheControl::Private => true,
        ProtectedCacheControl::Auto => {
            opened_by_header(carried, path_token, foreign, || config.accepts_for(path))
        }
    }
}

/// Whether the credential that opens the request came in a cookie or `Authorization`
/// rather than in its URL, picked as the access check picks it (see
/// [`crate::proxy::authorize::authorize`]): a session token (query, then cookie), else
/// one in the first path segment, else a ticket when the route `accepts` usher's format
/// (query, then `Authorization`, then cookie), else the first foreign credential the
/// route accepts (Media CDN, Akamai: query, then cookie; a secure link: query). No
/// credential at all (a preview) counts as a header's: the answer stays private.
pub fn opened_by_header<'a>(
    carried: &Carried<'_>,
    path_token: Option<&str>,
    foreign: &foreign::Carried<'_>,
    accepts: impl FnOnce() -> &'a [Format],
) -> bool {
    if carried.session.is_some() {
        return carried.session_in_cookie;
    }
    if path_token.is_some() {
        return false;
    }
    if carried.ticket.is_none() && !foreign.any() {
        return true;
    }
    let accepts = accepts();
    if carried.ticket.is_some() && accepts.contains(&Format::Usher) {
        return carried.ticket_in_header;
    }
    match foreign.chosen(accepts) {
        Some(Format::MediaCdn) => foreign.media_cdn_in_cookie,
        Some(Format::Akamai) => foreign.akamai_in_cookie,
        Some(_) => false,
        None => true,
    }
}

/// Makes `headers` private for shared caches (see the module doc); nothing changes, and
/// nothing is allocated, when they already are.
pub fn make_private(headers: &mut HeaderMap) {
    if is_private(headers) {
        return;
    }
    drop_targeted(headers);
    let mut value = String::from("private");
    for line in headers.get_all(CACHE_CONTROL) {
        // A value that is not visible ASCII is dropped whole: `private` alone is safe.
        let Ok(line) = line.to_str() else { continue };
        for directive in directives(line).filter(|d| !shared_only(d)) {
            value.push_str(", ");
            value.push_str(directive);
        }
    }
    let value = HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("private"));
    headers.insert(CACHE_CONTROL, value);
}

/// Removes the headers that instruct shared caches over `Cache-Control` (see
/// [`is_private`]); nothing is allocated when there are none.
pub fn drop_targeted(headers: &mut HeaderMap) {
    let targeted: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_targeted(name))
        .cloned()
        .collect();
    for name in &targeted {
        headers.remove(name);
    }
}

/// Whether `headers` already keep shared caches out: an unqualified `private`, nothing
/// that speaks to shared caches, no header that instructs them over `Cache-Control`.
pub fn is_private(headers: &HeaderMap) -> bool {
    let mut private = false;
    for line in headers.get_all(CACHE_CONTROL) {
        let Ok(line) = line.to_str() else {
            return false;
        };
        for directive in directives(line) {
            if shared_only(directive) {
                return false;
            }
            private |= directive.eq_ignore_ascii_case("private");
        }
    }
    private && !headers.keys().any(is_targeted)
}

/// The directives of one `Cache-Control` line, trimmed, empty ones left out: split at
/// commas outside quoted strings (`no-cache="a, b"` is one directive).
fn directives(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = line;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let split = c == ',' && !quoted;
                if escaped {
                    escaped = false;
                } else if quoted && c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    quoted = !quoted;
                }
                split
            })
            .map_or(rest.len(), |(at, _)| at);
        let directive = rest[..end].trim();
        rest = rest.get(end + 1..).unwrap_or("");
        if !directive.is_empty() {
            return Some(directive);
        }
    })
}

/// Whether `directive` lets shared caches keep or serve the answer: `public`, `s-maxage`,
/// `proxy-revalidate`, or a `private` that names fields (the rest stays storable).
fn shared_only(directive: &str) -> bool {
    let name = directive
        .split_once('=')
        .map_or(directive, |(name, _)| name)
        .trim();
    ["public", "s-maxage", "proxy-revalidate"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        || (name.eq_ignore_ascii_case("private") && name.len() != directive.len())
}

/// Whether `name` instructs shared caches over `Cache-Control`: a targeted
/// `…-Cache-Control` (RFC 9213: `CDN-Cache-Control`, `Cloudflare-CDN-Cache-Control`…),
/// `Surrogate-Control`, Akamai's `Edge-Control`, nginx's `X-Accel-Expires`.
fn is_targeted(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.ends_with("-cache-control")
        || matches!(
            name,
            "surrogate-control" | "edge-control" | "x-accel-expires"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(lines: &[(&str, &str)]) -> (Vec<String>, HeaderMap) {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        make_private(&mut headers);
        let cache_control = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (cache_control, headers)
    }

    fn cc(value: &str) -> Vec<String> {
        private(&[("cache-control", value)]).0
    }

    #[test]
    fn shared_cache_directives_go_and_the_players_stay() {
        assert_eq!(cc("public, max-age=600"), ["private, max-age=600"]);
        assert_eq!(
            cc("PUBLIC,s-maxage=3600 , max-age=600,proxy-revalidate, immutable, no-transform"),
            ["private, max-age=600, immutable, no-transform"]
        );
        assert_eq!(
            cc("max-age=60, must-revalidate"),
            ["private, max-age=60, must-revalidate"]
        );
        assert_eq!(cc("no-store"), ["private, no-store"]);
        assert_eq!(
            cc("private=\"set-cookie, x-a\", max-age=9"),
            ["private, max-age=9"],
            "a private that names fields leaves the rest storable"
        );
        assert_eq!(
            cc("no-cache=\"set-cookie, x-a\", public"),
            ["private, no-cache=\"set-cookie, x-a\""],
            "a comma inside quotes does not split"
        );
        assert_eq!(private(&[]).0, ["private"], "none from the origin");
        assert_eq!(
            private(&[("cache-control", "public"), ("cache-control", "max-age=5")]).0,
            ["private, max-age=5"],
            "several lines make one"
        );
    }

    #[test]
    fn headers_that_instruct_shared_caches_over_cache_control_go() {
        let (cc, headers) = private(&[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "max-age=600"),
            ("cloudflare-cdn-cache-control", "max-age=600"),
            ("surrogate-control", "max-age=600"),
            ("edge-control", "max-age=600"),
            ("x-accel-expires", "600"),
            ("etag", "\"v1\""),
        ]);
        assert_eq!(cc, ["private, max-age=600"]);
        let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["cache-control", "etag"]);
    }

    /// The credential that opens the request decides, picked as the access check picks it.
    #[test]
    fn the_credential_that_opens_the_request_tells_where_it_came() {
        let usher: &[Format] = &[Format::Usher, Format::MediaCdn, Format::Akamai];
        let foreign_only: &[Format] = &[Format::MediaCdn, Format::Akamai, Format::SecureLink];
        let none = foreign::Carried::default();
        let by = |carried: Carried<'_>, path: Option<&str>, foreign, accepts| {
            opened_by_header(&carried, path, &foreign, || accepts)
        };
        let session = |in_cookie| Carried {
            session: Some("s"),
            session_in_cookie: in_cookie,
            ..Carried::default()
        };
        let ticket = |in_header| Carried {
            ticket: Some("t"),
            ticket_in_header: in_header,
            ..Carried::default()
        };
        assert!(!by(session(false), None, none, usher), "?token=");
        assert!(by(session(true), None, none, usher), "the session cookie");
        assert!(!by(Carried::default(), Some("s"), none, usher), "the path");
        assert!(!by(ticket(false), None, none, usher), "?ticket=");
        assert!(by(ticket(true), None, none, usher), "bearer or cookie");
        let ticket_in_query_session_in_cookie = Carried {
            ticket: Some("junk"),
            ..session(true)
        };
        assert!(
            by(ticket_in_query_session_in_cookie, None, none, usher),
            "the session cookie comes first"
        );
        let cdn_cookie = foreign::Carried {
            media_cdn: Some("m"),
            media_cdn_in_cookie: true,
            akamai: Some("a"),
            ..none
        };
        assert!(
            by(ticket(false), None, cdn_cookie, foreign_only),
            "no usher"
        );
        assert!(!by(ticket(false), None, cdn_cookie, usher), "usher's first");
        assert!(
            !by(Carried::default(), None, cdn_cookie, &[Format::Akamai]),
            "the Akamai token, in the query"
        );
        let link = foreign::Carried {
            secure_link: Some(("h", "1")),
            ..none
        };
        assert!(!by(Carried::default(), None, link, foreign_only));
        assert!(
            by(Carried::default(), None, none, usher),
            "nothing: private"
        );
    }

    #[test]
    fn private_headers_are_left_as_they_are() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=60, Private"),
        );
        assert!(is_private(&headers));
        let before = headers.get(CACHE_CONTROL).unwrap().as_bytes().as_ptr();
        make_private(&mut headers);
        assert_eq!(
            headers.get(CACHE_CONTROL).unwrap().as_bytes().as_ptr(),
            before,
            "the same value, not a copy"
        );
        assert!(!is_private(&HeaderMap::new()));
        headers.insert("cdn-cache-control", HeaderValue::from_static("max-age=1"));
        assert!(!is_private(&headers));
    }
}
