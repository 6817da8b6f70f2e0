//! The path carrier: the token as the first path segment.

use super::*;

fn rewrite_inherited(body: &str, playlist_path: &str) -> Rewritten {
    rewrite_in(
        body.as_bytes(),
        TOKEN,
        None,
        Carrier::Inherited(playlist_path),
    )
    .unwrap_or_else(|e| panic!("rewrite failed: {e}"))
}

#[test]
fn under_an_inherited_path_token_relative_playlists_go_out_byte_for_byte() {
    // The fixtures whose every URI is relative (parts, hints, maps and rendition reports
    // included).
    for body in [MEDIA_VOD, MEDIA_LLHLS, MEDIA_BYTERANGE] {
        let kept = rewrite_inherited(body, "/live/1080p/index.m3u8");
        assert_eq!(kept.text, body, "relative URIs are kept");
        assert!(kept.tokenized > 0, "they still count as tokenized");
    }
}

#[test]
fn under_an_inherited_path_token_absolute_and_origin_uris_get_the_token() {
    let body = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"/live/init.mp4\"\n\
                #EXTINF:2,\nseg1.ts\n#EXTINF:2,\n/live/1080p/seg2.ts\n\
                #EXTINF:2,\nhttp://origin.test:8000/hls/live/1080p/seg3.ts?m=1\n\
                #EXTINF:2,\nhttps://ads.example.net/ad.ts\n";
    let out = rewrite_inherited(body, "/live/1080p/index.m3u8");
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"/TOK/live/init.mp4\"\n\
         #EXTINF:2,\nseg1.ts\n#EXTINF:2,\n/TOK/live/1080p/seg2.ts\n\
         #EXTINF:2,\n/TOK/live/1080p/seg3.ts?m=1\n\
         #EXTINF:2,\nhttps://ads.example.net/ad.ts\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 3, 1, 1, 0));
}

#[test]
fn the_path_carrier_writes_a_query_only_uri_as_the_playlist_itself() {
    let body = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-RENDITION-REPORT:URI=\"?x=1\"\n#EXTINF:4,\n../b.ts?v=2\n";
    let out = rewrite_in(
        body.as_bytes(),
        TOKEN,
        None,
        Carrier::Path("/v/720/index.m3u8"),
    )
    .unwrap();
    assert!(out.text.contains("\n/TOK/v/720/a.ts\n"), "{}", out.text);
    assert!(out.text.ends_with("\n/TOK/v/b.ts?v=2\n"), "{}", out.text);
    // A query-only URI in a part of the playlist that is fetched is the playlist with
    // another query.
    let fetched = body.replace(
        "#EXT-X-RENDITION-REPORT:URI=\"?x=1\"",
        "#EXT-X-MAP:URI=\"?x=1\"",
    );
    let out = rewrite_in(
        fetched.as_bytes(),
        TOKEN,
        None,
        Carrier::Path("/v/720/index.m3u8"),
    )
    .unwrap();
    assert!(
        out.text.contains("URI=\"/TOK/v/720/index.m3u8?x=1\""),
        "{}",
        out.text
    );
}

#[test]
fn under_the_path_carrier_a_rendition_report_names_the_rendition_as_the_player_has_it() {
    // The player knows each rendition as `/TOK/<path>`; players match a report to the
    // rendition whose URI it resolves to exactly (or a prefix of, under the query carrier).
    let body = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n\
                #EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN=1\n\
                #EXT-X-RENDITION-REPORT:URI=\"/live/480p/index.m3u8\",LAST-MSN=1\n\
                #EXT-X-RENDITION-REPORT:URI=\"http://origin.test:8000/hls/live/360p/index.m3u8\",LAST-MSN=1\n";
    let out = rewrite_inherited(body, "/live/1080p/index.m3u8");
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n\
         #EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN=1\n\
         #EXT-X-RENDITION-REPORT:URI=\"/TOK/live/480p/index.m3u8\",LAST-MSN=1\n\
         #EXT-X-RENDITION-REPORT:URI=\"/TOK/live/360p/index.m3u8\",LAST-MSN=1\n"
    );
    // Under the query carrier they stay without a credential.
    let query = rw(body);
    assert!(
        query.text.contains("URI=\"/live/480p/index.m3u8\",")
            && query.text.contains("URI=\"/live/360p/index.m3u8\","),
        "{}",
        query.text
    );
}
