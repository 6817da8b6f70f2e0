//! The rewriter against playlists shaped like real packagers' output (fixtures in
//! `tests/fixtures/playlists/`), checked three ways: exact expected text for the small ones,
//! a line-by-line comparison proving only URI places changed, and m3u8-rs as an independent
//! parser (an oracle only: it cannot round-trip a playlist byte for byte).

use std::fmt::Write as _;

use m3u8_rs::{Playlist, SessionDataField};

use super::*;

const MASTER: &str = include_str!("../../tests/fixtures/playlists/master.m3u8");
const MASTER_CRLF: &str = include_str!("../../tests/fixtures/playlists/master_crlf.m3u8");
const MEDIA_VOD: &str = include_str!("../../tests/fixtures/playlists/media_vod.m3u8");
const MEDIA_BYTERANGE: &str = include_str!("../../tests/fixtures/playlists/media_byterange.m3u8");
const MEDIA_LLHLS: &str = include_str!("../../tests/fixtures/playlists/media_llhls.m3u8");
const MEDIA_ABSOLUTE: &str = include_str!("../../tests/fixtures/playlists/media_absolute.m3u8");
const MEDIA_SAMPLE_AES: &str =
    include_str!("../../tests/fixtures/playlists/media_encrypted_sample_aes.m3u8");
const BAD_NO_HEADER: &str = include_str!("../../tests/fixtures/playlists/bad_no_header.m3u8");
const BAD_UNTERMINATED_QUOTE: &str =
    include_str!("../../tests/fixtures/playlists/bad_unterminated_quote.m3u8");
const BAD_STREAM_INF_LAST: &str =
    include_str!("../../tests/fixtures/playlists/bad_stream_inf_last.m3u8");

const PARAM: &str = "token";
const TOKEN: &str = "TOK";

/// What a rerouted URI loses in front of its path: the origin base, absolute or
/// scheme-relative, or a variable the fixture defines as that base.
const REROUTED_PREFIXES: &[&str] = &[
    "http://origin.test:8000/hls",
    "//origin.test:8000/hls",
    "{$origin}",
];

fn rewrite_with(
    body: &str,
    token: &str,
    request_query: Option<&str>,
) -> Result<Rewritten, ManifestError> {
    let ctx = Rewrite {
        origin_bases: &[OriginBase::parse("http://origin.test:8000/hls").unwrap()],
        param: PARAM,
        token,
        request_query,
    };
    rewrite(body.as_bytes(), &ctx)
}

fn rw(body: &str) -> Rewritten {
    rewrite_with(body, TOKEN, None).unwrap_or_else(|e| panic!("rewrite failed: {e}"))
}

/// (kind, tokenized, rerouted, foreign, unresolved)
fn counts(r: &Rewritten) -> (PlaylistKind, usize, usize, usize, usize) {
    (r.kind, r.tokenized, r.rerouted, r.foreign, r.unresolved)
}

fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// The playlists that rewrite, with what the rewriter must report for each (counted by
/// hand from the fixture).
#[allow(clippy::type_complexity)]
const GOOD: &[(&str, &str, (PlaylistKind, usize, usize, usize, usize))] = &[
    ("master", MASTER, (PlaylistKind::Master, 10, 1, 1, 0)),
    (
        "master_crlf",
        MASTER_CRLF,
        (PlaylistKind::Master, 10, 1, 1, 0),
    ),
    ("media_vod", MEDIA_VOD, (PlaylistKind::Media, 13, 0, 0, 0)),
    (
        "media_byterange",
        MEDIA_BYTERANGE,
        (PlaylistKind::Media, 5, 0, 0, 0),
    ),
    (
        "media_llhls",
        MEDIA_LLHLS,
        (PlaylistKind::Media, 15, 0, 0, 0),
    ),
    (
        "media_absolute",
        MEDIA_ABSOLUTE,
        (PlaylistKind::Media, 0, 7, 6, 0),
    ),
    (
        "media_sample_aes",
        MEDIA_SAMPLE_AES,
        (PlaylistKind::Media, 6, 0, 2, 0),
    ),
];

// --- line-by-line comparison --------------------------------------------------------------

/// Whether `line` (without its ending) is a place the rewriter may change: a URI line, or a
/// tag whose attribute list names a URI.
fn is_uri_place(line: &str) -> bool {
    match line.strip_prefix('#') {
        None => !line.trim().is_empty(),
        Some(tag) => {
            let name = tag.split(':').next().unwrap_or(tag);
            URI_TAGS.iter().any(|(tag_name, _)| *tag_name == name)
        }
    }
}

/// How one URI place changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Tokenized,
    Rerouted,
}

