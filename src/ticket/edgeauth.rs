//! Akamai EdgeAuth (Token Auth 2.0) tokens, byte-exact with the reference `akamai-edgeauth`
//! 0.3.2: fields `ip`, `st`, `exp`, `acl`, `id`, `data` in that order, joined by `~`, then
//! `~hmac=<hex>`.
//!
//! - **ACL mode**: the token names its ACLs (`acl=/live/*`, several joined by `!`, with `*`
//!   and `?` globs) and the MAC covers the token as written.
//! - **URL mode**: the token has no `acl`; the MAC also covers `~url=<path>`, which never
//!   appears in the token, so the token only opens the path it was made for.
//! - An optional `~salt=<salt>` is MACed likewise and never sent.
//! - HMAC-SHA256, SHA1 or MD5 under the hex-decoded key.
//! - `escape_early` encodes `ip`, `id`, `data` and the URL as Python's `quote_plus`, with
//!   lowercase hex escapes, before MACing.
//!
//! Verification MACs the token bytes before `~hmac=` exactly as received (no URL-decoding),
//! tries every configured key in constant time, and applies the clock skew.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use super::TicketError;

/// The MAC algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 (the default).
    Sha256,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-MD5.
    Md5,
}

impl Algorithm {
    /// Parses `sha256`, `sha1` or `md5` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "sha256" => Some(Algorithm::Sha256),
            "sha1" => Some(Algorithm::Sha1),
            "md5" => Some(Algorithm::Md5),
            _ => None,
        }
    }
}

/// An EdgeAuth key: the secret (hex in configs, decoded here) and its algorithm.
#[derive(Clone)]
pub struct EdgeKey {
    secret: Vec<u8>,
    algorithm: Algorithm,
}

