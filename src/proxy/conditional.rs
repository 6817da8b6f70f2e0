//! Conditional requests answered from the shield's copy (RFC 9110 §13): a CDN or player
//! that holds an object and asks again with `If-None-Match` or `If-Modified-Since` gets
//! 304 Not Modified instead of the whole body, as it would from the origin. The shield
//! fetches objects whole, without the viewer's conditions, so they are judged here
//! against the copy's `ETag` and `Last-Modified`.

use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::respond::full;
use super::Body;
use crate::shield::CACHE_STATUS;

/// Headers a 304 carries of the 200 it stands for (RFC 9110 §15.4.5), its age, and how
/// the shield answered.
const KEPT: [HeaderName; 9] = [
    CACHE_CONTROL,
    CONTENT_LOCATION,
    DATE,
    ETAG,
    EXPIRES,
    VARY,
    LAST_MODIFIED,
    AGE,
    HeaderName::from_static(CACHE_STATUS),
];

/// A request's conditions on the object it asks for: read once, and judged against the
/// shield's copy (by the shield, for a hit: it then counts no body bytes served) or the
/// answer it gave.
#[derive(Debug, Clone, Copy)]
pub struct Conditions<'a> {
    /// `If-None-Match`, its first line (any further line is read from `request`).
    none_match: Option<&'a HeaderValue>,
    /// `If-Modified-Since`.
    modified_since: Option<&'a HeaderValue>,
    request: &'a HeaderMap,
}

impl<'a> Conditions<'a> {
    /// The conditions of a request with `headers`; `None` for the common request that has
    /// none (two lookups).
    pub fn of(headers: &'a HeaderMap) -> Option<Self> {
        let none_match = headers.get(IF_NONE_MATCH);
        let modified_since = headers.get(IF_MODIFIED_SINCE);
        (none_match.is_some() || modified_since.is_some()).then_some(Self {
            none_match,
            modified_since,
            request: headers,
        })
    }

    /// Whether an answer of `status` (only a 200 counts, never a playlist) with `headers` is
    /// one the request asked for only if it changed, and it did not: an entity tag of `If-None-Match`
    /// matches its `ETag` weakly, or is `*`; or, without `If-None-Match`, its
    /// `Last-Modified` is not after `If-Modified-Since`.
    pub fn not_modified(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        // A playlist is always sent whole: usher's rewriting makes it per viewer.
        if status != StatusCode::OK || super::playlist::is_playlist_type(headers) {
            return false;
        }
        if self.none_match.is_some() {
            let etag = headers.get(ETAG).and_then(|v| v.to_str().ok());
            return self
                .request
                .get_all(IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(entity_tags)
                .any(|tag| tag == "*" || etag.is_some_and(|etag| weakly_equal(tag, etag)));
        }
        let Some(since) = self.modified_since else {
            return false;
        };
        let date = |value: &HeaderValue| httpdate::parse_http_date(value.to_str().ok()?).ok();
        match (date(since), headers.get(LAST_MODIFIED).and_then(date)) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        }
    }
}

/// The entity tags of an `If-None-Match` line: `*`, or `"…"` and `W/"…"` separated by
/// commas (a comma inside quotes belongs to its tag).
fn entity_tags(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = line;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return None;
        }
        // A quoted tag runs to its closing quote; anything else (`*`, a malformed tag) to
        // the next comma.
        let quoted_from = if rest.starts_with("W/\"") {
            Some(3)
        } else if rest.starts_with('"') {
            Some(1)
        } else {
            None
        };
        let end = match quoted_from {
            Some(open) => rest[open..]
                .find('"')
                .map_or(rest.len(), |close| open + close + 1),
            None => rest.find(',').unwrap_or(rest.len()),
        };
        let (tag, tail) = rest.split_at(end);
        rest = tail;
        Some(tag.trim())
    })
}

/// Weak comparison of two entity tags (RFC 9110 §8.8.3.2): equal opaque tags, whether
/// either is weak (`W/`).
fn weakly_equal(tag: &str, etag: &str) -> bool {
    !tag.is_empty() && opaque(tag) == opaque(etag.trim())
}

