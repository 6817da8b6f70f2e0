//! Exact expected output for the small fixtures: byte ranges, SAMPLE-AES, absolute URIs,
//! LL-HLS.

use super::*;

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
    // 13: the two rendition reports name renditions and get no token.
    assert_eq!(counts(&out), (PlaylistKind::Media, 13, 0, 0, 0));
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
        "#EXT-X-RENDITION-REPORT:URI=\"../720p/prog_index.m3u8\",LAST-MSN=270,LAST-PART=2\n",
        "#EXT-X-RENDITION-REPORT:URI=\"../480p/prog_index.m3u8\",LAST-MSN=270,LAST-PART=1\n",
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