/// Checks that `rewritten` is `original` with only URI places changed, each by exactly one
/// `token` insertion (joined with `?` or `&` as the query needs, before any fragment) and,
/// for rerouted URIs, the loss of the origin base in front. Line count and line endings
/// must be unchanged. Returns the changes, in order, with their 1-based line numbers.
fn assert_only_uris_changed(original: &str, rewritten: &str, token: &str) -> Vec<(usize, Change)> {
    let before = lines(original);
    let after = lines(rewritten);
    assert_eq!(before.len(), after.len(), "line count changed");
    let inserted = format!("{PARAM}={token}");
    let mut changes = Vec::new();
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        let line_no = n + 1;
        if b == a {
            continue;
        }
        let (b_body, b_eol) = split_eol(b);
        let (a_body, a_eol) = split_eol(a);
        assert_eq!(b_eol, a_eol, "line {line_no}: line ending changed");
        assert!(
            is_uri_place(b_body),
            "line {line_no} is no URI place but changed:\n  {b_body}\n  {a_body}"
        );
        // Find the one insertion that turns the original (or its rerouted form) into `a`.
        let mut found = None;
        for (at, _) in a_body.match_indices(&inserted) {
            let end = at + inserted.len();
            let joined_with = a_body[..at].chars().last();
            // The separator is part of the insertion unless the original already ended
            // its query with one (`seg.ts?`).
            let starts = match joined_with {
                Some('?' | '&') => vec![at - 1, at],
                _ => vec![at],
            };
            for start in starts {
                let without = format!("{}{}", &a_body[..start], &a_body[end..]);
                let change = if without == b_body {
                    Change::Tokenized
                } else if REROUTED_PREFIXES
                    .iter()
                    .any(|prefix| b_body.replacen(prefix, "", 1) == without)
                {
                    Change::Rerouted
                } else {
                    continue;
                };
                found = Some((start, end, change));
            }
        }
        let Some((start, end, change)) = found else {
            panic!("line {line_no}: not a single token insertion:\n  {b_body}\n  {a_body}");
        };
        // The URI the token went into: from its opening quote in a tag, or the whole line.
        let uri_start = if a_body.starts_with('#') {
            a_body[..start].rfind('"').expect("URI attribute is quoted") + 1
        } else {
            0
        };
        let uri_before = &a_body[uri_start..start];
        let separator = &a_body[start..end - inserted.len()];
        match separator {
            "?" => assert!(
                !uri_before.contains('?'),
                "line {line_no}: `?` joins a URI that already has a query: {a_body}"
            ),
            // A variable may supply the query (`seg.ts{$q}`).
            "&" => assert!(
                uri_before.contains('?') || uri_before.contains("{$"),
                "line {line_no}: `&` joins a URI without a query: {a_body}"
            ),
            "" => assert!(
                uri_before.ends_with('?') || uri_before.ends_with('&'),
                "line {line_no}: token glued to the path: {a_body}"
            ),
            other => panic!("line {line_no}: separator {other:?}"),
        }
        assert!(
            !uri_before.contains('#'),
            "line {line_no}: token after the fragment: {a_body}"
        );
        let next = a_body[end..].chars().next();
        assert!(
            matches!(next, None | Some('"' | '#' | ' ' | '\t')),
            "line {line_no}: token not at the end of the URI's query: {a_body}"
        );
        changes.push((line_no, change));
    }
    changes
}

#[test]
fn only_uri_places_change_in_every_fixture() {
    for (name, text, expected) in GOOD {
        let out = rw(text);
        assert_eq!(counts(&out), *expected, "{name}: counts");
        let changes = assert_only_uris_changed(text, &out.text, TOKEN);
        let tokenized = changes
            .iter()
            .filter(|(_, c)| *c == Change::Tokenized)
            .count();
        let rerouted = changes
            .iter()
            .filter(|(_, c)| *c == Change::Rerouted)
            .count();
        assert_eq!(
            (tokenized, rerouted),
            (out.tokenized, out.rerouted),
            "{name}: changed lines disagree with the counts"
        );
        assert_eq!(
            out.text.ends_with('\n'),
            text.ends_with('\n'),
            "{name}: final newline"
        );
    }
}

#[test]
#[should_panic(expected = "is no URI place but changed")]
fn the_line_check_catches_a_changed_tag() {
    assert_only_uris_changed(
        "#EXTM3U\n#EXT-X-VERSION:3\n",
        "#EXTM3U\n#EXT-X-VERSION:3?token=TOK\n",
        TOKEN,
    );
}

#[test]
#[should_panic(expected = "not a single token insertion")]
fn the_line_check_catches_a_mangled_uri() {
    assert_only_uris_changed("#EXTM3U\nseg1.ts\n", "#EXTM3U\nseg2.ts?token=TOK\n", TOKEN);
}

#[test]
#[should_panic(expected = "`?` joins a URI that already has a query")]
fn the_line_check_catches_a_second_question_mark() {
    assert_only_uris_changed(
        "#EXTM3U\nseg1.ts?a=1\n",
        "#EXTM3U\nseg1.ts?a=1?token=TOK\n",
        TOKEN,
    );
}

// --- master playlists -----------------------------------------------------------------------

