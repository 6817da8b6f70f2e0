//! `[upstream]`, `[upstreams.NAME]` and `[shield]`, checked.

use std::path::Path;
use std::time::Duration;

use super::super::file::{FallbackFile, HealthFile, ShieldFile, UpstreamFile};
use super::super::upstream::{
    DEFAULT_CACHE_CONTENT_TYPES, DEFAULT_CACHE_EXTENSIONS, DEFAULT_SENDFILE_MIN_BYTES,
};
use super::super::{Health, Origin, Server, ShieldConfig, Upstream};
use super::Problems;
use crate::origin::OriginBase;

/// Checks one upstream group under `key` (`upstream` or `upstreams.NAME`). `origin`, when
/// given, replaces the file's primary (the `--origin` override).
pub(super) fn group(
    p: &mut Problems,
    key: &str,
    file: UpstreamFile,
    base_dir: &Path,
    origin: Option<Option<Origin>>,
) -> Option<Upstream> {
    let origin = match (origin, &file.origin) {
        (Some(overridden), _) => overridden,
        (None, Some(text)) => p.take(
            &format!("{key}.origin"),
            text,
            Origin::parse(text, base_dir),
        ),
        (None, None) => {
            p.add(
                &format!("{key}.origin"),
                "",
                "required: an http(s):// URL or a directory",
            );
            None
        }
    };
    let aliases = file
        .aliases
        .unwrap_or_default()
        .iter()
        .filter_map(|a| p.take(&format!("{key}.aliases"), a, OriginBase::parse(a)))
        .collect();
    let max_playlist_bytes = file.max_playlist_bytes.unwrap_or(8 << 20);
    if !(1024..=256 << 20).contains(&max_playlist_bytes) {
        p.add(
            &format!("{key}.max_playlist_bytes"),
            &max_playlist_bytes.to_string(),
            "must be between 1024 and 268435456",
        );
    }
    let max_requests = file.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS);
    if max_requests == 0 {
        p.add(&format!("{key}.max_requests"), "0", "must be at least 1");
    }
    let timeouts = Timeouts::check(
        p,
        key,
        [
            file.connect_timeout.as_deref(),
            file.timeout.as_deref(),
            file.total_timeout.as_deref(),
        ],
        Timeouts::DEFAULT,
    );
    let fallbacks = file
        .fallbacks
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(n, fallback)| {
            let at = format!("{key}.fallbacks[{n}]");
            let (text, own) = match fallback {
                FallbackFile::Origin(text) => (Some(text), [None, None, None]),
                FallbackFile::Server(s) => {
                    (s.origin, [s.connect_timeout, s.timeout, s.total_timeout])
                }
            };
            let Some(text) = text else {
                p.add(&format!("{at}.origin"), "", "required");
                return None;
            };
            let origin = p.take(&at, &text, Origin::parse(&text, base_dir))?;
            let own = Timeouts::check(
                p,
                &at,
                own.each_ref().map(Option::as_deref),
                timeouts.texts(),
            );
            Some(own.server(origin))
        })
        .collect();
    let health = health(p, key, file.health.unwrap_or_default());
    Some(Upstream {
        origin: origin?,
        aliases,
        connect_timeout: timeouts.connect,
        timeout: timeouts.first_byte,
        total_timeout: timeouts.total,
        fallbacks,
        health,
        ca_file: file.ca_file.map(|f| base_dir.join(f)),
        max_playlist_bytes: max_playlist_bytes as usize,
        max_requests,
    })
}

/// `upstream.max_requests` when unset: about what one nginx origin worker takes.
const DEFAULT_MAX_REQUESTS: u32 = 1024;

/// The three timeouts of a server, and the text each came from (for inheritance).
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    total: Duration,
    texts: [String; 3],
}

