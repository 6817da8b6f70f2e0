//! Operator calls received by one node that act on every node, through shared sessions
//! (`sessions.backend = "redis"`): a freed device's sessions end on whichever node plays
//! them, and a shield purge is announced to the other nodes on the sessions' channel
//! ([`shared`](super::shared)). Without shared sessions both act on this node only.

use std::collections::BTreeSet;

use super::{shared, Session, Sessions};

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
            if let Err(e) = self.end_everywhere(sid).await {
                outcome = outcome.map(|o| o.and(Err(e)));
            }
        }
        DeviceEnds {
            ended: sids.len(),
            shared: outcome,
        }
    }

    /// Announces a shield purge under `prefix` to every node, this one included (which
    /// purges again: nothing more than was fetched in between); how many subscribers Redis
    /// handed it to. `None` without shared sessions: there is no one to tell.
    pub async fn announce_purge(&self, prefix: &str) -> Option<Result<i64, shared::BackendError>> {
        Some(self.shared.get()?.announce_purge(prefix).await)
    }
}
