//! What nodes tell each other on the channel `usher:sessions` ([`CHANNEL`]): one small JSON
//! object a message, naming no account, purchase, device or token.
//!
//! - `{"sid": …, "state": 1|2}`: a session was replaced or ended; the node holding it
//!   refuses its next request.
//! - `{"purge": "/prefix/", "node": …, "at": …}`: the operator purged the shield under a
//!   path prefix through one node (`POST /api/v1/cache/purge`); every other node purges
//!   its own. `node` is the sending node's id (a random one per start): the sender, which
//!   purged already, hears it too and leaves it. `at` is when Redis recorded the purge
//!   ([`super::purges`]), so a node that did not hear it applies it when it catches up.
//!
//! A node ignores a message it cannot read, so a node of an older version, which knows
//! only the first kind, lets a purge pass during a rolling deploy (it keeps its copies
//! until they expire). A purge without `node` or `at` (from an older version, which did
//! not record it) is applied and not recovered.

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
    /// Every node purges its shield under this prefix (written by [`super::purges`]'s
    /// script, which adds when it was recorded).
    Purge {
        purge: String,
        /// The id of the node that sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// When Redis recorded it (Redis time, ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<u64>,
    },
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

    /// Records a purge of every node's shield under `prefix` and tells the other nodes
    /// (this one purged already); how many subscribers Redis handed it to (a subscription
    /// that died unnoticed counts too: that node applies it when it catches up).
    ///
    /// # Errors
    /// When Redis did not take it: no other node purges now (one whose catch-up reads the
    /// record, if it was written, does later).
    pub async fn announce_purge(&self, prefix: &str) -> Result<i64, BackendError> {
        self.record_purge(prefix).await
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

    /// Applies one message heard on [`CHANNEL`] to this node ([`read`]).
    pub(super) fn hear(&self, payload: &str, state: &State) {
        match read(payload, &self.node) {
            Heard::Mark { sid, mark } => state.sessions.mark(&sid, mark),
            Heard::Purge { prefix, at } => {
                if let Some(prefix) = prefix {
                    let purged = state.shield.purge(&prefix);
                    tracing::info!(purged, "shield purged, as a node announced");
                    if let Some(at) = at {
                        self.applied_purge(prefix, at);
                    }
                }
                if let Some(at) = at {
                    self.heard_purge(at);
                }
            }
            Heard::Nothing => {}
        }
    }
}

/// What a message asks of the node that hears it.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// Mark its copy of session `sid`.
    Mark { sid: String, mark: u8 },
    /// A purge recorded `at` (when the sender recorded it): purge the shield under
    /// `prefix`, `None` when this node sent it (it purged already).
    Purge {
        prefix: Option<String>,
        at: Option<u64>,
    },
    /// Nothing: a message of a kind it does not know, or a prefix not starting with `/`.
    Nothing,
}

/// What `payload` asks of the node whose id is `me`.
fn read(payload: &str, me: &str) -> Heard {
    match serde_json::from_str::<Message>(payload) {
        Ok(Message::Change { sid, state }) => Heard::Mark { sid, mark: state },
        Ok(Message::Purge { purge, node, at }) if purge.starts_with('/') => Heard::Purge {
            prefix: (node.as_deref() != Some(me)).then_some(purge),
            at,
        },
        Ok(Message::Purge { .. }) | Err(_) => Heard::Nothing,
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
        // As the record script writes it, and as an older version sent it.
        let recorded = r#"{"purge":"/vod/a/","node":"0a1b","at":1700000000123}"#;
        assert!(matches!(
            serde_json::from_str::<Message>(recorded),
            Ok(Message::Purge { purge, node: Some(node), at: Some(1_700_000_000_123) })
                if purge == "/vod/a/" && node == "0a1b"
        ));
        assert!(matches!(
            serde_json::from_str::<Message>(r#"{"purge":"/vod/a/"}"#),
            Ok(Message::Purge { purge, node: None, at: None }) if purge == "/vod/a/"
        ));
        assert!(
            serde_json::from_str::<Message>(r#"{"sid":"ab12","state":2}"#)
                .is_ok_and(|m| matches!(m, Message::Change { state: 2, .. }))
        );
    }

    #[test]
    fn a_node_leaves_its_own_purge_and_applies_the_others() {
        let sent = r#"{"purge":"/vod/a/","node":"0a1b","at":1700000000123}"#;
        let at = Some(1_700_000_000_123);
        assert_eq!(read(sent, "0a1b"), Heard::Purge { prefix: None, at });
        let prefix = Some("/vod/a/".to_owned());
        assert_eq!(read(sent, "ffff"), Heard::Purge { prefix, at });
        let older = r#"{"purge":"/vod/a/"}"#;
        let prefix = Some("/vod/a/".to_owned());
        assert_eq!(read(older, "0a1b"), Heard::Purge { prefix, at: None });
        assert_eq!(read(r#"{"purge":"vod"}"#, "0a1b"), Heard::Nothing);
    }
}
