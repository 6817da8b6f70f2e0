//! Runtime configuration: what `usher.toml` says, checked and turned into the types the
//! rest of usher uses. `config/file.rs` is the serde mirror; nothing else sees it.
//!
//! Every problem is reported, not just the first, each naming its dotted key and value:
//! `token.session_ttl = "0s": must be greater than zero`.

mod access;
mod backends;
pub mod duration;
pub mod file;
pub mod foreign;
mod rights;
pub mod upstream;
pub mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

use crate::origin::OriginBase;
use crate::ticket::KeyRing;
pub use access::{Access, ProtectedCacheControl};
pub use backends::{OnBackendError, PostgresConfig, RedisConfig, SessionsBackend, StoreBackend};
pub use rights::{ExternalConfig, RightsConfig, RightsSource};
pub use upstream::{Health, Server, ShieldConfig};

/// Everything `usher serve` runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public listeners and connection limits.
    pub listen: Listen,
    /// The operations listener.
    pub admin: Admin,
    /// Where content comes from by default.
    pub upstream: Upstream,
    /// Named upstream groups (`[upstreams.NAME]`) that routes may choose instead.
    pub upstream_groups: Vec<(String, Upstream)>,
    /// The cache in front of the upstreams.
    pub shield: ShieldConfig,
    /// Credential settings.
    pub token: Token,
    /// Which paths are checked, and CORS.
    pub access: Access,
    /// Where the embedded database lives (and `admin.token` when none is configured).
    pub data_dir: PathBuf,
    /// Which store holds products, purchases and bindings.
    pub store: StoreBackend,
    /// Where rights decisions come from.
    pub rights: RightsConfig,
    /// Playback sessions.
    pub sessions: SessionsConfig,
    /// Per path prefix: the format minted into playlists.
    pub routes: Vec<Route>,
    /// The demo stream, when configured.
    pub demo: Option<Demo>,
    /// `[akamai]`, `[secure_link]`, `[media_cdn]`: for the routes that accept them.
    pub formats: foreign::Formats,
    /// The file as written, for telling which settings a reload changed (empty when the
    /// config did not come from text).
    pub file: std::sync::Arc<toml::Table>,
    /// `[webhooks]`: where events are sent (reloadable).
    pub webhooks: webhooks::WebhooksConfig,
    /// `[playlists]`: how playlist responses are encoded (reloadable).
    pub playlists: PlaylistsConfig,
}

/// `[playlists]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistsConfig {
    /// The content coding offered for playlist responses.
    pub compress: Compress,
    /// Identity bodies shorter than this go out uncompressed.
    pub compress_min_bytes: usize,
    /// The gzip level, 1 (fastest) to 9 (smallest).
    pub compress_level: u32,
    /// Extensions (lower case, no dot) of other objects that are interstitials asset lists.
    pub asset_list_extensions: Vec<String>,
}

impl Default for PlaylistsConfig {
    fn default() -> Self {
        Self {
            compress: Compress::Gzip,
            compress_min_bytes: 1024,
            compress_level: 1,
            asset_list_extensions: vec!["json".to_owned()],
        }
    }
}

/// `[playlists] compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// gzip for clients that accept it.
    Gzip,
    /// Always identity.
    Off,
}

/// A `[[routes]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Route {
    /// The prefix it covers.
    pub prefix: String,
    /// What its playlists carry.
    pub mint: Mint,
    /// How usher's session token travels.
    pub carrier: CarrierKind,
    /// The named upstream group it fetches from; `None`: `[upstream]`.
    pub upstream: Option<String>,
    /// The credential formats accepted on incoming requests.
    pub accept: Vec<foreign::Format>,
}

/// How usher's session token travels on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarrierKind {
    /// A query parameter on every URI.
    Query,
    /// A query parameter on every URI, whose value the playlist defines once as an HLS
    /// variable (`EXT-X-DEFINE`) for the player to substitute.
    Variable,
    /// The first path segment of every URI.
    Path,
    /// A cookie scoped to the content's path.
    Cookie,
}

