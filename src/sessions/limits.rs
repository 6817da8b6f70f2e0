//! Concurrency limits, pure: may a new session start next to the account's live ones (or
//! is it a live one again, see [`plan`]), and which must give way under `replace_oldest`;
//! and which session a device taking up a foreign credential's session comes to
//! ([`device_session`]).

use std::sync::Arc;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{Session, SessionDenied, Start, ENDED, REPLACED};

/// The session of device `device` under a credential whose session `sid` plays on another
/// named device: an id derived from both (the same length and form as any session id), so
/// every node and every request of that device comes to the same one. A foreign
/// credential names its session after its token, and a CMS hands one account the same
/// token on all its devices: each device is a start of its own under the purchase's rules,
/// not a copy of the first's session.
pub fn device_session(sid: &str, device: &str) -> String {
    super::derived_id(&[sid, device])
}

/// Whether `session` is recorded on a named device other than `device` (a request naming
/// none is the session's own: players that cannot add headers name none).
pub(super) fn on_another_device(session: &Session, device: Option<&str>) -> bool {
    matches!((session.device.as_deref(), device), (Some(playing), Some(named)) if playing != named)
}

/// The session a take-up by id of a foreign credential's session comes to, when it is not
/// `start.sid` ([`Start::per_device`]): [`device_session`] when `start.sid` is recorded on
/// another named device than the one `start` names (live or not: a device that replaced it
/// stays on its own), or when `start.sid` is not recorded live but that device's own
/// session plays (it stays on it rather than count twice).
pub(super) fn own_session(
    sessions: &HashMap<String, Arc<Session>>,
    start: &Start<'_>,
    now: u64,
    idle: u64,
) -> Option<String> {
    let (Some(sid), Some(device), true) = (start.sid, start.device, start.per_device) else {
        return None;
    };
    let taken_up = sessions.get(sid);
    let own = device_session(sid, device);
    let own_plays = || sessions.get(&own).is_some_and(|s| s.is_live(now, idle));
    match taken_up {
        Some(s) if on_another_device(s, Some(device)) => Some(own),
        Some(s) if s.is_live(now, idle) || s.refusal().is_some() => None,
        _ if own_plays() => Some(own),
        _ => None,
    }
}

/// What to do when a new session would exceed a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Refuse the new session (`concurrency_limit`).
    #[default]
    Refuse,
    /// End the oldest session(s); their next request gets `session_replaced`.
    ReplaceOldest,
}

/// The limits that apply to a new session. `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Concurrent sessions of the account on this product.
    pub product_sessions: Option<u32>,
    /// Concurrent devices of the account on this product (`device_ban` is 1).
    pub product_devices: Option<u32>,
    /// Concurrent sessions of the account overall.
    pub account_sessions: Option<u32>,
    /// Concurrent devices of the account overall.
    pub account_devices: Option<u32>,
    /// What to do when a limit would be exceeded.
    pub policy: Policy,
}

/// Whether sessions plus the new one stay within `max` sessions and `max_devices`. A
/// session that names no device counts as a device of its own: players that send no
/// device id would otherwise all pass as one device, whatever their number.
fn fits(
    sessions: &[&Arc<Session>],
    start: &Start<'_>,
    max: Option<u32>,
    max_devices: Option<u32>,
) -> bool {
    let count = sessions.len() + 1;
    let all = sessions
        .iter()
        .map(|s| s.device.as_deref())
        .chain(std::iter::once(start.device));
    let unnamed = all.clone().filter(Option::is_none).count();
    let mut named: Vec<&str> = all.flatten().collect();
    named.sort_unstable();
    named.dedup();
    max.is_none_or(|m| count <= m as usize)
        && max_devices.is_none_or(|m| named.len() + unnamed <= m as usize)
}

/// Admits a new session next to `live` (the account's live sessions). Returns the sessions
/// to replace (empty under `refuse`).
///
/// # Errors
/// `ConcurrencyLimit` when the policy is to refuse, or when even replacing every other
/// session would not make room.
pub fn admit<'s>(
    live: &[&'s Arc<Session>],
    start: &Start<'_>,
    limits: &Limits,
) -> Result<Vec<&'s Arc<Session>>, SessionDenied> {
    let mut kept: Vec<&'s Arc<Session>> = live.to_vec();
    let mut replaced = Vec::new();
    loop {
        let same_product: Vec<&Arc<Session>> = kept
            .iter()
            .copied()
            .filter(|s| s.product.as_deref() == start.product)
            .collect();
        let product_fits = fits(
            &same_product,
            start,
            limits.product_sessions,
            limits.product_devices,
        );
        let account_fits = fits(
            &kept,
            start,
            limits.account_sessions,
            limits.account_devices,
        );
        if product_fits && account_fits {
            return Ok(replaced);
        }
        if limits.policy == Policy::Refuse {
            return Err(SessionDenied::ConcurrencyLimit);
        }
        let pool = if product_fits { &kept } else { &same_product };
        let Some(oldest) = pool
            .iter()
            .min_by_key(|s| (s.started_at, s.sid.clone()))
            .copied()
        else {
            return Err(SessionDenied::ConcurrencyLimit);
        };
        kept.retain(|s| !Arc::ptr_eq(s, oldest));
        replaced.push(oldest);
    }
}

/// What a start comes to, given the sessions known (this node's, or every node's).
pub(super) enum Plan {
    /// The start is this live session again: keep it.
    Join(Arc<Session>),
    /// A new session, for which these sessions give way (empty under `refuse`).
    New {
        /// Its id, when the start names one (the one it takes up, or the device's own
        /// session, [`device_session`]).
        sid: Option<String>,
        /// The sessions it replaces.
        victims: Vec<Arc<Session>>,
    },
}

/// Decides a start against `sessions`: the session token's own session if it is still
/// live (refused if it was replaced or ended), else the live session this device already
/// has for this purchase (a player reloading its master with the ticket is one viewer, not
/// two), else a new session under `limits`. A foreign credential's session taken up by
/// another named device than its own is that device's session instead ([`own_session`]),
/// decided the same way.
pub(super) fn plan(
    sessions: &HashMap<String, Arc<Session>>,
    start: &Start<'_>,
    limits: &Limits,
    now: u64,
    idle: u64,
) -> Result<Plan, SessionDenied> {
    let own = own_session(sessions, start, now, idle);
    let start = &Start {
        sid: own.as_deref().or(start.sid),
        ..start.clone()
    };
    if let Some(sid) = start.sid {
        if let Some(existing) = sessions.get(sid) {
            match existing.state.load(Ordering::Relaxed) {
                REPLACED => return Err(SessionDenied::Replaced),
                ENDED => return Err(SessionDenied::Ended),
                _ if existing.is_live(now, idle) => return Ok(Plan::Join(existing.clone())),
                // Idled out: resuming it is a new start, under the limits.
                _ => {}
            }
        }
    }
    let live: Vec<&Arc<Session>> = sessions
        .values()
        .filter(|s| s.is_live(now, idle) && s.account == start.account)
        .filter(|s| start.taking_over != Some(s.sid.as_str()) && start.sid != Some(s.sid.as_str()))
        .collect();
    if start.sid.is_none() {
        if let Some(same) = live.iter().find(|s| {
            s.purchase.as_deref() == start.purchase
                && s.device.as_deref() == start.device
                && start.device.is_some()
        }) {
            return Ok(Plan::Join((*same).clone()));
        }
    }
    let victims = admit(&live, start, limits)?.into_iter().cloned().collect();
    let sid = start.sid.map(str::to_owned);
    Ok(Plan::New { sid, victims })
}
