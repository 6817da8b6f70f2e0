//! Operator calls received by one node that act on every node, through shared sessions
//! (`sessions.backend = "redis"`): a session, or a freed device's sessions, end on
//! whichever node plays them, and a shield purge is recorded in Redis and announced to the
//! other nodes on the sessions' channel ([`shared`](super::shared)). Without shared
//! sessions they act on this node only.

use std::collections::BTreeSet;

use super::{shared, Session, Sessions, ENDED};

/// What [`Sessions::end_device`] did.
#[derive(Debug)]
pub struct DeviceEnds {
    /// How many of the device's live sessions were ended, on this node or (with shared
    /// sessions) on any other.
    pub ended: usize,
    /// With shared sessions, whether every node was told: `Err` when Redis could not be
    /// read or an end could not be recorded there, so sessions on other nodes may play on.
    /// `None` without shared sessions.
    pub shared: Option<Result<(), shared::BackendError>>,
}

impl Sessions {
    /// Ends every live session of `device` (hashed) under `purchase`, which `account`
    /// holds, on whichever node plays it ([`Sessions::end_everywhere`]): those this node
    /// holds, and with shared sessions those the account's records in Redis show, which
    /// this node does not hold, each ended by id (an end marker, then an announcement), so
    /// a node that did not hear the announcement stops the session at its next touch or
    /// catch-up.
    pub async fn end_device(
        &self,
        account: &str,
        purchase: &str,
        device: &str,
        now: u64,
    ) -> DeviceEnds {
        let of_device = |s: &Session| {
            s.purchase.as_deref() == Some(purchase) && s.device.as_deref() == Some(device)
        };
        let mut sids: BTreeSet<String> = self
            .live(now)
            .iter()
            .filter(|s| of_device(s))
            .map(|s| s.sid.clone())
            .collect();
        let mut outcome = self.shared.get().map(|_| Ok(()));
        if let Some(shared) = self.shared.get() {
            match shared.sessions_of(account).await {
                // Redis's last-seen times lag each node's own by up to a touch interval.
                Ok(held) => sids.extend(
                    held.iter()
                        .filter(|s| s.is_live(now, self.idle.saturating_add(self.touch_interval)))
                        .filter(|s| of_device(s))
                        .map(|s| s.sid.clone()),
                ),
                Err(e) => outcome = Some(Err(e)),
            }
        }
        for sid in &sids {
            // Each is known: held here, or read from Redis's records just now.
            if let Err(e) = self.end_known(sid, true).await {
                outcome = outcome.map(|o| o.and(Err(e)));
            }
        }
        DeviceEnds {
            ended: sids.len(),
            shared: outcome,
        }
    }

    /// Ends a session on whichever node plays it. `Ok(false)` when no node may hold it:
    /// this node does not, and (on shared sessions) Redis knows no session by that id,
    /// neither in [`shared`]'s index of session ids nor by an end marker; nothing is
    /// then written or announced. A session this node does not hold (or Redis has no
    /// record of) is ended by id: a marker the node playing it reads when it next writes
    /// its touch or catches up, and every start reads. Then it is announced, for the node
    /// playing it to stop at once.
    ///
    /// # Errors
    /// On shared sessions, when the end could not be recorded in Redis: it may not reach the
    /// node that plays it, even if a subscriber heard the announcement (one whose connection
    /// died unnoticed counts too). This node's copy, if it has one, is ended, and written
    /// to Redis once Redis is back. Also when Redis could not say whether it knows the id:
    /// the end is then made (and announced) as for a known session.
    pub async fn end_everywhere(&self, sid: &str) -> Result<bool, shared::BackendError> {
        self.end_known(sid, false).await
    }

    /// [`Sessions::end_everywhere`]; `in_redis`: the caller read the session in Redis's
    /// records, so whether Redis knows it is not asked again (a session started by a node of
    /// an earlier version, not yet in the index, is ended all the same).
    async fn end_known(&self, sid: &str, in_redis: bool) -> Result<bool, shared::BackendError> {
        let held = {
            let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
            sessions.get(sid).cloned()
        };
        let known = self.end(sid);
        let Some(shared) = self.shared.get() else {
            return Ok(known);
        };
        let recorded = match &held {
            Some(session) => match shared.end(&session.account, sid).await {
                Ok(recorded) => recorded,
                Err(e) => {
                    tracing::warn!(error = %e, "session end not recorded in the shared store");
                    false
                }
            },
            None => false,
        };
        if recorded {
            return Ok(true);
        }
        if held.is_none() && !in_redis {
            match shared.knows(sid).await {
                // Neither this node nor Redis knows it: nothing is ended, and the operator
                // hears so (a mistyped id, a session long forgotten).
                Ok(false) => return Ok(false),
                Ok(true) => {}
                // Ended as a known one: if it plays somewhere, it stops (or the operator
                // hears the end did not land).
                Err(e) => tracing::warn!(error = %e, "Redis did not say if it knows the session"),
            }
        }
        if let Some(session) = &held {
            // Its record is written ended once Redis answers, so it counts nowhere.
            shared.defer_writes([session]);
        }
        let marked = shared.end_by_id(sid).await;
        // Whichever node holds it stops it and records the end when it hears this;
        // announced even when the marker could not be written (a node that hears it
        // stops at once), but then the end is not sure to reach it.
        shared.announce(sid, ENDED).await;
        if let Err(e) = marked {
            return Err(shared::BackendError(format!(
                "the end could not be recorded in Redis ({e}); repeat it"
            )));
        }
        Ok(true)
    }

    /// Records a shield purge under `prefix` in Redis and announces it to the other nodes
    /// (this one, which purged already, leaves its own announcement; one that does not
    /// hear it applies the record when it catches up); how many subscribers Redis handed
    /// it to. `None` without shared sessions: there is no one to tell.
    pub async fn announce_purge(&self, prefix: &str) -> Option<Result<i64, shared::BackendError>> {
        Some(self.shared.get()?.announce_purge(prefix).await)
    }
}
