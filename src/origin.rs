//! Base URLs of an HTTP origin: parsing them, and recognising absolute URIs that point back
//! at the origin so playlists can route them through usher instead.

use std::fmt;

/// An `http(s)://host[:port][/path]` base, normalised: lowercase scheme and host, default
/// port dropped, no trailing slash on the path; and, for the rewriter, the upstream group
/// whose server or alias it is (`None`: `[upstream]`, or not said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginBase {
    scheme: &'static str,
    authority: String,
    path: String,
    group: Option<String>,
}

impl OriginBase {
    /// Parses a base URL. Query strings, fragments and credentials are refused: a base is a
    /// place, not a request.
    ///
    /// # Errors
    /// A message naming what is wrong with the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) =
            split_scheme(url).ok_or_else(|| "must start with http:// or https://".to_owned())?;
        if rest.contains(['?', '#']) {
            return Err("a base URL has no query or fragment".to_owned());
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') {
            return Err("needs a host and no user info".to_owned());
        }
        authority
            .parse::<http::uri::Authority>()
            .map_err(|_| format!("\"{authority}\" is not a valid host[:port]"))?;
        Ok(Self {
            scheme,
            authority: normalise_authority(scheme, authority),
            path: path.trim_end_matches('/').to_owned(),
            group: None,
        })
    }

    /// This base as one of the named group `[upstreams.NAME]`'s: a URI under it is
    /// rerouted only to a path whose route fetches from that group.
    #[must_use]
    pub fn in_group(mut self, name: &str) -> Self {
        self.group = Some(name.to_owned());
        self
    }

    /// The named upstream group it belongs to; `None`: `[upstream]`.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// `host[:port]`, lowercase, without a default port.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The base path, `""` or `/something` without a trailing slash.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// When `uri` is an absolute (`http://…`) or scheme-relative (`//…`) URI under this
    /// base, the part of it that follows the base: a path starting with `/`, with any query
    /// or fragment. `None` for anything else.
    pub fn strip<'u>(&self, uri: &'u str) -> Option<&'u str> {
        let rest = match split_scheme(uri) {
            Some((scheme, rest)) if scheme == self.scheme => rest,
            Some(_) => return None,
            None => uri.strip_prefix("//")?,
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if normalise_authority(self.scheme, authority) != self.authority {
            return None;
        }
        let tail = tail.strip_prefix(self.path.as_str())?;
        if tail.starts_with('/') {
            Some(tail)
        } else {
            None
        }
    }
}

impl fmt::Display for OriginBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

fn split_scheme(url: &str) -> Option<(&'static str, &str)> {
    let colon = url.find("://")?;
    let scheme = &url[..colon];
    let rest = &url[colon + 3..];
    if scheme.eq_ignore_ascii_case("http") {
        Some(("http", rest))
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(("https", rest))
    } else {
        None
    }
}

fn normalise_authority(scheme: &str, authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    match lower.strip_suffix(default) {
        Some(host) => host.to_owned(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let base = OriginBase::parse("HTTP://Origin.Example:80/hls/").unwrap();
        assert_eq!(base.to_string(), "http://origin.example/hls");
        assert!(OriginBase::parse("ftp://x").is_err());
        assert!(OriginBase::parse("http://u:p@x/").is_err());
        assert!(OriginBase::parse("http://x/?q").is_err());
        assert!(OriginBase::parse("http:///path").is_err());
    }

    #[test]
    fn strips_only_uris_under_the_base() {
        let base = OriginBase::parse("http://origin.example:8000/hls").unwrap();
        assert_eq!(
            base.strip("http://ORIGIN.example:8000/hls/a/b.ts?x=1"),
            Some("/a/b.ts?x=1")
        );
        assert_eq!(base.strip("//origin.example:8000/hls/a.ts"), Some("/a.ts"));
        assert_eq!(base.strip("http://origin.example:8000/other/a.ts"), None);
        assert_eq!(base.strip("http://origin.example:8000/hlsx/a.ts"), None);
        assert_eq!(base.strip("https://origin.example:8000/hls/a.ts"), None);
        assert_eq!(base.strip("http://cdn.example/hls/a.ts"), None);
        assert_eq!(base.strip("a.ts"), None);
        assert_eq!(base.strip("skd://key"), None);
    }

    #[test]
    fn default_ports_match_either_way() {
        let base = OriginBase::parse("https://o.example").unwrap();
        assert_eq!(base.strip("https://o.example:443/x.ts"), Some("/x.ts"));
    }
}
