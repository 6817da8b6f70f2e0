//! `usher admin …` against a real usher: sell with the CLI, play the printed URL, switch the
//! account off and on, revoke, list and delete; refused fields, unknown things, a wrong or
//! missing token and an unreachable admin API all exit 1 with one line on stderr.

mod support;

use std::collections::HashMap;

use support::cli::{admin_command, run_cli, usher_admin, CliRun};
use support::*;

const MEDIA: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXTINF:2,\nseg2.ts\n#EXT-X-ENDLIST\n";

async fn show_origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert("/shows/ep1/index.m3u8".to_owned(), playlist(MEDIA));
    objects.insert("/shows/ep1/seg1.ts".to_owned(), segment(1000));
    objects.insert("/shows/ep1/seg2.ts".to_owned(), segment(1000));
    spawn_origin(objects).await
}

/// `usher admin` against `usher` with the right token.
async fn admin(usher: &Usher, args: &[&str]) -> CliRun {
    usher_admin(usher, args).await
}

#[tokio::test]
async fn sold_with_the_cli_the_printed_url_plays_until_revoked() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);

    let created = admin(
        &usher,
        &[
            "product",
            "create",
            "--name",
            "Episode 1",
            "--code",
            "ep1",
            "--period",
            "2",
            "--cost",
            "1.99",
            "--currency",
            "EUR",
            "--device-classes",
            "ott,iptv",
        ],
    )
    .await;
    assert_eq!(created.ok(), "ep1\n");
    let random = admin(&usher, &["product", "create", "--name", "Season"]).await;
    let random = random.ok().trim_end().to_owned();
    assert_eq!(random.len(), 8, "a generated code: {random:?}");

    let media = [
        "media",
        "add",
        "--code",
        "ep1-hd",
        "--prefix",
        "/shows/ep1/",
        "--playlist",
        "index.m3u8",
        "--title",
        "Episode 1",
        "--product",
        "ep1",
    ];
    assert_eq!(admin(&usher, &media).await.ok(), "ep1-hd\n");
    assert_eq!(
        admin(&usher, &media).await.ok(),
        "ep1-hd\n",
        "adding it again changes nothing"
    );
    let elsewhere = admin(
        &usher,
        &[
            "media",
            "add",
            "--code",
            "ep1-hd",
            "--prefix",
            "/shows/ep2/",
            "--product",
            "ep1",
        ],
    )
    .await;
    assert!(
        elsewhere
            .failed()
            .contains("ep1-hd already exists with prefix /shows/ep1/"),
        "{elsewhere:?}"
    );

    let sold = admin(
        &usher,
        &[
            "buyer",
            "add",
            "--product",
            "ep1",
            "--email",
            "alice@example.com",
            "--account",
            "alice",
            "--name",
            "Alice",
        ],
    )
    .await;
    sold.ok();
    let lines = sold.lines();
    assert_eq!(lines.len(), 2, "hash, then play URL: {sold:?}");
    let (hash, url) = (lines[0].to_owned(), lines[1].to_owned());
    assert!(
        url.starts_with(&format!("{}/shows/ep1/index.m3u8?ticket=", usher.url)),
        "{url}"
    );

    let reply = get(&url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let segment_url = reply
        .text()
        .lines()
        .find(|l| l.starts_with("seg1.ts"))
        .map(|l| resolve(&url, l))
        .expect("the playlist names seg1.ts");
    assert_eq!(get(&segment_url, &[]).await.status, 200);

    assert_eq!(
        admin(&usher, &["account", "disable", "alice"]).await.ok(),
        "alice\n"
    );
    assert_eq!(get(&url, &[]).await.reason(), "account_disabled");
    assert_eq!(
        admin(&usher, &["account", "enable", "alice"]).await.ok(),
        "alice\n"
    );
    assert_eq!(get(&url, &[]).await.status, 200);

    let listed = admin(
        &usher,
        &[
            "buyer",
            "list",
            "--product",
            "ep1",
            "--email",
            "alice@example.com",
        ],
    )
    .await;
    let items: Vec<serde_json::Value> = listed
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(items.len(), 1, "{listed:?}");
    assert_eq!(items[0]["hash"], hash.as_str());
    assert_eq!(items[0]["account"], "alice");
    let other = admin(
        &usher,
        &["buyer", "list", "--product", "ep1", "--account", "bob"],
    )
    .await;
    assert_eq!(other.ok(), "");

    assert_eq!(
        admin(&usher, &["buyer", "revoke", &hash]).await.ok(),
        format!("{hash}\n")
    );
    for refused in [get(&url, &[]).await, get(&segment_url, &[]).await] {
        assert_eq!(
            (refused.status.as_u16(), refused.reason().as_str()),
            (403, "revoked")
        );
    }

    assert_eq!(
        admin(&usher, &["buyer", "delete", &hash]).await.ok(),
        format!("{hash}\n")
    );
    assert_eq!(get(&url, &[]).await.reason(), "no_rights");
    let gone = admin(&usher, &["buyer", "list", "--product", "ep1"]).await;
    assert_eq!(gone.ok(), "");

    let products = admin(&usher, &["product", "list"]).await;
    let mut codes: Vec<String> = products
        .ok()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["code"].to_string())
        .collect();
    codes.sort();
    let mut expected = vec!["\"ep1\"".to_owned(), format!("\"{random}\"")];
    expected.sort();
    assert_eq!(codes, expected, "{products:?}");
    admin(
        &usher,
        &[
            "buyer",
            "add",
            "--product",
            "ep1",
            "--email",
            "bob@example.com",
        ],
    )
    .await
    .ok();
    let held = admin(&usher, &["product", "delete", "ep1"]).await;
    assert!(
        held.failed()
            .ends_with("product ep1 has 1 buyers: add --force to delete it anyway"),
        "a product a buyer holds stays, and the refusal names the CLI's flag: {held:?}"
    );
    assert_eq!(
        admin(&usher, &["product", "delete", "ep1", "--force"])
            .await
            .ok(),
        "ep1\n"
    );
    let left = admin(&usher, &["product", "list"]).await;
    assert!(
        left.ok().contains(&random) && !left.stdout.contains("\"ep1\""),
        "{left:?}"
    );
}

