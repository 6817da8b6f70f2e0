use super::*;

const MINIMAL: &str = r#"
listen.http = "127.0.0.1:0"
upstream.origin = "http://127.0.0.1:9"
[token]
signing_key = "k"
keys = [{ id = "k", secret = "0123456789abcdef0123456789abcdef" }]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_str(text, Path::new("."), &Overrides::default())
}

fn problems(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_shipped_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/usher.toml");
    let config = load(&path, &Overrides::default()).expect("config/usher.toml is valid");
    assert!(matches!(config.upstream.origin, Origin::Dir(_)));
    assert_eq!(config.token.keys.signing_key().id(), "demo-2026");
    assert!(config.demo.is_some());
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.token.session_ttl, Duration::from_secs(600));
    assert_eq!(config.token.ticket_param, "ticket");
    assert_eq!(config.token.session_param, "token");
    assert_eq!(config.access.protected, vec!["/".to_owned()]);
    assert_eq!(config.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
}

#[test]
fn unknown_keys_name_the_key_and_the_table() {
    let text = format!("{MINIMAL}\n[access]\nprotectd = [\"/\"]\n");
    let msg = problems(&text);
    assert!(msg.contains("unknown field `protectd`"), "{msg}");
    assert!(msg.contains("access.protectd:"), "{msg}");
}

#[test]
fn every_bad_value_is_reported_by_dotted_key() {
    let text = r#"
listen.http = "localhost"
upstream.origin = "ftp://x"
upstream.timeout = "10 parsecs"
[token]
signing_key = "missing"
session_ttl = "0s"
ticket_param = "t!"
keys = [{ id = "k", secret = "short" }]
[access]
protected = ["vod/"]
"#;
    let msg = problems(text);
    for expected in [
        "listen.http = \"localhost\": expected IP:PORT",
        "upstream.origin = \"ftp://x\"",
        "upstream.timeout = \"10 parsecs\"",
        "token.session_ttl = \"0s\"",
        "token.ticket_param = \"t!\"",
        "token.keys[0] = \"k\": secret of key \"k\" is 5 bytes",
        "access.protected = \"vod/\": a path prefix starts with /",
    ] {
        assert!(msg.contains(expected), "missing {expected:?} in:\n{msg}");
    }
}

#[test]
fn the_signing_key_must_exist() {
    let text = MINIMAL.replace("signing_key = \"k\"", "signing_key = \"other\"");
    assert!(problems(&text)
        .contains("token.signing_key = \"other\": signing key \"other\" is not among the keys"));
}

#[test]
fn a_secure_link_expression_without_the_secret_is_refused() {
    let text = format!(
        "{MINIMAL}\n[secure_link]\nexpression = \"$secure_link_expires$uri\"\nsecret = \"0123456789abcdef\"\n"
    );
    assert!(
        problems(&text).contains("must use $uri, $secure_link_expires and $secret"),
        "{}",
        problems(&text)
    );
}

#[test]
fn secrets_can_come_from_the_environment() {
    let text = MINIMAL.replace(
        "secret = \"0123456789abcdef0123456789abcdef\"",
        "secret_env = \"USHER_TEST_SECRET_THAT_IS_NOT_SET\"",
    );
    assert!(problems(&text).contains("token.keys[0].secret_env = \"USHER_TEST_SECRET_THAT_IS_NOT_SET\": environment variable is not set"));
}

