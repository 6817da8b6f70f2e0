//! HLS interstitials (`EXT-X-DATERANGE` with `X-ASSET-URI` / `X-ASSET-LIST`) and image
//! (trick-play) renditions: their URIs are tokenized like any other playlist URI.

use super::*;

const INTERSTITIALS: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n\
    #EXT-X-PROGRAM-DATE-TIME:2026-12-07T05:00:00.000Z\n\
    #EXT-X-DATERANGE:ID=\"pre\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-12-07T05:00:00.000Z\",X-ASSET-URI=\"promo/index.m3u8\",CUE=\"PRE\"\n\
    #EXT-X-DATERANGE:ID=\"mid\",CLASS=\"com.apple.hls.interstitial\",X-ASSET-LIST=\"http://origin.test:8000/hls/ads.json?b=2\",START-DATE=\"2026-12-07T05:00:04.000Z\",X-ASSET-URI=\"https://ads.example.net/a.m3u8\"\n\
    #EXT-X-DATERANGE:ID=\"chapter\",START-DATE=\"2026-12-07T05:00:00.000Z\",X-COM-TITLE=\"Kick-off\"\n\
    #EXTINF:4,\nseg1.ts\n";

#[test]
fn interstitial_asset_uris_and_lists_are_tokenized_in_place() {
    let out = rw(INTERSTITIALS);
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-12-07T05:00:00.000Z\n\
         #EXT-X-DATERANGE:ID=\"pre\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-12-07T05:00:00.000Z\",X-ASSET-URI=\"promo/index.m3u8?token=TOK\",CUE=\"PRE\"\n\
         #EXT-X-DATERANGE:ID=\"mid\",CLASS=\"com.apple.hls.interstitial\",X-ASSET-LIST=\"/ads.json?b=2&token=TOK\",START-DATE=\"2026-12-07T05:00:04.000Z\",X-ASSET-URI=\"https://ads.example.net/a.m3u8\"\n\
         #EXT-X-DATERANGE:ID=\"chapter\",START-DATE=\"2026-12-07T05:00:00.000Z\",X-COM-TITLE=\"Kick-off\"\n\
         #EXTINF:4,\nseg1.ts?token=TOK\n"
    );
    // The foreign ad keeps no token; the origin's asset list comes back through usher.
    assert_eq!(counts(&out), (PlaylistKind::Media, 2, 1, 1, 0));
}

#[test]
fn interstitials_under_the_path_carrier() {
    let out = rewrite_in(
        INTERSTITIALS.as_bytes(),
        TOKEN,
        None,
        Carrier::Inherited("/live/1080p/index.m3u8"),
    )
    .unwrap();
    // The relative asset resolves under the path token the playlist came by.
    assert!(out.text.contains("X-ASSET-URI=\"promo/index.m3u8\",CUE"));
    assert!(out.text.contains("X-ASSET-LIST=\"/TOK/ads.json?b=2\""));
}

#[test]
fn an_asset_uri_players_would_read_differently_is_refused() {
    // Unquoted: some players find `X-ASSET-URI="` anywhere in the line.
    let unquoted = "#EXTM3U\n#EXT-X-DATERANGE:ID=\"x\",X-ASSET-URI=a.m3u8\n#EXTINF:4,\ns.ts\n";
    assert_eq!(
        rewrite_with(unquoted, TOKEN, None),
        Err(ManifestError::BadAttributes { line: 2 })
    );
    let smuggled =
        "#EXTM3U\n#EXT-X-DATERANGE:ID=x\"X-ASSET-URI=\"http://evil/\"\n#EXTINF:4,\ns.ts\n";
    assert_eq!(
        rewrite_with(smuggled, TOKEN, None),
        Err(ManifestError::BadAttributes { line: 2 })
    );
    // A date range that names no asset is copied as it is, however it is written.
    let odd = "#EXTM3U\n#EXT-X-DATERANGE:ID=x\"y\n#EXTINF:4,\ns.ts\n";
    assert_eq!(
        rw(odd).text,
        "#EXTM3U\n#EXT-X-DATERANGE:ID=x\"y\n#EXTINF:4,\ns.ts?token=TOK\n"
    );
}

#[test]
fn image_renditions_make_a_master_and_are_tokenized() {
    let body = "#EXTM3U\n\
        #EXT-X-IMAGE-STREAM-INF:BANDWIDTH=12000,RESOLUTION=320x180,CODECS=\"jpeg\",URI=\"thumbs/index.m3u8\"\n";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXT-X-IMAGE-STREAM-INF:BANDWIDTH=12000,RESOLUTION=320x180,CODECS=\"jpeg\",URI=\"thumbs/index.m3u8?token=TOK\"\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Master, 1, 0, 0, 0));
}

#[test]
fn no_tag_names_more_uri_attributes_than_the_splicer_holds() {
    assert!(URI_TAGS.iter().all(|(_, attributes)| attributes.len() <= 2));
}
