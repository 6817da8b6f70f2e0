//! A local directory as the origin: the demo's, and a simple file origin for small setups.
//! Serves GET and HEAD with single byte ranges, streaming files in chunks.
//!
//! Small files (up to [`CACHED_FILE_BYTES`]) are kept in memory once read, in a bounded
//! cache keyed by URL path: for [`RECHECK_AFTER`] they are served without touching the
//! disk; after that the path is resolved again (canonical, inside the root, a regular
//! file) and the bytes are read again unless the file is the same one, unchanged (device,
//! inode, length, modification and change times: a file renamed over it with its old
//! modification time kept is another file). A request never gets bytes from outside the
//! root, whatever the cache holds.
//!
//! The root is resolved again with each path, so a root that is a symbolic link swapped
//! to a new release (`current -> releases/v2`) is followed, as nginx follows it. A file
//! that is not there answers 404; one the disk cannot give (no permission, no descriptor
//! left, an I/O error) answers 500, which the shield does not keep and a group fails over
//! on.

mod head;

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::CONTENT_LENGTH;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::UpstreamRequest;
use crate::proxy::Body;
use head::head;

/// Files up to this size are kept in memory once read.
pub const CACHED_FILE_BYTES: u64 = 256 * 1024;
/// The memory the cached files may take.
const FILE_CACHE_BYTES: u64 = 16 << 20;
/// How long a cached file is served without looking at the disk.
pub const RECHECK_AFTER: Duration = Duration::from_millis(100);

/// Files under one root directory.
#[derive(Clone)]
pub struct DirOrigin {
    /// The root as configured (it may be a symbolic link).
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
    stamp: Stamp,
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
        root.canonicalize()?;
        Ok(Self {
            root: root.to_owned(),
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
        let (file, meta) = match self.resolve(path).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.files.invalidate(path);
                return status(StatusCode::NOT_FOUND);
            }
            Err(e) => return unreadable(path, &e),
        };
        let stamp = Stamp::of(&meta);
        if let Some(same) = cached.filter(|c| c.file == file && c.stamp == stamp) {
            let bytes = same.bytes.clone();
            self.keep(path, file.clone(), stamp, bytes.clone());
            return from_memory(req, &file, &bytes);
        }
        if meta.len() <= CACHED_FILE_BYTES {
            if let Ok(bytes) = tokio::fs::read(&file).await.map(Bytes::from) {
                if bytes.len() as u64 <= CACHED_FILE_BYTES {
                    self.keep(path, file.clone(), stamp, bytes.clone());
                }
                return from_memory(req, &file, &bytes);
            }
        }
        self.files.invalidate(path);
        let mut handle = match tokio::fs::File::open(&file).await {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return status(StatusCode::NOT_FOUND)
            }
            Err(e) => return unreadable(path, &e),
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
        let chunks = ReaderStream::with_capacity(handle.take(count), 64 * 1024);
        let stream = Exact::new(chunks, count)
            .map_ok(Frame::data)
            .map_err(Into::into);
        response
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .expect("valid response")
    }

    fn keep(&self, path: &str, file: PathBuf, stamp: Stamp, bytes: Bytes) {
        let entry = CachedFile {
            file,
            stamp,
            bytes,
            checked: Instant::now(),
        };
        self.files.insert(path.to_owned(), Arc::new(entry));
    }

    /// The file for a normalised URL path and its metadata, if it is a regular file inside
    /// the root as the root resolves now (links that lead outside are refused).
    ///
    /// # Errors
    /// What the disk answered other than "no such file or directory".
    async fn resolve(&self, path: &str) -> std::io::Result<Option<(PathBuf, std::fs::Metadata)>> {
        // What a request's own path can cause (no such file, a name too long for the
        // file system) is absent, a 404: only the disk's own trouble is the origin's
        // error, which counts against its health.
        let absent = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound
            | std::io::ErrorKind::NotADirectory
            | std::io::ErrorKind::InvalidFilename
            | std::io::ErrorKind::InvalidInput => Ok(None),
            _ => Err(e),
        };
        let Some(relative) = percent_decode(path.trim_start_matches('/')) else {
            return Ok(None);
        };
        let root = match tokio::fs::canonicalize(&self.root).await {
            Ok(root) => root,
            Err(e) => return absent(e),
        };
        let candidate = match tokio::fs::canonicalize(root.join(relative)).await {
            Ok(candidate) => candidate,
            Err(e) => return absent(e),
        };
        let meta = match tokio::fs::metadata(&candidate).await {
            Ok(meta) => meta,
            Err(e) => return absent(e),
        };
        Ok((candidate.starts_with(&root) && meta.is_file()).then_some((candidate, meta)))
    }
}

