//! usher in this test's process, with a clock the test moves: for behaviour that depends on
//! time passing (idle sessions, a live session outlasting its ticket), without sleeping.
//! Sessions shared through Redis follow the other nodes as in `usher serve`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;

use usher::admin::AdminHandler;
use usher::config::{self, Overrides};
use usher::proxy::server::{self, Limits, ProxyHandler};
use usher::proxy::State;

use super::admin::HasAdmin;

/// A running in-process usher.
pub struct InProcess {
    /// Public listener, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Admin listener.
    pub admin: String,
    /// Its state (sessions, metrics).
    pub state: Arc<State>,
    clock: Arc<AtomicU64>,
    dir: tempfile::TempDir,
}

impl HasAdmin for InProcess {
    fn admin_url(&self) -> &str {
        &self.admin
    }
}

impl InProcess {
    /// Starts usher with `config` (TOML text), its clock at the real time.
    pub async fn start(config: &str) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let overrides = Overrides {
            data_dir: Some(dir.path().join("data").to_str().unwrap().to_owned()),
            ..Overrides::default()
        };
        let config =
            config::from_str(config, dir.path(), &overrides).expect("test config is valid");
        let clock = Arc::new(AtomicU64::new(usher::clock::unix_now()));
        let read = clock.clone();
        let state = Arc::new(
            State::with_clock(config, Arc::new(move || read.load(Ordering::SeqCst))).unwrap(),
        );
        let limits = Limits::new(16384, 100, 1024, Duration::from_secs(60));
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", public.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let _ = state.public_url.set(url.clone());
        // Sessions shared through Redis, as `main` wires them.
        if let config::SessionsBackend::Redis(redis) = &state.config().sessions.backend {
            let shared = usher::sessions::shared::SharedSessions::connect(
                redis,
                state.config().sessions.idle_timeout.as_secs(),
                usher::sessions::token_lifetime(&state.config()),
                state.metrics.sessions_backend.clone(),
            )
            .await
            .expect("Redis answers");
            let shared = Arc::new(shared);
            state.sessions.share(shared.clone());
            tokio::spawn(shared.follow(state.clone()));
        }
        let forever = std::future::pending::<()>;
        tokio::spawn(server::serve(
            public,
            None,
            ProxyHandler(state.clone()),
            limits.clone(),
            forever(),
            Duration::from_secs(1),
        ));
        tokio::spawn(server::serve(
            admin,
            None,
            AdminHandler(state.clone()),
            limits,
            forever(),
            Duration::from_secs(1),
        ));
        InProcess {
            url,
            admin: admin_url,
            state,
            clock,
            dir,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    /// The clock's time.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Its data directory (the SQLite store's `usher.db`).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Reloads it with `config` (TOML text), as `POST /reload` after the file changed.
    ///
    /// # Panics
    /// When the reload is rejected.
    pub fn reload(&self, config: &str) {
        let path = self.dir.path().join("usher.toml");
        std::fs::write(&path, config).unwrap();
        let overrides = Overrides {
            data_dir: Some(self.data_dir().to_str().unwrap().to_owned()),
            ..Overrides::default()
        };
        let _ = self.state.source.set((path, overrides));
        self.state.reload().expect("the reload is accepted");
    }
}

/// The id of alice's only session, as `node` lists it.
pub async fn only_sid(node: &InProcess) -> String {
    let (_, listed) = super::admin::api(node, "GET", "/api/v1/sessions?account=alice", None).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    items[0]["sid"].as_str().unwrap().to_owned()
}

/// Sells `product` holding the media at `/event/` (made at the first sale) to alice through
/// `node`: her play URL, and the purchase's hash.
pub async fn sell_event(node: &InProcess, product: Value) -> (String, String) {
    let code = product["code"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("/api/v1/products".to_owned(), product),
        (
            "/api/v1/media".to_owned(),
            json!({"code": "event", "prefix": "/event/", "playlist": "index.m3u8"}),
        ),
        (
            format!("/api/v1/products/{code}/media"),
            json!({"media": "event"}),
        ),
    ] {
        let (status, answer) = super::admin::api(node, "POST", &path, Some(body)).await;
        // The media stays from an earlier sale of another product.
        let made_before = path == "/api/v1/media" && status == 409;
        assert!(status < 300 || made_before, "{path}: {answer}");
    }
    let (status, sold) = super::admin::api(
        node,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": code, "media": "event", "account": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    let field = |name: &str| sold[name].as_str().unwrap().to_owned();
    (field("play_url"), field("hash"))
}
