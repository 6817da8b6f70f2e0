//! What nodes tell each other on the channel `usher:sessions` ([`CHANNEL`]): one small JSON
//! object a message, naming no account, purchase, device or token.
//!
//! - `{"sid": …, "state": 1|2}`: a session was replaced or ended; the node holding it
//!   refuses its next request.
//! - `{"purge": "/prefix/"}`: the operator purged the shield under a path prefix through
//!   one node (`POST /api/v1/cache/purge`); every node purges its own. The sending node
//!   hears it too and purges again, which drops only what was fetched in between.
//!
//! A node ignores a message it cannot read, so a node of an older version, which knows
//! only the first kind, lets a purge pass during a rolling deploy (it keeps its copies
//! until they expire). A purge is not recorded anywhere: a node not subscribed when it is
//! announced keeps what it holds until its lifetime ends.

use serde::{Deserialize, Serialize};

use super::{BackendError, SharedSessions};
use crate::proxy::State;

/// The channel session changes and purges travel on.
pub(super) const CHANNEL: &str = "usher:sessions";

/// One message on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Message {
    /// Session `sid` took `state` (replaced or ended).
    Change { sid: String, state: u8 },
    /// Every node purges its shield under this prefix.
    Purge { purge: String },
}

impl SharedSessions {
    /// Tells every node of `sid`'s new `state`; how many nodes heard it (`None`: Redis
    /// did not take it).
    pub(in crate::sessions) async fn announce(&self, sid: &str, state: u8) -> Option<i64> {
        let change = Message::Change {
            sid: sid.to_owned(),
            state,
        };
        self.publish(&change).await.ok()
    }

    /// Tells every node, this one included, to purge its shield under `prefix`; how many
    /// subscribers Redis handed it to (a subscription that died unnoticed counts too).
    ///
    /// # Errors
    /// When Redis did not take it: no other node purges.
    pub async fn announce_purge(&self, prefix: &str) -> Result<i64, BackendError> {
        let purge = Message::Purge {
            purge: prefix.to_owned(),
        };
        self.publish(&purge).await
    }

    async fn publish(&self, message: &Message) -> Result<i64, BackendError> {
        let payload = super::json(message);
        self.call("publish", |mut conn| {
            let payload = payload.clone();
            async move {
                redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await
            }
        })
        .await
    }
}

/// Applies one message heard on [`CHANNEL`] to this node: marks its copy of a session, or
/// purges its shield. A message of a kind it does not know is ignored.
pub(super) fn apply(payload: &str, state: &State) {
    match serde_json::from_str::<Message>(payload) {
        Ok(Message::Change { sid, state: mark }) => state.sessions.mark(&sid, mark),
        Ok(Message::Purge { purge }) if purge.starts_with('/') => {
            let purged = state.shield.purge(&purge);
            tracing::info!(purged, "shield purged, as a node announced");
        }
        Ok(Message::Purge { .. }) | Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reads_as_before_and_a_purge_is_told_apart_from_it() {
        let change = Message::Change {
            sid: "ab12".into(),
            state: 2,
        };
        assert_eq!(super::super::json(&change), r#"{"sid":"ab12","state":2}"#);
        let purge = Message::Purge {
            purge: "/vod/a/".into(),
        };
        let sent = super::super::json(&purge);
        assert_eq!(sent, r#"{"purge":"/vod/a/"}"#);
        assert!(matches!(
            serde_json::from_str::<Message>(&sent),
            Ok(Message::Purge { purge }) if purge == "/vod/a/"
        ));
        assert!(
            serde_json::from_str::<Message>(r#"{"sid":"ab12","state":2}"#)
                .is_ok_and(|m| matches!(m, Message::Change { state: 2, .. }))
        );
    }
}
