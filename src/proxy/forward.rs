//! Headers across the proxy: hop-by-hop fields removed both ways, credentials removed on
//! the way up, and the client named in `X-Forwarded-*` and `Forwarded`.

use std::net::IpAddr;

use http::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, EXPECT, HOST, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, RANGE, REFERER, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::credentials::strip_cookie;
use crate::config::Token;
use crate::net::IpPrefix;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers: the fixed list and any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHORIZATION,
        PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
}

/// The client's address: the socket's peer, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` (or, when there is none, `Forwarded: for=`) that
/// is not itself a trusted proxy. Untrusted peers cannot name another client.
///
/// The hops are read from the right, as the proxies appended them. A hop that does not
/// parse (`unknown`, an obfuscated name) ends the walk: what lies left of it was written
/// by someone no trusted proxy vouches for, so the client is taken to be the last trusted
/// hop read. Ports (`203.0.113.9:51234`, `"[2001:db8::7]:443"`) are dropped.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpPrefix]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut hops: Vec<Option<IpAddr>> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(hop_address)
        .collect();
    if hops.is_empty() {
        hops = headers
            .get_all(FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (name, value) = pair.trim().split_once('=')?;
                        name.eq_ignore_ascii_case("for").then_some(value)
                    })
                    .and_then(hop_address)
            })
            .collect();
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip) => client = ip,
            Some(ip) => return ip,
            None => return client,
        }
    }
    client
}

/// The scheme the client connected with: the listener's (`listener`), or, when the peer
/// is a trusted proxy (a load balancer that ends TLS in front of usher), the one that
/// proxy names: the last value of `X-Forwarded-Proto`, or, when there is none, the
/// `proto=` of the last `Forwarded` element (none there: the listener's). The last is the
/// word of the proxy nearest usher, provided it sets the header on every request (README
/// Forwarding). Only `http` and `https` are taken; anything else, and an untrusted peer's
/// word, leaves the listener's.
pub fn client_proto(
    peer: IpAddr,
    listener: &'static str,
    headers: &HeaderMap,
    trusted: &[IpPrefix],
) -> &'static str {
    if !trusted.iter().any(|t| t.contains(peer)) {
        return listener;
    }
    let last = |name: HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
    };
    let named = match last(X_FORWARDED_PROTO) {
        Some(proto) => Some(proto),
        // The nearest proxy's element: a client's `proto=` further left is not its word.
        None => last(FORWARDED).and_then(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.eq_ignore_ascii_case("proto")
                    .then(|| value.trim_matches('"'))
            })
        }),
    };
    match named {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ => listener,
    }
}

/// The address of one hop (`203.0.113.9`, `203.0.113.9:51234`, `2001:db8::7`,
/// `"[2001:db8::7]:443"`), or `None` for what is not an address.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Some(bracketed) = hop.strip_prefix('[') {
        return bracketed.split(']').next()?.parse().ok();
    }
    hop.parse().ok().or_else(|| {
        // `v4:port`: one colon (an IPv6 address has more).
        let (address, port) = hop.split_once(':')?;
        port.parse::<u16>().ok()?;
        address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    })
}

/// Who the client is, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The address usher's connection came from (appended to `X-Forwarded-For`).
    pub ip: IpAddr,
    /// The client as usher judged it ([`client_ip`]): sent as `X-Real-IP`.
    pub judged: IpAddr,
    /// `http` or `https`, as the client connected: to usher, or to a trusted proxy in
    /// front that says so ([`client_proto`]).
    pub proto: &'static str,
    /// The host the client asked for, if known.
    pub host: Option<&'a str>,
}