impl Timeouts {
    const DEFAULT: [&'static str; 3] = ["2s", "10s", "60s"];

    fn check(p: &mut Problems, key: &str, given: [Option<&str>; 3], defaults: [&str; 3]) -> Self {
        let names = ["connect_timeout", "timeout", "total_timeout"];
        let texts: [String; 3] =
            std::array::from_fn(|i| given[i].unwrap_or(defaults[i]).to_owned());
        let [connect, first_byte, total] = std::array::from_fn(|i| {
            p.duration(
                &format!("{key}.{}", names[i]),
                Some(&texts[i]),
                defaults[i],
                Duration::ZERO,
            )
        });
        if total < first_byte {
            p.add(
                &format!("{key}.total_timeout"),
                &texts[2],
                "must be at least the first-byte timeout",
            );
        }
        Self {
            connect,
            first_byte,
            total,
            texts,
        }
    }

    fn texts(&self) -> [&str; 3] {
        self.texts.each_ref().map(String::as_str)
    }

    fn server(self, origin: Origin) -> Server {
        Server {
            origin,
            connect_timeout: self.connect,
            timeout: self.first_byte,
            total_timeout: self.total,
        }
    }
}

fn health(p: &mut Problems, key: &str, file: HealthFile) -> Health {
    let failures = file.failures.unwrap_or(3);
    if failures == 0 {
        p.add(&format!("{key}.health.failures"), "0", "must be at least 1");
    }
    let check_path = file
        .check_path
        .and_then(|path| p.path_prefix(&format!("{key}.health.check_path"), &path));
    Health {
        failures,
        cool_off: p.duration(
            &format!("{key}.health.cool_off"),
            file.cool_off.as_deref(),
            "10s",
            Duration::ZERO,
        ),
        check_path,
        check_interval: p.duration(
            &format!("{key}.health.check_interval"),
            file.check_interval.as_deref(),
            "5s",
            Duration::from_millis(100),
        ),
    }
}

/// The smallest `shield.sendfile_min_bytes` other than 0: slices shorter than this are
/// copied anyway ([`crate::proxy::sendfile::MIN_SENDFILE`]).
const MIN_SENDFILE_BYTES: u64 = crate::proxy::sendfile::MIN_SENDFILE as u64;

/// Checks `[shield]`; `sendfile_dir` is relative to `base_dir` and defaults to `data_dir`.
pub(super) fn shield(
    p: &mut Problems,
    file: ShieldFile,
    base_dir: &std::path::Path,
    data_dir: &std::path::Path,
) -> ShieldConfig {
    let memory = file.memory.unwrap_or(256 << 20);
    if memory < 1 << 20 {
        p.add(
            "shield.memory",
            &memory.to_string(),
            "must be at least 1048576 (1 MiB)",
        );
    }
    // The default never exceeds the budget, so setting only `memory` is enough.
    let max_object_bytes = file.max_object_bytes.unwrap_or((16 << 20).min(memory));
    if max_object_bytes == 0 || max_object_bytes > memory.min(u64::from(u32::MAX)) {
        p.add(
            "shield.max_object_bytes",
            &max_object_bytes.to_string(),
            "must be between 1 and shield.memory (and under 4 GiB)",
        );
    }
    // A quarter of the cache by default, and never less than one object of the largest
    // size kept, which could otherwise never be fetched into it.
    let max_in_flight_bytes = file
        .max_in_flight_bytes
        .unwrap_or((memory / 4).max(max_object_bytes));
    if max_in_flight_bytes < max_object_bytes {
        p.add(
            "shield.max_in_flight_bytes",
            &max_in_flight_bytes.to_string(),
            "must be at least shield.max_object_bytes: an object that large could never be kept",
        );
    }
    let sendfile_min_bytes = file
        .sendfile_min_bytes
        .unwrap_or(DEFAULT_SENDFILE_MIN_BYTES);
    if sendfile_min_bytes != 0 && sendfile_min_bytes < MIN_SENDFILE_BYTES {
        p.add(
            "shield.sendfile_min_bytes",
            &sendfile_min_bytes.to_string(),
            format!(
                "must be 0 (off) or at least {MIN_SENDFILE_BYTES}: a smaller body is cheaper to copy than to send from a file"
            ),
        );
    }
    let sendfile_dir = match file.sendfile_dir.as_deref() {
        None => Some(data_dir.to_owned()),
        Some("") => None,
        Some(dir) => Some(base_dir.join(dir)),
    };
    // `zero_ok`: a lifetime of zero means "never kept" (any way of writing zero).
    let mut ttl = |name: &str, text: Option<String>, default: &str, zero_ok: bool| {
        let is_zero = |t: &str| super::super::duration::parse(t).is_ok_and(|d| d.is_zero());
        if zero_ok && is_zero(text.as_deref().unwrap_or(default)) {
            return Duration::ZERO;
        }
        p.duration(
            &format!("shield.{name}"),
            text.as_deref(),
            default,
            Duration::ZERO,
        )
    };
    let segment_ttl = ttl("segment_ttl", file.segment_ttl, "10m", false);
    let playlist_ttl = ttl("playlist_ttl", file.playlist_ttl, "5s", false);
    let negative_ttl = ttl("negative_ttl", file.negative_ttl, "2s", true);
    let live_playlist_ttl = file
        .live_playlist_ttl
        .map(|text| ttl("live_playlist_ttl", Some(text), "", false));
    let stale_if_error = ttl("stale_if_error", file.stale_if_error, "30s", true);
    let cache_extensions = listed(
        p,
        "shield.cache_extensions",
        file.cache_extensions,
        DEFAULT_CACHE_EXTENSIONS,
        extension_problem,
    );
    let cache_content_types = listed(
        p,
        "shield.cache_content_types",
        file.cache_content_types,
        DEFAULT_CACHE_CONTENT_TYPES,
        content_type_problem,
    );
    ShieldConfig {
        enabled: file.enabled.unwrap_or(true),
        memory,
        max_object_bytes,
        max_in_flight_bytes,
        sendfile_min_bytes,
        sendfile_dir,
        segment_ttl,
        playlist_ttl,
        live_playlist_ttl,
        negative_ttl,
        stale_if_error,
        cache_extensions,
        cache_content_types,
    }
}

/// A list of the shield's choices, lower-cased, each entry checked by `problem` (reported
/// as `key[i]`); `default` when unset.
pub(super) fn listed(
    p: &mut Problems,
    key: &str,
    given: Option<Vec<String>>,
    default: &[&str],
    problem: fn(&str) -> Option<&'static str>,
) -> Vec<String> {
    let Some(given) = given else {
        return default.iter().map(|s| (*s).to_owned()).collect();
    };
    let mut out = Vec::with_capacity(given.len());
    for (i, entry) in given.iter().enumerate() {
        match problem(entry) {
            Some(why) => p.add(&format!("{key}[{i}]"), entry, why),
            None => out.push(entry.to_ascii_lowercase()),
        }
    }
    out
}

/// Why `ext` is no extension usher can match: letters and digits only, 1 to 16 of them.
pub(super) fn extension_problem(ext: &str) -> Option<&'static str> {
    if ext.starts_with('.') {
        return Some("an extension without its dot (\"vtt\", not \".vtt\")");
    }
    let ok = (1..=16).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    (!ok).then_some("an extension is 1 to 16 letters or digits")
}

/// Why `media_type` is not `type/subtype` or `type/*` (no parameters).
fn content_type_problem(media_type: &str) -> Option<&'static str> {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let ok = media_type
        .split_once('/')
        .is_some_and(|(kind, sub)| token(kind) && (sub == "*" || token(sub)));
    (!ok).then_some("a media type is type/subtype or type/*, without parameters")
}
