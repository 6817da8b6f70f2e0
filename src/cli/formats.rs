//! `usher ticket issue|inspect` for the formats usher shares with CDNs: Akamai EdgeAuth,
//! nginx `secure_link` and Google Media CDN, with the keys of the config file.
//!
//! A `--scope` ending in `/` opens everything below it (an Akamai ACL or Media CDN path
//! glob `<scope>*`); a scope with a `*` is used as the glob itself; any other scope opens
//! exactly that path (Akamai URL mode, Media CDN `FullPath`, a secure link).

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::time;
use crate::config::foreign::Format;
use crate::config::Config;
use crate::ticket::edgeauth::{self, EdgeToken};
use crate::ticket::media_cdn::{self, MediaToken, Scope};
use crate::ticket::TicketError;

/// What `issue` was asked for, beyond the format.
#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    /// The subject (Akamai `id`, Media CDN `SessionID`); secure links name none.
    pub sub: Option<String>,
    /// Path prefix, glob or exact path.
    pub scope: String,
    /// Client address the token is bound to.
    pub ip: Option<String>,
    /// Lifetime; the format's `ttl` when absent.
    pub ttl: Option<Duration>,
}

/// Guesses the format of a credential from its shape.
pub fn detect(raw: &str) -> Format {
    if raw.starts_with("t1.") || crate::ticket::looks_like_session(raw) {
        Format::Usher
    } else if raw.contains("md5=") {
        Format::SecureLink
    } else if raw.contains("Expires=") {
        Format::MediaCdn
    } else {
        Format::Akamai
    }
}

fn section(format: Format) -> String {
    format!("the config has no [{}] section", format.as_str())
}

/// Mints a credential of a foreign `format` (not [`Format::Usher`]) valid from `now`.
///
/// # Errors
/// A message when the format's section is missing, or the subject, scope or address do
/// not fit it.
pub fn issue(
    config: &Config,
    format: Format,
    req: &IssueRequest,
    now: u64,
) -> Result<String, String> {
    if !req.scope.starts_with('/') {
        return Err(format!("--scope \"{}\": a path starts with /", req.scope));
    }
    let prefix = req.scope.ends_with('/') || req.scope.contains('*');
    let glob = if req.scope.contains('*') {
        req.scope.clone()
    } else {
        format!("{}*", req.scope)
    };
    let formats = &config.formats;
    match format {
        Format::Usher => Err("usher tickets are issued by `usher ticket issue`".to_owned()),
        Format::Akamai => {
            let akamai = formats.akamai.as_ref().ok_or_else(|| section(format))?;
            let token = EdgeToken {
                ip: req.ip.clone(),
                start: None,
                exp: now + req.ttl.unwrap_or(akamai.ttl).as_secs().max(1),
                acl: prefix.then(|| vec![glob]),
                id: req.sub.clone(),
                data: None,
            };
            let url = (!prefix).then_some(req.scope.as_str());
            Ok(edgeauth::mint(&token, url, &akamai.key, &akamai.options))
        }
        Format::SecureLink => {
            let link = formats
                .secure_link
                .as_ref()
                .ok_or_else(|| section(format))?;
            if prefix {
                return Err("--scope: a secure link opens one exact path, not a prefix".into());
            }
            if req.sub.is_some() {
                return Err("--sub: a secure link names no subject".to_owned());
            }
            let client = parse_ip(req.ip.as_deref())?;
            let expires = now + req.ttl.unwrap_or(link.ttl).as_secs().max(1);
            Ok(link.expression.query(&req.scope, expires, client))
        }
        Format::MediaCdn => {
            let media = formats.media_cdn.as_ref().ok_or_else(|| section(format))?;
            let signer = media
                .signer
                .as_ref()
                .ok_or("[media_cdn] has no key that can sign")?;
            let scope = if prefix {
                Scope::PathGlobs(vec![glob])
            } else {
                Scope::FullPath(req.scope.clone())
            };
            let mut token =
                MediaToken::new(scope, now + req.ttl.unwrap_or(media.ttl).as_secs().max(1));
            token.session_id = req.sub.clone();
            token.ip_ranges = req.ip.clone();
            Ok(media_cdn::mint(&token, signer))
        }
    }
}

fn parse_ip(text: Option<&str>) -> Result<Option<IpAddr>, String> {
    text.map(|t| {
        t.parse()
            .map_err(|_| format!("--ip \"{t}\": not an address"))
    })
    .transpose()
}

/// The request a foreign credential is inspected against.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    /// The path (or `scheme://host/path` URL) it is used for.
    pub path: Option<String>,
    /// The client's address.
    pub ip: IpAddr,
    /// Request headers (`Name: value`), for Media CDN `Headers`.
    pub headers: Vec<String>,
}

/// Prints a foreign credential's fields, whether its signature verifies with the
/// configured keys and whether it is inside its window; the exit status (0 only when
/// both hold and the path and address fit).
pub fn inspect(config: &Config, format: Format, raw: &str, req: &InspectRequest, now: u64) -> i32 {
    println!("format:     {}", format.as_str());
    let (path, url) = match req.path.as_deref() {
        Some(p) if p.contains("://") => {
            let after = p.split_once("://").map_or(p, |(_, rest)| rest);
            let path = after.find('/').map_or("/", |at| &after[at..]);
            (
                path.split('?').next().unwrap_or(path).to_owned(),
                p.to_owned(),
            )
        }
        Some(p) => (p.to_owned(), String::new()),
        None => ("/".to_owned(), String::new()),
    };
    let outcome = match format {
        Format::Usher => unreachable!("usher credentials are inspected by cli::inspect"),
        Format::Akamai => inspect_akamai(config, raw, &path, req.ip, now),
        Format::SecureLink => inspect_secure_link(config, raw, &path, req.ip, now),
        Format::MediaCdn => inspect_media(config, raw, &path, &url, req, now),
    };
    report(outcome)
}

