//! Interstitials asset lists (JSON): each asset's `URI` rewritten as a playlist URI is,
//! every other byte copied; what is not an asset list usher can account for refused.

use super::*;

/// Rewrites the asset list `body` with the test origin and `carrier`.
fn list_in(body: &str, carrier: Carrier<'_>) -> Result<Rewritten, ManifestError> {
    bytes_in(body.as_bytes(), carrier)
}

/// [`list_in`] for bytes that may not be text.
fn bytes_in(body: &[u8], carrier: Carrier<'_>) -> Result<Rewritten, ManifestError> {
    let origin_bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let ctx = Rewrite {
        carrier,
        max_output: body.len() * 8,
        ..context(&origin_bases)
    };
    rewrite_asset_list(body, &ctx)
}

fn list(body: &str) -> Rewritten {
    list_in(body, Carrier::Query).unwrap_or_else(|e| panic!("rewrite failed: {e}"))
}

/// Relative, path-absolute, origin, foreign and escaped URIs, other members around them,
/// odd spacing and number forms: only the URIs to tokenize change.
const LIST: &str = "\u{feff}{ \"SKIP-CONTROL\": {\"OFFSET\": 5.000},\n  \"ASSETS\" : [\n    \
    {\"URI\": \"ads/a.m3u8\", \"DURATION\": 15.000, \"X-AD-ID\": \"a\"},\n    \
    {\"DURATION\": 1e1, \"URI\":\"/vod/promo.m3u8?v=2#t=1\"},\n    \
    {\"URI\": \"http:\\/\\/origin.test:8000\\/hls\\/vod\\/b.m3u8\", \"DURATION\": 30},\n    \
    {\"URI\": \"https:\\/\\/ads.example.net\\/c.m3u8\", \"DURATION\": 30}\n  ],\n  \
    \"URI\": \"top-level.m3u8\"\n}\n";

#[test]
fn asset_uris_are_tokenized_and_every_other_byte_is_kept() {
    let out = list(LIST);
    assert_eq!(
        out.text,
        "\u{feff}{ \"SKIP-CONTROL\": {\"OFFSET\": 5.000},\n  \"ASSETS\" : [\n    \
         {\"URI\": \"ads/a.m3u8?token=TOK\", \"DURATION\": 15.000, \"X-AD-ID\": \"a\"},\n    \
         {\"DURATION\": 1e1, \"URI\":\"/vod/promo.m3u8?v=2&token=TOK#t=1\"},\n    \
         {\"URI\": \"/vod/b.m3u8?token=TOK\", \"DURATION\": 30},\n    \
         {\"URI\": \"https:\\/\\/ads.example.net\\/c.m3u8\", \"DURATION\": 30}\n  ],\n  \
         \"URI\": \"top-level.m3u8\"\n}\n"
    );
    assert_eq!(
        (out.kind, out.tokenized, out.rerouted, out.foreign),
        (PlaylistKind::AssetList, 2, 1, 1)
    );
    let parsed: serde_json::Value =
        serde_json::from_str(out.text.trim_start_matches('\u{feff}')).unwrap();
    assert_eq!(parsed["ASSETS"][0]["DURATION"], 15.0);
}