impl std::fmt::Debug for EdgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl EdgeKey {
    /// A key from its hex text.
    ///
    /// # Errors
    /// When the text is not an even number of hex digits.
    pub fn from_hex(hex: &str, algorithm: Algorithm) -> Result<Self, String> {
        if hex.is_empty() || hex.len() % 2 != 0 {
            return Err("an EdgeAuth key is an even number of hex digits".to_owned());
        }
        let secret = (0..hex.len())
            .step_by(2)
            .map(|i| {
                // `get`: a multi-byte character would split at no char boundary here.
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| "an EdgeAuth key is hex digits only".to_owned())?;
        Ok(Self { secret, algorithm })
    }

    /// The lowercase hex MAC of `message`.
    fn mac_hex(&self, message: &[u8]) -> String {
        fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        let bytes = match self.algorithm {
            Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(&self.secret, message),
            Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(&self.secret, message),
            Algorithm::Md5 => run::<Hmac<md5::Md5>>(&self.secret, message),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Options shared by minting and verifying.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Salt MACed after the fields, never sent.
    pub salt: Option<String>,
    /// Encode `ip`, `id`, `data` and the URL before MACing (`quote_plus`, lowercase hex).
    pub escape_early: bool,
}

/// What a token says, as minted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeToken {
    /// Client address it is bound to.
    pub ip: Option<String>,
    /// Not valid before (Unix seconds).
    pub start: Option<u64>,
    /// Not valid from (Unix seconds).
    pub exp: u64,
    /// ACL mode: the ACLs (joined by `!`). `None`: URL mode.
    pub acl: Option<Vec<String>>,
    /// Session id.
    pub id: Option<String>,
    /// Opaque payload.
    pub data: Option<String>,
}

/// `quote_plus` as Python 3 writes it (letters, digits and `_.-~` kept, space as `+`, the
/// rest as `%XX`), with the hex made lowercase as EdgeAuth does.
pub fn quote_plus_lower(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

fn escaped(text: &str, options: &Options) -> String {
    if options.escape_early {
        quote_plus_lower(text)
    } else {
        text.to_owned()
    }
}

/// The token fields (without `hmac`) and the string the MAC covers.
fn fields_and_source(token: &EdgeToken, url: Option<&str>, options: &Options) -> (String, String) {
    let mut fields: Vec<String> = Vec::with_capacity(6);
    if let Some(ip) = &token.ip {
        fields.push(format!("ip={}", escaped(ip, options)));
    }
    if let Some(start) = token.start {
        fields.push(format!("st={start}"));
    }
    fields.push(format!("exp={}", token.exp));
    if let Some(acl) = &token.acl {
        fields.push(format!("acl={}", acl.join("!")));
    }
    if let Some(id) = &token.id {
        fields.push(format!("id={}", escaped(id, options)));
    }
    if let Some(data) = &token.data {
        fields.push(format!("data={}", escaped(data, options)));
    }
    let fields = fields.join("~");
    let source = mac_source(&fields, url, options);
    (fields, source)
}

/// The string the MAC covers: the fields as written, then `~url=` (URL mode) and `~salt=`.
fn mac_source(fields: &str, url: Option<&str>, options: &Options) -> String {
    let mut source = fields.to_owned();
    if let Some(url) = url {
        source.push_str("~url=");
        source.push_str(&escaped(url, options));
    }
    if let Some(salt) = &options.salt {
        source.push_str("~salt=");
        source.push_str(salt);
    }
    source
}

/// Mints a token: ACL mode when `token.acl` is set, else URL mode for `url`.
pub fn mint(token: &EdgeToken, url: Option<&str>, key: &EdgeKey, options: &Options) -> String {
    let url = if token.acl.is_some() { None } else { url };
    let (fields, source) = fields_and_source(token, url, options);
    format!("{fields}~hmac={}", key.mac_hex(source.as_bytes()))
}

/// Whether `path` matches an ACL glob (`*` any run of characters, `?` one character).
pub fn acl_matches(acl: &str, path: &str) -> bool {
    fn walk(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| walk(rest, &text[skip..])),
            Some((b'?', rest)) => !text.is_empty() && walk(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && walk(rest, &text[1..]),
        }
    }
    walk(acl.as_bytes(), path.as_bytes())
}

/// Verifies `raw` (the token value as received) for a request of `path` from `client` at
/// `now`, with any of `keys`.
///
/// # Errors
/// `Malformed` (no `hmac`, bad numbers), `BadSignature` (no key verifies), `Expired`,
/// `NotYetValid`; a path outside every ACL or another client address is `BadSignature`
/// too from the token's point of view, reported as `OutOfScope`/`IpMismatch` by the
/// caller through [`Verified`].
pub fn verify(
    raw: &str,
    keys: &[EdgeKey],
    path: &str,
    options: &Options,
    now: u64,
    skew: u64,
) -> Result<Verified, TicketError> {
    let (fields, mac) = raw.rsplit_once("~hmac=").ok_or(TicketError::Malformed)?;
    if mac.is_empty() || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TicketError::Malformed);
    }
    let mut token = EdgeToken::default();
    let mut exp = None;
    for field in fields.split('~') {
        let (name, value) = field.split_once('=').ok_or(TicketError::Malformed)?;
        match name {
            "ip" => token.ip = Some(value.to_owned()),
            "st" => token.start = Some(value.parse().map_err(|_| TicketError::Malformed)?),
            "exp" => exp = Some(value.parse().map_err(|_| TicketError::Malformed)?),
            "acl" => token.acl = Some(value.split('!').map(str::to_owned).collect()),
            "id" => token.id = Some(value.to_owned()),
            "data" => token.data = Some(value.to_owned()),
            _ => return Err(TicketError::Malformed),
        }
    }
    token.exp = exp.ok_or(TicketError::Malformed)?;
    let url = token.acl.is_none().then_some(path);
    let source = mac_source(fields, url, options);
    let given = mac.to_ascii_lowercase();
    let mut verified = false;
    for key in keys {
        let expected = key.mac_hex(source.as_bytes());
        verified |= bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
    }
    if !verified {
        return Err(TicketError::BadSignature);
    }
    if let Some(start) = token.start {
        if now.saturating_add(skew) < start {
            return Err(TicketError::NotYetValid { at: start });
        }
    }
    if now >= token.exp.saturating_add(skew) {
        return Err(TicketError::Expired { at: token.exp });
    }
    let in_scope = token
        .acl
        .as_ref()
        .is_none_or(|acls| acls.iter().any(|acl| acl_matches(acl, path)));
    Ok(Verified { token, in_scope })
}

/// A token whose MAC and time window verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its fields.
    pub token: EdgeToken,
    /// Whether the request path lies inside its ACLs (always true in URL mode, where the
    /// MAC itself covers the path).
    pub in_scope: bool,
}

impl Verified {
    /// Whether `client` may use it: tokens without `ip` are for anyone; with it, the
    /// address must be the one written (escaped as minted when `escape_early`).
    pub fn allows(&self, client: IpAddr, options: &Options) -> bool {
        self.token
            .ip
            .as_deref()
            .is_none_or(|ip| ip == escaped(&client.to_string(), options))
    }
}

#[cfg(test)]
mod tests;
