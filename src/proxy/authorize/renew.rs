//! An expired session token whose session this node does not hold live. A session token
//! passes past its expiry while its session is live ([`access::decide`]); the node that
//! asks knows only its own sessions, so with sessions shared through Redis a player a load
//! balancer moved here (its node drained, restarted, rebalanced) would lose its film
//! mid-play. Redis is asked only then: an expired token whose session this node does not
//! hold live, never an unexpired one.
//!
//! A token refused for its expiry alone whose session was ended or replaced is refused for
//! that (`session_ended`, `session_replaced`), not as `expired`: a player told `expired`
//! starts again with its ticket, which under `replace_oldest` replaces the stream that
//! replaced it, and two devices take turns. This node knows it of the sessions it holds,
//! and with shared sessions of the others from the record and end marker the same round
//! trip reads.

use crate::access::{self, Grant, Presented};
use crate::proxy::respond::ProxyError;
use crate::proxy::State;
use crate::sessions::shared::LiveElsewhere;
use crate::ticket::KeyRing;

/// The grant for `presented`'s session token, refused as expired because this node does
/// not hold its session live, when another node does (the session is then taken up here
/// as any session this node does not hold: its activation, limits and end are checked),
/// with the purchase that session plays under there, which this node's registry does not
/// know. `None` when no node plays it, or sessions are not shared; the token stays refused.
///
/// # Errors
/// `Replaced` or `Ended` when its session was (as this node holds it, or as Redis's record
/// or end marker says) and the token is refused for its expiry alone; `Unavailable` when
/// Redis does not answer and `sessions.on_backend_error = "deny"`.
pub(super) async fn live_elsewhere(
    state: &State,
    ring: &KeyRing,
    skew: u64,
    path: &str,
    presented: &Presented<'_>,
    now: u64,
    rights_follow: bool,
) -> Result<Option<(Grant, LiveElsewhere)>, ProxyError> {
    // Decided again as if its session were live, so only what that alone refused passes:
    // a session token with a session id, within its cap, in scope, on its device and
    // network. Anything else keeps the first refusal, and costs no round trip.
    let Ok(grant) = access::decide(ring, skew, path, presented, now, &|_| true, rights_follow)
    else {
        return Ok(None);
    };
    let Some(sid) = grant.claims.sid.as_deref() else {
        return Ok(None);
    };
    if let Some(refused) = state.sessions.refusal(sid) {
        return Err(refused.into());
    }
    if state.sessions.shared_up().is_none() {
        // Sessions are not shared: this node's are all there are.
        return Ok(None);
    }
    let live = state
        .sessions
        .is_live_elsewhere(&grant.claims.sub, sid, now)
        .await?;
    Ok(live.map(|live| (grant, live)))
}

/// The purchase session `sid` of `account` plays under on another node, asked when several
/// purchases grant and this node does not hold the session live: a player a balancer moved
/// here goes on under the purchase it started under (its activation, its limits, its end),
/// not the account's preferred one, which may not admit its device. `None` when no other
/// node plays it, or sessions are not shared.
///
/// # Errors
/// `Replaced` or `Ended` when its session was (as this node or Redis holds it);
/// `Unavailable` when Redis does not answer and `sessions.on_backend_error = "deny"`.
pub(super) async fn under_elsewhere(
    state: &State,
    account: &str,
    sid: &str,
    now: u64,
) -> Result<Option<String>, ProxyError> {
    let live = state.sessions.is_live_elsewhere(account, sid, now).await?;
    Ok(live.and_then(|live| live.purchase))
}
