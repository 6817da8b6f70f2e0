//! The state every request's handling shares ([`State`]), how it is built from a checked
//! config, and the store `[store]` names ([`open_store`]).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock, RwLock};

use anyhow::Context;

use super::reload::RetiredKey;
use super::upstream::Upstreams;
use super::Clock;
use crate::config::{Config, RightsSource};
use crate::metrics::Metrics;
use crate::origin::OriginBase;
use crate::rights::external::External;
use crate::rights::postgres::PostgresStore;
use crate::rights::sqlite::SqliteStore;
use crate::rights::store::Store;
use crate::rights::{Rights, Source};
use crate::sessions::Sessions;
use crate::shield::Shield;

/// What one request's handling needs, shared by every connection.
pub struct State {
    /// The checked configuration; swapped whole by a reload (see [`State::config`]).
    pub(super) config: RwLock<Arc<Config>>,
    /// Keys a reload removed from `[token]`, kept in memory only to verify the session
    /// tokens they signed before (see [`State::retired_keys`]).
    pub(super) retired: RwLock<Arc<Vec<RetiredKey>>>,
    /// The longest `token.session_ttl` of every config in force since the start, in
    /// seconds: a key signed session tokens for up to this long.
    pub(super) longest_session_ttl: AtomicU64,
    /// Where the config came from, for reloads: the file and the command-line overrides.
    pub source: OnceLock<(std::path::PathBuf, crate::config::Overrides)>,
    /// The HTTPS listener's certificate, which a reload replaces with the files' contents.
    pub certificate: OnceLock<Arc<crate::tls::Certificate>>,
    /// Held by a reload from reading the file to swapping the config: a SIGHUP and a
    /// `POST /reload` at once apply one after the other, never the older file last.
    pub(super) reloading: std::sync::Mutex<()>,
    /// The upstream groups.
    pub upstreams: Upstreams,
    /// The cache in front of them.
    pub shield: Shield,
    /// Bases whose absolute URIs are routed back through usher, each with its group.
    pub origin_bases: Vec<OriginBase>,
    /// Metrics.
    pub metrics: Metrics,
    /// Whether start-up finished (config, keys, TLS, listeners).
    pub ready: AtomicBool,
    /// The clock used for credential and rights windows.
    pub clock: Clock,
    /// Rights state: products, media, purchases, accounts.
    pub store: Arc<dyn Store>,
    /// The rights check, unless `rights.source = "none"`.
    pub rights: Option<Arc<Rights>>,
    /// Live playback sessions.
    pub sessions: Sessions,
    /// Base URL players reach usher on (set once the public listener is bound).
    pub public_url: OnceLock<String>,
    /// The admin API credential.
    pub admin_token: String,
    /// Every admin credential by name (the main one is `admin`), and the failure limit.
    pub admin_guard: crate::admin::auth::Guard,
    /// Tells the other nodes sharing the store which decisions to drop; the listener is
    /// started by `main` (see [`crate::fanout`]).
    pub fanout: crate::fanout::Fanout,
    /// Signed HTTP callbacks on PPV events; the worker is started by `main`.
    pub webhooks: crate::webhooks::Webhooks,
    pub(super) requests: AtomicU64,
}

impl State {
    /// State for `config`, with the system clock.
    ///
    /// # Errors
    /// When the upstream cannot be set up.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        Self::with_clock(config, Arc::new(crate::clock::unix_now))
    }

    /// State for `config` with a given clock.
    ///
    /// # Errors
    /// When the upstream cannot be set up.
    pub fn with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let upstreams = Upstreams::new(&config, &metrics)?;
        let shield = Shield::new(&config.shield, &metrics);
        let OpenedStore { store, shared } = open_store(&config, &metrics)?;
        let fanout = crate::fanout::Fanout::new(shared, metrics.fanout.clone());
        let source = match &config.rights.source {
            RightsSource::None => None,
            RightsSource::Store => Some(Source::Store),
            RightsSource::External(external) => Some(Source::External(Box::new(External::new(
                (**external).clone(),
            )?))),
        };
        let webhooks = crate::webhooks::Webhooks::new(
            config.webhooks.clone(),
            store.clone(),
            metrics.clone(),
            clock.clone(),
            matches!(config.store, crate::config::StoreBackend::Postgres(_)),
        );
        let rights = source
            .map(|source| Rights::new(store.clone(), source, &config.rights, metrics.clone()))
            .transpose()?
            .map(|rights| rights.with_webhooks(webhooks.clone()));
        if let Some(rights) = &rights {
            // Until the listener hears the other nodes, this node trusts no cached decision.
            rights.set_caching(!fanout.is_shared());
        }
        // Each base knows its group: a URI under it is rerouted only to a path that group
        // serves (see `manifest::UpstreamFor`).
        let mut origin_bases: Vec<OriginBase> = config.upstream.bases();
        for (name, group) in &config.upstream_groups {
            origin_bases.extend(group.bases().into_iter().map(|base| base.in_group(name)));
        }
        let admin_token = match &config.admin.token {
            Some(token) => token.clone(),
            None => crate::admin::token_file::generated(&config.data_dir)?,
        };
        let mut credentials = vec![("admin".to_owned(), admin_token.clone())];
        credentials.extend(
            config
                .admin
                .credentials
                .iter()
                .map(|c| (c.name.clone(), c.token.clone())),
        );
        let admin_guard =
            crate::admin::auth::Guard::new(credentials, config.admin.max_failed_auth_per_minute);
        let public_url = OnceLock::new();
        if let Some(url) = &config.admin.public_url {
            let _ = public_url.set(url.trim_end_matches('/').to_owned());
        }
        let sessions = Sessions::new(
            config.sessions.idle_timeout.as_secs(),
            config.sessions.touch_interval.as_secs(),
            metrics.sessions_active.clone(),
        )
        .with_webhooks(webhooks.clone());
        Ok(Self {
            fanout,
            webhooks,
            upstreams,
            shield,
            origin_bases,
            sessions,
            metrics,
            ready: AtomicBool::new(false),
            clock,
            store,
            rights: rights.map(Arc::new),
            public_url,
            admin_token,
            admin_guard,
            requests: AtomicU64::new(0),
            longest_session_ttl: AtomicU64::new(config.token.session_ttl.as_secs()),
            config: RwLock::new(Arc::new(config)),
            retired: RwLock::new(Arc::new(Vec::new())),
            source: OnceLock::new(),
            certificate: OnceLock::new(),
            reloading: std::sync::Mutex::new(()),
        })
    }
}

/// An opened store.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The same store when it is the shared PostgreSQL one (for the invalidation fan-out).
    pub shared: Option<Arc<PostgresStore>>,
}

/// The store `[store]` names: the embedded SQLite file, or the shared PostgreSQL database.
///
/// # Errors
/// When it cannot be opened or reached, or its schema cannot be brought up to date.
pub fn open_store(config: &Config, metrics: &Metrics) -> anyhow::Result<OpenedStore> {
    Ok(match &config.store {
        crate::config::StoreBackend::Sqlite => OpenedStore {
            store: Arc::new(
                SqliteStore::open(&config.data_dir)
                    .with_context(|| format!("store.data_dir {}", config.data_dir.display()))?,
            ),
            shared: None,
        },
        crate::config::StoreBackend::Postgres(pg) => {
            let store = Arc::new(
                PostgresStore::connect(pg, metrics.store.clone()).context("store.postgres")?,
            );
            OpenedStore {
                store: store.clone(),
                shared: Some(store),
            }
        }
    })
}
