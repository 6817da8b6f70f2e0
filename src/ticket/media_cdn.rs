//! Google Media CDN signed tokens (dual-token authentication): fields joined by `~`, in
//! the order `URLPrefix` | `FullPath` | `PathGlobs`, `Starts`, `Expires`, `SessionID`,
//! `Data`, `Headers`, `IPRanges`, then `hmac=<hex>` (HMAC-SHA256 or SHA1) or
//! `Signature=<base64url>` (Ed25519).
//!
//! The signed value is the token itself except for two fields:
//!
//! - `FullPath` appears bare in the token; the signed value has `FullPath=<request path>`,
//!   so the token opens exactly the path it was made for.
//! - `Headers=<name>,<name>` in the token is `Headers=<name>=<value>,…` in the signed
//!   value, with the values of those request headers.
//!
//! `URLPrefix` and `IPRanges` are unpadded base64url (of the URL prefix, scheme and host
//! included, and of the comma-separated ranges). Verification MACs the received bytes as
//! they are (no URL-decoding), with `FullPath` and `Headers` expanded from the request,
//! tries every key in constant time, applies the clock skew, and then matches the scope
//! and the client address.

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use subtle::ConstantTimeEq;

use super::TicketError;
use crate::net::IpPrefix;

/// Unpadded base64url for writing; reading also takes padded text.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256, `hmac=<hex>`.
    Sha256,
    /// HMAC-SHA1, `hmac=<hex>`.
    Sha1,
    /// Ed25519, `Signature=<base64url>`.
    Ed25519,
}

impl Algorithm {
    /// Parses `sha256`, `sha1` or `ed25519` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "sha256" => Some(Algorithm::Sha256),
            "sha1" => Some(Algorithm::Sha1),
            "ed25519" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }

    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha1 => "sha1",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

#[derive(Clone)]
enum Material {
    Hmac(Vec<u8>),
    /// The public key, and the key pair when the private seed is known.
    Ed25519 {
        public: [u8; 32],
        pair: Option<Arc<Ed25519KeyPair>>,
    },
}

/// One Media CDN key: an id (the keyset's key name, for operators), its algorithm and its
/// secret (HMAC) or Ed25519 key (the private seed, which also signs, or the public key,
/// which only verifies).
#[derive(Clone)]
pub struct MediaKey {
    id: String,
    algorithm: Algorithm,
    material: Material,
}

impl std::fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl MediaKey {
    /// An HMAC key (`Sha256` or `Sha1`) from its secret bytes.
    ///
    /// # Errors
    /// When the secret is empty or the algorithm is `Ed25519`.
    pub fn hmac(id: &str, algorithm: Algorithm, secret: &[u8]) -> Result<Self, String> {
        if algorithm == Algorithm::Ed25519 {
            return Err("an Ed25519 key is a private seed or a public key".to_owned());
        }
        if secret.is_empty() {
            return Err("the secret is empty".to_owned());
        }
        Ok(Self {
            id: id.to_owned(),
            algorithm,
            material: Material::Hmac(secret.to_vec()),
        })
    }

    /// An Ed25519 key from its 32-byte private seed: it signs and verifies.
    ///
    /// # Errors
    /// When the seed is not 32 bytes.
    pub fn ed25519_private(id: &str, seed: &[u8]) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| format!("an Ed25519 private key is 32 bytes, not {}", seed.len()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(Self {
            id: id.to_owned(),
            algorithm: Algorithm::Ed25519,
            material: Material::Ed25519 {
                public,
                pair: Some(Arc::new(pair)),
            },
        })
    }

    /// An Ed25519 key from its 32-byte public key: it only verifies.
    ///
    /// # Errors
    /// When the key is not 32 bytes.
    pub fn ed25519_public(id: &str, public: &[u8]) -> Result<Self, String> {
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| format!("an Ed25519 public key is 32 bytes, not {}", public.len()))?;
        Ok(Self {
            id: id.to_owned(),
            algorithm: Algorithm::Ed25519,
            material: Material::Ed25519 { public, pair: None },
        })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// This key as a signing key, unless it is an Ed25519 public key.
    ///
    /// # Errors
    /// The key back, when it can only verify.
    pub fn signing(self) -> Result<SigningKey, Self> {
        match &self.material {
            Material::Ed25519 { pair: None, .. } => Err(self),
            _ => Ok(SigningKey(self)),
        }
    }

