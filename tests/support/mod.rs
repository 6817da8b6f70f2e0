//! Real parts for integration tests: an origin HTTP server, the usher binary on ephemeral
//! loopback ports, an HTTP client, and ticket minting with the test key.

#![allow(dead_code)]

pub mod admin;
pub mod browser;
pub mod cli;
pub mod cluster;
pub mod inprocess;
pub mod live;
pub mod postgres;
pub mod redis;
pub mod relay;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use usher::clock::unix_now;
use usher::ticket::{self, Claims, Key, KeyRing, Kind};

/// The key every test config signs with.
pub const KEY_ID: &str = "test-key";
/// Its secret.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The ring usher runs with in tests.
pub fn ring() -> KeyRing {
    KeyRing::new(vec![Key::new(KEY_ID, SECRET.as_bytes()).unwrap()], KEY_ID).unwrap()
}

/// Claims for a ticket valid for an hour over `scope`.
pub fn claims(scope: &str) -> Claims {
    let now = unix_now();
    Claims {
        sub: "viewer-1".into(),
        scope: scope.into(),
        nbf: now - 10,
        exp: now + 3600,
        dev: None,
        ip: None,
        sid: None,
        cap: 0,
        allow: Vec::new(),
        cls: None,
    }
}

/// A ticket for `scope`.
pub fn mint(scope: &str) -> String {
    ticket::sign(&ring(), Kind::Ticket, &claims(scope))
}

/// A ticket with edited claims.
pub fn mint_with(scope: &str, edit: impl FnOnce(&mut Claims)) -> String {
    let mut c = claims(scope);
    edit(&mut c);
    ticket::sign(&ring(), Kind::Ticket, &c)
}

/// One object the test origin serves.
#[derive(Clone)]
pub struct Object {
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Answer with this status instead of 200 (the body still goes out).
    pub status: Option<u16>,
    /// Headers added to a whole answer (`Cache-Control`, `Age`, `Expires`...).
    pub headers: Vec<(&'static str, String)>,
}

impl Object {
    /// This object answered with the header `name: value` too.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A request the origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query as received.
    pub target: String,
    /// Headers as received.
    pub headers: HeaderMap,
}

/// A real HTTP origin on a loopback port, serving fixed objects with single byte ranges,
/// and recording every request it gets.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    objects: Arc<Mutex<HashMap<String, Object>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<Notify>,
}

