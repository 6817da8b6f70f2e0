//! How long a response may be kept: the origin's `Cache-Control` (or `Expires`) when it
//! says, less the `Age` it arrived with, otherwise usher's defaults by object kind, with
//! live media playlists kept only briefly; and which
//! other objects (neither playlists nor known media kinds) are kept at all: those with an
//! extension in `cache_extensions`, or answered with a type in `cache_content_types`. They
//! live as long as segments.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{AGE, CACHE_CONTROL, CONTENT_TYPE, DATE, EXPIRES, SET_COOKIE, VARY};
use http::{HeaderMap, StatusCode};

use super::entry::Entry;
use super::key::Key;
use crate::config::ShieldConfig;
use crate::path::ObjectKind;

/// The longest lifetime usher gives anything, whatever the origin says (a year).
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long an entry is fresh, and how much longer it may be served when every upstream
/// fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Served as is while this young.
    pub fresh: Duration,
    /// Served past `fresh` only for this long, and only when the upstream fails.
    pub stale: Duration,
    /// How old it already was when it arrived: the upstream's `Age` (a CDN's copy, say),
    /// added to the time it spent here in the `Age` a viewer is told.
    pub arrived_age: Duration,
}

impl Lifetime {
    /// How long it is kept at all: fresh, then stale.
    pub fn kept(&self) -> Duration {
        self.fresh.saturating_add(self.stale)
    }
}

/// The `Cache-Control` directives usher acts on.
#[derive(Debug, Default)]
struct Directives {
    no_store: bool,
    max_age: Option<u64>,
    shared_max_age: Option<u64>,
    stale_if_error: Option<u64>,
    /// `must-revalidate` or `proxy-revalidate`: never served stale (unless the origin also
    /// says `stale-if-error`, which is about exactly that).
    must_revalidate: bool,
}

fn directives(headers: &HeaderMap) -> Directives {
    let mut out = Directives::default();
    for part in headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let (name, value) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
        let seconds = value.trim_matches('"').parse::<u64>().ok();
        match name.to_ascii_lowercase().as_str() {
            "no-store" | "private" | "no-cache" => out.no_store = true,
            "max-age" => out.max_age = seconds,
            "s-maxage" => out.shared_max_age = seconds,
            "stale-if-error" => out.stale_if_error = seconds,
            "must-revalidate" | "proxy-revalidate" => out.must_revalidate = true,
            _ => {}
        }
    }
    out
}

/// The greatest `Age` usher counts, in seconds: a larger one, even one past any number,
/// counts as this (RFC 9111 §1.2.2: 2^31).
pub(super) const MAX_AGE_SECONDS: u64 = 1 << 31;

/// The upstream's `Age`: its first member, when it is a number of seconds (RFC 9111 §5.1:
/// anything else is ignored), at most [`MAX_AGE_SECONDS`].
fn arrived_age(headers: &HeaderMap) -> Duration {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let digits = v.split(',').next()?.trim();
            let number = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            number.then(|| digits.parse::<u64>().unwrap_or(u64::MAX))
        })
        .map_or(Duration::ZERO, |seconds| {
            Duration::from_secs(seconds.min(MAX_AGE_SECONDS))
        })
}

