//! The operator's HTTP rights service (the TVMS "API provision"): usher asks it instead of
//! the embedded store, mapping claims into a URL (and body) template, and reads success
//! from the status and a JSON field or a body pattern.
//!
//! Fail closed by default: when the service cannot be reached, the answer is 503
//! `rights_unavailable`. With `grace`, a decision that was positive within the last
//! `grace` keeps being served while the service is down, counted in
//! `usher_rights_lookups_total{outcome="grace"}`.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::decide::{Entitled, RightsDenied};
use super::index::MediaRef;
use super::model::DeviceClass;
use crate::config::ExternalConfig;

/// Most bytes of an answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why the service gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// No answer in time.
    #[error("rights service did not answer within {0:?}")]
    Timeout(Duration),
    /// Transport failure.
    #[error("rights service unreachable: {0}")]
    Unreachable(String),
}

/// The configured service and its client.
pub struct External {
    config: ExternalConfig,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Percent-encodes everything but unreserved characters, for URL and form templates.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl External {
    /// A client for `config`.
    ///
    /// # Errors
    /// When TLS roots cannot be loaded.
    pub fn new(config: ExternalConfig) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        let tls = crate::proxy::upstream::client_tls(None)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            config,
        })
    }

    fn fill(
        &self,
        template: &str,
        subject: &str,
        media: &MediaRef,
        class: DeviceClass,
        now: u64,
    ) -> String {
        template
            .replace("{sub}", &encode(subject))
            .replace("{content}", &encode(&media.code))
            .replace(
                "{editorial}",
                &encode(media.editorial.as_deref().unwrap_or("")),
            )
            .replace("{class}", class.as_str())
            .replace("{now}", &now.to_string())
    }

    /// How long a yes of the service is served while it cannot be reached.
    pub fn grace(&self) -> Duration {
        self.config.grace
    }

    /// Asks the service about `subject` and `media`: a yes (with no limits or end of its
    /// own), a refusal, or no answer ([`crate::rights::Rights`] keeps the grace memory).
    ///
    /// # Errors
    /// [`ExternalError`] when there is no answer.
    pub async fn decide(
        &self,
        subject: &str,
        media: &MediaRef,
        class: DeviceClass,
        now: u64,
    ) -> Result<Result<Entitled, RightsDenied>, ExternalError> {
        Ok(if self.ask(subject, media, class, now).await? {
            Ok(Entitled::unlimited("external", None))
        } else {
            Err(RightsDenied::NoRights)
        })
    }

    async fn ask(
        &self,
        subject: &str,
        media: &MediaRef,
        class: DeviceClass,
        now: u64,
    ) -> Result<bool, ExternalError> {
        let url = self.fill(&self.config.url, subject, media, class, now);
        let body = self
            .config
            .body
            .as_deref()
            .map(|t| self.fill(t, subject, media, class, now))
            .unwrap_or_default();
        let mut request = Request::builder()
            .method(self.config.method.clone())
            .uri(&url);
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        if self.config.method == Method::POST {
            request = request.header(
                http::header::CONTENT_TYPE,
                self.config.content_type.as_str(),
            );
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExternalError::Unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ExternalError::Unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            // A decision is a short document: a longer answer is a fault, not a yes.
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ExternalError::Unreachable(format!("answer: {e}")))?
                .to_bytes();
            Ok::<_, ExternalError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| ExternalError::Timeout(self.config.timeout))??;
        if status >= 500 {
            return Err(ExternalError::Unreachable(format!("status {status}")));
        }
        Ok(self.is_success(status, &body))
    }

    fn is_success(&self, status: u16, body: &[u8]) -> bool {
        if !self.config.success_status.contains(&status) {
            return false;
        }
        if let Some((pointer, expected)) = &self.config.success_json {
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
                return false;
            };
            if json.pointer(pointer) != Some(expected) {
                return false;
            }
        }
        if let Some(needle) = &self.config.success_body_contains {
            if !String::from_utf8_lossy(body).contains(needle.as_str()) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn template_values_are_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode("user-1_x.y~"), "user-1_x.y~");
    }
}
