//! A local directory as the origin: the demo's, and a simple file origin for small setups.
//! Serves GET and HEAD with single byte ranges, streaming files in chunks.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::UpstreamRequest;
use crate::proxy::Body;

/// Files under one root directory.
#[derive(Debug, Clone)]
pub struct DirOrigin {
    root: PathBuf,
}

impl DirOrigin {
    /// Serves files below `root`.
    ///
    /// # Errors
    /// When `root` cannot be resolved.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.canonicalize()?,
        })
    }

    /// Answers `req` from the directory, as an HTTP origin would.
    pub async fn serve(&self, req: &UpstreamRequest) -> Response<Body> {
        let path = req.path_and_query.split('?').next().unwrap_or("");
        let Some(file) = self.resolve(path).await else {
            return status(StatusCode::NOT_FOUND);
        };
        let Ok(mut handle) = tokio::fs::File::open(&file).await else {
            return status(StatusCode::NOT_FOUND);
        };
        let Ok(len) = handle.metadata().await.map(|m| m.len()) else {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let range = req
            .headers
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .map(|v| parse_range(v, len));
        let mut response = Response::builder()
            .header(CONTENT_TYPE, content_type(&file))
            .header(ACCEPT_RANGES, "bytes");
        let (start, count) = match range {
            None | Some(RangeSpec::Ignored) => (0, len),
            Some(RangeSpec::Unsatisfiable) => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(CONTENT_RANGE, format!("bytes */{len}"))
                    .body(empty())
                    .expect("valid response");
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
            return response.body(empty()).expect("valid response");
        }
        if start > 0 && handle.seek(SeekFrom::Start(start)).await.is_err() {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let stream = ReaderStream::with_capacity(handle.take(count), 64 * 1024)
            .map_ok(Frame::data)
            .map_err(Into::into);
        response
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .expect("valid response")
    }

    /// The file for a normalised URL path, if it is a regular file inside the root (links
    /// that lead outside are refused).
    async fn resolve(&self, path: &str) -> Option<PathBuf> {
        let relative = percent_decode(path.trim_start_matches('/'))?;
        let candidate = tokio::fs::canonicalize(self.root.join(relative))
            .await
            .ok()?;
        let meta = tokio::fs::metadata(&candidate).await.ok()?;
        (candidate.starts_with(&self.root) && meta.is_file()).then_some(candidate)
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(Into::into).boxed()
}

fn status(code: StatusCode) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(CONTENT_LENGTH, 0)
        .body(empty())
        .expect("valid response")
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

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b.ts").as_deref(), Some("a b.ts"));
        assert_eq!(percent_decode("a%2").as_deref(), None);
    }
}
