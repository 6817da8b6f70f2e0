//! The budget of bytes in flight: misses beyond it go past the shield and are kept later,
//! a chunked fetch that outgrows it is streamed through, a broken fetch gives its bytes
//! back, a spent budget keeps the stale copy, and an h2 body kept whole breaks no reader
//! when the budget is spent.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::support::*;
use crate::{
    first_viewer_held, patient_config, pattern, wait_for_metric, Gate, Script, ScriptedOrigin, LIVE,
};

/// Polls the admin `/metrics` until shield fetches in flight hold exactly `bytes` of
/// body (bounded at 10 s); 0: every fetch is over and its readers have read to the end.
async fn wait_for_bytes_in_flight(usher: &Usher, bytes: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held = metric(usher, "usher_cache_in_flight_bytes").await;
        if held == bytes {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{held} bytes held by fetches in flight, wanted {bytes}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Five viewers each miss a different 100 kB segment at once (a cold start) while the
/// origin holds the second half of every body, with room in flight for two: two fetches
/// are held and kept, the other three go past the shield, and all five viewers get their
/// whole segment. Once they are done the budget is whole again: every segment is kept
/// at its next miss.
#[tokio::test]
async fn misses_beyond_the_in_flight_budget_go_past_the_shield_and_are_kept_later() {
    let origin = ScriptedOrigin::start().await;
    let (gate, rx) = Gate::closed();
    let bodies: Vec<Vec<u8>> = (0..5).map(|n| pattern(100_000, n * 37)).collect();
    for (n, body) in bodies.iter().enumerate() {
        let mut script = Script::segment(&body[..50_000]).header("content-length", "100000");
        script.rest = Bytes::copy_from_slice(&body[50_000..]);
        script.gate = rx.clone();
        origin.script(&format!("/vod/a/s{n}.ts"), script);
    }
    let usher = Usher::start(
        &patient_config(
            &origin.url(),
            "[shield]\nmax_object_bytes = 100000\nmax_in_flight_bytes = 200000\n",
        ),
        &[],
    );
    let ticket = mint("/vod/a/");
    let url = |n: usize| format!("{}/vod/a/s{n}.ts?ticket={ticket}", usher.url);
    let viewers: Vec<_> = (0..5)
        .map(|n| {
            let url = url(n);
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    let over_budget = "usher_cache_over_budget_total{kind=\"segment\"}";
    // The signal that the budget is spent: three misses found no room.
    wait_for_metric(&usher, over_budget, 3.0).await;
    wait_for_metric(&usher, "usher_cache_in_flight_bytes", 200_000.0).await;
    assert_eq!(
        metric(&usher, "usher_cache_in_flight_bytes").await,
        200_000.0,
        "two announced lengths held, no more"
    );
    gate.open();
    let mut kept = 0;
    for (n, viewer) in viewers.into_iter().enumerate() {
        let reply = viewer.await.unwrap();
        assert_eq!(reply.status, 200, "s{n}");
        assert!(reply.body == bodies[n], "s{n}: every byte, in order");
        // No header: past the shield.
        if let Some(status) = reply.headers.get("x-usher-cache") {
            assert_eq!(status, "miss", "s{n}");
            kept += 1;
        }
    }
    assert_eq!(kept, 2, "two fetches fit the budget");
    assert_eq!(metric(&usher, over_budget).await, 3.0);
    assert_eq!(
        metric(
            &usher,
            "usher_cache_requests_total{kind=\"segment\",outcome=\"pass\"}"
        )
        .await,
        3.0
    );

    // Done: the bytes are given back, and each segment is kept when next missed.
    wait_for_bytes_in_flight(&usher, 0.0).await;
    let mut hits = 0;
    for (n, body) in bodies.iter().enumerate() {
        let first = get(&url(n), &[]).await;
        assert!(first.body == body, "s{n}");
        let status = first.headers["x-usher-cache"].to_str().unwrap().to_owned();
        hits += usize::from(status == "hit");
        let again = get(&url(n), &[]).await;
        assert_eq!(again.headers["x-usher-cache"], "hit", "s{n} kept");
        assert!(again.body == body, "s{n}");
    }
    assert_eq!(hits, 2, "the two kept during the cold start");
    assert_eq!(
        metric(&usher, over_budget).await,
        3.0,
        "no fetch refused since"
    );
}

/// A chunked segment (no length announced) that outgrows the room left in flight while
/// another fetch holds its share is streamed through to its viewer whole and not kept;
/// its bytes go back as soon as its viewer has read them, and once both are done it is
/// kept at its next miss. (That it is held no deeper once refused is the unit test in
/// `shield/fill.rs`.)
#[tokio::test]
async fn a_chunked_fetch_that_outgrows_the_budget_is_streamed_through_not_kept() {
    let origin = ScriptedOrigin::start().await;
    let (held_gate, held_rx) = Gate::closed();
    let held_body = pattern(100_000, 1);
    let mut held = Script::segment(&held_body[..50_000]).header("content-length", "100000");
    held.rest = Bytes::copy_from_slice(&held_body[50_000..]);
    held.gate = held_rx;
    origin.script("/vod/a/held.ts", held);
    let (grow_gate, grow_rx) = Gate::closed();
    let grow_body = pattern(120_000, 2);
    let mut grow = Script::segment(&grow_body[..60_000]);
    grow.rest = Bytes::copy_from_slice(&grow_body[60_000..]);
    grow.gate = grow_rx;
    origin.script("/vod/a/grow.ts", grow);
    let usher = Usher::start(
        &patient_config(
            &origin.url(),
            "[shield]\nmax_object_bytes = 200000\nmax_in_flight_bytes = 200000\n",
        ),
        &[],
    );
    let ticket = mint("/vod/a/");
    let url = |name: &str| format!("{}/vod/a/{name}.ts?ticket={ticket}", usher.url);
    let in_flight = "usher_cache_in_flight_bytes";

    let held_viewer = first_viewer_held(&usher, &url("held")).await;
    wait_for_metric(&usher, in_flight, 100_000.0).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let grown = client.get(url("grow").parse().unwrap()).await.unwrap();
    assert_eq!(grown.status(), 200);
    assert_eq!(grown.headers()["x-usher-cache"], "miss");
    // The viewer keeps up: it has the first 60 kB (held: 160 kB of 200 kB) before the
    // origin sends the other 60 kB, which do not fit.
    let mut grown = grown.into_body();
    let mut got = Vec::new();
    while got.len() < 60_000 {
        let frame = grown.frame().await.unwrap().unwrap();
        got.extend_from_slice(frame.data_ref().unwrap());
    }
    assert_eq!(metric(&usher, in_flight).await, 160_000.0);
    grow_gate.open();
    got.extend_from_slice(&grown.collect().await.unwrap().to_bytes());
    assert!(got == grow_body, "every byte, in order");
    assert_eq!(
        metric(&usher, "usher_cache_over_budget_total{kind=\"segment\"}").await,
        1.0
    );
    wait_for_bytes_in_flight(&usher, 100_000.0).await;

    held_gate.open();
    let held = held_viewer.await.unwrap();
    assert!(held.body == held_body);
    wait_for_bytes_in_flight(&usher, 0.0).await;
    assert_eq!(get(&url("held"), &[]).await.headers["x-usher-cache"], "hit");
    let next = get(&url("grow"), &[]).await;
    assert_eq!(
        next.headers["x-usher-cache"], "miss",
        "streamed through, not kept"
    );
    assert!(next.body == grow_body);
    let again = get(&url("grow"), &[]).await;
    assert_eq!(
        again.headers["x-usher-cache"], "hit",
        "kept once there was room"
    );
    assert_eq!(origin.hits("/vod/a/grow.ts"), 2);
}

/// A fetch whose body breaks off gives its bytes in flight back: with room for one
/// object, the next miss is kept.
#[tokio::test]
async fn a_broken_fetch_gives_its_bytes_in_flight_back() {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n";
    let whole = pattern(100_000, 3);
    let (origin, served) = raw_origin(vec![
        [head.as_bytes(), &whole[..50_000]].concat(),
        [head.as_bytes(), &whole].concat(),
    ])
    .await;
    let usher = Usher::start(
        &test_config(
            &origin,
            "[shield]\nmax_object_bytes = 100000\nmax_in_flight_bytes = 100000\n",
        ),
        &[],
    );
    let url = |name: &str| format!("{}/vod/{name}.ts?ticket={}", usher.url, mint("/vod/"));
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let broken = client.get(url("broken").parse().unwrap()).await.unwrap();
    assert_eq!(broken.headers()["x-usher-cache"], "miss");
    assert!(
        broken.into_body().collect().await.is_err(),
        "broken off, not short"
    );
    wait_for_bytes_in_flight(&usher, 0.0).await;
    let next = get(&url("next"), &[]).await;
    assert_eq!(next.headers["x-usher-cache"], "miss", "through the shield");
    assert!(next.body == whole);
    let again = get(&url("next"), &[]).await;
    assert_eq!(again.headers["x-usher-cache"], "hit", "and kept");
    assert_eq!(served.lock().unwrap().len(), 2);
}

/// A miss for an object with a stale copy, while fetches in flight hold all the room they
/// may, still goes through the shield: when the origin fails its viewer gets the stale
/// copy (as `shield.stale_if_error` promises), not the origin's error; when the origin
/// answers and the budget has no room for the body, its viewer gets the answer fetched
/// past the shield.
#[tokio::test]
async fn a_spent_budget_does_not_take_the_stale_copy_away_when_the_origin_fails() {
    let origin = ScriptedOrigin::start().await;
    origin.script("/live/index.m3u8", Script::playlist(LIVE));
    let (gate, rx) = Gate::closed();
    let body = pattern(100_000, 5);
    let mut held = Script::segment(&body[..50_000]).header("content-length", "100000");
    held.rest = Bytes::copy_from_slice(&body[50_000..]);
    held.gate = rx;
    origin.script("/live/held.ts", held);
    // Live playlists are fresh for 1 ms: the next request is past the copy's lifetime.
    let extra = "[shield]\nlive_playlist_ttl = \"1ms\"\nstale_if_error = \"10m\"\n\
                 max_object_bytes = 100000\nmax_in_flight_bytes = 100000\n";
    let usher = Usher::start(&patient_config(&origin.url(), extra), &[]);
    let ticket = mint("/live/");
    let playlist_url = format!("{}/live/index.m3u8?ticket={ticket}", usher.url);
    assert_eq!(get(&playlist_url, &[]).await.status, 200);
    let held_viewer = first_viewer_held(
        &usher,
        &format!("{}/live/held.ts?ticket={ticket}", usher.url),
    )
    .await;
    // The budget is spent: the segment's announced length holds all of it.
    wait_for_bytes_in_flight(&usher, 100_000.0).await;

    origin.script(
        "/live/index.m3u8",
        Script::open(503, b"overloaded", "text/plain"),
    );
    let failed = get(&playlist_url, &[]).await;
    assert_eq!(failed.status, 200, "the stale copy, not the origin's 503");
    assert_eq!(failed.headers["x-usher-cache"], "stale");
    assert!(failed.text().contains("s2.ts"));

    let newer = LIVE.replace("s2.ts", "s2.ts\n#EXTINF:2,\ns3.ts");
    origin.script("/live/index.m3u8", Script::playlist(&newer));
    let answered = get(&playlist_url, &[]).await;
    assert_eq!(answered.status, 200);
    assert!(
        answered.text().contains("s3.ts"),
        "the origin's answer, past the shield: {}",
        answered.text()
    );

    gate.open();
    assert!(held_viewer.await.unwrap().body == body);
    wait_for_bytes_in_flight(&usher, 0.0).await;
}

/// A body of frames sent on a channel; the one sent with `true` is the last, and its DATA
/// frame carries END_STREAM (what an h2 origin's last frame of a body of unknown length
/// does: the fetch sees the body end with that frame).
struct Frames {
    rx: mpsc::Receiver<(Bytes, bool)>,
    ended: bool,
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|frame| {
            frame.map(|(data, last)| {
                self.ended = last;
                Ok(Frame::data(data))
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// An HTTPS origin speaking h2 only, its certificate from a throwaway CA: its URL and the
/// directory holding `ca.pem`. `answer` gives the answer to each request's path.
async fn h2_origin<F>(answer: F) -> (String, tempfile::TempDir)
where
    F: Fn(&str) -> Response<Frames> + Send + Sync + 'static,
{
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    )
    .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: Request<Incoming>| {
                    let response = answer(req.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, dir)
}

/// `frames` as an answer's body, those from the `split`th on once `gate` opens.
fn gated_frames(
    frames: Vec<(Bytes, bool)>,
    split: usize,
    mut gate: watch::Receiver<bool>,
) -> Frames {
    let (tx, rx) = mpsc::channel(frames.len());
    tokio::spawn(async move {
        for (n, frame) in frames.into_iter().enumerate() {
            if n == split {
                let _ = gate.wait_for(|open| *open).await;
            }
            let _ = tx.send(frame).await;
        }
    });
    Frames { rx, ended: false }
}

/// An h2 origin's body of unknown length ends with the DATA frame that carries its last
/// bytes, and the shield keeps it whole before handing those bytes to its readers. With
/// no room left in flight for them then, a reader behind (here held back by its own h2
/// window) still gets every byte: the copy is kept, so the body is not cut down to a
/// window, and the bytes go back once it is read.
#[tokio::test]
async fn the_last_bytes_of_a_body_kept_whole_break_no_reader_when_the_budget_is_spent() {
    let held_body = pattern(100_000, 1);
    let grow_body = pattern(56_000, 2);
    let (held_gate, held_rx) = Gate::closed();
    let (grow_gate, grow_rx) = Gate::closed();
    let (held_copy, grow_copy) = (held_body.clone(), grow_body.clone());
    let (origin, ca) = h2_origin(move |path| {
        let builder = Response::builder().header("content-type", "video/mp2t");
        if path == "/vod/a/held.ts" {
            let frames = vec![
                (Bytes::copy_from_slice(&held_copy[..50_000]), false),
                (Bytes::copy_from_slice(&held_copy[50_000..]), true),
            ];
            let body = gated_frames(frames, 1, held_rx.clone());
            return builder
                .header("content-length", "100000")
                .body(body)
                .unwrap();
        }
        // No length: 40 frames of 1000 bytes at once, then the last 16000 bytes.
        let frames = (0..40)
            .map(|n| {
                (
                    Bytes::copy_from_slice(&grow_copy[n * 1000..][..1000]),
                    false,
                )
            })
            .chain([(Bytes::copy_from_slice(&grow_copy[40_000..]), true)])
            .collect();
        builder
            .body(gated_frames(frames, 40, grow_rx.clone()))
            .unwrap()
    })
    .await;
    let config = patient_config(
        &origin,
        "[shield]\nmax_object_bytes = 100000\nmax_in_flight_bytes = 150000\n",
    )
    .replace(
        "[upstream]\n",
        &format!(
            "[upstream]\nca_file = \"{}\"\n",
            ca.path().join("ca.pem").display()
        ),
    );
    let usher = Usher::start(&config, &[]);
    let ticket = mint("/vod/a/");
    let url = |name: &str| format!("{}/vod/a/{name}.ts?ticket={ticket}", usher.url);

    let held_viewer = first_viewer_held(&usher, &url("held")).await;
    wait_for_bytes_in_flight(&usher, 100_000.0).await;
    // A viewer whose h2 window lets usher send it about 1 kB until it reads.
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(1024)
        .build_http::<http_body_util::Empty<Bytes>>();
    let grown = client.get(url("grow").parse().unwrap()).await.unwrap();
    assert_eq!(grown.status(), 200);
    assert_eq!(grown.headers()["x-usher-cache"], "miss");
    // The 40 first frames are held: 140 kB of 150 kB. The last 16 kB do not fit.
    wait_for_bytes_in_flight(&usher, 140_000.0).await;
    grow_gate.open();
    // The signal that the fetch kept its copy (the held segment is not whole yet), and
    // handed its last bytes over at once after.
    wait_for_metric(&usher, "usher_cache_size_bytes", 56_000.0).await;
    let read = grown.into_body().collect().await;
    let read = read
        .expect("a body kept whole is not broken off")
        .to_bytes();
    assert!(read == grow_body, "every byte, in order");
    let again = get(&url("grow"), &[]).await;
    assert_eq!(again.headers["x-usher-cache"], "hit");
    assert!(again.body == grow_body);

    held_gate.open();
    assert!(held_viewer.await.unwrap().body == held_body);
    wait_for_bytes_in_flight(&usher, 0.0).await;
}