/// What tells one version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    changed: (i64, i64),
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
        }
    }
}

/// 500 for a file the disk could not give, logged (the path only).
fn unreadable(path: &str, e: &std::io::Error) -> Response<Body> {
    tracing::error!(path, error = %e, "directory origin cannot read the file");
    status(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A file's chunks that must add up to the length announced for them: a file cut short
/// while it is sent (rewritten in place) ends the body with an error, so neither the
/// client nor the shield takes the shorter body for the whole one.
struct Exact<S> {
    chunks: S,
    left: u64,
}

impl<S> Exact<S> {
    fn new(chunks: S, len: u64) -> Self {
        Self { chunks, left: len }
    }
}

impl<S> futures_util::Stream for Exact<S>
where
    S: futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.chunks).poll_next(cx);
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                self.left = self.left.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if self.left > 0 => {
                let left = std::mem::take(&mut self.left);
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended {left} bytes short of its announced length"),
                ))))
            }
            other => other,
        }
    }
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
    use http::header::RANGE;
    use http::Method;

    use super::*;

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

    /// A file cut short while it is streamed (rewritten in place) ends the body with an
    /// error, not early: the shield must not keep the shorter body under the old length.
    #[tokio::test]
    async fn a_file_cut_short_while_it_is_sent_ends_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.ts");
        let len = 4 * CACHED_FILE_BYTES as usize;
        std::fs::write(&file, vec![1u8; len]).unwrap();
        let origin = DirOrigin::new(dir.path()).unwrap();
        let response = origin.serve(&get("/big.ts", None)).await;
        assert_eq!(response.headers()[CONTENT_LENGTH], len.to_string().as_str());
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(1000)
            .unwrap();
        let collected = response.into_body().collect().await;
        assert!(collected.is_err(), "a short body is an error");
    }

    /// A file renamed over another of the same length, with the old modification time
    /// kept (`rsync -a`, `cp -p`), is another file: its bytes are served.
    #[tokio::test]
    async fn a_file_renamed_over_with_the_same_length_and_time_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.key");
        std::fs::write(&file, "aaa").unwrap();
        let origin = DirOrigin::with_recheck(dir.path(), Duration::ZERO).unwrap();
        let req = get("/k.key", None);
        assert_eq!(body(&origin, &req).await.1, "aaa");
        let new = dir.path().join("k.new");
        std::fs::write(&new, "bbb").unwrap();
        let old_time = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(old_time)
            .unwrap();
        std::fs::rename(&new, &file).unwrap();
        assert_eq!(body(&origin, &req).await.1, "bbb");
    }

    /// A root that is a symbolic link swapped to a new release is followed.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_root_link_swapped_to_a_new_release_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        for (release, text) in [("v1", "one"), ("v2", "two")] {
            std::fs::create_dir(dir.path().join(release)).unwrap();
            std::fs::write(dir.path().join(release).join("p.m3u8"), text).unwrap();
        }
        let current = dir.path().join("current");
        std::os::unix::fs::symlink("v1", &current).unwrap();
        let origin = DirOrigin::with_recheck(&current, Duration::ZERO).unwrap();
        let req = get("/p.m3u8", None);
        assert_eq!(body(&origin, &req).await.1, "one");
        let next = dir.path().join("current.next");
        std::os::unix::fs::symlink("v2", &next).unwrap();
        std::fs::rename(&next, &current).unwrap();
        std::fs::remove_dir_all(dir.path().join("v1")).unwrap();
        assert_eq!(body(&origin, &req).await.1, "two");
    }

    /// A path the disk cannot resolve (here a loop of links) is an error of the origin,
    /// 500, not an absent file the shield would keep as a 404.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_the_disk_cannot_give_is_a_500_not_a_404() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b.ts", dir.path().join("a.ts")).unwrap();
        std::os::unix::fs::symlink("a.ts", dir.path().join("b.ts")).unwrap();
        let origin = DirOrigin::new(dir.path()).unwrap();
        let (status, _) = body(&origin, &get("/a.ts", None)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _) = body(&origin, &get("/none.ts", None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = body(&origin, &get("/a.ts/x.ts", None)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "still the loop");
        // A name too long for the file system is the request's doing: absent, not an
        // error that would count against the origin's health.
        let long = format!("/{}.ts", "a".repeat(300));
        let (status, _) = body(&origin, &get(&long, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
