//! A real browser player: hls.js in headless Chromium, driven and watched from a test.
//!
//! [`Player::open`] starts a small HTTP server in the test process that serves the player
//! page (`tests/browser/player.html`) and `hls.min.js` (from `tests/browser/node_modules`,
//! installed by `scripts/test` from the npm registry), then launches Debian's Chromium on
//! that page with the stream URL in its query. The page reports what hls.js and the
//! `<video>` element do — manifest parsed, each fragment loaded (with its path and query),
//! `currentTime`, errors with their type, details, fatality and HTTP status — by POSTing
//! JSON back to the same server. Tests wait on those reports (each wait bounded by a
//! deadline) instead of sleeping, and Chromium is killed when the [`Player`] is dropped.
//!
//! The page's origin is the harness server (`http://127.0.0.1:PORT`), not usher, so every
//! playlist and segment request is a cross-origin request that usher's CORS headers must
//! allow. When the player must be on usher's own origin (the cookie carrier: a cross-origin
//! XHR sends and stores cookies only with credentials, which need
//! `Access-Control-Allow-Credentials` and usher does not send it), serve [`player_mounts`]
//! from the origin behind usher under a public path and use [`Player::open_from`]. Reports
//! still go to the harness: a no-cors POST needs no CORS answer. [`PlayerPage`] starts the
//! harness before the browser, for a test that must put its origin into usher's config.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::watch;

use super::live::{serve_file, Mount, Running};

/// The browser: Debian's `chromium` package (`scripts/test` installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Every flag Chromium runs with, besides `--user-data-dir=<a fresh temporary directory>`
/// and the page URL. DEVELOPERS.md explains each.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
];

/// Where the player page lives in the URL space of whoever serves it.
pub const PAGE_PREFIX: &str = "/player/";

/// The directory of the player page and its npm dependencies.
pub fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The player page and hls.js as mounts under [`PAGE_PREFIX`], for any
/// [`FileServer`](super::live::FileServer) (e.g. the origin behind usher).
///
/// # Panics
/// If hls.js is not installed (`npm ci --prefix tests/browser`, which `scripts/test` runs).
pub fn player_mounts() -> Vec<Mount> {
    let dir = assets_dir();
    let hls = dir.join("node_modules/hls.js/dist/hls.min.js");
    assert!(
        hls.exists(),
        "{} is missing: run scripts/test, or npm ci --prefix tests/browser",
        hls.display()
    );
    vec![
        Mount::file(
            &format!("{PAGE_PREFIX}player.html"),
            &dir.join("player.html"),
        ),
        Mount::file(&format!("{PAGE_PREFIX}hls.min.js"), &hls),
    ]
}

/// One thing the page reported.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// hls.js parsed the first playlist, with this many variant streams.
    ManifestParsed {
        /// Number of levels (variants).
        levels: usize,
    },
    /// A media playlist was loaded (or reloaded, for live).
    LevelLoaded {
        /// Its path and query.
        url: String,
        /// Whether it is a live playlist.
        live: bool,
    },
    /// A media fragment was loaded.
    FragLoaded {
        /// Its path and query: the session token rides in one of them in the query and path
        /// carriers.
        url: String,
        /// Its media sequence number.
        sn: u64,
    },
    /// The `<video>` element's `currentTime` moved.
    Time {
        /// Seconds.
        current_time: f64,
    },
    /// hls.js reported an error.
    Error(PlayerError),
    /// The `<video>` element started playing.
    Playing,
    /// The `<video>` element reached the end (VOD).
    Ended {
        /// Seconds.
        current_time: f64,
    },
    /// `video.play()` was refused (autoplay policy).
    PlayRejected {
        /// The browser's message.
        message: String,
    },
    /// A script error on the page.
    PageError {
        /// The browser's message.
        message: String,
    },
    /// hls.js is missing or Media Source Extensions are not available.
    Unsupported,
    /// Anything else the page may say.
    #[serde(other)]
    Other,
}

/// An hls.js error event.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PlayerError {
    /// `networkError`, `mediaError`, `muxError`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// `manifestLoadError`, `fragLoadError`, `bufferStalledError`, …
    pub details: String,
    /// Whether hls.js gave up.
    pub fatal: bool,
    /// The HTTP status of the failed response, when there was one (0 when the browser
    /// hid it, e.g. a CORS failure).
    pub code: Option<u16>,
    /// Path and query of the failed request, when there was one.
    pub url: Option<String>,
    /// hls.js's explanation, when it gives one.
    pub reason: Option<String>,
}

