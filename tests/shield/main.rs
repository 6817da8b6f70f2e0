//! The origin shield through a real usher process: one upstream request however many
//! viewers ask at once, bytes to the first viewer as they arrive, errors shared and not
//! kept, stale copies when every upstream fails, failover to a second upstream, LL-HLS
//! blocking reloads coalesced, the purge endpoint, and a body short of its announced
//! length not kept.
//!
//! The tests are grouped by the behaviour they cover, one module each; the helpers more
//! than one module uses are here.

#[path = "../support/mod.rs"]
mod support;

mod answers;
mod budget;
mod capacity;
mod coalescing;
mod outages;
mod pass_by;
mod purges;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use support::*;

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the scripted origin answers for one path.
#[derive(Clone)]
pub(crate) struct Script {
    status: u16,
    headers: Vec<(&'static str, String)>,
    /// Sent at once.
    first: Bytes,
    /// Sent once `gate` opens (with `first`, the whole body).
    rest: Bytes,
    /// Closed: the answer (or its `rest`, when `hold_head` is false) waits.
    gate: watch::Receiver<bool>,
    /// Wait for the gate before the head rather than between `first` and `rest`.
    hold_head: bool,
}

impl Script {
    fn open(status: u16, body: &[u8], content_type: &str) -> Self {
        let (_, gate) = watch::channel(true);
        Self {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            first: Bytes::copy_from_slice(body),
            rest: Bytes::new(),
            gate,
            hold_head: false,
        }
    }

    fn segment(body: &[u8]) -> Self {
        Self::open(200, body, "video/mp2t")
    }

    fn playlist(text: &str) -> Self {
        Self::open(200, text.as_bytes(), "application/vnd.apple.mpegurl")
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// A gate a test opens when it is ready.
pub(crate) struct Gate(watch::Sender<bool>);

impl Gate {
    fn closed() -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), rx)
    }

    fn open(&self) {
        self.0.send_replace(true);
    }
}

/// A real HTTP origin answering by script, counting the requests for each target.
pub(crate) struct ScriptedOrigin {
    addr: SocketAddr,
    scripts: Arc<Mutex<HashMap<String, Script>>>,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ScriptedOrigin {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scripts: Arc<Mutex<HashMap<String, Script>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (s, h) = (scripts.clone(), hits.clone());
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let tcp = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok((tcp, _)) => tcp, Err(_) => return },
                    _ = &mut stopped => { connections.abort_all(); return; }
                };
                let (s, h) = (s.clone(), h.clone());
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (s, h) = (s.clone(), h.clone());
                        async move { Ok::<_, Infallible>(answer(&s, &h, &req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            scripts,
            hits,
            stop: Some(stop),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn script(&self, path: &str, script: Script) {
        self.scripts.lock().unwrap().insert(path.to_owned(), script);
    }

    /// Requests received for exactly `target` (path and query).
    fn hits(&self, target: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|t| *t == target)
            .count()
    }

    fn all_hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    /// Stops listening and drops every connection: the origin is gone.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) async fn answer(
    scripts: &Mutex<HashMap<String, Script>>,
    hits: &Mutex<Vec<String>>,
    req: &Request<Incoming>,
) -> Response<OriginBody> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // The script is taken before the request is counted: a test that saw the request
    // counted may change the script without changing this answer.
    let script = scripts.lock().unwrap().get(req.uri().path()).cloned();
    hits.lock().unwrap().push(target);
    let Some(mut script) = script else {
        return Response::builder()
            .status(404)
            .body(http_body_util::Full::new(Bytes::from_static(b"no")).boxed())
            .unwrap();
    };
    if script.hold_head {
        let _ = script.gate.wait_for(|open| *open).await;
    }
    let mut builder = Response::builder().status(script.status);
    for (name, value) in &script.headers {
        builder = builder.header(*name, value);
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let Script {
        first,
        rest,
        mut gate,
        ..
    } = script;
    tokio::spawn(async move {
        let _ = tx.send(Ok(Frame::data(first))).await;
        if !rest.is_empty() {
            let _ = gate.wait_for(|open| *open).await;
            let _ = tx.send(Ok(Frame::data(rest))).await;
        }
    });
    let stream = tokio_stream_from(rx);
    builder.body(StreamBody::new(stream).boxed()).unwrap()
}

fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

pub(crate) const LIVE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2,\ns1.ts\n#EXTINF:2,\ns2.ts\n";

/// A test config whose upstream may hold a response for as long as a test needs to line
/// up its viewers (the default test timeout is 2 s).
pub(crate) fn patient_config(origin: &str, extra: &str) -> String {
    test_config(origin, extra).replace("timeout = \"2s\"\n", "timeout = \"60s\"\n")
}

/// `n` viewers requesting at once, each with a ticket of their own for `scope`, at the
/// URL `url` makes of it.
pub(crate) fn viewers(
    n: usize,
    scope: &'static str,
    url: impl Fn(String) -> String,
) -> Vec<tokio::task::JoinHandle<Reply>> {
    (0..n)
        .map(|n| {
            let url = url(mint_with(scope, |c| c.sub = format!("viewer-{n}")));
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect()
}

/// Polls the admin `/metrics` until `series` reaches `at_least` (bounded at 10 s).
pub(crate) async fn wait_for_metric(usher: &Usher, series: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(usher, series).await;
        if value >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stayed at {value}, wanted {at_least}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A viewer's request for the segment at `url`, started and counted as the shield's miss
/// (its fetch is then in flight, held by the origin's script).
pub(crate) async fn first_viewer_held(usher: &Usher, url: &str) -> tokio::task::JoinHandle<Reply> {
    let first = tokio::spawn({
        let url = url.to_owned();
        async move { get(&url, &[]).await }
    });
    wait_for_metric(
        usher,
        "usher_cache_requests_total{kind=\"segment\",outcome=\"miss\"}",
        1.0,
    )
    .await;
    first
}

/// `len` bytes, a pattern of their own for each `seed`.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed))
        .collect()
}
