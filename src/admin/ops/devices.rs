//! A purchase's devices as the TVMS API has them: listed with the id the operator knows
//! (when it added the device) and the hash usher keys them by, added ahead of use
//! (`AddDeviceToCustomer`), and deleted by either (`DeleteDeviceFromCustomer`).
//!
//! Privacy: a device id a player presents is hashed at once and only the hash is kept (see
//! [`crate::device`]). A device the operator adds is the operator's own record, so its id is
//! stored next to the hash and listed; nothing a player sends is stored as given.

use super::fields::{self, Fields, Reader};
use super::{after_purchase_write, blocking, get_buyer, get_product, AdminError};
use crate::proxy::State;
use crate::rights::model::Binding;
use crate::rights::store::Bind;

/// The devices that activated a purchase, oldest first.
///
/// # Errors
/// No such purchase.
pub async fn devices(state: &State, hash: &str) -> Result<Vec<Binding>, AdminError> {
    get_buyer(state, hash).await?;
    let h = hash.to_owned();
    blocking(state, move |s| s.devices(&h)).await
}

/// Binds the device `device` (its id, as players will name it) to a purchase before it
/// plays, using one activation; `user_agent` too when `token.device_with_user_agent` folds
/// it into the identity. Adding a device bound before is harmless (it keeps its activation).
/// The device then plays without a new activation.
///
/// # Errors
/// Bad fields, no such purchase, or every activation used (409 `activation_limit`).
pub async fn add_device(state: &State, hash: &str, f: &Fields) -> Result<Binding, AdminError> {
    let mut r = Reader::new(f);
    let id = fields::id("device", r.required("device")?)?;
    let agent = r.text("user_agent").map(str::to_owned);
    r.finish(&["apikey"])?;
    let purchase = get_buyer(state, hash).await?;
    let product = get_product(state, &purchase.product).await?;
    let limit = purchase.activations.or(product.activations);
    let config = state.config();
    let agent = config
        .token
        .device_with_user_agent
        .then_some(agent)
        .flatten();
    if config.token.device_with_user_agent && agent.is_none() {
        return Err(AdminError::invalid(
            "user_agent",
            "required: token.device_with_user_agent folds the player's user agent into its identity",
        ));
    }
    let device = crate::device::hash_id(&id, agent.as_deref());
    let now = (state.clock)();
    let (h, d, i) = (hash.to_owned(), device.clone(), id.clone());
    let bind = blocking(state, move |s| s.add_device(&h, &d, &i, limit, now)).await?;
    match bind {
        Bind::LimitReached => Err(AdminError::ActivationLimit {
            purchase: hash.to_owned(),
            limit: limit.unwrap_or(0),
        }),
        Bind::Known | Bind::Bound => {
            after_purchase_write(state, &purchase.account);
            let h = hash.to_owned();
            let all = blocking(state, move |s| s.devices(&h)).await?;
            Ok(all
                .into_iter()
                .find(|b| b.device == device)
                .unwrap_or(Binding {
                    device,
                    id: Some(id),
                    bound_at: now,
                }))
        }
    }
}

/// What freeing a device did, as the API answers it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Freed {
    /// The hash of the device freed.
    pub freed: String,
    /// How many of its live sessions under the purchase were ended, on any node.
    pub sessions_ended: usize,
    /// With shared sessions: whether the ends were recorded in Redis and announced to
    /// every node (absent without shared sessions: this node is the only one told).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced: Option<bool>,
    /// When `announced` is false: what that leaves playing, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The binding among `bound` that `name` names: by its hash, by the id the operator added
/// it with, or by the id a player presents (hashed as usher hashes it without a user agent).
pub fn binding_named<'a>(bound: &'a [Binding], name: &str) -> Option<&'a Binding> {
    let hashed = || crate::device::hash_id(name, None);
    bound
        .iter()
        .find(|b| b.device == name)
        .or_else(|| bound.iter().find(|b| b.id.as_deref() == Some(name)))
        .or_else(|| {
            let hashed = hashed();
            bound.iter().find(|b| b.device == hashed)
        })
}

/// Frees the activation a device holds on a purchase ("delete device from customer"),
/// naming it by its hash, by the id the operator added it with, or by the id a player
/// presents (hashed as usher hashes it without a user agent). The device's live sessions
/// under the purchase end with it, on whichever node plays them: the activation is for the
/// device that takes its place, not for both. The free stands even when Redis could not
/// be reached to end the sessions on the other nodes; the answer says so.
///
/// # Errors
/// No such purchase or device.
pub async fn free_device(state: &State, hash: &str, device: &str) -> Result<Freed, AdminError> {
    let purchase = get_buyer(state, hash).await?;
    let h = hash.to_owned();
    let bound = blocking(state, move |s| s.devices(&h)).await?;
    let found = binding_named(&bound, device)
        .ok_or_else(|| AdminError::NotFound(format!("device {device} on buyer {hash}")))?;
    let (h, d) = (hash.to_owned(), found.device.clone());
    blocking(state, move |s| s.unbind_device(&h, &d)).await?;
    let ends = state
        .sessions
        .end_device(&purchase.account, hash, &found.device, (state.clock)())
        .await;
    let reason = match &ends.shared {
        Some(Err(e)) => {
            tracing::warn!(error = %e, "a freed device's sessions on other nodes may play on");
            Some(UNANNOUNCED)
        }
        _ => None,
    };
    Ok(Freed {
        freed: found.device.clone(),
        sessions_ended: ends.ended,
        announced: ends.shared.map(|told| told.is_ok()),
        reason,
    })
}

/// Why a freed device's answer says `"announced": false`.
const UNANNOUNCED: &str = "the device is freed and its sessions on this node ended, but \
    Redis could not be reached: its sessions on other nodes may play on. Once Redis is \
    back, list them on each node (GET /api/v1/sessions?purchase=...) and end them \
    (DELETE /api/v1/sessions/{sid})";
