//! A local directory as the origin: the demo's, and a simple file origin for small setups.
//! Serves GET and HEAD with single byte ranges, streaming files in chunks.
//!
//! Small files (up to [`CACHED_FILE_BYTES`]) are kept in memory once read, in a bounded
//! cache keyed by URL path: for [`RECHECK_AFTER`] they are served without touching the
//! disk; after that the path is resolved again (canonical, inside the root, a regular
//! file) and the bytes are read again only if the file's length or modification time
//! changed. A request never gets bytes from outside the root, whatever the cache holds.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

/// Files up to this size are kept in memory once read.
pub const CACHED_FILE_BYTES: u64 = 256 * 1024;
/// The memory the cached files may take.
const FILE_CACHE_BYTES: u64 = 16 << 20;
/// How long a cached file is served without looking at the disk.
pub const RECHECK_AFTER: Duration = Duration::from_millis(100);

/// Files under one root directory.
#[derive(Clone)]
pub struct DirOrigin {
    root: PathBuf,
    files: moka::sync::Cache<String, Arc<CachedFile>>,
    recheck_after: Duration,
}

impl std::fmt::Debug for DirOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirOrigin")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// A small file's bytes as read, with what they were read from.
struct CachedFile {
    /// The canonical file, inside the root.
    file: PathBuf,
    modified: Option<SystemTime>,
    bytes: Bytes,
    /// When the disk was last looked at for it.
    checked: Instant,
}

impl DirOrigin {
    /// Serves files below `root`.
    ///
    /// # Errors
    /// When `root` cannot be resolved.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Self::with_recheck(root, RECHECK_AFTER)
    }

    fn with_recheck(root: &Path, recheck_after: Duration) -> std::io::Result<Self> {
        let files = moka::sync::Cache::builder()
            .max_capacity(FILE_CACHE_BYTES)
            .weigher(|path: &String, file: &Arc<CachedFile>| {
                u32::try_from(file.bytes.len() + path.len() + 128).unwrap_or(u32::MAX)
            })
            .build();
        Ok(Self {
            root: root.canonicalize()?,
            files,
            recheck_after,
        })
    }

    /// Answers `req` from the directory, as an HTTP origin would.
    pub async fn serve(&self, req: &UpstreamRequest) -> Response<Body> {
        let path = req.path_and_query.split('?').next().unwrap_or("");
        let cached = self.files.get(path);
        if let Some(hit) = cached
            .as_ref()
            .filter(|c| c.checked.elapsed() < self.recheck_after)
        {
            return from_memory(req, &hit.file, &hit.bytes);
        }
        let Some((file, meta)) = self.resolve(path).await else {
            self.files.invalidate(path);
            return status(StatusCode::NOT_FOUND);
        };
        let modified = meta.modified().ok();
        if let Some(same) = cached.filter(|c| {
            c.file == file && c.bytes.len() as u64 == meta.len() && c.modified == modified
        }) {
            let bytes = same.bytes.clone();
            self.keep(path, file.clone(), modified, bytes.clone());
            return from_memory(req, &file, &bytes);
        }
        if meta.len() <= CACHED_FILE_BYTES {
            if let Ok(bytes) = tokio::fs::read(&file).await.map(Bytes::from) {
                if bytes.len() as u64 <= CACHED_FILE_BYTES {
                    self.keep(path, file.clone(), modified, bytes.clone());
                }
                return from_memory(req, &file, &bytes);
            }
        }
        self.files.invalidate(path);
        let Ok(mut handle) = tokio::fs::File::open(&file).await else {
            return status(StatusCode::NOT_FOUND);
        };
        let Ok(len) = handle.metadata().await.map(|m| m.len()) else {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let (response, start, count) = match head(req, &file, len) {
            Ok(head) => head,
            Err(done) => return *done,
        };
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

    fn keep(&self, path: &str, file: PathBuf, modified: Option<SystemTime>, bytes: Bytes) {
        let entry = CachedFile {
            file,
            modified,
            bytes,
            checked: Instant::now(),
        };
        self.files.insert(path.to_owned(), Arc::new(entry));
    }

    /// The file for a normalised URL path and its metadata, if it is a regular file inside
    /// the root (links that lead outside are refused).
    async fn resolve(&self, path: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let relative = percent_decode(path.trim_start_matches('/'))?;
        let candidate = tokio::fs::canonicalize(self.root.join(relative))
            .await
            .ok()?;
        let meta = tokio::fs::metadata(&candidate).await.ok()?;
        (candidate.starts_with(&self.root) && meta.is_file()).then_some((candidate, meta))
    }
}

/// The head of the answer to `req` for `file` of `len` bytes, and the byte range to send
/// (`start`, `count`); `Err`: the whole answer (416, or a HEAD request's).
fn head(
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

/// Answers `req` with `bytes`, the content of `file`, honouring a single range.
fn from_memory(req: &UpstreamRequest, file: &Path, bytes: &Bytes) -> Response<Body> {
    let (response, start, count) = match head(req, file, bytes.len() as u64) {
        Ok(head) => head,
        Err(done) => return *done,
    };
    // `parse_range` keeps ranges inside the file.
    let slice = bytes.slice(start as usize..(start + count) as usize);
    response
        .body(
            http_body_util::Full::new(slice)
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid response")
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

    fn get(path: &str, range: Option<&str>) -> UpstreamRequest {
        let mut headers = http::HeaderMap::new();
        if let Some(range) = range {
            headers.insert(RANGE, range.parse().unwrap());
        }
        UpstreamRequest {
            method: Method::GET,
            path_and_query: path.to_owned(),
            headers,
            bounded: false,
        }
    }

    async fn body(origin: &DirOrigin, req: &UpstreamRequest) -> (StatusCode, Bytes) {
        let response = origin.serve(req).await;
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    #[tokio::test]
    async fn item_every_object_kind_a_small_file_is_served_from_memory_without_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.bin"), [7u8; 1024]).unwrap();
        let origin = DirOrigin::with_recheck(dir.path(), Duration::from_secs(3600)).unwrap();
        let first = body(&origin, &get("/k.bin", None)).await;
        assert_eq!(first, (StatusCode::OK, Bytes::from(vec![7u8; 1024])));
        // Gone from the disk: still served, so nothing was read from it.
        std::fs::remove_file(dir.path().join("k.bin")).unwrap();
        assert_eq!(body(&origin, &get("/k.bin", None)).await, first);
        let part = body(&origin, &get("/k.bin", Some("bytes=1020-"))).await;
        assert_eq!(
            part,
            (StatusCode::PARTIAL_CONTENT, Bytes::from(vec![7u8; 4]))
        );
    }

    #[tokio::test]
    async fn item_every_object_kind_a_changed_or_removed_file_is_seen_once_rechecked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.m3u8");
        std::fs::write(&file, "one").unwrap();
        let origin = DirOrigin::with_recheck(dir.path(), Duration::ZERO).unwrap();
        let req = get("/p.m3u8", None);
        assert_eq!(body(&origin, &req).await.1, "one");
        std::fs::write(&file, "three").unwrap();
        assert_eq!(body(&origin, &req).await.1, "three");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(body(&origin, &req).await.0, StatusCode::NOT_FOUND);
        // A link out of the root is refused, cached or not.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "no").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path().join("secret"), &file).unwrap();
            assert_eq!(body(&origin, &req).await.0, StatusCode::NOT_FOUND);
        }
    }
}
