//! File values → runtime values, collecting every problem by dotted key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::file::{FileConfig, TokenFile};
use super::{
    duration, Access, Admin, Config, ConfigError, Demo, Https, Listen, Origin, Overrides, Token,
    Upstream,
};
use crate::origin::OriginBase;
use crate::path::ObjectKind;
use crate::ticket::{Key, KeyRing};

mod admin;
mod formats;
mod media_cdn;
mod rights;
mod store;
mod upstream;
mod webhooks;

/// Collects problems so one run reports all of them.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, value: &str, why: impl std::fmt::Display) {
        if value.is_empty() {
            self.0.push(format!("{key}: {why}"));
        } else {
            self.0.push(format!("{key} = \"{value}\": {why}"));
        }
    }

    /// `Some(value)` when `result` is Ok, otherwise records the problem under `key`.
    fn take<T>(&mut self, key: &str, value: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|why| self.add(key, value, why)).ok()
    }

    fn duration(
        &mut self,
        key: &str,
        text: Option<&str>,
        default: &str,
        min: Duration,
    ) -> Duration {
        let text = text.unwrap_or(default);
        match duration::parse(text) {
            Ok(d) if d >= min && !d.is_zero() => d,
            Ok(_) if min.is_zero() => {
                self.add(key, text, "must be greater than zero");
                Duration::ZERO
            }
            Ok(_) => {
                self.add(key, text, format!("must be at least {min:?}"));
                Duration::ZERO
            }
            Err(why) => {
                self.0.push(format!("{key} = {why}"));
                Duration::ZERO
            }
        }
    }

    fn addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        let parsed = text
            .parse()
            .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8080".to_owned());
        self.take(key, text, parsed)
    }

    fn path_prefix(&mut self, key: &str, text: &str) -> Option<String> {
        if !text.starts_with('/') {
            self.add(key, text, "a path prefix starts with /");
            None
        } else if text.split('/').any(|seg| seg == "." || seg == "..") || text.contains("//") {
            self.add(
                key,
                text,
                "a path prefix must be normalised (no . or .. or //)",
            );
            None
        } else {
            Some(text.to_owned())
        }
    }

    fn param_name(&mut self, key: &str, text: &str) -> String {
        if text.is_empty()
            || !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            self.add(key, text, "use 1 or more of A-Z a-z 0-9 _ -");
        }
        text.to_owned()
    }
}

/// Most threads `listen.threads` may ask for.
const MAX_LISTEN_THREADS: u64 = 256;