/// An entity tag without its weakness mark.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// The 304 that stands for `response`: its validators and caching headers, no body.
pub fn into_not_modified(response: Response<Body>) -> Response<Body> {
    let (parts, _) = response.into_parts();
    let mut answer = Response::new(full(bytes::Bytes::new()));
    *answer.status_mut() = StatusCode::NOT_MODIFIED;
    let headers = answer.headers_mut();
    for name in KEPT {
        for value in parts.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(headers: &[(HeaderName, &str)]) -> Response<Body> {
        let mut response = Response::new(full(bytes::Bytes::new()));
        for (name, value) in headers {
            response
                .headers_mut()
                .append(name, HeaderValue::from_str(value).unwrap());
        }
        response
    }

    fn asking(headers: &[(HeaderName, &str)]) -> HeaderMap {
        answer(headers).headers().clone()
    }

    fn not_modified(request: &HeaderMap, response: &Response<Body>) -> bool {
        Conditions::of(request)
            .is_some_and(|c| c.not_modified(response.status(), response.headers()))
    }

    #[test]
    fn a_request_without_conditions_has_none() {
        assert!(Conditions::of(&asking(&[(CACHE_CONTROL, "no-cache")])).is_none());
    }

    #[test]
    fn an_entity_tag_that_matches_weakly_or_a_star_is_not_modified() {
        let tagged = answer(&[(ETAG, "\"abc\"")]);
        for condition in [
            "\"abc\"",
            "W/\"abc\"",
            "\"x\", \"abc\"",
            "\"a,b\", \"abc\"",
            "*",
        ] {
            assert!(
                not_modified(&asking(&[(IF_NONE_MATCH, condition)]), &tagged),
                "{condition}"
            );
        }
        assert!(!not_modified(
            &asking(&[(IF_NONE_MATCH, "\"abd\"")]),
            &tagged
        ));
        assert!(!not_modified(
            &asking(&[(IF_NONE_MATCH, "\"ab\"c\"")]),
            &tagged
        ));
        assert!(!not_modified(
            &asking(&[(IF_NONE_MATCH, "\"abc, x\"")]),
            &tagged
        ));
        let two_lines = asking(&[(IF_NONE_MATCH, "\"x\""), (IF_NONE_MATCH, "\"abc\"")]);
        assert!(not_modified(&two_lines, &tagged), "a second line counts");
        let untagged = answer(&[]);
        assert!(!not_modified(
            &asking(&[(IF_NONE_MATCH, "\"abc\"")]),
            &untagged
        ));
        assert!(
            not_modified(&asking(&[(IF_NONE_MATCH, "*")]), &untagged),
            "* matches any copy, tagged or not"
        );
        let mut refused = answer(&[(ETAG, "\"abc\"")]);
        *refused.status_mut() = StatusCode::NOT_FOUND;
        assert!(!not_modified(&asking(&[(IF_NONE_MATCH, "*")]), &refused));
        // If-None-Match decides alone when present.
        let dated = answer(&[
            (ETAG, "\"abc\""),
            (LAST_MODIFIED, "Mon, 07 Dec 2026 08:00:00 GMT"),
        ]);
        let both = asking(&[
            (IF_NONE_MATCH, "\"old\""),
            (IF_MODIFIED_SINCE, "Mon, 07 Dec 2026 09:00:00 GMT"),
        ]);
        assert!(!not_modified(&both, &dated));
    }

    #[test]
    fn a_playlist_is_always_sent_whole() {
        let playlist = answer(&[
            (ETAG, "\"abc\""),
            (http::header::CONTENT_TYPE, "application/vnd.apple.mpegURL"),
        ]);
        assert!(!not_modified(
            &asking(&[(IF_NONE_MATCH, "\"abc\"")]),
            &playlist
        ));
    }

    #[test]
    fn a_copy_not_modified_since_the_date_is_not_modified() {
        let dated = answer(&[(LAST_MODIFIED, "Mon, 07 Dec 2026 08:00:00 GMT")]);
        let since = |date| asking(&[(IF_MODIFIED_SINCE, date)]);
        assert!(not_modified(
            &since("Mon, 07 Dec 2026 08:00:00 GMT"),
            &dated
        ));
        assert!(not_modified(
            &since("Mon, 07 Dec 2026 09:00:00 GMT"),
            &dated
        ));
        assert!(!not_modified(
            &since("Mon, 07 Dec 2026 07:59:59 GMT"),
            &dated
        ));
        assert!(!not_modified(&since("yesterday"), &dated));
        assert!(!not_modified(
            &since("Mon, 07 Dec 2026 09:00:00 GMT"),
            &answer(&[])
        ));
    }

    #[test]
    fn a_304_keeps_the_validators_and_leaves_the_body_and_its_description_out() {
        let full = answer(&[
            (ETAG, "\"abc\""),
            (CACHE_CONTROL, "max-age=60"),
            (http::header::CONTENT_TYPE, "video/mp2t"),
            (http::header::CONTENT_LENGTH, "1000"),
            (AGE, "3"),
            (DATE, "Mon, 07 Dec 2026 08:00:00 GMT"),
            (EXPIRES, "Mon, 07 Dec 2026 08:01:00 GMT"),
            (VARY, "origin"),
            (CONTENT_LOCATION, "/a.ts"),
        ]);
        let short = into_not_modified(full);
        assert_eq!(short.status(), StatusCode::NOT_MODIFIED);
        let names: Vec<&str> = short.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "cache-control",
                "content-location",
                "date",
                "etag",
                "expires",
                "vary",
                "age"
            ]
        );
    }
}
