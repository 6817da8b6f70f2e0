//! Reading a write's target before and after it, as JSON.

use serde_json::{json, Value};

use super::super::ops::{self, AdminError};
use super::Kind;
use crate::proxy::State;

/// A target's state, as JSON (`null` when absent), and whom it concerns.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    /// The target as the API shows it; `null` when it does not exist.
    pub(super) value: Value,
    /// The purchase it concerns.
    pub(super) purchase: Option<String>,
    /// The account it concerns.
    pub(super) account: Option<String>,
}

/// The target `id` of `kind` now; an empty snapshot (logged) when the store fails.
pub(super) async fn snapshot(state: &State, kind: Kind, id: &str) -> Snapshot {
    match read(state, kind, id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, target_kind = kind.as_str(), "audit: could not read the target");
            Snapshot::default()
        }
    }
}

fn value(v: Option<impl serde::Serialize>) -> Value {
    v.map_or(Value::Null, |v| {
        serde_json::to_value(v).expect("model serialises")
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

async fn read(state: &State, kind: Kind, id: &str) -> Result<Snapshot, AdminError> {
    let owned = id.to_owned();
    let (first, second) = id.split_once('/').unwrap_or((id, ""));
    let (first, second) = (first.to_owned(), second.to_owned());
    Ok(match kind {
        Kind::Product => {
            // With the number of its purchases: a forced delete takes them along, and
            // its entry says how many went.
            let read = ops::blocking(state, move |s| {
                let Some(product) = s.product(&owned)? else {
                    return Ok(None);
                };
                let filter = crate::rights::store::PurchaseFilter {
                    product: Some(owned),
                    ..Default::default()
                };
                Ok(Some((product, s.purchase_count(&filter)?)))
            });
            let mut v = Value::Null;
            if let Some((product, buyers)) = read.await? {
                v = value(Some(product));
                v["buyers"] = json!(buyers);
            }
            Snapshot {
                value: v,
                ..Snapshot::default()
            }
        }
        Kind::Media => Snapshot {
            value: value(ops::blocking(state, move |s| s.media(&owned)).await?),
            ..Snapshot::default()
        },
        Kind::Purchase => {
            let v = value(ops::blocking(state, move |s| s.purchase(&owned)).await?);
            Snapshot {
                account: text(&v, "account"),
                purchase: (!v.is_null()).then(|| id.to_owned()),
                value: v,
            }
        }
        Kind::Account => Snapshot {
            value: value(ops::blocking(state, move |s| s.account(&owned)).await?),
            account: Some(id.to_owned()),
            ..Snapshot::default()
        },
        Kind::Contacts => Snapshot {
            value: value(Some(ops::blocking(state, |s| s.contacts()).await?)),
            ..Snapshot::default()
        },
        Kind::Link => {
            // With the buyers an unlink of it takes something from: a forced unlink's
            // entry says how many it affected.
            let (p, c) = (first.clone(), second.clone());
            let read = ops::blocking(state, move |s| {
                if !s.linked(&p)?.contains(&c) {
                    return Ok(None);
                }
                s.unlink_buyers(&p, &c).map(Some)
            });
            Snapshot {
                value: match read.await? {
                    Some(buyers) => {
                        json!({"product": first, "content": second, "buyers": buyers})
                    }
                    None => Value::Null,
                },
                ..Snapshot::default()
            }
        }
        Kind::Device => {
            let h = first.clone();
            let (purchase, devices) =
                ops::blocking(state, move |s| Ok((s.purchase(&h)?, s.devices(&h)?))).await?;
            Snapshot {
                // Named as the free names it (its hash, the operator's id, a player's id).
                value: value(ops::binding_named(&devices, &second)),
                account: purchase.map(|p| p.account),
                purchase: Some(first),
            }
        }
        Kind::Session => {
            let v = value(
                ops::list_sessions(state, None, None)
                    .into_iter()
                    .find(|s| s.sid == id),
            );
            Snapshot {
                purchase: text(&v, "purchase"),
                account: text(&v, "account"),
                value: v,
            }
        }
        Kind::Other(_) => Snapshot::default(),
    })
}
