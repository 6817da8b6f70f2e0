//! Changing and removing media (the TVMS/OpenTV "update content"): titles, the live title,
//! the entry playlist and the editorial id change in place; the prefix does not.

use super::fields::{Fields, Reader};
use super::{after_product_write, blocking, get_media, same_code, AdminError};
use crate::proxy::State;
use crate::rights::model::Media;

/// Updates a media's `title`, `live_title`, `playlist`, `editorial` and `live`. An empty
/// `live_title` or `editorial` clears it.
///
/// The prefix cannot change (400 naming `prefix`): every ticket sold for the media is
/// scoped to it, so moving it would lock its buyers out. Sending the same prefix is
/// accepted. A new prefix is a new media, put into the same products. Nor can the code
/// (400 naming `code`, see [`super::same_code`]).
///
/// # Errors
/// Bad fields, or no such media.
pub async fn update_media(state: &State, code: &str, f: &Fields) -> Result<Media, AdminError> {
    let mut media = get_media(state, code).await?;
    let mut r = Reader::new(f);
    same_code(&mut r, "media", code)?;
    if let Some(prefix) = r.text("prefix") {
        if prefix != media.prefix {
            return Err(AdminError::invalid(
                "prefix",
                format!(
                    "\"{prefix}\": a media's prefix cannot change (its tickets are scoped to {}); create a new media for the new prefix",
                    media.prefix
                ),
            ));
        }
    }
    if let Some(title) = r.text("title") {
        title.clone_into(&mut media.title);
    }
    if f.contains_key("live_title") {
        media.live_title = r.text("live_title").map(str::to_owned);
    }
    if let Some(playlist) = r.text("playlist") {
        if playlist.contains("..") || playlist.starts_with('/') {
            return Err(AdminError::invalid(
                "playlist",
                format!("\"{playlist}\": a file name relative to the prefix"),
            ));
        }
        playlist.clone_into(&mut media.playlist);
    }
    if f.contains_key("editorial") {
        media.editorial = r.text("editorial").map(str::to_owned);
    }
    if let Some(live) = r.flag("live")? {
        media.live = live;
    }
    r.finish(&["apikey"])?;
    let stored = media.clone();
    blocking(state, move |s| s.update_media(&stored)).await?;
    // The editorial id decides which rights cover the media: re-read the index and forget
    // cached decisions.
    after_product_write(state).await;
    Ok(media)
}

/// Deletes a media and its links. A media that buyers hold (purchases not revoked, bought
/// for it or of a product containing it) is refused with 409 naming how many, unless
/// `force`.
///
/// # Errors
/// No such media, or buyers hold it.
pub async fn delete_media(state: &State, code: &str, force: bool) -> Result<(), AdminError> {
    let code = code.to_owned();
    blocking(state, move |s| s.delete_media(&code, force)).await?;
    after_product_write(state).await;
    Ok(())
}
