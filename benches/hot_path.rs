//! Benchmarks of everything on the per-request hot path: credential verification, the
//! access decision, minting a session token, playlist rewriting and compression, and path
//! normalisation.
//!
//! Run with `cargo bench --bench hot_path`. Targets: ticket verification under 2 µs, a
//! 10,000-segment media playlist rewrite under 5 ms.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use usher::access::{self, Grant, Presented};
use usher::manifest::{self, Carrier, Rewrite};
use usher::origin::OriginBase;
use usher::proxy::compress;
use usher::ticket::{self, Claims, Key, KeyRing, Kind};

/// An instant inside every credential's window (Unix seconds).
const NOW: u64 = 1_760_000_000;
const SKEW: u64 = 30;
const SESSION_TTL: u64 = 300;
const SEGMENTS: usize = 10_000;

fn ring() -> KeyRing {
    let keys = vec![
        Key::new("k1", b"0123456789abcdef0123456789abcdef-old-key").expect("old key"),
        Key::new("k2", b"fedcba9876543210fedcba9876543210-current").expect("new key"),
    ];
    KeyRing::new(keys, "k2").expect("key ring")
}

fn ticket_claims() -> Claims {
    Claims {
        sub: "u-81f3a9".to_owned(),
        scope: "/events/final/".to_owned(),
        nbf: NOW - 3_600,
        exp: NOW + 4 * 3_600,
        dev: Some("tv-4b1e".to_owned()),
        ip: None,
        sid: None,
        cap: 0,
        allow: Vec::new(),
        cls: None,
    }
}

fn session_claims() -> Claims {
    Claims {
        sub: "u-81f3a9".to_owned(),
        scope: "/events/final/".to_owned(),
        nbf: 0,
        exp: NOW + SESSION_TTL,
        // As usher mints them: the device's 32-hex hash, a 16-hex session id, the class.
        dev: Some(usher::device::hash_id("tv-4b1e", None)),
        ip: None,
        sid: Some("9d2c47e1a0b3f566".to_owned()),
        cap: NOW + 4 * 3_600,
        allow: Vec::new(),
        cls: Some(usher::rights::model::DeviceClass::Ott),
    }
}

fn media_playlist(segments: usize) -> String {
    let mut text = String::with_capacity(segments * 30 + 128);
    text.push_str("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n");
    for n in 0..segments {
        writeln!(text, "#EXTINF:6.000,\nseg_{n:05}.ts").expect("write to String");
    }
    text.push_str("#EXT-X-ENDLIST\n");
    text
}

fn master_playlist() -> String {
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (lang, name, default) in [("en", "English", "YES"), ("de", "Deutsch", "NO")] {
        writeln!(
            text,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",LANGUAGE=\"{lang}\",NAME=\"{name}\",\
             DEFAULT={default},AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/{lang}/index.m3u8\""
        )
        .expect("write to String");
    }
    text.push_str(
        "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",LANGUAGE=\"en\",NAME=\"English\",\
         DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI=\"subs/en/index.m3u8\"\n",
    );
    let variants = [
        (8_000_000, "1920x1080", "1080p"),
        (5_000_000, "1280x720", "720p"),
        (2_800_000, "960x540", "540p"),
        (1_400_000, "640x360", "360p"),
        (800_000, "480x270", "270p"),
        (400_000, "416x234", "234p"),
    ];
    for (bandwidth, resolution, name) in variants {
        writeln!(
            text,
            "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={},\
             RESOLUTION={resolution},FRAME-RATE=29.970,CODECS=\"avc1.640028,mp4a.40.2\",\
             AUDIO=\"aac\",SUBTITLES=\"subs\"\n{name}/index.m3u8",
            bandwidth * 9 / 10
        )
        .expect("write to String");
    }
    text
}

