//! Checked settings for where content comes from and how it is kept: upstream servers
//! with their timeouts and health, and the shield cache.

use std::time::Duration;

use super::Origin;

/// One upstream server of a group, with its own timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Where it is.
    pub origin: Origin,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Time until the response headers arrive.
    pub timeout: Duration,
    /// Time until the whole response has arrived.
    pub total_timeout: Duration,
}

impl Server {
    /// The label it has in metrics and logs: its base URL, or its directory.
    pub fn label(&self) -> String {
        match &self.origin {
            Origin::Http(base) => base.to_string(),
            Origin::Dir(dir) => dir.display().to_string(),
        }
    }
}

/// Passive and active health of a group's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Consecutive failures (no answer, or a 5xx) that mark a server down.
    pub failures: u32,
    /// How long a server marked down is passed over before it is tried again.
    pub cool_off: Duration,
    /// Path requested by the active check; `None`: no active check.
    pub check_path: Option<String>,
    /// How often the active check runs.
    pub check_interval: Duration,
}

/// `[shield]`, checked: the in-memory cache in front of the upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShieldConfig {
    /// Whether segments, init sections, keys, playlists and the other objects chosen by
    /// `cache_extensions` and `cache_content_types` are cached and coalesced.
    pub enabled: bool,
    /// Byte budget of the cache (bodies and headers).
    pub memory: u64,
    /// Largest single object kept.
    pub max_object_bytes: u64,
    /// Body bytes the fetches in flight may hold at once (outside `memory`); a fetch past
    /// it is passed by the shield or streamed through, and not kept.
    pub max_in_flight_bytes: u64,
    /// Smallest body kept in a file of its own, which plain HTTP/1.1 connections
    /// send with `sendfile` instead of copying it; 0: every body on the heap.
    pub sendfile_min_bytes: u64,
    /// Directory whose filesystem holds those files, unnamed (`O_TMPFILE`); `None`:
    /// anonymous memory files.
    pub sendfile_dir: Option<std::path::PathBuf>,
    /// Lifetime of segments, init sections and keys the origin gives none for.
    pub segment_ttl: Duration,
    /// Lifetime of master and VOD playlists the origin gives none for.
    pub playlist_ttl: Duration,
    /// Lifetime of live media playlists; `None`: half the target duration (half the part
    /// target for LL-HLS).
    pub live_playlist_ttl: Option<Duration>,
    /// Lifetime of a 404.
    pub negative_ttl: Duration,
    /// How long past its lifetime a copy is served when every upstream fails.
    pub stale_if_error: Duration,
    /// Extensions (lower case, no dot) of other objects that are cached: trick-play
    /// images, `.bin` keys, subtitles in other formats.
    pub cache_extensions: Vec<String>,
    /// Media types (lower case, `type/subtype` or `type/*`) whose responses are cached
    /// whatever the path: extensionless keys, images. Empty: other objects with an
    /// unlisted extension go past the shield untouched.
    pub cache_content_types: Vec<String>,
}

/// Default `shield.sendfile_min_bytes`: segments and large init sections go out by
/// `sendfile`; keys, parts and small playlists are copied.
pub const DEFAULT_SENDFILE_MIN_BYTES: u64 = 64 * 1024;

/// Extensions of other objects cached by default.
pub const DEFAULT_CACHE_EXTENSIONS: &[&str] = &[
    "bin", "jpg", "jpeg", "png", "webp", "avif", "gif", "srt", "ttml", "dfxp",
];

/// Content types cached by default, whatever the path.
pub const DEFAULT_CACHE_CONTENT_TYPES: &[&str] = &[
    "application/octet-stream",
    "application/ttml+xml",
    "text/vtt",
    "image/*",
    "audio/*",
    "video/*",
];
