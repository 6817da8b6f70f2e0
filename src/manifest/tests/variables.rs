//! EXT-X-DEFINE: variables resolved for the decision, kept for the player.

use super::*;
use crate::manifest::variables::query_value;

#[test]
fn defined_origin_base_is_rerouted() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:NAME=\"base\",VALUE=\"http://origin.test:8000/hls\"\n\
                #EXT-X-MAP:URI=\"{$base}/v1/init.mp4\"\n\
                #EXTINF:4,\n\
                {$base}/v1/seg.ts\n";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXT-X-DEFINE:NAME=\"base\",VALUE=\"http://origin.test:8000/hls\"\n\
         #EXT-X-MAP:URI=\"/v1/init.mp4?token=TOK\"\n\
         #EXTINF:4,\n\
         /v1/seg.ts?token=TOK\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 2, 0, 0));
}

#[test]
fn imported_variable_at_the_start_is_left_alone() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:IMPORT=\"cdn\"\n\
                #EXTINF:4,\n\
                {$cdn}/seg.ts\n\
                #EXTINF:4,\n\
                v/{$cdn}/seg.ts\n";
    let out = rw(body);
    assert_eq!(
        out.text,
        "#EXTM3U\n\
         #EXT-X-DEFINE:IMPORT=\"cdn\"\n\
         #EXTINF:4,\n\
         {$cdn}/seg.ts\n\
         #EXTINF:4,\n\
         v/{$cdn}/seg.ts?token=TOK\n"
    );
    assert_eq!(counts(&out), (PlaylistKind::Media, 1, 0, 0, 1));
}

#[test]
fn unknown_variable_inside_a_rerouted_uri_is_kept() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:NAME=\"base\",VALUE=\"http://origin.test:8000/hls\"\n\
                #EXT-X-DEFINE:IMPORT=\"session\"\n\
                #EXTINF:4,\n\
                {$base}/v/{$session}/seg.ts\n\
                #EXTINF:4,\n\
                {$base}/{$session}/seg.ts\n";
    let out = rw(body);
    assert!(
        out.text
            .ends_with("\n/v/{$session}/seg.ts?token=TOK\n#EXTINF:4,\n{$base}/{$session}/seg.ts\n"),
        "{}",
        out.text
    );
    // The second, rerouted, would be `/{$session}/seg.ts`: with an empty `session`, the
    // player reads `//seg.ts`, the host `seg.ts`. It is left as the origin wrote it.
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 1, 1, 0));
}

#[test]
fn defined_relative_and_foreign_values() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:NAME=\"dir\",VALUE=\"v1\"\n\
                #EXT-X-DEFINE:NAME=\"cdn\",VALUE=\"https://cdn.example.net/hls\"\n\
                #EXT-X-DEFINE:NAME=\"q\",VALUE=\"?session=1\"\n\
                #EXTINF:4,\n\
                {$dir}/seg1.ts\n\
                #EXTINF:4,\n\
                {$cdn}/seg2.ts\n\
                #EXTINF:4,\n\
                seg3.ts{$q}\n";
    let out = rw(body);
    // Variables stay for the player to substitute; the token joins the query the
    // substitution will produce.
    assert!(out.text.contains("\n{$dir}/seg1.ts?token=TOK\n"));
    assert!(out.text.contains("\n{$cdn}/seg2.ts\n"));
    assert!(out.text.contains("\nseg3.ts{$q}&token=TOK\n"));
    assert_eq!(counts(&out), (PlaylistKind::Media, 2, 0, 1, 0));
    assert_only_uris_changed(body, &out.text, TOKEN);
}

#[test]
fn queryparam_define_is_resolved_from_the_request_query() {
    let body = "#EXTM3U\n\
                #EXT-X-DEFINE:QUERYPARAM=\"host\"\n\
                #EXTINF:4,\n\
                {$host}/seg.ts\n";
    let run = |query| rewrite_with(body, TOKEN, query).unwrap();

    let out = run(Some("a=1&host=http://origin.test:8000/hls"));
    assert!(out.text.ends_with("\n/seg.ts?token=TOK\n"), "{}", out.text);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 1, 0, 0));

    let out = run(Some("host=https://cdn.example.net"));
    assert_eq!(out.text, body);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 0, 1, 0));

    // The player percent-decodes the value before substituting it, so must the rewriter,
    // or the token would be handed to whatever host the query names.
    let out = run(Some("host=https%3A%2F%2Fcdn.example.net"));
    assert_eq!(out.text, body);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 0, 1, 0));
    let out = run(Some("host=http%3A%2F%2Forigin.test%3A8000%2Fhls"));
    assert!(out.text.ends_with("\n/seg.ts?token=TOK\n"), "{}", out.text);

    let out = run(Some("host=v2"));
    assert!(out.text.ends_with("\n{$host}/seg.ts?token=TOK\n"));
    assert_eq!(counts(&out), (PlaylistKind::Media, 1, 0, 0, 0));

    // A player must refuse a playlist whose parameter is not in its URL (RFC 8216bis
    // 4.4.2.3); so does the rewriter.
    for query in [None, Some("other=1"), Some("hostx=v2")] {
        let refused = rewrite_with(body, TOKEN, query);
        assert!(
            matches!(refused, Err(ManifestError::BadDefine { line: 2, .. })),
            "{query:?}: {refused:?}"
        );
    }
}

#[test]
fn a_variable_defined_twice_is_refused() {
    for second in [
        "#EXT-X-DEFINE:NAME=\"h\",VALUE=\"/hls\"",
        "#EXT-X-DEFINE:IMPORT=\"h\"",
        "#EXT-X-DEFINE:QUERYPARAM=\"h\"",
    ] {
        // hls.js keeps the first value: the rewriter would judge by the second.
        let body = format!(
            "#EXTM3U\n#EXT-X-DEFINE:NAME=\"h\",VALUE=\"https://evil.example\"\n{second}\n#EXTINF:4,\n{{$h}}/a.ts\n"
        );
        let refused = rewrite_with(&body, TOKEN, Some("h=/hls"));
        assert!(
            matches!(refused, Err(ManifestError::BadDefine { line: 3, .. })),
            "{second}: {refused:?}"
        );
    }
}

#[test]
fn a_parameter_without_a_value_is_substituted_as_empty() {
    // `?p&…`: the player substitutes "", and `/{$p}/evil.example/a.ts` names that host.
    let body = "#EXTM3U\n#EXT-X-DEFINE:QUERYPARAM=\"p\"\n#EXTINF:4,\n/{$p}/evil.example/a.ts\n";
    let out = rewrite_with(body, TOKEN, Some("p&x=1")).unwrap();
    assert_eq!(out.text, body);
    assert_eq!(counts(&out), (PlaylistKind::Media, 0, 0, 1, 0));
}

#[test]
fn form_decoding_of_query_values() {
    assert_eq!(crate::form::decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    assert_eq!(
        query_value(Some("x=1&b%61se=%2Fp&base=2"), "base").as_deref(),
        Some("/p")
    );
    assert_eq!(query_value(Some("flag&x=1"), "flag").as_deref(), Some(""));
    assert_eq!(query_value(Some("x=1"), "flag"), None);
}