#[test]
fn secrets_can_come_from_a_file_read_at_each_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL.replace(
        "secret = \"0123456789abcdef0123456789abcdef\"",
        "secret_file = \"k.secret\"",
    );
    let load = || from_str(&text, dir.path(), &Overrides::default());
    let missing = load().unwrap_err().to_string();
    assert!(
        missing.contains("token.keys[0].secret_file = \"k.secret\": cannot read"),
        "{missing}"
    );
    std::fs::write(
        dir.path().join("k.secret"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let from_file = load().unwrap().token.keys;
    let inline = parse(MINIMAL).unwrap().token.keys;
    assert_eq!(
        from_file.signing_key().mac(b"m"),
        inline.signing_key().mac(b"m"),
        "the same key, its line end dropped"
    );
    let both = text.replace("secret_file", "secret = \"x\", secret_file");
    assert!(problems(&both).contains("set exactly one of secret, secret_env or secret_file"));
}

#[test]
fn https_needs_cert_and_key() {
    let text = format!("{MINIMAL}\n[listen]\nhttps = \"127.0.0.1:0\"\n")
        .replace("listen.http = \"127.0.0.1:0\"\n", "");
    assert!(problems(&text).contains("listen.https: needs both listen.cert and listen.key"));
}

#[test]
fn overrides_replace_the_file() {
    let overrides = Overrides {
        listen: Some("127.0.0.1:4321".into()),
        origin: Some("https://cdn.example/hls".into()),
        admin_listen: Some("off".into()),
        data_dir: Some("/tmp/usher-test-data".into()),
    };
    let config = from_str(MINIMAL, Path::new("."), &overrides).unwrap();
    assert_eq!(config.listen.http, Some("127.0.0.1:4321".parse().unwrap()));
    assert_eq!(
        config.upstream.origin,
        Origin::Http(OriginBase::parse("https://cdn.example/hls").unwrap())
    );
    assert_eq!(config.admin.listen, None);
    assert_eq!(config.data_dir, Path::new("/tmp/usher-test-data"));
}

const MEDIA_CDN: &str = r#"
[media_cdn]
ttl = "30m"
[[media_cdn.keys]]
id = "hmac-1"
secret = "g_SlMILiIWKqsC6Z2L7gy0sReDOqtSrJrE7CXNr5Nl8="
[[media_cdn.keys]]
id = "ed-pub"
algorithm = "ed25519"
public_key = "9fb9f0be1cdad750b44ae53d6b2d6e5a30d27f31fe0a9201817c6a233f9877d4"
encoding = "hex"
"#;

#[test]
fn media_cdn_keys_defaults_and_accept() {
    let text = format!(
        "{MINIMAL}{MEDIA_CDN}\n[[routes]]\nprefix = \"/cdn/\"\nmint = \"media_cdn\"\naccept = [\"usher\", \"media_cdn\"]\n[[routes]]\nprefix = \"/plain/\"\n"
    );
    let config = parse(&text).unwrap();
    let media = config.formats.media_cdn.as_ref().unwrap();
    assert_eq!(media.keys.len(), 2);
    assert_eq!(media.signer.as_ref().unwrap().key().id(), "hmac-1");
    assert_eq!(media.token_name, "edge-cache-token");
    assert_eq!(media.cookie_name, "Edge-Cache-Cookie");
    assert_eq!(media.ttl, Duration::from_secs(1800));
    use foreign::Format;
    assert_eq!(
        config.accepts_for("/cdn/a.ts"),
        &[Format::Usher, Format::MediaCdn]
    );
    assert_eq!(config.accepts_for("/plain/a.ts"), &[Format::Usher]);
    assert_eq!(config.accepts_for("/elsewhere"), &[Format::Usher]);
    assert!(matches!(config.mint_for("/cdn/x"), Mint::MediaCdn { .. }));
}

#[test]
fn a_route_covers_its_prefix_on_a_segment_boundary_only() {
    let text = format!(
        "{MINIMAL}{MEDIA_CDN}\n[[routes]]\nprefix = \"/live\"\nmint = \"media_cdn\"\naccept = [\"usher\", \"media_cdn\"]\n"
    );
    let config = parse(&text).unwrap();
    use foreign::Format;
    for covered in ["/live", "/live/", "/live/a.ts"] {
        assert_eq!(
            config.accepts_for(covered),
            &[Format::Usher, Format::MediaCdn],
            "{covered}"
        );
    }
    assert_eq!(config.accepts_for("/live-premium/a.ts"), &[Format::Usher]);
    assert!(matches!(config.mint_for("/livex/a.m3u8"), Mint::Usher));
}

#[test]
fn media_cdn_and_accept_problems_name_their_keys() {
    let text = format!(
        r#"{MINIMAL}
[media_cdn]
signing_key = "ed-pub"
token_name = "edge cache"
[[media_cdn.keys]]
id = "short"
secret = "c2hvcnQ"
[[media_cdn.keys]]
id = "ed-pub"
algorithm = "ed25519"
public_key = "AAAA"
[[media_cdn.keys]]
id = "bad"
algorithm = "sha512"
secret = "x"
[[media_cdn.keys]]
id = "nohex"
secret = "zz"
encoding = "hex"
[[routes]]
prefix = "/a/"
accept = ["akamai", "usher", "nginx"]
[[routes]]
prefix = "/b/"
accept = []
"#
    );
    let msg = problems(&text);
    for expected in [
        "media_cdn.keys[0].secret: 5 bytes: an sha256 secret needs at least 16",
        "media_cdn.keys[1].public_key: an Ed25519 public key is 32 bytes, not 3",
        "media_cdn.keys[2].algorithm = \"sha512\": use sha256, sha1 or ed25519",
        "media_cdn.keys[3].secret: not hex (encoding = \"hex\")",
        "media_cdn.signing_key = \"ed-pub\": is not among media_cdn.keys",
        "media_cdn.token_name = \"edge cache\": use 1 or more of A-Z a-z 0-9 _ -",
        "routes[0].accept = \"akamai\": needs the [akamai] section",
        "routes[0].accept = \"nginx\": use usher, akamai, secure_link or media_cdn",
        "routes[1].accept: must list at least one of usher, akamai, secure_link, media_cdn",
    ] {
        assert!(msg.contains(expected), "missing {expected:?} in:\n{msg}");
    }
}

#[test]
fn a_media_cdn_route_mints_only_with_a_key_that_signs() {
    let text = format!(
        r#"{MINIMAL}
[media_cdn]
[[media_cdn.keys]]
id = "ed-pub"
algorithm = "ed25519"
public_key = "n7nwvhza11C0SuU9ay1uWjDSfzH-CpIBgXxqIz-Yd9Q"
[[routes]]
prefix = "/a/"
mint = "media_cdn"
"#
    );
    let msg = problems(&text);
    assert!(
        msg.contains(
            "routes[0].mint = \"media_cdn\": needs a [[media_cdn.keys]] entry that can sign"
        ),
        "{msg}"
    );
}

const GROUPED: &str = r#"
listen.http = "127.0.0.1:0"
[upstream]
origin = "http://127.0.0.1:9/hls"
timeout = "3s"
fallbacks = ["http://127.0.0.1:10/hls", { origin = "https://cdn.example/hls", timeout = "5s", total_timeout = "30s" }]
[upstream.health]
failures = 2
check_path = "/healthz"
[upstreams.events]
origin = "http://127.0.0.1:11"
[[routes]]
prefix = "/live/"
upstream = "events"
[shield]
memory = 2097152
live_playlist_ttl = "1s"
[token]
signing_key = "k"
keys = [{ id = "k", secret = "0123456789abcdef0123456789abcdef" }]
"#;

#[test]
fn upstream_groups_fallbacks_and_the_shield() {
    let config = parse(GROUPED).unwrap();
    let servers = config.upstream.servers();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers[0].timeout, Duration::from_secs(3));
    assert_eq!(
        servers[1].timeout,
        Duration::from_secs(3),
        "a bare fallback inherits"
    );
    assert_eq!(servers[2].timeout, Duration::from_secs(5));
    assert_eq!(servers[2].total_timeout, Duration::from_secs(30));
    assert_eq!(servers[1].total_timeout, Duration::from_secs(60));
    assert_eq!(config.upstream.health.failures, 2);
    assert_eq!(
        config.upstream.health.check_path.as_deref(),
        Some("/healthz")
    );
    assert_eq!(config.upstream.bases().len(), 3);
    assert_eq!(config.upstream_for("/live/a.ts"), Some("events"));
    assert_eq!(config.upstream_for("/vod/a.ts"), None);
    assert_eq!(config.shield.memory, 2 << 20);
    assert_eq!(
        config.shield.live_playlist_ttl,
        Some(Duration::from_secs(1))
    );
    assert_eq!(config.shield.segment_ttl, Duration::from_secs(600));
    let defaults = parse(MINIMAL).unwrap();
    assert!(defaults.shield.enabled);
    assert_eq!(defaults.shield.negative_ttl, Duration::from_secs(2));
    assert_eq!(defaults.shield.stale_if_error, Duration::from_secs(30));
    assert_eq!(defaults.shield.sendfile_min_bytes, 64 * 1024);
    assert_eq!(
        defaults.shield.max_in_flight_bytes,
        64 << 20,
        "a quarter of the default 256 MiB"
    );
    assert_eq!(
        config.shield.max_in_flight_bytes, config.shield.max_object_bytes,
        "never less than the largest object kept (here 2 MiB, all of memory)"
    );
    assert_eq!(
        defaults.shield.sendfile_dir.as_deref(),
        Some(defaults.data_dir.as_path()),
        "bodies sent with sendfile live beside the embedded database by default"
    );
    for (set, dir) in [("\"\"", None), ("\"bodies\"", Some(Path::new("./bodies")))] {
        let config = parse(&format!("{MINIMAL}\n[shield]\nsendfile_dir = {set}\n")).unwrap();
        assert_eq!(config.shield.sendfile_dir.as_deref(), dir, "{set}");
    }
    assert_eq!(defaults.upstream.health.failures, 3);
    assert_eq!(defaults.upstream.max_requests, 1024);
    assert!(defaults.upstream.fallbacks.is_empty());
    let never = parse(&format!(
        "{MINIMAL}\n[shield]\nnegative_ttl = \"0ms\"\nstale_if_error = \"0s\"\n"
    ))
    .unwrap();
    assert_eq!(never.shield.negative_ttl, Duration::ZERO, "404s not kept");
    assert_eq!(
        never.shield.stale_if_error,
        Duration::ZERO,
        "no stale copies"
    );
    assert!(
        problems(&format!("{MINIMAL}\n[shield]\nsegment_ttl = \"0s\"\n"))
            .contains("shield.segment_ttl")
    );
}

