//! What a cached object is known by: its upstream group, its normalised path and its
//! upstream query (the LL-HLS directives `_HLS_msn`, `_HLS_part`, `_HLS_skip` and any
//! parameter the packager put in the URI), in a fixed order. The query has already lost
//! usher's credentials and device id, so nothing in the key is per viewer: every viewer of
//! one object shares one entry.

use std::sync::Arc;

/// The cache key of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    group: Arc<str>,
    path: String,
    query: String,
}

impl Key {
    /// The key of `path` in `group`, with the parameters of the upstream `query` (credentials
    /// already removed) sorted.
    pub fn new(group: &str, path: &str, query: Option<&str>) -> Self {
        let mut pairs: Vec<&str> = query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .collect();
        pairs.sort_unstable();
        Self {
            group: Arc::from(group),
            path: path.to_owned(),
            query: pairs.join("&"),
        }
    }

    /// The normalised path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The upstream group's name (`""` for `[upstream]`).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// What usher asks the upstream for: the path and the query.
    pub fn upstream_target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directives_in_any_order_make_one_key() {
        let a = Key::new("", "/live/index.m3u8", Some("_HLS_part=2&_HLS_msn=10"));
        let b = Key::new("", "/live/index.m3u8", Some("_HLS_msn=10&_HLS_part=2"));
        assert_eq!(a, b, "order does not split the entry");
        assert_eq!(
            a.upstream_target(),
            "/live/index.m3u8?_HLS_msn=10&_HLS_part=2"
        );
        let other_part = Key::new("", "/live/index.m3u8", Some("_HLS_msn=10&_HLS_part=3"));
        assert_ne!(a, other_part);
        assert_eq!(
            Key::new("", "/s1.ts", Some("v=2")).upstream_target(),
            "/s1.ts?v=2"
        );
        assert_ne!(
            Key::new("", "/s1.ts", Some("v=2")),
            Key::new("", "/s1.ts", Some("v=3"))
        );
        assert_eq!(Key::new("", "/s1.ts", Some("")).upstream_target(), "/s1.ts");
        assert_ne!(Key::new("a", "/s1.ts", None), Key::new("b", "/s1.ts", None));
    }
}