/// Signature, window and fit, as found.
struct Outcome {
    signature: Result<(), TicketError>,
    window: Result<(), TicketError>,
    /// Path and address problems, when the credential verified.
    fit: Vec<&'static str>,
}

fn outcome(result: Result<Vec<&'static str>, TicketError>) -> Outcome {
    match result {
        Ok(fit) => Outcome {
            signature: Ok(()),
            window: Ok(()),
            fit,
        },
        Err(e @ (TicketError::Expired { .. } | TicketError::NotYetValid { .. })) => Outcome {
            signature: Ok(()),
            window: Err(e),
            fit: Vec::new(),
        },
        Err(e) => Outcome {
            signature: Err(e.clone()),
            window: Err(e),
            fit: Vec::new(),
        },
    }
}

fn report(o: Outcome) -> i32 {
    let line = |r: &Result<(), TicketError>| match r {
        Ok(()) => "yes".to_owned(),
        Err(e) => format!("no ({}: {e})", e.reason()),
    };
    println!("signature:  {}", line(&o.signature));
    if o.signature.is_ok() {
        println!("window:     {}", line(&o.window));
    } else {
        println!("window:     unknown (the signature does not verify)");
    }
    for problem in &o.fit {
        println!("fits:       no ({problem})");
    }
    let ok = o.signature.is_ok() && o.window.is_ok() && o.fit.is_empty();
    println!("verifies:   {}", if ok { "yes" } else { "no" });
    i32::from(!ok)
}

fn print_fields(raw: &str, split: char, decode: &[&str]) {
    for field in raw.split(split) {
        let (name, value) = field.split_once('=').unwrap_or((field, ""));
        if name == "hmac" || name == "Signature" || name == "md5" {
            continue;
        }
        let shown = if decode.contains(&name) {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map_or_else(|| value.to_owned(), |text| format!("{text}  ({value})"))
        } else if matches!(name, "st" | "exp" | "Starts" | "Expires" | "expires") {
            value
                .parse()
                .map_or_else(|_| value.to_owned(), |unix: u64| time(unix))
        } else {
            value.to_owned()
        };
        println!("{:<11} {shown}", format!("{name}:"));
    }
}

fn inspect_akamai(config: &Config, raw: &str, path: &str, ip: IpAddr, now: u64) -> Outcome {
    print_fields(raw, '~', &[]);
    let Some(akamai) = config.formats.akamai.as_ref() else {
        println!("note:       {}", section(Format::Akamai));
        return outcome(Err(TicketError::UnknownKey("[akamai]".into())));
    };
    let skew = config.token.clock_skew.as_secs();
    let keys = &akamai.verify_keys;
    outcome(
        edgeauth::verify(raw, keys, path, &akamai.options, now, skew).map(|v| {
            let mut fit = Vec::new();
            if !v.in_scope {
                fit.push("out_of_scope");
            }
            if !v.allows(ip, &akamai.options) {
                fit.push("ip_mismatch");
            }
            fit
        }),
    )
}

fn inspect_secure_link(config: &Config, raw: &str, path: &str, ip: IpAddr, now: u64) -> Outcome {
    let raw = raw.trim_start_matches('?');
    print_fields(raw, '&', &[]);
    println!("path:       {path}");
    let Some(link) = config.formats.secure_link.as_ref() else {
        println!("note:       {}", section(Format::SecureLink));
        return outcome(Err(TicketError::UnknownKey("[secure_link]".into())));
    };
    let param = |name: &str| crate::proxy::credentials::query_param(Some(raw), name);
    let (Some(md5), Some(expires)) = (param("md5"), param("expires")) else {
        return outcome(Err(TicketError::Malformed));
    };
    outcome(
        link.expression
            .verify(path, md5, expires, Some(ip), now)
            .map(|()| Vec::new()),
    )
}

fn inspect_media(
    config: &Config,
    raw: &str,
    path: &str,
    url: &str,
    req: &InspectRequest,
    now: u64,
) -> Outcome {
    print_fields(raw, '~', &["URLPrefix", "IPRanges"]);
    let Some(media) = config.formats.media_cdn.as_ref() else {
        println!("note:       {}", section(Format::MediaCdn));
        return outcome(Err(TicketError::UnknownKey("[media_cdn]".into())));
    };
    let mut headers = HeaderMap::new();
    for line in &req.headers {
        let parsed = line.split_once(':').and_then(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        });
        match parsed {
            Some((name, value)) => {
                headers.append(name, value);
            }
            None => println!("note:       --header \"{line}\" is not `Name: value`; ignored"),
        }
    }
    let request = media_cdn::Request {
        url,
        path,
        client: req.ip,
        headers: &headers,
    };
    let skew = config.token.clock_skew.as_secs();
    outcome(
        media_cdn::verify(raw, &media.keys, &request, now, skew).map(|v| {
            let mut fit = Vec::new();
            if !v.in_scope {
                fit.push("out_of_scope");
            }
            if !v.client_allowed {
                fit.push("ip_mismatch");
            }
            fit
        }),
    )
}
