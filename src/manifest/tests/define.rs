//! The variable carrier: the token defined once, referenced by every URI.

use super::*;
use crate::manifest::attributes::find_attribute;

fn rv(body: &str, token: &str) -> Rewritten {
    rewrite_in(body.as_bytes(), token, None, Carrier::Variable)
        .unwrap_or_else(|e| panic!("rewrite failed: {e}"))
}

/// What a player makes of a playlist with variables: the definitions read, the references
/// substituted, the definition and version lines gone (the version is checked apart).
fn substituted(text: &str) -> String {
    let mut vars = Vec::new();
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        if let Some(attrs) = body.strip_prefix("#EXT-X-DEFINE:") {
            let name = find_attribute(attrs, "NAME").unwrap().unwrap();
            let value = find_attribute(attrs, "VALUE").unwrap().unwrap();
            vars.push((format!("{{${}}}", &attrs[name]), attrs[value].to_owned()));
            continue;
        }
        if body.starts_with("#EXT-X-VERSION") {
            continue;
        }
        let mut line = line.to_owned();
        for (reference, value) in &vars {
            line = line.replace(reference, value);
        }
        out.push_str(&line);
    }
    out
}

fn versions(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("#EXT-X-VERSION"))
        .collect()
}

#[test]
fn every_fixture_plays_as_the_query_carrier_writes_it_once_substituted() {
    for (name, body, expected) in GOOD {
        let query = rw(body);
        let variable = rv(body, TOKEN);
        assert_eq!(counts(&variable), *expected, "{name}");
        assert_eq!(
            substituted(&variable.text),
            substituted(&query.text),
            "{name}: the player's playlist is the query carrier's"
        );
        assert!(
            !variable.text.contains("token=TOK"),
            "{name}: no URI carries the token itself"
        );
        assert_eq!(
            variable
                .text
                .matches("#EXT-X-DEFINE:NAME=\"t\",VALUE=\"TOK\"")
                .count(),
            1,
            "{name}: defined once"
        );
        let version = versions(&variable.text);
        assert_eq!(version.len(), 1, "{name}: one version tag: {version:?}");
        let n: u32 = version[0]
            .split_once(':')
            .unwrap()
            .1
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 8, "{name}: variables need version 8: {}", version[0]);
    }
}

#[test]
fn the_definition_follows_the_header_and_a_lower_version_is_raised() {
    let body = "#EXTM3U\n\
                #EXT-X-VERSION:3\n\
                #EXT-X-TARGETDURATION:4\n\
                #EXT-X-MAP:URI=\"init.mp4\"\n\
                #EXTINF:4,\n\
                seg1.ts\n\
                #EXTINF:4,\n\
                seg2.ts?v=2\n\
                #EXT-X-ENDLIST\n";
    let out = rv(body, "s2.AbC-_x");
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXT-X-DEFINE:NAME=\"t\",VALUE=\"s2.AbC-_x\"\n\
         #EXT-X-VERSION:8\n\
         #EXT-X-TARGETDURATION:4\n\
         #EXT-X-MAP:URI=\"init.mp4?token={$t}\"\n\
         #EXTINF:4,\n\
         seg1.ts?token={$t}\n\
         #EXTINF:4,\n\
         seg2.ts?v=2&token={$t}\n\
         #EXT-X-ENDLIST\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 3, 0, 0, 0));
}

#[test]
fn a_playlist_without_a_version_gets_one_in_its_own_line_ending() {
    let out = rv(
        "#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1\r\nv/index.m3u8\r\n",
        "T",
    );
    assert_eq!(
        out.text,
        "#EXTM3U\r\n\
         #EXT-X-VERSION:8\r\n\
         #EXT-X-DEFINE:NAME=\"t\",VALUE=\"T\"\r\n\
         #EXT-X-STREAM-INF:BANDWIDTH=1\r\n\
         v/index.m3u8?token={$t}\r\n"
    );
    // A version at or above 8 stays as it is.
    let out = rv("#EXTM3U\n#EXT-X-VERSION:10\n#EXTINF:4,\na.ts\n", "T");
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-DEFINE:NAME=\"t\",VALUE=\"T\"\n#EXT-X-VERSION:10\n#EXTINF:4,\na.ts?token={$t}\n"
    );
}

