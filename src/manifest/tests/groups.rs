//! Absolute URIs under upstream groups' bases: rerouted only to a path whose route fetches
//! from the group the URI named, else left as the origin wrote them.

use super::*;

/// Routes as a config with `/ads/` on the `ads` group and `/live/` on `live` has them.
fn route(path: &str) -> Option<&'static str> {
    if crate::access::under(path, "/ads/") {
        Some("ads")
    } else if crate::access::under(path, "/live/") {
        Some("live")
    } else {
        None
    }
}

fn grouped(body: &str) -> Rewritten {
    let bases = [
        OriginBase::parse("http://origin.test:8000/hls").unwrap(),
        OriginBase::parse("http://ads.test/base")
            .unwrap()
            .in_group("ads"),
        // `live` is the same server as `[upstream]`, with other timeouts.
        OriginBase::parse("http://origin.test:8000/hls")
            .unwrap()
            .in_group("live"),
    ];
    let group_of = |path: &str| route(path);
    let ctx = Rewrite {
        upstream_for: Some(UpstreamFor(&group_of)),
        ..context(&bases)
    };
    rewrite(body.as_bytes(), &ctx).unwrap()
}

#[test]
fn a_group_uri_is_rerouted_only_to_a_path_its_group_serves() {
    let out = grouped(
        "#EXTM3U\n\
         #EXTINF:4,\nhttp://ads.test/base/ads/a1.ts\n\
         #EXTINF:4,\nhttp://ads.test/base/other/x.ts\n\
         #EXTINF:4,\nhttp://ads.test/base/ads/../other/y.ts\n\
         #EXTINF:4,\nhttp://ads.test/base/%61ds/a2.ts\n\
         #EXTINF:4,\nhttp://origin.test:8000/hls/vod/s1.ts\n\
         #EXTINF:4,\nhttp://origin.test:8000/hls/ads/promo.ts\n\
         #EXTINF:4,\nhttp://origin.test:8000/hls/live/l1.ts\n",
    );
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXTINF:4,\n/ads/a1.ts?token=TOK\n\
         #EXTINF:4,\nhttp://ads.test/base/other/x.ts\n\
         #EXTINF:4,\nhttp://ads.test/base/ads/../other/y.ts\n\
         #EXTINF:4,\n/%61ds/a2.ts?token=TOK\n\
         #EXTINF:4,\n/vod/s1.ts?token=TOK\n\
         #EXTINF:4,\nhttp://origin.test:8000/hls/ads/promo.ts\n\
         #EXTINF:4,\n/live/l1.ts?token=TOK\n"
    );
    assert_eq!((out.rerouted, out.foreign), (4, 3));
}

#[test]
fn without_routes_to_groups_only_upstream_uris_are_rerouted() {
    let bases = [
        OriginBase::parse("http://origin.test:8000/hls").unwrap(),
        OriginBase::parse("http://ads.test/base")
            .unwrap()
            .in_group("ads"),
    ];
    let ctx = context(&bases);
    let out = rewrite(
        b"#EXTM3U\nhttp://ads.test/base/ads/a1.ts\nhttp://origin.test:8000/hls/a.ts\n",
        &ctx,
    )
    .unwrap();
    assert_eq!(
        out.text,
        "#EXTM3U\nhttp://ads.test/base/ads/a1.ts\n/a.ts?token=TOK\n"
    );
}
