//! What a purchase looks like in answers (with its computed window), and idempotent sales:
//! a key (`Idempotency-Key` header or `order_id`) makes a resubmitted order answer the
//! first sale again instead of selling twice.

use sha2::{Digest, Sha256};

use super::super::fields::{Fields, IDEMPOTENCY_KEY};
use super::AdminError;
use crate::rights::decide::window;
use crate::rights::model::{Product, Purchase};

/// A purchase as every answer shows it: its fields and the window computed from them and
/// its product, the window the rights check enforces.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PurchaseView {
    /// The purchase.
    #[serde(flatten)]
    pub purchase: Purchase,
    /// When access starts (Unix seconds).
    pub access_starts_at: u64,
    /// When access ends (Unix seconds); `null` while nothing bounds it (no end, or hours
    /// counted from a first play that has not happened).
    pub access_ends_at: Option<u64>,
}

impl PurchaseView {
    /// The view of `purchase` of `product` (`None`: the product is gone; the purchase's
    /// own dates are shown).
    pub fn new(purchase: Purchase, product: Option<&Product>) -> Self {
        let (access_starts_at, access_ends_at) = match product {
            Some(product) => window(&purchase, product),
            None => (
                purchase.access_start.unwrap_or(purchase.purchased_at),
                purchase.access_expire,
            ),
        };
        Self {
            purchase,
            access_starts_at,
            access_ends_at,
        }
    }
}

impl std::ops::Deref for PurchaseView {
    type Target = Purchase;

    fn deref(&self) -> &Purchase {
        &self.purchase
    }
}

/// An idempotency key and where it came from.
#[derive(Debug, Clone)]
pub struct OrderKey {
    /// The key.
    pub key: String,
    /// `Idempotency-Key` or `order_id`, for error messages.
    pub field: &'static str,
    /// The fingerprint of the request that carries it.
    pub fingerprint: String,
}

/// Fields that carry the key or the credential, left out of the fingerprint.
pub const KEY_FIELDS: &[&str] = &["apikey", "order_id", IDEMPOTENCY_KEY];

/// The idempotency key of a sale request, if it has one: the `Idempotency-Key` header or
/// the `order_id` field (both may come when they agree), 1–255 visible ASCII characters.
///
/// # Errors
/// A malformed key, or a header and an `order_id` that differ.
pub fn sale_key(request: &Fields) -> Result<Option<OrderKey>, AdminError> {
    let given = |name: &str| {
        request
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty() && *v != super::super::fields::NULL)
    };
    let (key, field) = match (given(IDEMPOTENCY_KEY), given("order_id")) {
        (Some(h), Some(o)) if h != o => {
            return Err(AdminError::invalid(
                "order_id",
                "differs from the Idempotency-Key header",
            ))
        }
        (Some(h), _) => (h, "Idempotency-Key"),
        (None, Some(o)) => (o, "order_id"),
        (None, None) => return Ok(None),
    };
    if key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminError::invalid(
            field,
            "use 1-255 visible ASCII characters",
        ));
    }
    Ok(Some(OrderKey {
        key: key.to_owned(),
        field,
        fingerprint: fingerprint(request),
    }))
}

/// SHA-256 (hex) of the request's fields, sorted, without the key and the credential:
/// the same order submitted twice has the same fingerprint.
fn fingerprint(request: &Fields) -> String {
    let mut pairs: Vec<(&str, &str)> = request
        .iter()
        .filter(|(k, _)| !KEY_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    pairs.sort_unstable();
    let mut hash = Sha256::new();
    for (k, v) in pairs {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_same_order_has_the_same_fingerprint_whatever_its_key_or_credential() {
        let a = sale_key(&fields(&[
            ("order_id", "o-1"),
            ("email", "a@b.c"),
            ("apikey", "x"),
        ]))
        .unwrap()
        .unwrap();
        let b = sale_key(&fields(&[(IDEMPOTENCY_KEY, "o-1"), ("email", "a@b.c")]))
            .unwrap()
            .unwrap();
        assert_eq!((a.key.as_str(), a.field), ("o-1", "order_id"));
        assert_eq!(b.field, "Idempotency-Key");
        assert_eq!(a.fingerprint, b.fingerprint);
        let c = sale_key(&fields(&[("order_id", "o-1"), ("email", "z@b.c")]))
            .unwrap()
            .unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn bad_or_disagreeing_keys_are_refused_naming_the_field() {
        let bad = |pairs: &[(&str, &str)]| match sale_key(&fields(pairs)) {
            Err(AdminError::Invalid(i)) => i.field,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(&[("order_id", "a b")]), "order_id");
        assert_eq!(
            bad(&[(IDEMPOTENCY_KEY, "a"), ("order_id", "b")]),
            "order_id"
        );
        assert!(sale_key(&fields(&[("email", "a@b.c")])).unwrap().is_none());
    }
}
