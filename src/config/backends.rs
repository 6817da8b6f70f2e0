//! The shared backends' settings, checked: the store (`[store]`) and where sessions are
//! shared (`[sessions] backend`). URLs may hold passwords, so their `Debug` redacts them.

use std::path::PathBuf;
use std::time::Duration;

/// `[store] backend`, checked.
#[derive(Debug, Clone, Default)]
pub enum StoreBackend {
    /// The embedded SQLite file in `data_dir`: one node.
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by every node.
    Postgres(PostgresConfig),
}

/// `[store.postgres]`, checked.
#[derive(Clone)]
pub struct PostgresConfig {
    /// Connection URL (may hold a password: never printed).
    pub url: String,
    /// Most connections this node opens.
    pub pool_size: u32,
    /// Longest wait for a new connection.
    pub connect_timeout: Duration,
    /// Longest one store operation may take.
    pub timeout: Duration,
    /// Extra PEM CAs for the server's certificate (TLS is used as the URL's `sslmode` says).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `[sessions] backend`, checked.
#[derive(Debug, Clone, Default)]
pub enum SessionsBackend {
    /// Each node keeps its own sessions in memory; limits count one node's sessions.
    #[default]
    Memory,
    /// Sessions shared by every node through Redis.
    Redis(RedisConfig),
}

/// `[sessions.redis]` and `sessions.on_backend_error`, checked.
#[derive(Clone)]
pub struct RedisConfig {
    /// Connection URL (may hold a password: never printed).
    pub url: String,
    /// Longest one Redis call may take.
    pub timeout: Duration,
    /// What a new session gets while Redis cannot be reached.
    pub on_backend_error: OnBackendError,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("on_backend_error", &self.on_backend_error)
            .finish()
    }
}

/// `sessions.on_backend_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendError {
    /// Refuse new sessions with 503 `sessions_unavailable` (limits are never exceeded).
    Deny,
    /// Admit them by this node's own sessions (playback goes on; limits count per node
    /// until Redis answers again and the node writes them there).
    Local,
}
