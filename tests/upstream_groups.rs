//! Two upstream groups behind one usher: absolute URIs in a playlist that name a group's
//! origin are rerouted through usher only when the route of the path they become fetches
//! from that same group; any other is left as the origin wrote it.

mod support;

use std::collections::HashMap;

use support::*;

/// The main origin's show names the ad server's objects by absolute URL: one under
/// `/ads/` (the route to the `ads` group), one elsewhere; and one of its own under `/ads/`.
const SHOW: &str = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXTINF:4.000,
ADS/base/ads/break1.ts
#EXTINF:4.000,
ADS/base/other/bumper.ts
#EXTINF:4.000,
MAIN/ads/house.ts
#EXTINF:4.000,
MAIN/vod/show/s1.ts
#EXT-X-ENDLIST
";

#[tokio::test]
async fn a_group_uri_is_rerouted_only_to_a_path_its_group_serves() {
    let main = spawn_origin(HashMap::from([
        ("/vod/show/s1.ts".to_owned(), segment(300)),
        ("/ads/house.ts".to_owned(), segment(400)),
    ]))
    .await;
    let ads = spawn_origin(HashMap::from([
        ("/base/ads/break1.ts".to_owned(), segment(100)),
        ("/base/other/bumper.ts".to_owned(), segment(200)),
    ]))
    .await;
    let show = SHOW.replace("ADS", &ads.url()).replace("MAIN", &main.url());
    main.insert("/vod/show/index.m3u8", playlist(&show));
    let extra = format!(
        "[upstreams.ads]\norigin = \"{}/base\"\n[[routes]]\nprefix = \"/ads/\"\nupstream = \"ads\"\n",
        ads.url()
    );
    let usher = Usher::start(&test_config(&main.url(), &extra), &[]);
    let url = format!("{}/vod/show/index.m3u8?ticket={}", usher.url, mint("/"));

    let reply = get(&url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let written = uris(&reply.text());
    assert_eq!(written.len(), 4, "{written:?}");
    // The viewer gets every object, each from the server that has it.
    for (uri, len) in written.iter().zip([100, 200, 400, 300]) {
        let object = get(&resolve(&url, uri), &[]).await;
        assert_eq!(object.status, 200, "{uri}: {}", object.text());
        assert_eq!(object.body.len(), len, "{uri}");
    }

    // Served by the group it named: through usher, with the token.
    assert!(
        written[0].starts_with("/ads/break1.ts?token="),
        "{written:?}"
    );
    assert!(
        written[3].starts_with("/vod/show/s1.ts?token="),
        "{written:?}"
    );
    // `/other/` and `/ads/` are the other group's: as written, without a token.
    assert_eq!(written[1], format!("{}/base/other/bumper.ts", ads.url()));
    assert_eq!(written[2], format!("{}/ads/house.ts", main.url()));
    let asked =
        |origin: &Origin| -> Vec<String> { origin.seen().into_iter().map(|s| s.target).collect() };
    assert!(
        !asked(&main).iter().any(|t| t.starts_with("/other/")),
        "{:?}",
        asked(&main)
    );
    assert!(
        !asked(&ads).iter().any(|t| t.starts_with("/base/ads/house")),
        "{:?}",
        asked(&ads)
    );
}
