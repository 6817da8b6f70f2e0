use super::entry::Head;
use super::*;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use std::time::Duration;

fn entry(len: usize) -> Entry {
    Entry {
        head: Arc::new(Head::new(StatusCode::OK, HeaderMap::new())),
        body: Bytes::from(vec![0u8; len]),
        len: len as u64,
        stored: Instant::now(),
        lifetime: policy::Lifetime {
            fresh: Duration::from_secs(60),
            stale: Duration::ZERO,
            arrived_age: Duration::ZERO,
        },
    }
}

#[test]
fn the_size_counts_bytes_and_a_purge_drops_a_prefix() {
    let metrics = Metrics::new();
    let mut settings = policy::tests::settings();
    settings.max_object_bytes = 1 << 16;
    let shield = Shield::new(&settings, &metrics);
    shield.store(Key::new(&Arc::from(""), "/a/1.ts", None), entry(1000), 0);
    shield.store(Key::new(&Arc::from(""), "/a/2.ts", None), entry(1000), 0);
    shield.store(Key::new(&Arc::from(""), "/b/1.ts", None), entry(1000), 0);
    let size = shield.size();
    assert!(size >= 3000, "{size}");
    assert_eq!(metrics.cache_size.get() as u64, size);
    assert_eq!(shield.purge("/a/"), 2);
    let size = shield.size();
    assert!((1000..2000).contains(&size), "{size}");
    assert_eq!(metrics.cache_size.get() as u64, size);
}

/// Many prefixes purged at once (a catch-up of missed purges): every entry under any of
/// them goes, the others stay, in one pass over the cache and one purge of the fetches in
/// flight (one that began before it is not kept).
#[test]
fn a_purge_of_many_prefixes_drops_each_in_one_pass() {
    let metrics = Metrics::new();
    let shield = Shield::new(&policy::tests::settings(), &metrics);
    let paths = [
        "/a/1.ts",
        "/a/x/2.ts",
        "/b/1.ts",
        "/c/1.ts",
        "/d/1.ts",
        "/ab/1.ts",
    ];
    for path in paths {
        shield.store(Key::new(&Arc::from(""), path, None), entry(100), 0);
    }
    let purged = shield.purge_all(&["/c/", "/a/", "/a/x/", "/b/"]);
    assert_eq!(purged, 4);
    let left: Vec<&str> = paths
        .into_iter()
        .filter(|p| {
            shield
                .inner
                .cache
                .contains_key(&Key::new(&Arc::from(""), p, None))
        })
        .collect();
    assert_eq!(left, ["/d/1.ts", "/ab/1.ts"]);
    assert_eq!(
        metrics.cache_purge_scans.get(),
        1,
        "one pass over the cache"
    );
    shield.store(Key::new(&Arc::from(""), "/b/2.ts", None), entry(100), 0);
    shield.store(Key::new(&Arc::from(""), "/e/1.ts", None), entry(100), 1);
    assert_eq!(
        (shield.purge("/"), metrics.cache_purge_scans.get()),
        (3, 2),
        "a fetch begun before the purge is not kept, one begun after is"
    );
    assert_eq!(shield.purge_all(&[] as &[&str]), 0);
    assert_eq!(metrics.cache_purge_scans.get(), 2, "no pass for nothing");
}

#[test]
fn a_long_query_weighs_on_the_budget_however_small_the_object() {
    let metrics = Metrics::new();
    let shield = Shield::new(&policy::tests::settings(), &metrics);
    let query = format!("pad={}", "q".repeat(16_000));
    for n in 0..10 {
        let key = Key::new(&Arc::from(""), &format!("/k/{n}.key"), Some(&query));
        shield.store(key, entry(16), 0);
    }
    assert!(shield.size() >= 10 * 2 * 16_000);
}

/// Whether `kept` lies inside the allocation `buffer` points into.
fn inside(buffer: &Bytes, kept: &[u8]) -> bool {
    buffer.as_ptr_range().contains(&kept.as_ptr())
}

