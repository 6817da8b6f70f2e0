//! The rewriter against playlists shaped like real packagers' output (fixtures in
//! `tests/fixtures/playlists/`), checked three ways: exact expected text for the small ones,
//! a line-by-line comparison proving only URI places changed, and m3u8-rs as an independent
//! parser (an oracle only: it cannot round-trip a playlist byte for byte).

use std::fmt::Write as _;

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

/// Rewrites `body` with the test origin, `PARAM`, no preview and no per-URI credentials.
fn rewrite_in(
    body: &[u8],
    token: &str,
    request_query: Option<&str>,
    carrier: Carrier<'_>,
) -> Result<Rewritten, ManifestError> {
    rewrite_capped(body, token, request_query, carrier, usize::MAX)
}

/// As [`rewrite_in`], with at most `max_output` bytes out.
fn rewrite_capped(
    body: &[u8],
    token: &str,
    request_query: Option<&str>,
    carrier: Carrier<'_>,
    max_output: usize,
) -> Result<Rewritten, ManifestError> {
    let origin_bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let ctx = Rewrite {
        token,
        request_query,
        carrier,
        max_output,
        ..context(&origin_bases)
    };
    rewrite(body, &ctx)
}

/// The context tests start from: `bases`, `PARAM=TOKEN` by the query carrier, no
/// groups, preview, per-URI credentials or output limit.
fn context(bases: &[OriginBase]) -> Rewrite<'_> {
    Rewrite {
        origin_bases: bases,
        upstream_for: None,
        param: PARAM,
        usher_param: PARAM,
        token: TOKEN,
        request_query: None,
        preview: None,
        per_path: None,
        carrier: Carrier::Query,
        max_output: usize::MAX,
    }
}

fn rewrite_with(
    body: &str,
    token: &str,
    request_query: Option<&str>,
) -> Result<Rewritten, ManifestError> {
    rewrite_in(body.as_bytes(), token, request_query, Carrier::Query)
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
        // The two rendition reports name renditions and are left as they are.
        (PlaylistKind::Media, 13, 0, 0, 0),
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
        param: "t",
        usher_param: "t",
        token: "eyJ2IjoxfQ.c2ln-_",
        ..context(&bases)
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
    let ctx = context(&[]);
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

mod asset_list;
mod define;
mod errors;
mod exact;
mod groups;
mod interstitials;
mod oracle;
mod path_carrier;
mod preview;
mod stale_credentials;
mod variables;