/// The headers to send upstream for a request that came with `incoming`.
///
/// `whole` asks for the complete, unencoded representation (playlists, which are
/// rewritten): range and conditional headers are dropped and `Accept-Encoding: identity`
/// is sent.
pub fn upstream_headers(
    incoming: &HeaderMap,
    settings: &Token,
    client: Client<'_>,
    whole: bool,
) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    // usher never sends the upstream a body: a client's `Content-Length` on a request
    // sent on without one would make the upstream read the next request on the pooled
    // connection as this one's body, and answer a request smuggled into its headers.
    headers.remove(CONTENT_LENGTH);
    headers.remove(EXPECT);
    headers.remove(HOST);
    headers.remove(&settings.device_header);
    strip_referer_query(&mut headers);
    if settings.bearer {
        headers.remove(AUTHORIZATION);
    }
    // usher's own cookies (the ticket's and the session token's) stay with usher.
    let ours = [
        settings.ticket_cookie.as_deref(),
        Some(settings.session_cookie.as_str()),
        settings.device_cookie.as_deref(),
    ];
    let kept = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            ours.iter()
                .flatten()
                .try_fold(v.to_owned(), |rest, name| strip_cookie(&rest, name))
        })
        .collect::<Vec<_>>()
        .join("; ");
    headers.remove(COOKIE);
    if let Ok(value) = HeaderValue::from_str(&kept) {
        if !kept.is_empty() {
            headers.insert(COOKIE, value);
        }
    }
    if whole {
        for name in [
            RANGE,
            IF_RANGE,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_MATCH,
            IF_UNMODIFIED_SINCE,
        ] {
            headers.remove(name);
        }
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    append(&mut headers, X_FORWARDED_FOR, &client.ip.to_string());
    // Whatever a client wrote there, an upstream that reads it hears the client usher
    // judged (through `listen.trusted_proxies`), not an address a client made up.
    if let Ok(value) = HeaderValue::from_str(&client.judged.to_string()) {
        headers.insert(X_REAL_IP, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(client.proto));
    if let Some(value) = client.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST, value);
    }
    let node = match client.ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut forwarded = format!("for={node};proto={}", client.proto);
    if let Some(host) = client
        .host
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
    {
        forwarded.push_str(";host=\"");
        forwarded.push_str(host);
        forwarded.push('"');
    }
    append(&mut headers, FORWARDED, &forwarded);
    headers
}

/// Cuts the query and fragment off `Referer`: a browser player's page is often the play
/// URL itself, so its ticket (or another format's credential) would reach the upstream,
/// and its logs, on every request the page makes. The page's scheme, host and path stay
/// for an upstream that checks where its objects are embedded.
fn strip_referer_query(headers: &mut HeaderMap) {
    let Some(referer) = headers.get(REFERER) else {
        return;
    };
    let bytes = referer.as_bytes();
    let Some(cut) = bytes.iter().position(|b| matches!(b, b'?' | b'#')) else {
        return;
    };
    match HeaderValue::from_bytes(&bytes[..cut]) {
        Ok(page) if cut > 0 => {
            headers.insert(REFERER, page);
        }
        _ => {
            headers.remove(REFERER);
        }
    }
}

