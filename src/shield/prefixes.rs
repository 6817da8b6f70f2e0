//! The path prefixes one purge drops ([`super::Shield::purge_all`]): kept sorted, and
//! without a prefix another one covers, so that whether a path falls under any of them is
//! one binary search, however many there are.

/// Prefixes, sorted, none starting with another.
pub(super) struct Prefixes<'a> {
    sorted: Vec<&'a str>,
}

impl<'a> Prefixes<'a> {
    /// The prefixes of `all`, less those another one covers (`/a/` covers `/a/b/`).
    pub(super) fn new<S: AsRef<str>>(all: &'a [S]) -> Self {
        let mut all: Vec<&str> = all.iter().map(AsRef::as_ref).collect();
        all.sort_unstable();
        // Sorted, the prefixes a prefix covers come right after it.
        let mut sorted: Vec<&str> = Vec::with_capacity(all.len());
        for prefix in all {
            if !sorted.last().is_some_and(|kept| prefix.starts_with(kept)) {
                sorted.push(prefix);
            }
        }
        Self { sorted }
    }

    /// Whether there are none.
    pub(super) fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Whether `path` starts with one of them: the greatest one not after `path` is the
    /// only one it can start with (none starts with another).
    pub(super) fn cover(&self, path: &str) -> bool {
        if let [one] = self.sorted[..] {
            return path.starts_with(one);
        }
        let after = self.sorted.partition_point(|prefix| *prefix <= path);
        after > 0 && path.starts_with(self.sorted[after - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::Prefixes;

    #[test]
    fn a_path_is_covered_by_any_of_the_prefixes_and_by_nothing_else() {
        let all = [
            "/vod/b/",
            "/live/",
            "/vod/a/",
            "/vod/a/x/",
            "/live/e1/",
            "/vod/ab",
        ];
        let prefixes = Prefixes::new(&all);
        assert_eq!(prefixes.sorted, ["/live/", "/vod/a/", "/vod/ab", "/vod/b/"]);
        for covered in [
            "/live/e1/s.ts",
            "/vod/a/x/s.ts",
            "/vod/a/s.ts",
            "/vod/abc",
            "/vod/b/",
        ] {
            assert!(prefixes.cover(covered), "{covered}");
        }
        for left in [
            "/vod/",
            "/vod/a",
            "/vod/aa/s.ts",
            "/vod/c/s.ts",
            "/a",
            "/",
            "/vod/b",
        ] {
            assert!(!prefixes.cover(left), "{left}");
        }
        let root = ["/vod/a/", "/"];
        assert!(Prefixes::new(&root).cover("/anything"));
        assert!(Prefixes::new(&[] as &[&str]).is_empty());
    }
}
