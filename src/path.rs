//! Request paths: one canonical form before the access check and before forwarding, so the
//! path that was authorised is exactly the path that is fetched.

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// Not starting with `/` (absolute-form and authority-form targets are not proxied).
    #[error("path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding")]
    BadEscape,
    /// An encoded `/`, `\` or NUL, a raw `\`, or a control character: ways to smuggle a
    /// different path past the check. Also a segment that an upstream would read as `.`,
    /// `..` or more than one segment: `..;x` (Tomcat and Jetty cut `;…` off a segment),
    /// `%252e%252e` and `%252f` (servers that decode twice), `%C0%AE%C0%AE` (servers that
    /// read overlong UTF-8).
    #[error("forbidden character in path")]
    Forbidden,
    /// `..` climbing above the root.
    #[error("path climbs above the root")]
    AboveRoot,
}

/// Normalises a request path: decodes percent-escapes of unreserved characters (so
/// `%2e%2e` is `..`), upper-cases the hex of the others, collapses repeated slashes,
/// resolves `.` and `..`, and keeps a trailing slash.
///
/// # Errors
/// [`BadPath`] for anything that cannot be made canonical safely.
pub fn normalize(raw: &str) -> Result<String, BadPath> {
    normalized(raw).map(std::borrow::Cow::into_owned)
}

/// [`normalize`], borrowing `raw` when it is canonical already (no copy).
///
/// # Errors
/// As [`normalize`].
pub fn normalized(raw: &str) -> Result<std::borrow::Cow<'_, str>, BadPath> {
    if !raw.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    if is_canonical(raw) {
        // What nearly every player sends: nothing to decode, collapse or resolve.
        return Ok(std::borrow::Cow::Borrowed(raw));
    }
    rebuild(raw).map(std::borrow::Cow::Owned)
}

/// Whether `raw` (absolute) is already what [`normalize`] makes of it: printable ASCII
/// without `%` or `\`, and no empty, `.` or `..` segment (but a trailing slash).
fn is_canonical(raw: &str) -> bool {
    let plain = raw
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'%' && b != b'\\');
    let mut segments = raw[1..].split('/').peekable();
    plain
        && std::iter::from_fn(|| segments.next().map(|s| (s, segments.peek().is_none()))).all(
            |(segment, last)| match segment {
                "" => last,
                "." | ".." => false,
                _ => !segment.starts_with(".;") && !segment.starts_with("..;"),
            },
        )
}

/// [`normalize`] the long way: decode, then resolve segment by segment.
fn rebuild(raw: &str) -> Result<String, BadPath> {
    let decoded = decode_unreserved(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(BadPath::AboveRoot)?;
            }
            other if hides_a_dot_segment(other) => return Err(BadPath::Forbidden),
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    let ends_in_dir = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if out.is_empty() || ends_in_dir {
        out.push('/');
    }
    Ok(out)
}

/// Whether `segment` (decoded once, as usher forwards it) is `.` or `..` to an upstream
/// that cuts path parameters (`;…`) off segments, or that decodes the path once or twice
/// more; or splits there into more segments, or holds a control character (`%2500`: a
/// NUL, where a C server may cut the name short) once decoded again.
fn hides_a_dot_segment(segment: &str) -> bool {
    // Decoded as bytes, not as text: an overlong sequence split across escapes of
    // escapes (`%E0%2580%AE`) only shows once its bytes meet, and text would have made
    // them U+FFFD first.
    let mut view = std::borrow::Cow::Borrowed(segment.as_bytes());
    for _ in 0..3 {
        let text = String::from_utf8_lossy(&view);
        let name = text.split(';').next().unwrap_or_default();
        if matches!(name, "." | "..")
            || text.contains(['/', '\\'])
            || text.contains(|c: char| c.is_control())
            || has_overlong_sequence(&view)
        {
            return true;
        }
        if !view.contains(&b'%') {
            return false;
        }
        if has_overlong_escape(&view) {
            return true;
        }
        view = std::borrow::Cow::Owned(crate::form::unescape_bytes(&view));
    }
    false
}

/// Whether `bytes` hold an overlong UTF-8 sequence: a lead byte `C0` or `C1` (never
/// valid), `E0` or `F0` followed by a byte below `A0` or `90`, or a five- or six-byte
/// lead (`F8` to `FD`) followed by a continuation byte. Strict decoders refuse
/// them; lenient ones read `C0 AE` as `.` and `C0 AF` as `/` (Tomcat's CVE-2008-2938,
/// early IIS): `%C0%AE%C0%AE` is `..` to them.
fn has_overlong_sequence(bytes: &[u8]) -> bool {
    (0..bytes.len()).any(|i| is_overlong(bytes[i], bytes.get(i + 1).copied()))
}

/// Whether `lead`, followed by `next`, starts an overlong UTF-8 sequence.
fn is_overlong(lead: u8, next: Option<u8>) -> bool {
    match lead {
        0xC0 | 0xC1 => true,
        0xE0 => next.is_some_and(|b| (0x80..0xA0).contains(&b)),
        0xF0 => next.is_some_and(|b| (0x80..0x90).contains(&b)),
        // The five- and six-byte forms RFC 3629 took out, which old decoders still read.
        0xF8..=0xFD => next.is_some_and(|b| (0x80..0xC0).contains(&b)),
        _ => false,
    }
}

