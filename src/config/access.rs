//! `[access]`, checked: which paths are checked, CORS, and the `Cache-Control` protected
//! answers go out with.

/// `[access]`, checked.
#[derive(Debug, Clone)]
pub struct Access {
    /// Prefixes that need credentials.
    pub protected: Vec<String>,
    /// Prefixes that need none; they win over `protected`.
    pub public: Vec<String>,
    /// Browser origins allowed to read responses; empty means no CORS headers.
    pub cors_origins: Vec<String>,
    /// The `Cache-Control` of answers to protected requests.
    pub protected_cache_control: ProtectedCacheControl,
}

/// `[access] protected_cache_control`: whether answers to protected requests (but
/// rewritten playlists, always `private, no-store`) are made private for shared caches
/// (see [`crate::proxy::cache_control`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProtectedCacheControl {
    /// Private when the credential came in a cookie or `Authorization` (the URL a shared
    /// cache keys on holds none); the origin's header when it came in the URL.
    #[default]
    Auto,
    /// Always private.
    Private,
    /// Always the origin's header.
    Origin,
}

impl ProtectedCacheControl {
    /// The setting written `text` in the file.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "private" => Some(Self::Private),
            "origin" => Some(Self::Origin),
            _ => None,
        }
    }
}
