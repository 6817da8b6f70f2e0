//! Concurrency limits, pure: may a new session start next to the account's live ones (or
//! is it a live one again, see [`plan`]), and which must give way under `replace_oldest`.

use std::sync::Arc;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{Session, SessionDenied, Start, ENDED, REPLACED};

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
        /// The sessions it replaces.
        victims: Vec<Arc<Session>>,
    },
}

/// Decides a start against `sessions`: the session token's own session if it is still
/// live (refused if it was replaced or ended), else the live session this device already
/// has for this purchase (a player reloading its master with the ticket is one viewer, not
/// two), else a new session under `limits`.
pub(super) fn plan(
    sessions: &HashMap<String, Arc<Session>>,
    start: &Start<'_>,
    limits: &Limits,
    now: u64,
    idle: u64,
) -> Result<Plan, SessionDenied> {
    if let Some(sid) = start.sid {
        if let Some(existing) = sessions.get(sid) {
            match existing.state.load(Ordering::Relaxed) {
                REPLACED => return Err(SessionDenied::Replaced),
                ENDED => return Err(SessionDenied::Ended),
                // Live on another device: its credential was copied, not taken up.
                _ if existing.is_live(now, idle)
                    && super::on_another_device(existing, start.device) =>
                {
                    return Err(SessionDenied::Shared)
                }
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
    Ok(Plan::New { victims })
}
