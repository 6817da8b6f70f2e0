//! The demo command end to end: the shipped config serves the bundled stream, the printed
//! URL plays in ffprobe, a tampered ticket gets 403 bad_signature, no ticket gets 401.
//! Also the CLI contract that scripts rely on.

mod support;

use std::process::Command;

use support::*;

/// The shipped config, as the README runs it, with ports and the database moved aside so
/// tests can run side by side.
fn start_demo() -> Usher {
    start_demo_with_data_dir().0
}

/// [`start_demo`], and the data directory it made.
fn start_demo_with_data_dir() -> (Usher, std::path::PathBuf) {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/usher.toml");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let usher = Usher::start_file(
        &config,
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir,
    );
    (usher, data)
}

#[test]
fn the_data_directory_usher_makes_is_for_its_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_usher, data) = start_demo_with_data_dir();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", data.display());
    assert!(data.join("usher.db").exists());
}

fn play_url(usher: &Usher) -> String {
    usher
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("play: "))
        .expect("the demo prints a playable URL")
        .to_owned()
}

fn ffprobe(url: &str) -> std::process::Output {
    Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .expect("ffprobe is installed (scripts/test installs ffmpeg)")
}

#[test]
fn the_printed_url_plays_in_ffprobe() {
    let usher = start_demo();
    let url = play_url(&usher);
    assert!(
        url.starts_with(&usher.url),
        "{url} is served by {}",
        usher.url
    );
    let out = ffprobe(&url);
    let streams = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(streams.contains("h264,640,360"), "{streams}");
    assert!(streams.contains("h264,320,180"), "{streams}");
    assert!(streams.contains("aac"), "{streams}");
}

#[test]
fn ffprobe_is_refused_without_a_ticket() {
    let usher = start_demo();
    let url = play_url(&usher);
    let bare = url.split('?').next().unwrap();
    let out = ffprobe(bare);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[tokio::test]
async fn one_changed_character_is_bad_signature_and_none_is_401() {
    let usher = start_demo();
    let url = play_url(&usher);
    let ok = get(&url, &[]).await;
    assert_eq!(ok.status, 200);

    // Change one character of the MAC (the last field), keeping it base64url.
    let mut bytes = url.clone().into_bytes();
    let at = bytes.len() - 5;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let reply = get(&tampered, &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.reason(), "bad_signature");

    // …and one character of the claims.
    let claims_at = url.find("ticket=t1.").unwrap() + "ticket=t1.demo-2026.".len() + 3;
    let mut bytes = url.clone().into_bytes();
    bytes[claims_at] = if bytes[claims_at] == b'x' { b'y' } else { b'x' };
    let reply = get(&String::from_utf8(bytes).unwrap(), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.reason().as_str()),
        (403, "bad_signature")
    );

    let bare = get(url.split('?').next().unwrap(), &[]).await;
    assert_eq!(bare.status, 401);
    assert_eq!(bare.reason(), "no_credential");
    assert_eq!(bare.headers["content-type"], "application/json");
}

#[test]
fn ticket_issue_prints_one_ticket_that_inspect_verifies() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/usher.toml");
    let out = Command::new(usher_bin())
        .args([
            "ticket", "issue", "--config", config, "--sub", "alice", "--scope", "/demo/",
            "--device", "tv-1", "--ttl", "2h",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
    let ticket = stdout.trim();
    assert!(ticket.starts_with("t1.demo-2026."));

    let out = Command::new(usher_bin())
        .args(["ticket", "inspect", "--config", config, ticket])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("subject:    alice"), "{text}");
    assert!(text.contains("scope:      /demo/"), "{text}");
    let hashed = usher::device::hash_id("tv-1", None);
    assert!(
        text.contains(&format!("device:     {hashed}")),
        "the device id is kept hashed: {text}"
    );
    assert!(text.contains("verifies:   yes"), "{text}");

    let tampered = format!("{}A", &ticket[..ticket.len() - 1]);
    let tampered = if tampered == ticket {
        format!("{}B", &ticket[..ticket.len() - 1])
    } else {
        tampered
    };
    let out = Command::new(usher_bin())
        .args(["ticket", "inspect", "--config", config, &tampered])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("subject:    alice"),
        "claims are still shown: {text}"
    );
    assert!(text.contains("verifies:   no (bad_signature"), "{text}");
}

#[test]
fn check_config_names_each_offending_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        test_config(
            "http://127.0.0.1:1",
            "[access]\nprotected = [\"vod\"]\ncors_origins = [\"nope\"]\n",
        ),
    )
    .unwrap();
    let out = Command::new(usher_bin())
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("access.cors_origins = \"nope\""), "{err}");
    assert!(err.contains("access.protected = \"vod\""), "{err}");

    let out = Command::new(usher_bin())
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/usher.toml"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[tokio::test]
async fn admin_listener_serves_metrics_and_health() {
    let usher = start_demo();
    let admin = usher.admin.clone().expect("admin listener line");
    let url = play_url(&usher);
    assert_eq!(get(url.split('?').next().unwrap(), &[]).await.status, 401);
    assert_eq!(get(&url, &[]).await.status, 200);
    assert_eq!(get(&format!("{admin}/readyz"), &[]).await.status, 200);
    assert_eq!(get(&format!("{admin}/healthz"), &[]).await.status, 200);
    let metrics = get(&format!("{admin}/metrics"), &[]).await.text();
    assert!(
        metrics.contains(r#"usher_denials_total{reason="no_credential"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"usher_requests_total{kind="playlist",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"usher_playlist_rewrites_total{outcome="ok",playlist="master"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("usher_upstream_duration_seconds_bucket"),
        "{metrics}"
    );
}
