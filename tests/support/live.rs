//! A live origin that is a real transcoder: ffmpeg encodes a test pattern and a tone in real
//! time (`-re`, lavfi sources, H.264 and AAC at 320x180) into a sliding-window HLS stream
//! (`-hls_time 1 -hls_list_size 6 -hls_flags delete_segments`) in a temporary directory,
//! and a small hyper [`FileServer`] serves that directory over HTTP on a loopback port.
//!
//! The file server counts requests per path, so tests can assert how many requests reached
//! the origin, and it can be stopped mid-test to play an origin that dies. Each
//! [`LiveOrigin`] runs its own ffmpeg, so a test can start two; [`FileServer::start`] can
//! also serve one transcoder's directory from a second port (a secondary origin with the
//! same stream).
//!
//! Servers run on a runtime of their own thread, not the test's: a test that blocks (a
//! synchronous `Command::output`, `Usher::start` reading stdout) never stalls them, and
//! they work the same under `#[test]` and both `#[tokio::test]` flavors.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How long ffmpeg may take to write the first playlist with enough segments.
const FIRST_PLAYLIST_DEADLINE: Duration = Duration::from_secs(20);

/// Segments the first playlist must list before [`LiveOrigin::start`] returns: enough for
/// hls.js to start three target durations behind the live edge.
const SEGMENTS_AT_START: usize = 3;