/// The lifetime `Expires` gives, counted from the response's `Date` (from now when it has
/// none); zero for an `Expires` in the past or one that is not a date (RFC 9111 §5.3: `0`
/// means already expired). `None` without `Expires`.
fn expires_in(headers: &HeaderMap) -> Option<Duration> {
    let date = |value: &http::HeaderValue| httpdate::parse_http_date(value.to_str().ok()?).ok();
    let expires = headers.get(EXPIRES)?;
    let Some(expires) = date(expires) else {
        return Some(Duration::ZERO);
    };
    let now = headers
        .get(DATE)
        .and_then(date)
        .unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether and for how long a response with `status`, `headers` and `body` may be kept.
/// `None`: not at all (`no-store`, `private`, `no-cache`, `Set-Cookie`, `Vary: *`, an
/// error other than 404, or a lifetime of zero).
///
/// A lifetime the origin gives (`s-maxage`, `max-age`, then `Expires`) counts from when the
/// response was made: what it was already old (`Age`) is taken off. usher's own defaults
/// count from when usher got it. `must-revalidate` and `proxy-revalidate` leave no stale
/// window, unless the origin names one with `stale-if-error`. `s-maxage` keeps it: RFC 9111
/// reads `proxy-revalidate` into it for shared caches, but packagers send it for the CDNs
/// in front, and usher is the operator's own gateway, whose `stale_if_error` is what lets
/// viewers ride through a transcoder restart.
pub fn lifetime(
    settings: &ShieldConfig,
    kind: ObjectKind,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Lifetime> {
    let cc = directives(headers);
    // `*` as any member of the list (`Vary: Origin, *`), not only alone (RFC 9111 §4.1).
    let varies_on_everything = headers
        .get_all(VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|member| member.trim_ascii() == b"*");
    if cc.no_store || headers.contains_key(SET_COOKIE) || varies_on_everything {
        return None;
    }
    let arrived_age = arrived_age(headers);
    if status == StatusCode::NOT_FOUND {
        if settings.negative_ttl.is_zero() {
            return None;
        }
        return Some(Lifetime {
            fresh: settings.negative_ttl,
            stale: Duration::ZERO,
            arrived_age,
        });
    }
    if status != StatusCode::OK {
        return None;
    }
    let given = cc
        .shared_max_age
        .or(cc.max_age)
        .map(Duration::from_secs)
        .or_else(|| expires_in(headers));
    let fresh = match given {
        // Its age taken off what the origin gives, then capped: ten years (nginx's
        // `expires max`) a CDN has held for one still leave usher its year.
        Some(given) => given.saturating_sub(arrived_age).min(MAX_LIFETIME),
        None => match kind {
            ObjectKind::Playlist => match live_target(body) {
                Some(target) => settings.live_playlist_ttl.unwrap_or(target / 2),
                None => settings.playlist_ttl,
            },
            _ => settings.segment_ttl,
        },
    };
    if fresh.is_zero() {
        return None;
    }
    let stale = match cc.stale_if_error {
        Some(seconds) => Duration::from_secs(seconds),
        None if cc.must_revalidate => Duration::ZERO,
        None => settings.stale_if_error,
    }
    .min(MAX_LIFETIME);
    Some(Lifetime {
        fresh,
        stale,
        arrived_age,
    })
}

/// Which of the other objects the shield takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Not an other object, or one whose extension is listed: kept like a segment.
    Keep,
    /// Fetched through the shield, kept only if its content type is listed.
    ByType,
    /// Past the shield, as a request for it came.
    Pass,
}

/// How the shield treats an object of `kind` at `path`.
pub fn choice(settings: &ShieldConfig, kind: ObjectKind, path: &str) -> Choice {
    if kind != ObjectKind::Other {
        return Choice::Keep;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, ext)| ext);
    if ext.is_some_and(|ext| {
        settings
            .cache_extensions
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(ext))
    }) {
        Choice::Keep
    } else if settings.cache_content_types.is_empty() {
        Choice::Pass
    } else {
        Choice::ByType
    }
}

/// Whether the `Content-Type` in `headers` is one of `cache_content_types` (`type/*`
/// matches any subtype; parameters are ignored).
pub fn type_listed(settings: &ShieldConfig, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media_type = value.split(';').next().unwrap_or("").trim();
    let (kind, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    settings
        .cache_content_types
        .iter()
        .any(|listed| match listed.strip_suffix("/*") {
            Some(listed_kind) => listed_kind.eq_ignore_ascii_case(kind),
            None => listed.eq_ignore_ascii_case(media_type),
        })
}

/// For a live media playlist (a target duration or segments, no `EXT-X-ENDLIST`, not a VOD
/// playlist type; its first segment may not be out yet): the
/// interval at which players reload it: the part target for LL-HLS, else the target
/// duration (1 s when it names neither, or a number no duration holds).
fn live_target(body: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(body).ok()?;
    let mut media = false;
    let mut target = None;
    let mut part_target = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#EXT-X-ENDLIST") || line == "#EXT-X-PLAYLIST-TYPE:VOD" {
            return None;
        }
        if line.starts_with("#EXTINF") || line.starts_with("#EXT-X-PART:") {
            media = true;
        } else if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            // Only a media playlist has one (RFC 8216 §4.4.3.1), also before its first
            // segment is out.
            media = true;
            target = value.parse::<f64>().ok();
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-PART-INF:") {
            part_target = attrs
                .split(',')
                .find_map(|a| a.strip_prefix("PART-TARGET="))
                .and_then(|v| v.parse::<f64>().ok());
        }
    }
    media.then(|| {
        part_target
            .or(target)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .filter(|d| !d.is_zero())
            .map_or(Duration::from_secs(1), |d| d.min(MAX_LIFETIME))
    })
}

