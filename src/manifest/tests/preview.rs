//! Preview mode: only the first seconds get the token, and the allowed paths are exact.

use super::*;

fn preview(body: &str, seconds: u32, playlist_path: &str) -> Rewritten {
    let bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let ctx = Rewrite {
        preview: Some(Preview {
            seconds,
            playlist_path,
        }),
        ..context(&bases)
    };
    rewrite(body.as_bytes(), &ctx).unwrap()
}

const MEDIA: &str = "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k1.key\"
#EXTINF:2.000,
seg1.m4s
#EXTINF:2.000,
seg2.m4s?v=1
#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k2.key\"
#EXTINF:2.000,
seg3.m4s
#EXTINF:2.000,
http://origin.test:8000/hls/movie/720p/seg4.m4s
#EXT-X-ENDLIST
";

#[test]
fn only_segments_starting_inside_the_preview_get_the_token() {
    let r = preview(MEDIA, 4, "/movie/720p/index.m3u8");
    let expected = MEDIA
        .replace("\"init.mp4\"", "\"init.mp4?token=TOK\"")
        .replace("\"../keys/k1.key\"", "\"../keys/k1.key?token=TOK\"")
        .replace("seg1.m4s\n", "seg1.m4s?token=TOK\n")
        .replace("seg2.m4s?v=1", "seg2.m4s?v=1&token=TOK");
    assert_eq!(r.text, expected);
    assert_eq!(r.withheld, 3, "the second key, seg3 and seg4");
    assert_eq!(
        r.allowed,
        [
            "/movie/720p/init.mp4",
            "/movie/keys/k1.key",
            "/movie/720p/seg1.m4s",
            "/movie/720p/seg2.m4s"
        ]
    );
}

#[test]
fn a_preview_shorter_than_one_segment_still_plays_the_first() {
    let r = preview(MEDIA, 1, "/movie/720p/index.m3u8");
    assert!(r.text.contains("seg1.m4s?token=TOK"));
    assert!(!r.text.contains("seg2.m4s?v=1&token"));
}

#[test]
fn no_preview_means_every_uri_gets_the_token() {
    let r = rw(MEDIA);
    assert_eq!((r.tokenized, r.rerouted, r.withheld), (6, 1, 0));
    assert!(r.allowed.is_empty());
}

#[test]
fn every_playlist_of_a_master_stays_playable() {
    let master = "#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2,AUDIO=\"a\"
/movie/1080p/index.m3u8
";
    let r = preview(master, 0, "/movie/master.m3u8");
    assert_eq!(r.withheld, 0);
    assert_eq!(
        r.allowed,
        [
            "/movie/audio/en.m3u8",
            "/movie/720p/index.m3u8",
            "/movie/1080p/index.m3u8"
        ]
    );
}

#[test]
fn ll_hls_parts_follow_their_segment() {
    let live = "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-PART-INF:PART-TARGET=1.0
#EXTINF:2.0,
s1.m4s
#EXT-X-PART:DURATION=1.0,URI=\"s2.p1.m4s\"
#EXT-X-PART:DURATION=1.0,URI=\"s2.p2.m4s\"
#EXTINF:2.0,
s2.m4s
#EXT-X-PART:DURATION=1.0,URI=\"s3.p1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s3.p2.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../480p/live.m3u8\",LAST-MSN=3
";
    let r = preview(live, 3, "/live/720p/live.m3u8");
    assert_eq!(
        r.allowed,
        [
            "/live/720p/s1.m4s",
            "/live/720p/s2.p1.m4s",
            "/live/720p/s2.p2.m4s",
            "/live/720p/s2.m4s",
        ]
    );
    assert_eq!(r.withheld, 2, "the parts of the third segment");
}

#[test]
fn per_path_credentials_sign_each_resolved_path() {
    let bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let mint = |path: &str| format!("sig={}", path.len());
    let ctx = Rewrite {
        per_path: Some(PerPath {
            playlist_path: "/movie/720p/index.m3u8",
            mint: &mint,
        }),
        ..context(&bases)
    };
    let r = rewrite(MEDIA.as_bytes(), &ctx).unwrap();
    // /movie/720p/init.mp4 is 20 characters, /movie/keys/k1.key 18.
    assert!(r.text.contains("URI=\"init.mp4?sig=20\""), "{}", r.text);
    assert!(
        r.text.contains("URI=\"../keys/k1.key?sig=18\""),
        "{}",
        r.text
    );
    assert!(r.text.contains("seg2.m4s?v=1&sig=20"), "{}", r.text);
    assert!(
        r.text.contains("\n/movie/720p/seg4.m4s?sig=20\n"),
        "rerouted too: {}",
        r.text
    );
    assert!(!r.text.contains("TOK"));
}

