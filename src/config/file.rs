//! The serde mirror of `usher.toml`.
//!
//! Every struct denies unknown fields, so a typo is an error that names the key rather than
//! a setting silently ignored. Values stay as written (strings for durations and addresses);
//! `config.rs` turns them into runtime types and reports each bad value by its dotted key.
//! `config/usher.toml` is the commented reference for every key here.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Public listeners.
    #[serde(default)]
    pub listen: ListenFile,
    /// The loopback operations listener (metrics, health).
    #[serde(default)]
    pub admin: AdminFile,
    /// Where content comes from.
    #[serde(default)]
    pub upstream: UpstreamFile,
    /// Named upstream groups, chosen per route with `routes[].upstream`.
    #[serde(default)]
    pub upstreams: std::collections::BTreeMap<String, UpstreamFile>,
    /// The cache in front of the upstreams.
    #[serde(default)]
    pub shield: ShieldFile,
    /// Ticket and session-token settings.
    #[serde(default)]
    pub token: TokenFile,
    /// Which paths need credentials, and CORS.
    #[serde(default)]
    pub access: AccessFile,
    /// Where the embedded database lives.
    #[serde(default)]
    pub store: StoreFile,
    /// Where rights decisions come from, and their cache.
    #[serde(default)]
    pub rights: RightsFile,
    /// Playback sessions: idle timeout, bookkeeping, address binding.
    #[serde(default)]
    pub sessions: SessionsFile,
    /// Per path prefix: which credential format is minted into playlists.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// nginx `secure_link` settings, for routes that mint it.
    pub secure_link: Option<SecureLinkFile>,
    /// Akamai EdgeAuth settings, for routes that mint or accept it.
    pub akamai: Option<AkamaiFile>,
    /// Google Media CDN settings, for routes that mint or accept it.
    pub media_cdn: Option<MediaCdnFile>,
    /// The demo stream whose playable URL `serve` prints.
    pub demo: Option<DemoFile>,
    /// HTTP callbacks on purchases, revokes, first plays, refused activations and replaced
    /// sessions.
    pub webhooks: Option<WebhooksFile>,
    /// `[playlists]`
    #[serde(default)]
    pub playlists: PlaylistsFile,
}

/// `[playlists]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaylistsFile {
    /// `"gzip"` (default) or `"off"`.
    pub compress: Option<String>,
    /// Smallest identity body that is compressed.
    pub compress_min_bytes: Option<u64>,
    /// gzip level 1..=9.
    pub compress_level: Option<u32>,
    /// Extensions (no dot) of protected objects rewritten as asset lists.
    pub asset_list_extensions: Option<Vec<String>>,
}

/// `[webhooks]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    /// Most deliveries waiting in the store; when full, the oldest is dropped.
    pub queue_limit: Option<u64>,
    /// Time allowed for one delivery attempt.
    pub timeout: Option<String>,
    /// Wait before the first retry; doubled after each failure.
    pub retry_initial: Option<String>,
    /// Longest wait between two attempts.
    pub retry_max: Option<String>,
    /// Attempts after which a delivery is given up.
    pub max_attempts: Option<u32>,
    /// Most deliveries in flight to one endpoint at once, 1 to 32.
    pub max_in_flight_per_endpoint: Option<u32>,
    /// Hosts endpoints may name besides loopback (`hooks.example.com`).
    pub allowed_hosts: Option<Vec<String>>,
    /// The receivers.
    #[serde(default)]
    pub endpoints: Vec<WebhookEndpointFile>,
}

