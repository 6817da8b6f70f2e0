//! Foreign credentials on incoming requests, through a real usher: Akamai EdgeAuth, nginx
//! secure_link and Google Media CDN tokens play on a route that accepts their format, are
//! refused on one that does not, never reach the origin, and are refused when tampered
//! with or expired. A token naming a subject is held to that subject's rights; one naming
//! no one is not.

mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::admin::api;
use support::*;
use usher::clock::unix_now;
use usher::ticket::edgeauth::{self, EdgeKey, EdgeToken, Options};
use usher::ticket::media_cdn::{self, MediaKey, MediaToken, Scope};
use usher::ticket::secure_link::Expression;

const AKAMAI_KEY: &str = "0123456789abcdef0123456789abcdef";
/// Google's sample HMAC key (base64url), from python-docs-samples media_cdn.
const MEDIA_KEY: &str = "g_SlMILiIWKqsC6Z2L7gy0sReDOqtSrJrE7CXNr5Nl8=";
const SECURE_LINK_SECRET: &str = "nginx-shared-secret";

const MASTER: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/index.m3u8\n";
const MEDIA: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXT-X-ENDLIST\n";

/// `/open/` accepts every format, `/strict/` only usher's (the default), `/cdn/` mints
/// Media CDN tokens and accepts them back.
fn formats() -> String {
    format!(
        r#"
[akamai]
key = "{AKAMAI_KEY}"
[secure_link]
secret = "{SECURE_LINK_SECRET}"
[media_cdn]
[[media_cdn.keys]]
id = "google-sample"
secret = "{MEDIA_KEY}"
[[routes]]
prefix = "/open/"
accept = ["usher", "akamai", "secure_link", "media_cdn"]
[[routes]]
prefix = "/strict/"
[[routes]]
prefix = "/cdn/"
mint = "media_cdn"
accept = ["usher", "media_cdn"]
"#
    )
}

async fn origin() -> Origin {
    let mut objects = HashMap::new();
    for route in ["open", "strict", "cdn"] {
        objects.insert(format!("/{route}/master.m3u8"), playlist(MASTER));
        objects.insert(format!("/{route}/v/index.m3u8"), playlist(MEDIA));
        objects.insert(format!("/{route}/v/s1.ts"), segment(500));
    }
    spawn_origin(objects).await
}

fn akamai(acl: &str, id: Option<&str>, exp: u64) -> String {
    akamai_signed_by(AKAMAI_KEY, acl, id, exp)
}

fn akamai_signed_by(key_hex: &str, acl: &str, id: Option<&str>, exp: u64) -> String {
    let token = EdgeToken {
        exp,
        acl: Some(vec![acl.to_owned()]),
        id: id.map(str::to_owned),
        ..EdgeToken::default()
    };
    let key = EdgeKey::from_hex(key_hex, edgeauth::Algorithm::Sha256).unwrap();
    edgeauth::mint(&token, None, &key, &Options::default())
}

fn secure_link(path: &str, expires: u64) -> String {
    Expression::new("$secure_link_expires$uri $secret", SECURE_LINK_SECRET)
        .query(path, expires, None)
}

fn media_cdn(glob: &str, session: Option<&str>, exp: u64) -> String {
    let mut token = MediaToken::new(Scope::PathGlobs(vec![glob.to_owned()]), exp);
    token.session_id = session.map(str::to_owned);
    media_cdn_signed(&token)
}

fn media_cdn_signed(token: &MediaToken) -> String {
    use base64::Engine;
    let secret = base64::engine::general_purpose::URL_SAFE
        .decode(MEDIA_KEY)
        .unwrap();
    let key = MediaKey::hmac("google-sample", media_cdn::Algorithm::Sha256, &secret)
        .unwrap()
        .signing()
        .unwrap();
    media_cdn::mint(token, &key)
}

fn later() -> u64 {
    unix_now() + 600
}

/// The same segment under `route`, with each foreign format's credential.
fn foreign_segment_urls(base: &str, route: &str) -> Vec<(&'static str, String)> {
    let path = format!("/{route}/v/s1.ts");
    vec![
        (
            "akamai",
            format!(
                "{base}{path}?__token__={}",
                akamai(&format!("/{route}/*"), None, later())
            ),
        ),
        (
            "secure_link",
            format!("{base}{path}?{}", secure_link(&path, later())),
        ),
        (
            "media_cdn",
            format!(
                "{base}{path}?edge-cache-token={}",
                media_cdn(&format!("/{route}/*"), None, later())
            ),
        ),
    ]
}