pub(super) fn check(
    file: FileConfig,
    base_dir: &Path,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut p = Problems::default();

    let listen_file = file.listen;
    let http_text = overrides.listen.clone().or(listen_file.http);
    let http = http_text.as_deref().and_then(|t| p.addr("listen.http", t));
    let https = match (
        listen_file.https.as_deref(),
        listen_file.cert,
        listen_file.key,
    ) {
        (None, None, None) => None,
        (Some(addr), Some(cert), Some(key)) => {
            let addr = p.addr("listen.https", addr);
            let (cert, key) = (base_dir.join(cert), base_dir.join(key));
            // Read here, so `check-config` and a reload see a missing file or a key that
            // is not the certificate's.
            let certified = p.take(
                "listen.cert",
                &cert.display().to_string(),
                crate::tls::certified_key(&cert, &key).map_err(|e| e.to_string()),
            );
            match (addr, certified) {
                (Some(addr), Some(certified)) => Some(Https {
                    addr,
                    cert,
                    key,
                    certified,
                }),
                _ => None,
            }
        }
        (Some(_), _, _) => {
            p.add("listen.https", "", "needs both listen.cert and listen.key");
            None
        }
        (None, _, _) => {
            p.add(
                "listen.cert",
                "",
                "only used with listen.https, which is not set",
            );
            None
        }
    };
    if http_text.is_none() && listen_file.https.is_none() {
        p.add(
            "listen",
            "",
            "set listen.http or listen.https (or pass --listen)",
        );
    }
    let max_header_bytes = listen_file.max_header_bytes.unwrap_or(16 * 1024);
    if !(8192..=1 << 20).contains(&max_header_bytes) {
        p.add(
            "listen.max_header_bytes",
            &max_header_bytes.to_string(),
            "must be between 8192 and 1048576",
        );
    }
    let max_headers = listen_file.max_headers.unwrap_or(100);
    if !(16..=1000).contains(&max_headers) {
        p.add(
            "listen.max_headers",
            &max_headers.to_string(),
            "must be between 16 and 1000",
        );
    }
    let max_connections = listen_file.max_connections.unwrap_or(20_000);
    if !(1..=1_000_000).contains(&max_connections) {
        p.add(
            "listen.max_connections",
            &max_connections.to_string(),
            "must be between 1 and 1000000",
        );
    }
    let threads = listen_file
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    if threads > MAX_LISTEN_THREADS {
        p.add(
            "listen.threads",
            &threads.to_string(),
            format!("must be between 0 and {MAX_LISTEN_THREADS}"),
        );
    }
    let listen = Listen {
        http,
        https,
        drain_timeout: p.duration(
            "listen.drain_timeout",
            listen_file.drain_timeout.as_deref(),
            "10s",
            Duration::ZERO,
        ),
        max_header_bytes: max_header_bytes as usize,
        max_headers: max_headers as usize,
        max_connections: max_connections.clamp(1, 1_000_000) as usize,
        idle_timeout: p.duration(
            "listen.idle_timeout",
            listen_file.idle_timeout.as_deref(),
            "60s",
            Duration::from_secs(5),
        ),
        trusted_proxies: listen_file
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .filter_map(|t| p.take("listen.trusted_proxies", t, t.parse()))
            .collect(),
        threads: threads.min(MAX_LISTEN_THREADS) as usize,
    };

    let admin_text = overrides
        .admin_listen
        .clone()
        .or(file.admin.listen)
        .unwrap_or_else(|| "127.0.0.1:9090".to_owned());
    let admin = Admin {
        listen: if admin_text == "off" {
            None
        } else {
            p.addr("admin.listen", &admin_text)
        },
        token: std::env::var("USHER_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or(file.admin.token),
        public_url: file.admin.public_url,
        credentials: admin::credentials(&mut p, file.admin.credentials.unwrap_or_default()),
        max_failed_auth_per_minute: file.admin.max_failed_auth_per_minute.unwrap_or(10),
    };
    if let Some(url) = &admin.public_url {
        if let Err(why) = OriginBase::parse(url) {
            p.add("admin.public_url", url, why);
        }
    }
    if admin.token.as_ref().is_some_and(|t| t.len() < 16) {
        p.add("admin.token", "", "must be at least 16 characters");
    }
    let store = store::check(
        &mut p,
        file.store.backend.as_deref(),
        file.store.postgres,
        base_dir,
    );
    let data_dir = match (&overrides.data_dir, file.store.data_dir) {
        (Some(dir), _) => std::path::PathBuf::from(dir),
        (None, Some(dir)) => base_dir.join(dir),
        (None, None) => base_dir.join("data"),
    };
    let rights = rights::check(&mut p, file.rights);
    let sessions = check_sessions(&mut p, file.sessions);
    let formats = formats::check_formats(&mut p, file.secure_link, file.akamai, file.media_cdn);
    let routes = formats::check_routes(&mut p, file.routes, &formats);

    let overridden = overrides
        .origin
        .as_ref()
        .map(|text| p.take("--origin", text, Origin::parse(text, Path::new("."))));
    let upstream = upstream::group(&mut p, "upstream", file.upstream, base_dir, overridden);
    let upstream_groups: Vec<(String, Upstream)> = file
        .upstreams
        .into_iter()
        .filter_map(|(name, group)| {
            let key = format!("upstreams.{name}");
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                p.add(&key, &name, "a group name is 1 or more of A-Z a-z 0-9 _ -");
                return None;
            }
            if group.max_playlist_bytes.is_some() {
                p.add(
                    &format!("{key}.max_playlist_bytes"),
                    "",
                    "set it in [upstream] only",
                );
            }
            upstream::group(&mut p, &key, group, base_dir, None).map(|g| (name, g))
        })
        .collect();
    for (n, route) in routes.iter().enumerate() {
        if let Some(name) = &route.upstream {
            if !upstream_groups.iter().any(|(g, _)| g == name) {
                p.add(
                    &format!("routes[{n}].upstream"),
                    name,
                    "no [upstreams.<name>] group by that name",
                );
            }
        }
    }
    let shield = upstream::shield(&mut p, file.shield, base_dir, &data_dir);

    let token = check_token(&mut p, file.token, base_dir);
    let webhooks = webhooks::check(&mut p, file.webhooks.unwrap_or_default());
    let playlists = check_playlists(&mut p, file.playlists);

    let access_file = file.access;
    let protected = access_file
        .protected
        .unwrap_or_else(|| vec!["/".to_owned()])
        .iter()
        .filter_map(|t| p.path_prefix("access.protected", t))
        .collect();
    let public = access_file
        .public
        .unwrap_or_default()
        .iter()
        .filter_map(|t| p.path_prefix("access.public", t))
        .collect();
    let cors_origins = access_file
        .cors_origins
        .unwrap_or_else(|| vec!["*".to_owned()]);
    for origin in &cors_origins {
        if origin != "*" && OriginBase::parse(origin).is_err() {
            p.add(
                "access.cors_origins",
                origin,
                "use \"*\" or a scheme://host[:port] origin",
            );
        }
    }
    let protected_cache_control = match access_file.protected_cache_control.as_deref() {
        None => super::ProtectedCacheControl::default(),
        Some(text) => super::ProtectedCacheControl::parse(text).unwrap_or_else(|| {
            let why = "must be \"auto\", \"private\" or \"origin\"";
            p.add("access.protected_cache_control", text, why);
            super::ProtectedCacheControl::default()
        }),
    };
    let access = Access {
        protected,
        public,
        cors_origins,
        protected_cache_control,
    };

    let demo = file.demo.map(|d| {
        let play_path = d
            .play_path
            .unwrap_or_else(|| "/demo/master.m3u8".to_owned());
        let scope = d.scope.unwrap_or_else(|| "/demo/".to_owned());
        Demo {
            play_path: p
                .path_prefix("demo.play_path", &play_path)
                .unwrap_or_default(),
            subject: d.subject.unwrap_or_else(|| "demo-viewer".to_owned()),
            scope: p.path_prefix("demo.scope", &scope).unwrap_or_default(),
        }
    });

    match (upstream, token) {
        (Some(upstream), Some(token)) if p.0.is_empty() => Ok(Config {
            listen,
            admin,
            upstream,
            upstream_groups,
            shield,
            token,
            access,
            data_dir,
            store,
            rights,
            sessions,
            routes,
            demo,
            formats,
            file: Default::default(),
            webhooks,
            playlists,
        }),
        _ => Err(ConfigError::Invalid(p.0)),
    }
}

