//! Playlists from a real packager (ffmpeg's HLS muxer, in the layouts operators use: MPEG-TS,
//! fMP4 with an init section, a single byte-range file, AES-128 encryption, a master with
//! two variants) served through usher: every URI comes back tokenized and fetchable
//! through usher, every other line unchanged, and ffprobe plays the result.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// Packages a 3-second test stream into `dir/name/` with extra HLS muxer options.
fn package(dir: &Path, name: &str, options: &[&str]) {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("ffmpeg")
        .current_dir(&out)
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=192x108:rate=25:duration=3",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=330:sample_rate=48000:duration=3",
        ])
        .args(["-map", "0:v", "-map", "1:a", "-map", "0:v", "-map", "1:a"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-b:a",
            "32k",
        ])
        .args(["-b:v:0", "200k", "-b:v:1", "100k", "-s:v:1", "128x72"])
        .args(["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .args([
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            "v:0,a:0 v:1,a:1",
        ])
        .args(options)
        .arg("v%v/index.m3u8")
        .status()
        .expect("ffmpeg is installed (scripts/test installs it)");
    assert!(status.success(), "ffmpeg packaged {name}");
}

/// Fetches the playlist at `url` through usher and compares it with the packager's file
/// at `file`: same line count, every non-URI line identical, every URI line the original
/// plus the token. Returns the URLs it points to.
async fn check_playlist(url: &str, file: &Path) -> Vec<String> {
    let reply = get(url, &[]).await;
    assert_eq!(reply.status, 200, "{url}");
    let served = reply.text();
    let original = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        served.lines().count(),
        original.lines().count(),
        "{}",
        file.display()
    );
    let mut next = Vec::new();
    for (got, was) in served.lines().zip(original.lines()) {
        if was.is_empty() || (was.starts_with('#') && !was.contains("URI=\"")) {
            assert_eq!(
                got,
                was,
                "{} changed a line that has no URI",
                file.display()
            );
            continue;
        }
        let uri = if was.starts_with('#') {
            let start = got.find("URI=\"").unwrap() + 5;
            let end = start + got[start..].find('"').unwrap();
            let was_start = was.find("URI=\"").unwrap() + 5;
            let was_end = was_start + was[was_start..].find('"').unwrap();
            assert_eq!(
                got[..start],
                was[..was_start],
                "text before the URI is unchanged"
            );
            assert_eq!(
                got[end..],
                was[was_end..],
                "text after the URI is unchanged"
            );
            assert_uri_tokenized(&got[start..end], &was[was_start..was_end]);
            got[start..end].to_owned()
        } else {
            assert_uri_tokenized(got, was);
            got.to_owned()
        };
        next.push(resolve(url, &uri));
    }
    next
}

fn assert_uri_tokenized(got: &str, was: &str) {
    let token = got
        .strip_prefix(was)
        .unwrap_or_else(|| panic!("{got} starts with the original {was}"));
    let sep = if was.contains('?') {
        "&token=s2."
    } else {
        "?token=s2."
    };
    assert!(token.starts_with(sep), "{got}: token appended to {was}");
}

async fn walk(usher: &Usher, root: &Path, name: &str) -> usize {
    let ticket = mint(&format!("/{name}/"));
    let mut queue = vec![format!("{}/{name}/master.m3u8?ticket={ticket}", usher.url)];
    let mut objects = 0;
    let mut seen_urls = std::collections::HashSet::new();
    while let Some(url) = queue.pop() {
        let path = url.split('?').next().unwrap();
        let relative = path.strip_prefix(&usher.url).unwrap();
        if path.ends_with(".m3u8") {
            queue.extend(check_playlist(&url, &root.join(relative.trim_start_matches('/'))).await);
        } else if seen_urls.insert(path.to_owned()) {
            let reply = get(&url, &[("range", "bytes=0-187")]).await;
            assert!(
                reply.status == 200 || reply.status == 206,
                "{url}: {}",
                reply.status
            );
        }
        objects += 1;
    }
    objects
}

fn serve_dir(root: &Path) -> Usher {
    let config = test_config(&root.display().to_string(), "");
    Usher::start(&config, &[])
}

#[tokio::test]
async fn ffmpeg_packaged_streams_are_tokenized_fetchable_and_otherwise_unchanged() {
    let root = tempfile::tempdir().unwrap();
    package(
        root.path(),
        "ts",
        &["-hls_segment_filename", "v%v/seg_%03d.ts"],
    );
    package(
        root.path(),
        "fmp4",
        &[
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
            "-hls_segment_filename",
            "v%v/seg_%03d.m4s",
        ],
    );
    package(root.path(), "single", &["-hls_flags", "single_file"]);
    std::fs::write(root.path().join("enc.key"), [7u8; 16]).unwrap();
    let key_info = root.path().join("keyinfo");
    std::fs::write(
        &key_info,
        format!("../enc.key\n{}\n", root.path().join("enc.key").display()),
    )
    .unwrap();
    package(
        root.path(),
        "aes",
        &[
            "-hls_key_info_file",
            key_info.to_str().unwrap(),
            "-hls_segment_filename",
            "v%v/seg_%03d.ts",
        ],
    );
    // The key lives inside the content's directory so the session token's scope covers it.
    std::fs::copy(root.path().join("enc.key"), root.path().join("aes/enc.key")).unwrap();

    let usher = serve_dir(root.path());
    for name in ["ts", "fmp4", "single", "aes"] {
        let objects = walk(&usher, root.path(), name).await;
        assert!(
            objects >= 9,
            "{name}: master, 2 media playlists and their media ({objects})"
        );
        let fmp4_init =
            std::fs::read_to_string(root.path().join(name).join("v0/index.m3u8")).unwrap();
        if name == "fmp4" {
            assert!(
                fmp4_init.contains("#EXT-X-MAP:URI="),
                "the fMP4 layout has an init section"
            );
        }
        if name == "single" {
            assert!(
                fmp4_init.contains("#EXT-X-BYTERANGE"),
                "the single-file layout uses byte ranges"
            );
        }
        if name == "aes" {
            assert!(
                fmp4_init.contains("#EXT-X-KEY:METHOD=AES-128"),
                "the aes layout is encrypted"
            );
        }
    }

    // And a real player reads each of them through usher.
    for name in ["ts", "fmp4", "single", "aes"] {
        let url = format!(
            "{}/{name}/master.m3u8?ticket={}",
            usher.url,
            mint(&format!("/{name}/"))
        );
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "10000000",
                "-allowed_extensions",
                "ALL",
            ])
            .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", &url])
            .output()
            .unwrap();
        let streams = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            streams.contains("h264") && streams.contains("aac"),
            "{name}: {streams}"
        );
    }
}
