//! The per-request access decision, pure: what was presented, the path, the keys and the
//! instant in; a [`Grant`] or the reason for refusal out. No I/O, so every rule is tested
//! without sockets and benchmarked without noise.

pub mod foreign;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Access;
use crate::net::IpPrefix;
use crate::ticket::{self, Claims, KeyRing, Kind, TicketError};

/// How the access policy treats a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Under an `access.public` prefix: served without checks.
    Public,
    /// Under an `access.protected` prefix: needs a credential.
    Protected,
    /// Under neither: not served at all (usher is not an open proxy).
    Unrouted,
}

/// Which rule covers `path` (normalised). Public prefixes win over protected ones.
pub fn route(access: &Access, path: &str) -> Route {
    if access.public.iter().any(|p| under(path, p)) {
        Route::Public
    } else if access.protected.iter().any(|p| under(path, p)) {
        Route::Protected
    } else {
        Route::Unrouted
    }
}

/// Whether `path` lies under `prefix` on a segment boundary: `/vod/free` covers
/// `/vod/free` and `/vod/free/x`, never `/vod/free-premium/x`. Access prefixes and
/// `[[routes]]` both match this way.
pub fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
}

/// The credentials and facts a request brings. Strings borrow from the request.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// A ticket from the query, `Authorization: Bearer` or the cookie.
    pub ticket: Option<&'a str>,
    /// Whether that ticket came in the query (the play URL), not in a header or cookie that
    /// rides on every request.
    pub ticket_in_query: bool,
    /// A session token from the query, the session cookie or the path.
    pub session: Option<&'a str>,
    /// The device id the request names, if any.
    pub device: Option<&'a str>,
    /// The client's address.
    pub client_ip: IpAddr,
}

/// Permission to serve one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Which credential opened it.
    pub kind: Kind,
    /// That credential's claims (shared with the thread's memo of verified credentials,
    /// see [`ticket::verify_signature_remembered`]; changed with `Arc::make_mut`).
    pub claims: Arc<Claims>,
    /// The end of the right the rights check found (`u64::MAX`: no end), when rights are
    /// checked. Session tokens are capped by it rather than by the ticket's expiry, so
    /// playback outlives the ticket while the right holds.
    pub right_until: Option<u64>,
    /// The device id usher made up for this request, which named none although the
    /// purchase counts activations: the purchase was bound to it, and the response hands
    /// it to the client as usher's device cookie.
    pub minted_device: Option<crate::device::Minted>,
}

/// Why a request was refused. [`Denied::reason`] is what players and metrics see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Nothing was presented (401).
    #[error("no credential")]
    NoCredential,
    /// The credential itself failed (403).
    #[error(transparent)]
    Credential(#[from] TicketError),
    /// The credential's scope does not cover the path (403).
    #[error("path outside the credential's scope")]
    OutOfScope,
    /// The credential is bound to another device, or none was named (403).
    #[error("credential bound to another device")]
    WrongDevice,
    /// The client address is outside the credential's IP binding (403).
    #[error("client address outside the credential's binding")]
    IpMismatch,
    /// A session token presented by another device or from another network (403).
    #[error("session token used by another device or network")]
    SessionShared,
    /// A credential came, but in a format this route does not accept (403).
    #[error("credential format not accepted on this route")]
    NotAccepted,
}

impl Denied {
    /// The machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::NoCredential => "no_credential",
            Denied::Credential(e) => e.reason(),
            Denied::OutOfScope => "out_of_scope",
            Denied::WrongDevice => "wrong_device",
            Denied::IpMismatch => "ip_mismatch",
            Denied::SessionShared => "session_shared",
            Denied::NotAccepted => "format_not_accepted",
        }
    }
}