impl Origin {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds or replaces an object.
    pub fn insert(&self, path: &str, object: Object) {
        self.objects.lock().unwrap().insert(path.to_owned(), object);
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (bounded at 10 s).
    pub async fn wait_for_requests(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.arrived.notified();
                if self.seen.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("origin requests arrive");
    }
}

/// Starts an origin serving `objects` by path.
pub async fn spawn_origin(objects: HashMap<String, Object>) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let objects = Arc::new(Mutex::new(objects));
    let shared = objects.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(Notify::new());
    let (seen2, arrived2) = (seen.clone(), arrived.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (objects, seen, arrived) = (objects.clone(), seen2.clone(), arrived2.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (objects, seen, arrived) = (objects.clone(), seen.clone(), arrived.clone());
                    async move {
                        let target = req
                            .uri()
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned();
                        seen.lock().unwrap().push(Seen {
                            target,
                            headers: req.headers().clone(),
                        });
                        arrived.notify_waiters();
                        let object = objects.lock().unwrap().get(req.uri().path()).cloned();
                        Ok::<_, std::convert::Infallible>(answer(object, &req).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Origin {
        addr,
        objects: shared,
        seen,
        arrived,
    }
}

async fn answer(object: Option<Object>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(object) = object else {
        return Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not here")))
            .unwrap();
    };
    if let Some(delay) = object.delay {
        tokio::time::sleep(delay).await;
    }
    let len = object.body.len();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    match range {
        Some((start, end)) if start <= end && end < len => Response::builder()
            .status(206)
            .header("content-type", object.content_type)
            .header("content-range", format!("bytes {start}-{end}/{len}"))
            .body(Full::new(object.body.slice(start..=end)))
            .unwrap(),
        _ => {
            let mut answer = Response::builder()
                .status(object.status.unwrap_or(200))
                .header("content-type", object.content_type)
                .header("etag", "\"v1\"");
            for (name, value) in &object.headers {
                answer = answer.header(*name, value);
            }
            answer.body(Full::new(object.body.clone())).unwrap()
        }
    }
}

/// A JSON object.
pub fn json_object(text: &str) -> Object {
    Object {
        content_type: "application/json",
        body: Bytes::from(text.to_owned()),
        delay: None,
        status: None,
        headers: Vec::new(),
    }
}

/// The VOD media playlist at `/event/index.m3u8`: two 2 s segments.
pub const EVENT_MEDIA: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n#EXT-X-ENDLIST\n";

/// An origin serving [`EVENT_MEDIA`] and its two segments (300 bytes each).
pub async fn event_origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/event/index.m3u8".to_owned(), playlist(EVENT_MEDIA));
    objects.insert("/event/s1.ts".to_owned(), segment(300));
    objects.insert("/event/s2.ts".to_owned(), segment(300));
    spawn_origin(objects).await
}

/// A playlist object.
pub fn playlist(text: &str) -> Object {
    Object {
        content_type: "application/vnd.apple.mpegurl",
        body: Bytes::from(text.to_owned()),
        delay: None,
        status: None,
        headers: Vec::new(),
    }
}

/// A segment object of `len` bytes with a recognisable pattern.
pub fn segment(len: usize) -> Object {
    Object {
        content_type: "video/mp2t",
        body: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
        delay: None,
        status: None,
        headers: Vec::new(),
    }
}

/// A running usher process.
pub struct Usher {
    child: Child,
    /// The public listener, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin listener.
    pub admin: Option<String>,
    /// Every further stdout line printed at start (e.g. `play: …`).
    pub lines: Vec<String>,
    _stdout: BufReader<std::process::ChildStdout>,
    _dir: tempfile::TempDir,
}

/// The usher binary cargo built for these tests.
pub fn usher_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_usher"))
}

/// A config body for tests without rights checks (a valid ticket is enough): listeners on
/// port 0, the test key, `extra` appended.
pub fn test_config(origin: &str, extra: &str) -> String {
    config_with(origin, "source = \"none\"", extra)
}

/// The admin credential of test configs.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A config body with rights from the embedded store. Decisions are cached for ten
/// minutes, so a test that sees a change take effect proves the invalidation, not an
/// expiry.
pub fn rights_config(origin: &str, extra: &str) -> String {
    config_with(
        origin,
        "source = \"store\"\npositive_ttl = \"10m\"\nnegative_ttl = \"10m\"",
        extra,
    )
}

/// A config body with `rights` as the body of the `[rights]` table (it may end with a
/// `[rights.external]` table).
pub fn config_with(origin: &str, rights: &str, extra: &str) -> String {
    format!(
        r#"
[listen]
http = "127.0.0.1:0"
drain_timeout = "5s"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"
[rights]
{rights}
[upstream]
origin = "{origin}"
timeout = "2s"
connect_timeout = "1s"
[token]
signing_key = "{KEY_ID}"
clock_skew = "0s"
[[token.keys]]
id = "{KEY_ID}"
secret = "{SECRET}"
{extra}
"#
    )
}

impl Usher {
    /// Starts `usher serve` with `config` (TOML text) and extra args; waits for its
    /// listening lines.
    pub fn start(config: &str, args: &[&str]) -> Usher {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usher.toml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        Self::start_file(&path, args, dir)
    }

    /// Starts `usher serve` with `config`, extra args and environment variables.
    pub fn start_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Usher {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usher.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_file_env(&path, args, env, dir)
    }

    /// Starts `usher serve --config path` with extra args.
    pub fn start_file(path: &Path, args: &[&str], dir: tempfile::TempDir) -> Usher {
        Self::launch(path, args, &[], dir, None, None)
    }

    /// Starts `usher serve --config path` with extra args and environment variables.
    pub fn start_file_env(
        path: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
    ) -> Usher {
        Self::launch(path, args, env, dir, None, None)
    }

    /// Starts like [`Usher::start`], logging at `info` into the file `log` (appended, so
    /// a restart adds to it) instead of the test's stderr.
    pub fn start_logged(config: &str, args: &[&str], log: &Path) -> Usher {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usher.toml");
        std::fs::write(&path, config).unwrap();
        Self::launch(&path, args, &[], dir, Some(log), None)
    }

    /// Starts like [`Usher::start_logged`], with the soft limit on open files lowered to
    /// `soft` (the hard limit as the test runner's), as a service manager may start it.
    pub fn start_with_open_files(config: &str, log: &Path, soft: u64) -> Usher {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usher.toml");
        std::fs::write(&path, config).unwrap();
        Self::launch(&path, &[], &[], dir, Some(log), Some(soft))
    }

    fn launch(
        path: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        log: Option<&Path>,
        soft_open_files: Option<u64>,
    ) -> Usher {
        let (level, stderr) = match log {
            Some(log) => (
                "info",
                Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .unwrap(),
                ),
            ),
            None => ("warn", Stdio::inherit()),
        };
        let mut command = Command::new(usher_bin());
        if let Some(soft) = soft_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure only calls getrlimit and setrlimit,
            // which are async-signal-safe, on values on its own stack.
            unsafe {
                command.pre_exec(move || {
                    let (_, hard) =
                        usher::open_files::limits().ok_or_else(std::io::Error::last_os_error)?;
                    let limit = libc::rlimit {
                        rlim_cur: soft.min(hard),
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--config")
            .arg(path)
            .args(args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("usher starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line is the listener, got {first:?}"))
            .to_owned();
        // The start-up lines come in a fixed order: other listeners, `admin on …`, then
        // `play: …` when the config has a demo. Read exactly those.
        let expect_play = std::fs::read_to_string(path).unwrap().contains("[demo]");
        let mut admin = None;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("usher exited during start-up; lines so far: {lines:?}");
            }
            let line = line.trim().to_owned();
            if let Some(a) = line.strip_prefix("admin on ") {
                admin = Some(a.to_owned());
            }
            let done = if expect_play {
                line.starts_with("play: ")
            } else {
                admin.is_some()
            };
            lines.push(line);
            if done {
                break;
            }
        }
        Usher {
            child,
            url,
            admin,
            lines,
            _stdout: stdout,
            _dir: dir,
        }
    }

    /// The limits on open files the running process has, soft and hard, from
    /// `/proc/PID/limits`.
    pub fn open_files_limits(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let numbers: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    }

    /// Where the running process's open descriptors point (`/proc/PID/fd`): paths,
    /// `socket:[…]`, `/memfd:usher-body (deleted)`.
    pub fn open_file_targets(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .map(|target| target.display().to_string())
            .collect()
    }

    /// The config file it was started with (rewrite it, then reload).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("usher.toml")
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the process with SIGKILL and waits for it: a crash, nothing flushed.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("usher did not exit within 10 s");
    }
}

impl Drop for Usher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series on the admin `/metrics`, its name and labels written exactly
/// as exposed (`usher_config_reloads_total{outcome="ok"}`); 0 when it is not there.
pub async fn metric(usher: &Usher, series: &str) -> f64 {
    metric_at(usher.admin.as_ref().unwrap(), series).await
}

/// [`metric`] on the admin listener at `admin` (an in-process usher's, for one).
pub async fn metric_at(admin: &str, series: &str) -> f64 {
    let text = get(&format!("{admin}/metrics"), &[]).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// `usher_config_reloads_total{outcome}` on the admin `/metrics`.
pub async fn config_reloads(usher: &Usher, outcome: &str) -> u64 {
    let series = format!("usher_config_reloads_total{{outcome=\"{outcome}\"}}");
    metric(usher, &series).await as u64
}

/// An origin that writes `answers[n]` as it is, bytes no HTTP library would send, to the
/// n-th connection, then closes it; its URL and the heads of the requests it read (each
/// as text, request line first).
pub async fn raw_origin(answers: Vec<Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let heads = served.clone();
    tokio::spawn(async move {
        for answer in answers {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if tcp.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            heads
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            tcp.write_all(&answer).await.unwrap();
            let _ = tcp.shutdown().await;
        }
    });
    (url, served)
}

/// An origin that writes `head` (an answer's head, and any bytes after it) to every
/// connection and then sends nothing more, holding the connection open for as long as the
/// test runs: a body that never comes. Its URL and the number of requests it read.
pub async fn stalled_origin(head: &str) -> (String, Arc<Mutex<usize>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked: Arc<Mutex<usize>> = Arc::default();
    let (counted, head) = (asked.clone(), head.as_bytes().to_vec());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            *counted.lock().unwrap() += 1;
            let _ = tcp.write_all(&head).await;
            held.push(tcp);
        }
    });
    (url, asked)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// HTTP version.
    pub version: http::Version,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The token a tokenized playlist gives `uri`: what follows `{uri}?token=` on the line
    /// that starts with it.
    pub fn token_for(&self, uri: &str) -> Option<String> {
        let prefix = format!("{uri}?token=");
        self.text()
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
    }