#[test]
fn upstream_and_shield_problems_name_their_keys() {
    let text = GROUPED
        .replace(
            "timeout = \"5s\", total_timeout = \"30s\"",
            "total_timeout = \"1s\"",
        )
        .replace("failures = 2", "failures = 0")
        .replace("[upstreams.events]", "[upstreams.events]\nmax_requests = 0")
        .replace("upstream = \"events\"", "upstream = \"nowhere\"")
        .replace(
            "memory = 2097152",
            "memory = 1000\nsendfile_min_bytes = 100\nmax_in_flight_bytes = 10",
        );
    let all = problems(&text);
    for expected in [
        "upstream.fallbacks[1].total_timeout = \"1s\": must be at least the first-byte timeout",
        "upstream.health.failures = \"0\": must be at least 1",
        "upstreams.events.max_requests = \"0\": must be at least 1",
        "routes[0].upstream = \"nowhere\": no [upstreams.<name>] group by that name",
        "shield.memory = \"1000\": must be at least 1048576",
        "shield.sendfile_min_bytes = \"100\": must be 0 (off) or at least 8192",
        "shield.max_in_flight_bytes = \"10\": must be at least shield.max_object_bytes",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    let unnamed = GROUPED.replace("[upstreams.events]", "[upstreams.\"\"]");
    assert!(problems(&unnamed).contains("upstreams.: a group name"));
}

#[test]
fn route_carriers_are_named_and_an_unknown_one_lists_them() {
    for (name, kind) in [
        ("query", CarrierKind::Query),
        ("variable", CarrierKind::Variable),
        ("path", CarrierKind::Path),
        ("cookie", CarrierKind::Cookie),
    ] {
        let text = format!("{MINIMAL}\n[[routes]]\nprefix = \"/v/\"\ncarrier = \"{name}\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.carrier_for("/v/a.m3u8"), kind, "{name}");
        assert_eq!(config.carrier_for("/other/a.m3u8"), CarrierKind::Query);
    }
    let text = format!("{MINIMAL}\n[[routes]]\nprefix = \"/v/\"\ncarrier = \"define\"\n");
    let msg = problems(&text);
    assert!(
        msg.contains("routes[0].carrier = \"define\": use query, variable, path or cookie"),
        "{msg}"
    );
}

#[test]
fn listen_threads_default_to_the_cores_and_are_bounded() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(parse(MINIMAL).unwrap().listen.threads, cores);
    let text = MINIMAL.replace(
        "listen.http = \"127.0.0.1:0\"",
        "listen.http = \"127.0.0.1:0\"\nlisten.threads = 0",
    );
    assert_eq!(parse(&text).unwrap().listen.threads, 0);
    let text = MINIMAL.replace(
        "listen.http = \"127.0.0.1:0\"",
        "listen.http = \"127.0.0.1:0\"\nlisten.threads = 1000",
    );
    assert!(
        problems(&text).contains("listen.threads = \"1000\": must be between 0 and 256"),
        "{}",
        problems(&text)
    );
}

#[test]
fn a_touch_interval_not_shorter_than_the_idle_timeout_is_refused() {
    let text = format!("{MINIMAL}\n[sessions]\nidle_timeout = \"30s\"\ntouch_interval = \"30s\"\n");
    assert!(
        problems(&text).contains(
            "sessions.touch_interval = \"30s\": must be shorter than sessions.idle_timeout"
        ),
        "{}",
        problems(&text)
    );
    let fine = format!("{MINIMAL}\n[sessions]\nidle_timeout = \"30s\"\ntouch_interval = \"10s\"\n");
    assert!(parse(&fine).is_ok());
}

#[test]
fn asset_list_extensions_default_to_json_and_name_no_other_kind() {
    assert_eq!(
        parse(MINIMAL).unwrap().playlists.asset_list_extensions,
        ["json"]
    );
    let listed = format!("{MINIMAL}\n[playlists]\nasset_list_extensions = [\"JSON\", \"list\"]\n");
    assert_eq!(
        parse(&listed).unwrap().playlists.asset_list_extensions,
        ["json", "list"]
    );
    let bad = format!(
        "{MINIMAL}\n[playlists]\nasset_list_extensions = [\".json\", \"m3u8\", \"ts\", \"json\"]\n"
    );
    let all = problems(&bad);
    for expected in [
        "playlists.asset_list_extensions[0] = \".json\": an extension without its dot",
        "playlists.asset_list_extensions[1] = \"m3u8\": names a playlist, segment",
        "playlists.asset_list_extensions[2] = \"ts\": names a playlist, segment",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!all.contains("[3]"), "{all}");
}

#[test]
fn protected_cache_control_is_auto_unless_named() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(
        config.access.protected_cache_control,
        ProtectedCacheControl::Auto
    );
    for (name, setting) in [
        ("auto", ProtectedCacheControl::Auto),
        ("private", ProtectedCacheControl::Private),
        ("origin", ProtectedCacheControl::Origin),
    ] {
        let text = format!("{MINIMAL}\n[access]\nprotected_cache_control = \"{name}\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.access.protected_cache_control, setting, "{name}");
    }
    let text = format!("{MINIMAL}\n[access]\nprotected_cache_control = \"public\"\n");
    let msg = problems(&text);
    assert!(
        msg.contains("access.protected_cache_control = \"public\": must be \"auto\", \"private\" or \"origin\""),
        "{msg}"
    );
}

#[test]
fn the_first_play_retry_is_a_second_to_five_minutes() {
    assert_eq!(
        parse(MINIMAL).unwrap().rights.first_play_retry,
        Duration::from_secs(5)
    );
    let with = |value: &str| format!("{MINIMAL}\n[rights]\nfirst_play_retry = \"{value}\"\n");
    assert_eq!(
        parse(&with("30s")).unwrap().rights.first_play_retry,
        Duration::from_secs(30)
    );
    for (value, why) in [
        ("0s", "must be at least 1s"),
        ("500ms", "must be at least 1s"),
        ("6m", "must be at most 5m"),
        ("soon", "expected a whole number"),
    ] {
        let msg = problems(&with(value));
        assert!(
            msg.contains(&format!("rights.first_play_retry = \"{value}\": {why}")),
            "{value}: {msg}"
        );
    }
}
