//! The head of an answer from the directory: its content type, `Accept-Ranges`, the single
//! byte range a `Range` header asks for (206, or 416 outside the file) and its length.

use std::path::Path;

use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{Method, Response, StatusCode};

use super::empty;
use crate::proxy::upstream::UpstreamRequest;
use crate::proxy::Body;

/// The head of the answer to `req` for `file` of `len` bytes, and the byte range to send
/// (`start`, `count`); `Err`: the whole answer (416, or a HEAD request's).
pub(super) fn head(
    req: &UpstreamRequest,
    file: &Path,
    len: u64,
) -> Result<(http::response::Builder, u64, u64), Box<Response<Body>>> {
    let range = req
        .headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, len));
    let mut response = Response::builder()
        .header(CONTENT_TYPE, content_type(file))
        .header(ACCEPT_RANGES, "bytes");
    let (start, count) = match range {
        None | Some(RangeSpec::Ignored) => (0, len),
        Some(RangeSpec::Unsatisfiable) => {
            return Err(Box::new(
                Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(CONTENT_RANGE, format!("bytes */{len}"))
                    .body(empty())
                    .expect("valid response"),
            ));
        }
        Some(RangeSpec::Bytes { start, end }) => {
            response = response
                .status(StatusCode::PARTIAL_CONTENT)
                .header(CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (start, end - start + 1)
        }
    };
    let response = response.header(CONTENT_LENGTH, count);
    if req.method == Method::HEAD {
        return Err(Box::new(response.body(empty()).expect("valid response")));
    }
    Ok((response, start, count))
}

/// A `Range` header, judged against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// One satisfiable range, inclusive.
    Bytes { start: u64, end: u64 },
    /// A range that lies outside the file (416).
    Unsatisfiable,
    /// Several ranges or an unsupported unit: served whole, as RFC 9110 allows.
    Ignored,
}

fn parse_range(header: &str, len: u64) -> RangeSpec {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignored;
    };
    if spec.contains(',') {
        return RangeSpec::Ignored;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.min(len.saturating_sub(1)))),
        (Ok(start), Err(_)) if last.is_empty() => Some((start, len.saturating_sub(1))),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => {
            Some((len.saturating_sub(suffix), len.saturating_sub(1)))
        }
        _ => return RangeSpec::Ignored,
    };
    match parsed {
        Some((start, end)) if start < len && len > 0 => RangeSpec::Bytes { start, end },
        _ => RangeSpec::Unsatisfiable,
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "m3u8" | "m3u" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "mp4" | "m4s" | "m4v" | "cmfv" => "video/mp4",
        "m4a" | "cmfa" => "audio/mp4",
        "aac" => "audio/aac",
        "vtt" | "webvtt" => "text/vtt",
        "key" => "application/octet-stream",
        "json" => "application/json",
        "html" => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-99", 1000),
            RangeSpec::Bytes { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=900-", 1000),
            RangeSpec::Bytes {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-100", 1000),
            RangeSpec::Bytes {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=990-2000", 1000),
            RangeSpec::Bytes {
                start: 990,
                end: 999
            }
        );
        assert_eq!(parse_range("bytes=1000-", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeSpec::Ignored);
        assert_eq!(parse_range("items=0-1", 1000), RangeSpec::Ignored);
        assert_eq!(parse_range("bytes=5-1", 1000), RangeSpec::Ignored);
    }
}