#[test]
fn master_tokenizes_variants_renditions_iframes_session_and_steering() {
    let out = rw(MASTER);
    assert_eq!(counts(&out), (PlaylistKind::Master, 10, 1, 1, 0));
    let text = &out.text;
    for expected in [
        "\nvideo/1080p/prog_index.m3u8?token=TOK\n",
        "\nvideo/720p/prog_index.m3u8?profile=main&token=TOK\n",
        // {$origin} is the origin base: routed back through usher, the variable spelt out.
        "\n/video/480p/prog_index.m3u8?token=TOK\n",
        r#"URI="audio/en/prog_index.m3u8?token=TOK","#,
        r#"URI="audio/fr/prog_index.m3u8?token=TOK","#,
        r#"URI="subs/en/prog_index.m3u8?token=TOK","#,
        r#"URI="video/1080p/iframe_index.m3u8?token=TOK""#,
        r#"URI="video/720p/iframe_index.m3u8?token=TOK""#,
        r#"#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="keys/bbb.key?token=TOK","#,
        r#"URI="meta/chapters.json?token=TOK","#,
        r#"#EXT-X-CONTENT-STEERING:SERVER-URI="steering/manifest.json?video=bbb&token=TOK",PATHWAY-ID="CDN-A""#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // Left exactly as they were: the FairPlay session key, the VALUE-only session data
    // (whose value merely mentions `URI=`), the captions rendition without a URI, the
    // define, comments and blank lines.
    for unchanged in [
        r#"#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://fps.example.com/bbb-4c1f",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1""#,
        r#"#EXT-X-SESSION-DATA:DATA-ID="com.example.title",VALUE="Big Buck Bunny, URI=poster.jpg",LANGUAGE="en""#,
        r#"#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",LANGUAGE="en",NAME="English (CC)",DEFAULT=YES,AUTOSELECT=YES,INSTREAM-ID="CC1""#,
        r#"#EXT-X-DEFINE:NAME="origin",VALUE="http://origin.test:8000/hls""#,
        "## Generated with https://github.com/shaka-project/shaka-packager version v3.2.0-a7e6f8b-release",
        "# Audio renditions",
        "# Subtitles and captions",
    ] {
        assert!(
            lines(text).iter().any(|l| split_eol(l).0 == unchanged),
            "changed: {unchanged}"
        );
    }
    assert_eq!(text.matches("token=").count(), 11);
    assert!(!text.contains("skd://fps.example.com/bbb-4c1f?"));
}

#[test]
fn master_crlf_fixture_is_the_master_with_crlf() {
    assert_eq!(MASTER_CRLF, MASTER.replace('\n', "\r\n"));
}

#[test]
fn crlf_line_endings_are_kept() {
    let lf = rw(MASTER);
    let crlf = rw(MASTER_CRLF);
    assert_eq!(crlf.text, lf.text.replace('\n', "\r\n"));
    assert_eq!(counts(&crlf), counts(&lf));
    let out_lines = lines(&crlf.text);
    assert_eq!(out_lines.len(), lines(MASTER_CRLF).len());
    assert!(out_lines.iter().all(|l| l.ends_with("\r\n")));
    // The token goes before the CR, not after it.
    assert!(crlf
        .text
        .contains("video/1080p/prog_index.m3u8?token=TOK\r\n"));
    assert!(!crlf.text.contains("\r?token"));
    assert!(!crlf.text.contains("\r&token"));
}

#[test]
fn master_kind_comes_from_any_master_tag() {
    let iframes_only = "#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"i.m3u8\"\n";
    assert_eq!(rw(iframes_only).kind, PlaylistKind::Master);
    let media_only = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"a\",URI=\"a.m3u8\"\n";
    assert_eq!(rw(media_only).kind, PlaylistKind::Master);
    // EXT-X-MEDIA-SEQUENCE is not EXT-X-MEDIA.
    let media = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:4,\ns.ts\n";
    assert_eq!(rw(media).kind, PlaylistKind::Media);
    assert_eq!(PlaylistKind::Master.as_str(), "master");
    assert_eq!(PlaylistKind::Media.as_str(), "media");
}

#[test]
fn variant_uri_may_follow_comments_and_blank_lines() {
    let body = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n\n# low\nlow.m3u8";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n\n# low\nlow.m3u8?token=TOK"
    );
    assert_eq!(counts(&out), (PlaylistKind::Master, 1, 0, 0, 0));
}

// --- media playlists ------------------------------------------------------------------------

#[test]
fn vod_keys_maps_queries_and_untouched_tags() {
    let out = rw(MEDIA_VOD);
    assert_eq!(counts(&out), (PlaylistKind::Media, 13, 0, 0, 0));
    let text = &out.text;
    for expected in [
        "#EXT-X-MAP:URI=\"init.mp4?token=TOK\"\n",
        "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/content-1.key?token=TOK\",IV=0x7B2F1C3A5E9D4B8A0C6F2E1D3B5A7C9E\n",
        "\nseg_00000.m4s?token=TOK\n",
        "\nseg_00001.m4s?cdn=edge-3&v=2&token=TOK\n",
        // An empty query is reused, not doubled.
        "\nseg_00002.m4s?token=TOK\n",
        "#EXT-X-MAP:URI=\"ads/spot-17/init.mp4?token=TOK\"\n",
        "\nads/spot-17/seg_00002.m4s?token=TOK\n",
        "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/content-1.key?rotation=2&token=TOK\",IV=0x7B2F1C3A5E9D4B8A0C6F2E1D3B5A7C9F\n",
        "\nseg_00004.m4s?token=TOK\n#EXT-X-ENDLIST\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let date_range = lines(MEDIA_VOD)
        .into_iter()
        .find(|l| l.starts_with("#EXT-X-DATERANGE"))
        .unwrap();
    assert!(date_range.contains("URI=seg_99999.m4s"));
    assert!(text.contains(date_range), "DATERANGE changed");
    assert!(text.contains("\n#EXT-X-KEY:METHOD=NONE\n"));
    assert!(text.contains("\n#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:18.018Z\n"));
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 2);
}

#[test]
fn byterange_playlist_exact_output() {
    let out = rw(MEDIA_BYTERANGE);
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXT-X-TARGETDURATION:6\n\
         #EXT-X-VERSION:7\n\
         #EXT-X-MEDIA-SEQUENCE:1\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n\
         #EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-MAP:URI=\"main.mp4?token=TOK\",BYTERANGE=\"719@0\"\n\
         #EXTINF:6.00000,\t\n\
         #EXT-X-BYTERANGE:1508128@719\n\
         main.mp4?token=TOK\n\
         #EXTINF:6.00000,\t\n\
         #EXT-X-BYTERANGE:1494207@1508847\n\
         main.mp4?token=TOK\n\
         #EXTINF:6.00000,\t\n\
         #EXT-X-BYTERANGE:1537621\n\
         main.mp4?token=TOK\n\
         #EXTINF:2.50000,\t\n\
         #EXT-X-BYTERANGE:612398@4540675\n\
         main.mp4?token=TOK\n\
         #EXT-X-ENDLIST\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 5, 0, 0, 0));
}