#[tokio::test]
async fn each_foreign_format_plays_where_accepted_and_never_reaches_the_origin() {
    // Through the shield (one shared fetch) and past it (a fetch per request, which carries
    // the client's other cookies): no credential reaches the origin either way.
    for shield in ["true", "false"] {
        let origin = origin().await;
        let extra = format!("{}\n[shield]\nenabled = {shield}\n", formats());
        let usher = Usher::start(&test_config(&origin.url(), &extra), &[]);
        for (format, url) in foreign_segment_urls(&usher.url, "open") {
            let reply = get(&url, &[]).await;
            assert_eq!(reply.status, 200, "{format}: {}", reply.text());
            assert_eq!(reply.body.len(), 500, "{format}");
        }
        let cookie = format!("Edge-Cache-Cookie={}", media_cdn("/open/*", None, later()));
        let reply = get(
            &format!("{}/open/v/s1.ts", usher.url),
            &[("cookie", &format!("theme=dark; {cookie}"))],
        )
        .await;
        assert_eq!(reply.status, 200, "the Media CDN cookie: {}", reply.text());
        let last = origin.seen().pop().unwrap();
        let forwarded = last.headers.get("cookie").map(|v| v.to_str().unwrap());
        if shield == "false" {
            assert_eq!(
                forwarded,
                Some("theme=dark"),
                "the token's cookie stays with usher, the others go on"
            );
        } else {
            assert_eq!(forwarded, None, "a shared fetch carries no viewer's cookie");
        }
        for seen in origin.seen() {
            for name in ["__token__", "md5=", "expires=", "edge-cache-token", "hmac="] {
                assert!(
                    !seen.target.contains(name),
                    "{name} reached the origin: {}",
                    seen.target
                );
            }
        }
    }
}

#[tokio::test]
async fn a_foreign_token_on_a_playlist_leads_to_usher_session_tokens() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), &formats()), &[]);
    let master_url = format!(
        "{}/open/master.m3u8?__token__={}",
        usher.url,
        akamai("/open/*", None, later())
    );
    let master = get(&master_url, &[]).await;
    assert_eq!(master.status, 200, "{}", master.text());
    let variant = uris(&master.text()).remove(0);
    assert!(variant.contains("token=s2."), "{variant}");
    let media_url = resolve(&master_url, &variant);
    let media = get(&media_url, &[]).await;
    assert_eq!(media.status, 200, "{}", media.text());
    let segment = resolve(&media_url, &uris(&media.text())[0]);
    assert_eq!(get(&segment, &[]).await.status, 200);
}

#[tokio::test]
async fn a_route_that_does_not_accept_a_format_refuses_it_by_name() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), &formats()), &[]);
    for (format, url) in foreign_segment_urls(&usher.url, "strict") {
        let reply = get(&url, &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (403, "format_not_accepted"),
            "{format}"
        );
    }
    let ticket_on_cdn_only = Usher::start(
        &test_config(
            &origin.url(),
            &formats().replace(
                "accept = [\"usher\", \"media_cdn\"]",
                "accept = [\"media_cdn\"]",
            ),
        ),
        &[],
    );
    let reply = get(
        &format!(
            "{}/cdn/v/s1.ts?ticket={}",
            ticket_on_cdn_only.url,
            mint("/cdn/")
        ),
        &[],
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (403, "format_not_accepted"),
        "a ticket where only Media CDN tokens are accepted"
    );
    // Passed where a session token goes, it is still a ticket.
    let ticket = mint("/cdn/");
    let as_token = format!("{}/cdn/v/s1.ts?token={ticket}", ticket_on_cdn_only.url);
    let as_cookie = format!("usher_session={ticket}");
    for reply in [
        get(&as_token, &[]).await,
        get(
            &format!("{}/cdn/v/s1.ts", ticket_on_cdn_only.url),
            &[("cookie", &as_cookie)],
        )
        .await,
    ] {
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (403, "format_not_accepted")
        );
    }
    let reply = get(&format!("{}/strict/v/s1.ts", usher.url), &[]).await;
    assert_eq!(reply.status, 401, "nothing at all is still no_credential");
}