    fn hmac_hex(&self, message: &[u8]) -> Option<String> {
        fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        let Material::Hmac(secret) = &self.material else {
            return None;
        };
        let bytes = match self.algorithm {
            Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(secret, message),
            _ => run::<Hmac<sha2::Sha256>>(secret, message),
        };
        Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn ed25519_verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Ed25519 { public, .. } => UnparsedPublicKey::new(&ED25519, public)
                .verify(message, signature)
                .is_ok(),
            Material::Hmac(_) => false,
        }
    }
}

/// A key that can sign (an HMAC secret or an Ed25519 private seed).
#[derive(Debug, Clone)]
pub struct SigningKey(MediaKey);

impl SigningKey {
    /// The key underneath.
    pub fn key(&self) -> &MediaKey {
        &self.0
    }

    /// The signature field for `signed`: `hmac=<hex>` or `Signature=<base64url>`.
    fn sign(&self, signed: &[u8]) -> String {
        match &self.0.material {
            Material::Hmac(_) => {
                format!("hmac={}", self.0.hmac_hex(signed).expect("an HMAC key"))
            }
            Material::Ed25519 { pair, .. } => {
                let pair = pair.as_ref().expect("signing keys hold their seed");
                let signature = pair.sign(signed);
                format!("Signature={}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
            }
        }
    }
}

/// What a token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every URL that starts with this (scheme, host and path: `https://cdn.example/vod/`).
    UrlPrefix(String),
    /// Exactly this path (written bare into the token, signed with the path).
    FullPath(String),
    /// Paths matching any of these globs (`*` is any run of characters, `/` included).
    PathGlobs(Vec<String>),
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaToken {
    /// What it opens.
    pub scope: Scope,
    /// Not valid before (Unix seconds).
    pub starts: Option<u64>,
    /// Not valid from (Unix seconds).
    pub expires: u64,
    /// The session (usher reads it as the subject).
    pub session_id: Option<String>,
    /// Opaque payload.
    pub data: Option<String>,
    /// Request headers that must carry these values, by name.
    pub headers: Vec<(String, String)>,
    /// Client address ranges, comma-separated, as written.
    pub ip_ranges: Option<String>,
}

impl MediaToken {
    /// A token over `scope` valid until `expires`, with nothing else.
    pub fn new(scope: Scope, expires: u64) -> Self {
        Self {
            scope,
            starts: None,
            expires,
            session_id: None,
            data: None,
            headers: Vec::new(),
            ip_ranges: None,
        }
    }

