//! Issue 12, playlists: `Accept-Encoding: gzip` for playlists (rewritten and passed
//! through), never for segments, keys or init sections; `Vary: Accept-Encoding` on every
//! playlist response; the decoded bytes are the identity response byte for byte; a real
//! player (ffprobe) still plays gzip-encoded playlists.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::Command;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MASTER_HEAD: &str = "#EXTM3U\n#EXT-X-VERSION:3\n";

/// A master with many variants and a 200-segment media playlist: both well past the
/// default 1 KiB threshold.
fn master() -> String {
    let mut text = MASTER_HEAD.to_owned();
    for n in 0..40 {
        text.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION=640x360\nv{n}/index.m3u8\n",
            100_000 + n
        ));
    }
    text
}

fn media(segments: usize) -> String {
    let mut text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.key\"\n\
                    #EXT-X-MAP:URI=\"init.mp4\"\n"
        .to_owned();
    for n in 0..segments {
        text.push_str(&format!("#EXTINF:2.000,\nseg_{n:05}.m4s\n"));
    }
    text.push_str("#EXT-X-ENDLIST\n");
    text
}

async fn origin() -> Origin {
    let mut objects = HashMap::new();
    for route in ["p", "pub"] {
        objects.insert(format!("/{route}/master.m3u8"), playlist(&master()));
        objects.insert(format!("/{route}/v0/index.m3u8"), playlist(&media(200)));
        objects.insert(format!("/{route}/small/index.m3u8"), playlist(&media(0)));
        objects.insert(format!("/{route}/v0/seg_00000.m4s"), segment(5000));
        objects.insert(format!("/{route}/v0/k.key"), segment(16));
        objects.insert(format!("/{route}/v0/init.mp4"), segment(3000));
    }
    spawn_origin(objects).await
}

