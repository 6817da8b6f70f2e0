//! The ways a session token travels: a query parameter (written on every URI, or once as a
//! playlist variable every URI refers to), the first path segment (relative URIs inherit
//! it; players that drop query strings keep it), and a cookie. The token never reaches the
//! origin.

mod support;

use std::collections::HashMap;

use support::*;
use usher::clock::unix_now;
use usher::ticket::{self, Kind};

const MASTER: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/index.m3u8\n";
const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k.key\"\n#EXTINF:2,\ns1.ts\n#EXT-X-ENDLIST\n";

/// A media playlist naming its segment by a path-absolute URI.
const ABSOLUTE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n/p/v/s1.ts\n#EXT-X-ENDLIST\n";

/// A media playlist whose segment URI holds a session token of the origin's own (another
/// deployment's, or one long expired): usher's query parameter, stale.
const STALE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n\
    s1.ts?token=s2.test-key.AQID.AAAAAAAAAAAAAAAAAAAAAA\n#EXT-X-ENDLIST\n";

/// A master of two live renditions, each of whose playlists reports on the other by a
/// path-absolute URI (`OTHER`).
const TWO: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/live.m3u8\n\
    #EXT-X-STREAM-INF:BANDWIDTH=2\nw/live.m3u8\n";
const LIVE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n\
    #EXT-X-RENDITION-REPORT:URI=\"OTHER\",LAST-MSN=0\n";

async fn origin() -> Origin {
    let mut objects = HashMap::new();
    for route in ["q", "p", "c", "var"] {
        objects.insert(format!("/{route}/master.m3u8"), playlist(MASTER));
        objects.insert(format!("/{route}/v/stale.m3u8"), playlist(STALE));
        objects.insert(format!("/{route}/two.m3u8"), playlist(TWO));
        for (name, other) in [("v", "w"), ("w", "v")] {
            let live = LIVE.replace("OTHER", &format!("/{route}/{other}/live.m3u8"));
            objects.insert(format!("/{route}/{name}/live.m3u8"), playlist(&live));
        }
        objects.insert(format!("/{route}/v/index.m3u8"), playlist(MEDIA));
        objects.insert(format!("/{route}/v/absolute.m3u8"), playlist(ABSOLUTE));
        objects.insert(format!("/{route}/v/s1.ts"), segment(100));
        objects.insert(format!("/{route}/keys/k.key"), segment(16));
    }
    spawn_origin(objects).await
}

fn start(origin: &Origin) -> Usher {
    let routes = "[[routes]]\nprefix = \"/q/\"\ncarrier = \"query\"\n\
                  [[routes]]\nprefix = \"/p/\"\ncarrier = \"path\"\n\
                  [[routes]]\nprefix = \"/c/\"\ncarrier = \"cookie\"\n\
                  [[routes]]\nprefix = \"/var/\"\ncarrier = \"variable\"\n";
    Usher::start(&test_config(&origin.url(), routes), &[])
}

/// The master playlist of `route`, requested with a ticket for it.
async fn master(usher: &Usher, route: &str) -> Reply {
    let url = format!(
        "{}/{route}/master.m3u8?ticket={}",
        usher.url,
        mint(&format!("/{route}/"))
    );
    get(&url, &[]).await
}

fn uri_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix} in {text}"))
}

/// Resolves `relative` against the path `base` as a player does (RFC 3986 dot segments).
fn resolve(base: &str, relative: &str) -> String {
    let mut segments: Vec<&str> = base.split('/').collect();
    segments.pop();
    for part in relative.split('/') {
        match part {
            ".." => {
                segments.pop();
            }
            "." => {}
            _ => segments.push(part),
        }
    }
    segments.join("/")
}

