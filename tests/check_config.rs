//! Issue 11 item 13a: `usher check-config` reports every type and syntax problem with its
//! dotted key, not only the first one serde meets.

mod support;

use std::process::Command;

use support::*;

/// Runs `usher check-config` on `text`: (exit status, stdout, stderr).
fn check_config(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(usher_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("usher runs");
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn item13a_check_config_reports_every_type_problem_by_dotted_key() {
    // Three mistakes in three sections, each of which alone stops serde: a number where a
    // duration string goes, an unknown key, and a wrong type inside the third route.
    let text = config_with("http://127.0.0.1:1", "source = \"store\"", "")
        .replace(
            "clock_skew = \"0s\"",
            "clock_skew = \"0s\"\nsession_ttl = 600",
        )
        .replace("[upstream]\n", "[upstream]\ntimeoutt = \"3s\"\n")
        + r#"
[[routes]]
prefix = "/a/"
[[routes]]
prefix = "/b/"
[[routes]]
prefix = "/c/"
carrier = 7
"#;
    let (code, stdout, stderr) = check_config(&text);
    assert_ne!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout, "");
    for key in [
        "token.session_ttl",
        "upstream.timeoutt",
        "routes[2].carrier",
    ] {
        assert!(
            stderr.lines().any(|l| l.trim_start().starts_with(key)),
            "{key} is named at the start of its line:\n{stderr}"
        );
    }
    assert!(stderr.contains("unknown field `timeoutt`"), "{stderr}");
    assert!(stderr.contains("invalid type: integer `600`"), "{stderr}");
}

#[test]
fn item13a_type_problems_and_value_problems_are_reported_together() {
    let text = config_with("http://127.0.0.1:1", "source = \"store\"", "")
        .replace(
            "clock_skew = \"0s\"",
            "clock_skew = \"0s\"\nbearer = \"yes\"",
        )
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"0s\"");
    let (code, _, stderr) = check_config(&text);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("token.bearer: invalid type"), "{stderr}");
    assert!(stderr.contains("listen.drain_timeout"), "{stderr}");
}

#[test]
fn item13a_a_syntax_error_is_reported_with_its_line() {
    let text = config_with(
        "http://127.0.0.1:1",
        "source = \"store\"",
        "[sessions]\nidle_timeout = \n",
    );
    let (code, _, stderr) = check_config(&text);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("line "), "{stderr}");
    assert!(stderr.contains("[sessions]"), "{stderr}");
}

#[test]
fn the_shared_store_settings_are_checked_without_printing_the_password() {
    let base = config_with(
        "http://127.0.0.1:1",
        "source = \"store\"\ngrace = \"2m\"",
        "",
    );
    let good = format!(
        "{base}\n[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"postgres://usher:hunter2@127.0.0.1:5432/usher\"\npool_size = 16\n"
    );
    let (code, stdout, stderr) = check_config(&good);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("hunter2"));

    let bad = format!(
        "{base}\n[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"postgres://usher:hunter2@127.0.0.1:notaport/usher\"\npool_size = 0\ntimeout = \"1ms\"\n"
    );
    let (code, stdout, stderr) = check_config(&bad);
    assert_eq!(code, Some(64), "{stdout}{stderr}");
    for key in [
        "store.postgres.url",
        "store.postgres.pool_size",
        "store.postgres.timeout",
    ] {
        assert!(
            stderr.lines().any(|l| l.trim_start().starts_with(key)),
            "{key} is named:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("hunter2"),
        "the password is never printed:\n{stderr}"
    );

    let sessions = format!(
        "{base}\n[sessions]\nbackend = \"redis\"\non_backend_error = \"maybe\"\n[sessions.redis]\nurl = \"http://:hunter2@127.0.0.1\"\n"
    );
    let (code, _, stderr) = check_config(&sessions);
    assert_eq!(code, Some(64));
    for key in [
        "sessions.on_backend_error = \"maybe\"",
        "sessions.redis.url: not a Redis URL",
    ] {
        assert!(stderr.contains(key), "{key} in:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let redis = format!(
        "{base}\n[sessions]\nbackend = \"redis\"\n[sessions.redis]\nurl = \"redis://127.0.0.1:6379\"\n"
    );
    let (code, stdout, stderr) = check_config(&redis);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    let unknown = format!("{base}\n[store]\nbackend = \"mysql\"\n");
    let (code, _, stderr) = check_config(&unknown);
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("store.backend = \"mysql\": use \"sqlite\" or \"postgres\""),
        "{stderr}"
    );
}

/// An admin listener that is not on loopback is allowed, with a warning naming it.
#[test]
fn an_admin_listener_off_loopback_is_warned_about() {
    let config = test_config("http://127.0.0.1:9", "");
    let loopback = "listen = \"127.0.0.1:0\"\ntoken";
    assert!(config.contains(loopback), "{config}");
    let exposed = config.replace(loopback, "listen = \"0.0.0.0:9090\"\ntoken");
    let (code, _, err) = check_config(&exposed);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: admin.listen = 0.0.0.0:9090 is not a loopback address"),
        "{err}"
    );
    let (code, _, err) = check_config(&config);
    assert_eq!((code, err.contains("warning")), (Some(0), false), "{err}");
}