/// Keeps each entry for its fresh and stale lifetimes from when it was stored, no longer;
/// a refetched entry replacing a stale one starts over.
pub(super) struct KeepFor;

impl moka::Expiry<Key, Arc<Entry>> for KeepFor {
    fn expire_after_create(&self, _: &Key, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.lifetime.kept())
    }

    fn expire_after_update(
        &self,
        _: &Key,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.lifetime.kept())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Shield settings for unit tests: the shipped defaults, 1 MiB of memory.
    pub(crate) fn settings() -> ShieldConfig {
        ShieldConfig {
            enabled: true,
            memory: 1 << 20,
            max_object_bytes: 1 << 20,
            max_in_flight_bytes: 1 << 20,
            sendfile_min_bytes: crate::config::upstream::DEFAULT_SENDFILE_MIN_BYTES,
            sendfile_dir: None,
            segment_ttl: Duration::from_secs(600),
            playlist_ttl: Duration::from_secs(5),
            live_playlist_ttl: None,
            negative_ttl: Duration::from_secs(2),
            stale_if_error: Duration::from_secs(30),
            cache_extensions: crate::config::upstream::DEFAULT_CACHE_EXTENSIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            cache_content_types: crate::config::upstream::DEFAULT_CACHE_CONTENT_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    fn headers(cache_control: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !cache_control.is_empty() {
            h.insert(CACHE_CONTROL, cache_control.parse().unwrap());
        }
        h
    }

    const LIVE: &[u8] = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\ns1.ts\n";
    const LL: &[u8] =
        b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1.0\n#EXT-X-PART:DURATION=1,URI=\"p.m4s\"\n";
    const VOD: &[u8] = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\ns1.ts\n#EXT-X-ENDLIST\n";
    const MASTER: &[u8] = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n";

    fn fresh(kind: ObjectKind, status: u16, cc: &str, body: &[u8]) -> Option<Duration> {
        let status = StatusCode::from_u16(status).unwrap();
        lifetime(&settings(), kind, status, &headers(cc), body).map(|l| l.fresh)
    }

    #[test]
    fn live_playlists_live_half_a_target_and_vod_ones_the_default() {
        use ObjectKind::Playlist;
        assert_eq!(fresh(Playlist, 200, "", LIVE), Some(Duration::from_secs(2)));
        assert_eq!(
            fresh(Playlist, 200, "", LL),
            Some(Duration::from_millis(500))
        );
        assert_eq!(fresh(Playlist, 200, "", VOD), Some(Duration::from_secs(5)));
        assert_eq!(
            fresh(Playlist, 200, "", MASTER),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            fresh(Playlist, 200, "max-age=1", LIVE),
            Some(Duration::from_secs(1))
        );
        let starting = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n";
        assert_eq!(
            fresh(Playlist, 200, "", starting),
            Some(Duration::from_secs(2)),
            "a live playlist before its first segment is live"
        );
    }

    #[test]
    fn the_origin_decides_when_it_says() {
        use ObjectKind::Segment;
        assert_eq!(fresh(Segment, 200, "", b""), Some(Duration::from_secs(600)));
        assert_eq!(
            fresh(Segment, 200, "public, max-age=60", b""),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            fresh(Segment, 200, "max-age=60, s-maxage=90", b""),
            Some(Duration::from_secs(90))
        );
        assert_eq!(fresh(Segment, 200, "no-store", b""), None);
        assert_eq!(fresh(Segment, 200, "private, max-age=60", b""), None);
        assert_eq!(fresh(Segment, 200, "max-age=0", b""), None);
        let l = lifetime(
            &settings(),
            Segment,
            StatusCode::OK,
            &headers("max-age=5, stale-if-error=120"),
            b"",
        );
        assert_eq!(l.unwrap().stale, Duration::from_secs(120));
    }

    fn with(pairs: &[(http::header::HeaderName, &str)]) -> Option<Lifetime> {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), value.parse().unwrap());
        }
        lifetime(&settings(), ObjectKind::Segment, StatusCode::OK, &h, b"")
    }

    #[test]
    fn what_the_origin_gives_counts_from_when_it_made_the_response() {
        let secs = Duration::from_secs;
        let l = with(&[(CACHE_CONTROL, "max-age=60"), (AGE, "20")]).unwrap();
        assert_eq!((l.fresh, l.arrived_age), (secs(40), secs(20)));
        assert!(
            with(&[(CACHE_CONTROL, "max-age=60"), (AGE, "60")]).is_none(),
            "as old as its lifetime on arrival: not kept"
        );
        // usher's own default counts from arrival; the age is still told.
        let l = with(&[(AGE, "20")]).unwrap();
        assert_eq!((l.fresh, l.arrived_age), (secs(600), secs(20)));
        // An Age that is not a number is ignored; of a list, the first counts.
        let fresh = |pairs: &[(http::header::HeaderName, &str)]| with(pairs).map(|l| l.fresh);
        assert_eq!(
            fresh(&[(CACHE_CONTROL, "max-age=60"), (AGE, "soon")]),
            Some(secs(60))
        );
        assert_eq!(
            fresh(&[(CACHE_CONTROL, "max-age=60"), (AGE, "10, 30")]),
            Some(secs(50))
        );
        // Expires, counted from the response's Date, less its age; max-age wins over it.
        let date = (DATE, "Mon, 07 Dec 2026 10:00:00 GMT");
        let expires = (EXPIRES, "Mon, 07 Dec 2026 10:01:30 GMT");
        assert_eq!(fresh(&[date.clone(), expires.clone()]), Some(secs(90)));
        assert_eq!(
            fresh(&[date.clone(), expires.clone(), (AGE, "30")]),
            Some(secs(60))
        );
        assert_eq!(
            fresh(&[(CACHE_CONTROL, "max-age=10"), date.clone(), expires]),
            Some(secs(10))
        );
        // An Expires in the past, or one that is not a date, means expired: not kept.
        let past = (EXPIRES, "Mon, 07 Dec 2026 09:00:00 GMT");
        assert_eq!(fresh(&[date, past]), None);
        assert_eq!(fresh(&[(EXPIRES, "0")]), None);
        assert_eq!(fresh(&[(EXPIRES, "Thu, 01 Jan 1970 00:00:00 GMT")]), None);
    }

    #[test]
    fn a_lifetime_past_the_cap_is_capped_after_its_age_is_taken_off() {
        let secs = Duration::from_secs;
        let year = MAX_LIFETIME;
        // nginx's `expires max` (ten years), a copy a CDN has held for over a year: nine
        // years left, kept the year usher keeps anything, and its age told as it is.
        let l = with(&[(CACHE_CONTROL, "max-age=315360000"), (AGE, "40000000")]).unwrap();
        assert_eq!((l.fresh, l.arrived_age), (year, secs(40_000_000)));
        let l = with(&[(CACHE_CONTROL, "max-age=315360000"), (AGE, "3600")]).unwrap();
        assert_eq!(
            l.fresh, year,
            "an hour off ten years leaves more than a year"
        );
        // An Age past any number is as old as can be (RFC 9111 §1.2.2), not ignored.
        let huge = "99999999999999999999";
        assert!(with(&[(CACHE_CONTROL, "max-age=3600"), (AGE, huge)]).is_none());
        let l = with(&[(AGE, huge)]).unwrap();
        assert_eq!(l.arrived_age, secs(MAX_AGE_SECONDS));
    }

    #[test]
    fn revalidation_directives_leave_no_stale_window_unless_the_origin_names_one() {
        let stale = |cc: &str| with(&[(CACHE_CONTROL, cc)]).unwrap().stale;
        assert_eq!(stale("max-age=5"), Duration::from_secs(30), "the default");
        assert_eq!(stale("max-age=5, must-revalidate"), Duration::ZERO);
        assert_eq!(stale("max-age=5, Proxy-Revalidate"), Duration::ZERO);
        assert_eq!(
            stale("s-maxage=5"),
            Duration::from_secs(30),
            "s-maxage, meant for the CDNs in front, keeps the operator's window"
        );
        assert_eq!(
            stale("max-age=5, must-revalidate, stale-if-error=60"),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn absurd_numbers_from_the_origin_are_capped_not_fatal() {
        use ObjectKind::{Playlist, Segment};
        let year = Duration::from_secs(365 * 24 * 3600);
        let huge = "max-age=18446744073709551615, stale-if-error=18446744073709551615";
        let l = lifetime(&settings(), Segment, StatusCode::OK, &headers(huge), b"").unwrap();
        assert_eq!((l.fresh, l.stale), (year, year));
        assert_eq!(l.kept(), year * 2);
        let live = b"#EXTM3U\n#EXT-X-TARGETDURATION:1e300\n#EXTINF:4,\ns1.ts\n";
        // A target no duration can hold counts as none: the 1 s default, halved.
        assert_eq!(
            fresh(Playlist, 200, "", live),
            Some(Duration::from_millis(500))
        );
        let nan = b"#EXTM3U\n#EXT-X-TARGETDURATION:NaN\n#EXTINF:4,\ns1.ts\n";
        assert_eq!(
            fresh(Playlist, 200, "", nan),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn errors_are_not_kept_but_a_404_briefly() {
        use ObjectKind::Segment;
        assert_eq!(fresh(Segment, 404, "", b""), Some(Duration::from_secs(2)));
        for status in [500, 502, 503, 403, 206] {
            assert_eq!(fresh(Segment, status, "max-age=60", b""), None, "{status}");
        }
        let mut h = headers("max-age=60");
        h.insert(SET_COOKIE, "a=b".parse().unwrap());
        assert!(lifetime(&settings(), Segment, StatusCode::OK, &h, b"").is_none());
        for vary in ["*", "Origin, *", " * ,Accept-Encoding"] {
            let mut h = headers("max-age=60");
            h.insert(VARY, vary.parse().unwrap());
            let kept = lifetime(&settings(), Segment, StatusCode::OK, &h, b"");
            assert!(kept.is_none(), "Vary: {vary}");
        }
        let mut h = headers("max-age=60");
        h.insert(VARY, "Origin, Accept-Encoding".parse().unwrap());
        assert!(lifetime(&settings(), Segment, StatusCode::OK, &h, b"").is_some());
    }

    #[test]
    fn other_objects_are_chosen_by_extension_then_by_content_type() {
        use ObjectKind::{Other, Segment};
        let s = settings();
        assert_eq!(choice(&s, Segment, "/a/s1.ts"), Choice::Keep);
        for path in ["/a/key.bin", "/a/thumb-001.JPG", "/a/t.webp", "/a/x.png"] {
            assert_eq!(choice(&s, Other, path), Choice::Keep, "{path}");
        }
        for path in ["/a/key", "/a/notes.txt", "/a/"] {
            assert_eq!(choice(&s, Other, path), Choice::ByType, "{path}");
        }
        let typed = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, ct.parse().unwrap());
            type_listed(&s, &h)
        };
        assert!(typed("application/octet-stream"));
        assert!(typed("image/jpeg"));
        assert!(typed("Text/VTT; charset=utf-8"));
        assert!(!typed("text/plain"));
        assert!(!typed("application/json"));
        assert!(!type_listed(&s, &HeaderMap::new()), "no type, not kept");
        let mut none = s.clone();
        none.cache_content_types.clear();
        assert_eq!(choice(&none, Other, "/a/key"), Choice::Pass);
    }
}