#[tokio::test]
async fn a_token_in_the_path_is_inherited_by_relative_uris_and_stripped_before_the_origin() {
    let origin = origin().await;
    let usher = start(&origin);
    let master_url = format!("{}/p/master.m3u8?ticket={}", usher.url, mint("/p/"));
    let master = get(&master_url, &[]).await;
    assert_eq!(master.status, 200, "{}", master.text());
    // Requested with a ticket: the master's URIs are written under the token.
    let variant = uri_after(&master.text(), "/s2.").to_owned();
    assert!(variant.ends_with("/p/v/index.m3u8"), "{variant}");
    assert!(!variant.contains('?'), "no query at all: {variant}");
    let variant_url = format!("{}{variant}", usher.url);
    let media = get(&variant_url, &[]).await;
    assert_eq!(media.status, 200, "{}", media.text());
    // Requested under the token: relative URIs inherit it as they are, so the playlist
    // goes out byte for byte as the origin wrote it.
    assert_eq!(media.text(), MEDIA);
    let segment = resolve(&variant, "s1.ts");
    let key = resolve(&variant, "../keys/k.key");
    assert!(
        segment.ends_with("/p/v/s1.ts") && key.ends_with("/p/keys/k.key"),
        "{segment} {key}"
    );
    assert_eq!(
        get(&format!("{}{segment}", usher.url), &[]).await.status,
        200
    );
    assert_eq!(get(&format!("{}{key}", usher.url), &[]).await.status, 200);
    // A path-absolute URI would lose the token: it is written under it.
    let absolute = get(&resolve(&variant_url, "absolute.m3u8"), &[]).await;
    assert_eq!(absolute.status, 200, "{}", absolute.text());
    let token = variant.split('/').nth(1).unwrap();
    assert!(
        absolute.text().contains(&format!("\n/{token}/p/v/s1.ts\n")),
        "{}",
        absolute.text()
    );
    for seen in origin.seen() {
        assert!(
            !seen.target.contains("test-key"),
            "the token never reaches the origin: {}",
            seen.target
        );
    }
    let forged = get(
        &format!(
            "{}/s2.test-key.AQID.AAAAAAAAAAAAAAAAAAAAAA/p/v/s1.ts",
            usher.url
        ),
        &[],
    )
    .await;
    assert_eq!(
        (forged.status.as_u16(), forged.reason().as_str()),
        (403, "bad_signature")
    );
}

#[tokio::test]
async fn a_cookie_carries_the_token_and_uris_stay_as_the_origin_wrote_them() {
    let origin = origin().await;
    let usher = start(&origin);
    let master = master(&usher, "c").await;
    assert_eq!(master.status, 200);
    assert_eq!(master.text(), MASTER, "URIs untouched");
    let cookie = master.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("usher_session=s2."), "{cookie}");
    assert!(
        cookie.contains("; Path=/c/; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let media = get(
        &format!("{}/c/v/index.m3u8", usher.url),
        &[("cookie", pair)],
    )
    .await;
    assert_eq!(media.status, 200);
    assert_eq!(media.text(), MEDIA);
    assert_eq!(
        get(&format!("{}/c/v/s1.ts", usher.url), &[("cookie", pair)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&format!("{}/c/v/s1.ts", usher.url), &[]).await.status,
        401
    );
    for seen in origin.seen() {
        assert!(seen
            .headers
            .get("cookie")
            .is_none_or(|c| !c.to_str().unwrap().contains("usher_session")));
    }
}

/// The origin wrote a session token into a segment URI. Under the path and cookie carriers
/// the player would send it beside usher's, in the query, where it is read first and
/// refused: usher drops it, and the segment plays on usher's token.
#[tokio::test]
async fn a_stale_token_the_origin_wrote_does_not_shadow_the_path_or_the_cookie() {
    let origin = origin().await;
    let usher = start(&origin);
    let master_of_c = master(&usher, "c").await;
    let master = master(&usher, "p").await;
    let variant = uri_after(&master.text(), "/s2.").to_owned();
    let stale_url = format!("{}{}", usher.url, resolve(&variant, "stale.m3u8"));
    let media = get(&stale_url, &[]).await;
    assert_eq!(media.status, 200, "{}", media.text());
    let line = uri_after(&media.text(), "s1.ts").to_owned();
    let reply = get(&resolve(&stale_url, &line), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (200, ""),
        "path carrier: {line}"
    );

    let cookie = master_of_c.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let pair = cookie.split(';').next().unwrap();
    let stale_url = format!("{}/c/v/stale.m3u8", usher.url);
    let media = get(&stale_url, &[("cookie", pair)]).await;
    assert_eq!(media.status, 200, "{}", media.text());
    let line = uri_after(&media.text(), "s1.ts").to_owned();
    let reply = get(&resolve(&stale_url, &line), &[("cookie", pair)]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (200, ""),
        "cookie carrier: {line}"
    );
    for seen in origin.seen() {
        assert!(!seen.target.contains("token="), "{}", seen.target);
    }
}

/// A player matches a rendition report to a rendition by the URL it resolves to (hls.js:
/// exactly, or a prefix of it). Under the path carrier every rendition's URL holds the
/// token, so a path-absolute report is written under it too.
#[tokio::test]
async fn under_the_path_carrier_a_rendition_report_resolves_to_the_rendition_the_player_has() {
    let origin = origin().await;
    let usher = start(&origin);
    let url = format!("{}/p/two.m3u8?ticket={}", usher.url, mint("/p/"));
    // As a player resolves a URI against the playlist's URL.
    let locate = |base: &str, uri: &str| match uri.starts_with('/') {
        true => format!("{}{uri}", usher.url),
        false => resolve(base, uri),
    };
    let master = get(&url, &[]).await;
    assert_eq!(master.status, 200, "{}", master.text());
    let renditions: Vec<String> = master
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| locate(&url, l))
        .collect();
    let media = get(&renditions[0], &[]).await;
    assert_eq!(media.status, 200, "{}", media.text());
    let text = media.text();
    let start = text.find("RENDITION-REPORT:URI=\"").expect("a report") + 22;
    let report = &text[start..start + text[start..].find('"').unwrap()];
    assert_eq!(locate(&renditions[0], report), renditions[1], "{text}");
    let other = get(&renditions[1], &[]).await;
    assert_eq!(other.status, 200, "{}", other.text());
}

