//! Who may fetch this, in order: the credential (signature, window, scope, device,
//! address), the right (bought, in window, not revoked), the device's activation of the
//! purchase, and the session's place among the account's concurrent streams.
//!
//! ```text
//! ticket  ─► rights ─► activation: device known │ bound now │ limit reached
//!                           (limit reached + ip_recovery + a live session of this
//!                            purchase from the same network ─► move its activation)
//!                      ─► session: join this device's live one │ start under the limits
//!                           (refuse: concurrency_limit │ replace_oldest: end the oldest)
//! session ─► rights ─► session: touch (throttled) │ replaced/ended: refuse │ unknown: adopt
//! nothing ─► playlist of content with a preview: preview grant │ 401
//! ```

use http::HeaderMap;

use super::respond::ProxyError;
use super::State;
use crate::access::{self, Denied, Grant, Presented};
use crate::path::ObjectKind;
use crate::rights::decide::Entitled;
use crate::rights::model::DeviceClass;
use crate::rights::store::{Bind, StoreError};
use crate::sessions::{SessionDenied, Start};
use crate::ticket::{Claims, Kind};

/// Subject of preview tokens; `~` is outside what account ids may use, so no buyer holds it.
pub const PREVIEW_SUBJECT: &str = "~preview";

/// Decides whether the request may be served, and under which grant.
///
/// # Errors
/// The refusal, from whichever check refused first.
pub async fn authorize(
    state: &State,
    path: &str,
    kind: ObjectKind,
    presented: &Presented<'_>,
    headers: &HeaderMap,
) -> Result<Grant, ProxyError> {
    let settings = &state.config.token;
    let now = (state.clock)();
    let skew = settings.clock_skew.as_secs();
    let alive = |sid: &str| state.sessions.is_live(sid, now);
    let mut grant = match access::decide(&settings.keys, skew, path, presented, now, &alive) {
        Ok(grant) => grant,
        Err(Denied::NoCredential) if kind == ObjectKind::Playlist => {
            return preview_grant(state, path, now).ok_or(Denied::NoCredential.into());
        }
        Err(denied) => return Err(denied.into()),
    };
    // A preview token names its paths exactly and carries no rights to check.
    let Some(rights) = state.rights.as_ref().filter(|_| !grant.claims.is_preview()) else {
        return Ok(grant);
    };
    let class = device_class(state, headers);
    let entitled = rights.check(&grant.claims.sub, path, class, now).await?;
    grant.right_until = Some(entitled.until.unwrap_or(u64::MAX));
    let device = presented
        .device
        .map(str::to_owned)
        .or_else(|| grant.claims.dev.clone());
    match grant.kind {
        Kind::Ticket => {
            let resumed = activate(state, &entitled, device.as_deref(), presented, now).await?;
            let start = Start {
                sid: resumed.as_deref(),
                account: &grant.claims.sub,
                purchase: Some(&entitled.purchase),
                product: Some(&entitled.product),
                device: device.as_deref(),
                ip: presented.client_ip,
            };
            let session =
                state
                    .sessions
                    .start(start, &entitled.limits, now, crate::sessions::new_id)?;
            grant.claims.sid = Some(session.sid.clone());
        }
        Kind::Session => {
            let sid = grant.claims.sid.clone().unwrap_or_default();
            if !state.sessions.touch(&sid, now)? {
                let start = Start {
                    sid: Some(&sid),
                    account: &grant.claims.sub,
                    purchase: Some(&entitled.purchase),
                    product: Some(&entitled.product),
                    device: device.as_deref(),
                    ip: presented.client_ip,
                };
                state
                    .sessions
                    .start(start, &entitled.limits, now, crate::sessions::new_id)?;
            }
        }
    }
    Ok(grant)
}

/// Activates the purchase on `device` when the purchase limits its devices. Returns the id
/// of a session resumed by IP recovery, if that is how the device got in.
async fn activate(
    state: &State,
    entitled: &Entitled,
    device: Option<&str>,
    presented: &Presented<'_>,
    now: u64,
) -> Result<Option<String>, ProxyError> {
    let Some(limit) = entitled.activations else {
        return Ok(None);
    };
    let device = device.ok_or(SessionDenied::DeviceRequired)?;
    let store = state.store.clone();
    let (purchase, d) = (entitled.purchase.to_string(), device.to_owned());
    let bind =
        tokio::task::spawn_blocking(move || store.bind_device(&purchase, &d, Some(limit), now))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| {
                tracing::error!(error = %e, "device activation could not be recorded");
                ProxyError::Rights(crate::rights::decide::RightsDenied::Unavailable)
            })?;
    let outcome = match bind {
        Bind::Known => "known",
        Bind::Bound => "bound",
        Bind::LimitReached => "limit",
    };
    state
        .metrics
        .activations
        .with_label_values(&[outcome])
        .inc();
    if bind != Bind::LimitReached {
        return Ok(None);
    }
    // IP recovery: the same viewer, on the same network, whose session lost its token
    // (and whose player now names a new device) takes over that session's activation.
    let sessions_config = &state.config.sessions;
    let network = sessions_config.network(presented.client_ip);
    let recovered = entitled
        .ip_recovery
        .then(|| {
            state
                .sessions
                .recoverable(&entitled.purchase, |ip| network.contains(ip), now)
        })
        .flatten()
        .filter(|s| s.device.as_deref().is_some_and(|old| old != device));
    let Some(session) = recovered else {
        return Err(SessionDenied::ActivationLimit.into());
    };
    let store = state.store.clone();
    let (purchase, from, to) = (
        entitled.purchase.to_string(),
        session.device.clone().unwrap_or_default(),
        device.to_owned(),
    );
    tokio::task::spawn_blocking(move || store.rebind_device(&purchase, &from, &to, now))
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))
        .and_then(|r| r)
        .map_err(|_| SessionDenied::ActivationLimit)?;
    state
        .metrics
        .activations
        .with_label_values(&["recovered"])
        .inc();
    state.sessions.end(&session.sid);
    Ok(None)
}

/// A grant for a viewer without a ticket, on a playlist of content that has a preview:
/// the playlist is rewritten in preview mode, so only its first seconds play.
fn preview_grant(state: &State, path: &str, now: u64) -> Option<Grant> {
    let media = state.rights.as_ref()?.media_for(path)?;
    (media.preview_seconds > 0).then(|| Grant {
        kind: Kind::Session,
        claims: Claims {
            sub: PREVIEW_SUBJECT.to_owned(),
            scope: media.prefix.clone(),
            nbf: 0,
            exp: now + state.config.token.session_ttl.as_secs(),
            dev: None,
            ip: None,
            sid: None,
            cap: 0,
            allow: vec![path.to_owned()],
        },
        right_until: None,
    })
}

/// The device class a request names in `rights.device_class_header`, or the default.
fn device_class(state: &State, headers: &HeaderMap) -> DeviceClass {
    let rights = &state.config.rights;
    headers
        .get(&rights.device_class_header)
        .and_then(|v| v.to_str().ok())
        .and_then(DeviceClass::parse)
        .unwrap_or(rights.default_device_class)
}