    /// The address ranges it names that parse (others never match).
    pub fn ranges(&self) -> Vec<IpPrefix> {
        self.ip_ranges
            .as_deref()
            .map(|text| {
                text.split(',')
                    .filter_map(|r| r.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Mints a token: the fields in Google's order, then the signature field.
pub fn mint(token: &MediaToken, key: &SigningKey) -> String {
    // Each field as (in the token, in the signed value): they differ for FullPath and Headers.
    let mut fields: Vec<(String, String)> = Vec::with_capacity(8);
    let same = |field: String| (field.clone(), field);
    fields.push(match &token.scope {
        Scope::UrlPrefix(prefix) => same(format!("URLPrefix={}", URL_SAFE_NO_PAD.encode(prefix))),
        Scope::FullPath(path) => ("FullPath".to_owned(), format!("FullPath={path}")),
        Scope::PathGlobs(globs) => same(format!("PathGlobs={}", globs.join(","))),
    });
    if let Some(starts) = token.starts {
        fields.push(same(format!("Starts={starts}")));
    }
    fields.push(same(format!("Expires={}", token.expires)));
    if let Some(id) = &token.session_id {
        fields.push(same(format!("SessionID={id}")));
    }
    if let Some(data) = &token.data {
        fields.push(same(format!("Data={data}")));
    }
    if !token.headers.is_empty() {
        let names: Vec<&str> = token.headers.iter().map(|(n, _)| n.as_str()).collect();
        let pairs: Vec<String> = token
            .headers
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        fields.push((
            format!("Headers={}", names.join(",")),
            format!("Headers={}", pairs.join(",")),
        ));
    }
    if let Some(ranges) = &token.ip_ranges {
        fields.push(same(format!("IPRanges={}", URL_SAFE_NO_PAD.encode(ranges))));
    }
    let signed: Vec<&str> = fields.iter().map(|(_, s)| s.as_str()).collect();
    let signature = key.sign(signed.join("~").as_bytes());
    let mut out: Vec<&str> = fields.iter().map(|(t, _)| t.as_str()).collect();
    out.push(&signature);
    out.join("~")
}

/// The request a token is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The URL as the client asked for it, `scheme://host/path?query` (for `URLPrefix`).
    pub url: &'a str,
    /// The path (for `FullPath` and `PathGlobs`).
    pub path: &'a str,
    /// The client's address (for `IPRanges`).
    pub client: IpAddr,
    /// The request's headers (for `Headers`).
    pub headers: &'a http::HeaderMap,
}

/// A token whose signature and window verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its fields (`FullPath` holds the request path; header values are the request's).
    pub token: MediaToken,
    /// Whether the request lies inside its URL prefix or path globs (always true for
    /// `FullPath`, which the signature itself binds to the path).
    pub in_scope: bool,
    /// Whether the client's address lies in its `IPRanges` (true when it names none).
    pub client_allowed: bool,
}

/// The signature at the end of a token.
enum Signature<'a> {
    Hmac(&'a str),
    Ed25519(&'a str),
}

/// Verifies `raw` (the token as received) for `request` at `now`, with any of `keys`.
///
/// # Errors
/// `Malformed` (unknown or repeated fields, no scope, no `Expires`, bad numbers or
/// base64), `BadSignature` (no key verifies, or a header the token names is missing),
/// `Expired`, `NotYetValid`. Scope and address are reported through [`Verified`].
pub fn verify(
    raw: &str,
    keys: &[MediaKey],
    request: &Request<'_>,
    now: u64,
    skew: u64,
) -> Result<Verified, TicketError> {
    let (fields, last) = raw.rsplit_once('~').ok_or(TicketError::Malformed)?;
    let signature = if let Some(hex) = last.strip_prefix("hmac=") {
        Signature::Hmac(hex)
    } else if let Some(b64) = last.strip_prefix("Signature=") {
        Signature::Ed25519(b64)
    } else {
        return Err(TicketError::Malformed);
    };
    let (token, signed) = parse(fields, request)?;
    let verified = match signature {
        Signature::Hmac(hex) => {
            let given = hex.to_ascii_lowercase();
            let mut ok = false;
            for key in keys {
                if let Some(expected) = key.hmac_hex(signed.as_bytes()) {
                    ok |= bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
                }
            }
            ok
        }
        Signature::Ed25519(b64) => {
            let bytes = LENIENT.decode(b64).map_err(|_| TicketError::BadSignature)?;
            keys.iter()
                .any(|key| key.ed25519_verifies(signed.as_bytes(), &bytes))
        }
    };
    if !verified {
        return Err(TicketError::BadSignature);
    }
    if let Some(starts) = token.starts {
        if now.saturating_add(skew) < starts {
            return Err(TicketError::NotYetValid { at: starts });
        }
    }
    if now >= token.expires.saturating_add(skew) {
        return Err(TicketError::Expired { at: token.expires });
    }
    let in_scope = match &token.scope {
        Scope::UrlPrefix(prefix) => request.url.starts_with(prefix.as_str()),
        Scope::FullPath(_) => true,
        Scope::PathGlobs(globs) => globs.iter().any(|g| glob_matches(g, request.path)),
    };
    let client_allowed =
        token.ip_ranges.is_none() || token.ranges().iter().any(|r| r.contains(request.client));
    Ok(Verified {
        token,
        in_scope,
        client_allowed,
    })
}

/// Whether a header value signed under `Headers` could pass for more of the signed value:
/// further fields (`bar~IPRanges=…`) or further `name=value` pairs (`bar,x-b=baz`) that
/// the token no longer carries, giving the same signed bytes without the binding they
/// made. Commas alone are common (`Mozilla/5.0 (KHTML, like Gecko)`, `en-US,en;q=0.9`);
/// only a comma followed by a header name and `=` could pose as a pair.
fn poses_as_fields(value: &str) -> bool {
    let is_name_byte = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|".contains(&b);
    value.contains('~')
        || value.split(',').skip(1).any(|part| {
            part.split_once('=')
                .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(is_name_byte))
        })
}

/// Reads the fields before the signature: the token, and the value that was signed.
fn parse(fields: &str, request: &Request<'_>) -> Result<(MediaToken, String), TicketError> {
    let mut scope = None;
    let mut token = MediaToken::new(Scope::FullPath(String::new()), 0);
    let mut expires = None;
    let mut seen: Vec<&str> = Vec::with_capacity(8);
    let mut signed = String::with_capacity(fields.len() + request.path.len() + 16);
    for field in fields.split('~') {
        let (name, value) = field.split_once('=').unwrap_or((field, ""));
        if seen.contains(&name) {
            return Err(TicketError::Malformed);
        }
        seen.push(name);
        if !signed.is_empty() {
            signed.push('~');
        }
        match name {
            "FullPath" if !field.contains('=') => {
                // The path goes into the signed text as it is: a `~` in it could stand for
                // a field the signer wrote (`/a.ts~Starts=…`).
                if request.path.contains('~') {
                    return Err(TicketError::Malformed);
                }
                signed.push_str("FullPath=");
                signed.push_str(request.path);
                set_scope(&mut scope, Scope::FullPath(request.path.to_owned()))?;
                continue;
            }
            "Headers" => {
                signed.push_str("Headers=");
                for (n, header) in value.split(',').enumerate() {
                    let got = request
                        .headers
                        .get(header)
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !poses_as_fields(v))
                        .ok_or(TicketError::BadSignature)?;
                    if n > 0 {
                        signed.push(',');
                    }
                    signed.push_str(header);
                    signed.push('=');
                    signed.push_str(got);
                    token.headers.push((header.to_owned(), got.to_owned()));
                }
                continue;
            }
            _ => signed.push_str(field),
        }
        match name {
            "URLPrefix" => set_scope(&mut scope, Scope::UrlPrefix(base64_text(value)?))?,
            "PathGlobs" => {
                let globs = value.split([',', '!']).map(str::to_owned).collect();
                set_scope(&mut scope, Scope::PathGlobs(globs))?;
            }
            "Starts" => token.starts = Some(number(value)?),
            "Expires" => expires = Some(number(value)?),
            "SessionID" => token.session_id = Some(value.to_owned()),
            "Data" => token.data = Some(value.to_owned()),
            "IPRanges" => token.ip_ranges = Some(base64_text(value)?),
            _ => return Err(TicketError::Malformed),
        }
    }
    token.scope = scope.ok_or(TicketError::Malformed)?;
    token.expires = expires.ok_or(TicketError::Malformed)?;
    Ok((token, signed))
}

fn set_scope(slot: &mut Option<Scope>, scope: Scope) -> Result<(), TicketError> {
    match slot.replace(scope) {
        Some(_) => Err(TicketError::Malformed),
        None => Ok(()),
    }
}

fn number(text: &str) -> Result<u64, TicketError> {
    text.parse().map_err(|_| TicketError::Malformed)
}

fn base64_text(text: &str) -> Result<String, TicketError> {
    let bytes = LENIENT.decode(text).map_err(|_| TicketError::Malformed)?;
    String::from_utf8(bytes).map_err(|_| TicketError::Malformed)
}

/// Whether `path` matches `glob`, where `*` is any run of characters (`/` included) and
/// everything else matches itself. Linear in practice: the last `*` seen is the only
/// backtracking point.
pub fn glob_matches(glob: &str, path: &str) -> bool {
    let (glob, path) = (glob.as_bytes(), path.as_bytes());
    let (mut g, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while p < path.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, p));
            g += 1;
        } else if g < glob.len() && glob[g] == path[p] {
            g += 1;
            p += 1;
        } else if let Some((sg, sp)) = star {
            g = sg + 1;
            p = sp + 1;
            star = Some((sg, sp + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests;
