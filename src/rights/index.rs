//! Path → media, in memory: the longest media prefix that contains a request path.

use std::collections::HashMap;

use super::model::Media;

/// What the hot path needs to know of a media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// Content id.
    pub code: String,
    /// Editorial id, if it is one rendition of several.
    pub editorial: Option<String>,
    /// Its path prefix.
    pub prefix: String,
}

/// Media by path prefix.
#[derive(Debug, Default)]
pub struct MediaIndex {
    by_prefix: HashMap<String, MediaRef>,
}

impl MediaIndex {
    /// An index of `media`.
    pub fn new(media: Vec<Media>) -> Self {
        let by_prefix = media
            .into_iter()
            .map(|m| {
                (
                    m.prefix.clone(),
                    MediaRef {
                        code: m.code,
                        editorial: m.editorial,
                        prefix: m.prefix,
                    },
                )
            })
            .collect();
        Self { by_prefix }
    }

    /// The media whose prefix is the longest one containing `path` (normalised).
    pub fn lookup(&self, path: &str) -> Option<&MediaRef> {
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
            created_at: 0,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let index = MediaIndex::new(vec![
            media("all", "/events/"),
            media("final", "/events/final/"),
        ]);
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