/// A viewer comes back with the play URL after the session its cookie names is over (the
/// browser keeps the cookie as long as it runs): the ticket in the URL starts a new
/// session, and the new cookie plays, instead of the stale cookie's token being refused as
/// expired until the browser forgets it.
#[tokio::test]
async fn a_ticket_plays_past_a_session_cookie_whose_session_is_over() {
    let origin = origin().await;
    let usher = start(&origin);
    let mut stale = claims("/c/");
    stale.sid = Some("a-session-long-over".into());
    stale.exp = unix_now() - 3600;
    stale.cap = stale.exp;
    let stale = format!(
        "usher_session={}",
        ticket::sign(&ring(), Kind::Session, &stale)
    );
    let master_url = format!("{}/c/master.m3u8?ticket={}", usher.url, mint("/c/"));
    let again = get(&master_url, &[("cookie", &stale)]).await;
    assert_eq!(
        (again.status.as_u16(), again.reason().as_str()),
        (200, ""),
        "{}",
        again.text()
    );
    let fresh = again.headers["set-cookie"].to_str().unwrap();
    let fresh = fresh.split(';').next().unwrap();
    assert_ne!(fresh, stale);
    let media = get(
        &format!("{}/c/v/index.m3u8", usher.url),
        &[("cookie", fresh)],
    )
    .await;
    assert_eq!(media.status, 200);
    let refused = get(
        &format!("{}/c/v/index.m3u8", usher.url),
        &[("cookie", &stale)],
    )
    .await;
    assert_eq!(
        (refused.status.as_u16(), refused.reason().as_str()),
        (403, "expired"),
        "without a ticket the stale cookie is refused as before"
    );
}

#[tokio::test]
async fn the_query_carrier_is_the_default() {
    let origin = origin().await;
    let usher = start(&origin);
    let master = master(&usher, "q").await;
    assert!(uri_after(&master.text(), "v/index.m3u8?token=s2.").len() > 20);
}

