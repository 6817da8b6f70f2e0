//! Whether a session is live on any node. Asked only when a session token has expired and
//! this node does not hold its session live: a VOD player that a load balancer moved here
//! from the node it played on (drained, restarted, rebalanced) still holds the segment URIs
//! its playlist gave it for the whole film. Never on a request with an unexpired token.

use std::sync::atomic::Ordering;

use super::{ends, keys, BackendError, Record, SharedSessions};
use crate::sessions::{SessionDenied, Sessions, LIVE};

/// A session live on another node, as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveElsewhere {
    /// The purchase it plays under (`None`: started without rights), which this node's
    /// registry does not know yet: a token past its cap plays on only under it.
    pub purchase: Option<String>,
}

impl SharedSessions {
    /// Session `sid` of `account` when Redis holds it live at `now`: its record is live,
    /// its last request is within the idle timeout, and it carries no end marker (one
    /// round trip).
    ///
    /// # Errors
    /// When Redis does not answer.
    async fn is_live(
        &self,
        account: &str,
        sid: &str,
        now: u64,
    ) -> Result<Option<LiveElsewhere>, BackendError> {
        let (sessions_key, seen_key) = keys(account);
        let marker = ends::key(sid);
        let (record, seen, ended): (Option<String>, Option<u64>, bool) = self
            .call("live", |mut conn| {
                let (sessions, seen, marker) =
                    (sessions_key.clone(), seen_key.clone(), marker.clone());
                let sid = sid.to_owned();
                async move {
                    redis::pipe()
                        .hget(sessions, &sid)
                        .hget(seen, &sid)
                        .exists(marker)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        let Some(record) = record.and_then(|json| serde_json::from_str::<Record>(&json).ok())
        else {
            return Ok(None);
        };
        let last_seen = seen.unwrap_or(record.started_at);
        let live = !ended && record.state == LIVE && now < last_seen.saturating_add(self.idle);
        Ok(live.then_some(LiveElsewhere {
            purchase: record.purchase,
        }))
    }
}

impl Sessions {
    /// Session `sid` of `account`, which this node does not hold live, when it is live on
    /// another node (for renewing its expired session token here). `None` without shared
    /// sessions, and for a session this node holds ended or replaced (an end is never
    /// undone). When Redis does not answer: `Unavailable` under `on_backend_error = "deny"`,
    /// `None` (this node's own sessions decide) under `local`.
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn is_live_elsewhere(
        &self,
        account: &str,
        sid: &str,
        now: u64,
    ) -> Result<Option<LiveElsewhere>, SessionDenied> {
        let Some(shared) = self.shared.get() else {
            return Ok(None);
        };
        let ended_here = {
            let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
            sessions
                .get(sid)
                .is_some_and(|s| s.state.load(Ordering::Relaxed) != LIVE)
        };
        if ended_here {
            return Ok(None);
        }
        match shared.is_live(account, sid, now).await {
            Ok(live) => Ok(live),
            Err(e) => match self.backend_failed(shared, &e) {
                Some(denied) => Err(denied),
                None => Ok(None),
            },
        }
    }
}