#[tokio::test]
async fn tampered_expired_and_out_of_scope_tokens_are_refused() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), &formats()), &[]);
    let base = format!("{}/open/v/s1.ts", usher.url);
    let past = unix_now() - 60;
    let cases = [
        (
            format!(
                "?__token__={}",
                akamai("/open/*", None, later()).replace("/open/*", "/*")
            ),
            "bad_signature",
        ),
        (
            format!("?__token__={}", akamai("/open/*", None, past)),
            "expired",
        ),
        (
            format!("?__token__={}", akamai("/strict/*", None, later())),
            "out_of_scope",
        ),
        (
            format!("?{}", secure_link("/open/v/other.ts", later())),
            "bad_signature",
        ),
        (
            format!("?{}", secure_link("/open/v/s1.ts", past)),
            "expired",
        ),
        (
            format!(
                "?edge-cache-token={}",
                media_cdn("/open/*", None, later()).replace("PathGlobs=/open/*", "PathGlobs=/*")
            ),
            "bad_signature",
        ),
        (
            format!("?edge-cache-token={}", media_cdn("/open/*", None, past)),
            "expired",
        ),
        (
            format!("?edge-cache-token={}", media_cdn("/vod/*", None, later())),
            "out_of_scope",
        ),
        (
            "?edge-cache-token=Expires=1~hmac=00".to_owned(),
            "malformed",
        ),
    ];
    for (query, reason) in cases {
        let reply = get(&format!("{base}{query}"), &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (403, reason),
            "{query}"
        );
    }
}

#[tokio::test]
async fn a_media_cdn_url_prefix_covers_its_own_paths_whatever_host_the_client_names() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), &formats()), &[]);
    let segment = format!("{}/open/v/s1.ts", usher.url);
    let token = |prefix: &str| {
        media_cdn_signed(&MediaToken::new(
            Scope::UrlPrefix(prefix.to_owned()),
            later(),
        ))
    };
    let covering = format!(
        "{segment}?edge-cache-token={}",
        token("http://cdn.example/open/v/")
    );
    let reply = get(&covering, &[("host", "cdn.example")]).await;
    assert_eq!(reply.status, 200, "{}", reply.reason());

    // A token for another folder, and a Host that would put that folder in front of the
    // path asked for: `http://cdn.example/open/free//open/v/s1.ts` starts with the prefix.
    let other = format!(
        "{segment}?edge-cache-token={}",
        token("http://cdn.example/open/free/")
    );
    for host in [
        "cdn.example",
        "cdn.example/open/free/",
        "cdn.example/open/free/?",
        "x@cdn.example",
    ] {
        let reply = get(&other, &[("host", host)]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (403, "out_of_scope"),
            "Host: {host}"
        );
    }
}

