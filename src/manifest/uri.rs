//! Deciding what to do with one URI of a playlist.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::origin::OriginBase;

/// What happens to a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Relative or path-absolute: add the token in place. `has_query` says whether the URI
    /// (with variables resolved) already has a query.
    Tokenize {
        /// Whether to join with `&` rather than `?`.
        has_query: bool,
    },
    /// Absolute under the origin: replace with this path (and query), then add the token.
    Reroute {
        /// The path-absolute replacement, variables resolved.
        path: String,
        /// Whether to join with `&` rather than `?`.
        has_query: bool,
    },
    /// Another host or scheme: leave alone.
    Foreign,
    /// Starts with a variable that cannot be resolved here: leave alone.
    Unresolved,
}

/// Which upstream group usher fetches a normalised path from: the group of the longest
/// route over it (`Config::upstream_for`), `None` for `[upstream]`.
#[derive(Clone, Copy)]
pub struct UpstreamFor<'a>(pub &'a dyn Fn(&str) -> Option<&'a str>);

impl std::fmt::Debug for UpstreamFor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamFor(..)")
    }
}

/// Classifies `uri` (as written, variables and all). An absolute URI under one of `bases`
/// is rerouted only when usher would fetch the path it becomes from that base's group
/// (`upstream_for`; `None`: every path from `[upstream]`); otherwise it is foreign.
pub fn classify(
    uri: &str,
    bases: &[OriginBase],
    upstream_for: Option<UpstreamFor<'_>>,
    vars: &HashMap<String, String>,
) -> Disposition {
    let Some(resolved) = resolve(uri, vars) else {
        return Disposition::Unresolved;
    };
    // `resolve` copies only a URI with variables in it.
    let has_variables = matches!(resolved, Cow::Owned(_));
    // Judged, and rerouted, as a browser's player reads it (see `browser_view`).
    let seen = browser_view(&resolved);
    let before_fragment = seen.split('#').next().unwrap_or("");
    if !is_absolute(before_fragment) {
        // `/{$x}/evil.example/a.ts` reads as relative here, but names another host once
        // the player substitutes an empty `x`.
        if has_variables && may_become_absolute(before_fragment) {
            return Disposition::Unresolved;
        }
        return Disposition::Tokenize {
            has_query: before_fragment.contains('?'),
        };
    }
    let owned = bases.iter().find_map(|base| {
        let path = base.strip(&seen)?;
        served_by(base, path, upstream_for).then_some(path)
    });
    match owned {
        // `http://origin/base//evil.example/a.ts` is the origin's, but its path, written
        // on its own, would be another host's; so would `http://origin/base/{$x}/…`.
        Some(path) if !(path.starts_with("//") || has_variables && may_become_absolute(path)) => {
            Disposition::Reroute {
                has_query: has_query(path),
                path: path.to_owned(),
            }
        }
        _ => Disposition::Foreign,
    }
}

/// Whether usher, asked for `path` (rerouted from under `base`), fetches it from `base`'s
/// group. The route is judged on the path as usher will see it: normalised, as players
/// resolve its dot segments and usher decodes it (one it refuses is judged as written).
fn served_by(base: &OriginBase, path: &str, upstream_for: Option<UpstreamFor<'_>>) -> bool {
    let Some(UpstreamFor(group_of)) = upstream_for else {
        return base.group().is_none();
    };
    let raw = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let group = match crate::path::normalized(raw) {
        Ok(normal) => group_of(&normal),
        Err(_) => group_of(raw),
    };
    group == base.group()
}

/// `uri` with every known `{$name}` replaced, or `None` when it starts with an unknown
/// variable (it may name any host). Unknown variables further in are kept as written, for
/// the player to substitute; [`classify`] leaves the URI alone when one of them could still
/// make it name another host ([`may_become_absolute`]).
fn resolve<'u>(uri: &'u str, vars: &HashMap<String, String>) -> Option<Cow<'u, str>> {
    if !uri.contains("{$") {
        // The common case, once per segment line: no copy.
        return Some(Cow::Borrowed(uri));
    }
    substitute(uri, |name| vars.get(name).map(String::as_str)).map(Cow::Owned)
}

