//! The rights invalidation an external billing system calls when it revokes: the cached
//! decisions it names are dropped, so the very next request is decided afresh.

use super::fields::{Fields, Reader};
use super::AdminError;
use crate::proxy::State;

/// What an invalidation dropped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Invalidated {
    /// The subject (account) named, if any.
    pub subject: Option<String>,
    /// The content named (a media code or an editorial id), if any.
    pub content: Option<String>,
    /// The media codes that content stands for.
    pub media: Vec<String>,
    /// Cached decisions dropped.
    pub dropped: u64,
}

/// Drops the cached rights decisions about `subject`, about `content` (a media code, or an
/// editorial id standing for every media that carries it, with every media nested inside
/// those), or about both together.
///
/// # Errors
/// 400 when neither is given.
pub async fn invalidate_rights(state: &State, f: &Fields) -> Result<Invalidated, AdminError> {
    let mut r = Reader::new(f);
    let subject = r.text("subject").map(str::to_owned);
    let content = r.text("content").map(str::to_owned);
    r.finish(&[])?;
    if subject.is_none() && content.is_none() {
        return Err(AdminError::invalid(
            "subject",
            "give subject, content, or both",
        ));
    }
    // A right on a media covers the media nested inside it, and an editorial id every
    // media carrying it: their decisions are cached under those media's codes.
    let media = match (&content, &state.rights) {
        (None, _) => Vec::new(),
        (Some(content), Some(rights)) => {
            let mut codes = rights.media_covered_by(content);
            if !codes.contains(content) {
                codes.insert(0, content.clone());
            }
            codes
        }
        (Some(content), None) => vec![content.clone()],
    };
    let dropped = match &state.rights {
        Some(rights) => {
            let codes = content.as_ref().map(|_| media.as_slice());
            rights.invalidate(subject.as_deref(), codes).await
        }
        None => 0,
    };
    state.fanout.publish(crate::fanout::Invalidation::Scoped {
        subject: subject.clone(),
        content: content.as_ref().map(|_| media.clone()),
    });
    tracing::info!(subject = ?subject, content = ?content, dropped, "rights invalidated");
    Ok(Invalidated {
        subject,
        content,
        media,
        dropped,
    })
}
