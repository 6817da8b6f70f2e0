//! Path → media, in memory: the longest media prefix that contains a request path.
//!
//! Prefixes may nest (`demo` at `/demo/`, `m180` at `/demo/180p/`). A path belongs to the
//! most specific media, and a right on any media that encloses it still covers it: the
//! buyer of `demo` keeps playing `/demo/180p/` after `m180` is created, and a buyer of
//! `m180` alone plays only `/demo/180p/`. Each entry carries the content ids whose rights
//! cover it, worked out once when the index is built, so the hot path does one lookup.

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
    /// contain it or a media enclosing it (0: none).
    pub preview_seconds: u32,
    /// The nearest media whose prefix encloses this one's, if any.
    pub enclosing: Option<Arc<MediaRef>>,
    /// The content ids a right on which covers this media: its code and editorial id, then
    /// those of every enclosing media, innermost first, without repeats.
    pub covered_by: Vec<String>,
}

impl MediaRef {
    /// This media, then every media enclosing it, innermost first.
    pub fn chain(&self) -> impl Iterator<Item = &MediaRef> {
        std::iter::successors(Some(self), |m| m.enclosing.as_deref())
    }
}

/// Media by path prefix.
#[derive(Debug, Default)]
pub struct MediaIndex {
    by_prefix: HashMap<String, Arc<MediaRef>>,
}

impl MediaIndex {
    /// An index of `media`, with each one's own preview length from `previews` (by code).
    pub fn new(mut media: Vec<Media>, previews: &HashMap<String, u32>) -> Self {
        // Outer prefixes are shorter: built first, they are there when the media they
        // enclose look for them.
        media.sort_by_key(|m| m.prefix.len());
        let mut index = Self::default();
        for m in media {
            let enclosing = m
                .prefix
                .strip_suffix('/')
                .and_then(|parent| index.lookup(parent))
                .cloned();
            let mut covered_by = vec![m.code.clone()];
            covered_by.extend(m.editorial.clone());
            let mut preview_seconds = previews.get(&m.code).copied().unwrap_or(0);
            if let Some(outer) = &enclosing {
                covered_by.extend(outer.covered_by.iter().cloned());
                preview_seconds = preview_seconds.max(outer.preview_seconds);
            }
            let mut seen = std::collections::HashSet::new();
            covered_by.retain(|c| seen.insert(c.clone()));
            let entry = Arc::new(MediaRef {
                preview_seconds,
                code: m.code,
                editorial: m.editorial,
                prefix: m.prefix.clone(),
                enclosing,
                covered_by,
            });
            index.by_prefix.insert(m.prefix, entry);
        }
        index
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

    /// The codes of every media a right on `content` (a media code or an editorial id)
    /// covers: that media, the media carrying that editorial id, and every media nested
    /// inside those, sorted.
    pub fn covered_by(&self, content: &str) -> Vec<String> {
        let mut codes: Vec<String> = self
            .by_prefix
            .values()
            .filter(|m| m.covered_by.iter().any(|c| c == content))
            .map(|m| m.code.clone())
            .collect();
        codes.sort_unstable();
        codes
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

    #[test]
    fn a_nested_media_is_covered_by_the_rights_and_previews_of_every_enclosing_one() {
        let mut hd = media("final-hd", "/events/final/hd/");
        hd.editorial = Some("final".into());
        let mut previews = HashMap::new();
        previews.insert("all".to_owned(), 30);
        let index = MediaIndex::new(
            // In any order: the index sorts outer prefixes first.
            vec![
                hd,
                media("all", "/events/"),
                media("final-sd", "/events/final/"),
            ],
            &previews,
        );
        let inner = index.lookup("/events/final/hd/seg1.ts").unwrap();
        assert_eq!(inner.code, "final-hd");
        assert_eq!(inner.covered_by, ["final-hd", "final", "final-sd", "all"]);
        assert_eq!(
            inner.chain().map(|m| m.code.as_str()).collect::<Vec<_>>(),
            ["final-hd", "final-sd", "all"]
        );
        assert_eq!(inner.preview_seconds, 30, "the enclosing product's preview");
        let outer = index.lookup("/events/semi/x.ts").unwrap();
        assert_eq!(outer.covered_by, ["all"], "rights flow inwards only");
        assert_eq!(
            index.covered_by("final-sd"),
            ["final-hd", "final-sd"],
            "an invalidation of the enclosing media reaches the nested one"
        );
        assert_eq!(index.covered_by("all"), ["all", "final-hd", "final-sd"]);
        assert_eq!(index.covered_by("final"), ["final-hd"], "by editorial id");
    }
}