/// Behind a load balancer that ends TLS (a trusted proxy), a Media CDN token signed for
/// `https://…` plays: the scheme is the one the balancer names in `X-Forwarded-Proto`, and
/// the origin hears it too. A client that is not a trusted proxy cannot name one.
#[tokio::test]
async fn a_media_cdn_https_prefix_plays_behind_a_balancer_that_ends_tls() {
    let origin = origin().await;
    let config = test_config(&origin.url(), &formats());
    // The shield off: its fetches serve every viewer, so they carry no viewer's headers.
    let behind = test_config(
        &origin.url(),
        &format!("{}[shield]\nenabled = false\n", formats()),
    )
    .replace(
        "[listen]\n",
        "[listen]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    );
    let token = media_cdn_signed(&MediaToken::new(
        Scope::UrlPrefix("https://cdn.example/open/v/".to_owned()),
        later(),
    ));
    let segment = |usher: &Usher| format!("{}/open/v/s1.ts?edge-cache-token={token}", usher.url);
    let host = ("host", "cdn.example");
    let https = ("x-forwarded-proto", "https");

    let usher = Usher::start(&behind, &[]);
    let reply = get(&segment(&usher), &[host, https]).await;
    assert_eq!(reply.status, 200, "{}", reply.reason());
    let seen = origin.seen();
    let told = &seen.last().unwrap().headers;
    assert_eq!(told["x-forwarded-proto"], "https");
    assert!(
        told["forwarded"].to_str().unwrap().contains("proto=https"),
        "{:?}",
        told["forwarded"]
    );
    let plain = get(&segment(&usher), &[host]).await;
    assert_eq!(
        (plain.status.as_u16(), plain.reason().as_str()),
        (403, "out_of_scope"),
        "the balancer said nothing: the listener's http"
    );

    let open = Usher::start(&config, &[]);
    let claimed = get(&segment(&open), &[host, https]).await;
    assert_eq!(
        (claimed.status.as_u16(), claimed.reason().as_str()),
        (403, "out_of_scope"),
        "no trusted proxy: the client's word is not taken"
    );
}

#[tokio::test]
async fn media_cdn_tokens_minted_into_playlists_come_back_and_play() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), &formats()), &[]);
    let master_url = format!("{}/cdn/master.m3u8?ticket={}", usher.url, mint("/cdn/"));
    let master = get(&master_url, &[]).await;
    assert_eq!(master.status, 200, "{}", master.text());
    let variant = uris(&master.text()).remove(0);
    assert!(
        variant.contains("edge-cache-token=PathGlobs=/cdn/*~Expires=")
            && variant.contains("~SessionID=viewer-1~hmac="),
        "{variant}"
    );
    let media_url = resolve(&master_url, &variant);
    let media = get(&media_url, &[]).await;
    assert_eq!(media.status, 200, "{}", media.text());
    let segment = resolve(&media_url, &uris(&media.text())[0]);
    let reply = get(&segment, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn a_named_subject_needs_its_rights_and_an_unnamed_credential_does_not() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), &formats()), &[]);
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products",
        Some(json!({"code": "open", "name": "Open", "period": 2, "cost": "1", "currency": "EUR"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/media",
        Some(json!({"code": "open-v", "prefix": "/open/", "playlist": "master.m3u8"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/products/open/media",
        Some(json!({"media": "open-v"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &usher,
        "POST",
        "/api/v1/buyers",
        Some(json!({"product": "open", "account": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let segment = format!("{}/open/v/s1.ts", usher.url);
    let as_alice = format!(
        "{segment}?__token__={}",
        akamai("/open/*", Some("alice"), later())
    );
    let as_mallory = format!(
        "{segment}?edge-cache-token={}",
        media_cdn("/open/*", Some("mallory"), later())
    );
    let unnamed = format!("{segment}?{}", secure_link("/open/v/s1.ts", later()));
    assert_eq!(get(&as_alice, &[]).await.status, 200, "alice bought it");
    let reply = get(&as_mallory, &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (403, "no_rights"),
        "mallory did not"
    );
    assert_eq!(
        get(&unnamed, &[]).await.status,
        200,
        "a credential naming no one is trusted as signed"
    );
}

/// `POST /reload` on the admin listener; its status.
async fn post_reload(usher: &Usher) -> u16 {
    use http_body_util::Full;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let request = http::Request::post(format!("{}/reload", usher.admin.as_ref().unwrap()))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    read(client.request(request).await.unwrap())
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn a_reload_changes_what_a_route_accepts_and_which_media_cdn_keys_verify() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), &formats()), &[]);
    let rotated = MediaKey::hmac(
        "rotated",
        media_cdn::Algorithm::Sha256,
        b"a-rotated-media-cdn-secret-0123456789",
    )
    .unwrap()
    .signing()
    .unwrap();
    let token = media_cdn::mint(
        &MediaToken::new(Scope::PathGlobs(vec!["/strict/*".into()]), later()),
        &rotated,
    );
    let url = format!("{}/strict/v/s1.ts?edge-cache-token={token}", usher.url);
    assert_eq!(get(&url, &[]).await.reason(), "format_not_accepted");

    let config = test_config(&origin.url(), &formats())
        .replace(
            "[[routes]]\nprefix = \"/strict/\"\n",
            "[[routes]]\nprefix = \"/strict/\"\naccept = [\"media_cdn\"]\n",
        )
        .replace(
            "[[routes]]\nprefix = \"/open/\"",
            "[[media_cdn.keys]]\nid = \"rotated\"\nencoding = \"hex\"\nsecret = \"612d726f74617465642d6d656469612d63646e2d7365637265742d30313233343536373839\"\n[[routes]]\nprefix = \"/open/\"",
        );
    std::fs::write(usher.config_path(), config).unwrap();
    assert_eq!(post_reload(&usher).await, 200);
    let reply = get(&url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn an_akamai_transition_key_verifies_beside_the_key() {
    const TRANSITION: &str = "fedcba9876543210fedcba9876543210";
    let origin = origin().await;
    let extra = formats().replace(
        &format!("key = \"{AKAMAI_KEY}\"\n"),
        &format!("key = \"{AKAMAI_KEY}\"\ntransition_key = \"{TRANSITION}\"\n"),
    );
    assert_ne!(extra, formats());
    let usher = Usher::start(&test_config(&origin.url(), &extra), &[]);
    for (key, status, reason) in [
        (AKAMAI_KEY, 200, ""),
        (TRANSITION, 200, ""),
        ("00112233445566778899aabbccddeeff", 403, "bad_signature"),
    ] {
        let token = akamai_signed_by(key, "/open/*", None, later());
        let reply = get(
            &format!("{}/open/v/s1.ts?__token__={token}", usher.url),
            &[],
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), reply.reason().as_str()),
            (status, reason),
            "signed with {key}"
        );
    }
}

/// A named subject's foreign token plays a one-device purchase as a ticket would: its
/// device takes the activation, another device with another of the subject's tokens is
/// refused for the limit, and a request that names no device is refused for that.
#[tokio::test]
async fn a_named_subject_s_foreign_token_counts_the_purchase_s_activations() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), &formats()), &[]);
    for (path, body) in [
        (
            "/api/v1/products",
            json!({"code": "one", "name": "One TV", "period": 2, "activation": 1}),
        ),
        (
            "/api/v1/media",
            json!({"code": "open-v", "prefix": "/open/", "playlist": "master.m3u8"}),
        ),
        ("/api/v1/products/one/media", json!({"media": "open-v"})),
        (
            "/api/v1/buyers",
            json!({"product": "one", "account": "alice"}),
        ),
    ] {
        let (status, reply) = api(&usher, "POST", path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {reply}");
    }
    let segment = format!("{}/open/v/s1.ts", usher.url);
    let signed = |exp| {
        format!(
            "{segment}?__token__={}",
            akamai("/open/*", Some("alice"), exp)
        )
    };
    let tv = get(&signed(later()), &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let phone = get(&signed(later() + 1), &[("x-device-id", "phone")]).await;
    assert_eq!(
        (phone.status.as_u16(), phone.reason().as_str()),
        (403, "activation_limit")
    );
    let nameless = get(&signed(later() + 2), &[]).await;
    assert_eq!(
        (nameless.status.as_u16(), nameless.reason().as_str()),
        (403, "device_required")
    );
    let again = get(&signed(later() + 3), &[("x-device-id", "tv")]).await;
    assert_eq!(
        again.status,
        200,
        "the TV's own activation: {}",
        again.text()
    );
}

/// Sells `product` (a product body; its code names it) to `account`, with the media
/// under `/open/`.
async fn sell(usher: &Usher, product: Value, account: &str) {
    let code = product["code"].as_str().unwrap().to_owned();
    let media = json!({"code": "open-v", "prefix": "/open/", "playlist": "master.m3u8"});
    let (status, _) = api(usher, "POST", "/api/v1/media", Some(media)).await;
    assert!(status == 201 || status == 409, "the media: {status}");
    for (path, body) in [
        ("/api/v1/products".to_owned(), product),
        (
            format!("/api/v1/products/{code}/media"),
            json!({"media": "open-v"}),
        ),
        (
            "/api/v1/buyers".to_owned(),
            json!({"product": code, "account": account}),
        ),
    ] {
        let (status, reply) = api(usher, "POST", &path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {reply}");
    }
}

/// The live sessions usher lists for `account`.
async fn sessions_of(usher: &Usher, account: &str) -> usize {
    let path = format!("/api/v1/sessions?account={account}");
    let (status, listed) = api(usher, "GET", &path, None).await;
    assert_eq!(status, 200, "{listed}");
    listed["items"].as_array().unwrap().len()
}

/// The same foreign token (a CMS hands it to every device of the account) on a second
/// device, while the first plays it, is a start of that device's own under the purchase's
/// rules: refused for the limit it meets (`activation_limit`, `concurrency_limit`), played
/// as a second stream where the purchase allows two, and replacing the first under
/// `replace_oldest`. A request that names no device rides the token's live session.
#[tokio::test]
async fn a_named_subject_s_foreign_token_on_another_device_is_a_start_of_its_own() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), &formats()), &[]);
    let products = [
        (
            "alice",
            json!({"code": "one", "name": "One TV", "period": 2, "activation": 1, "max_sessions": 1}),
        ),
        (
            "bob",
            json!({"code": "screens", "name": "Two", "period": 2, "activation": 2, "max_sessions": 1}),
        ),
        (
            "carol",
            json!({"code": "two", "name": "Two", "period": 2, "activation": 2, "max_sessions": 2}),
        ),
        (
            "dave",
            json!({"code": "last", "name": "Last", "period": 2, "activation": 2, "max_sessions": 1,
                        "concurrency_policy": "replace_oldest"}),
        ),
    ];
    for (account, product) in products {
        sell(&usher, product, account).await;
    }
    // One token per account for the whole test: minted again in another second, it would
    // be another token, and so another session.
    let expiry = later();
    let url = |account| {
        format!(
            "{}/open/v/s1.ts?__token__={}",
            usher.url,
            akamai("/open/*", Some(account), expiry)
        )
    };
    let on = |account, device| {
        let url = url(account);
        async move {
            let headers: &[(&str, &str)] = match device {
                Some(device) => &[("x-device-id", device)],
                None => &[],
            };
            let reply = get(&url, headers).await;
            (reply.status.as_u16(), reply.reason(), reply.text())
        }
    };
    for (account, refused) in [("alice", "activation_limit"), ("bob", "concurrency_limit")] {
        assert_eq!(on(account, Some("tv")).await.0, 200, "{account}'s TV");
        let phone = on(account, Some("phone")).await;
        assert_eq!(
            (phone.0, phone.1.as_str()),
            (403, refused),
            "{account}'s phone: {}",
            phone.2
        );
        assert_eq!(
            on(account, Some("tv")).await.0,
            200,
            "{account}'s TV plays on"
        );
        let nameless = on(account, None).await;
        assert_eq!(nameless.0, 200, "rides the TV's session: {}", nameless.2);
        assert_eq!(sessions_of(&usher, account).await, 1, "{account}");
    }
    assert_eq!(on("carol", Some("tv")).await.0, 200);
    let phone = on("carol", Some("phone")).await;
    assert_eq!(phone.0, 200, "two activations, two streams: {}", phone.2);
    assert_eq!(sessions_of(&usher, "carol").await, 2);
    assert_eq!(on("carol", Some("tv")).await.0, 200);
    assert_eq!(on("carol", Some("phone")).await.0, 200);
    assert_eq!(sessions_of(&usher, "carol").await, 2, "each on its own");

    assert_eq!(on("dave", Some("tv")).await.0, 200);
    let phone = on("dave", Some("phone")).await;
    assert_eq!(phone.0, 200, "replaces the TV: {}", phone.2);
    let tv = on("dave", Some("tv")).await;
    assert_eq!((tv.0, tv.1.as_str()), (403, "session_replaced"));
    assert_eq!(on("dave", Some("phone")).await.0, 200, "the phone plays on");
    assert_eq!(sessions_of(&usher, "dave").await, 1);
}

/// Without rights (`rights.source = "none"`, no limits) the same foreign token plays on
/// a second device, as its own session.
#[tokio::test]
async fn without_rights_a_foreign_token_plays_on_a_second_device() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), &formats()), &[]);
    let url = format!(
        "{}/open/v/s1.ts?__token__={}",
        usher.url,
        akamai("/open/*", Some("alice"), later())
    );
    for device in ["tv", "phone", "tv", "phone"] {
        let reply = get(&url, &[("x-device-id", device)]).await;
        assert_eq!(reply.status, 200, "{device}: {}", reply.text());
    }
    assert_eq!(sessions_of(&usher, "alice").await, 2);
}