#[test]
fn carriers_write_asset_uris_as_they_write_playlist_uris() {
    let body = r#"{"ASSETS":[{"URI":"a.m3u8","DURATION":2},{"URI":"/vod/b.m3u8","DURATION":2}]}"#;
    let uris = |carrier| {
        let out = list_in(body, carrier).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out.text).unwrap();
        let assets = parsed["ASSETS"].as_array().unwrap().clone();
        assets
            .iter()
            .map(|a| a["URI"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // No variables in JSON: the variable carrier's URIs carry the token itself.
    for carrier in [Carrier::Query, Carrier::Variable] {
        assert_eq!(uris(carrier), ["a.m3u8?token=TOK", "/vod/b.m3u8?token=TOK"]);
    }
    assert_eq!(
        uris(Carrier::Path("/vod/ads/list.json")),
        ["/TOK/vod/ads/a.m3u8", "/TOK/vod/b.m3u8"]
    );
    assert_eq!(
        uris(Carrier::Inherited("/vod/ads/list.json")),
        ["a.m3u8", "/TOK/vod/b.m3u8"]
    );
    assert_eq!(uris(Carrier::Cookie), ["a.m3u8", "/vod/b.m3u8"]);
}

#[test]
fn json_without_assets_is_copied_unchanged() {
    for body in [
        r#"{"chapters":[{"URI":"x.m3u8"}]}"#,
        "[1, 2]",
        "\"text\"",
        " {} ",
    ] {
        let out = list(body);
        assert_eq!(out.text, body);
        assert_eq!(out.tokenized + out.foreign, 0);
    }
}

#[test]
fn the_last_assets_and_uri_count_as_in_json_parse() {
    let out = list(r#"{"ASSETS":[{"URI":"x.m3u8"}],"ASSETS":[{"URI":"a","URI":"b"}]}"#);
    assert_eq!(
        out.text,
        r#"{"ASSETS":[{"URI":"x.m3u8"}],"ASSETS":[{"URI":"a","URI":"b?token=TOK"}]}"#
    );
}

#[test]
fn what_is_not_an_asset_list_is_refused() {
    let refused = |body: &str| match list_in(body, Carrier::Query) {
        Err(ManifestError::AssetList(e)) => e,
        other => panic!("{body}: {other:?}"),
    };
    for body in ["", "{", "{\"ASSETS\": []", "{\"ASSETS\": []} x", "<html>"] {
        assert!(
            matches!(refused(body), AssetListError::NotJson(_)),
            "{body}"
        );
    }
    for (body, why) in [
        (
            r#"{"ASSETS": {"URI": "a"}}"#,
            "ASSETS is not a list of objects",
        ),
        (
            r#"{"ASSETS": ["a.m3u8"]}"#,
            "ASSETS is not a list of objects",
        ),
        (r#"{"ASSETS": [{"DURATION": 1}]}"#, "ASSETS[0] has no URI"),
        (
            r#"{"ASSETS": [{"URI": "a"}, {"URI": 7}]}"#,
            "ASSETS[1].URI is not a string",
        ),
    ] {
        assert_eq!(refused(body), AssetListError::BadAssets(why.to_owned()));
    }
}

#[test]
fn bytes_that_are_not_utf8_are_not_json() {
    // "promo-\xe9t\xe9" in Latin-1.
    let body = b"{\"ASSETS\":[{\"URI\":\"a.m3u8\",\"X-AD-ID\":\"promo-\xe9t\xe9\"}]}";
    assert!(matches!(
        bytes_in(body, Carrier::Query),
        Err(ManifestError::AssetList(AssetListError::NotJson(_)))
    ));
}

#[test]
fn the_output_is_bounded() {
    let origin_bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let body = r#"{"ASSETS":[{"URI":"a"},{"URI":"b"}]}"#;
    let ctx = Rewrite {
        token: &"T".repeat(100),
        max_output: 100,
        ..context(&origin_bases)
    };
    assert_eq!(
        rewrite_asset_list(body.as_bytes(), &ctx),
        Err(ManifestError::OutputTooLarge { limit: 100 })
    );
}

#[test]
fn preview_allows_exactly_the_listed_assets() {
    let origin_bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let body = r#"{"ASSETS":[{"URI":"a.m3u8"},{"URI":"https://ads.example.net/b.m3u8"}]}"#;
    let ctx = Rewrite {
        preview: Some(Preview {
            seconds: 10,
            playlist_path: "/vod/ads/list.json",
        }),
        ..context(&origin_bases)
    };
    let out = rewrite_asset_list(body.as_bytes(), &ctx).unwrap();
    assert_eq!(out.allowed, ["/vod/ads/a.m3u8"]);
}

#[test]
fn a_steering_manifest_reloads_from_its_reload_uri_with_the_token() {
    let body = "{\"VERSION\":1,\"TTL\":300,\"RELOAD-URI\":\"manifest.json?session=7\",\n\
                \"PATHWAY-PRIORITY\":[\"CDN-A\",\"CDN-B\"]}";
    let out = list(body);
    assert_eq!(
        out.text,
        body.replace("session=7", "session=7&token=TOK"),
        "only the reload URI changes"
    );
    assert_eq!((out.tokenized, out.foreign), (1, 0));
    // After assets or before them, in document order; another host's is left alone.
    let both = r#"{"ASSETS":[{"URI":"a.m3u8"}],"RELOAD-URI":"/steer/next.json"}"#;
    assert_eq!(
        list(both).text,
        r#"{"ASSETS":[{"URI":"a.m3u8?token=TOK"}],"RELOAD-URI":"/steer/next.json?token=TOK"}"#
    );
    let foreign = r#"{"VERSION":1,"RELOAD-URI":"https://steer.example/m.json"}"#;
    assert_eq!(list(foreign).text, foreign);
    // Under the path carrier it is written under the token, as a playlist URI is.
    let out = list_in(
        r#"{"VERSION":1,"RELOAD-URI":"next.json"}"#,
        Carrier::Path("/live/steer/manifest.json"),
    )
    .unwrap();
    assert_eq!(
        out.text,
        r#"{"VERSION":1,"RELOAD-URI":"/TOK/live/steer/next.json"}"#
    );
}
