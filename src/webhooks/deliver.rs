//! One delivery attempt: the signed POST and what its answer means.
//!
//! Headers: `X-Usher-Event` (the kind), `X-Usher-Delivery` (the event id, the same on
//! every retry: deduplicate on it), `X-Usher-Timestamp` (Unix seconds of this attempt) and
//! `X-Usher-Signature: sha256=<hex>`, the HMAC-SHA256 under the endpoint's secret of
//! `<timestamp>.<raw body>`. A receiver recomputes it over the bytes it received, compares
//! in constant time, and refuses a timestamp far from its clock (replay).

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered, but not 2xx.
    #[error("receiver answered {0}")]
    Status(u16),
    /// No answer in time.
    #[error("receiver did not answer within {0:?}")]
    Timeout(Duration),
    /// Transport failure.
    #[error("receiver unreachable: {0}")]
    Unreachable(String),
}

/// `sha256=<hex>`: the signature of `body` sent at `timestamp` under `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The HTTP(S) client deliveries go out on.
pub struct Sender {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What to send.
pub struct Attempt<'a> {
    /// Where.
    pub url: &'a str,
    /// The signing key.
    pub secret: &'a [u8],
    /// The event kind.
    pub event: &'a str,
    /// The event id.
    pub event_id: &'a str,
    /// The payload.
    pub body: &'a str,
    /// Now, Unix seconds.
    pub timestamp: u64,
}

impl Sender {
    /// A client.
    ///
    /// # Errors
    /// When TLS roots cannot be loaded.
    pub fn new() -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let tls = crate::proxy::upstream::client_tls(None)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// POSTs one signed attempt, within `timeout`.
    ///
    /// # Errors
    /// [`DeliveryError`] unless the receiver answered 2xx.
    pub async fn send(
        &self,
        attempt: &Attempt<'_>,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let request = Request::post(attempt.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "usher-webhooks")
            .header("x-usher-event", attempt.event)
            .header("x-usher-delivery", attempt.event_id)
            .header("x-usher-timestamp", attempt.timestamp.to_string())
            .header(
                "x-usher-signature",
                signature(attempt.secret, attempt.timestamp, attempt.body.as_bytes()),
            )
            .body(Full::new(Bytes::from(attempt.body.to_owned())))
            .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
        let started = tokio::time::Instant::now();
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| DeliveryError::Timeout(timeout))?
            .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
        // The status decides. The answer is read (up to a bound, in what is left of the
        // timeout) only so the connection can be reused: a receiver that accepted and then
        // sends a slow or endless body is not delivered to again.
        let status = response.status();
        let rest = timeout.saturating_sub(started.elapsed());
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
        let _ = tokio::time::timeout(rest, body.collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}

/// Most bytes of a receiver's answer read (and dropped).
const MAX_ANSWER: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let s = signature(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_ne!(
            s,
            signature(b"0123456789abcdef", 1_700_000_001, b"{\"a\":1}")
        );
        assert_ne!(
            s,
            signature(b"0123456789abcdef", 1_700_000_000, b"{\"a\":2}")
        );
        assert_ne!(
            s,
            signature(b"fedcba9876543210", 1_700_000_000, b"{\"a\":1}")
        );
    }
}