fn check_playlists(p: &mut Problems, file: super::file::PlaylistsFile) -> super::PlaylistsConfig {
    let defaults = super::PlaylistsConfig::default();
    let compress = match file.compress.as_deref() {
        None | Some("gzip") => super::Compress::Gzip,
        Some("off") => super::Compress::Off,
        Some(other) => {
            p.add("playlists.compress", other, "must be \"gzip\" or \"off\"");
            defaults.compress
        }
    };
    let level = file.compress_level.unwrap_or(defaults.compress_level);
    if !(1..=9).contains(&level) {
        p.add(
            "playlists.compress_level",
            &level.to_string(),
            "must be 1..=9",
        );
    }
    super::PlaylistsConfig {
        compress,
        compress_min_bytes: file
            .compress_min_bytes
            .map_or(defaults.compress_min_bytes, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        compress_level: level.clamp(1, 9),
        asset_list_extensions: upstream::listed(
            p,
            "playlists.asset_list_extensions",
            file.asset_list_extensions,
            &["json"],
            |ext| match upstream::extension_problem(ext) {
                None if ObjectKind::of(&format!("/x.{ext}")) != ObjectKind::Other => {
                    Some("names a playlist, segment, init section or key")
                }
                why => why,
            },
        ),
    }
}

fn check_sessions(p: &mut Problems, file: super::file::SessionsFile) -> super::SessionsConfig {
    let v4 = file.ipv4_prefix.unwrap_or(24);
    if v4 > 32 {
        p.add("sessions.ipv4_prefix", &v4.to_string(), "must be 0..=32");
    }
    let v6 = file.ipv6_prefix.unwrap_or(48);
    if v6 > 128 {
        p.add("sessions.ipv6_prefix", &v6.to_string(), "must be 0..=128");
    }
    let idle_timeout = p.duration(
        "sessions.idle_timeout",
        file.idle_timeout.as_deref(),
        "60s",
        Duration::from_secs(1),
    );
    let touch_interval = p.duration(
        "sessions.touch_interval",
        file.touch_interval.as_deref(),
        "5s",
        Duration::from_secs(1),
    );
    // A session's last-seen time is written at most once a touch interval: at or past the
    // idle timeout, a session played without a pause would idle out between two writes.
    if touch_interval >= idle_timeout {
        p.add(
            "sessions.touch_interval",
            file.touch_interval.as_deref().unwrap_or("5s"),
            "must be shorter than sessions.idle_timeout (a third of it or less is best)",
        );
    }
    super::SessionsConfig {
        idle_timeout,
        touch_interval,
        bind_ip: file.bind_ip.unwrap_or(false),
        ipv4_prefix: v4.min(32),
        ipv6_prefix: v6.min(128),
        backend: store::check_sessions_backend(
            p,
            file.backend.as_deref(),
            file.on_backend_error.as_deref(),
            file.redis,
        ),
    }
}

fn check_token(p: &mut Problems, file: TokenFile, base_dir: &Path) -> Option<Token> {
    let mut keys = Vec::new();
    if file.keys.is_empty() {
        p.add(
            "token.keys",
            "",
            "at least one [[token.keys]] entry is required",
        );
    }
    for (n, mut key) in file.keys.into_iter().enumerate() {
        let at = format!("token.keys[{n}]");
        let Some(id) = key.id.take() else {
            p.add(&format!("{at}.id"), "", "required");
            continue;
        };
        let Some(secret) = formats::key_secret(p, &at, &id, key, base_dir) else {
            continue;
        };
        match Key::new(&id, secret.as_bytes()) {
            Ok(key) => keys.push(key),
            Err(why) => p.add(&at, &id, why),
        }
    }
    let signing = file.signing_key.unwrap_or_default();
    let ring = if signing.is_empty() {
        p.add(
            "token.signing_key",
            "",
            "required: the id of the key that signs",
        );
        None
    } else if keys.is_empty() {
        None
    } else {
        p.take("token.signing_key", &signing, KeyRing::new(keys, &signing))
    };

    let device_header_text = file
        .device_header
        .unwrap_or_else(|| "x-device-id".to_owned());
    let device_header = p.take(
        "token.device_header",
        &device_header_text,
        HeaderName::try_from(device_header_text.as_str())
            .map_err(|_| "not a valid header name".to_owned()),
    );
    let ticket_cookie = match file.ticket_cookie.as_deref() {
        Some("") => None,
        Some(name) => Some(p.param_name("token.ticket_cookie", name)),
        None => Some("usher_ticket".to_owned()),
    };
    let ticket_param = p.param_name(
        "token.ticket_param",
        file.ticket_param.as_deref().unwrap_or("ticket"),
    );
    let session_param = p.param_name(
        "token.session_param",
        file.session_param.as_deref().unwrap_or("token"),
    );
    if ticket_param == session_param {
        p.add(
            "token.session_param",
            &session_param,
            "must differ from token.ticket_param",
        );
    }
    let token = Token {
        ticket_ttl: p.duration(
            "token.ticket_ttl",
            file.ticket_ttl.as_deref(),
            "2h",
            Duration::from_secs(1),
        ),
        session_ttl: p.duration(
            "token.session_ttl",
            file.session_ttl.as_deref(),
            "10m",
            Duration::from_secs(1),
        ),
        clock_skew: match duration::parse(file.clock_skew.as_deref().unwrap_or("30s")) {
            Ok(d) if d <= Duration::from_secs(600) => d,
            Ok(_) => {
                p.add(
                    "token.clock_skew",
                    file.clock_skew.as_deref().unwrap_or(""),
                    "at most 10m",
                );
                Duration::ZERO
            }
            Err(why) => {
                p.0.push(format!("token.clock_skew = {why}"));
                Duration::ZERO
            }
        },
        device_param: p.param_name(
            "token.device_param",
            file.device_param.as_deref().unwrap_or("device"),
        ),
        device_cookie: match file.device_cookie.as_deref() {
            Some("") => None,
            Some(name) => Some(p.param_name("token.device_cookie", name)),
            None => Some("usher_device".to_owned()),
        },
        set_device_cookie: file.set_device_cookie.unwrap_or(true),
        device_with_user_agent: file.device_with_user_agent.unwrap_or(false),
        session_cookie: p.param_name(
            "token.session_cookie",
            file.session_cookie.as_deref().unwrap_or("usher_session"),
        ),
        ticket_param,
        session_param,
        ticket_cookie,
        bearer: file.bearer.unwrap_or(true),
        device_header: device_header?,
        keys: ring?,
    };
    Some(token)
}
