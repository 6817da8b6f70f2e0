//! The configured upstreams: HTTP(S) origins or local directories, in groups that fail
//! over from one server to the next (see [`group`]).
//!
//! Only configured servers are ever contacted: a request names a path (already normalised
//! and authorised), never a host. Bodies stream in both cases.

mod deadline;
mod dir;
mod first_bytes;
pub mod group;
pub mod health;
mod slots;

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Body;
use crate::config::{self, Origin};
use crate::origin::OriginBase;
pub use dir::DirOrigin;
pub use group::{Group, Upstreams};

/// Why an upstream fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No response headers within `upstream.timeout` (504).
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// Headers came, but (for the shield) no body bytes within the server's
    /// `total_timeout` (504).
    #[error("upstream sent a head but no body within {0:?}")]
    BodyTimeout(Duration),
    /// Could not connect (502).
    #[error("cannot connect to upstream: {0}")]
    Connect(String),
    /// Connected, but the exchange failed (502).
    #[error("upstream exchange failed: {0}")]
    Protocol(String),
    /// Every server had `max_requests` in flight for as long as a request may wait (503).
    #[error("upstream has {0} requests in flight")]
    Busy(u32),
}

impl UpstreamError {
    /// Label for metrics and the `error` field of the response.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) | UpstreamError::BodyTimeout(_) => "upstream_timeout",
            UpstreamError::Connect(_) => "upstream_unreachable",
            UpstreamError::Protocol(_) => "upstream_error",
            UpstreamError::Busy(_) => "upstream_busy",
        }
    }
}

/// A request for the upstream: method, path and query as usher will send them, headers
/// already filtered.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// GET or HEAD.
    pub method: Method,
    /// Normalised path, then `?query` if any (credentials removed).
    pub path_and_query: String,
    /// End-to-end headers to send.
    pub headers: HeaderMap,
    /// Whether the server's total timeout bounds the body: for the shield's fetches, read
    /// at the upstream's pace; not for responses streamed at a client's pace.
    pub bounded: bool,
}

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// One server content is fetched from.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// An HTTP(S) origin (boxed: its client is large, and the enum is built once).
    Http(Box<HttpOrigin>),
    /// A local directory.
    Dir(DirOrigin),
}

/// An HTTP(S) origin behind a pooled client.
#[derive(Debug, Clone)]
pub struct HttpOrigin {
    base: OriginBase,
    host: HeaderValue,
    client: Client<HttpsConnector, Empty<Bytes>>,
    timeout: Duration,
    total_timeout: Duration,
}

impl Endpoint {
    /// Builds the endpoint for `server`, trusting `ca_file` besides the system roots.
    ///
    /// # Errors
    /// When the extra CA file cannot be read or the system roots cannot be loaded.
    pub fn new(server: &config::Server, ca_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let config = server;
        match &config.origin {
            Origin::Dir(root) => Ok(Endpoint::Dir(DirOrigin::new(root)?)),
            Origin::Http(base) => {
                let mut http = HttpConnector::new();
                http.set_connect_timeout(Some(config.connect_timeout));
                http.set_nodelay(true);
                http.enforce_http(false);
                let tls = client_tls(ca_file)?;
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(http);
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build(connector);
                Ok(Endpoint::Http(Box::new(HttpOrigin {
                    host: HeaderValue::from_str(base.authority())?,
                    base: base.clone(),
                    client,
                    timeout: config.timeout,
                    total_timeout: config.total_timeout,
                })))
            }
        }
    }

    /// Fetches `req` from this server. The response's body streams as it arrives; with
    /// `req.bounded`, it fails if it has not ended within the server's total timeout.
    ///
    /// # Errors
    /// [`UpstreamError`] when no response head arrives.
    pub async fn fetch(&self, req: UpstreamRequest) -> Result<Response<Body>, UpstreamError> {
        match self {
            Endpoint::Dir(dir) => Ok(dir.serve(&req).await),
            Endpoint::Http(origin) => origin.fetch(req).await,
        }
    }
}

impl HttpOrigin {
    async fn fetch(&self, req: UpstreamRequest) -> Result<Response<Body>, UpstreamError> {
        let bounded = req.bounded;
        let bodiless = req.method == Method::HEAD;
        let uri: Uri = format!(
            "{}://{}{}{}",
            self.base.scheme(),
            self.base.authority(),
            self.base.path(),
            req.path_and_query
        )
        .parse()
        .map_err(|e: http::uri::InvalidUri| UpstreamError::Protocol(e.to_string()))?;
        let mut request = Request::builder()
            .method(req.method)
            .uri(uri)
            .body(Empty::new())
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        *request.headers_mut() = req.headers;
        request.headers_mut().insert(HOST, self.host.clone());
        let started = tokio::time::Instant::now();
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
            .map_err(|e| {
                if e.is_connect() {
                    UpstreamError::Connect(error_chain(&e))
                } else {
                    UpstreamError::Protocol(error_chain(&e))
                }
            })?;
        // Both framings at once (RFC 9112 §6.3): the body is read chunked, and the length
        // passed on beside it would tell viewers and caches a size the body does not have.
        // A proxy must not forward it; nginx answers 502 too.
        // An answer without a body (to HEAD, a 204 or 304) has no framing to get wrong.
        let headers = response.headers();
        let has_body = !bodiless && !matches!(response.status().as_u16(), 204 | 304);
        if has_body
            && headers.contains_key(TRANSFER_ENCODING)
            && headers.contains_key(CONTENT_LENGTH)
        {
            return Err(UpstreamError::Protocol(
                "the answer has both Content-Length and Transfer-Encoding".into(),
            ));
        }
        let deadline = started + self.total_timeout;
        let total = self.total_timeout;
        Ok(response.map(|body| {
            let body = body.map_err(Into::into).boxed();
            if bounded {
                deadline::Deadline::new(body, deadline, total).boxed()
            } else {
                body
            }
        }))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A rustls client config trusting the system roots and, if given, a PEM CA file.
///
/// # Errors
/// When the CA file cannot be read or holds an unusable certificate.
pub fn client_tls(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in crate::tls::read_certs(path)? {
            roots.add(cert)?;
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
