//! m3u8-rs as an independent parser: the rewritten playlist has the same structure, with
//! tokens. An oracle only: it cannot round-trip a playlist byte for byte.

use m3u8_rs::{Playlist, SessionDataField};

use super::*;

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
fn rewriting_again_replaces_the_token_and_stays_parseable() {
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
                // The first token is the origin's now, stale: the new one replaces it.
                assert_eq!(a.replace("token=TOK", "token=TOK2"), *b, "{name}");
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
                    assert!(uri.ends_with("token=TOK2") || uri.contains("token=TOK2#"));
                    assert_eq!(uri.matches("token=").count(), 1, "{name}: {uri}");
                }
            }
        }
    }
}