#[test]
fn sample_aes_multi_keyformat_exact_output() {
    let out = rw(MEDIA_SAMPLE_AES);
    assert_eq!(
        out.text,
        r#"#EXTM3U
#EXT-X-VERSION:5
#EXT-X-TARGETDURATION:10
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="keys/k0.key?token=TOK",IV=0x3C7E1A9B5D2F4C6E8A0B1D3F5E7A9C0B,KEYFORMAT="identity",KEYFORMATVERSIONS="1"
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://k0",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"
#EXTINF:10.000,
seg0.ts?token=TOK
#EXTINF:10.000,
seg1.ts?token=TOK
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="keys/k1.key?token=TOK",IV=0x3C7E1A9B5D2F4C6E8A0B1D3F5E7A9C0C,KEYFORMAT="identity",KEYFORMATVERSIONS="1"
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://k1",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"
#EXTINF:10.000,
seg2.ts?token=TOK
#EXTINF:7.500,
seg3.ts?token=TOK
#EXT-X-ENDLIST
"#
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 6, 0, 2, 0));
}

#[test]
fn absolute_uris_exact_output() {
    let out = rw(MEDIA_ABSOLUTE);
    assert_eq!(
        out.text,
        r#"#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:10
#EXT-X-MEDIA-SEQUENCE:1450
#EXT-X-DISCONTINUITY-SEQUENCE:3
#EXT-X-KEY:METHOD=AES-128,URI="/keys/live-1450.key?token=TOK",IV=0x000000000000000000000000000005AA
#EXT-X-MAP:URI="/live/init.mp4?token=TOK"
#EXTINF:10.010,
/live/seg1450.m4s?token=TOK
#EXTINF:10.010,
/live/seg1451.m4s?m=1714564800&token=TOK
#EXTINF:10.010,
/live/seg1452.m4s?token=TOK
#EXT-X-DISCONTINUITY
#EXT-X-KEY:METHOD=AES-128,URI="data:text/plain;base64,AAECAwQFBgcICQoLDA0ODw==",IV=0x00000000000000000000000000000001
#EXT-X-MAP:URI="https://ads.cdn.example.net/creative/8841/init.mp4"
#EXTINF:15.000,
https://ads.cdn.example.net/creative/8841/seg0.m4s
#EXTINF:15.000,
http://origin.test:8000/slate/slate-15s.m4s
#EXT-X-DISCONTINUITY
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://fps.example.com/live-1453",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"
#EXT-X-MAP:URI="/live/init.mp4?token=TOK"
#EXTINF:10.010,
/live/seg1453.m4s?token=TOK
#EXTINF:10.010,
http://origin.test/hls/live/seg1454.m4s
"#
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 7, 6, 0));
    // The token never goes to another host or scheme.
    for line in lines(&out.text) {
        if line.contains("://") || line.contains("data:") {
            assert!(!line.contains("token="), "token leaked: {line}");
        }
    }
}

#[test]
fn llhls_parts_preload_hint_and_rendition_reports() {
    let out = rw(MEDIA_LLHLS);
    assert_eq!(counts(&out), (PlaylistKind::Media, 15, 0, 0, 0));
    let text = &out.text;
    for expected in [
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.012,CAN-SKIP-UNTIL=24.0\n",
        "#EXT-X-PART-INF:PART-TARGET=1.004\n",
        "#EXT-X-MAP:URI=\"init.mp4?token=TOK\"\n",
        "\nfileSequence268.m4s?token=TOK\n",
        "#EXT-X-PART:DURATION=1.00000,URI=\"fileSequence269.m4s?token=TOK\",BYTERANGE=\"193848@0\",INDEPENDENT=YES\n",
        "#EXT-X-PART:DURATION=1.00000,URI=\"fileSequence269.m4s?token=TOK\",BYTERANGE=\"176003@549635\"\n",
        "\nfileSequence269.m4s?token=TOK\n",
        "#EXT-X-PART:DURATION=1.00000,INDEPENDENT=YES,URI=\"filePart270.0.m4s?token=TOK\"\n",
        "#EXT-X-PART:DURATION=1.00000,URI=\"filePart270.1.m4s?token=TOK\"\n",
        "#EXT-X-PART:DURATION=1.00000,INDEPENDENT=YES,URI=\"filePart270.2.m4s?token=TOK\"\n",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"filePart270.3.m4s?token=TOK\"\n\n",
        "#EXT-X-RENDITION-REPORT:URI=\"../720p/prog_index.m3u8?token=TOK\",LAST-MSN=270,LAST-PART=2\n",
        "#EXT-X-RENDITION-REPORT:URI=\"../480p/prog_index.m3u8?token=TOK\",LAST-MSN=270,LAST-PART=1\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .count(),
        7
    );
    assert!(text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .all(|l| l.contains(".m4s?token=TOK\"")));
}

// --- URI shapes -----------------------------------------------------------------------------

#[test]
fn token_goes_before_the_fragment() {
    let out = rw("#EXTM3U\n#EXTINF:4,\nseg.ts#t=10\n#EXTINF:4,\nseg2.ts?a=1#x\n");
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXTINF:4,\nseg.ts?token=TOK#t=10\n#EXTINF:4,\nseg2.ts?a=1&token=TOK#x\n"
    );
    let out = rw("#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4#frag\"\n");
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=TOK#frag\"\n"
    );
    let out = rw("#EXTM3U\nhttp://origin.test:8000/hls/a.ts?q=1#f\n");
    assert_eq!(out.text, "#EXTM3U\n/a.ts?q=1&token=TOK#f\n");
}

