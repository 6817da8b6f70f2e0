//! usher's Akamai EdgeAuth tokens against the reference package itself: tokens generated
//! at test time by `akamai-edgeauth` 0.3.2 (from PyPI, installed by scripts/test) for a grid
//! of options must be minted byte for byte the same by usher, and verify.

use std::process::Command;

use serde_json::Value;
use usher::ticket::edgeauth::{mint, verify, Algorithm, EdgeKey, EdgeToken, Options};

const GRID: &str = r#"
import itertools, json
from akamai.edgeauth import EdgeAuth
key = "0123456789abcdef0123456789abcdef"
for algo, escape, mode, salt, ip, sid, data, start in itertools.product(
        ["sha256", "sha1", "md5"], [False, True], ["acl", "acls", "url"],
        [None, "pepper"], [None, "203.0.113.9"], [None, "sess 1/a"], [None, "k=v&x"], [None, 1700000000]):
    ea = EdgeAuth(key=key, algorithm=algo, escape_early=escape, salt=salt, ip=ip,
                  session_id=sid, payload=data, start_time=start, end_time=1700003600)
    if mode == "acl":
        path = "/live/event 1/*"
        token = ea.generate_acl_token(path)
    elif mode == "acls":
        path = ["/live/a/*", "/live/b/?.ts"]
        token = ea.generate_acl_token(path)
    else:
        path = "/vod/movie one/index.m3u8?x=1"
        token = ea.generate_url_token(path)
    print(json.dumps(dict(algo=algo, escape=escape, mode=mode, salt=salt, ip=ip, sid=sid,
                          data=data, start=start, path=path, token=token)))
"#;

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

#[test]
fn tokens_from_the_reference_package_are_minted_identically_and_verify() {
    let out = Command::new("python3")
        .args(["-c", GRID])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "akamai-edgeauth 0.3.2 is installed (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3 * 2 * 3 * 2 * 2 * 2 * 2 * 2);
    for case in &lines {
        let algorithm = Algorithm::parse(case["algo"].as_str().unwrap()).unwrap();
        let key = EdgeKey::from_hex("0123456789abcdef0123456789abcdef", algorithm).unwrap();
        let options = Options {
            salt: text(&case["salt"]),
            escape_early: case["escape"].as_bool().unwrap(),
        };
        let (acl, url) = match case["mode"].as_str().unwrap() {
            "acl" => (Some(vec![text(&case["path"]).unwrap()]), None),
            "acls" => (
                Some(
                    case["path"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| text(p).unwrap())
                        .collect(),
                ),
                None,
            ),
            _ => (None, text(&case["path"])),
        };
        let token = EdgeToken {
            ip: text(&case["ip"]),
            start: case["start"].as_u64(),
            exp: 1_700_003_600,
            acl,
            id: text(&case["sid"]),
            data: text(&case["data"]),
        };
        let reference = case["token"].as_str().unwrap();
        assert_eq!(
            mint(&token, url.as_deref(), &key, &options),
            reference,
            "{case}"
        );
        let request_path = url.clone().unwrap_or_else(|| "/live/b/1.ts".to_owned());
        let verified = verify(
            reference,
            std::slice::from_ref(&key),
            &request_path,
            &options,
            1_700_001_000,
            0,
        )
        .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        if case["mode"] == "acls" {
            assert!(verified.in_scope, "{case}");
        }
    }
}
