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
}