#[test]
fn query_separators() {
    let out = rw("#EXTM3U\na.ts?\nb.ts?x=1&\nc.ts?x=1\nd&e.ts\n/p/f.ts\n../g.ts\n");
    assert_eq!(
        out.text,
        "#EXTM3U\na.ts?token=TOK\nb.ts?x=1&token=TOK\nc.ts?x=1&token=TOK\nd&e.ts?token=TOK\n/p/f.ts?token=TOK\n../g.ts?token=TOK\n"
    );
    // A path ending in `&` has no query yet: the token must not become part of the path.
    let out = rw("#EXTM3U\nseg&\n");
    assert_eq!(out.text, "#EXTM3U\nseg&?token=TOK\n");
}

#[test]
fn origin_matching_is_by_scheme_host_port_and_base_path() {
    let body = "#EXTM3U\n\
                HTTP://ORIGIN.test:8000/hls/a.ts\n\
                http://origin.test:8000/hls/\n\
                http://origin.test:8000/hlsx/b.ts\n\
                https://origin.test:8000/hls/c.ts\n\
                http://origin.test:8001/hls/d.ts\n\
                //cdn.example.net/hls/e.ts\n\
                urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66\n";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         /a.ts?token=TOK\n\
         /?token=TOK\n\
         http://origin.test:8000/hlsx/b.ts\n\
         https://origin.test:8000/hls/c.ts\n\
         http://origin.test:8001/hls/d.ts\n\
         //cdn.example.net/hls/e.ts\n\
         urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 2, 5, 0));
}

#[test]
fn every_origin_base_is_recognised() {
    let bases = [
        OriginBase::parse("http://origin.test:8000/hls").unwrap(),
        OriginBase::parse("https://alias.example").unwrap(),
    ];
    let ctx = Rewrite {
        origin_bases: &bases,
        param: "t",
        token: "eyJ2IjoxfQ.c2ln-_",
        request_query: None,
    };
    let out = rewrite(
        b"#EXTM3U\nhttps://alias.example:443/x/a.ts\nhttp://origin.test:8000/hls/b.ts\nc.ts\n",
        &ctx,
    )
    .unwrap();
    assert_eq!(
        out.text,
        "#EXTM3U\n/x/a.ts?t=eyJ2IjoxfQ.c2ln-_\n/b.ts?t=eyJ2IjoxfQ.c2ln-_\nc.ts?t=eyJ2IjoxfQ.c2ln-_\n"
    );
    assert_eq!((out.tokenized, out.rerouted), (1, 2));
}

#[test]
fn no_origin_bases_means_every_absolute_uri_is_foreign() {
    let ctx = Rewrite {
        origin_bases: &[],
        param: PARAM,
        token: TOKEN,
        request_query: None,
    };
    let out = rewrite(MEDIA_ABSOLUTE.as_bytes(), &ctx).unwrap();
    assert_eq!(out.text, MEDIA_ABSOLUTE);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 0, 13, 0));
}

#[test]
fn byte_order_mark_is_kept_and_the_header_is_not_a_uri() {
    let body = "\u{feff}#EXTM3U\n#EXTINF:4,\nseg.ts\n";
    let out = rw(body);
    assert_eq!(out.text, "\u{feff}#EXTM3U\n#EXTINF:4,\nseg.ts?token=TOK\n");
    assert_eq!(counts(&out), (PlaylistKind::Media, 1, 0, 0, 0));
}

#[test]
fn padding_around_a_uri_stays_outside_it() {
    // Players trim spaces around a URI, so the token goes at the end of what they request,
    // and an absolute URI behind a space is still recognised (not tokenized in place, which
    // would hand the token to its host).
    let body = "#EXTM3U\nseg.ts \n\tseg2.ts\r\n https://cdn.example.net/a.ts\n http://origin.test:8000/hls/b.ts\n";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\nseg.ts?token=TOK \n\tseg2.ts?token=TOK\r\n https://cdn.example.net/a.ts\n /b.ts?token=TOK\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 2, 1, 1, 0));
    let out = rw("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\" https://keys.example/k \"\n");
    assert_eq!(out.foreign, 1);
    assert!(!out.text.contains("token"));
}

#[test]
fn blank_lines_unknown_tags_and_missing_final_newline_are_copied() {
    let body = "#EXTM3U\n\n   \n#EXT-X-FOO:BAR=\"baz\"\n#EXT-X-VERSION:3\n# comment with seg.ts\n#EXTINF:4,title\n\nseg.ts";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n\n   \n#EXT-X-FOO:BAR=\"baz\"\n#EXT-X-VERSION:3\n# comment with seg.ts\n#EXTINF:4,title\n\nseg.ts?token=TOK"
    );
    let header_only = rw("#EXTM3U");
    assert_eq!(header_only.text, "#EXTM3U");
    assert_eq!(counts(&header_only), (PlaylistKind::Media, 0, 0, 0, 0));
}

#[test]
fn uri_attribute_is_found_by_name_not_by_text() {
    // SERVER-URI is not URI, and `URI=` inside another quoted value is not an attribute.
    let out = rw(
        "#EXTM3U\n#EXT-X-SESSION-DATA:DATA-ID=\"x\",VALUE=\"URI=a.json, URI=b.json\",LANGUAGE=\"en\"\n\
         #EXT-X-MEDIA:TYPE=AUDIO,NAME=\"URI=x\",GROUP-ID=\"a\", URI=\"a.m3u8\"\n\
         #EXT-X-KEY:METHOD=NONE\n",
    );
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-SESSION-DATA:DATA-ID=\"x\",VALUE=\"URI=a.json, URI=b.json\",LANGUAGE=\"en\"\n\
         #EXT-X-MEDIA:TYPE=AUDIO,NAME=\"URI=x\",GROUP-ID=\"a\", URI=\"a.m3u8?token=TOK\"\n\
         #EXT-X-KEY:METHOD=NONE\n"
    );
    assert_eq!(out.tokenized, 1);
}

