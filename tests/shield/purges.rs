//! The purge endpoint: a purged prefix sends the next request upstream, also when a fetch
//! in flight at the purge brings its answer back afterwards, and a prefix is read as a
//! request's path is.

use std::time::Duration;

use crate::support::admin;
use crate::support::*;
use crate::{first_viewer_held, patient_config, Gate, Script, ScriptedOrigin};

#[tokio::test]
async fn purging_a_prefix_sends_the_next_request_upstream() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/vod/a/s1.ts", Script::segment(b"a"));
    origin.script("/vod/b/s1.ts", Script::segment(b"b"));
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    let ticket = mint("/vod/");
    for path in [
        "/vod/a/s1.ts",
        "/vod/b/s1.ts",
        "/vod/a/s1.ts",
        "/vod/b/s1.ts",
    ] {
        assert_eq!(
            get(&format!("{}{path}?ticket={ticket}", usher.url), &[])
                .await
                .status,
            200
        );
    }
    assert_eq!(
        (origin.hits("/vod/a/s1.ts"), origin.hits("/vod/b/s1.ts")),
        (1, 1)
    );

    let purge = serde_json::json!({ "prefix": "/vod/a/" });
    let wrong = admin::api_as(
        &usher,
        "not-the-admin-token",
        "POST",
        "/api/v1/cache/purge",
        Some(purge.clone()),
    )
    .await;
    assert_eq!(wrong.0, 401);
    let (status, answer) = admin::api(&usher, "POST", "/api/v1/cache/purge", Some(purge)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["purged"], 1);
    for path in ["/vod/a/s1.ts", "/vod/b/s1.ts"] {
        assert_eq!(
            get(&format!("{}{path}?ticket={ticket}", usher.url), &[])
                .await
                .status,
            200
        );
    }
    assert_eq!(
        origin.hits("/vod/a/s1.ts"),
        2,
        "the purged prefix went upstream again"
    );
    assert_eq!(
        origin.hits("/vod/b/s1.ts"),
        1,
        "the other prefix stayed cached"
    );
}

#[tokio::test]
async fn a_purge_also_drops_what_a_fetch_in_flight_brings_back() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let mut script = Script::segment(b"old bytes");
    script.gate = rx;
    script.hold_head = true;
    origin.script("/vod/a/s1.ts", script);
    let usher = Usher::start(&patient_config(&origin.url(), ""), &[]);
    let url = format!("{}/vod/a/s1.ts?ticket={}", usher.url, mint("/vod/"));
    let first = first_viewer_held(&usher, &url).await;
    // The miss is counted before its request reaches the origin: the old fetch must have
    // taken the old script before the script changes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while origin.hits("/vod/a/s1.ts") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old fetch reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let purge = serde_json::json!({ "prefix": "/vod/a/" });
    assert_eq!(
        admin::api(&usher, "POST", "/api/v1/cache/purge", Some(purge))
            .await
            .0,
        200
    );
    // Asked after the purge answered, while the old fetch is still held: not joined to
    // it, but fetched anew.
    origin.script("/vod/a/s1.ts", Script::segment(b"new bytes"));
    let after = get(&url, &[]).await;
    assert_eq!(after.text(), "new bytes", "a request after the purge");
    assert_eq!(after.headers["x-usher-cache"], "miss");
    gate.open();
    assert_eq!(first.await.unwrap().text(), "old bytes");
    let next = get(&url, &[]).await;
    assert_eq!(
        next.text(),
        "new bytes",
        "what the purge overtook was not kept"
    );
    assert_eq!(origin.hits("/vod/a/s1.ts"), 2);
}

/// A prefix written as a request may write its path (hex in lower case, an unreserved
/// character escaped, a doubled slash: as a player sent it, copied from a log) purges what
/// usher keeps under that path, which it keeps in its normalised form.
#[tokio::test]
async fn a_prefix_is_purged_however_its_path_is_written() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/vod/caf%C3%A9/s~1.ts", Script::segment(b"a"));
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    let url = format!(
        "{}/vod/caf%c3%a9/s%7E1.ts?ticket={}",
        usher.url,
        mint("/vod/")
    );
    for prefix in ["/vod/caf%c3%a9/", "/vod/café/s%7e1"] {
        assert_eq!(get(&url, &[]).await.status, 200);
        let hit = get(&url, &[]).await;
        assert_eq!(hit.headers["x-usher-cache"], "hit", "{prefix}");
        let purge = serde_json::json!({ "prefix": prefix });
        let (status, answer) = admin::api(&usher, "POST", "/api/v1/cache/purge", Some(purge)).await;
        assert_eq!((status, &answer["purged"]), (200, &1.into()), "{prefix}");
        let after = get(&url, &[]).await;
        assert_eq!(after.headers["x-usher-cache"], "miss", "{prefix}");
    }
    assert_eq!(origin.hits("/vod/caf%C3%A9/s~1.ts"), 3);
    // One that resolves a segment would purge under another prefix (`/vod/../` is `/`):
    // refused, and nothing purged.
    assert_eq!(get(&url, &[]).await.headers["x-usher-cache"], "hit");
    for prefix in [
        "/vod/caf%C3%A9/../",
        "/vod//caf%C3%A9/",
        "/vod/%2E/",
        "/vod/.",
    ] {
        let purge = serde_json::json!({ "prefix": prefix });
        let (status, answer) = admin::api(&usher, "POST", "/api/v1/cache/purge", Some(purge)).await;
        assert_eq!(
            (status, &answer["field"]),
            (400, &"prefix".into()),
            "{prefix}: {answer}"
        );
    }
    assert_eq!(get(&url, &[]).await.headers["x-usher-cache"], "hit");
}
