//! A device's activation of a purchase: read before a session starts (a device that may
//! not play must not end someone else's session), written after it was admitted (a
//! refused device uses no activation).

use super::super::respond::ProxyError;
use super::super::State;
use crate::access::Presented;
use crate::config::Config;
use crate::rights::decide::Entitled;
use crate::rights::store::{Bind, StoreError};
use crate::sessions::SessionDenied;

/// What activating a purchase on a device will take.
pub(super) enum Activation {
    /// The purchase does not limit its devices, or this device activated it before.
    Nothing,
    /// A new activation, within the limit.
    New,
    /// IP recovery: take over this live session's activation.
    Recover(std::sync::Arc<crate::sessions::Session>),
}

pub(super) async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&dyn crate::rights::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ProxyError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| {
            tracing::error!(error = %e, "device activations cannot be read or written");
            ProxyError::Rights(crate::rights::decide::RightsDenied::Unavailable)
        })
}

/// Reads, without writing, what activating the purchase on `device` takes; `None` when
/// every activation is used by other devices.
pub(super) async fn check_activation(
    state: &State,
    config: &Config,
    entitled: &Entitled,
    device: Option<&str>,
    presented: &Presented<'_>,
    now: u64,
) -> Result<Option<Activation>, ProxyError> {
    let Some(limit) = entitled.activations else {
        return Ok(Some(Activation::Nothing));
    };
    let device = device.ok_or(SessionDenied::DeviceRequired)?;
    let purchase = entitled.purchase.to_string();
    let bound = blocking(state, move |s| s.devices(&purchase)).await?;
    if bound.iter().any(|b| b.device == device) {
        return Ok(Some(Activation::Nothing));
    }
    if bound.len() < limit as usize {
        return Ok(Some(Activation::New));
    }
    // IP recovery: the same viewer, on the same network, whose session lost its token
    // (and whose player now names a new device) takes over that session's activation.
    let network = config.sessions.network(presented.client_ip);
    Ok(entitled
        .ip_recovery
        .then(|| {
            state
                .sessions
                .recoverable(&entitled.purchase, |ip| network.contains(ip), now)
        })
        .flatten()
        .filter(|s| s.device.as_deref().is_some_and(|old| old != device))
        .map(Activation::Recover))
}

/// Counts and announces a device refused for the activation limit; the refusal.
pub(super) fn activation_refused(
    state: &State,
    entitled: &Entitled,
    device: Option<&str>,
) -> ProxyError {
    state
        .metrics
        .activations
        .with_label_values(&["limit"])
        .inc();
    let (purchase, device, limit) = (
        entitled.purchase.to_string(),
        device.map(str::to_owned),
        entitled.activations,
    );
    let key = format!("{purchase}\0{}", device.as_deref().unwrap_or(""));
    state.webhooks.emit_once_per_minute(
        key,
        crate::config::webhooks::EventKind::ActivationRefused,
        move |s| {
            let bought = s.purchase(&purchase).ok().flatten()?;
            Some(crate::webhooks::Event::ActivationRefused {
                purchase,
                product: bought.product,
                account: bought.account,
                device,
                limit,
            })
        },
    );
    SessionDenied::ActivationLimit.into()
}

/// Writes the activation `check_activation` found, durably, before the response goes out.
/// Answers whether this request used an activation (bound the device now); a device that
/// another request bound in the meantime is known, not bound again.
pub(super) async fn record_activation(
    state: &State,
    entitled: &Entitled,
    device: Option<&str>,
    activation: Activation,
    now: u64,
) -> Result<bool, ProxyError> {
    let (purchase, device) = (
        entitled.purchase.to_string(),
        device.unwrap_or_default().to_owned(),
    );
    let refused_device = device.clone();
    let mut bound_now = false;
    let outcome = match activation {
        Activation::Nothing => "known",
        Activation::New => {
            let limit = entitled.activations;
            let bind = blocking(state, move |s| {
                s.bind_device(&purchase, &device, limit, now)
            })
            .await?;
            match bind {
                // Another device took the last activation in the meantime.
                Bind::LimitReached => {
                    return Err(activation_refused(state, entitled, Some(&refused_device)))
                }
                Bind::Bound => {
                    bound_now = true;
                    "bound"
                }
                Bind::Known => "known",
            }
        }
        Activation::Recover(session) => {
            let from = session.device.clone().unwrap_or_default();
            blocking(state, move |s| {
                s.rebind_device(&purchase, &from, &device, now)
            })
            .await?;
            "recovered"
        }
    };
    if entitled.activations.is_some() {
        state
            .metrics
            .activations
            .with_label_values(&[outcome])
            .inc();
    }
    Ok(bound_now)
}