/// Decides whether `presented` may fetch `path` at `now` (Unix seconds). A session token
/// is preferred over a ticket when both are present: it is what usher itself minted.
///
/// # Errors
/// The first rule that fails, in the order signature, time, scope, device, address.
///
/// An expired session token still passes while `session_alive` says its session is alive:
/// a movie watched with pauses keeps playing as long as its session does. Its `cap` (the
/// end of the ticket or right it came from) bounds that, unless `rights_follow`: a rights
/// check follows for a named subject and decides whether the right still holds, so a
/// right extended while the viewer watches reaches the segment URIs already handed out.
/// For session tokens a device or address mismatch is `SessionShared`: the token was
/// copied, not mis-issued.
pub fn decide(
    ring: &KeyRing,
    skew: u64,
    path: &str,
    presented: &Presented<'_>,
    now: u64,
    session_alive: &dyn Fn(&str) -> bool,
    rights_follow: bool,
) -> Result<Grant, Denied> {
    let raw = presented
        .session
        .or(presented.ticket)
        .ok_or(Denied::NoCredential)?;
    let (kind, claims) = ticket::verify_signature_remembered(ring, raw)?;
    let checked = rights_follow && rights_apply(&claims);
    match ticket::check_window(&claims, now, skew) {
        // Never past what the session came from: the ticket's expiry (or the right's end)
        // it carries as `cap`, when no rights check follows.
        Err(TicketError::Expired { .. })
            if kind == Kind::Session
                && (checked || !claims.past_cap(now, skew))
                && claims.sid.as_deref().is_some_and(session_alive) => {}
        other => other?,
    }
    if !claims.covers(path) || (claims.is_preview() && !claims.allow.iter().any(|p| p == path)) {
        return Err(Denied::OutOfScope);
    }
    let shared_or = |denied| match kind {
        Kind::Session => Denied::SessionShared,
        Kind::Ticket => denied,
    };
    if let Some(bound) = &claims.dev {
        if presented.device.is_some_and(|d| d != bound)
            || (kind == Kind::Ticket && presented.device.is_none())
        {
            return Err(shared_or(Denied::WrongDevice));
        }
    }
    if let Some(prefix) = &claims.ip {
        if !prefix.contains(presented.client_ip) {
            return Err(shared_or(Denied::IpMismatch));
        }
    }
    Ok(Grant {
        kind,
        claims,
        right_until: None,
        minted_device: None,
    })
}

/// Whether the rights check looks at a credential with `claims`: not a preview token (it
/// names its paths exactly and carries no rights), nor a foreign credential that names no
/// subject (its signer vouched for it).
pub fn rights_apply(claims: &Claims) -> bool {
    !claims.is_preview() && claims.sub != foreign::UNNAMED_SUBJECT
}

/// The claims of the session token to mint into a playlist served under `grant`.
///
/// The session keeps the grant's subject, scope and IP binding (or is bound to `network`
/// when the grant has none); it is bound to the device the grant was bound to or, failing
/// that, the device the request named; it keeps the grant's session id (the one the
/// session registry gave it) or takes `new_sid`; it keeps the grant's device class; and it
/// never outlives the right it descends from: the right's end when rights were checked, else the ticket's expiry.
pub fn session_claims(
    grant: &Grant,
    device: Option<&str>,
    network: Option<IpPrefix>,
    now: u64,
    session_ttl: u64,
    new_sid: impl FnOnce() -> String,
) -> Claims {
    let cap = grant.right_until.unwrap_or(match grant.kind {
        Kind::Ticket => grant.claims.exp,
        Kind::Session => grant.claims.cap,
    });
    let sid = grant.claims.sid.clone().unwrap_or_else(new_sid);
    Claims {
        sub: grant.claims.sub.clone(),
        scope: grant.claims.scope.clone(),
        nbf: 0,
        exp: now.saturating_add(session_ttl).min(cap),
        dev: grant
            .claims
            .dev
            .clone()
            .or_else(|| device.map(str::to_owned)),
        ip: grant.claims.ip.or(network),
        sid: Some(sid),
        cap,
        allow: Vec::new(),
        // The class decided at this request travels on, so no later request re-reads it.
        cls: grant.claims.cls,
    }
}

#[cfg(test)]
mod tests;
