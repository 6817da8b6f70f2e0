//! Starting a session: a ticket's request under the purchase that admits its device (its
//! activation, then its place among the account's streams), and a session taken up again
//! from its token (after an idle timeout, a restart, or a foreign credential's first
//! request).

use http::HeaderMap;
use std::sync::Arc;

use super::super::respond::ProxyError;
use super::super::State;
use super::activation::{
    activation_refused, blocking, check_activation, record_activation, Activation,
};
use crate::access::{Grant, Presented};
use crate::config::Config;
use crate::path::ObjectKind;
use crate::rights::decide::Entitled;
use crate::sessions::Session;
use crate::sessions::{SessionDenied, Start};

/// A session a request takes up by its id ([`adopt`]).
pub(super) struct TakeUp<'a> {
    /// Its id.
    pub(super) sid: &'a str,
    /// The account the credential names.
    pub(super) account: &'a str,
    /// The device the request names, else its credential's.
    pub(super) device: Option<&'a str>,
    /// A foreign credential's ([`Start::per_device`]): on another named device than the
    /// one it is recorded on, it is that device's own session.
    pub(super) per_device: bool,
}

/// Takes up the session `taken`, which this node does not hold live: after an idle
/// timeout or a restart, or a foreign credential's first request (it comes with no
/// ticket, and its session is named after it). The device's activation of the purchase is
/// checked and recorded as a ticket's is, so no credential plays a purchase on more
/// devices than it allows (IP recovery, which ends another session, is a ticket's).
/// Answers the session it came to: a foreign credential's session recorded on another
/// named device (on another node) comes to this device's own.
pub(super) async fn adopt(
    state: &State,
    config: &Config,
    entitled: &Entitled,
    taken: &TakeUp<'_>,
    presented: &Presented<'_>,
    now: u64,
) -> Result<Arc<Session>, ProxyError> {
    let device = taken.device;
    let activation = check_activation(state, config, entitled, device, presented, now)
        .await?
        .filter(|a| !matches!(a, Activation::Recover(_)))
        .ok_or_else(|| activation_refused(state, entitled, device))?;
    let start = Start {
        sid: Some(taken.sid),
        per_device: taken.per_device,
        ..new_start(entitled, taken.account, device, presented, None)
    };
    let session = state.sessions.admit(start, &entitled.limits, now).await?;
    record_activation(state, entitled, device, activation, now).await?;
    Ok(session)
}

/// What [`start_session`] needs of a ticket's request.
pub(super) struct TicketRequest<'a> {
    pub(super) config: &'a Config,
    pub(super) kind: ObjectKind,
    pub(super) presented: &'a Presented<'a>,
    pub(super) headers: &'a HeaderMap,
    pub(super) now: u64,
}