#[test]
fn durations_that_are_not_positive_do_not_stretch_the_preview() {
    let mut body = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:-1000,\ns0.ts\n");
    for n in 1..=10 {
        let extinf = ["-1", "0", "inf", "NaN", "junk"][n % 5];
        body.push_str(&format!("#EXTINF:{extinf},\ns{n}.ts\n"));
    }
    // Each counts as the target duration: s0 starts at 0 s, s1 at 4 s, s2 at 8 s.
    let out = preview(&body, 8, "/v/index.m3u8");
    assert_eq!(out.allowed, ["/v/s0.ts", "/v/s1.ts"]);
    assert_eq!(out.withheld, 9);
    // With no target duration, such a segment ends the preview.
    let out = preview(
        &body.replace("#EXT-X-TARGETDURATION:4\n", ""),
        8,
        "/v/index.m3u8",
    );
    assert_eq!(out.allowed, ["/v/s0.ts"]);
}

/// A live playlist slides: its first segment is not the stream's. Reloading it without a
/// ticket must not hand out each new window's first seconds (and so the whole event).
#[test]
fn a_live_window_counts_from_the_stream_not_from_its_first_segment() {
    let live = |head: &str| {
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n{head}\
             #EXTINF:2.000,\na.ts\n#EXTINF:2.000,\nb.ts\n#EXTINF:2.000,\nc.ts\n"
        )
    };
    let tokenized = |body: &str| {
        let r = preview(body, 4, "/live/index.m3u8");
        r.allowed
            .iter()
            .map(|p| p.trim_start_matches("/live/").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(tokenized(&live("")), ["a.ts", "b.ts"]);
    assert_eq!(
        tokenized(&live("#EXT-X-MEDIA-SEQUENCE:0\n")),
        ["a.ts", "b.ts"]
    );
    assert_eq!(tokenized(&live("#EXT-X-MEDIA-SEQUENCE:1\n")), ["a.ts"]);
    assert!(tokenized(&live("#EXT-X-MEDIA-SEQUENCE:2\n")).is_empty());
    assert!(tokenized(&live("#EXT-X-MEDIA-SEQUENCE:500\n")).is_empty());
    // A delta update: the skipped segments come before the ones listed.
    let delta = "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n";
    assert_eq!(tokenized(&live(delta)), ["a.ts"]);
    // The sequence before the target duration, as some packagers write them.
    let late = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-TARGETDURATION:2\n\
                #EXTINF:2.000,\na.ts\n#EXTINF:2.000,\nb.ts\n";
    assert_eq!(tokenized(late), ["a.ts"]);
    // Without a target duration, segments before the window reach past any preview.
    let unknown = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.000,\na.ts\n";
    assert!(tokenized(unknown).is_empty());
    // LL-HLS writes a segment's parts (and its map) before its EXTINF: they are judged
    // where the window lies in the stream, not at its start.
    let parts = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:500\n\
                 #EXT-X-MAP:URI=\"init.mp4\"\n\
                 #EXT-X-PART:DURATION=1,URI=\"p500.0.mp4\"\n\
                 #EXT-X-PART:DURATION=1,URI=\"p500.1.mp4\"\n\
                 #EXTINF:2.000,\ns500.ts\n\
                 #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p501.0.mp4\"\n";
    assert!(tokenized(parts).is_empty(), "{:?}", tokenized(parts));
    let mut at_start = parts.replace(":500\n", ":0\n");
    assert_eq!(
        tokenized(&at_start),
        [
            "init.mp4",
            "p500.0.mp4",
            "p500.1.mp4",
            "s500.ts",
            "p501.0.mp4"
        ]
    );
    // Tags come in any order: a key or a map before the sequence number places nothing.
    let early = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.key\"\n\
                 #EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-MEDIA-SEQUENCE:500\n\
                 #EXT-X-PART:DURATION=1,URI=\"p500.0.mp4\"\n#EXTINF:2.000,\ns500.ts\n";
    assert_eq!(tokenized(early), ["k.key", "init.mp4"]);
    let typed_late = live("#EXT-X-MEDIA-SEQUENCE:7\n").replace(
        "#EXTINF:2.000,\nb.ts",
        "#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.000,\nb.ts",
    );
    assert_eq!(
        tokenized(&typed_late),
        ["b.ts"],
        "the type counts from when it is read"
    );
    // A playlist of byte ranges names one file for many segments: a preview token naming
    // its path would open all of it.
    let ranges = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
                  #EXT-X-MAP:URI=\"main.mp4\",BYTERANGE=\"800@0\"\n\
                  #EXT-X-BYTERANGE:1000@800\n#EXTINF:2.000,\nmain.mp4\n";
    assert!(tokenized(ranges).is_empty(), "{:?}", tokenized(ranges));
    let part_range = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
                      #EXT-X-PART:DURATION=1,URI=\"all.mp4\",BYTERANGE=\"10@0\"\n";
    assert!(tokenized(part_range).is_empty());
    // A bare segment line with no EXTINF is placed as well.
    at_start = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:9\nbare.ts\n".into();
    assert!(tokenized(&at_start).is_empty());
    // A playlist that never slides starts at the stream's start whatever its sequence.
    for kind in ["VOD", "EVENT"] {
        let head = format!("#EXT-X-PLAYLIST-TYPE:{kind}\n#EXT-X-MEDIA-SEQUENCE:7\n");
        assert_eq!(tokenized(&live(&head)), ["a.ts", "b.ts"], "{kind}");
    }
}
