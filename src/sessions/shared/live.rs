//! Whether a session is live on any node. Asked only when a session token has expired and
//! this node does not hold its session live: a VOD player that a load balancer moved here
//! from the node it played on (drained, restarted, rebalanced) still holds the segment URIs
//! its playlist gave it for the whole film; one whose session was ended or replaced is told
//! so, from what the same round trip read. Never on a request with an unexpired token.

use super::{ends, keys, BackendError, Record, SharedSessions};
use crate::sessions::{SessionDenied, Sessions, ENDED, LIVE, REPLACED};

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
    /// round trip). The refusal when its marker or its record says it was ended or
    /// replaced (`Ok(Err)`); `None` when Redis holds no record of it, or one that idled
    /// out.
    ///
    /// # Errors
    /// When Redis does not answer.
    async fn is_live(
        &self,
        account: &str,
        sid: &str,
        now: u64,
    ) -> Result<Result<Option<LiveElsewhere>, SessionDenied>, BackendError> {
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
        // Ended by id, with a record or without (one whose record is gone).
        if ended {
            return Ok(Err(SessionDenied::Ended));
        }
        let Some(record) = record.and_then(|json| serde_json::from_str::<Record>(&json).ok())
        else {
            return Ok(Ok(None));
        };
        match record.state {
            REPLACED => return Ok(Err(SessionDenied::Replaced)),
            ENDED => return Ok(Err(SessionDenied::Ended)),
            _ => {}
        }
        let last_seen = seen.unwrap_or(record.started_at);
        let live = record.state == LIVE && now < last_seen.saturating_add(self.idle);
        Ok(Ok(live.then_some(LiveElsewhere {
            purchase: record.purchase,
        })))
    }
}

impl Sessions {
    /// Session `sid` of `account`, which this node does not hold live, when it is live on
    /// another node (for renewing its expired session token here). `None` without shared
    /// sessions, and when no node plays it (Redis holds no record of it, or one that idled
    /// out). When Redis does not answer: `Unavailable` under `on_backend_error = "deny"`,
    /// `None` (this node's own sessions decide) under `local`.
    ///
    /// # Errors
    /// `Replaced` or `Ended` when this node holds it so, or Redis's record or end marker
    /// says so (an end is never undone); `Unavailable`.
    pub async fn is_live_elsewhere(
        &self,
        account: &str,
        sid: &str,
        now: u64,
    ) -> Result<Option<LiveElsewhere>, SessionDenied> {
        let Some(shared) = self.shared.get() else {
            return Ok(None);
        };
        if let Some(refused) = self.refusal(sid) {
            return Err(refused);
        }
        match shared.is_live(account, sid, now).await {
            Ok(found) => found,
            Err(e) => match self.backend_failed(shared, &e) {
                Some(denied) => Err(denied),
                None => Ok(None),
            },
        }
    }
}
