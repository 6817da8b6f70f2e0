//! The shield purge (`POST /api/v1/cache/purge`): this node's shield at once, then every
//! other node's through the announcement shared sessions carry, and the record a node that
//! missed it catches up from ([`crate::sessions::cluster`]).

use super::AdminError;
use crate::proxy::State;

/// What a purge did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Purged {
    /// The path prefix purged.
    pub prefix: String,
    /// How many objects this node's shield dropped (the other nodes' counts are not known).
    pub purged: usize,
    /// With shared sessions, `true`: the other nodes were told to purge too (absent
    /// without shared sessions: this node is the only one purged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced: Option<bool>,
}

/// Drops this node's shield entries under `prefix`, then, with shared sessions, tells
/// every other node to drop theirs.
///
/// # Errors
/// 400 naming `prefix` when it holds a `.`, `..` or empty segment
/// ([`crate::shield::purge_prefix`]); 503 [`AdminError::PurgeNotAnnounced`] when Redis did not take the announcement: this
/// node purged, the others did not (repeating the purge is harmless).
pub async fn purge_cache(state: &State, prefix: &str) -> Result<Purged, AdminError> {
    if crate::shield::purge_prefix(prefix).is_none() {
        return Err(AdminError::invalid(
            "prefix",
            "it holds a `.`, `..` or empty segment, which would purge under another prefix: \
             name the prefix as it reads resolved",
        ));
    }
    let purged = state.shield.purge(prefix);
    let announced = match state.sessions.announce_purge(prefix).await {
        None => None,
        Some(Ok(_)) => Some(true),
        Some(Err(e)) => {
            return Err(AdminError::PurgeNotAnnounced {
                prefix: prefix.to_owned(),
                purged,
                why: e.to_string(),
            })
        }
    };
    Ok(Purged {
        prefix: prefix.to_owned(),
        purged,
        announced,
    })
}
