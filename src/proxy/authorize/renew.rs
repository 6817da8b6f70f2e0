//! An expired session token whose session another node plays. A session token passes past
//! its expiry while its session is live ([`access::decide`]); the node that asks knows only
//! its own sessions, so with sessions shared through Redis a player a load balancer moved
//! here (its node drained, restarted, rebalanced) would lose its film mid-play. Redis is
//! asked only then: an expired token whose session this node does not hold live, never
//! an unexpired one.

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
/// `Unavailable` when Redis does not answer and `sessions.on_backend_error = "deny"`.
pub(super) async fn live_elsewhere(
    state: &State,
    ring: &KeyRing,
    skew: u64,
    path: &str,
    presented: &Presented<'_>,
    now: u64,
    rights_follow: bool,
) -> Result<Option<(Grant, LiveElsewhere)>, ProxyError> {
    if state.sessions.shared_up().is_none() {
        // Sessions are not shared: this node's are all there are.
        return Ok(None);
    }
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