/// A credential format minted into playlists, with its settings.
#[derive(Debug, Clone)]
pub enum Mint {
    /// usher's own session token.
    Usher,
    /// nginx `secure_link_md5` links, one per URI.
    SecureLink {
        /// The expression and secret.
        expression: crate::ticket::secure_link::Expression,
        /// Link lifetime.
        ttl: Duration,
    },
    /// Akamai EdgeAuth ACL tokens over the content's scope.
    Akamai(Box<AkamaiMint>),
    /// Google Media CDN tokens over the content's scope.
    MediaCdn {
        /// The key that mints.
        signer: crate::ticket::media_cdn::SigningKey,
        /// The rest of `[media_cdn]`.
        settings: std::sync::Arc<foreign::MediaCdn>,
    },
}

/// Akamai minting settings.
#[derive(Debug, Clone)]
pub struct AkamaiMint {
    /// The key: it signs, and verifies.
    pub key: crate::ticket::edgeauth::EdgeKey,
    /// Every key that verifies: `key`, then the transition key if one is set.
    pub verify_keys: Vec<crate::ticket::edgeauth::EdgeKey>,
    /// Salt and escaping.
    pub options: crate::ticket::edgeauth::Options,
    /// Query parameter of the token.
    pub token_name: String,
    /// Token lifetime.
    pub ttl: Duration,
}

impl Config {
    /// What playlists under `path` carry: the longest matching route's format, else
    /// usher's own.
    pub fn mint_for(&self, path: &str) -> &Mint {
        self.route_for(path).map_or(&Mint::Usher, |r| &r.mint)
    }

    /// How the session token travels under `path`: the longest matching route's carrier,
    /// else a query parameter.
    pub fn carrier_for(&self, path: &str) -> CarrierKind {
        self.route_for(path)
            .map_or(CarrierKind::Query, |r| r.carrier)
    }

    /// Which upstream group serves `path`: the longest matching route's, else `None` for
    /// `[upstream]`.
    pub fn upstream_for(&self, path: &str) -> Option<&str> {
        self.route_for(path).and_then(|r| r.upstream.as_deref())
    }

    fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| crate::access::under(path, &r.prefix))
            .max_by_key(|r| r.prefix.len())
    }
}

/// `[sessions]`, checked.
#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// Seconds without a request after which a session is over.
    pub idle_timeout: Duration,
    /// Least time between two activity records of one session.
    pub touch_interval: Duration,
    /// Whether session tokens are bound to the client's network.
    pub bind_ip: bool,
    /// IPv4 network prefix length.
    pub ipv4_prefix: u8,
    /// IPv6 network prefix length.
    pub ipv6_prefix: u8,
    /// Where sessions are shared, if anywhere.
    pub backend: SessionsBackend,
}

impl SessionsConfig {
    /// The network of `ip`, by the configured prefix lengths.
    pub fn network(&self, ip: std::net::IpAddr) -> crate::net::IpPrefix {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        let len = if ip.is_ipv4() {
            self.ipv4_prefix
        } else {
            self.ipv6_prefix
        };
        crate::net::IpPrefix::new(ip, len).expect("prefix lengths are checked")
    }
}

/// `[listen]`, checked.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Plain HTTP listener.
    pub http: Option<SocketAddr>,
    /// HTTPS listener with its certificate files.
    pub https: Option<Https>,
    /// Drain bound after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// Most header fields per request.
    pub max_headers: usize,
    /// Most client connections open at once over the public listeners; past it new ones
    /// are closed at once.
    pub max_connections: usize,
    /// A connection that moves no byte for this long is closed (checked every this long,
    /// so within twice it).
    pub idle_timeout: Duration,
    /// Proxies whose forwarding headers name the client.
    pub trusted_proxies: Vec<crate::net::IpPrefix>,
    /// Threads that accept and serve players' connections, each with a single-threaded
    /// runtime of its own; 0: the shared work-stealing runtime (see
    /// [`crate::proxy::server::serve_on_threads`]).
    pub threads: usize,
}