fn start(origin: &str, playlists: &str) -> Usher {
    let extra = format!(
        "[access]\nprotected = [\"/p/\"]\npublic = [\"/pub/\"]\n\
         [[routes]]\nprefix = \"/p/\"\ncarrier = \"path\"\n[playlists]\n{playlists}"
    );
    Usher::start(&test_config(origin, &extra), &[])
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

fn says_vary(reply: &Reply) -> bool {
    reply.headers.get_all("vary").iter().any(|v| {
        v.to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    })
}

/// The session token's path prefix a master answered under a ticket hands its variants:
/// requesting under it again mints no new token, so two answers can be compared whole.
async fn session_base(usher: &Usher) -> String {
    let first = get(
        &format!("{}/p/master.m3u8?ticket={}", usher.url, mint("/p/")),
        &[],
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let variant = first
        .text()
        .lines()
        .find(|l| l.ends_with("/p/v0/index.m3u8"))
        .expect("a variant URI")
        .to_owned();
    let base = variant.trim_end_matches("/p/v0/index.m3u8").to_owned();
    assert!(base.starts_with('/') && base.len() > 10, "{variant}");
    format!("{}{base}", usher.url)
}

/// Asserts `zipped` is the gzip form of `plain` with the headers a cache needs.
fn assert_same_playlist(zipped: &Reply, plain: &Reply) {
    assert_eq!(zipped.status, 200, "{}", zipped.text());
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(header(zipped, "content-encoding"), "gzip");
    assert_eq!(header(plain, "content-encoding"), "");
    assert_eq!(
        header(zipped, "content-length"),
        zipped.body.len().to_string()
    );
    assert!(
        says_vary(zipped) && says_vary(plain),
        "{:?}",
        zipped.headers
    );
    assert!(zipped.body.len() * 3 < plain.body.len(), "gzip saves");
    assert_eq!(gunzip(&zipped.body), plain.body.as_ref(), "byte for byte");
}

#[tokio::test]
async fn issue12_gzip_master_and_media_playlists_decode_to_the_identity_bytes() {
    let origin = origin().await;
    let usher = start(&origin.url(), "");
    let base = session_base(&usher).await;
    for path in ["/p/master.m3u8", "/p/v0/index.m3u8"] {
        let url = format!("{base}{path}");
        let zipped = get(&url, &[("accept-encoding", "gzip, deflate, br")]).await;
        let plain = get(&url, &[]).await;
        assert_same_playlist(&zipped, &plain);
        assert!(header(&zipped, "cache-control").starts_with("private"));
        // HEAD says what GET would send.
        let head = request("HEAD", &url, &[("accept-encoding", "gzip")]).await;
        assert_eq!(header(&head, "content-encoding"), "gzip", "{path}");
        assert_eq!(
            header(&head, "content-length"),
            zipped.body.len().to_string()
        );
        assert!(head.body.is_empty());
    }
    // The origin was asked for identity bytes: the shield keeps the uncompressed ones.
    assert!(origin
        .seen()
        .iter()
        .filter(|s| s.target.ends_with(".m3u8"))
        .all(|s| s.headers["accept-encoding"] == "identity"));
    assert!(metric(&usher, "usher_playlist_bytes_total{encoding=\"gzip\"}").await > 0.0);
    assert!(metric(&usher, "usher_playlist_gzip_input_bytes_total").await > 0.0);
}

#[tokio::test]
async fn issue12_gzip_refused_absent_small_or_ranged_gets_identity_with_vary() {
    let origin = origin().await;
    let usher = start(&origin.url(), "");
    let base = session_base(&usher).await;
    let url = format!("{base}/p/v0/index.m3u8");
    let reference = get(&url, &[]).await;
    for headers in [
        vec![],
        vec![("accept-encoding", "gzip;q=0")],
        vec![("accept-encoding", "gzip;q=0, *")],
        vec![("accept-encoding", "identity")],
        vec![("accept-encoding", "br, deflate")],
        vec![("accept-encoding", "gzip"), ("range", "bytes=100-200")],
    ] {
        let reply = get(&url, &headers).await;
        assert_eq!(reply.status, 200, "{headers:?}");
        assert_eq!(header(&reply, "content-encoding"), "", "{headers:?}");
        assert!(says_vary(&reply), "{headers:?}");
        assert_eq!(reply.body, reference.body, "{headers:?}");
    }
    // `bytes=0-` (what ffmpeg sends) is the whole playlist: compressed.
    let whole = get(&url, &[("accept-encoding", "gzip"), ("range", "bytes=0-")]).await;
    assert_eq!(header(&whole, "content-encoding"), "gzip");
    // A playlist with two URIs is under the threshold: not worth compressing.
    let small = get(
        &format!("{base}/p/small/index.m3u8"),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(small.status, 200);
    assert_eq!(header(&small, "content-encoding"), "");
    assert!(says_vary(&small));
}

#[tokio::test]
async fn issue12_compress_off_sends_identity() {
    let origin = origin().await;
    let usher = start(&origin.url(), "compress = \"off\"\n");
    let base = session_base(&usher).await;
    let reply = get(
        &format!("{base}/p/v0/index.m3u8"),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, "content-encoding"), "");
    assert!(reply.text().contains("seg_00199.m4s"));
}

#[tokio::test]
async fn issue12_segments_keys_and_init_are_never_gzip_encoded() {
    let origin = origin().await;
    let usher = start(&origin.url(), "compress_min_bytes = 0\n");
    let base = session_base(&usher).await;
    let ticket = mint("/");
    for (name, len) in [("seg_00000.m4s", 5000), ("k.key", 16), ("init.mp4", 3000)] {
        for url in [
            format!("{base}/p/v0/{name}"),
            format!("{}/pub/v0/{name}?ticket={ticket}", usher.url),
        ] {
            let reply = get(&url, &[("accept-encoding", "gzip")]).await;
            assert_eq!(reply.status, 200, "{url}: {}", reply.text());
            assert_eq!(header(&reply, "content-encoding"), "", "{url}");
            assert_eq!(reply.body, segment(len).body, "{url}");
        }
    }
}

#[tokio::test]
async fn issue12_public_playlists_passed_through_are_gzip_encoded_too() {
    let origin = origin().await;
    let usher = start(&origin.url(), "");
    let url = format!("{}/pub/v0/index.m3u8", usher.url);
    let zipped = get(&url, &[("accept-encoding", "gzip")]).await;
    let plain = get(&url, &[]).await;
    assert_same_playlist(&zipped, &plain);
    assert_eq!(
        plain.text(),
        media(200),
        "passed through as the origin sent it"
    );
}

/// An origin that answers every request with `body` gzip-encoded, whatever was asked.
async fn gzipping_origin(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut packed = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    packed.write_all(body.as_bytes()).unwrap();
    let packed = packed.finish().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let packed = packed.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.apple.mpegurl\r\n\
                     content-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    packed.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&packed).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn issue12_an_upstream_that_gzips_anyway_is_decoded_and_rewritten() {
    let origin = gzipping_origin(media(200)).await;
    let usher = start(&origin, "");
    let url = format!("{}/p/v0/index.m3u8?ticket={}", usher.url, mint("/p/"));
    let plain = get(&url, &[]).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(header(&plain, "content-encoding"), "");
    let text = plain.text();
    let uris = uris(&text);
    assert_eq!(uris.len(), 202, "{text}");
    assert!(
        uris.iter()
            .all(|u| u.ends_with(".m4s") || u.ends_with(".key") || u.ends_with(".mp4")),
        "{text}"
    );
    assert!(
        uris.iter()
            .all(|u| u.split("/p/v0/").next().unwrap().len() > 10),
        "every URI carries the session token: {text}"
    );
    let zipped = get(&url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&zipped, "content-encoding"), "gzip");
    assert!(String::from_utf8(gunzip(&zipped.body))
        .unwrap()
        .contains("/p/v0/seg_00199.m4s"));
}

#[tokio::test]
async fn issue12_ffprobe_plays_gzip_encoded_playlists() {
    // The bundled demo stream; its playlists are small, so the threshold is 0 here.
    let demo = demo_dir();
    let usher = Usher::start(
        &test_config(
            demo.to_str().unwrap(),
            "[playlists]\ncompress_min_bytes = 0\n",
        ),
        &[],
    );
    let url = format!("{}/demo/master.m3u8?ticket={}", usher.url, mint("/demo/"));
    // ffmpeg sends no Accept-Encoding of its own (and `Range: bytes=0-`); ask for gzip.
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-headers",
            "Accept-Encoding: gzip\r\n",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            &url,
        ])
        .output()
        .expect("ffprobe is installed (scripts/test installs ffmpeg)");
    let streams = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(streams.contains("h264,640,360"), "{streams}");
    assert!(streams.contains("aac"), "{streams}");
    assert!(
        metric(&usher, "usher_playlist_bytes_total{encoding=\"gzip\"}").await > 0.0,
        "the playlists went out gzip-encoded"
    );
}

