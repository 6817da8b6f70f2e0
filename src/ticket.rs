//! Credentials: tickets and session tokens, and the key ring that signs them.
//!
//! A credential is four dot-separated fields, all URL-safe:
//!
//! ```text
//! t1.<kid>.<claims>.<mac>        a ticket (issued at purchase, long-lived)
//! s2.<kid>.<claims>.<mac>        a session token (minted into rewritten playlists)
//! s1.<kid>.<claims>.<mac>        a session token of the first format (still accepted)
//! ```
//!
//! `claims` is unpadded base64url of the [`Claims`]: a small JSON object in `t1` and `s1`,
//! packed bytes in `s2` ([`compact`]), because a session token is written on every URI of a
//! playlist. `mac` is unpadded base64url of HMAC-SHA256 over everything before the last
//! dot, under the key named by `kid` (the full 32 bytes for tickets, the first 16, 128 bits,
//! for session tokens). Verification looks the key up by id, checks the MAC in constant
//! time *before* it decodes anything else, then checks the time window with the configured
//! skew.

mod compact;
pub mod edgeauth;
mod keyring;
pub mod media_cdn;
mod memo;
pub mod secure_link;

pub use keyring::{Key, KeyId, KeyRing};
pub use memo::verify_signature_remembered;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::net::IpPrefix;
use crate::rights::model::DeviceClass;

/// Which of the two credential kinds a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Issued to a buyer; opens the content in its scope.
    Ticket,
    /// Minted by usher into a playlist it served; opens the same scope for a short time.
    Session,
}

impl Kind {
    fn mac_len(self) -> usize {
        match self {
            Kind::Ticket => 32,
            Kind::Session => 16,
        }
    }

    /// Name used in logs, metrics and `ticket inspect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ticket => "ticket",
            Kind::Session => "session",
        }
    }
}

/// What a credential says. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The buyer or account the credential was issued to.
    pub sub: String,
    /// Path prefix the credential opens (`/events/final/` opens everything below it).
    pub scope: String,
    /// Not valid before this instant.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nbf: u64,
    /// Not valid from this instant on.
    pub exp: u64,
    /// Device the credential is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// Client address prefix the credential is bound to, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "ip_prefix_text"
    )]
    pub ip: Option<IpPrefix>,
    /// Session id (session tokens only): one player session under one ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Session tokens only: the expiry of the ticket the session came from, past which no
    /// new session token is minted for it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cap: u64,
    /// Preview tokens only: the exact paths this token opens (the first seconds of a
    /// product's media, for a viewer without a ticket). Empty for every other credential.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// The device class the credential plays as. On a ticket, optional: when set, the only
    /// class it opens, whatever the client's header says. On a session token, the class
    /// decided at the playlist request, so segment requests (which players cannot add
    /// headers to) are judged by it, never by a header. One letter on the wire (`c`:
    /// `o`, `i`, `h`), to keep session tokens short.
    #[serde(
        default,
        rename = "c",
        skip_serializing_if = "Option::is_none",
        with = "class_letter"
    )]
    pub cls: Option<DeviceClass>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Claims {
    /// Whether `now` lies past the `cap` (with `skew`): the end of what a session token
    /// came from. A token without one (0) is never past it.
    pub fn past_cap(&self, now: u64, skew: u64) -> bool {
        self.cap != 0 && now >= self.cap.saturating_add(skew)
    }

    /// Whether this is a preview token (minted for a viewer without a ticket).
    pub fn is_preview(&self) -> bool {
        !self.allow.is_empty()
    }

    /// Whether `path` (normalised) lies inside this credential's scope. A scope ending in
    /// `/` covers everything below it; otherwise it covers itself and what lies below it
    /// as a directory (`/a` covers `/a` and `/a/b`, not `/ab`).
    pub fn covers(&self, path: &str) -> bool {
        scope_covers(&self.scope, path)
    }
}

/// Whether the scope `scope` opens `path`: a scope ending in `/` opens what lies under it;
/// another opens itself and what lies under it as a folder (`/vod/a` opens `/vod/a/x.ts`,
/// not `/vod/ab/x.ts`).
pub fn scope_covers(scope: &str, path: &str) -> bool {
    match path.strip_prefix(scope) {
        Some(rest) => scope.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Why a credential was refused. Each maps to one denial reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not four fields, an unknown kind prefix, or claims that do not decode.
    #[error("malformed credential")]
    Malformed,
    /// The key id is not in the key ring (never was, or was retired).
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    /// The MAC does not match: tampered, or signed with another secret.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the skew).
    #[error("expired at {at}")]
    Expired {
        /// The credential's `exp`.
        at: u64,
    },
    /// `nbf` lies in the future (beyond the skew).
    #[error("not valid before {at}")]
    NotYetValid {
        /// The credential's `nbf`.
        at: u64,
    },
}

impl TicketError {
    /// The machine-readable reason given to players and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TicketError::Malformed => "malformed",
            TicketError::UnknownKey(_) => "unknown_key",
            TicketError::BadSignature => "bad_signature",
            TicketError::Expired { .. } => "expired",
            TicketError::NotYetValid { .. } => "not_yet_valid",
        }
    }
}

/// How the claims of a credential are written, told by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// JSON (`t1`, `s1`).
    Json,
    /// Packed bytes (`s2`).
    Packed,
}