/// `uri` with each `{$name}` replaced by what `value` gives for `name`, or kept as written
/// when it gives nothing; `None` when it gives nothing for a variable in first place.
fn substitute<'v>(uri: &str, value: impl Fn(&str) -> Option<&'v str>) -> Option<String> {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(start) = rest.find("{$") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + len];
        out.push_str(&rest[..start]);
        match value(name) {
            Some(value) => out.push_str(value),
            None if out.is_empty() => return None,
            None => out.push_str(&rest[start..=start + len]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// `uri` as a browser's URL parser reads it before resolving it against the playlist's
/// URL (WHATWG URL: leading and trailing C0 controls and spaces dropped, tabs and line
/// breaks removed anywhere, `\` read as `/` under `http(s)`). Players in browsers resolve
/// `\\evil.example/a.ts`, `/\evil.example/a.ts` and `ht<TAB>tp://evil.example/a.ts` to
/// another host: classified as written, they would look relative and carry the viewer's
/// token there.
fn browser_view(uri: &str) -> Cow<'_, str> {
    let trimmed = uri.trim_matches(|c: char| c <= ' ');
    if trimmed.len() == uri.len() && !uri.contains(['\t', '\n', '\r', '\\']) {
        return Cow::Borrowed(uri);
    }
    Cow::Owned(
        trimmed
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .map(|c| if c == '\\' { '/' } else { c })
            .collect(),
    )
}

/// Whether a player reads `uri` (as [`browser_view`] gives it) as naming its own host:
/// a scheme, or `//`.
fn is_absolute(uri: &str) -> bool {
    has_scheme(uri) || uri.starts_with("//")
}

/// Whether `uri`, relative as written, could name another host once the player substitutes
/// the variables it still holds (ones the rewriter could not resolve): each is tried as
/// `""`, `/` and `a:`, the values that can complete `//` or a scheme before it.
fn may_become_absolute(uri: &str) -> bool {
    if !uri.contains("{$") {
        return false;
    }
    ["", "/", "a:"].iter().any(|probe| {
        substitute(uri, |_| Some(probe)).is_some_and(|filled| is_absolute(&browser_view(&filled)))
    })
}

/// Whether `uri` begins with `scheme:` (RFC 3986: a letter, then letters, digits, `+-.`).
fn has_scheme(uri: &str) -> bool {
    let Some(colon) = uri.find(':') else {
        return false;
    };
    let scheme = &uri[..colon];
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !scheme.contains('/')
}

/// Whether `uri` has a query (a `?` before any fragment).
pub(super) fn has_query(uri: &str) -> bool {
    uri.split('#').next().is_some_and(|q| q.contains('?'))
}

/// `uri` without the `name=…` pairs of its query whose name is `stale` (a credential of
/// usher's own that the origin wrote: stale, and read before the token usher hands on
/// where that one travels in the path or a cookie), and without a `?` left with nothing
/// after it. Borrowed when there is no such pair.
pub(super) fn without_params<'u>(uri: &'u str, stale: impl Fn(&str) -> bool) -> Cow<'u, str> {
    let end = uri.find('#').unwrap_or(uri.len());
    let Some(mark) = uri[..end].find('?') else {
        return Cow::Borrowed(uri);
    };
    let named = |pair: &&str| stale(pair.split_once('=').map_or(*pair, |(key, _)| key));
    let query = &uri[mark + 1..end];
    if !query.split('&').any(|pair| named(&pair)) {
        return Cow::Borrowed(uri);
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !named(pair)).collect();
    let mut out = String::with_capacity(uri.len());
    out.push_str(&uri[..mark]);
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out.push_str(&uri[end..]);
    Cow::Owned(out)
}

