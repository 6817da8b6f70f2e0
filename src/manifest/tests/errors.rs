//! Playlists that cannot be rewritten: each gives its exact error, never a pass-through.

use super::*;

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
    let rewrite = |body: &[u8]| rewrite_in(body, TOKEN, None, Carrier::Query);
    let mut body = b"#EXTM3U\n#EXTINF:4,\nseg".to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(b".ts\n");
    assert_eq!(rewrite(&body), Err(ManifestError::NotUtf8));
    // Latin-1 "Français" in an otherwise fine master.
    let latin1 = MASTER.replace("Français", "Fran\u{0}ais");
    let mut latin1 = latin1.into_bytes();
    let at = latin1.iter().position(|&b| b == 0).unwrap();
    latin1[at] = 0xe7;
    assert_eq!(rewrite(&latin1), Err(ManifestError::NotUtf8));
    assert_eq!(rewrite(b""), Err(ManifestError::NoHeader));
    assert_eq!(rewrite(b"\n#EXTM3U\n"), Err(ManifestError::NoHeader));
    assert_eq!(
        rewrite(b"<html>502 Bad Gateway</html>"),
        Err(ManifestError::NoHeader)
    );
}

#[test]
fn malformed_attributes_only_matter_on_uri_tags() {
    // A broken tag that names no URI attribute has no URI to rewrite and passes through
    // as it is...
    for tag in ["#EXT-X-DATERANGE:ID=\"x", "#EXT-X-MEDIA:TYPE AUDIO"] {
        let body = format!("#EXTM3U\n{tag}\n#EXTINF:4,\nseg.ts\n");
        assert_eq!(
            rw(&body).text,
            format!("#EXTM3U\n{tag}\n#EXTINF:4,\nseg.ts?token=TOK\n")
        );
    }
    // ...but a broken key is refused rather than served without its token.
    for (tag, line) in [
        ("#EXT-X-KEY:METHOD=AES-128,URI=\"k.key", 3),
        (
            "#EXT-X-PART:DURATION=1,INDEPENDENT=\"YES\"X,URI=\"p.m4s\"",
            3,
        ),
        ("#EXT-X-MEDIA:TYPE AUDIO,URI", 3),
        ("#EXT-X-DATERANGE:ID=\"x,X-ASSET-URI=\"a.m3u8\"", 3),
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

#[test]
fn two_variant_tags_in_a_row_name_the_first_as_missing_its_uri() {
    let text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-STREAM-INF:BANDWIDTH=2\nb.m3u8\n";
    assert_eq!(
        rewrite_with(text, TOKEN, None),
        Err(ManifestError::MissingVariantUri { line: 2 })
    );
}

#[test]
fn the_header_must_be_exactly_extm3u() {
    assert_eq!(
        rewrite_with("#EXTM3UX\n#EXTINF:1,\na.ts\n", TOKEN, None),
        Err(ManifestError::NoHeader)
    );
    assert!(rewrite_with("#EXTM3U \r\n#EXTINF:1,\na.ts\n", TOKEN, None).is_ok());
}

#[test]
fn a_carriage_return_inside_a_line_is_refused() {
    // Players that end a line at a lone CR would read `//evil.example/a.ts&token=…` as
    // a URI line of its own.
    for body in [
        "#EXTM3U\n#EXTINF:4,\nseg.ts?x\r//evil.example/a.ts\n",
        "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\r//evil.example/k\"\n",
        "#EXTM3U\n#EXTINF:4,\nseg.ts\r\r\n",
    ] {
        let line = body.lines().count();
        assert_eq!(
            rewrite_with(body, TOKEN, None),
            Err(ManifestError::LoneCarriageReturn { line }),
            "{body:?}"
        );
    }
    // CRLF line ends are line ends.
    assert!(rewrite_with("#EXTM3U\r\n#EXTINF:4,\r\nseg.ts\r\n", TOKEN, None).is_ok());
}

#[test]
fn a_uri_attribute_must_be_a_quoted_string() {
    // ExoPlayer finds a key's URI by `URI="(.+?)"` anywhere in the line.
    let smuggled = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,A=URI=\"//evil.example/x,URI=k.key,B=\"\"\n";
    assert_eq!(
        rewrite_with(smuggled, TOKEN, None),
        Err(ManifestError::BadAttributes { line: 2 })
    );
    let unquoted = "#EXTM3U\n#EXT-X-MAP:URI=init.mp4\n";
    assert_eq!(
        rewrite_with(unquoted, TOKEN, None),
        Err(ManifestError::BadAttributes { line: 2 })
    );
}

#[test]
fn a_rewrite_past_its_output_limit_is_refused() {
    let body = format!("#EXTM3U\n{}", "#EXTINF:1,\na\n".repeat(1000));
    let capped = |max| rewrite_capped(body.as_bytes(), TOKEN, None, Carrier::Query, max);
    let whole = capped(usize::MAX).unwrap().text.len();
    assert!(capped(whole).is_ok(), "exactly at the limit");
    assert_eq!(
        capped(whole - 1),
        Err(ManifestError::OutputTooLarge { limit: whole - 1 })
    );
}