/// A ticket's request under `entitled`: the device (made up when the purchase needs one
/// and the request names none), its activation, and a new session, named in `grant`.
/// When the purchase cannot admit this device (its activations or its streams are used,
/// or it needs a device the request does not name), the account's other purchases that
/// grant the content are tried in their order ([`Entitled::others`]). Answers the
/// purchase the session started under.
pub(super) async fn start_session(
    state: &State,
    request: &TicketRequest<'_>,
    entitled: &Entitled,
    grant: &mut Grant,
    mut device: Option<String>,
) -> Result<Entitled, ProxyError> {
    let TicketRequest {
        config,
        kind,
        presented,
        headers,
        now,
    } = *request;
    // A purchase that counts activations needs a device; one that limits devices or
    // streams (its product's limits or the account's) needs one to know a player that
    // comes back (a reload with the ticket joins its own session instead of counting as
    // a second stream). A playlist request that names none (the bare emailed link) gets
    // one made up here, bound like any other and handed back as usher's device cookie;
    // the session token carries it on. Only playlists: their answers are private and
    // never stored by a cache, so the cookie cannot be handed to other viewers.
    let counts_devices = entitled.in_order().any(|e| {
        let limits = &e.limits;
        e.activations.is_some()
            || limits.product_devices.is_some()
            || limits.product_sessions.is_some()
            || limits.account_devices.is_some()
            || limits.account_sessions.is_some()
    });
    if counts_devices && device.is_none() && kind == ObjectKind::Playlist {
        if let Some(minted) = mint_device(config, headers) {
            device = Some(minted.hash.clone());
            grant.minted_device = Some(minted);
        }
    }
    let account = grant.claims.sub.as_str();
    let mut first_refusal = None;
    let mut admitted = None;
    // When several purchases grant, a first round looks for one that admits the device
    // without taking from another device (an IP-recovered activation, a session replaced
    // under `replace_oldest`); only when none does, the first that admits it at all.
    let rounds: &[bool] = if entitled.others.is_some() {
        &[true, false]
    } else {
        &[false]
    };
    'rounds: for &gently in rounds {
        let mut rough = false;
        for candidate in entitled.in_order() {
            match admit(
                state,
                config,
                candidate,
                account,
                device.as_deref(),
                presented,
                now,
            )
            .await
            {
                Ok((activation, started))
                    if gently
                        && (matches!(activation, Activation::Recover(_))
                            || started.replaces_others()) =>
                {
                    // Begun for nothing yet (the shared store wrote nothing): forgotten,
                    // so the next purchase's limits do not count it.
                    state.sessions.discard(&started.session.sid);
                    rough = true;
                }
                Ok(found) => {
                    admitted = Some((candidate, found));
                    break 'rounds;
                }
                Err(refused) => {
                    let gives_way = matches!(
                        refused,
                        Refusal::ActivationLimit
                            | Refusal::Denied(ProxyError::Session(
                                SessionDenied::ConcurrencyLimit | SessionDenied::DeviceRequired
                            ))
                    );
                    // An outage (the store, the shared sessions) is the answer, not the
                    // activation limit an earlier purchase met.
                    if !gives_way {
                        first_refusal = Some(refused);
                        break 'rounds;
                    }
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        if !rough {
            break;
        }
    }
    let Some((entitled, (activation, started))) = admitted else {
        return Err(match first_refusal.expect("a purchase was tried") {
            Refusal::ActivationLimit => activation_refused(state, entitled, device.as_deref()),
            Refusal::Denied(refused) => refused,
        });
    };
    let taking_over = match &activation {
        Activation::Recover(old) => Some(old.sid.clone()),
        _ => None,
    };
    let start = new_start(
        entitled,
        account,
        device.as_deref(),
        presented,
        taking_over.as_deref(),
    );
    let bound_now =
        match record_activation(state, entitled, device.as_deref(), activation, now).await {
            Ok(bound_now) => bound_now,
            Err(refused) => {
                state.sessions.discard(&started.session.sid);
                return Err(refused);
            }
        };
    let session = match state
        .sessions
        .commit(started, start, &entitled.limits, now)
        .await
    {
        Ok(session) => session,
        Err(refused) => {
            // Another node took the last stream in between: the device that may
            // not play gives back the activation this request made. One that another
            // request of the same device made first (it found the device known) stays:
            // that request's session may be playing on it. Only a refusal by the limits
            // gives it back: it comes from a fresh read that found no live session of
            // this device (one would have been joined); a shared store that could not be
            // read proved nothing, and another request may be playing on the device.
            let by_limits = matches!(refused, SessionDenied::ConcurrencyLimit);
            if let (true, true, Some(device)) = (bound_now, by_limits, device.clone()) {
                let purchase = entitled.purchase.to_string();
                let _ = blocking(state, move |s| s.unbind_device(&purchase, &device)).await;
            }
            return Err(refused.into());
        }
    };
    if let Some(old) = &taking_over {
        // IP recovery: the same viewer's old session gives way to this one.
        if let Err(e) = state.sessions.end_everywhere(old).await {
            tracing::warn!(error = %e, "a recovered session was ended on this node only");
        }
    }
    Arc::make_mut(&mut grant.claims).sid = Some(session.sid.clone());
    Ok(entitled.clone())
}

/// Why a purchase could not admit a ticket's request.
enum Refusal {
    /// Every activation of the purchase is used by other devices (not yet counted or
    /// announced: another purchase may admit the device).
    ActivationLimit,
    /// Any other refusal.
    Denied(ProxyError),
}

/// Whether `entitled` admits a ticket's request on `device`: what its activation takes,
/// and the session begun under it. Activation is checked before the session starts (a
/// device that may not play must not end someone else's session), recorded after it
/// was admitted (a refused device uses no activation), and only then do older sessions
/// give way.
async fn admit(
    state: &State,
    config: &Config,
    entitled: &Entitled,
    account: &str,
    device: Option<&str>,
    presented: &Presented<'_>,
    now: u64,
) -> Result<(Activation, crate::sessions::Started), Refusal> {
    let activation = check_activation(state, config, entitled, device, presented, now)
        .await
        .map_err(Refusal::Denied)?
        .ok_or(Refusal::ActivationLimit)?;
    let taking_over = match &activation {
        Activation::Recover(old) => Some(old.sid.as_str()),
        _ => None,
    };
    let start = new_start(entitled, account, device, presented, taking_over);
    let started = state
        .sessions
        .begin(start, &entitled.limits, now)
        .await
        .map_err(|refused| Refusal::Denied(refused.into()))?;
    Ok((activation, started))
}

/// A new session of `account` on `device` under `entitled`, taking over the session
/// `taking_over` (IP recovery); one taken up names its id over this.
fn new_start<'a>(
    entitled: &'a Entitled,
    account: &'a str,
    device: Option<&'a str>,
    presented: &Presented<'_>,
    taking_over: Option<&'a str>,
) -> Start<'a> {
    Start {
        sid: None,
        account,
        purchase: Some(&entitled.purchase),
        product: Some(&entitled.product),
        device,
        ip: presented.client_ip,
        taking_over,
        per_device: false,
    }
}

/// A device id for a request that names none, when usher sets device cookies.
fn mint_device(config: &Config, headers: &HeaderMap) -> Option<crate::device::Minted> {
    let settings = &config.token;
    settings.device_cookie.as_ref()?;
    let agent = settings
        .device_with_user_agent
        .then(|| headers.get(http::header::USER_AGENT))
        .flatten()
        .and_then(|v| v.to_str().ok());
    settings
        .set_device_cookie
        .then(|| crate::device::Minted::new(agent))
}