/// Appends `value` to a list header, as proxies in a chain do: after every line the
/// request has of it, in order, joined as one (as [`client_ip`] reads them). Not the first
/// line alone: a trusted proxy that adds its own line (HAProxy's `option forwardfor`)
/// beside a client's would lose its hop, and the upstream would take the address the
/// client wrote for the client's.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut joined = String::new();
    let lines = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok());
    for existing in lines.map(str::trim).filter(|v| !v.is_empty()) {
        joined.push_str(existing);
        joined.push_str(", ");
    }
    joined.push_str(value);
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Overrides};

    fn settings() -> Token {
        let text = r#"
            upstream.origin = "http://127.0.0.1:1"
            listen.http = "127.0.0.1:0"
            [token]
            signing_key = "k"
            keys = [{ id = "k", secret = "0123456789abcdef0123456789abcdef" }]
        "#;
        config::from_str(text, std::path::Path::new("."), &Overrides::default())
            .unwrap()
            .token
    }

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let trusted: Vec<IpPrefix> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().unwrap());
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(stranger, &h, &trusted),
            stranger,
            "an untrusted peer cannot claim one"
        );
        let mut f = HeaderMap::new();
        f.insert(
            "forwarded",
            "for=\"[2001:db8::7]:443\";proto=https".parse().unwrap(),
        );
        assert_eq!(
            client_ip(proxy, &f, &trusted),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn only_trusted_proxies_name_the_scheme_and_the_nearest_one_speaks() {
        let trusted: Vec<IpPrefix> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        let headers = |lines: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in lines {
                h.append(*name, value.parse().unwrap());
            }
            h
        };
        let https = headers(&[("x-forwarded-proto", "HTTPS")]);
        assert_eq!(client_proto(proxy, "http", &https, &trusted), "https");
        assert_eq!(client_proto(stranger, "http", &https, &trusted), "http");
        assert_eq!(client_proto(proxy, "http", &https, &[]), "http");
        // The client wrote the first line; the balancer appended the last.
        let appended = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http"),
        ]);
        assert_eq!(client_proto(proxy, "https", &appended, &trusted), "http");
        let listed = headers(&[("x-forwarded-proto", "http, https")]);
        assert_eq!(client_proto(proxy, "http", &listed, &trusted), "https");
        let forwarded = headers(&[(
            "forwarded",
            "for=1.2.3.4;proto=http, for=10.0.0.9;proto=\"https\"",
        )]);
        assert_eq!(client_proto(proxy, "http", &forwarded, &trusted), "https");
        // The nearest proxy wrote `for=` only: a client's `proto=` further left is not
        // its word.
        let written = headers(&[("forwarded", "for=6.6.6.6;proto=https, for=203.0.113.7")]);
        assert_eq!(client_proto(proxy, "http", &written, &trusted), "http");
        for odd in ["ws", "", "https://"] {
            let h = headers(&[("x-forwarded-proto", odd)]);
            assert_eq!(client_proto(proxy, "http", &h, &trusted), "http", "{odd}");
        }
        assert_eq!(
            client_proto(proxy, "https", &HeaderMap::new(), &trusted),
            "https"
        );
    }

    #[test]
    fn a_hop_that_does_not_parse_ends_the_walk_and_ports_are_dropped() {
        let trusted: Vec<IpPrefix> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            client_ip(proxy, &h, &trusted)
        };
        // Proxies that write `IP:port` name the client with its port.
        assert_eq!(
            with("x-forwarded-for", "6.6.6.6, 203.0.113.9:51234"),
            ip("203.0.113.9")
        );
        assert_eq!(
            with("forwarded", "for=6.6.6.6, FOR=\"203.0.113.9:51234\""),
            ip("203.0.113.9")
        );
        assert_eq!(
            with("forwarded", "for=6.6.6.6, for=\"[2001:db8::7]:443\""),
            ip("2001:db8::7")
        );
        // What a client wrote left of a hop no proxy could name is not believed.
        assert_eq!(with("x-forwarded-for", "6.6.6.6, unknown"), proxy);
        assert_eq!(
            with("x-forwarded-for", "6.6.6.6, unknown, 10.1.1.1"),
            ip("10.1.1.1")
        );
        assert_eq!(with("forwarded", "for=6.6.6.6, for=unknown"), proxy);
    }

    #[test]
    fn credentials_and_hop_by_hop_never_go_upstream() {
        let mut incoming = HeaderMap::new();
        incoming.insert(AUTHORIZATION, "Bearer t1.secret".parse().unwrap());
        incoming.insert(COOKIE, "usher_ticket=t1.secret; lang=en".parse().unwrap());
        incoming.insert("x-device-id", "tv-1".parse().unwrap());
        incoming.insert(CONNECTION, "keep-alive, x-custom".parse().unwrap());
        incoming.insert("x-custom", "1".parse().unwrap());
        incoming.insert(RANGE, "bytes=0-1".parse().unwrap());
        incoming.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        incoming.insert("x-real-ip", "6.6.6.6".parse().unwrap());
        incoming.insert(
            "referer",
            "https://site.example/watch?ticket=t1.secret#t=5"
                .parse()
                .unwrap(),
        );
        let client = Client {
            ip: "203.0.113.5".parse().unwrap(),
            judged: "198.51.100.1".parse().unwrap(),
            proto: "https",
            host: Some("edge.example"),
        };
        let out = upstream_headers(&incoming, &settings(), client, false);
        assert!(out.get(AUTHORIZATION).is_none());
        assert_eq!(out[COOKIE], "lang=en");
        assert!(out.get("x-device-id").is_none());
        assert!(out.get("x-custom").is_none());
        assert!(out.get(CONNECTION).is_none());
        assert_eq!(out[RANGE], "bytes=0-1");
        assert_eq!(out["x-forwarded-for"], "198.51.100.1, 203.0.113.5");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-host"], "edge.example");
        assert_eq!(out["x-real-ip"], "198.51.100.1");
        assert_eq!(out["referer"], "https://site.example/watch");
        assert_eq!(
            out["forwarded"],
            "for=203.0.113.5;proto=https;host=\"edge.example\""
        );
        let whole = upstream_headers(&incoming, &settings(), client, true);
        assert!(whole.get(RANGE).is_none());
        assert_eq!(whole[ACCEPT_ENCODING], "identity");
    }
}
