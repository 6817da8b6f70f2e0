//! `usher ticket issue` and `usher ticket inspect` for every format, running the real
//! binary with keys from a config file: what is issued verifies, and inspect says what is
//! wrong with a tampered, expired or misplaced credential.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::usher_bin;

const CONFIG: &str = r#"
listen.http = "127.0.0.1:0"
upstream.origin = "http://127.0.0.1:9"
[token]
signing_key = "k"
keys = [{ id = "k", secret = "0123456789abcdef0123456789abcdef" }]
[akamai]
key = "0123456789abcdef0123456789abcdef"
[secure_link]
secret = "nginx-shared-secret"
[media_cdn]
[[media_cdn.keys]]
id = "google-sample"
secret = "g_SlMILiIWKqsC6Z2L7gy0sReDOqtSrJrE7CXNr5Nl8="
"#;

struct Cli {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("usher.toml");
        std::fs::write(&config, text).unwrap();
        Self { _dir: dir, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        let (command, rest) = args.split_first().unwrap();
        Command::new(usher_bin())
            .args(["ticket", command, "--config"])
            .arg(&self.config)
            .args(rest)
            .output()
            .unwrap()
    }

    fn issue(&self, args: &[&str]) -> String {
        let mut all = vec!["issue"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
        stdout.trim().to_owned()
    }

    fn inspect(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut all = vec!["inspect"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    }
}

#[test]
fn what_is_issued_in_each_format_inspects_as_verifying() {
    let cli = Cli::new(CONFIG);
    let cases: [(&str, &[&str], &str, &str); 4] = [
        ("usher", &["--sub", "alice"], "/vod/", "subject:    alice"),
        ("akamai", &["--sub", "alice"], "/vod/", "id:         alice"),
        ("secure_link", &[], "/vod/a.ts", "path:       /vod/a.ts"),
        (
            "media_cdn",
            &["--sub", "alice"],
            "/vod/",
            "SessionID:  alice",
        ),
    ];
    for (format, extra, scope, field) in cases {
        let mut args = vec!["--format", format, "--scope", scope, "--ttl", "1h"];
        args.extend_from_slice(extra);
        let token = cli.issue(&args);
        let (code, text) = cli.inspect(&["--path", "/vod/a.ts", &token]);
        assert_eq!(code, Some(0), "{format}: {text}");
        assert!(text.contains(field), "{format}: {text}");
        assert!(text.contains("verifies:   yes"), "{format}: {text}");
        if format != "usher" {
            assert!(
                text.contains(&format!("format:     {format}")),
                "the format is recognised from the token's shape: {text}"
            );
            assert!(text.contains("signature:  yes") && text.contains("window:     yes"));
        }
    }
}

#[test]
fn inspect_tells_a_bad_signature_from_an_expired_window_and_a_misplaced_path() {
    let cli = Cli::new(CONFIG);
    let akamai = cli.issue(&["--format", "akamai", "--scope", "/vod/"]);
    let tampered = akamai.replace("acl=/vod/*", "acl=/*");
    let (code, text) = cli.inspect(&["--path", "/vod/a.ts", &tampered]);
    assert_eq!(code, Some(1));
    assert!(text.contains("signature:  no (bad_signature"), "{text}");

    let (code, text) = cli.inspect(&["--path", "/live/a.ts", &akamai]);
    assert_eq!(code, Some(1));
    assert!(text.contains("fits:       no (out_of_scope)"), "{text}");

    // Google's published sample (python-docs-samples media_cdn/dualtoken_test.py), signed
    // with the configured key and long expired.
    let google = "URLPrefix=aHR0cDovLzEwLjIwLjMwLjQwLw~Expires=1663070400~hmac=409722313cf6d987da44bb360e60dccc3d79764520fc5e3b57654e1d4d2c862e";
    let (code, text) = cli.inspect(&["--path", "http://10.20.30.40/example.m3u8", google]);
    assert_eq!(code, Some(1));
    assert!(text.contains("URLPrefix:  http://10.20.30.40/"), "{text}");
    assert!(text.contains("signature:  yes"), "{text}");
    assert!(text.contains("window:     no (expired"), "{text}");

    let media = cli.issue(&[
        "--format",
        "media_cdn",
        "--scope",
        "/vod/a.ts",
        "--ip",
        "203.0.113.0/24",
    ]);
    let (code, text) = cli.inspect(&["--path", "/vod/a.ts", &media]);
    assert_eq!(code, Some(1), "from 127.0.0.1: {text}");
    assert!(text.contains("fits:       no (ip_mismatch)"), "{text}");
    let (code, text) = cli.inspect(&["--path", "/vod/a.ts", "--ip", "203.0.113.7", &media]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli.inspect(&["--path", "/vod/b.ts", "--ip", "203.0.113.7", &media]);
    assert_eq!(
        code,
        Some(1),
        "a FullPath token is signed for its path: {text}"
    );
    assert!(text.contains("signature:  no (bad_signature"), "{text}");
}

#[test]
fn issue_refuses_what_a_format_cannot_say() {
    let cli = Cli::new(CONFIG);
    for (args, message) in [
        (
            vec!["issue", "--format", "nginx", "--scope", "/vod/"],
            "--format \"nginx\": use usher, akamai, secure_link or media_cdn",
        ),
        (
            vec!["issue", "--format", "secure_link", "--scope", "/vod/"],
            "a secure link opens one exact path",
        ),
        (
            vec!["issue", "--format", "usher", "--scope", "/vod/"],
            "--sub: required for usher tickets",
        ),
        (
            vec![
                "issue", "--format", "akamai", "--scope", "/vod/", "--device", "tv",
            ],
            "akamai tokens are not bound to a device",
        ),
    ] {
        let out = cli.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let bare = Cli::new(CONFIG.split("[akamai]").next().unwrap());
    let out = bare.run(&["issue", "--format", "media_cdn", "--scope", "/vod/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("the config has no [media_cdn] section"));
}

/// A ticket that expires past the year 9999 (`--ttl` in the millions of days, or a crafted
/// token) is inspected, not a crash: its expiry is shown as a number.
#[test]
fn a_ticket_expiring_past_the_year_9999_is_inspected() {
    let cli = Cli::new(CONFIG);
    let token = cli.issue(&["--sub", "alice", "--scope", "/vod/", "--ttl", "3000000d"]);
    let (code, text) = cli.inspect(&["--path", "/vod/a.ts", &token]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("after the year 9999"), "{text}");
    assert!(text.contains("verifies:   yes"), "{text}");
}
