//! Reading credentials and the device id from a request, and removing them from what goes
//! upstream.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use crate::access::foreign;
use crate::config::foreign::Formats;
use crate::config::Token;

/// The credential-bearing parts of one request, borrowed from it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried<'a> {
    /// A ticket: query parameter, then `Authorization: Bearer`, then the cookie.
    pub ticket: Option<&'a str>,
    /// A session token: query parameter.
    pub session: Option<&'a str>,
    /// The device id: header, then cookie, then query parameter (percent-decoded, as a
    /// player's URL encoder wrote it, so `tv%201` in a URL is the `tv 1` of a header;
    /// hash it with [`crate::device::hash_id`] before it goes anywhere).
    pub device: Option<Cow<'a, str>>,
    /// The ticket came in `Authorization` or its cookie, not in the query.
    pub ticket_in_header: bool,
    /// The session token came in its cookie, not in the query.
    pub session_in_cookie: bool,
}

/// Finds what `settings` says to look for in `query` and `headers`.
pub fn read<'a>(settings: &Token, query: Option<&'a str>, headers: &'a HeaderMap) -> Carried<'a> {
    let in_query = query_param(query, &settings.ticket_param);
    let ticket = in_query
        .or_else(|| settings.bearer.then(|| bearer(headers)).flatten())
        .or_else(|| {
            settings
                .ticket_cookie
                .as_deref()
                .and_then(|name| cookie(headers, name))
        });
    let device = headers
        .get(&settings.device_header)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .or_else(|| {
            settings
                .device_cookie
                .as_deref()
                .and_then(|name| cookie(headers, name))
        })
        .map(Cow::Borrowed)
        .or_else(|| query_param(query, &settings.device_param).map(query_value));
    let session_in_query = query_param(query, &settings.session_param);
    let session = session_in_query.or_else(|| cookie(headers, &settings.session_cookie));
    Carried {
        ticket_in_header: ticket.is_some() && in_query.is_none(),
        session_in_cookie: session.is_some() && session_in_query.is_none(),
        ticket,
        session,
        device,
    }
}

/// Finds the foreign credentials of every configured format: the Akamai token in its query
/// parameter or cookie, a secure link's `md5` and `expires`, the Media CDN token in its
/// query parameter or cookie.
pub fn read_foreign<'a>(
    formats: &Formats,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> foreign::Carried<'a> {
    // Each token from its query parameter, else (`true`: from there) its cookie.
    let either = |param: &str, cookie_name: &str| {
        query_param(query, param)
            .map(|t| (t, false))
            .or_else(|| cookie(headers, cookie_name).map(|t| (t, true)))
    };
    let akamai = formats
        .akamai
        .as_ref()
        .and_then(|a| either(&a.token_name, &a.token_name));
    let media_cdn = formats
        .media_cdn
        .as_ref()
        .and_then(|m| either(&m.token_name, &m.cookie_name));
    foreign::Carried {
        akamai: akamai.map(|(t, _)| t),
        secure_link: formats
            .secure_link
            .as_ref()
            .and_then(|_| Some((query_param(query, "md5")?, query_param(query, "expires")?))),
        media_cdn: media_cdn.map(|(t, _)| t),
        akamai_in_cookie: akamai.is_some_and(|(_, c)| c),
        media_cdn_in_cookie: media_cdn.is_some_and(|(_, c)| c),
    }
}

/// Whether the query parameter `name` carries a credential (usher's ticket, session token
/// or device id, or a configured foreign format's): never sent upstream.
pub fn is_credential_param(settings: &Token, formats: &Formats, name: &str) -> bool {
    name == settings.ticket_param
        || name == settings.session_param
        || name == settings.device_param
        || formats
            .akamai
            .as_ref()
            .is_some_and(|a| a.token_name == name)
        || (formats.secure_link.is_some() && (name == "md5" || name == "expires"))
        || formats
            .media_cdn
            .as_ref()
            .is_some_and(|m| m.token_name == name)
}

/// `headers` without the cookies that carry foreign tokens (the Akamai token's and the
/// Media CDN cookie): credentials stay with usher.
pub fn without_foreign_cookies(mut headers: HeaderMap, formats: &Formats) -> HeaderMap {
    let names: Vec<&str> = [
        formats.akamai.as_ref().map(|a| a.token_name.as_str()),
        formats.media_cdn.as_ref().map(|m| m.cookie_name.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if names.is_empty() || !headers.contains_key(COOKIE) {
        return headers;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            names
                .iter()
                .try_fold(v.to_owned(), |rest, name| strip_cookie(&rest, name))
        })
        .collect();
    headers.remove(COOKIE);
    if let Ok(value) = http::HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            headers.insert(COOKIE, value);
        }
    }
    headers
}

