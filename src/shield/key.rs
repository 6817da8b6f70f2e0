//! What a cached object is known by: its upstream group, its normalised path and its
//! upstream query (the LL-HLS directives `_HLS_msn`, `_HLS_part`, `_HLS_skip` and any
//! parameter the packager put in the URI), in a fixed order. The query has already lost
//! usher's credentials and device id, so nothing in the key is per viewer: every viewer of
//! one object shares one entry.

use std::sync::Arc;

/// The cache key of an object. Two keys are equal when group, path and query sorted by
/// parameter name (a repeated name's values in the order written) are;
/// the query as the request wrote it is what goes upstream (an origin may sign its URLs in
/// an order of its own).
#[derive(Debug, Clone)]
pub struct Key {
    group: Arc<str>,
    path: String,
    query: String,
    as_written: String,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        (&self.group, &self.path, &self.query) == (&other.group, &other.path, &other.query)
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.group, &self.path, &self.query).hash(state);
    }
}

impl Key {
    /// The key of `path` in `group`, with the parameters of the upstream `query` (credentials
    /// already removed) sorted.
    pub fn new(group: &Arc<str>, path: &str, query: Option<&str>) -> Self {
        let query = query.unwrap_or("");
        let mut pairs: Vec<&str> = query.split('&').filter(|pair| !pair.is_empty()).collect();
        // By name only, and stable: the values of a name repeated keep their order, which
        // an origin may read (the first, the last, a list), so `v=1&v=2` is not `v=2&v=1`.
        pairs.sort_by_key(|pair| pair.split_once('=').map_or(*pair, |(name, _)| name));
        Self {
            group: group.clone(),
            path: path.to_owned(),
            query: pairs.join("&"),
            as_written: query.to_owned(),
        }
    }

    /// Bytes it holds (its path and its query twice), counted against the cache's budget
    /// with its entry: a key is not free, and a long query on a tiny object would
    /// otherwise fill memory the budget never sees.
    pub fn weight(&self) -> usize {
        self.path.len() + self.query.len() + self.as_written.len() + std::mem::size_of::<Self>()
    }

    /// The normalised path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What usher asks the upstream for: the path and the query as the request wrote it.
    pub fn upstream_target(&self) -> String {
        if self.as_written.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.as_written)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directives_in_any_order_make_one_key() {
        let a = Key::new(
            &Arc::from(""),
            "/live/index.m3u8",
            Some("_HLS_part=2&_HLS_msn=10"),
        );
        let b = Key::new(
            &Arc::from(""),
            "/live/index.m3u8",
            Some("_HLS_msn=10&_HLS_part=2"),
        );
        assert_eq!(a, b, "order does not split the entry");
        assert_eq!(
            b.upstream_target(),
            "/live/index.m3u8?_HLS_msn=10&_HLS_part=2"
        );
        assert_eq!(
            a.upstream_target(),
            "/live/index.m3u8?_HLS_part=2&_HLS_msn=10",
            "the upstream gets the order the request wrote"
        );
        let other_part = Key::new(
            &Arc::from(""),
            "/live/index.m3u8",
            Some("_HLS_msn=10&_HLS_part=3"),
        );
        assert_ne!(a, other_part);
        assert_eq!(
            Key::new(&Arc::from(""), "/s1.ts", Some("v=2")).upstream_target(),
            "/s1.ts?v=2"
        );
        assert_ne!(
            Key::new(&Arc::from(""), "/s1.ts", Some("v=2")),
            Key::new(&Arc::from(""), "/s1.ts", Some("v=3"))
        );
        assert_eq!(
            Key::new(&Arc::from(""), "/s1.ts", Some("")).upstream_target(),
            "/s1.ts"
        );
        assert_ne!(
            Key::new(&Arc::from("a"), "/s1.ts", None),
            Key::new(&Arc::from("b"), "/s1.ts", None)
        );
    }

    #[test]
    fn a_repeated_parameter_keeps_the_order_of_its_values() {
        let key = |query| Key::new(&Arc::from(""), "/s1.ts", Some(query));
        assert_ne!(
            key("v=1&v=2"),
            key("v=2&v=1"),
            "an origin may read the first"
        );
        assert_eq!(key("v=1&b=0&v=2"), key("b=0&v=1&v=2"));
        assert_eq!(key("a&v=1&a=2"), key("v=1&a&a=2"));
        assert_ne!(key("a&a=2"), key("a=2&a"));
    }
}