/// What the player has reported so far, summed up.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Every report, in the order the page sent them.
    pub reports: Vec<Report>,
    /// Path and query of each fragment loaded, in order.
    pub fragments: Vec<String>,
    /// The highest `currentTime` reported, in seconds.
    pub current_time: f64,
    /// Every hls.js error.
    pub errors: Vec<PlayerError>,
    /// Levels in the parsed manifest, once parsed.
    pub levels: Option<usize>,
    /// Whether the video ended.
    pub ended: bool,
}

impl Seen {
    fn of(reports: &[Report]) -> Seen {
        let mut seen = Seen {
            reports: reports.to_vec(),
            ..Seen::default()
        };
        for report in reports {
            match report {
                Report::ManifestParsed { levels } => seen.levels = Some(*levels),
                Report::FragLoaded { url, .. } => seen.fragments.push(url.clone()),
                Report::Time { current_time } => {
                    seen.current_time = seen.current_time.max(*current_time)
                }
                Report::Ended { current_time } => {
                    seen.ended = true;
                    seen.current_time = seen.current_time.max(*current_time);
                }
                Report::Error(e) => seen.errors.push(e.clone()),
                _ => {}
            }
        }
        seen
    }

    /// The first fatal error, if hls.js gave up.
    pub fn fatal(&self) -> Option<&PlayerError> {
        self.errors.iter().find(|e| e.fatal)
    }

    /// Errors of type `networkError` (failed requests), fatal or not.
    pub fn network_errors(&self) -> Vec<&PlayerError> {
        self.errors
            .iter()
            .filter(|e| e.kind == "networkError")
            .collect()
    }

    /// A page that cannot play at all (no hls.js, no MSE, a script error) says why.
    fn broken(&self) -> Option<&Report> {
        self.reports.iter().find(|r| {
            matches!(
                r,
                Report::Unsupported | Report::PageError { .. } | Report::PlayRejected { .. }
            )
        })
    }
}

/// hls.js in a headless Chromium, playing one stream. Killed (with its whole process
/// group) on drop.
pub struct Player {
    chromium: Mutex<Child>,
    profile: tempfile::TempDir,
    reports: Arc<Mutex<Vec<(u64, Report)>>>,
    arrived: watch::Receiver<usize>,
    server: Running,
}

/// The harness server on its own, before Chromium opens its page: its
/// [`origin`](Self::origin) is known first, so it can go into usher's
/// `access.cors_origins`.
pub struct PlayerPage {
    reports: Arc<Mutex<Vec<(u64, Report)>>>,
    arrived: watch::Receiver<usize>,
    server: Running,
}

impl PlayerPage {
    /// Starts the harness server: the page, hls.js, and the report endpoint.
    pub fn serve() -> PlayerPage {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (arrived_tx, arrived) = watch::channel(0usize);
        let mounts = Arc::new(player_mounts());
        let (store, notify) = (reports.clone(), Arc::new(arrived_tx));
        let server = Running::spawn("player-page", move |req: Request<Incoming>| {
            let (store, notify, mounts) = (store.clone(), notify.clone(), mounts.clone());
            async move { answer(req, &store, &notify, &mounts).await }
        });
        PlayerPage {
            reports,
            arrived,
            server,
        }
    }

    /// The page's origin, `http://127.0.0.1:PORT`, as the browser sends it in `Origin`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Opens `stream_url` in this page, served by the harness itself.
    pub fn open(self, stream_url: &str) -> Player {
        let base = self.origin();
        self.launch(&base, stream_url, "")
    }

    /// Opens `stream_url` in the page served at `{page_base}/player/player.html` instead;
    /// reports still come here.
    pub fn open_from(self, page_base: &str, stream_url: &str) -> Player {
        self.launch(page_base, stream_url, "")
    }

    /// Opens `stream_url` in this page, with hls.js sending and accepting cookies on its
    /// cross-origin requests (`withCredentials`), as a cross-origin player of the cookie
    /// carrier must.
    pub fn open_with_credentials(self, stream_url: &str) -> Player {
        let base = self.origin();
        self.launch(&base, stream_url, "&credentials=include")
    }

    fn launch(self, page_base: &str, stream_url: &str, page_options: &str) -> Player {
        let page = format!(
            "{page_base}{PAGE_PREFIX}player.html?src={}&report={}{page_options}",
            encode(stream_url),
            encode(&format!("{}/report", self.origin())),
        );
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let chromium = Command::new(CHROMIUM)
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(&page)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group, so drop kills the renderers and helpers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMIUM} starts (scripts/test installs it): {e}"));
        Player {
            chromium: Mutex::new(chromium),
            profile,
            reports: self.reports,
            arrived: self.arrived,
            server: self.server,
        }
    }
}

impl Player {
    /// Opens `stream_url` in a player page served by the harness itself (an origin other
    /// than usher's, so usher's CORS answers are part of what is tested).
    pub fn open(stream_url: &str) -> Player {
        PlayerPage::serve().open(stream_url)
    }