/// Signs `claims` as a credential of `kind` with the ring's signing key. Session tokens
/// are packed (`s2`), unless a claim does not fit the packed form (then `s1`).
pub fn sign(ring: &KeyRing, kind: Kind, claims: &Claims) -> String {
    let key = ring.signing_key();
    let packed = match kind {
        Kind::Session => compact::encode(claims),
        Kind::Ticket => None,
    };
    let (prefix, payload) = match packed {
        Some(bytes) => ("s2", bytes),
        None => (
            match kind {
                Kind::Ticket => "t1",
                Kind::Session => "s1",
            },
            serde_json::to_vec(claims).expect("claims serialise"),
        ),
    };
    let mut out = String::with_capacity(8 + key.id().len() + payload.len() * 4 / 3 + 44);
    out.push_str(prefix);
    out.push('.');
    out.push_str(key.id());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    let mac = key.mac(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&mac[..kind.mac_len()], &mut out);
    out
}

/// Whether `text` starts like a session token (`s1.` or `s2.`), before any check.
pub fn looks_like_session(text: &str) -> bool {
    text.starts_with("s2.") || text.starts_with("s1.")
}

/// Splits a credential into its kind, format, key id and the signed part, without checking
/// anything.
fn split(raw: &str) -> Result<(Kind, Format, &str, &str, &str), TicketError> {
    let (signed, mac) = raw.rsplit_once('.').ok_or(TicketError::Malformed)?;
    let mut fields = signed.splitn(3, '.');
    let (kind, format) = match fields.next() {
        Some("t1") => (Kind::Ticket, Format::Json),
        Some("s1") => (Kind::Session, Format::Json),
        Some("s2") => (Kind::Session, Format::Packed),
        _ => return Err(TicketError::Malformed),
    };
    let kid = fields.next().ok_or(TicketError::Malformed)?;
    let claims = fields.next().ok_or(TicketError::Malformed)?;
    if claims.contains('.') {
        return Err(TicketError::Malformed);
    }
    Ok((kind, format, kid, signed, mac))
}

/// Decodes the kind, key id and claims of `raw` *without* checking the signature: for
/// explaining a refused credential to an operator, never for granting access.
///
/// # Errors
/// `Malformed` when the claims do not decode.
pub fn decode_unverified(raw: &str) -> Result<(Kind, String, Claims), TicketError> {
    let (kind, format, kid, signed, _) = split(raw)?;
    let claims = decode_claims(format, signed)?;
    Ok((kind, kid.to_owned(), claims))
}

fn decode_claims(format: Format, signed: &str) -> Result<Claims, TicketError> {
    let payload = &signed[signed.rfind('.').map_or(0, |dot| dot + 1)..];
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TicketError::Malformed)?;
    match format {
        Format::Json => serde_json::from_slice(&bytes).map_err(|_| TicketError::Malformed),
        Format::Packed => compact::decode(&bytes).ok_or(TicketError::Malformed),
    }
}

/// Checks the signature of `raw` and decodes its claims, but not its time window: what
/// `usher ticket inspect` needs to explain a credential that has expired.
///
/// # Errors
/// `Malformed`, `UnknownKey` or `BadSignature`.
pub fn verify_signature(ring: &KeyRing, raw: &str) -> Result<(Kind, Claims), TicketError> {
    let (kind, format, kid, signed, mac) = split(raw)?;
    let key = ring
        .get(kid)
        .ok_or_else(|| TicketError::UnknownKey(kid.to_owned()))?;
    let mut given = [0u8; 33];
    let len = URL_SAFE_NO_PAD
        .decode_slice(mac, &mut given)
        .map_err(|_| TicketError::BadSignature)?;
    if len != kind.mac_len() || !key.verify_truncated(signed.as_bytes(), &given[..len]) {
        return Err(TicketError::BadSignature);
    }
    Ok((kind, decode_claims(format, signed)?))
}

/// Verifies `raw` completely at instant `now` (Unix seconds), allowing `skew` seconds of
/// clock difference either way.
///
/// # Errors
/// Any [`TicketError`]; the signature is checked before the claims are looked at.
pub fn verify(
    ring: &KeyRing,
    raw: &str,
    now: u64,
    skew: u64,
) -> Result<(Kind, Claims), TicketError> {
    let (kind, claims) = verify_signature(ring, raw)?;
    check_window(&claims, now, skew)?;
    Ok((kind, claims))
}

/// The time-window half of [`verify`].
///
/// # Errors
/// `Expired` or `NotYetValid`.
pub fn check_window(claims: &Claims, now: u64, skew: u64) -> Result<(), TicketError> {
    if now.saturating_add(skew) < claims.nbf {
        return Err(TicketError::NotYetValid { at: claims.nbf });
    }
    if now >= claims.exp.saturating_add(skew) {
        return Err(TicketError::Expired { at: claims.exp });
    }
    Ok(())
}

mod class_letter {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::rights::model::DeviceClass;

    pub fn serialize<S: Serializer>(value: &Option<DeviceClass>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(class) => s.serialize_str(&class.as_str()[..1]),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DeviceClass>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| match t.as_str() {
            "o" => Ok(DeviceClass::Ott),
            "i" => Ok(DeviceClass::Iptv),
            "h" => Ok(DeviceClass::Hybrid),
            _ => Err(serde::de::Error::custom("unknown device class")),
        })
        .transpose()
    }
}

mod ip_prefix_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::net::IpPrefix;

    pub fn serialize<S: Serializer>(value: &Option<IpPrefix>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(prefix) => s.collect_str(prefix),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpPrefix>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
