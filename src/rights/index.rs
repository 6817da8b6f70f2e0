//! Path → media, in memory: the longest media prefix that contains a request path.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{Media, Status};
use super::store::{Page, Store, StoreError};

/// What the hot path needs to know of a media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// Content id.
    pub code: String,
    /// Editorial id, if it is one rendition of several.
    pub editorial: Option<String>,
    /// Its path prefix.
    pub prefix: String,
    /// Seconds that play without a ticket: the longest preview of the active products that
    /// contain it (0: none).
    pub preview_seconds: u32,
}

/// Media by path prefix.
#[derive(Debug, Default)]
pub struct MediaIndex {
    by_prefix: HashMap<String, Arc<MediaRef>>,
}

impl MediaIndex {
    /// An index of `media`, with each one's preview length from `previews` (by code).
    pub fn new(media: Vec<Media>, previews: &HashMap<String, u32>) -> Self {
        let by_prefix = media
            .into_iter()
            .map(|m| {
                (
                    m.prefix.clone(),
                    Arc::new(MediaRef {
                        preview_seconds: previews.get(&m.code).copied().unwrap_or(0),
                        code: m.code,
                        editorial: m.editorial,
                        prefix: m.prefix,
                    }),
                )
            })
            .collect();
        Self { by_prefix }
    }

    /// Reads every media and the previews of the products containing them from `store`.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let media = store.all_media()?;
        let mut previews: HashMap<String, u32> = HashMap::new();
        let mut page = Page::ALL;
        loop {
            let products = store.products(page)?;
            for product in products
                .iter()
                .filter(|p| p.preview_seconds > 0 && p.status == Status::Active)
            {
                let links = store.linked(&product.code)?;
                for m in &media {
                    let linked = links.contains(&m.code)
                        || m.editorial.as_ref().is_some_and(|e| links.contains(e));
                    if linked {
                        let seconds = previews.entry(m.code.clone()).or_default();
                        *seconds = (*seconds).max(product.preview_seconds);
                    }
                }
            }
            if products.len() < page.limit as usize {
                break;
            }
            page.offset += page.limit;
        }
        Ok(Self::new(media, &previews))
    }

    /// The media whose prefix is the longest one containing `path` (normalised).
    pub fn lookup(&self, path: &str) -> Option<&Arc<MediaRef>> {
        path.rmatch_indices('/')
            .find_map(|(at, _)| self.by_prefix.get(&path[..=at]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(code: &str, prefix: &str) -> Media {
        Media {
            code: code.into(),
            title: String::new(),
            prefix: prefix.into(),
            playlist: "master.m3u8".into(),
            editorial: None,
            live: false,
            live_title: None,
            created_at: 0,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let index = MediaIndex::new(
            vec![media("all", "/events/"), media("final", "/events/final/")],
            &HashMap::new(),
        );
        assert_eq!(
            index.lookup("/events/final/hd/seg1.ts").unwrap().code,
            "final"
        );
        assert_eq!(index.lookup("/events/semi/seg1.ts").unwrap().code, "all");
        assert_eq!(index.lookup("/events/finals/x.ts").unwrap().code, "all");
        assert!(index.lookup("/other/x.ts").is_none());
        assert!(index.lookup("/events").is_none());
    }
}