/// `scheme://host/path?query` as the client asked for it, for a Media CDN token's
/// `URLPrefix`; empty when no Media CDN token came (nothing else needs it), and when the
/// host the client named is not a plain `host[:port]`.
///
/// The host comes from the client. A `Host` of `cdn.example/vod/free/` would otherwise put
/// a path of the client's choosing in front of the real one, and a token for
/// `http://cdn.example/vod/free/` would cover every path on the route. The empty URL
/// matches no prefix: the token is out of scope.
pub fn request_url<B>(
    carried: &foreign::Carried<'_>,
    proto: &str,
    req: &http::Request<B>,
    path: &str,
) -> String {
    if carried.media_cdn.is_none() {
        return String::new();
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
        .unwrap_or_default();
    if !is_plain_host(host) {
        return String::new();
    }
    match req.uri().query() {
        Some(query) => format!("{proto}://{host}{path}?{query}"),
        None => format!("{proto}://{host}{path}"),
    }
}

/// Whether `host` is a host name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port: nothing that could end the authority (`/`, `?`, `#`, `\\`) or add user
/// information (`@`).
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

/// Splits a session token carried as the first path segment (`/s2.<kid>.<claims>.<mac>/…`)
/// off a raw request path: the token, and the path the content really has.
pub fn split_path_token(raw_path: &str) -> (Option<&str>, &str) {
    match leading_token(raw_path) {
        Some((token, rest)) if !rest.is_empty() => (Some(token), rest),
        _ => (None, raw_path),
    }
}

/// The request path as the log writes it: without a session token as its first segment,
/// even one with nothing after it (which [`split_path_token`] leaves in the path).
pub fn loggable_path(raw_path: &str) -> &str {
    match leading_token(raw_path) {
        Some((_, "")) => "/",
        Some((_, rest)) => rest,
        None => raw_path,
    }
}

/// A first path segment shaped like a session token, and what follows it (from its `/`).
fn leading_token(raw_path: &str) -> Option<(&str, &str)> {
    let rest = raw_path.strip_prefix('/')?;
    let end = rest.find('/').unwrap_or(rest.len());
    let segment = &rest[..end];
    let looks_like_token = crate::ticket::looks_like_session(segment)
        && segment.matches('.').count() == 3
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    looks_like_token.then(|| (segment, &rest[end..]))
}

/// The value of the last `name=` pair in `query` (usher appends its token last, after any
/// query the origin wrote). Empty values count as absent.
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .rsplit('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// A query parameter's value as its writer meant it: percent-decoding (RFC 3986), a `+`
/// kept as it is (device ids of base64 characters are written into URLs unencoded),
/// allocating only when there is something to decode.
fn query_value(raw: &str) -> Cow<'_, str> {
    if raw.contains('%') {
        Cow::Owned(crate::form::unescape(raw))
    } else {
        Cow::Borrowed(raw)
    }
}

/// `query` without the pairs whose name `dropped` says so (and empty pairs), byte for byte
/// otherwise; `None` when nothing is left. Nothing is allocated when nothing is kept.
pub fn strip_query(query: Option<&str>, dropped: impl Fn(&str) -> bool) -> Option<String> {
    let mut kept = String::new();
    for pair in query?.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if pair.is_empty() || dropped(key) {
            continue;
        }
        if !kept.is_empty() {
            kept.push('&');
        }
        kept.push_str(pair);
    }
    (!kept.is_empty()).then_some(kept)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// The `Cookie` header without the ticket cookie; `None` when nothing else remains.
pub fn strip_cookie(value: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_pair_wins_and_empty_is_absent() {
        let q = Some("token=a&x=1&token=b");
        assert_eq!(query_param(q, "token"), Some("b"));
        assert_eq!(query_param(Some("token=&x=1"), "token"), None);
        assert_eq!(query_param(Some("tokens=a"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
    }

    /// A device id of base64 characters (`+`, `/`, `=`) that a player writes into its URL
    /// as it is, without encoding it, names the same device as in the header: a box that
    /// sends the header on one request and the query on another takes one activation.
    #[test]
    fn a_raw_base64_device_id_in_the_query_is_the_one_of_the_header() {
        let config = crate::config::from_str(
            "listen.http = \"127.0.0.1:0\"\nupstream.origin = \"http://127.0.0.1:9\"\n[token]\nsigning_key = \"k\"\nkeys = [{ id = \"k\", secret = \"0123456789abcdef0123456789abcdef\" }]\n",
            std::path::Path::new("."),
            &crate::config::Overrides::default(),
        )
        .unwrap();
        let id = "q+7Rz/9w==";
        let mut headers = HeaderMap::new();
        headers.insert("x-device-id", http::HeaderValue::from_static("q+7Rz/9w=="));
        let by_header = read(&config.token, None, &headers).device;
        let query = format!("device={id}");
        let none = HeaderMap::new();
        let by_query = read(&config.token, Some(&query), &none).device;
        assert_eq!(by_header.as_deref(), Some(id));
        assert_eq!(by_query, by_header);
    }

    #[test]
    fn a_device_id_in_the_query_is_read_as_its_encoder_wrote_it() {
        assert_eq!(query_value("tv%201"), "tv 1");
        assert_eq!(query_value("tv+1"), "tv+1");
        assert_eq!(query_value("a%2Bb%26c"), "a+b&c");
        assert!(matches!(query_value("stb-0042"), Cow::Borrowed("stb-0042")));
    }

    #[test]
    fn strip_keeps_everything_else_in_order() {
        let credential = |name: &str| ["ticket", "token", "device"].contains(&name);
        let q = Some("_HLS_msn=5&ticket=t&_HLS_part=2&token=s&device=d");
        assert_eq!(
            strip_query(q, credential).as_deref(),
            Some("_HLS_msn=5&_HLS_part=2")
        );
        assert_eq!(strip_query(Some("ticket=t"), credential), None);
        assert_eq!(
            strip_query(Some("a&&b"), credential).as_deref(),
            Some("a&b")
        );
        assert_eq!(strip_query(None, credential), None);
    }

    #[test]
    fn a_token_as_the_first_path_segment_is_split_off() {
        assert_eq!(
            split_path_token("/s1.k.e30.AAAA/demo/360p/seg.ts"),
            (Some("s1.k.e30.AAAA"), "/demo/360p/seg.ts")
        );
        assert_eq!(
            split_path_token("/s2.k.AQID.AAAA/demo/360p/seg.ts"),
            (Some("s2.k.AQID.AAAA"), "/demo/360p/seg.ts")
        );
        assert_eq!(
            split_path_token("/demo/360p/seg.ts"),
            (None, "/demo/360p/seg.ts")
        );
        assert_eq!(
            split_path_token("/s1.k.e30.AAAA"),
            (None, "/s1.k.e30.AAAA"),
            "nothing after it"
        );
        assert_eq!(
            split_path_token("/s1.notatoken/x"),
            (None, "/s1.notatoken/x")
        );
    }

    #[test]
    fn the_logged_path_never_holds_a_path_token() {
        assert_eq!(loggable_path("/s2.k.AQID.AAAA/demo/seg.ts"), "/demo/seg.ts");
        assert_eq!(loggable_path("/s1.k.e30.AAAA"), "/");
        assert_eq!(loggable_path("/demo/seg.ts"), "/demo/seg.ts");
    }

    #[test]
    fn the_request_url_takes_a_plain_host_only() {
        let carried = foreign::Carried {
            media_cdn: Some("URLPrefix=x~Expires=1~hmac=00"),
            ..Default::default()
        };
        let url = |host: &str| {
            let req = http::Request::builder()
                .uri("/vod/premium/seg1.ts?edge-cache-token=t")
                .header(http::header::HOST, host)
                .body(())
                .unwrap();
            request_url(&carried, "http", &req, "/vod/premium/seg1.ts")
        };
        assert_eq!(
            url("cdn.example:8080"),
            "http://cdn.example:8080/vod/premium/seg1.ts?edge-cache-token=t"
        );
        assert_eq!(
            url("[::1]:80"),
            "http://[::1]:80/vod/premium/seg1.ts?edge-cache-token=t"
        );
        for host in [
            "cdn.example/vod/free/",
            "cdn.example?",
            "cdn.example#",
            "user@cdn.example",
            "a\\b",
            "",
        ] {
            assert_eq!(url(host), "", "{host:?}");
        }
    }

    #[test]
    fn bearer_and_cookie() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "bearer t1.abc".parse().unwrap());
        h.insert(COOKIE, "a=1; usher_ticket=t1.xyz; b=2".parse().unwrap());
        assert_eq!(bearer(&h), Some("t1.abc"));
        assert_eq!(cookie(&h, "usher_ticket"), Some("t1.xyz"));
        assert_eq!(cookie(&h, "usher"), None);
        assert_eq!(
            strip_cookie("a=1; usher_ticket=t1.xyz; b=2", "usher_ticket").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie("usher_ticket=x", "usher_ticket"), None);
    }
}
