//! Credentials whose signature this thread checked lately, so a player's next request
//! with the same session token costs a comparison instead of a MAC and a decode.
//!
//! A player sends one session token with every segment of a playlist, on one connection
//! served by one thread: each thread keeps the last credential it verified in each of
//! [`SLOTS`] slots (chosen by a hash of the credential). Only the signature check and the
//! decoding are remembered; the time window, scope, device and address are checked on
//! every request as before, and the rights check follows as before.
//!
//! A remembered credential matches only the same bytes, compared in constant time, and
//! only for the same key ring: a reload that changes `[token]` builds a new ring, and
//! nothing the old one verified counts any more. A credential that fails is not
//! remembered.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::{verify_signature, Claims, KeyRing, Kind, TicketError};
use crate::slots::{slot_of, Slots};

/// Slots per thread.
const SLOTS: usize = 64;

/// Credentials longer than this are verified every time (usher's own are far shorter).
const MAX_REMEMBERED_LEN: usize = 512;

/// One remembered credential.
struct Remembered {
    ring: u64,
    raw: Box<str>,
    kind: Kind,
    claims: Arc<Claims>,
}

thread_local! {
    static MEMO: Slots<Remembered> = Slots::new(SLOTS);
}

/// [`verify_signature`], remembered per thread: the same answer, cheaper the second time.
///
/// # Errors
/// As [`verify_signature`].
pub fn verify_signature_remembered(
    ring: &KeyRing,
    raw: &str,
) -> Result<(Kind, Arc<Claims>), TicketError> {
    if raw.len() > MAX_REMEMBERED_LEN {
        return verify_signature(ring, raw).map(|(kind, claims)| (kind, Arc::new(claims)));
    }
    let slot = slot_of(&[raw], SLOTS);
    let found = MEMO.with(|memo| {
        memo.read(slot, |r| {
            (r.ring == ring.id() && same(&r.raw, raw)).then(|| (r.kind, r.claims.clone()))
        })
    });
    if let Some(found) = found {
        return Ok(found);
    }
    let (kind, claims) = verify_signature(ring, raw)?;
    let claims = Arc::new(claims);
    MEMO.with(|memo| {
        memo.put(
            slot,
            Remembered {
                ring: ring.id(),
                raw: raw.into(),
                kind,
                claims: claims.clone(),
            },
        )
    });
    Ok((kind, claims))
}

/// Whether `a` and `b` are the same credential; the bytes are compared in constant time,
/// eight at a time (unequal lengths answer at once: lengths are no secret, every
/// credential of a format has one of a few).
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("eight bytes"));
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut equal = a_words.remainder().ct_eq(b_words.remainder());
    for (x, y) in a_words.zip(b_words) {
        equal &= word(x).ct_eq(&word(y));
    }
    bool::from(equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{sign, Key};

    #[test]
    fn the_word_wise_comparison_agrees_with_equality_at_every_length_and_byte() {
        let text: String = (0..40).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        for len in 0..=text.len() {
            let a = &text[..len];
            assert!(same(a, a), "{len}");
            for at in 0..len {
                let mut b = a.as_bytes().to_vec();
                b[at] ^= 0x01;
                assert!(!same(a, std::str::from_utf8(&b).unwrap()), "{len} {at}");
            }
            assert!(!same(a, &text[..len.saturating_sub(1)]) || len == 0);
        }
    }

    fn ring(secret: u8) -> KeyRing {
        KeyRing::new(vec![Key::new("k1", &[secret; 32]).unwrap()], "k1").unwrap()
    }

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.to_owned(),
            scope: "/vod/".to_owned(),
            nbf: 0,
            exp: 2_000_000_000,
            dev: None,
            ip: None,
            sid: Some("s1".to_owned()),
            cap: 0,
            allow: Vec::new(),
            cls: None,
        }
    }

    #[test]
    fn a_remembered_credential_gives_the_same_answer_as_verifying_it() {
        let ring = ring(1);
        for sub in ["alice", "bob", "carol"] {
            let raw = sign(&ring, Kind::Session, &claims(sub));
            for _ in 0..3 {
                let (kind, remembered) = verify_signature_remembered(&ring, &raw).unwrap();
                assert_eq!((kind, &*remembered), (Kind::Session, &claims(sub)));
            }
        }
    }

    #[test]
    fn a_changed_byte_or_another_ring_is_verified_again_and_refused() {
        let ring = ring(1);
        let raw = sign(&ring, Kind::Session, &claims("alice"));
        verify_signature_remembered(&ring, &raw).unwrap();
        // Every single-character change of the remembered credential lands in some slot,
        // often its own: none is taken for it.
        for at in 0..raw.len() {
            let mut forged = raw.clone().into_bytes();
            forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert!(
                verify_signature_remembered(&ring, &forged).is_err(),
                "changed at {at}"
            );
            verify_signature_remembered(&ring, &raw).unwrap();
        }
        // The same key id with another secret (a reload that replaced the key).
        assert_eq!(
            verify_signature_remembered(&self::ring(2), &raw),
            Err(TicketError::BadSignature)
        );
        // A clone of the ring is the same ring.
        assert!(verify_signature_remembered(&ring.clone(), &raw).is_ok());
    }
}