/// Whether `text` holds escapes of an overlong UTF-8 sequence (see
/// [`has_overlong_sequence`]), as an upstream decoding it once more would read them.
fn has_overlong_escape(text: &[u8]) -> bool {
    let escape_at = |i: usize| -> Option<u8> {
        let hex = text.get(i + 1..i + 3).filter(|_| text[i] == b'%')?;
        hex_value(hex[0])
            .zip(hex_value(hex[1]))
            .map(|(hi, lo)| hi << 4 | lo)
    };
    (0..text.len()).any(|i| escape_at(i).is_some_and(|lead| is_overlong(lead, escape_at(i + 3))))
}

fn decode_unreserved(raw: &str) -> Result<String, BadPath> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BadPath::BadEscape)?;
            let value = hex_value(hex[0])
                .zip(hex_value(hex[1]))
                .map(|(hi, lo)| hi << 4 | lo)
                .ok_or(BadPath::BadEscape)?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(value as char);
            } else if matches!(value, b'/' | b'\\') || value < 0x20 || value == 0x7f {
                return Err(BadPath::Forbidden);
            } else {
                out.push('%');
                out.push(hex[0].to_ascii_uppercase() as char);
                out.push(hex[1].to_ascii_uppercase() as char);
            }
            i += 3;
        } else if b == b'\\' || !(0x20..0x7f).contains(&b) {
            return Err(BadPath::Forbidden);
        } else {
            out.push(b as char);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// What a request asks for, judged from its path: the label for metrics and the switch
/// between rewriting and streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `.m3u8`: rewritten (master or media is known once the body is read).
    Playlist,
    /// Media segments: `.ts`, `.m4s`, `.aac`, `.vtt`, …
    Segment,
    /// Initialisation sections (`EXT-X-MAP`), recognised by an `init` file name.
    Init,
    /// Content keys: `.key`.
    Key,
    /// Anything else under a routed prefix.
    Other,
}