/// One `[[webhooks.endpoints]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointFile {
    /// `http://` or `https://` URL; its host is loopback or in `webhooks.allowed_hosts`.
    pub url: Option<String>,
    /// HMAC-SHA256 key of the signature, at least 16 bytes. Prefer `secret_env`.
    pub secret: Option<String>,
    /// Environment variable holding the secret instead.
    pub secret_env: Option<String>,
    /// Events sent to it: `purchase`, `revoke`, `first_play`, `activation_refused`,
    /// `session_replaced`; unset: all of them.
    pub events: Option<Vec<String>>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Path prefix the route covers (the longest matching prefix wins).
    pub prefix: Option<String>,
    /// Format minted into its playlists: `usher` (default), `secure_link` or `akamai`.
    pub mint: Option<String>,
    /// How usher's session token travels: `query` (default), `path` or `cookie`.
    pub carrier: Option<String>,
    /// The `[upstreams.NAME]` group it fetches from (default: `[upstream]`).
    pub upstream: Option<String>,
    /// Credential formats accepted on incoming requests: any of `usher` (default),
    /// `akamai`, `secure_link`, `media_cdn`.
    pub accept: Option<Vec<String>>,
}

/// `[secure_link]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureLinkFile {
    /// The `secure_link_md5` expression, with `$secure_link_expires`, `$uri`,
    /// `$remote_addr` and `$secret`.
    pub expression: Option<String>,
    /// The secret `$secret` stands for.
    pub secret: Option<String>,
    /// Environment variable holding the secret instead.
    pub secret_env: Option<String>,
    /// Lifetime of minted links.
    pub ttl: Option<String>,
}

/// `[akamai]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AkamaiFile {
    /// The key, hex (as Akamai's property manager shows it).
    pub key: Option<String>,
    /// Environment variable holding the key instead.
    pub key_env: Option<String>,
    /// A second key that also verifies (Akamai's transition key, during a rotation), hex.
    pub transition_key: Option<String>,
    /// Environment variable holding the transition key instead.
    pub transition_key_env: Option<String>,
    /// `sha256` (default), `sha1` or `md5`.
    pub algorithm: Option<String>,
    /// Query parameter of the token (`__token__`).
    pub token_name: Option<String>,
    /// Salt, if the property uses one.
    pub salt: Option<String>,
    /// Escape early, as the property is configured.
    pub escape_early: Option<bool>,
    /// Lifetime of minted tokens.
    pub ttl: Option<String>,
}

/// `[store]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `"sqlite"` (the embedded database, the default) or `"postgres"` (shared by nodes).
    pub backend: Option<String>,
    /// Directory of the embedded database (relative to this file); `--data-dir` overrides.
    pub data_dir: Option<String>,
    /// `[store.postgres]`, for `backend = "postgres"`.
    pub postgres: Option<PostgresFile>,
}

/// `[store.postgres]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresFile {
    /// Connection URL, `postgres://user:password@host:port/db`.
    pub url: Option<String>,
    /// Environment variable holding the URL instead (keeps the password out of the file).
    pub url_env: Option<String>,
    /// Most connections this node opens.
    pub pool_size: Option<u32>,
    /// Longest wait for a new connection.
    pub connect_timeout: Option<String>,
    /// Longest one store operation may take, waiting for a connection included.
    pub timeout: Option<String>,
    /// Extra PEM CAs trusted for the server's TLS certificate (relative to this file).
    pub ca_file: Option<String>,
}

/// `[sessions]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsFile {
    /// A session without a request for this long is over.
    pub idle_timeout: Option<String>,
    /// Segment requests record activity at most this often per session.
    pub touch_interval: Option<String>,
    /// Bind session tokens to the client's network (a copied token from elsewhere is
    /// refused with `session_shared`).
    pub bind_ip: Option<bool>,
    /// IPv4 prefix length of that network (mobile clients move inside it).
    pub ipv4_prefix: Option<u8>,
    /// IPv6 prefix length of that network.
    pub ipv6_prefix: Option<u8>,
    /// `"memory"` (each node its own, the default) or `"redis"` (shared by nodes).
    pub backend: Option<String>,
    /// With Redis unreachable: `"deny"` new sessions, or admit them by this node's own
    /// (`"local"`) sessions.
    pub on_backend_error: Option<String>,
    /// `[sessions.redis]`, for `backend = "redis"`.
    pub redis: Option<RedisFile>,
}

/// `[sessions.redis]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisFile {
    /// Connection URL, `redis://[:password@]host:port[/db]`.
    pub url: Option<String>,
    /// Environment variable holding the URL instead.
    pub url_env: Option<String>,
    /// Longest one Redis call may take.
    pub timeout: Option<String>,
}