// --- EXT-X-DEFINE ---------------------------------------------------------------------------

#[test]
fn defined_origin_base_is_rerouted() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:NAME=\"base\",VALUE=\"http://origin.test:8000/hls\"\n\
                #EXT-X-MAP:URI=\"{$base}/v1/init.mp4\"\n\
                #EXTINF:4,\n\
                {$base}/v1/seg.ts\n";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXT-X-DEFINE:NAME=\"base\",VALUE=\"http://origin.test:8000/hls\"\n\
         #EXT-X-MAP:URI=\"/v1/init.mp4?token=TOK\"\n\
         #EXTINF:4,\n\
         /v1/seg.ts?token=TOK\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 2, 0, 0));
}

#[test]
fn imported_variable_at_the_start_is_left_alone() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:IMPORT=\"cdn\"\n\
                #EXTINF:4,\n\
                {$cdn}/seg.ts\n\
                #EXTINF:4,\n\
                v/{$cdn}/seg.ts\n";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXT-X-DEFINE:IMPORT=\"cdn\"\n\
         #EXTINF:4,\n\
         {$cdn}/seg.ts\n\
         #EXTINF:4,\n\
         v/{$cdn}/seg.ts?token=TOK\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 1, 0, 0, 1));
}

#[test]
fn unknown_variable_inside_a_rerouted_uri_is_kept() {
    // Dropping `{$session}` would turn the path into `//seg.ts`, a scheme-relative URI
    // naming the host `seg.ts`.
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:NAME=\"base\",VALUE=\"http://origin.test:8000/hls\"\n\
                #EXT-X-DEFINE:IMPORT=\"session\"\n\
                #EXTINF:4,\n\
                {$base}/{$session}/seg.ts\n";
    let out = rw(body);
    assert!(
        out.text.ends_with("\n/{$session}/seg.ts?token=TOK\n"),
        "{}",
        out.text
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 1, 0, 0));
}

#[test]
fn defined_relative_and_foreign_values() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:NAME=\"dir\",VALUE=\"v1\"\n\
                #EXT-X-DEFINE:NAME=\"cdn\",VALUE=\"https://cdn.example.net/hls\"\n\
                #EXT-X-DEFINE:NAME=\"q\",VALUE=\"?session=1\"\n\
                #EXTINF:4,\n\
                {$dir}/seg1.ts\n\
                #EXTINF:4,\n\
                {$cdn}/seg2.ts\n\
                #EXTINF:4,\n\
                seg3.ts{$q}\n";
    let out = rw(body);
    // Variables stay for the player to substitute; the token joins the query the
    // substitution will produce.
    assert!(out.text.contains("\n{$dir}/seg1.ts?token=TOK\n"));
    assert!(out.text.contains("\n{$cdn}/seg2.ts\n"));
    assert!(out.text.contains("\nseg3.ts{$q}&token=TOK\n"));
    assert_eq!(counts(&out), (PlaylistKind::Media, 2, 0, 1, 0));
    assert_only_uris_changed(body, &out.text, TOKEN);
}

#[test]
fn queryparam_define_is_resolved_from_the_request_query() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:QUERYPARAM=\"host\"\n\
                #EXTINF:4,\n\
                {$host}/seg.ts\n";
    let run = |query| rewrite_with(body, TOKEN, query).unwrap();

    let out = run(Some("a=1&host=http://origin.test:8000/hls"));
    assert!(out.text.ends_with("\n/seg.ts?token=TOK\n"), "{}", out.text);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 1, 0, 0));

    let out = run(Some("host=https://cdn.example.net"));
    assert_eq!(out.text, body);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 0, 1, 0));

    // The player percent-decodes the value before substituting it, so must the rewriter,
    // or the token would be handed to whatever host the query names.
    let out = run(Some("host=https%3A%2F%2Fcdn.example.net"));
    assert_eq!(out.text, body);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 0, 1, 0));
    let out = run(Some("host=http%3A%2F%2Forigin.test%3A8000%2Fhls"));
    assert!(out.text.ends_with("\n/seg.ts?token=TOK\n"), "{}", out.text);

    let out = run(Some("host=v2"));
    assert!(out.text.ends_with("\n{$host}/seg.ts?token=TOK\n"));
    assert_eq!(counts(&out), (PlaylistKind::Media, 1, 0, 0, 0));

    for query in [None, Some("other=1"), Some("hostx=v2")] {
        let out = run(query);
        assert_eq!(out.text, body, "{query:?}");
        assert_eq!(counts(&out), (PlaylistKind::Media, 0, 0, 0, 1), "{query:?}");
    }
}