/// An HTTPS listener.
#[derive(Debug, Clone)]
pub struct Https {
    /// Where it listens.
    pub addr: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The two, read and checked to belong together when the config was loaded.
    pub certified: std::sync::Arc<rustls::sign::CertifiedKey>,
}

/// `[admin]`, checked.
#[derive(Clone)]
pub struct Admin {
    /// Where `/metrics`, `/healthz`, `/readyz` and the admin API are served; `None` turns
    /// it off.
    pub listen: Option<SocketAddr>,
    /// The admin credential, if configured (`USHER_ADMIN_TOKEN` wins over the file).
    pub token: Option<String>,
    /// Base URL for play URLs, if configured.
    pub public_url: Option<String>,
    /// Named credentials besides the main one (which is named `admin`).
    pub credentials: Vec<Credential>,
    /// Wrong credentials per client address per minute before 429; 0 = no limit.
    pub max_failed_auth_per_minute: u32,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: configs are printed in logs and panics.
        f.debug_struct("Admin")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("public_url", &self.public_url)
            .field("credentials", &self.credentials)
            .field(
                "max_failed_auth_per_minute",
                &self.max_failed_auth_per_minute,
            )
            .finish()
    }
}

/// A named admin credential (`[[admin.credentials]]`), its token read from the environment.
#[derive(Clone)]
pub struct Credential {
    /// The name the audit trail records.
    pub name: String,
    /// The token.
    pub token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: configs are printed in logs and panics.
        f.debug_struct("Credential")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `[upstream]` (or an `[upstreams.NAME]` group), checked.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The primary server.
    pub origin: Origin,
    /// Other bases the origin uses for its own objects in absolute URIs.
    pub aliases: Vec<OriginBase>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time to the upstream's response headers.
    pub timeout: Duration,
    /// Time to the end of the upstream's response.
    pub total_timeout: Duration,
    /// Servers tried in order when the ones before them fail or are down.
    pub fallbacks: Vec<Server>,
    /// When servers count as down, and the active check.
    pub health: Health,
    /// Extra trusted CA bundle for an `https` origin.
    pub ca_file: Option<PathBuf>,
    /// Largest playlist buffered for rewriting.
    pub max_playlist_bytes: usize,
    /// Most requests in flight to each server at once, from the request until its body
    /// has ended; a request past it waits up to the server's `timeout` for a slot.
    pub max_requests: u32,
}

impl Upstream {
    /// Every server in the order they are tried: the primary, then the fallbacks.
    pub fn servers(&self) -> Vec<Server> {
        let primary = Server {
            origin: self.origin.clone(),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            total_timeout: self.total_timeout,
        };
        std::iter::once(primary)
            .chain(self.fallbacks.iter().cloned())
            .collect()
    }

    /// The bases under which absolute playlist URIs are this group's own: every HTTP
    /// server's, and the aliases.
    pub fn bases(&self) -> Vec<OriginBase> {
        let mut bases: Vec<OriginBase> = self
            .servers()
            .iter()
            .filter_map(|s| s.origin.base().cloned())
            .collect();
        bases.extend(self.aliases.iter().cloned());
        bases
    }
}

/// Where content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An HTTP(S) server under a base URL.
    Http(OriginBase),
    /// Files in a local directory.
    Dir(PathBuf),
}

impl Origin {
    /// Reads `--origin` or `upstream.origin`: a URL, or a directory relative to `base_dir`.
    ///
    /// # Errors
    /// A message for a bad URL or a path that is not a directory.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, String> {
        if text.contains("://") {
            return OriginBase::parse(text).map(Origin::Http);
        }
        let dir = base_dir.join(text);
        if dir.is_dir() {
            Ok(Origin::Dir(dir))
        } else {
            Err(format!(
                "not an http(s):// URL, and {} is not a directory",
                dir.display()
            ))
        }
    }

    /// The bases under which absolute URIs count as this origin's own.
    pub fn base(&self) -> Option<&OriginBase> {
        match self {
            Origin::Http(base) => Some(base),
            Origin::Dir(_) => None,
        }
    }
}