/// `[rights]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RightsFile {
    /// `"store"` (the embedded store), `"external"` (the operator's HTTP service) or
    /// `"none"` (a valid ticket is enough).
    pub source: Option<String>,
    /// How long a positive decision is cached.
    pub positive_ttl: Option<String>,
    /// How long a refusal is cached.
    pub negative_ttl: Option<String>,
    /// With the store unreachable, how long a yes seen before keeps being served.
    pub grace: Option<String>,
    /// Most decisions cached.
    pub cache_capacity: Option<u64>,
    /// After the store failed to write a rental's first play, how long before this node
    /// tries a first play's write again (doubling with each further failure, up to 8
    /// times it); requests meanwhile are served without trying.
    pub first_play_retry: Option<String>,
    /// Request header naming the device class (`ott`, `iptv`, `hybrid`).
    pub device_class_header: Option<String>,
    /// Device class of requests that do not name one.
    pub default_device_class: Option<String>,
    /// The external rights service, for `source = "external"`.
    pub external: Option<ExternalFile>,
}

/// `[rights.external]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalFile {
    /// URL template; `{sub}`, `{content}`, `{editorial}`, `{class}`, `{now}` are replaced
    /// (URL-encoded).
    pub url: Option<String>,
    /// `GET` or `POST`.
    pub method: Option<String>,
    /// Body template for `POST`, same placeholders.
    pub body: Option<String>,
    /// Content type of the `POST` body.
    pub content_type: Option<String>,
    /// Time allowed for the whole exchange.
    pub timeout: Option<String>,
    /// Statuses that can mean yes.
    pub success_status: Option<Vec<u16>>,
    /// JSON pointer (`/allowed`) that must equal `success_json_value`.
    pub success_json_pointer: Option<String>,
    /// The value at `success_json_pointer` that means yes.
    pub success_json_value: Option<toml::Value>,
    /// Text the body must contain to mean yes.
    pub success_body_contains: Option<String>,
    /// Keep serving a yes seen within this long while the service is down (`0s`: never).
    pub grace: Option<String>,
    /// Headers sent on every call, name → value (e.g. `X-Api-Key`). Prefer `headers_env`
    /// for secrets.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Headers sent on every call, name → the environment variable holding the value
    /// (e.g. `Authorization = "BILLING_AUTH"`). Values are never logged.
    pub headers_env: Option<std::collections::BTreeMap<String, String>>,
}

/// `[listen]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    /// Plain HTTP listener address, e.g. `"127.0.0.1:8080"`. HTTP/1.1 and h2c.
    pub http: Option<String>,
    /// HTTPS listener address; needs `cert` and `key`. HTTP/1.1 and h2 via ALPN.
    pub https: Option<String>,
    /// PEM certificate chain for `https`.
    pub cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `https`.
    pub key: Option<String>,
    /// How long in-flight requests may run after SIGTERM before connections are cut.
    pub drain_timeout: Option<String>,
    /// Largest request head (request line plus headers) in bytes; at least 8192.
    pub max_header_bytes: Option<u64>,
    /// Most header fields in one request.
    pub max_headers: Option<u64>,
    /// Most client connections open at once over the public listeners.
    pub max_connections: Option<u64>,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: Option<String>,
    /// Proxies (addresses or prefixes) whose `X-Forwarded-For`/`Forwarded` name the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Threads serving the public listeners, each running its own single-threaded runtime;
    /// default one per CPU core; 0: one work-stealing runtime shared with everything else.
    pub threads: Option<u64>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Address of the operations listener; loopback unless you mean otherwise.
    pub listen: Option<String>,
    /// Bearer credential of the admin API (and the PPV facade's `apikey`); the environment
    /// variable `USHER_ADMIN_TOKEN` overrides it. Without either, usher makes one and
    /// writes it to `<data_dir>/admin.token`.
    pub token: Option<String>,
    /// Base URL players use to reach usher, for play URLs the admin API returns; default:
    /// the first public listener.
    pub public_url: Option<String>,
    /// Further named admin credentials (`[[admin.credentials]]`), each read from an
    /// environment variable; the audit trail records which one made each write.
    pub credentials: Option<Vec<CredentialFile>>,
    /// Wrong credentials one client address may present in a minute before the admin API
    /// answers it 429 for the rest of that minute; default 10, 0 turns the limit off.
    pub max_failed_auth_per_minute: Option<u32>,
}