#[test]
fn a_playlist_that_names_the_variable_itself_gets_the_token_in_every_uri() {
    for define in [
        "#EXT-X-DEFINE:NAME=\"t\",VALUE=\"x\"",
        "#EXT-X-DEFINE:IMPORT=\"t\"",
        "#EXT-X-DEFINE:QUERYPARAM=\"t\"",
    ] {
        let body = format!("#EXTM3U\n{define}\n#EXTINF:4,\na.ts\n");
        let query = Some("t=1");
        let out = rewrite_in(body.as_bytes(), TOKEN, query, Carrier::Variable).unwrap();
        let by_query = rewrite_with(&body, TOKEN, query).unwrap();
        assert_eq!(out.text, by_query.text, "{define}");
        assert!(out.text.ends_with("\na.ts?token=TOK\n"), "{define}");
    }
    // Other names are no conflict, the parameter's name included.
    let body = "#EXTM3U\n#EXT-X-DEFINE:NAME=\"token\",VALUE=\"v2\"\n#EXTINF:4,\n{$token}/a.ts\n";
    let out = rv(body, TOKEN);
    assert!(
        out.text.ends_with("\n{$token}/a.ts?token={$t}\n"),
        "{}",
        out.text
    );
}

#[test]
fn a_token_that_cannot_be_quoted_is_written_in_every_uri() {
    let body = "#EXTM3U\n#EXTINF:4,\na.ts\n";
    let out = rv(body, "a\"b");
    assert_eq!(out.text, "#EXTM3U\n#EXTINF:4,\na.ts?token=a\"b\n");
}

#[test]
fn a_ten_thousand_segment_playlist_grows_by_the_reference_not_the_token() {
    let mut body = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n");
    for i in 0..10_000 {
        let _ = write!(body, "#EXTINF:6.000,\nseg_{i:05}.ts\n");
    }
    body.push_str("#EXT-X-ENDLIST\n");
    // The demo's device-bound session token is about 100 characters.
    let token = "s2.".to_owned() + &"x".repeat(100);
    let query = rewrite_in(body.as_bytes(), &token, None, Carrier::Query).unwrap();
    let variable = rv(&body, &token);
    let ratio = |out: &Rewritten| out.text.len() as f64 / body.len() as f64;
    assert!(ratio(&query) > 4.0, "query carrier {:.2}×", ratio(&query));
    assert!(
        ratio(&variable) <= 1.4,
        "variable carrier {:.2}×",
        ratio(&variable)
    );
    assert_eq!(variable.tokenized, 10_000);
}

#[test]
fn a_playlist_that_refers_to_the_variable_gets_the_token_in_every_uri() {
    // Another host's URI naming `{$t}` is left alone; with usher's definition the player
    // would put the token into it and send it there.
    let body = "#EXTM3U\n#EXTINF:4,\nhttps://cdn.example.net/{$t}/a.ts\n#EXTINF:4,\nb.ts\n";
    let out = rv(body, TOKEN);
    assert_eq!(out.text, rw(body).text);
    assert!(!out.text.contains("EXT-X-DEFINE"), "{}", out.text);
    // A tag that only starts like the version tag is no version.
    let out = rv("#EXTM3U\n#EXT-X-VERSIONS:1\n#EXTINF:4,\na.ts\n", "T");
    assert!(
        out.text
            .starts_with("#EXTM3U\n#EXT-X-VERSION:8\n#EXT-X-DEFINE"),
        "{}",
        out.text
    );
}

#[test]
fn preview_and_per_uri_credentials_under_the_variable_carrier() {
    let origin_bases = [OriginBase::parse("http://origin.test:8000/hls").unwrap()];
    let body = "#EXTM3U\n#EXTINF:4,\na.ts\n#EXTINF:4,\nb.ts\n";
    // Preview: the segments inside the preview refer to the variable, the rest get nothing.
    let ctx = Rewrite {
        token: "P",
        preview: Some(Preview {
            seconds: 4,
            playlist_path: "/v/index.m3u8",
        }),
        carrier: Carrier::Variable,
        ..context(&origin_bases)
    };
    let out = rewrite(body.as_bytes(), &ctx).unwrap();
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXT-X-VERSION:8\n#EXT-X-DEFINE:NAME=\"t\",VALUE=\"P\"\n\
         #EXTINF:4,\na.ts?token={$t}\n#EXTINF:4,\nb.ts\n"
    );
    assert_eq!(out.allowed, ["/v/a.ts"]);
    // Per-URI credentials have no one token to define: each URI gets its own.
    let mint = |path: &str| format!("md5={path}");
    let ctx = Rewrite {
        preview: None,
        per_path: Some(PerPath {
            playlist_path: "/v/index.m3u8",
            mint: &mint,
        }),
        ..ctx
    };
    let out = rewrite(body.as_bytes(), &ctx).unwrap();
    assert_eq!(
        out.text,
        "#EXTM3U\n#EXTINF:4,\na.ts?md5=/v/a.ts\n#EXTINF:4,\nb.ts?md5=/v/b.ts\n"
    );
}
