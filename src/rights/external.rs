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
use moka::future::Cache;

use super::decide::{Entitled, RightsDenied};
use super::index::MediaRef;
use super::model::DeviceClass;
use crate::config::ExternalConfig;
use crate::metrics::Metrics;

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

/// The configured service, its client and its grace memory.
pub struct External {
    config: ExternalConfig,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    recent_yes: Cache<String, ()>,
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
        let recent_yes = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(config.grace.max(Duration::from_millis(1)))
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            config,
            recent_yes,
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

    /// Asks the service about `subject` and `media`.
    ///
    /// # Errors
    /// [`ExternalError`] when there is no answer and no grace applies.
    pub async fn decide(
        &self,
        subject: &str,
        media: &MediaRef,
        class: DeviceClass,
        now: u64,
        metrics: &Metrics,
    ) -> Result<Result<Entitled, RightsDenied>, ExternalError> {
        let key = format!("{subject}\0{}\0{}", media.code, class.as_str());
        match self.ask(subject, media, class, now).await {
            Ok(true) => {
                if !self.config.grace.is_zero() {
                    self.recent_yes.insert(key, ()).await;
                }
                Ok(Ok(Entitled::unlimited("external", None)))
            }
            Ok(false) => Ok(Err(RightsDenied::NoRights)),
            Err(e) if self.recent_yes.contains_key(&key) => {
                tracing::warn!(error = %e, "rights service down; serving a recent yes (grace)");
                metrics.rights_lookups.with_label_values(&["grace"]).inc();
                Ok(Ok(Entitled::unlimited(
                    "external-grace",
                    Some(now + self.config.grace.as_secs().max(1)),
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets the recent yeses whose cache key (`subject\0content\0class`) `matches`, so
    /// a revoked right is not served through an outage by grace.
    pub async fn forget(&self, matches: impl Fn(&str) -> bool) -> u64 {
        let mut forgotten = 0;
        for (key, ()) in self.recent_yes.iter() {
            if matches(&key) {
                self.recent_yes.invalidate(key.as_str()).await;
                forgotten += 1;
            }
        }
        forgotten
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
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ExternalError::Unreachable(e.to_string()))?
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