/// `[[admin.credentials]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFile {
    /// The name the audit trail records, such as `billing`.
    pub name: String,
    /// The environment variable holding its token (16+ characters).
    pub token_env: String,
}

/// `[upstream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// An `http://` or `https://` base URL, or a local directory (relative to this file).
    pub origin: Option<String>,
    /// Other base URLs under which the origin names its own objects in absolute playlist URIs.
    pub aliases: Option<Vec<String>>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Option<String>,
    /// Time allowed until the upstream's response headers arrive.
    pub timeout: Option<String>,
    /// Time allowed until the whole response has arrived.
    pub total_timeout: Option<String>,
    /// Servers tried in order after `origin`: base URLs, or tables with their own timeouts.
    pub fallbacks: Option<Vec<FallbackFile>>,
    /// When a server counts as down, and the active health check.
    pub health: Option<HealthFile>,
    /// Extra PEM CA bundle trusted for an `https` origin (besides the system roots).
    pub ca_file: Option<String>,
    /// Largest playlist usher will buffer to rewrite, in bytes.
    pub max_playlist_bytes: Option<u64>,
    /// Most requests in flight to each server of the group at once.
    pub max_requests: Option<u32>,
}

/// One `upstream.fallbacks` entry: a base URL (or directory), or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FallbackFile {
    /// Just where it is; the group's timeouts apply.
    Origin(String),
    /// Where it is, with its own timeouts.
    Server(ServerFile),
}

/// A fallback server with its own timeouts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// An `http://` or `https://` base URL, or a local directory.
    pub origin: Option<String>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Option<String>,
    /// Time allowed until the response headers arrive.
    pub timeout: Option<String>,
    /// Time allowed until the whole response has arrived.
    pub total_timeout: Option<String>,
}

/// `[upstream.health]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// Consecutive failures that mark a server down.
    pub failures: Option<u32>,
    /// How long a server marked down is passed over.
    pub cool_off: Option<String>,
    /// Path the active check requests on each HTTP server; unset: no active check.
    pub check_path: Option<String>,
    /// How often the active check runs.
    pub check_interval: Option<String>,
}

/// `[shield]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShieldFile {
    /// Whether the cache is on.
    pub enabled: Option<bool>,
    /// Byte budget of the cache.
    pub memory: Option<u64>,
    /// Largest single object kept, in bytes.
    pub max_object_bytes: Option<u64>,
    /// Bytes the shield's fetches in flight may hold at once.
    pub max_in_flight_bytes: Option<u64>,
    /// Smallest body kept in a file of its own and sent with `sendfile`; 0: none.
    pub sendfile_min_bytes: Option<u64>,
    /// Directory for those files; unset: `store.data_dir`; empty: memory files.
    pub sendfile_dir: Option<String>,
    /// Lifetime of segments, init sections and keys without an origin `max-age`.
    pub segment_ttl: Option<String>,
    /// Lifetime of master and VOD playlists without an origin `max-age`.
    pub playlist_ttl: Option<String>,
    /// Lifetime of live media playlists; unset: half the target duration.
    pub live_playlist_ttl: Option<String>,
    /// Lifetime of a 404 from the origin.
    pub negative_ttl: Option<String>,
    /// How long past its lifetime a copy is served when every upstream fails.
    pub stale_if_error: Option<String>,
    /// File extensions of other objects (not playlists, segments, init sections or `.key`
    /// keys) that are cached too.
    pub cache_extensions: Option<Vec<String>>,
    /// Content types (`type/subtype` or `type/*`) that make any other object cached.
    pub cache_content_types: Option<Vec<String>>,
}