/// `[token]`, checked.
#[derive(Debug, Clone)]
pub struct Token {
    /// Keys by id, and the signing key.
    pub keys: KeyRing,
    /// Default ticket lifetime.
    pub ticket_ttl: Duration,
    /// Session-token lifetime.
    pub session_ttl: Duration,
    /// Tolerated clock difference.
    pub clock_skew: Duration,
    /// Query parameter carrying a ticket.
    pub ticket_param: String,
    /// Query parameter carrying a session token.
    pub session_param: String,
    /// Cookie carrying a ticket, if cookies are read.
    pub ticket_cookie: Option<String>,
    /// Whether `Authorization: Bearer` is read.
    pub bearer: bool,
    /// Header naming the device.
    pub device_header: HeaderName,
    /// Query parameter naming the device.
    pub device_param: String,
    /// Cookie naming the device, if read.
    pub device_cookie: Option<String>,
    /// Whether usher sets its own device cookie (named `device_cookie`) when a request
    /// that must name a device, to activate a purchase, names none.
    pub set_device_cookie: bool,
    /// Cookie carrying the session token on cookie-carrier routes.
    pub session_cookie: String,
    /// Whether the user agent is folded into the device identity.
    pub device_with_user_agent: bool,
}

/// `[demo]`, checked.
#[derive(Debug, Clone)]
pub struct Demo {
    /// Path of the demo master playlist.
    pub play_path: String,
    /// Subject of the demo ticket.
    pub subject: String,
    /// Scope of the demo ticket.
    pub scope: String,
}

/// Command-line values that replace what the file says.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`: the public HTTP listener.
    pub listen: Option<String>,
    /// `--origin`: the upstream, relative paths taken from the working directory.
    pub origin: Option<String>,
    /// `--admin-listen`: the operations listener.
    pub admin_listen: Option<String>,
    /// `--data-dir`: where the embedded database lives (relative to the working directory).
    pub data_dir: Option<String>,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for usher (syntax, unknown key, wrong type).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line.
        message: String,
    },
    /// Values that parse but are not acceptable; one line per problem.
    #[error("{}", Problems(.0))]
    Invalid(Vec<String>),
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.0.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Reads, parses and checks the config file at `path`, with `overrides` applied.
///
/// # Errors
/// Every problem found, each naming its key.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    from_text(&text, path, base_dir, overrides)
}

/// Parses config text as if read from a file in `base_dir` (for tests and tools).
///
/// # Errors
/// As [`load`].
pub fn from_str(text: &str, base_dir: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    from_text(text, Path::new("<config>"), base_dir, overrides)
}

/// Parses and checks `text` read from `path`: a syntax error alone (it hides what follows
/// it), or every type problem by dotted key together with every problem of the values
/// that did parse.
fn from_text(
    text: &str,
    path: &Path,
    base_dir: &Path,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let parsed = parse::parse(text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })?;
    let checked = check::check(parsed.file, base_dir, overrides);
    if parsed.problems.is_empty() {
        return checked.map(|mut config| {
            config.file = std::sync::Arc::new(parsed.table);
            config
        });
    }
    let mut problems = parsed.problems;
    if let Err(ConfigError::Invalid(more)) = checked {
        // A key taken out for its type may be reported missing again: once is enough.
        problems.extend(
            more.into_iter()
                .filter(|p| !parsed.removed.iter().any(|key| p.starts_with(key.as_str()))),
        );
    }
    Err(ConfigError::Invalid(problems))
}

fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim();
    let Some(span) = err.span() else {
        return message.to_owned();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.lines().count().max(1);
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| format!(" in {}", l.split('#').next().unwrap_or(l).trim()))
        .unwrap_or_default();
    format!("line {line}{table}: {message}")
}

pub mod changes;
mod check;
mod parse;

#[cfg(test)]
mod tests;
