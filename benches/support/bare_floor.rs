//! The floor `benches/vs_nginx.sh` measures usher against: a bare hyper server that does the
//! least a token gateway must do for a kept object, and nothing else.
//!
//!     bare_floor ADDR THREADS DIR [WORK_NS [raw]]
//!
//! It loads every file of DIR into memory, then answers `GET /<any prefix>/<file name>?token=T`
//! from that memory when T is the base64url of the first 16 bytes of
//! HMAC-SHA256(`bare-floor-secret`, path), checked in constant time; 403 otherwise, 404 for a
//! name it does not hold. Like usher it serves on THREADS threads, each a single-threaded
//! tokio runtime with a `SO_REUSEPORT` socket of its own on ADDR, with hyper's HTTP/1.1
//! server (a 30 s header read timeout, as usher has). No rights, no sessions, no metrics,
//! no logs, no cache policy, no request id: the difference between this and usher is what
//! usher's own work per request costs. With WORK_NS, each request first spins that many
//! nanoseconds on the CPU: a stand-in for a handler of that cost, to see what a nanosecond
//! of handling costs the whole server once the kernel and the client on the same cores
//! have had their share. With `raw`, hyper is left out too: each connection is a loop of
//! its own that parses request heads with `httparse` and writes each answer (status line,
//! `content-type`, `content-length`, a fixed `date`, body) with one write: what a hit could
//! cost below hyper's HTTP/1 server (no timeouts, no limits, no error answers beyond closing
//! the connection). Bench code only; it runs until killed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

/// The key the bench script signs its links with.
const SECRET: &[u8] = b"bare-floor-secret";

/// File name to body.
type Objects = Arc<HashMap<String, Bytes>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, threads, dir, work, raw) = match args.as_slice() {
        [addr, threads, dir] => (addr, threads, dir, "0", false),
        [addr, threads, dir, work] => (addr, threads, dir, work.as_str(), false),
        [addr, threads, dir, work, raw] if raw == "raw" => {
            (addr, threads, dir, work.as_str(), true)
        }
        _ => {
            eprintln!("usage: bare_floor ADDR THREADS DIR [WORK_NS [raw]]");
            std::process::exit(2);
        }
    };
    let work = Duration::from_nanos(work.parse().expect("WORK_NS is a number"));
    let addr: SocketAddr = addr.parse().expect("ADDR is ip:port");
    let threads: usize = threads.parse().expect("THREADS is a number");
    let mut objects = HashMap::new();
    for entry in std::fs::read_dir(dir).expect("DIR is readable") {
        let path = entry.expect("DIR lists").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        objects.insert(
            name,
            Bytes::from(std::fs::read(&path).expect("a file reads")),
        );
    }
    let objects: Objects = Arc::new(objects);
    let keyed = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (objects, keyed) = (objects.clone(), keyed.clone());
            std::thread::spawn(move || serve(addr, objects, keyed, work, raw))
        })
        .collect();
    println!("listening on {addr}");
    for worker in workers {
        worker
            .join()
            .expect("a serving thread ends only by panicking");
    }
}

/// One serving thread: its runtime, its socket, its connections.
fn serve(addr: SocketAddr, objects: Objects, keyed: Hmac<sha2::Sha256>, work: Duration, raw: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime starts");
    runtime.block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket.bind(addr).expect("ADDR binds");
        let listener = socket.listen(1024).expect("listens");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (objects, keyed) = (objects.clone(), keyed.clone());
            if raw {
                tokio::spawn(raw_connection(tcp, objects, keyed, work));
                continue;
            }
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    spin(work);
                    let response = answer(&objects, &keyed, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
}

/// One connection without hyper: parse every complete head in the buffer, answer each into
/// one output buffer, write it, read more.
async fn raw_connection(
    mut tcp: tokio::net::TcpStream,
    objects: Objects,
    keyed: Hmac<sha2::Sha256>,
    work: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut input = vec![0u8; 16 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut output = Vec::with_capacity(4096);
    loop {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Request::new(&mut headers);
            match head.parse(&input[start..end]) {
                Ok(httparse::Status::Complete(used)) => {
                    spin(work);
                    let target = head.path.unwrap_or("/");
                    let (path, query) = match target.split_once('?') {
                        Some((path, query)) => (path, Some(query)),
                        None => (target, None),
                    };
                    raw_answer(&objects, &keyed, path, query, &mut output);
                    start += used;
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return,
            }
        }
        if !output.is_empty() {
            if tcp.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        if start == end {
            (start, end) = (0, 0);
        } else if end == input.len() {
            if start == 0 {
                return; // a head larger than the buffer
            }
            input.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        match tcp.read(&mut input[end..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
    }
}

/// [`answer`], written straight into `output` as HTTP/1.1.
fn raw_answer(
    objects: &Objects,
    keyed: &Hmac<sha2::Sha256>,
    path: &str,
    query: Option<&str>,
    output: &mut Vec<u8>,
) {
    const DATE: &str = "date: Sun, 06 Dec 2026 00:00:00 GMT\r\n";
    let body = if signed(keyed, path, query) {
        objects.get(path.rsplit('/').next().unwrap_or_default())
    } else {
        None
    };
    match body {
        Some(body) => {
            output.extend_from_slice(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n",
            );
            output.extend_from_slice(DATE.as_bytes());
            output.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            output.extend_from_slice(body);
        }
        None => {
            output.extend_from_slice(b"HTTP/1.1 403 Forbidden\r\n");
            output.extend_from_slice(DATE.as_bytes());
            output.extend_from_slice(b"content-length: 0\r\n\r\n");
        }
    }
}

/// Keeps the CPU busy for `work`.
fn spin(work: Duration) {
    if work.is_zero() {
        return;
    }
    let until = Instant::now() + work;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The answer to one request.
fn answer(
    objects: &Objects,
    keyed: &Hmac<sha2::Sha256>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let status = |status: StatusCode| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        response
    };
    if !signed(keyed, path, req.uri().query()) {
        return status(StatusCode::FORBIDDEN);
    }
    let name = path.rsplit('/').next().unwrap_or_default();
    match objects.get(name) {
        Some(body) => {
            let mut response = Response::new(Full::new(body.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        None => status(StatusCode::NOT_FOUND),
    }
}

/// Whether `query` is `token=` and the path's truncated MAC.
fn signed(keyed: &Hmac<sha2::Sha256>, path: &str, query: Option<&str>) -> bool {
    let Some(token) = query.and_then(|q| q.strip_prefix("token=")) else {
        return false;
    };
    let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    if tag.len() != 16 {
        return false;
    }
    let mut mac = keyed.clone();
    mac.update(path.as_bytes());
    mac.verify_truncated_left(&tag).is_ok()
}