/// An HTTP server running on its own thread with its own tokio runtime. Stopping it (or
/// dropping it) closes the listener and cuts every open connection.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Serves `handler` on `127.0.0.1:0` until stopped.
    pub fn spawn<F, Fut>(name: &str, handler: F) -> Running
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler = Arc::new(handler);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let accept = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                // Out of descriptors, say: wait instead of spinning.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            let handler = handler.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |req| {
                                    let handler = handler.clone();
                                    async move { Ok::<_, Infallible>(handler(req).await) }
                                });
                                let _ = hyper_util::server::conn::auto::Builder::new(
                                    TokioExecutor::new(),
                                )
                                .serve_connection(TokioIo::new(tcp), service)
                                .await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })
            .unwrap();
        Running {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Closes the listener and every connection; returns once they are gone, so the next
    /// connection attempt is refused.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a [`FileServer`] serves: URL paths under `prefix` map to files under `dir` when
/// `prefix` ends with `/`; otherwise `prefix` is one exact path served from the file `dir`.
#[derive(Debug, Clone)]
pub struct Mount {
    /// A URL path prefix ending in `/`, or one exact URL path.
    pub prefix: String,
    /// The directory (or, for an exact path, the file) it is served from.
    pub dir: PathBuf,
}

impl Mount {
    /// Serves `dir` under `prefix` (which must end with `/`).
    pub fn dir(prefix: &str, dir: &Path) -> Mount {
        assert!(prefix.ends_with('/'), "a directory mount ends with /");
        Mount {
            prefix: prefix.to_owned(),
            dir: dir.to_owned(),
        }
    }

    /// Serves the single file `file` at `path`.
    pub fn file(path: &str, file: &Path) -> Mount {
        Mount {
            prefix: path.to_owned(),
            dir: file.to_owned(),
        }
    }

    fn resolve(&self, path: &str) -> Option<PathBuf> {
        if !self.prefix.ends_with('/') {
            return (path == self.prefix).then(|| self.dir.clone());
        }
        let rest = path.strip_prefix(&self.prefix)?;
        // Plain file names and subdirectories only: nothing outside the mount.
        if rest.is_empty() || rest.split('/').any(|s| s.is_empty() || s.starts_with('.')) {
            return None;
        }
        Some(self.dir.join(rest))
    }
}

/// A real HTTP origin serving files from disk by GET and HEAD, with the content types a
/// player expects, counting the requests it receives per path. No ranges, no caching
/// headers: like a plain nginx `root`.
pub struct FileServer {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    running: Running,
}

impl FileServer {
    /// Starts serving `mounts` on a loopback port.
    pub fn start(mounts: Vec<Mount>) -> FileServer {
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let counted = requests.clone();
        let mounts = Arc::new(mounts);
        let running = Running::spawn("file-server", move |req: Request<Incoming>| {
            let path = req.uri().path().to_owned();
            *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
            let file = mounts.iter().find_map(|m| m.resolve(&path));
            let method = req.method().clone();
            async move { serve_file(&method, file.as_deref()).await }
        });
        FileServer {
            addr: running.addr,
            requests,
            running,
        }
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests for exactly `path` (query ignored) arrived so far.
    pub fn requests(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// How many requests arrived for paths starting with `prefix`.
    pub fn requests_under(&self, prefix: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every path requested so far, with its count.
    pub fn request_counts(&self) -> HashMap<String, usize> {
        self.requests.lock().unwrap().clone()
    }

    /// Stops serving: the listener closes and open connections are cut, as when an origin
    /// dies. Idempotent.
    pub fn stop(&mut self) {
        self.running.stop();
    }
}

/// Answers GET or HEAD with the file at `file`, or 404 / 405.
pub async fn serve_file(method: &Method, file: Option<&Path>) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(file) = file else {
        return status(StatusCode::NOT_FOUND);
    };
    // ffmpeg deletes old segments while players may still ask for them: a plain 404.
    let Ok(body) = tokio::fs::read(file).await else {
        return status(StatusCode::NOT_FOUND);
    };
    let len = body.len();
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    Response::builder()
        .header("content-type", content_type(file))
        .header("content-length", len)
        .body(Full::new(body))
        .unwrap()
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The content type of a file, by its extension.
pub fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "m4s" | "mp4" => "video/mp4",
        "aac" => "audio/aac",
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        _ => "application/octet-stream",
    }
}

/// A live HLS origin: ffmpeg transcoding in real time into a temporary directory, served
/// by a [`FileServer`] under one or more path prefixes. ffmpeg is killed on drop.
pub struct LiveOrigin {
    /// The HTTP server in front of the transcoder's output.
    pub server: FileServer,
    ffmpeg: Child,
    dir: tempfile::TempDir,
}

impl LiveOrigin {
    /// Starts ffmpeg and serves its output under each of `prefixes` (each ending with `/`;
    /// the stream is `<prefix>master.m3u8` → `<prefix>index.m3u8` → `<prefix>seg_N.ts`),
    /// plus `extra` mounts. Returns once the media playlist lists a few segments.
    ///
    /// # Panics
    /// If ffmpeg is missing, exits, or writes no playlist within 20 s.
    pub async fn start(prefixes: &[&str], extra: Vec<Mount>) -> LiveOrigin {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("ffmpeg.log")).unwrap();
        let ffmpeg = Command::new("ffmpeg")
            .current_dir(dir.path())
            .args(FFMPEG_ARGS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("ffmpeg is installed (scripts/test installs it)");
        let mut mounts: Vec<Mount> = prefixes.iter().map(|p| Mount::dir(p, dir.path())).collect();
        mounts.extend(extra);
        let mut origin = LiveOrigin {
            server: FileServer::start(mounts),
            ffmpeg,
            dir,
        };
        origin.wait_for_segments(SEGMENTS_AT_START).await;
        origin
    }

    /// Base URL of the HTTP server.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The directory ffmpeg writes into (serve it again with [`FileServer::start`] for a
    /// second origin with the same stream).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The media playlist as ffmpeg last wrote it.
    pub fn media_playlist(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("index.m3u8")).unwrap_or_default()
    }

    /// Waits until the media playlist lists at least `n` segments (polling the file,
    /// bounded by a deadline), and the master playlist exists.
    pub async fn wait_for_segments(&mut self, n: usize) {
        let started = Instant::now();
        loop {
            let listed = self
                .media_playlist()
                .lines()
                .filter(|l| l.starts_with("seg_"))
                .count();
            if listed >= n && self.dir.path().join("master.m3u8").exists() {
                return;
            }
            if let Some(status) = self.ffmpeg.try_wait().unwrap() {
                panic!("ffmpeg exited ({status}): {}", self.ffmpeg_log());
            }
            assert!(
                started.elapsed() < FIRST_PLAYLIST_DEADLINE,
                "ffmpeg wrote no playlist with {n} segments within {FIRST_PLAYLIST_DEADLINE:?}: {}",
                self.ffmpeg_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// ffmpeg's stderr so far.
    pub fn ffmpeg_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ffmpeg.log")).unwrap_or_default()
    }
}

impl Drop for LiveOrigin {
    fn drop(&mut self) {
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
    }
}

/// The transcoder: a 320x180 test pattern at 15 fps and a 440 Hz tone, read in real time,
/// H.264 baseline (a keyframe every second, so every segment starts with one) and AAC,
/// into a six-segment sliding window of one-second MPEG-TS segments, with a master
/// playlist naming the codecs.
const FFMPEG_ARGS: &[&str] = &[
    "-hide_banner",
    "-loglevel",
    "warning",
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x180:rate=15",
    "-re",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=44100",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-profile:v",
    "baseline",
    "-pix_fmt",
    "yuv420p",
    "-b:v",
    "200k",
    "-g",
    "15",
    "-keyint_min",
    "15",
    "-sc_threshold",
    "0",
    "-c:a",
    "aac",
    "-b:a",
    "48k",
    "-ac",
    "1",
    "-f",
    "hls",
    "-hls_time",
    "1",
    "-hls_list_size",
    "6",
    "-hls_flags",
    "delete_segments",
    "-hls_segment_filename",
    "seg_%d.ts",
    "-master_pl_name",
    "master.m3u8",
    "index.m3u8",
];