/// The variable carrier: each playlist defines the token once and its URIs refer to it; a
/// player that substitutes the variable requests exactly what the query carrier's would,
/// and one that does not (ffmpeg) sends the reference itself and is refused.
#[tokio::test]
async fn a_variable_defines_the_token_once_and_the_substituted_uris_play() {
    let origin = origin().await;
    let usher = start(&origin);
    let master = master(&usher, "var").await;
    assert_eq!(master.status, 200);
    let text = master.text();
    let token = defined_token(&text);
    assert!(token.starts_with("s2."), "{token}");
    assert_eq!(
        text,
        format!(
            "#EXTM3U\n#EXT-X-VERSION:8\n#EXT-X-DEFINE:NAME=\"t\",VALUE=\"{token}\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1\nv/index.m3u8?token={{$t}}\n"
        )
    );

    // The player substitutes the variable in the variant URI.
    let media = get(
        &format!("{}/var/v/index.m3u8?token={token}", usher.url),
        &[],
    )
    .await;
    assert_eq!(media.status, 200);
    let media = media.text();
    assert!(
        media.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k.key?token={$t}\"")
            && media.contains("\ns1.ts?token={$t}\n"),
        "{media}"
    );
    // The media playlist defines a token of its own.
    let fresh = defined_token(&media);
    for uri in ["v/s1.ts", "keys/k.key"] {
        let reply = get(&format!("{}/var/{uri}?token={fresh}", usher.url), &[]).await;
        assert_eq!(reply.status, 200, "{uri}");
    }
    let literal = get(&format!("{}/var/v/s1.ts?token={{$t}}", usher.url), &[]).await;
    assert_eq!(
        (literal.status.as_u16(), literal.reason().as_str()),
        (403, "malformed"),
        "a player that does not substitute is refused"
    );
    for seen in origin.seen() {
        assert!(!seen.target.contains("token"), "{}", seen.target);
    }
}

/// The value of the variable carrier's definition of `t` in `playlist`.
fn defined_token(playlist: &str) -> String {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-DEFINE:NAME=\"t\",VALUE=\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("a definition of t in {playlist}"))
        .to_owned()
}

/// HLS interstitials: the asset playlist and the asset list a date range names are
/// tokenized like any playlist URI, so a protected ad break or promo plays.
#[tokio::test]
async fn an_interstitial_asset_and_its_asset_list_play_with_the_token() {
    let primary = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-12-07T05:00:00.000Z\n\
        #EXT-X-DATERANGE:ID=\"pre\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-12-07T05:00:00.000Z\",X-ASSET-URI=\"../promo/index.m3u8\",CUE=\"PRE\"\n\
        #EXT-X-DATERANGE:ID=\"mid\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2026-12-07T05:00:02.000Z\",X-ASSET-LIST=\"../promo/list.json\"\n\
        #EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n#EXT-X-ENDLIST\n";
    let promo = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\np1.ts\n#EXT-X-ENDLIST\n";
    let origin = spawn_origin(HashMap::from([
        ("/q/v/index.m3u8".to_owned(), playlist(primary)),
        ("/q/promo/index.m3u8".to_owned(), playlist(promo)),
        ("/q/promo/p1.ts".to_owned(), segment(100)),
        (
            "/q/promo/list.json".to_owned(),
            json_object(r#"{"ASSETS":[{"URI":"index.m3u8","DURATION":2}]}"#),
        ),
    ]))
    .await;
    let usher = start(&origin);
    let media = get(
        &format!("{}/q/v/index.m3u8?ticket={}", usher.url, mint("/q/")),
        &[],
    )
    .await;
    assert_eq!(media.status, 200);
    let text = media.text();
    let attribute = |name: &str| {
        let start = text
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("{text}"));
        let value = &text[start + name.len() + 2..];
        value[..value.find('"').unwrap()].to_owned()
    };
    let asset = attribute("X-ASSET-URI");
    let list = attribute("X-ASSET-LIST");
    assert!(
        asset.starts_with("../promo/index.m3u8?token=s2."),
        "{asset}"
    );
    assert!(list.starts_with("../promo/list.json?token=s2."), "{list}");

    let asset = get(&format!("{}/q/{}", usher.url, &asset[3..]), &[]).await;
    assert_eq!(asset.status, 200);
    let segment_uri = asset
        .text()
        .lines()
        .find(|l| l.starts_with("p1.ts?token="))
        .map(str::to_owned);
    let segment_uri = segment_uri.unwrap_or_else(|| panic!("{}", asset.text()));
    let reply = get(&format!("{}/q/promo/{segment_uri}", usher.url), &[]).await;
    assert_eq!(reply.status, 200, "the promo's segment plays");
    let reply = get(&format!("{}/q/{}", usher.url, &list[3..]), &[]).await;
    assert_eq!(reply.status, 200, "the asset list is served");
    assert!(reply.text().contains("ASSETS"), "{}", reply.text());
    let bare = get(&format!("{}/q/promo/index.m3u8", usher.url), &[]).await;
    assert_eq!(bare.status, 401, "the asset stays protected");
}