/// `[token]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Id of the key in `keys` that signs new tickets and session tokens.
    pub signing_key: Option<String>,
    /// Every key usher accepts; all verify, one signs.
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    /// Default lifetime of a ticket issued by `usher ticket issue` or at demo start.
    pub ticket_ttl: Option<String>,
    /// Lifetime of the session token minted into each rewritten playlist.
    pub session_ttl: Option<String>,
    /// Tolerated clock difference when checking `nbf` and `exp`.
    pub clock_skew: Option<String>,
    /// Query parameter that carries a ticket.
    pub ticket_param: Option<String>,
    /// Query parameter that carries a session token in rewritten URIs.
    pub session_param: Option<String>,
    /// Cookie that may carry a ticket; empty string turns cookies off.
    pub ticket_cookie: Option<String>,
    /// Whether `Authorization: Bearer <ticket>` is read.
    pub bearer: Option<bool>,
    /// Request header that names the device.
    pub device_header: Option<String>,
    /// Query parameter that names the device (for players that cannot add headers).
    pub device_param: Option<String>,
    /// Cookie that carries the session token on routes with `carrier = "cookie"`.
    pub session_cookie: Option<String>,
    /// Cookie that names the device (default `usher_device`; empty string: not read, and
    /// never set).
    pub device_cookie: Option<String>,
    /// Whether usher sets its own device cookie on the first request of a purchase that
    /// counts activations and names no device (default true).
    pub set_device_cookie: Option<bool>,
    /// Fold the user agent into the device identity (a copied device id on another kind of
    /// player then counts as another device).
    pub device_with_user_agent: Option<bool>,
}

/// One `[[token.keys]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Key id written into every credential it signs (1–32 of `A-Z a-z 0-9 _ -`).
    pub id: Option<String>,
    /// The secret itself, at least 32 bytes. Prefer `secret_env` or `secret_file` outside
    /// demos.
    pub secret: Option<String>,
    /// Name of an environment variable holding the secret (read from usher's environment
    /// at start: a reload cannot see a variable exported later).
    pub secret_env: Option<String>,
    /// A file holding the secret (relative to the config file; one trailing line end
    /// dropped), read at start and at every reload.
    pub secret_file: Option<String>,
}

/// `[access]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFile {
    /// Path prefixes that need a ticket or session token.
    pub protected: Option<Vec<String>>,
    /// Path prefixes served without any check; they win over `protected`.
    pub public: Option<Vec<String>>,
    /// Origins allowed to read responses from a browser (`"*"` for any).
    pub cors_origins: Option<Vec<String>>,
    /// `"auto"`, `"private"` or `"origin"`: the `Cache-Control` of protected answers.
    pub protected_cache_control: Option<String>,
}

/// `[demo]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoFile {
    /// Path of the demo master playlist.
    pub play_path: Option<String>,
    /// Subject of the ticket minted for the printed URL.
    pub subject: Option<String>,
    /// Scope of that ticket.
    pub scope: Option<String>,
}

/// `[media_cdn]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaCdnFile {
    /// Id of the key in `keys` that mints (default: the first key that can sign).
    pub signing_key: Option<String>,
    /// Every key accepted; all verify, one mints.
    #[serde(default)]
    pub keys: Vec<MediaCdnKeyFile>,
    /// Query parameter of the token (`edge-cache-token`).
    pub token_name: Option<String>,
    /// Cookie that may carry the token (`Edge-Cache-Cookie`).
    pub cookie_name: Option<String>,
    /// Lifetime of minted tokens.
    pub ttl: Option<String>,
}

/// One `[[media_cdn.keys]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaCdnKeyFile {
    /// The key's name (as in the Media CDN keyset).
    pub id: Option<String>,
    /// `sha256` (default), `sha1` or `ed25519`.
    pub algorithm: Option<String>,
    /// The HMAC secret, or the Ed25519 private key (32-byte seed).
    pub secret: Option<String>,
    /// Environment variable holding `secret` instead.
    pub secret_env: Option<String>,
    /// An Ed25519 public key: verifies, never mints.
    pub public_key: Option<String>,
    /// How `secret` and `public_key` are written: `base64` (default; standard or URL-safe,
    /// padded or not) or `hex`.
    pub encoding: Option<String>,
}
