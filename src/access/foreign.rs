//! The access decision for credentials of the formats CDNs speak (Akamai EdgeAuth, nginx
//! `secure_link`, Google Media CDN), pure like [`super::decide`].
//!
//! A foreign credential proves what the CDN that checks it would prove: its signature,
//! its window, its path (ACL, globs, URL prefix or exact path) and its client address.
//! The grant it yields is usher's own, with:
//!
//! - **subject**: the token's own when it names one (Akamai `id`, Media CDN `SessionID`),
//!   and the rights check then applies to it as to a ticket's subject; otherwise
//!   [`UNNAMED_SUBJECT`], for which there is no rights check: the operator who signed the
//!   credential is trusted to have checked.
//! - **scope**: no wider than the credential: the literal part of a glob that is a
//!   prefix followed by one `*`, the path of a URL prefix, or else the request path itself.
//! - **window**: the credential's expiry caps the session tokens minted from it, unless
//!   rights were checked: then, as for tickets, the end of the subject's right does.
//! - **session**: one per credential (its id is derived from the credential), so every
//!   request carrying the same token counts as the same stream.

use std::net::IpAddr;

use http::HeaderMap;

use super::{Denied, Grant};
use crate::config::foreign::{Format, Formats};
use crate::net::IpPrefix;
use crate::ticket::media_cdn::{self, Scope};
use crate::ticket::{edgeauth, Claims, Kind};

/// Subject of grants from credentials that name no one. `~` is outside what account ids
/// may use, so no buyer holds it, and the rights check is skipped for it.
pub const UNNAMED_SUBJECT: &str = "~signed";

/// The foreign credentials a request carries, borrowed from it (absent when their format
/// is not configured).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Carried<'a> {
    /// The Akamai token (`[akamai].token_name`, query or cookie).
    pub akamai: Option<&'a str>,
    /// The `md5` and `expires` query parameters of a secure link.
    pub secure_link: Option<(&'a str, &'a str)>,
    /// The Media CDN token (`[media_cdn].token_name` in the query, or its cookie).
    pub media_cdn: Option<&'a str>,
    /// The Akamai token came in its cookie, not in the query.
    pub akamai_in_cookie: bool,
    /// The Media CDN token came in its cookie, not in the query.
    pub media_cdn_in_cookie: bool,
}

impl Carried<'_> {
    fn has(&self, format: Format) -> bool {
        match format {
            Format::Usher => false,
            Format::Akamai => self.akamai.is_some(),
            Format::SecureLink => self.secure_link.is_some(),
            Format::MediaCdn => self.media_cdn.is_some(),
        }
    }

    /// Whether any foreign credential came.
    pub fn any(&self) -> bool {
        self.akamai.is_some() || self.secure_link.is_some() || self.media_cdn.is_some()
    }

    /// The format [`decide`] judges: the first the route `accepts` and the request
    /// carries, in the order Media CDN, Akamai, secure_link.
    pub fn chosen(&self, accepts: &[Format]) -> Option<Format> {
        [Format::MediaCdn, Format::Akamai, Format::SecureLink]
            .into_iter()
            .find(|f| accepts.contains(f) && self.has(*f))
    }
}

/// The request facts foreign credentials are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The normalised path.
    pub path: &'a str,
    /// `scheme://host/path?query` as the client asked (Media CDN `URLPrefix`).
    pub url: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The request's headers (Media CDN `Headers`).
    pub headers: &'a HeaderMap,
}

/// Decides on the foreign credentials of a request, trying the formats the route
/// `accepts` in the order Media CDN, Akamai, secure_link.
///
/// # Errors
/// `NoCredential` when none came; `NotAccepted` when some came but the route accepts none
/// of their formats; otherwise the refusal of the first accepted one (`Credential`,
/// `OutOfScope`, `IpMismatch`).
pub fn decide(
    formats: &Formats,
    accepts: &[Format],
    carried: &Carried<'_>,
    facts: &Facts<'_>,
    now: u64,
    skew: u64,
) -> Result<Grant, Denied> {
    let Some(format) = carried.chosen(accepts) else {
        return Err(if carried.any() {
            Denied::NotAccepted
        } else {
            Denied::NoCredential
        });
    };
    match format {
        Format::MediaCdn => media(formats, carried, facts, now, skew),
        Format::Akamai => akamai(formats, carried, facts, now, skew),
        _ => secure_link(formats, carried, facts, now),
    }
}

