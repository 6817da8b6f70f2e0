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

/// Frees the activation a device holds on a purchase ("delete device from customer"),
/// naming it by its hash, by the id the operator added it with, or by the id a player
/// presents (hashed as usher hashes it without a user agent). Answers the hash freed.
/// The device's live sessions under the purchase end with it: the activation is for the
/// device that takes its place, not for both.
///
/// # Errors
/// No such purchase or device.
pub async fn free_device(state: &State, hash: &str, device: &str) -> Result<String, AdminError> {
    let bound = devices(state, hash).await?;
    let hashed = crate::device::hash_id(device, None);
    let found = bound
        .iter()
        .find(|b| b.device == device)
        .or_else(|| bound.iter().find(|b| b.id.as_deref() == Some(device)))
        .or_else(|| bound.iter().find(|b| b.device == hashed))
        .ok_or_else(|| AdminError::NotFound(format!("device {device} on buyer {hash}")))?;
    let (h, d) = (hash.to_owned(), found.device.clone());
    blocking(state, move |s| s.unbind_device(&h, &d)).await?;
    let playing: Vec<String> = state
        .sessions
        .live((state.clock)())
        .into_iter()
        .filter(|s| {
            s.purchase.as_deref() == Some(hash)
                && s.device.as_deref() == Some(found.device.as_str())
        })
        .map(|s| s.sid.clone())
        .collect();
    for sid in playing {
        if let Err(e) = state.sessions.end_everywhere(&sid).await {
            tracing::warn!(error = %e, "a freed device's session was ended on this node only");
        }
    }
    Ok(found.device.clone())
}