#[test]
fn what_is_kept_holds_none_of_the_upstream_read_buffer() {
    // What hyper hands over: slices of one 64 KiB read buffer.
    let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
    let body = buffer.slice(100..1124);
    let kept = entry::join(std::slice::from_ref(&body));
    assert_eq!(kept, body);
    assert!(
        !inside(&buffer, &kept),
        "a kept 1 KiB body pins the 64 KiB buffer"
    );
    let joined = entry::join(&[buffer.slice(0..10), buffer.slice(10..20)]);
    assert_eq!(joined, buffer.slice(0..20));
    assert!(!inside(&buffer, &joined));

    let mut headers = HeaderMap::new();
    let etag = HeaderValue::from_maybe_shared(buffer.slice(0..8)).unwrap();
    headers.insert(http::header::ETAG, etag);
    let mut secret = HeaderValue::from_maybe_shared(buffer.slice(8..16)).unwrap();
    secret.set_sensitive(true);
    headers.append("x-one", HeaderValue::from_static("1"));
    headers.append("x-one", secret);
    let head = Head::owned(StatusCode::OK, &headers);
    assert_eq!(head.headers, headers, "the same headers, in the same order");
    for value in head.headers.values() {
        assert!(
            !inside(&buffer, value.as_bytes()),
            "{value:?} pins the buffer"
        );
    }
    let copied = head.headers.get_all("x-one").iter().nth(1).unwrap();
    assert!(
        copied.is_sensitive(),
        "a sensitive value stays sensitive (HPACK never indexes it)"
    );
}

/// A copy's private headers are made once: every answer under a cookie's or a bearer's
/// credential after the first clones them as it clones the stored ones, and an answer
/// under a credential in the URL gets the stored ones.
#[test]
fn a_copys_private_headers_are_made_once_and_shared_by_its_answers() {
    use http::header::{CACHE_CONTROL, ETAG};
    let mut headers = HeaderMap::new();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=600"),
    );
    headers.insert("cdn-cache-control", HeaderValue::from_static("max-age=600"));
    headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
    let head = Head::owned(StatusCode::OK, &headers);
    let answer =
        |private| head.response(entry::bytes_body(&Bytes::new(), true), "hit", None, private);
    let (first, second, url) = (answer(true), answer(true), answer(false));
    assert_eq!(first.headers()[CACHE_CONTROL], "private, max-age=600");
    assert!(!first.headers().contains_key("cdn-cache-control"));
    assert_eq!(first.headers()[ETAG], "\"v1\"");
    let at = |r: &Response<crate::proxy::Body>, name| r.headers()[name].as_bytes().as_ptr();
    assert_eq!(at(&first, CACHE_CONTROL), at(&second, CACHE_CONTROL));
    assert_eq!(
        at(&first, ETAG),
        at(&url, ETAG),
        "values shared with the stored ones"
    );
    assert_eq!(url.headers()[CACHE_CONTROL], "public, max-age=600");
    assert_eq!(url.headers()["cdn-cache-control"], "max-age=600");
}

/// The objects passed by are remembered by a hash of their keys, which hold the request's
/// path and query: however long the URLs (a client may send a 16 KiB query to each of
/// thousands of objects too large to keep), each takes the same room, at most
/// [`BYPASS_KEYS`] of them, and the newest are remembered over the oldest.
#[test]
fn objects_passed_by_are_remembered_in_bounded_room_newest_first() {
    let shield = Shield::new(&policy::tests::settings(), &Metrics::new());
    let junk = "x".repeat(16 << 10);
    let key = |n: u64| {
        let query = format!("n={n}&junk={junk}");
        Key::new(&Arc::from(""), "/vod/big.mp4", Some(query.as_str()))
    };
    let total = BYPASS_KEYS + 1_000;
    for n in 0..total {
        shield.inner.pass_by(&key(n));
    }
    shield.inner.bypass.run_pending_tasks();
    assert!(shield.inner.bypass.entry_count() <= BYPASS_KEYS);
    assert!(
        shield.inner.passes(&key(total - 1)),
        "the newest is remembered"
    );
    assert!(!shield.inner.passes(&key(0)), "the oldest is forgotten");
}