/// A named subject's foreign token starts a rental's hours as a ticket does: its first
/// request takes up a session afresh, as a stale session token would, but it is a
/// credential of its own, not a token of another purchase's session.
#[tokio::test]
async fn a_named_subject_s_foreign_token_starts_a_rental_s_hours() {
    let origin = origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), &formats()), &[]);
    let rental =
        json!({"code": "rental", "name": "Rental", "hours": 48, "hours_from": "first_play"});
    let mut hash = String::new();
    for (path, body) in [
        ("/api/v1/products", rental),
        (
            "/api/v1/media",
            json!({"code": "open-v", "prefix": "/open/", "playlist": "master.m3u8"}),
        ),
        ("/api/v1/products/rental/media", json!({"media": "open-v"})),
        (
            "/api/v1/buyers",
            json!({"product": "rental", "account": "alice"}),
        ),
    ] {
        let (status, reply) = api(&usher, "POST", path, Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {reply}");
        if let Some(sold) = reply["hash"].as_str() {
            hash = sold.to_owned();
        }
    }
    let (_, unplayed) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert!(unplayed["access_ends_at"].is_null(), "{unplayed}");
    let segment = format!(
        "{}/open/v/s1.ts?__token__={}",
        usher.url,
        akamai("/open/*", Some("alice"), later())
    );
    let tv = get(&segment, &[("x-device-id", "tv")]).await;
    assert_eq!(tv.status, 200, "{}", tv.text());
    let (_, played) = api(&usher, "GET", &format!("/api/v1/buyers/{hash}"), None).await;
    assert!(played["access_ends_at"].as_u64().is_some(), "{played}");
}
