//! Issue 12, "every object kind": objects that are neither playlists nor the known media
//! kinds (trick-play images, `.bin` and extensionless keys, WebVTT subtitles) are kept by
//! the origin shield, chosen by extension or by content type; a kind chosen by neither
//! still goes past it. Real usher, real counting origin.

mod support;

use std::collections::HashMap;

use bytes::Bytes;
use support::*;

const VIEWERS: usize = 20;

fn object(content_type: &'static str, len: usize, seed: u8) -> Object {
    Object {
        content_type,
        body: Bytes::from(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(seed))
                .collect::<Vec<_>>(),
        ),
        delay: None,
        status: None,
        headers: Vec::new(),
    }
}

/// The objects of the tests, by path.
fn objects() -> HashMap<String, Object> {
    [
        ("/live/subs/en-001.vtt", object("text/vtt", 900, 3)),
        (
            "/live/keys/k1.bin",
            object("application/octet-stream", 16, 5),
        ),
        ("/live/keys/k2", object("application/octet-stream", 16, 7)),
        ("/live/trick/t-0001.jpg", object("image/jpeg", 1024, 11)),
        ("/live/trick/t-0002", object("image/webp", 700, 13)),
        ("/live/notes.txt", object("text/plain", 100, 17)),
    ]
    .into_iter()
    .map(|(path, object)| (path.to_owned(), object))
    .collect()
}

/// Each of `VIEWERS` viewers, with a ticket of their own, asks for `path` in turn; every
/// one gets the origin's bytes.
async fn twenty_viewers(usher: &Usher, path: &str, body: &Bytes) {
    for n in 0..VIEWERS {
        let ticket = mint_with("/live/", |c| c.sub = format!("viewer-{n}"));
        let reply = get(&format!("{}{path}?ticket={ticket}", usher.url), &[]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(&reply.body, body, "viewer {n} gets the bytes of {path}");
    }
}

fn upstream_requests(origin: &Origin, path: &str) -> usize {
    origin.seen().iter().filter(|s| s.target == path).count()
}

#[tokio::test]
async fn item_every_object_kind_subtitles_keys_and_trick_play_images_cost_one_upstream_request() {
    let objects = objects();
    let origin = spawn_origin(objects.clone()).await;
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    for path in [
        "/live/subs/en-001.vtt",
        "/live/keys/k1.bin",
        "/live/keys/k2",
        "/live/trick/t-0001.jpg",
        "/live/trick/t-0002",
    ] {
        twenty_viewers(&usher, path, &objects[path].body).await;
        assert_eq!(
            upstream_requests(&origin, path),
            1,
            "{path}: one upstream request for {VIEWERS} viewers"
        );
    }
    // Kept objects other than segments count under kind="other": four of them, each one
    // miss and nineteen hits.
    let series = |outcome: &str| {
        format!("usher_cache_requests_total{{kind=\"other\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(metric(&usher, &series("miss")).await, 4.0);
    assert_eq!(metric(&usher, &series("hit")).await, 4.0 * 19.0);
}

#[tokio::test]
async fn item_every_object_kind_a_kind_not_listed_still_goes_past_the_shield() {
    let objects = objects();
    let origin = spawn_origin(objects.clone()).await;
    // Neither `.txt` nor `text/plain` is listed by default.
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    let path = "/live/notes.txt";
    twenty_viewers(&usher, path, &objects[path].body).await;
    assert_eq!(upstream_requests(&origin, path), VIEWERS);

    // With lists of its own, an operator takes `.txt` in and leaves images out.
    let origin = spawn_origin(objects.clone()).await;
    let extra = "[shield]\ncache_extensions = [\"TXT\"]\ncache_content_types = []\n";
    let usher = Usher::start(&test_config(&origin.url(), extra), &[]);
    twenty_viewers(&usher, path, &objects[path].body).await;
    assert_eq!(upstream_requests(&origin, path), 1, "listed: kept");
    let image = "/live/trick/t-0002";
    twenty_viewers(&usher, image, &objects[image].body).await;
    assert_eq!(
        upstream_requests(&origin, image),
        VIEWERS,
        "an extensionless image with no content types listed goes past the shield"
    );
}

#[test]
fn item_every_object_kind_check_config_rejects_bad_lists_by_dotted_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.toml");
    let extra = "[shield]\ncache_extensions = [\"jpg\", \".vtt\", \"a/b\"]\n\
                 cache_content_types = [\"image/*\", \"text\", \"text/vtt; charset=utf-8\"]\n";
    std::fs::write(&path, test_config("http://127.0.0.1:1", extra)).unwrap();
    let output = std::process::Command::new(usher_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("usher runs");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    for expected in [
        "shield.cache_extensions[1] = \".vtt\"",
        "shield.cache_extensions[2] = \"a/b\"",
        "shield.cache_content_types[1] = \"text\"",
        "shield.cache_content_types[2] = \"text/vtt; charset=utf-8\"",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("cache_extensions[0]"), "{stderr}");
    assert!(!stderr.contains("cache_content_types[0]"), "{stderr}");
}