fn bench_credentials(c: &mut Criterion) {
    let ring = ring();
    let raw_ticket = ticket::sign(&ring, Kind::Ticket, &ticket_claims());
    let raw_session = ticket::sign(&ring, Kind::Session, &session_claims());
    // Sanity: both verify, so the benchmarks measure the success path.
    assert_eq!(
        ticket::verify(&ring, &raw_ticket, NOW, SKEW).map(|(k, _)| k),
        Ok(Kind::Ticket)
    );
    assert_eq!(
        ticket::verify(&ring, &raw_session, NOW, SKEW).map(|(k, _)| k),
        Ok(Kind::Session)
    );

    c.bench_function("ticket_verify", |b| {
        b.iter(|| {
            ticket::verify(
                black_box(&ring),
                black_box(raw_ticket.as_str()),
                black_box(NOW),
                black_box(SKEW),
            )
        })
    });

    c.bench_function("session_verify", |b| {
        b.iter(|| {
            ticket::verify(
                black_box(&ring),
                black_box(raw_session.as_str()),
                black_box(NOW),
                black_box(SKEW),
            )
        })
    });

    let device = usher::device::hash_id("tv-4b1e", None);
    let presented = Presented {
        ticket: None,
        ticket_in_query: false,
        session: Some(raw_session.as_str()),
        device: Some(&device),
        client_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77)),
    };
    let path = "/events/final/1080p/seg_00042.ts";
    let no_sessions = |_: &str| false;
    assert!(access::decide(&ring, SKEW, path, &presented, NOW, &no_sessions, true).is_ok());
    c.bench_function("access_decide", |b| {
        b.iter(|| {
            access::decide(
                black_box(&ring),
                black_box(SKEW),
                black_box(path),
                black_box(&presented),
                black_box(NOW),
                &no_sessions,
                true,
            )
        })
    });

    // What each playlist response costs on top of the decision: the claims of the session
    // token to mint from the grant, then signing them. A ticket grant, so a new sid is made.
    let grant = Grant {
        kind: Kind::Ticket,
        claims: ticket_claims().into(),
        right_until: None,
        minted_device: None,
    };
    c.bench_function("session_mint", |b| {
        b.iter(|| {
            let claims = access::session_claims(
                black_box(&grant),
                black_box(Some("tv-4b1e")),
                None,
                black_box(NOW),
                black_box(SESSION_TTL),
                || "9d2c47e1".to_owned(),
            );
            ticket::sign(black_box(&ring), Kind::Session, &claims)
        })
    });
}

fn bench_manifests(c: &mut Criterion) {
    let ring = ring();
    let token = ticket::sign(&ring, Kind::Session, &session_claims());
    // A realistic session token, as minted into every URI: 108 characters packed (`s2`,
    // bound to a device), where the JSON form (`s1`) took about 180.
    assert!(
        token.starts_with("s2.") && token.len() <= 110,
        "token {token}"
    );
    let bases = [OriginBase::parse("http://origin.test/hls").expect("origin base")];
    let ctx = Rewrite {
        origin_bases: &bases,
        upstream_for: None,
        param: "token",
        usher_param: "token",
        token: &token,
        request_query: None,
        preview: None,
        per_path: None,
        carrier: Carrier::Query,
        max_output: usize::MAX,
    };

    let media = media_playlist(SEGMENTS);
    let rewritten = manifest::rewrite(media.as_bytes(), &ctx).expect("media rewrites");
    assert_eq!(rewritten.tokenized, SEGMENTS);
    let mut group = c.benchmark_group("rewrite");
    group.throughput(Throughput::Bytes(media.len() as u64));
    // ~4 ms an iteration: 50 linearly sampled samples need about 5 s.
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("rewrite_media_10k", |b| {
        b.iter(|| manifest::rewrite(black_box(media.as_bytes()), black_box(&ctx)))
    });
    // The path carrier, for a playlist requested under its token: relative URIs are kept.
    let inherited = Rewrite {
        carrier: Carrier::Inherited("/events/final/1080p/index.m3u8"),
        max_output: usize::MAX,
        ..ctx
    };
    let kept = manifest::rewrite(media.as_bytes(), &inherited).expect("media rewrites");
    assert_eq!(kept.text, media, "relative URIs go out as they came");
    group.bench_function("rewrite_media_10k_path_inherited", |b| {
        b.iter(|| manifest::rewrite(black_box(media.as_bytes()), black_box(&inherited)))
    });
    // The variable carrier: the token defined once, `?token={$t}` on every URI.
    let variable = Rewrite {
        carrier: Carrier::Variable,
        max_output: usize::MAX,
        ..ctx
    };
    let defined = manifest::rewrite(media.as_bytes(), &variable).expect("media rewrites");
    assert_eq!(defined.tokenized, SEGMENTS);
    group.bench_function("rewrite_media_10k_variable", |b| {
        b.iter(|| manifest::rewrite(black_box(media.as_bytes()), black_box(&variable)))
    });
    group.finish();
    println!(
        "media_10k: {} B in, {} B out with the query carrier ({}-character token), {} B with the variable carrier, {} B with the inherited path carrier",
        media.len(),
        rewritten.text.len(),
        token.len(),
        defined.text.len(),
        kept.text.len()
    );

    let master = master_playlist();
    let rewritten = manifest::rewrite(master.as_bytes(), &ctx).expect("master rewrites");
    assert_eq!(rewritten.kind, manifest::PlaylistKind::Master);
    assert_eq!(rewritten.tokenized, 9);
    let mut group = c.benchmark_group("rewrite");
    group.throughput(Throughput::Bytes(master.len() as u64));
    group.bench_function("rewrite_master", |b| {
        b.iter(|| manifest::rewrite(black_box(master.as_bytes()), black_box(&ctx)))
    });
    group.finish();
}