#[test]
fn form_decoding_of_query_values() {
    assert_eq!(form_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    assert_eq!(
        query_value(Some("x=1&b%61se=%2Fp&base=2"), "base").as_deref(),
        Some("/p")
    );
    assert_eq!(query_value(Some("flag&x=1"), "flag"), None);
}

#[test]
fn malformed_define_is_refused() {
    let body = "#EXTM3U\n#EXT-X-DEFINE:NAME=\"base\n#EXTINF:4,\nseg.ts\n";
    assert_eq!(
        rewrite_with(body, TOKEN, None),
        Err(ManifestError::BadAttributes { line: 2 })
    );
}

// --- errors ---------------------------------------------------------------------------------

#[test]
fn malformed_fixtures_give_the_exact_error() {
    assert_eq!(
        rewrite_with(BAD_NO_HEADER, TOKEN, None),
        Err(ManifestError::NoHeader)
    );
    assert_eq!(
        rewrite_with(BAD_UNTERMINATED_QUOTE, TOKEN, None),
        Err(ManifestError::BadAttributes { line: 5 })
    );
    assert_eq!(
        rewrite_with(BAD_STREAM_INF_LAST, TOKEN, None),
        Err(ManifestError::MissingVariantUri { line: 6 })
    );
    // Same line numbers with CRLF endings.
    assert_eq!(
        rewrite_with(&BAD_UNTERMINATED_QUOTE.replace('\n', "\r\n"), TOKEN, None),
        Err(ManifestError::BadAttributes { line: 5 })
    );
    assert_eq!(
        rewrite_with(&BAD_STREAM_INF_LAST.replace('\n', "\r\n"), TOKEN, None),
        Err(ManifestError::MissingVariantUri { line: 6 })
    );
}

#[test]
fn non_utf8_and_empty_bodies_are_refused() {
    let ctx = Rewrite {
        origin_bases: &[OriginBase::parse("http://origin.test:8000/hls").unwrap()],
        param: PARAM,
        token: TOKEN,
        request_query: None,
    };
    let mut body = b"#EXTM3U\n#EXTINF:4,\nseg".to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(b".ts\n");
    assert_eq!(rewrite(&body, &ctx), Err(ManifestError::NotUtf8));
    // Latin-1 "Français" in an otherwise fine master.
    let latin1 = MASTER.replace("Français", "Fran\u{0}ais");
    let mut latin1 = latin1.into_bytes();
    let at = latin1.iter().position(|&b| b == 0).unwrap();
    latin1[at] = 0xe7;
    assert_eq!(rewrite(&latin1, &ctx), Err(ManifestError::NotUtf8));
    assert_eq!(rewrite(b"", &ctx), Err(ManifestError::NoHeader));
    assert_eq!(rewrite(b"\n#EXTM3U\n", &ctx), Err(ManifestError::NoHeader));
    assert_eq!(
        rewrite(b"<html>502 Bad Gateway</html>", &ctx),
        Err(ManifestError::NoHeader)
    );
}

#[test]
fn malformed_attributes_only_matter_on_uri_tags() {
    // A broken DATERANGE has no URI to rewrite and passes through as it is...
    let body = "#EXTM3U\n#EXT-X-DATERANGE:ID=\"x\n#EXTINF:4,\nseg.ts\n";
    assert_eq!(
        rw(body).text,
        "#EXTM3U\n#EXT-X-DATERANGE:ID=\"x\n#EXTINF:4,\nseg.ts?token=TOK\n"
    );
    // ...but a broken key is refused rather than served without its token.
    for (tag, line) in [
        ("#EXT-X-KEY:METHOD=AES-128,URI=\"k.key", 3),
        (
            "#EXT-X-PART:DURATION=1,INDEPENDENT=\"YES\"X,URI=\"p.m4s\"",
            3,
        ),
        ("#EXT-X-MEDIA:TYPE AUDIO", 3),
    ] {
        let body = format!("#EXTM3U\n#EXT-X-VERSION:9\n{tag}\n#EXTINF:4,\nseg.ts\n");
        assert_eq!(
            rewrite_with(&body, TOKEN, None),
            Err(ManifestError::BadAttributes { line }),
            "{tag}"
        );
    }
}

#[test]
fn stream_inf_followed_only_by_tags_is_refused() {
    let body = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n# nothing\n\n#EXT-X-ENDLIST\n";
    assert_eq!(
        rewrite_with(body, TOKEN, None),
        Err(ManifestError::MissingVariantUri { line: 2 })
    );
}

// --- m3u8-rs as an oracle -------------------------------------------------------------------

fn parse(name: &str, text: &str) -> Playlist {
    m3u8_rs::parse_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("{name}: m3u8-rs cannot parse: {e:?}"))
}

/// Applies `f` to every URI m3u8-rs exposes, and to the text of tags it does not know
/// (EXT-X-PART and friends), so two parses can be compared modulo URIs.
fn map_uris(playlist: &mut Playlist, f: &dyn Fn(&str) -> String) {
    let tag = |t: &mut m3u8_rs::ExtTag| {
        if let Some(rest) = &mut t.rest {
            *rest = f(rest);
        }
    };
    match playlist {
        Playlist::MasterPlaylist(m) => {
            for v in &mut m.variants {
                v.uri = f(&v.uri);
            }
            for a in &mut m.alternatives {
                if let Some(uri) = &mut a.uri {
                    *uri = f(uri);
                }
            }
            for k in &mut m.session_key {
                if let Some(uri) = &mut k.0.uri {
                    *uri = f(uri);
                }
            }
            for d in &mut m.session_data {
                if let SessionDataField::Uri(uri) = &mut d.field {
                    *uri = f(uri);
                }
            }
            m.unknown_tags.iter_mut().for_each(tag);
        }
        Playlist::MediaPlaylist(m) => {
            for s in &mut m.segments {
                s.uri = f(&s.uri);
                if let Some(uri) = s.key.as_mut().and_then(|k| k.uri.as_mut()) {
                    *uri = f(uri);
                }
                if let Some(map) = &mut s.map {
                    map.uri = f(&map.uri);
                }
                s.unknown_tags.iter_mut().for_each(tag);
            }
            m.unknown_tags.iter_mut().for_each(tag);
        }
    }
}

/// Undoes what the rewriter does to a URI: removes the token and the rerouted prefix. An
/// empty query (`seg.ts?`, which the token reuses) is dropped on both sides.
fn normalise(text: &str) -> String {
    let mut out = text
        .replace(&format!("?{PARAM}={TOKEN}"), "?")
        .replace(&format!("&{PARAM}={TOKEN}"), "")
        .replace("?\"", "\"")
        .replace("?#", "#");
    for prefix in REROUTED_PREFIXES {
        out = out.replace(prefix, "");
    }
    if let Some(stripped) = out.strip_suffix('?') {
        out.truncate(stripped.len());
    }
    out
}