    /// Opens `stream_url` in the player page served at `{page_base}/player/player.html`
    /// (e.g. through usher, from [`player_mounts`] on its origin under a public path).
    pub fn open_from(page_base: &str, stream_url: &str) -> Player {
        PlayerPage::serve().open_from(page_base, stream_url)
    }

    /// What the player reported so far, in the order the page sent it.
    pub fn seen(&self) -> Seen {
        let mut reports = self.reports.lock().unwrap().clone();
        reports.sort_by_key(|(seq, _)| *seq);
        let reports: Vec<Report> = reports.into_iter().map(|(_, r)| r).collect();
        Seen::of(&reports)
    }

    /// Waits until `done` holds for what the player reported, and returns that.
    ///
    /// # Panics
    /// After `within`, if Chromium exits, if the page cannot play at all, or if hls.js
    /// reports a fatal error while `done` does not hold; the message shows every report
    /// and the end of Chromium's log.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Seen) -> bool,
    ) -> Seen {
        self.wait(what, within, |seen| {
            if done(seen) {
                return Some(seen.clone());
            }
            if let Some(fatal) = seen.fatal() {
                self.fail(&format!("{what}: hls.js gave up: {fatal:?}"), seen);
            }
            None
        })
        .await
    }

    /// Waits for hls.js to give up, and returns the fatal error.
    ///
    /// # Panics
    /// If it keeps playing or stays silent for `within`, if Chromium exits, or if the page
    /// cannot play at all.
    pub async fn wait_for_fatal(&self, within: Duration) -> PlayerError {
        self.wait("a fatal error", within, |seen| seen.fatal().cloned())
            .await
    }

    /// Calls `check` on what the player reported, at first and after each new report,
    /// until it answers something. Fails on the deadline, when Chromium exits and when the
    /// page cannot play.
    async fn wait<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&Seen) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let mut arrived = self.arrived.clone();
        loop {
            arrived.borrow_and_update();
            let seen = self.seen();
            if let Some(answer) = check(&seen) {
                return answer;
            }
            if let Some(broken) = seen.broken() {
                self.fail(&format!("{what}: the page cannot play: {broken:?}"), &seen);
            }
            if let Some(status) = self.chromium.lock().unwrap().try_wait().unwrap() {
                self.fail(&format!("{what}: chromium exited ({status})"), &seen);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.fail(&format!("{what}: not within {within:?}"), &seen);
            }
            // Wake on the next report, and at least every second to notice Chromium dying.
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), arrived.changed()).await;
        }
    }

    /// Waits until the player loaded `more` fragments beyond `after.fragments` and its
    /// `currentTime` moved `seconds` past `after.current_time`.
    pub async fn wait_for_progress(
        &self,
        what: &str,
        after: &Seen,
        more: usize,
        seconds: f64,
        within: Duration,
    ) -> Seen {
        let (fragments, time) = (after.fragments.len(), after.current_time);
        self.wait_until(what, within, |seen| {
            seen.fragments.len() >= fragments + more && seen.current_time >= time + seconds
        })
        .await
    }

    /// The end of Chromium's stderr, for failure messages.
    pub fn chromium_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn fail(&self, why: &str, seen: &Seen) -> ! {
        panic!(
            "{why}\nreports: {:#?}\nchromium log (end):\n{}",
            seen.reports,
            self.chromium_log()
        );
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let child = self.chromium.get_mut().unwrap();
        // The whole group: the browser process, its zygote, renderers and utilities.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
        self.server.stop();
    }
}

/// The harness server: the page, hls.js, and the reports the page POSTs.
async fn answer(
    req: Request<Incoming>,
    store: &Mutex<Vec<(u64, Report)>>,
    notify: &watch::Sender<usize>,
    mounts: &[Mount],
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::POST && path == "/report" {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let report = body.ok().and_then(|b| {
            let json: serde_json::Value = serde_json::from_slice(&b).ok()?;
            let seq = json["seq"].as_u64()?;
            Some((seq, Report::deserialize(json).ok()?))
        });
        let status = match report {
            Some(report) => {
                let count = {
                    let mut reports = store.lock().unwrap();
                    reports.push(report);
                    reports.len()
                };
                notify.send_replace(count);
                StatusCode::NO_CONTENT
            }
            None => StatusCode::BAD_REQUEST,
        };
        return Response::builder()
            .status(status)
            .header("access-control-allow-origin", "*")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let file = mounts
        .iter()
        .find(|m| m.prefix == path)
        .map(|m| m.dir.clone());
    serve_file(req.method(), file.as_deref()).await
}

/// Percent-encodes everything but unreserved characters, for a URL inside a query.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