/// A live media playlist of `segments` segments (a sliding window, no ENDLIST).
fn live_playlist(segments: usize) -> String {
    let mut text = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4810\n",
    );
    for n in 4810..4810 + segments {
        writeln!(text, "#EXTINF:2.000,\nseg_{n:05}.ts").expect("write to String");
    }
    text
}

/// Playlist compression after rewriting (issue 12): gzip at level 1 (usher's default) and
/// 6 (zlib's default) of a tokenized 10,000-segment VOD playlist and a tokenized 6-segment
/// live playlist. The sizes are printed once: identity bytes, gzip bytes per level.
fn bench_compress(c: &mut Criterion) {
    let ring = ring();
    let token = ticket::sign(&ring, Kind::Session, &session_claims());
    let bases = [OriginBase::parse("http://origin.test/hls").expect("origin base")];
    let ctx = Rewrite {
        origin_bases: &bases,
        upstream_for: None,
        param: "token",
        usher_param: "token",
        token: &token,
        request_query: None,
        preview: None,
        per_path: None,
        carrier: Carrier::Query,
        max_output: usize::MAX,
    };
    for (name, text) in [
        ("media_10k", media_playlist(SEGMENTS)),
        ("live_6", live_playlist(6)),
    ] {
        let tokenized = manifest::rewrite(text.as_bytes(), &ctx)
            .expect("rewrites")
            .text;
        let sizes: Vec<String> = [1, 6, 9]
            .iter()
            .map(|level| {
                format!(
                    "level {level}: {} B",
                    compress::gzip(tokenized.as_bytes(), *level).len()
                )
            })
            .collect();
        eprintln!(
            "gzip {name}: origin {} B, tokenized {} B, {}",
            text.len(),
            tokenized.len(),
            sizes.join(", ")
        );
        let mut group = c.benchmark_group("gzip");
        group.throughput(Throughput::Bytes(tokenized.len() as u64));
        for level in [1, 6] {
            group.bench_function(format!("gzip_{name}_level{level}"), |b| {
                b.iter(|| compress::gzip(black_box(tokenized.as_bytes()), level))
            });
        }
        group.finish();
    }
}

fn bench_path(c: &mut Criterion) {
    let raw = "/events/final/1080p/seg_00042.ts";
    assert_eq!(usher::path::normalize(raw).as_deref(), Ok(raw));
    c.bench_function("path_normalize", |b| {
        b.iter(|| usher::path::normalize(black_box(raw)))
    });
}

/// A rights check answered from the decision cache: what every segment request with
/// rights on pays after the first.
fn bench_rights(c: &mut Criterion) {
    use std::sync::Arc;
    use usher::config::{RightsConfig, RightsSource};
    use usher::metrics::Metrics;
    use usher::rights::model::DeviceClass;
    use usher::rights::sqlite::SqliteStore;
    use usher::rights::store::Store;
    use usher::rights::{Rights, Source};

    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let product = serde_json::from_value(serde_json::json!({"code": "final", "name": "Final"}))
        .expect("product");
    store.create_product(&product).expect("product stored");
    let media =
        serde_json::from_value(serde_json::json!({"code": "final-hd", "prefix": "/events/final/"}))
            .expect("media");
    store.create_media(&media).expect("media stored");
    store.link("final", "final-hd").expect("linked");
    let purchase = serde_json::from_value(serde_json::json!({
        "hash": "h1", "product": "final", "account": "u-81f3a9", "purchased_at": NOW - 60
    }))
    .expect("purchase");
    store.create_purchase(&purchase).expect("purchase stored");
    let config = RightsConfig {
        grace: Duration::ZERO,
        source: RightsSource::Store,
        positive_ttl: Duration::from_secs(3600),
        negative_ttl: Duration::from_secs(5),
        cache_capacity: 100_000,
        first_play_retry: Duration::from_secs(5),
        device_class_header: http::HeaderName::from_static("x-device-class"),
        default_device_class: DeviceClass::Ott,
    };
    let rights = Rights::new(store, Source::Store, &config, Metrics::new()).expect("rights");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let path = "/events/final/1080p/seg_00042.ts";
    runtime
        .block_on(rights.check("u-81f3a9", path, DeviceClass::Ott, NOW, Instant::now()))
        .expect("the buyer is entitled");
    c.bench_function("rights_check_cached", |b| {
        b.to_async(&runtime).iter(|| {
            rights.check(
                black_box("u-81f3a9"),
                black_box(path),
                DeviceClass::Ott,
                NOW,
                Instant::now(),
            )
        })
    });
}