#[tokio::test]
async fn refusals_exit_1_with_one_line_naming_the_problem() {
    let origin = show_origin().await;
    let usher = Usher::start(&rights_config(&origin.url(), ""), &[]);
    let admin_url = usher.admin.clone().unwrap();

    let product_expiring = |expire: &'static str| {
        let usher = &usher;
        async move {
            let args = [
                "product",
                "create",
                "--name",
                "X",
                "--access-expire",
                expire,
            ];
            admin(usher, &args).await
        }
    };
    let bad_date = product_expiring("31/12/2026").await;
    let line = bad_date.failed();
    assert!(line.starts_with("usher: access_expire: "), "{line}");
    assert!(line.contains("YYYY-MM-DD"), "{line}");

    let unknown = admin(
        &usher,
        &["buyer", "add", "--product", "nope", "--email", "a@b.c"],
    )
    .await;
    assert_eq!(unknown.failed(), "usher: product nope not found");
    // Listing the buyers of a product that does not exist is no empty list either.
    let listed = admin(&usher, &["buyer", "list", "--product", "nope"]).await;
    assert_eq!(listed.failed(), "usher: product nope not found");

    // Unix seconds past 9999-12-31 are refused as a date text past it is.
    let far = product_expiring("253402300800").await;
    let line = far.failed();
    assert!(line.starts_with("usher: access_expire: "), "{line}");

    let wrong = run_cli(
        admin_command(&admin_url, Some("not-the-admin-token-at-all")),
        &["product", "list"],
    )
    .await;
    let line = wrong.failed();
    assert!(line.contains("401") && line.contains("token"), "{line}");

    let missing = run_cli(admin_command(&admin_url, None), &["product", "list"]).await;
    assert!(
        missing.failed().contains("token is required"),
        "{missing:?}"
    );

    let mut from_env = admin_command(&admin_url, None);
    from_env.env("USHER_ADMIN_TOKEN", ADMIN_TOKEN);
    assert_eq!(run_cli(from_env, &["product", "list"]).await.ok(), "");

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let unreachable = run_cli(
        admin_command(&format!("http://{closed}"), Some(ADMIN_TOKEN)),
        &["product", "list"],
    )
    .await;
    assert!(
        unreachable.failed().contains("cannot reach the admin API"),
        "{unreachable:?}"
    );

    let usage = run_cli(
        admin_command(&admin_url, Some(ADMIN_TOKEN)),
        &["buyer", "add", "--product", "p"],
    )
    .await;
    assert_eq!(
        usage.code,
        Some(2),
        "no buyer named is a usage error: {usage:?}"
    );
}
