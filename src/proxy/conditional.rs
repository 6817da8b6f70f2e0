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

/// Whether `request` asks for `response` (a 200) only if it changed, and it did not:
/// an entity tag of `If-None-Match` matches its `ETag` (weakly, or `*`), or, without
/// `If-None-Match`, its `Last-Modified` is not after `If-Modified-Since`.
pub fn not_modified(request: &HeaderMap, response: &Response<Body>) -> bool {
    if response.status() != StatusCode::OK {
        return false;
    }
    let answer = response.headers();
    if let Some(condition) = request.get(IF_NONE_MATCH) {
        let Some(etag) = answer.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return condition
            .to_str()
            .is_ok_and(|tags| tags.split(',').any(|tag| weakly_equal(tag.trim(), etag)));
    }
    // Most requests carry no condition: they cost the two lookups.
    let Some(since) = request.get(IF_MODIFIED_SINCE) else {
        return false;
    };
    let date = |value: &HeaderValue| httpdate::parse_http_date(value.to_str().ok()?).ok();
    match (date(since), answer.get(LAST_MODIFIED).and_then(date)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Weak comparison of two entity tags (RFC 9110 §8.8.3.2): equal opaque tags, whether
/// either is weak (`W/`); `*` matches any.
fn weakly_equal(tag: &str, etag: &str) -> bool {
    tag == "*" || (!tag.is_empty() && opaque(tag) == opaque(etag.trim()))
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

    fn answer(headers: &[(http::HeaderName, &str)]) -> Response<Body> {
        let mut response = Response::new(full(bytes::Bytes::new()));
        for (name, value) in headers {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).unwrap());
        }
        response
    }

    fn asking(headers: &[(http::HeaderName, &str)]) -> HeaderMap {
        answer(headers).headers().clone()
    }

    #[test]
    fn an_entity_tag_that_matches_weakly_or_a_star_is_not_modified() {
        let tagged = answer(&[(ETAG, "\"abc\"")]);
        for condition in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
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
            &asking(&[(IF_NONE_MATCH, "\"abc\"")]),
            &answer(&[])
        ));
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