    /// The `error` field of a JSON error body.
    pub fn reason(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        json["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// GET `url` with `headers`, over a fresh HTTP/1.1 connection.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", url, headers).await
}

/// Any method.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(builder.body(Empty::new()).unwrap()),
    )
    .await
    .expect("answer within 10 s")
    .expect("request goes through");
    read(response).await
}

/// Reads a response whole.
pub async fn read<B>(response: Response<B>) -> Reply
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    }
}

/// The demo directory.
pub fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo")
}

/// Every URI in a playlist: URI lines and `URI="…"` attributes.
pub fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            out.push(line.to_owned());
        } else if let Some(at) = line.find("URI=\"") {
            let rest = &line[at + 5..];
            out.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    out
}

/// The URL of the first segment (`s1.ts`, token and all) in `playlist`, the answer to
/// `url`; empty when it names none.
pub fn first_segment(url: &str, playlist: &Reply) -> String {
    playlist
        .text()
        .lines()
        .find(|l| l.starts_with("s1.ts"))
        .map(|l| resolve(url, l))
        .unwrap_or_default()
}

/// Resolves a playlist URI against the URL of the playlist it came in.
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return uri.to_owned();
    }
    let authority_end = base[8..].find('/').map_or(base.len(), |i| i + 8);
    if uri.starts_with('/') {
        return format!("{}{}", &base[..authority_end], uri);
    }
    let path = base.split('?').next().unwrap();
    let dir = &path[..path.rfind('/').unwrap() + 1];
    format!("{dir}{uri}")
}
