//! Accepting connections: plain TCP (HTTP/1.1 and h2c) or TLS (h2 and HTTP/1.1 by ALPN),
//! request-head limits, and graceful shutdown bounded by a drain timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;

use super::idle::{until_idle, Watched};
use super::sendfile::SendfileStream;
use super::{Body, Peer};

/// Anything that answers requests: the proxy and the admin listener.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Answers one request from `peer`.
    fn call(
        self,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

/// Limits on what clients may hold and send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head in bytes (request line and headers).
    pub max_header_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// The connections that may be open at once, shared by every listener and thread
    /// given the same limits; a connection past them is closed as soon as it is accepted.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// A connection that moves no byte for this long is closed (see [`super::idle`]).
    pub idle_timeout: Duration,
}

impl Limits {
    /// Limits on request heads, `max_connections` open at once, `idle_timeout` of silence.
    pub fn new(
        max_header_bytes: usize,
        max_headers: usize,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            max_header_bytes,
            max_headers,
            connections: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            idle_timeout,
        }
    }
}

/// How draining ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight connection finished.
    Clean,
    /// The drain timeout ran out with connections still open; they were cut.
    TimedOut,
}

/// Serves `listener` until `shutdown` completes, then stops accepting and lets in-flight
/// requests finish for at most `drain`.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Drained {
    let proto = if tls.is_some() { "https" } else { "http" };
    let builder = connection_builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
            // Full: this one goes at once, and those already open keep being served.
            tracing::debug!(client = %addr, "connection limit reached; closed a new connection");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let peer = Peer { addr, proto };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            // Boxed: hyper keeps the service's future in its own slot, and moving usher's
            // whole request state machine there was a memcpy of kilobytes per request.
            let response = Box::pin(handler.clone().call(req, peer));
            async move { Ok::<_, std::convert::Infallible>(response.await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let _open = permit;
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            let (stream, moved) = Watched::new(stream);
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            tokio::select! {
                                result = watcher.watch(conn.into_owned()) => result,
                                () = until_idle(moved, idle) => Ok(()),
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let (stream, moved) = Watched::new(SendfileStream::new(tcp));
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        result = watcher.watch(conn.into_owned()) => result,
                        () = until_idle(moved, idle) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(client = %addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    match tokio::time::timeout(drain, graceful.shutdown()).await {
        Ok(()) => Drained::Clean,
        Err(_) => Drained::TimedOut,
    }
}

/// Binds `addr` for [`serve_on_threads`]: with `SO_REUSEPORT`, so that every serving thread
/// listens on a socket of its own at the same address and the kernel spreads new
/// connections over them evenly (one shared socket lets whichever thread wakes first take
/// most of them).
///
/// A port some other socket holds is refused first, as a plain bind would refuse it, so a
/// second usher started on the same port fails with "address in use" rather than quietly
/// sharing the port's connections.
///
/// # Errors
/// When the address is taken or cannot be bound.
pub fn bind_shared(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    // Port 0: the kernel picks a port no socket holds, `SO_REUSEPORT` groups included.
    if addr.port() != 0 {
        drop(reuse_socket(addr, false)?);
    }
    join_shared(addr)
}

/// A socket bound to `addr` (with `SO_REUSEADDR`, as every listener here), with
/// `SO_REUSEPORT` when `shared`.
fn reuse_socket(addr: std::net::SocketAddr, shared: bool) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(shared)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Binds one more socket of the group [`bind_shared`] started at `addr` (its actual port).
fn join_shared(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    reuse_socket(addr, true)?.listen(1024)
}

/// Serves `listener` (bound by [`bind_shared`]) on `threads` threads of its own, each
/// running a single-threaded runtime that accepts on its own socket at the same address and
/// serves, start to end, the connections it accepted, until `stop` turns true; then each
/// drains as [`serve`] does.
///
/// One runtime per thread keeps a connection's reads, its handling and its writes on one
/// core: no work stealing, no wake-ups across threads on the request path
/// (`benches/vs_nginx.sh` on 2 cores: 10 % more 1 KiB and 8 % more 188 KB requests per
/// CPU-second than the shared work-stealing runtime). What a request hands off (shield
/// fills, the store's blocking calls) runs on that thread's runtime and blocking pool, and
/// the caches, the sessions and the upstream pool are the same for every thread.
///
/// Every thread keeps its runtime running until all of them have drained, since what one
/// thread's runtime started (a shield fill, an upstream connection) may be serving
/// another's requests; then each stops its runtime, waiting for its blocking work, and
/// only then reports how it drained on the returned receivers. A thread that could not
/// start its runtime reports [`Drained::TimedOut`] at once. Each runtime may run
/// `512 / threads` blocking calls at once, so the threads together keep tokio's usual
/// bound.
///
/// # Errors
/// When the socket cannot be shared between the threads, or a thread cannot be started.
pub fn serve_on_threads<H: Handler>(
    listener: TcpListener,
    threads: usize,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: Limits,
    stop: &tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> std::io::Result<Vec<tokio::sync::oneshot::Receiver<Drained>>> {
    let addr = listener.local_addr()?;
    let mut sockets = vec![listener.into_std()?];
    for _ in 1..threads {
        sockets.push(join_shared(addr)?.into_std()?);
    }
    // How many threads have drained, for each to wait on the others.
    let (drained_tx, drained_rx) = tokio::sync::watch::channel(0usize);
    let drained_tx = std::sync::Arc::new(drained_tx);
    let mut outcomes = Vec::with_capacity(threads);
    for (n, socket) in sockets.into_iter().enumerate() {
        let (tls, handler, mut stop) = (tls.clone(), handler.clone(), stop.clone());
        let limits = limits.clone();
        let (drained_tx, mut drained_rx) = (drained_tx.clone(), drained_rx.clone());
        let (done, outcome) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("usher-serve-{n}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads((512 / threads).max(1))
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a serving thread's runtime");
                        drained_tx.send_modify(|count| *count += 1);
                        let _ = done.send(Drained::TimedOut);
                        return;
                    }
                };
                let drained = runtime.block_on(async move {
                    let drained = match TcpListener::from_std(socket) {
                        Ok(listener) => {
                            let shutdown = async move {
                                let _ = stop.wait_for(|stopped| *stopped).await;
                            };
                            serve(listener, tls, handler, limits, shutdown, drain).await
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot watch the listening socket");
                            Drained::TimedOut
                        }
                    };
                    drained_tx.send_modify(|count| *count += 1);
                    let _ = drained_rx.wait_for(|count| *count == threads).await;
                    drained
                });
                // Waits for this runtime's blocking work (a store write, say) to return.
                drop(runtime);
                let _ = done.send(drained);
            })?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256);
    builder
}

/// The proxy as a [`Handler`].
#[derive(Clone)]
pub struct ProxyHandler(pub Arc<super::State>);

impl Handler for ProxyHandler {
    fn call(
        self,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        super::handle(self.0, req, peer)
    }
}