fn media(
    formats: &Formats,
    carried: &Carried<'_>,
    facts: &Facts<'_>,
    now: u64,
    skew: u64,
) -> Result<Grant, Denied> {
    let (Some(settings), Some(raw)) = (&formats.media_cdn, carried.media_cdn) else {
        return Err(Denied::NoCredential);
    };
    let request = media_cdn::Request {
        url: facts.url,
        path: facts.path,
        client: facts.client_ip,
        headers: facts.headers,
    };
    let verified = media_cdn::verify(raw, &settings.keys, &request, now, skew)?;
    if !verified.in_scope {
        return Err(Denied::OutOfScope);
    }
    if !verified.client_allowed {
        return Err(Denied::IpMismatch);
    }
    let token = verified.token;
    let scope = match &token.scope {
        Scope::PathGlobs(globs) => globs
            .iter()
            .find(|g| media_cdn::glob_matches(g, facts.path))
            .map_or_else(|| facts.path.to_owned(), |g| glob_scope(g, facts.path)),
        Scope::UrlPrefix(prefix) => url_prefix_scope(prefix, facts.path),
        Scope::FullPath(path) => path.clone(),
    };
    let ip = token
        .ranges()
        .into_iter()
        .find(|r| r.contains(facts.client_ip));
    Ok(grant(
        Format::MediaCdn,
        raw,
        token.session_id,
        scope,
        token.expires,
        ip,
    ))
}

fn akamai(
    formats: &Formats,
    carried: &Carried<'_>,
    facts: &Facts<'_>,
    now: u64,
    skew: u64,
) -> Result<Grant, Denied> {
    let (Some(settings), Some(raw)) = (&formats.akamai, carried.akamai) else {
        return Err(Denied::NoCredential);
    };
    let verified = edgeauth::verify(
        raw,
        &settings.verify_keys,
        facts.path,
        &settings.options,
        now,
        skew,
    )?;
    if !verified.in_scope {
        return Err(Denied::OutOfScope);
    }
    if !verified.allows(facts.client_ip, &settings.options) {
        return Err(Denied::IpMismatch);
    }
    let scope = match &verified.token.acl {
        Some(acls) => acls
            .iter()
            .find(|acl| edgeauth::acl_matches(acl, facts.path))
            .map_or_else(|| facts.path.to_owned(), |acl| glob_scope(acl, facts.path)),
        None => facts.path.to_owned(),
    };
    let ip = verified
        .token
        .ip
        .is_some()
        .then(|| IpPrefix::new(facts.client_ip, full_length(facts.client_ip)).ok())
        .flatten();
    Ok(grant(
        Format::Akamai,
        raw,
        verified.token.id,
        scope,
        verified.token.exp,
        ip,
    ))
}

fn secure_link(
    formats: &Formats,
    carried: &Carried<'_>,
    facts: &Facts<'_>,
    now: u64,
) -> Result<Grant, Denied> {
    let (Some(settings), Some((md5, expires))) = (&formats.secure_link, carried.secure_link) else {
        return Err(Denied::NoCredential);
    };
    let expression = &settings.expression;
    expression.verify(facts.path, md5, expires, Some(facts.client_ip), now)?;
    let exp = expires.parse().unwrap_or(now);
    let ip = expression
        .binds_address()
        .then(|| IpPrefix::new(facts.client_ip, full_length(facts.client_ip)).ok())
        .flatten();
    let raw = format!("{md5}&{expires}");
    Ok(grant(
        Format::SecureLink,
        &raw,
        None,
        facts.path.to_owned(),
        exp,
        ip,
    ))
}

fn full_length(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The scope a glob grants for `path`: its literal part when it is a prefix followed by
/// a single trailing `*`, else only the path (a narrower scope than the glob, never a
/// wider one).
fn glob_scope(glob: &str, path: &str) -> String {
    match glob.strip_suffix('*') {
        Some(literal) if !literal.contains(['*', '?']) && literal.starts_with('/') => {
            literal.to_owned()
        }
        _ => path.to_owned(),
    }
}

/// The scope a URL prefix grants: its path, unless it has a query (then only the path).
fn url_prefix_scope(prefix: &str, path: &str) -> String {
    let after_scheme = prefix.split_once("://").map_or(prefix, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(at) if !after_scheme.contains('?') => after_scheme[at..].to_owned(),
        Some(_) => path.to_owned(),
        None => "/".to_owned(),
    }
}

/// The grant of a verified foreign credential; see the module doc.
fn grant(
    format: Format,
    raw: &str,
    subject: Option<String>,
    scope: String,
    exp: u64,
    ip: Option<IpPrefix>,
) -> Grant {
    let sid = crate::sessions::derived_id(&[format.as_str(), raw]);
    Grant {
        kind: Kind::Session,
        claims: std::sync::Arc::new(Claims {
            sub: subject
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| UNNAMED_SUBJECT.to_owned()),
            scope,
            nbf: 0,
            exp,
            dev: None,
            ip,
            sid: Some(sid),
            cap: exp,
            allow: Vec::new(),
            cls: None,
        }),
        right_until: None,
        minted_device: None,
    }
}

#[cfg(test)]
mod tests;