fn variant_and_segment_uris(playlist: &Playlist) -> Vec<&str> {
    match playlist {
        Playlist::MasterPlaylist(m) => m.variants.iter().map(|v| v.uri.as_str()).collect(),
        Playlist::MediaPlaylist(m) => m.segments.iter().map(|s| s.uri.as_str()).collect(),
    }
}

/// (name, text, variants or segments, alternatives)
const ORACLE: &[(&str, &str, usize, usize)] = &[
    ("master", MASTER, 5, 4),
    ("master_crlf", MASTER_CRLF, 5, 4),
    ("media_vod", MEDIA_VOD, 8, 0),
    ("media_byterange", MEDIA_BYTERANGE, 4, 0),
    ("media_llhls", MEDIA_LLHLS, 4, 0),
    ("media_absolute", MEDIA_ABSOLUTE, 7, 0),
    ("media_sample_aes", MEDIA_SAMPLE_AES, 4, 0),
];

#[test]
fn m3u8_rs_sees_the_same_playlist_with_tokens() {
    for (name, text, items, alternatives) in ORACLE {
        let out = rw(text);
        let mut before = parse(name, text);
        let mut after = parse(name, &out.text);

        assert_eq!(variant_and_segment_uris(&before).len(), *items, "{name}");
        assert_eq!(variant_and_segment_uris(&after).len(), *items, "{name}");
        match (&before, &after) {
            (Playlist::MasterPlaylist(b), Playlist::MasterPlaylist(a)) => {
                assert_eq!(out.kind, PlaylistKind::Master, "{name}");
                assert_eq!(b.alternatives.len(), *alternatives, "{name}");
                assert_eq!(a.alternatives.len(), *alternatives, "{name}");
                for alt in &a.alternatives {
                    if let Some(uri) = &alt.uri {
                        assert!(uri.contains("token=TOK"), "{name}: {uri}");
                    }
                }
            }
            (Playlist::MediaPlaylist(_), Playlist::MediaPlaylist(_)) => {
                assert_eq!(out.kind, PlaylistKind::Media, "{name}");
            }
            _ => panic!("{name}: m3u8-rs changed its mind about the playlist kind"),
        }

        // Every variant and segment URI carries the token, unless it is foreign.
        for uri in variant_and_segment_uris(&after) {
            let foreign = uri.contains("://");
            assert_eq!(uri.contains("token=TOK"), !foreign, "{name}: {uri}");
        }

        // Apart from the URIs, m3u8-rs reads exactly the same playlist.
        map_uris(&mut before, &normalise);
        map_uris(&mut after, &normalise);
        assert_eq!(before, after, "{name}");
    }
}

// --- scale and repetition -------------------------------------------------------------------

#[test]
fn ten_thousand_segments() {
    let mut body = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n",
    );
    for i in 0..10_000 {
        write!(body, "#EXTINF:4.000,\nsegment_{i:05}.ts\n").unwrap();
    }
    body.push_str("#EXT-X-ENDLIST\n");

    let out = rw(&body);
    assert_eq!(counts(&out), (PlaylistKind::Media, 10_000, 0, 0, 0));
    let uri_lines: Vec<&str> = out.text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(uri_lines.len(), 10_000);
    for (i, line) in uri_lines.iter().enumerate() {
        assert_eq!(*line, format!("segment_{i:05}.ts?token=TOK"));
    }
    assert_eq!(out.text.lines().count(), body.lines().count());
    assert_eq!(out.text.len(), body.len() + 10_000 * "?token=TOK".len());
    let changes = assert_only_uris_changed(&body, &out.text, TOKEN);
    assert_eq!(changes.len(), 10_000);

    let Playlist::MediaPlaylist(parsed) = parse("generated", &out.text) else {
        panic!("not a media playlist");
    };
    assert_eq!(parsed.segments.len(), 10_000);
    assert!(parsed.end_list);
}

#[test]
fn rewriting_again_adds_a_second_token_and_stays_parseable() {
    for (name, text, expected) in GOOD {
        let first = rw(text);
        let second = rewrite_with(&first.text, "TOK2", None)
            .unwrap_or_else(|e| panic!("{name}: second rewrite failed: {e}"));
        let (kind, tokenized, rerouted, foreign, unresolved) = *expected;
        // What was rerouted is path-absolute now, so it is tokenized in place.
        assert_eq!(
            counts(&second),
            (kind, tokenized + rerouted, 0, foreign, unresolved),
            "{name}"
        );
        assert_eq!(lines(&second.text).len(), lines(text).len(), "{name}");
        let mut with_token = 0;
        for (a, b) in lines(&first.text).iter().zip(lines(&second.text)) {
            if a.contains("token=TOK") {
                with_token += 1;
                let last = b.rfind("token=").unwrap();
                assert!(
                    b[last..].starts_with("token=TOK2"),
                    "{name}: last token is not the new one: {b}"
                );
                assert_eq!(b.matches("token=").count(), 2, "{name}: {b}");
            } else {
                assert_eq!(*a, b, "{name}: line without a token changed");
            }
        }
        assert_eq!(with_token, tokenized + rerouted, "{name}");
        if ORACLE.iter().any(|(n, ..)| n == name) {
            let items = variant_and_segment_uris(&parse(name, text)).len();
            let again = parse(name, &second.text);
            assert_eq!(variant_and_segment_uris(&again).len(), items, "{name}");
            for uri in variant_and_segment_uris(&again) {
                let uri = uri.trim_end();
                if !uri.contains("://") {
                    assert!(uri.ends_with("&token=TOK2") || uri.contains("&token=TOK2#"));
                }
            }
        }
    }
}
