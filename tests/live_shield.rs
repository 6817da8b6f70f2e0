//! The shield in front of a real live transcoder (ffmpeg writing a one-second sliding
//! window, served by a real HTTP server that counts requests): a hundred viewers cost the
//! transcoder one fetch per segment; when the transcoder's server dies, what was cached
//! keeps playing; a second server takes over when the first goes away.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::live::{FileServer, LiveOrigin, Mount};
use support::*;

/// How long one viewer may take to see its new segments.
const DEADLINE: Duration = Duration::from_secs(60);

/// What one emulated player did.
#[derive(Debug, Default)]
struct Watched {
    /// Segment paths fetched (each once), in order.
    segments: Vec<String>,
    /// Media playlist requests.
    reloads: usize,
}

/// A player: loads the master with its own ticket, picks the variant, then reloads the
/// media playlist every half target duration (as players do when it has not changed) and
/// fetches each segment it has not fetched yet, until `new` segments appeared after the
/// first playlist. Every answer must be a 200 with a body.
async fn watch(usher: &str, viewer: &str, new: usize) -> Watched {
    let ticket = mint_with("/live/", |c| c.sub = viewer.to_owned());
    let master_url = format!("{usher}/live/master.m3u8?ticket={ticket}");
    let master = get(&master_url, &[]).await;
    assert_eq!(master.status, 200, "{viewer}: master");
    let variant = uris(&master.text()).into_iter().next().expect("a variant");
    let media_url = resolve(&master_url, &variant);
    let mut watched = Watched::default();
    let mut seen = HashSet::new();
    let mut first = None;
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    tokio::time::timeout(DEADLINE, async {
        loop {
            ticks.tick().await;
            let playlist = get(&media_url, &[]).await;
            watched.reloads += 1;
            assert_eq!(playlist.status, 200, "{viewer}: media playlist");
            for uri in uris(&playlist.text()) {
                let url = resolve(&media_url, &uri);
                let path = url.split('?').next().unwrap().to_owned();
                if !seen.insert(path.clone()) {
                    continue;
                }
                let segment = get(&url, &[]).await;
                assert_eq!(segment.status, 200, "{viewer}: {path}");
                assert!(!segment.body.is_empty());
                watched.segments.push(path);
            }
            let fetched = watched.segments.len();
            let at_start = *first.get_or_insert(fetched);
            if fetched >= at_start + new {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{viewer} saw {new} new segments within {DEADLINE:?}"));
    watched
}

fn path_of(url_path: &str) -> &str {
    let rest = url_path.split_once("://").map_or(url_path, |(_, r)| r);
    &rest[rest.find('/').unwrap_or(rest.len())..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_viewers_of_a_live_transcoder_cost_one_fetch_per_segment() {
    const VIEWERS: usize = 100;
    let origin = LiveOrigin::start(&["/live/"], Vec::new()).await;
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    let players: Vec<_> = (0..VIEWERS)
        .map(|n| {
            let url = usher.url.clone();
            tokio::spawn(async move { watch(&url, &format!("viewer-{n}"), 4).await })
        })
        .collect();
    let mut fetched_by_viewers: HashMap<String, usize> = HashMap::new();
    let mut reloads = 0;
    for player in players {
        let watched = player.await.unwrap();
        reloads += watched.reloads;
        for segment in watched.segments {
            *fetched_by_viewers
                .entry(path_of(&segment).to_owned())
                .or_default() += 1;
        }
    }
    let viewer_segment_requests: usize = fetched_by_viewers.values().sum();
    for path in fetched_by_viewers.keys() {
        assert_eq!(
            origin.server.requests(path),
            1,
            "{path}: one upstream request however many viewers fetched it"
        );
    }
    let upstream_playlists = origin.server.requests("/live/index.m3u8");
    let upstream_masters = origin.server.requests("/live/master.m3u8");
    assert_eq!(upstream_masters, 1, "the master is fetched once");
    assert!(
        upstream_playlists * 10 <= reloads,
        "{upstream_playlists} upstream playlist requests for {reloads} reloads"
    );
    // The figure the README quotes (visible with --nocapture).
    eprintln!(
        "{VIEWERS} viewers: {viewer_segment_requests} segment requests for {} segments -> {} upstream; \
         {reloads} media playlist reloads -> {upstream_playlists} upstream; {VIEWERS} masters -> {upstream_masters} upstream",
        fetched_by_viewers.len(),
        origin.server.requests_under("/live/seg_"),
    );
}

#[tokio::test]
async fn when_the_transcoders_server_dies_what_was_cached_keeps_playing() {
    let mut origin = LiveOrigin::start(&["/live/"], Vec::new()).await;
    // Live playlists fresh for 1 ms: every reload after the server dies needs the stale
    // window.
    let extra = "[shield]\nlive_playlist_ttl = \"1ms\"\nstale_if_error = \"10m\"\n";
    let usher = Usher::start(&test_config(&origin.url(), extra), &[]);
    let ticket = mint("/live/");
    let media_url = format!("{}/live/index.m3u8?ticket={ticket}", usher.url);
    let playlist = get(&media_url, &[]).await;
    assert_eq!(playlist.status, 200);
    let segments = uris(&playlist.text());
    assert!(segments.len() >= 3);
    for uri in &segments {
        assert_eq!(get(&resolve(&media_url, uri), &[]).await.status, 200);
    }

    origin.server.stop();
    let again = get(&media_url, &[]).await;
    assert_eq!(again.status, 200, "the playlist comes from the stale copy");
    assert_eq!(again.headers["x-usher-cache"], "stale");
    for uri in uris(&again.text()) {
        let segment = get(&resolve(&media_url, &uri), &[]).await;
        assert_eq!(segment.status, 200, "cached segments keep playing");
        assert_eq!(segment.headers["x-usher-cache"], "hit");
    }
}

#[tokio::test]
async fn a_second_server_takes_over_when_the_first_goes_away() {
    let mut origin = LiveOrigin::start(&["/live/"], Vec::new()).await;
    // The same transcoder's output from a second server: the secondary.
    let secondary = FileServer::start(vec![Mount::dir("/live/", origin.dir())]);
    let config = test_config(&origin.url(), "").replace(
        "timeout = \"2s\"\n",
        &format!("timeout = \"2s\"\nfallbacks = [\"{}\"]\n", secondary.url()),
    );
    let usher = Usher::start(&config, &[]);
    let before = watch(&usher.url, "viewer-a", 1).await;
    assert!(before
        .segments
        .iter()
        .all(|s| origin.server.requests(path_of(s)) == 1 && secondary.requests(path_of(s)) == 0));

    origin.server.stop();
    let after = watch(&usher.url, "viewer-b", 3).await;
    let new: Vec<&String> = after
        .segments
        .iter()
        .filter(|s| !before.segments.contains(s))
        .collect();
    assert!(new.len() >= 3);
    for segment in new {
        assert_eq!(
            secondary.requests(path_of(segment)),
            1,
            "{segment} came from the secondary"
        );
    }
}
