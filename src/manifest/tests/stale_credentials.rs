//! A credential the origin wrote into a URI under the token's own name: stale by the time a
//! player sends it, and read before a token in the path or a cookie.

use super::*;

const STALE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
    #EXT-X-MAP:URI=\"init.mp4?token=OLD\"\n\
    #EXTINF:2,\ns1.ts?token=OLD\n\
    #EXTINF:2,\ns2.ts?v=1&token=OLD#t=0\n\
    #EXTINF:2,\nhttp://origin.test:8000/hls/live/1080/s3.ts?token=OLD&v=2\n\
    #EXTINF:2,\nhttps://cdn.other/s4.ts?token=OLD\n";

fn rewritten(carrier: Carrier<'_>) -> String {
    rewrite_in(STALE.as_bytes(), TOKEN, None, carrier)
        .unwrap_or_else(|e| panic!("rewrite failed: {e}"))
        .text
}

#[test]
fn a_stale_token_the_origin_wrote_gives_way_to_the_one_usher_hands_on() {
    // Another host's URI is not usher's to touch, whatever it holds.
    let foreign = "#EXTINF:2,\nhttps://cdn.other/s4.ts?token=OLD\n";
    let query = rewritten(Carrier::Query);
    assert_eq!(
        query,
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
         #EXT-X-MAP:URI=\"init.mp4?token=TOK\"\n\
         #EXTINF:2,\ns1.ts?token=TOK\n\
         #EXTINF:2,\ns2.ts?v=1&token=TOK#t=0\n\
         #EXTINF:2,\n/live/1080/s3.ts?v=2&token=TOK\n"
            .to_owned()
            + foreign
    );
    // Under the path carrier and the cookie the stale token would be read instead of the
    // one in the path or the cookie, and refused.
    let inherited = rewritten(Carrier::Inherited("/live/1080/index.m3u8"));
    assert_eq!(
        inherited,
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n\
         #EXTINF:2,\ns1.ts\n\
         #EXTINF:2,\ns2.ts?v=1#t=0\n\
         #EXTINF:2,\n/TOK/live/1080/s3.ts?v=2\n"
            .to_owned()
            + foreign
    );
    let path = rewritten(Carrier::Path("/live/1080/index.m3u8"));
    assert!(path.contains("\n/TOK/live/1080/s1.ts\n"), "{path}");
    let cookie = rewritten(Carrier::Cookie);
    assert_eq!(
        cookie,
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n\
         #EXTINF:2,\ns1.ts\n\
         #EXTINF:2,\ns2.ts?v=1#t=0\n\
         #EXTINF:2,\n/live/1080/s3.ts?v=2\n"
            .to_owned()
            + foreign
    );
    // Only a pair of exactly that name goes.
    let kept = rw("#EXTM3U\n#EXTINF:2,\ns1.ts?tokens=1&xtoken=2&token\n");
    assert_eq!(
        kept.text,
        "#EXTM3U\n#EXTINF:2,\ns1.ts?tokens=1&xtoken=2&token=TOK\n"
    );
}

#[test]
fn a_rendition_report_loses_the_stale_pair_as_its_rendition_does() {
    // Players match a report to the rendition whose URI it is, or a prefix of.
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nw/live.m3u8?token=OLD\n";
    let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n\
                 #EXT-X-RENDITION-REPORT:URI=\"w/live.m3u8?token=OLD\",LAST-MSN=1\n";
    for carrier in [Carrier::Query, Carrier::Cookie] {
        let written = |body: &str| {
            rewrite_in(body.as_bytes(), TOKEN, None, carrier)
                .unwrap_or_else(|e| panic!("rewrite failed: {e}"))
                .text
        };
        let master = written(master);
        let rendition = master.lines().last().unwrap();
        let media = written(media);
        let start = media.find("URI=\"").unwrap() + 5;
        let report = &media[start..start + media[start..].find('"').unwrap()];
        assert_eq!(report, "w/live.m3u8", "{carrier:?}");
        assert!(rendition.starts_with(report), "{carrier:?}: {rendition}");
    }
}

#[test]
fn under_a_minted_format_a_stale_usher_token_goes_too() {
    // usher reads its own `token=` before an Akamai or Media CDN token, so a stale one
    // would shadow the token minted into the URI.
    let bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let ctx = Rewrite {
        param: "__token__",
        token: "exp=1~hmac=ab",
        ..context(&bases)
    };
    let out = rewrite(
        b"#EXTM3U\n#EXTINF:2,\ns1.ts?token=OLD&v=1\n#EXTINF:2,\ns2.ts?__token__=OLD\n",
        &ctx,
    )
    .unwrap();
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXTINF:2,\ns1.ts?v=1&__token__=exp=1~hmac=ab\n\
         #EXTINF:2,\ns2.ts?__token__=exp=1~hmac=ab\n"
    );
}

#[test]
fn a_stale_secure_link_pair_the_origin_wrote_gives_way_to_the_minted_one() {
    // nginx `secure_link` reads the first `md5=` and `expires=`: an origin's own pair left
    // before the minted one would be checked instead, and refused.
    let bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let mint = |path: &str| match path.ends_with(".m3u8") {
        true => "token=TOK".to_owned(),
        false => format!("md5=NEW{}&expires=9", path.len()),
    };
    let ctx = Rewrite {
        per_path: Some(PerPath {
            playlist_path: "/live/1080/index.m3u8",
            mint: &mint,
        }),
        ..context(&bases)
    };
    let out = rewrite(
        b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
          #EXTINF:2,\ns1.ts?md5=OLD&expires=1&v=1\n\
          #EXTINF:2,\ns2.ts?expires=1&token=OLD#t=0\n\
          #EXT-X-RENDITION-REPORT:URI=\"../720/live.m3u8?md5=ORIGIN\",LAST-MSN=1\n",
        &ctx,
    )
    .unwrap();
    // A rendition report keeps the origin's own pair, as its rendition's URI does: a
    // playlist gets usher's token, not a secure link, and comes back to usher.
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
         #EXTINF:2,\ns1.ts?v=1&md5=NEW16&expires=9\n\
         #EXTINF:2,\ns2.ts?md5=NEW16&expires=9#t=0\n\
         #EXT-X-RENDITION-REPORT:URI=\"../720/live.m3u8?md5=ORIGIN\",LAST-MSN=1\n"
    );
}
