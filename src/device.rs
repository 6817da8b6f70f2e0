//! Device identity: where a request names its device, and the hashed form usher keeps.
//!
//! A device id is never stored, logged or written into a token as given: everything past
//! the request's first line uses [`hash_id`], a one-way digest, so a leaked playlist URL or
//! database holds no player's raw identifier.

use sha2::{Digest, Sha256};

/// The hashed form of a device id (optionally combined with the user agent): 32 hex
/// characters of SHA-256 over a usher-specific prefix and the inputs.
pub fn hash_id(id: &str, user_agent: Option<&str>) -> String {
    let mut digest = Sha256::new();
    digest.update(b"usher-device\0");
    digest.update(id.as_bytes());
    if let Some(agent) = user_agent {
        digest.update(b"\0");
        digest.update(agent.as_bytes());
    }
    let bytes = digest.finalize();
    let mut out = String::with_capacity(32);
    for b in &bytes[..16] {
        out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
        out.push(char::from_digit(u32::from(b & 15), 16).expect("nibble"));
    }
    out
}

/// How long usher's own device cookie lives: 400 days, the most browsers keep one.
pub const COOKIE_MAX_AGE: u64 = 400 * 86_400;

/// A device id usher made up for a request that named none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The id as the client will send it back (the cookie's value): 128 random bits, hex.
    pub id: String,
    /// Its hashed form, as every other device id is kept.
    pub hash: String,
}

impl Minted {
    /// A fresh id from the OS random source, hashed like one a client sent with
    /// `user_agent` (when the identity folds the user agent in).
    pub fn new(user_agent: Option<&str>) -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random source works");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hash = hash_id(&id, user_agent);
        Self { id, hash }
    }

    /// The `Set-Cookie` value that hands it to the client as cookie `name`: durable, for
    /// every path, out of scripts' reach, `Secure` when the client came over HTTPS.
    pub fn set_cookie(&self, name: &str, https: bool) -> String {
        let secure = if https { "; Secure" } else { "" };
        format!(
            "{name}={}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}",
            self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_distinct_and_hide_the_id() {
        let a = hash_id("tv-1", None);
        assert_eq!(a, hash_id("tv-1", None));
        assert_eq!(a.len(), 32);
        assert_ne!(a, hash_id("tv-2", None));
        assert_ne!(a, hash_id("tv-1", Some("AppleCoreMedia/1.0")));
        assert!(!a.contains("tv-1"));
    }

    #[test]
    fn minted_ids_are_random_hashed_and_set_as_a_durable_private_cookie() {
        let (a, b) = (Minted::new(None), Minted::new(None));
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        assert_eq!(a.hash, hash_id(&a.id, None));
        assert_eq!(
            a.set_cookie("usher_device", true),
            format!(
                "usher_device={}; Path=/; Max-Age=34560000; HttpOnly; SameSite=Lax; Secure",
                a.id
            )
        );
        assert!(!a.set_cookie("d", false).contains("Secure"));
    }
}