impl ObjectKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Playlist,
        ObjectKind::Segment,
        ObjectKind::Init,
        ObjectKind::Key,
        ObjectKind::Other,
    ];

    /// Classifies a normalised path by its file name (the extension in any case).
    pub fn of(path: &str) -> Self {
        let name = path.rsplit('/').next().unwrap_or(path);
        let ext = name.rsplit_once('.').map_or("", |(_, ext)| ext);
        // Extensions longer than any known one are nothing known; the rest are lowered on
        // the stack, since this runs more than once per request.
        let mut lowered = [0u8; 6];
        let Some(buf) = lowered.get_mut(..ext.len()) else {
            return ObjectKind::Other;
        };
        buf.copy_from_slice(ext.as_bytes());
        buf.make_ascii_lowercase();
        match &*buf {
            b"m3u8" | b"m3u" => ObjectKind::Playlist,
            b"key" => ObjectKind::Key,
            b"mp4" | b"m4s" | b"cmfv" | b"cmfa" | b"m4v" | b"m4a" if name.contains("init") => {
                ObjectKind::Init
            }
            b"ts" | b"m4s" | b"mp4" | b"m4v" | b"m4a" | b"aac" | b"ac3" | b"ec3" | b"mp3"
            | b"vtt" | b"webvtt" | b"cmfv" | b"cmfa" | b"cmft" => ObjectKind::Segment,
            _ => ObjectKind::Other,
        }
    }

    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Playlist => "playlist",
            ObjectKind::Segment => "segment",
            ObjectKind::Init => "init",
            ObjectKind::Key => "key",
            ObjectKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_unchanged() {
        for p in ["/", "/demo/master.m3u8", "/a/b/", "/a%20b.ts", "/a%3Fb"] {
            assert_eq!(normalize(p).as_deref(), Ok(p));
        }
    }

    #[test]
    fn the_short_way_agrees_with_the_long_way_on_every_short_path() {
        // Every absolute path of up to 7 characters over the characters that matter.
        let alphabet = ['/', '.', 'a', '%', '2', 'e', '\\', ' '];
        let mut paths = vec!["/".to_owned()];
        let mut frontier = paths.clone();
        for _ in 0..6 {
            frontier = frontier
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(frontier.iter().cloned());
        }
        let mut short = 0;
        for path in &paths {
            if is_canonical(path) {
                short += 1;
                assert_eq!(rebuild(path).as_deref(), Ok(path.as_str()), "{path:?}");
            }
            assert_eq!(normalize(path), rebuild(path), "{path:?}");
        }
        assert!(
            short > 1000,
            "the short way is taken ({short} of {})",
            paths.len()
        );
    }

    #[test]
    fn dots_slashes_and_escapes_are_resolved() {
        assert_eq!(normalize("//demo///x.ts").unwrap(), "/demo/x.ts");
        assert_eq!(normalize("/demo/./a/../x.ts").unwrap(), "/demo/x.ts");
        assert_eq!(
            normalize("/demo/%2e%2e/secret/x.ts").unwrap(),
            "/secret/x.ts"
        );
        assert_eq!(normalize("/demo/%2E/x.ts").unwrap(), "/demo/x.ts");
        assert_eq!(normalize("/%64emo/x.ts").unwrap(), "/demo/x.ts");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a%3fb").unwrap(), "/a%3Fb");
    }

    #[test]
    fn escapes_that_change_meaning_are_refused() {
        assert_eq!(
            normalize("/a/..%2f..%2fetc/passwd"),
            Err(BadPath::Forbidden)
        );
        assert_eq!(normalize("/a%5c..%5cb"), Err(BadPath::Forbidden));
        assert_eq!(normalize("/a%00.ts"), Err(BadPath::Forbidden));
        assert_eq!(normalize("/a\\b"), Err(BadPath::Forbidden));
        assert_eq!(normalize("/a%zz"), Err(BadPath::BadEscape));
        assert_eq!(normalize("/a%2"), Err(BadPath::BadEscape));
        assert_eq!(normalize("/../etc/passwd"), Err(BadPath::AboveRoot));
        assert_eq!(normalize("/a/%2e%2e/%2e%2e/x"), Err(BadPath::AboveRoot));
        assert_eq!(normalize("demo/x.ts"), Err(BadPath::NotAbsolute));
        // What an upstream would read as `..` or as another segment once it cuts `;…` off
        // or decodes again: a way around a public prefix to the protected one beside it.
        for hidden in [
            "/vod/free/..;/premium/seg1.ts",
            "/vod/free/.;x/seg1.ts",
            "/vod/free/%2E%2E%3B/premium/seg1.ts",
            "/vod/free/%252e%252e/premium/seg1.ts",
            "/vod/free%252fpremium/seg1.ts",
            "/vod/free%255cpremium/seg1.ts",
            "/vod/free/..%2500/premium/seg1.ts",
            // Overlong UTF-8: `.` and `/` to lenient decoders, once or twice decoded.
            "/vod/free/%C0%AE%C0%AE/premium/seg1.ts",
            "/vod/free/%c0%ae%c0%ae/premium/seg1.ts",
            "/vod/free%C0%AFpremium/seg1.ts",
            "/vod/free/%E0%80%AE%E0%80%AE/premium/seg1.ts",
            "/vod/free/%F0%80%80%AE/premium/seg1.ts",
            "/vod/free/%25C0%25AE%25C0%25AE/premium/seg1.ts",
            // Split across escapes of escapes: whole only once decoded twice.
            "/vod/free/%E0%2580%AE%E0%2580%AE/premium/seg1.ts",
            "/vod/free/%C0%25AE%C0%25AE/premium/seg1.ts",
            // Five and six bytes long, before RFC 3629.
            "/vod/free/%F8%80%80%80%AE%F8%80%80%80%AE/premium/seg1.ts",
            "/vod/free/%FC%80%80%80%80%AE%FC%80%80%80%80%AE/premium/seg1.ts",
        ] {
            assert_eq!(normalize(hidden), Err(BadPath::Forbidden), "{hidden}");
        }
        // Parameters and escaped percents in ordinary names stay as they were.
        assert_eq!(normalize("/a/b;v=2/c.ts").unwrap(), "/a/b;v=2/c.ts");
        assert_eq!(normalize("/a/100%25/x.ts").unwrap(), "/a/100%25/x.ts");
        assert_eq!(normalize("/a/..b;c/.x").unwrap(), "/a/..b;c/.x");
        // Well-formed UTF-8 names pass: `é`, `ঀ`, `😀`.
        for name in ["/a/caf%C3%A9.ts", "/a/%E0%A6%80.ts", "/a/%F0%9F%98%80.ts"] {
            assert_eq!(normalize(name).as_deref(), Ok(name));
        }
        assert_eq!(normalize("http://evil/x"), Err(BadPath::NotAbsolute));
    }

    #[test]
    fn kinds_by_file_name() {
        assert_eq!(ObjectKind::of("/a/master.m3u8"), ObjectKind::Playlist);
        assert_eq!(ObjectKind::of("/a/seg_001.ts"), ObjectKind::Segment);
        assert_eq!(ObjectKind::of("/a/part.M4S"), ObjectKind::Segment);
        assert_eq!(ObjectKind::of("/a/init.mp4"), ObjectKind::Init);
        assert_eq!(ObjectKind::of("/a/key.key"), ObjectKind::Key);
        assert_eq!(ObjectKind::of("/a/"), ObjectKind::Other);
        assert_eq!(ObjectKind::of("/a/readme"), ObjectKind::Other);
        assert_eq!(ObjectKind::of("/a/seg.WebVTT"), ObjectKind::Segment);
        assert_eq!(ObjectKind::of("/a/seg.tsxxxxxxxx"), ObjectKind::Other);
        for kind in ObjectKind::ALL {
            assert_eq!(
                ObjectKind::ALL[kind as usize],
                kind,
                "ALL is in declaration order"
            );
        }
    }
}
