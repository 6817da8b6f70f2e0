//! The credential formats usher shares with CDNs, as configured: which a route accepts on
//! incoming requests, and the settings of each (`[akamai]`, `[secure_link]`,
//! `[media_cdn]`), whether routes mint them, accept them, or both.

use std::sync::Arc;
use std::time::Duration;

use super::{AkamaiMint, Config};
use crate::ticket::media_cdn::{MediaKey, SigningKey};
use crate::ticket::secure_link::Expression;

/// A credential format a route accepts on incoming requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// usher's own tickets. (usher's session tokens are accepted on every route: usher
    /// minted them itself, after a check.)
    Usher,
    /// Akamai EdgeAuth tokens, `[akamai]`.
    Akamai,
    /// nginx `secure_link` links, `[secure_link]`.
    SecureLink,
    /// Google Media CDN tokens, `[media_cdn]`.
    MediaCdn,
}

impl Format {
    /// Parses a name as written in `accept` (and `--format`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "usher" => Some(Format::Usher),
            "akamai" => Some(Format::Akamai),
            "secure_link" => Some(Format::SecureLink),
            "media_cdn" => Some(Format::MediaCdn),
            _ => None,
        }
    }

    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Usher => "usher",
            Format::Akamai => "akamai",
            Format::SecureLink => "secure_link",
            Format::MediaCdn => "media_cdn",
        }
    }
}

/// The formats a route accepts when it says nothing.
pub const DEFAULT_ACCEPT: &[Format] = &[Format::Usher];

/// The settings of every configured foreign format.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    /// `[akamai]`.
    pub akamai: Option<AkamaiMint>,
    /// `[secure_link]`.
    pub secure_link: Option<SecureLink>,
    /// `[media_cdn]`.
    pub media_cdn: Option<Arc<MediaCdn>>,
}

/// `[secure_link]`, checked.
#[derive(Debug, Clone)]
pub struct SecureLink {
    /// The expression and secret.
    pub expression: Expression,
    /// Lifetime of minted links.
    pub ttl: Duration,
}

/// `[media_cdn]`, checked.
#[derive(Debug, Clone)]
pub struct MediaCdn {
    /// Every key that verifies.
    pub keys: Vec<MediaKey>,
    /// The key that mints, when one can sign.
    pub signer: Option<SigningKey>,
    /// Query parameter of the token.
    pub token_name: String,
    /// Cookie that may carry the token.
    pub cookie_name: String,
    /// Lifetime of minted tokens.
    pub ttl: Duration,
}

impl Config {
    /// The formats accepted under `path`: the longest matching route's `accept`, else
    /// usher's own.
    pub fn accepts_for(&self, path: &str) -> &[Format] {
        self.route_for(path)
            .map_or(DEFAULT_ACCEPT, |r| r.accept.as_slice())
    }
}