/// The normalised path a URI written in the playlist at `playlist_path` points at, without
/// its query or fragment; `None` when it cannot be resolved (variables, bad escapes).
pub(super) fn resolve_path(playlist_path: &str, uri: &str) -> Option<String> {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let target = &uri[..end];
    if target.contains("{$") {
        return None;
    }
    let joined = if target.starts_with('/') {
        target.to_owned()
    } else if target.is_empty() {
        // `?x=1`: the playlist itself (RFC 3986 5.2.2), with another query.
        playlist_path.to_owned()
    } else {
        let dir = &playlist_path[..playlist_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{target}")
    };
    crate::path::normalize(&joined).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> Vec<OriginBase> {
        vec![OriginBase::parse("http://origin.test:8000/hls").unwrap()]
    }

    fn classify_plain(uri: &str) -> Disposition {
        classify(uri, &bases(), None, &HashMap::new())
    }

    #[test]
    fn what_a_browser_reads_as_another_host_is_never_tokenized() {
        for uri in [
            "\\\\evil.example/a.ts",
            "/\\evil.example/b.ts",
            "\\/evil.example/b.ts",
            "ht\ttp://evil.example/c.ts",
            "/\t/evil.example/d.ts",
            "/\n/evil.example/d.ts",
            " //evil.example/e.ts",
            "\u{1}http://evil.example/f.ts",
        ] {
            assert_eq!(classify_plain(uri), Disposition::Foreign, "{uri:?}");
        }
        // The origin's own URLs whose path alone would name another host.
        for uri in [
            "http://origin.test:8000/hls//evil.example/a.ts",
            "http://origin.test:8000/hls/\\evil.example/a.ts",
            "http://origin.test:8000/hls/\t/evil.example/a.ts",
            "//origin.test:8000/hls//evil.example/a.ts",
        ] {
            assert_eq!(classify_plain(uri), Disposition::Foreign, "{uri:?}");
        }
        // The origin's URL with a tab in its scheme is still the origin's, as a browser
        // reads it.
        assert_eq!(
            classify_plain("ht\ttp://origin.test:8000/hls/a.ts"),
            Disposition::Reroute {
                path: "/a.ts".into(),
                has_query: false
            }
        );
        // Relative names without those characters are read as before.
        assert_eq!(
            classify_plain("seg 1.ts"),
            Disposition::Tokenize { has_query: false }
        );
    }

    #[test]
    fn relative_and_path_absolute_are_tokenized() {
        assert_eq!(
            classify_plain("seg1.ts"),
            Disposition::Tokenize { has_query: false }
        );
        assert_eq!(
            classify_plain("../a/b.ts?x=1"),
            Disposition::Tokenize { has_query: true }
        );
        assert_eq!(
            classify_plain("/hls/a.m3u8"),
            Disposition::Tokenize { has_query: false }
        );
        assert_eq!(classify_plain("a:b/c.ts").clone(), Disposition::Foreign);
        assert_eq!(
            classify_plain("dir/a:b.ts"),
            Disposition::Tokenize { has_query: false }
        );
    }

    #[test]
    fn origin_uris_are_rerouted_and_others_left_alone() {
        assert_eq!(
            classify_plain("http://origin.test:8000/hls/v/1.ts?q=1"),
            Disposition::Reroute {
                path: "/v/1.ts?q=1".into(),
                has_query: true
            }
        );
        assert_eq!(
            classify_plain("http://cdn.other/hls/v/1.ts"),
            Disposition::Foreign
        );
        assert_eq!(classify_plain("skd://content-id"), Disposition::Foreign);
        assert_eq!(
            classify_plain("data:text/plain;base64,AAAA"),
            Disposition::Foreign
        );
        assert_eq!(classify_plain("//cdn.other/x.ts"), Disposition::Foreign);
    }

    #[test]
    fn variables_are_resolved_for_the_decision_only() {
        let mut vars = HashMap::new();
        vars.insert("host".to_owned(), "http://origin.test:8000/hls".to_owned());
        vars.insert("q".to_owned(), "?a=b".to_owned());
        assert_eq!(
            classify("{$host}/v/1.ts", &bases(), None, &vars),
            Disposition::Reroute {
                path: "/v/1.ts".into(),
                has_query: false
            }
        );
        assert_eq!(
            classify("seg.ts{$q}", &bases(), None, &vars),
            Disposition::Tokenize { has_query: true }
        );
        assert_eq!(
            classify("{$unknown}/1.ts", &bases(), None, &vars),
            Disposition::Unresolved
        );
        assert_eq!(
            classify("v/{$unknown}.ts", &bases(), None, &vars),
            Disposition::Tokenize { has_query: false }
        );
    }

    #[test]
    fn an_unknown_variable_that_could_complete_a_host_leaves_the_uri_alone() {
        let vars = HashMap::new();
        for uri in [
            "/{$x}/evil.example/a.ts",
            "h{$x}://evil.example/b.ts",
            "{$x}{$y}/c.ts",
            "\\{$x}evil.example/d.ts",
            "/{$x}\\evil.example/e.ts",
        ] {
            assert_eq!(
                classify(uri, &bases(), None, &vars),
                Disposition::Unresolved,
                "{uri:?}"
            );
        }
        // The origin's URL whose path would start with `//` once `x` is empty.
        assert_eq!(
            classify(
                "http://origin.test:8000/hls/{$x}/evil.example/a.ts",
                &bases(),
                None,
                &vars
            ),
            Disposition::Foreign
        );
        // Past the first character that is neither `/` nor part of a scheme, no value can.
        for uri in ["v/{$x}/a.ts", "/v/{$x}.ts", "1{$x}.ts", "seg.ts?{$x}"] {
            assert_eq!(
                classify(uri, &bases(), None, &vars),
                Disposition::Tokenize {
                    has_query: uri.contains('?')
                },
                "{uri:?}"
            );
        }
    }
}
