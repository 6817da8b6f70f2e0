//! Concurrency limits, pure: may a new session start next to the account's live ones, and
//! which must give way under `replace_oldest`.

use std::sync::Arc;

use super::{Session, SessionDenied, Start};

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
