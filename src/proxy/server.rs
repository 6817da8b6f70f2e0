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
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

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

/// Limits on what a client may send in a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head in bytes (request line and headers).
    pub max_header_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
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
    let builder = connection_builder(limits);
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
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    watcher.watch(conn.into_owned()).await
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

fn connection_builder(limits: Limits) -> auto::Builder<TokioExecutor> {
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