/// Verifying the CDN formats usher speaks: an Akamai EdgeAuth ACL token, an nginx
/// secure_link, and Google Media CDN tokens (HMAC-SHA256 and Ed25519).
fn bench_cdn_formats(c: &mut Criterion) {
    use usher::ticket::edgeauth::{self, Algorithm, EdgeKey, EdgeToken, Options};
    use usher::ticket::secure_link::Expression;

    let key =
        EdgeKey::from_hex("0123456789abcdef0123456789abcdef", Algorithm::Sha256).expect("key");
    let token = EdgeToken {
        start: Some(NOW - 60),
        exp: NOW + 3_600,
        acl: Some(vec!["/events/final/*".to_owned()]),
        id: Some("9d2c47e1".to_owned()),
        ..EdgeToken::default()
    };
    let options = Options::default();
    let raw = edgeauth::mint(&token, None, &key, &options);
    let keys = [key];
    let path = "/events/final/1080p/seg_00042.ts";
    assert!(edgeauth::verify(&raw, &keys, path, &options, NOW, SKEW).is_ok());
    c.bench_function("akamai_verify", |b| {
        b.iter(|| edgeauth::verify(black_box(&raw), &keys, black_box(path), &options, NOW, SKEW))
    });

    let expression = Expression::new("$secure_link_expires$uri $secret", "nginx-shared-secret");
    let md5 = expression.hash(path, NOW + 3_600, None);
    let expires = (NOW + 3_600).to_string();
    assert!(expression.verify(path, &md5, &expires, None, NOW).is_ok());
    c.bench_function("secure_link_verify", |b| {
        b.iter(|| expression.verify(black_box(path), black_box(&md5), &expires, None, NOW))
    });

    bench_media_cdn(c, path);
}

fn bench_media_cdn(c: &mut Criterion, path: &str) {
    use usher::ticket::media_cdn::{self, Algorithm, MediaKey, MediaToken, Request, Scope};

    let headers = http::HeaderMap::new();
    let request = Request {
        url: "https://cdn.example/events/final/1080p/seg_00042.ts",
        path,
        client: "203.0.113.9".parse().expect("address"),
        headers: &headers,
    };
    let mut token = MediaToken::new(
        Scope::PathGlobs(vec!["/events/final/*".to_owned()]),
        NOW + 3_600,
    );
    token.session_id = Some("9d2c47e1".to_owned());
    for (name, key) in [
        (
            "media_cdn_verify",
            MediaKey::hmac("k1", Algorithm::Sha256, b"0123456789abcdef0123456789abcdef"),
        ),
        (
            "media_cdn_verify_ed25519",
            MediaKey::ed25519_private("k2", &[7u8; 32]),
        ),
    ] {
        let key = key.expect("key");
        let raw = media_cdn::mint(&token, &key.clone().signing().expect("signs"));
        let keys = [key];
        assert!(media_cdn::verify(&raw, &keys, &request, NOW, SKEW).is_ok());
        c.bench_function(name, |b| {
            b.iter(|| media_cdn::verify(black_box(&raw), &keys, black_box(&request), NOW, SKEW))
        });
    }
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50)
}

criterion_group! {
    name = hot_path;
    config = config();
    targets = bench_credentials, bench_manifests, bench_compress, bench_path, bench_rights, bench_cdn_formats
}
criterion_main!(hot_path);