#[test]
fn issue12_check_config_names_bad_playlists_keys() {
    let text = test_config("http://127.0.0.1:1", "")
        + "[playlists]\ncompress = \"zstd\"\ncompress_level = 12\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(usher_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("usher runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("playlists.compress = \"zstd\""), "{stderr}");
    assert!(stderr.contains("playlists.compress_level"), "{stderr}");
}

/// A protected playlist at a path that does not say so (no `.m3u8`), known by its type:
/// a player's range, another coding it accepts, or a HEAD does not reach the origin as
/// such: the playlist is fetched whole and rewritten.
#[tokio::test]
async fn a_playlist_known_by_its_type_is_fetched_whole_whatever_the_request_asked() {
    let mut objects = HashMap::new();
    objects.insert("/p/v0/live".to_owned(), playlist(&media(200)));
    let origin = spawn_origin(objects).await;
    let usher = start(&origin.url(), "");
    let url = format!("{}/p/v0/live?ticket={}", usher.url, mint("/p/"));
    let ranged = get(
        &url,
        &[
            ("range", "bytes=0-99"),
            ("accept-encoding", "gzip, deflate, br"),
        ],
    )
    .await;
    assert_eq!(ranged.status, 200, "{}", ranged.text());
    // A ranged request is answered in identity (see above), the whole of it.
    assert!(ranged.headers.get("content-encoding").is_none());
    let text = ranged.text();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    assert!(text.contains("seg_00199.m4s"), "the whole playlist");
    assert_eq!(text.matches("seg_").count(), 200);
    let head = request("HEAD", &url, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}
