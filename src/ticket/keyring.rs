//! The key ring: every key usher accepts, by id, and the one that signs.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A key id as written into credentials: 1–32 of `A-Z a-z 0-9 _ -`.
pub type KeyId = String;

/// Shortest secret accepted, in bytes: the HMAC-SHA256 block of security we promise.
pub const MIN_SECRET_LEN: usize = 32;

/// One HMAC-SHA256 key. The keyed state is prepared once, so each MAC costs only the
/// message's compressions, not the key schedule.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    keyed: Hmac<Sha256>,
}

impl Key {
    /// A key from its id and secret.
    ///
    /// # Errors
    /// A message when the id has characters outside `A-Z a-z 0-9 _ -` or is longer than 32,
    /// or the secret is shorter than [`MIN_SECRET_LEN`].
    pub fn new(id: &str, secret: &[u8]) -> Result<Self, String> {
        if !valid_key_id(id) {
            return Err(format!(
                "key id \"{id}\": use 1-32 characters of A-Z a-z 0-9 _ -"
            ));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "secret of key \"{id}\" is {} bytes: at least {MIN_SECRET_LEN} are needed",
                secret.len()
            ));
        }
        let keyed = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        Ok(Self {
            id: id.to_owned(),
            keyed,
        })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// HMAC-SHA256 of `message`.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `given` equals the first `given.len()` bytes of the MAC of `message`,
    /// compared in constant time. An empty `given` never verifies.
    pub fn verify_truncated(&self, message: &[u8], given: &[u8]) -> bool {
        let expected = self.mac(message);
        !given.is_empty()
            && given.len() <= expected.len()
            && bool::from(expected[..given.len()].ct_eq(given))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Keys by id; every key verifies, the signing key also signs.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: HashMap<KeyId, Key>,
    signing: KeyId,
    /// Which ring this is: made anew by [`KeyRing::new`], kept by a clone (the same keys).
    id: u64,
}

/// The id of the next ring made.
static NEXT_RING_ID: AtomicU64 = AtomicU64::new(1);

impl KeyRing {
    /// A ring of `keys` that signs with `signing`.
    ///
    /// # Errors
    /// A message when two keys share an id or `signing` is not among them.
    pub fn new(keys: Vec<Key>, signing: &str) -> Result<Self, String> {
        let mut by_id = HashMap::with_capacity(keys.len());
        for key in keys {
            let id = key.id.clone();
            if by_id.insert(id.clone(), key).is_some() {
                return Err(format!("key id \"{id}\" appears twice"));
            }
        }
        if !by_id.contains_key(signing) {
            return Err(format!("signing key \"{signing}\" is not among the keys"));
        }
        Ok(Self {
            keys: by_id,
            signing: signing.to_owned(),
            id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Which ring this is: two rings with the same id verify the same credentials (one
    /// is a clone of the other); a ring built again, even from the same keys, has another.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The key with id `kid`, if the ring accepts it.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    /// The key new credentials are signed with.
    pub fn signing_key(&self) -> &Key {
        &self.keys[&self.signing]
    }

    /// The keys of this ring whose ids `other` does not have.
    pub fn missing_from(&self, other: &KeyRing) -> Vec<Key> {
        self.keys
            .values()
            .filter(|k| other.get(&k.id).is_none())
            .cloned()
            .collect()
    }

    /// A ring of `keys` (signing with the first), or `None` when there are none.
    pub fn of(keys: Vec<Key>) -> Option<KeyRing> {
        let signing = keys.first()?.id.clone();
        KeyRing::new(keys, &signing).ok()
    }
}
