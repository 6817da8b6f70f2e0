//! `[rights]` and `[rights.external]`, checked: where rights decisions come from and how
//! long they are kept.

use std::time::Duration;

use http::HeaderName;

/// `[rights]`, checked.
#[derive(Debug, Clone)]
pub struct RightsConfig {
    /// Where decisions come from.
    pub source: RightsSource,
    /// Positive decision cache lifetime.
    pub positive_ttl: Duration,
    /// Refusal cache lifetime.
    pub negative_ttl: Duration,
    /// Most cached decisions.
    pub cache_capacity: u64,
    /// With the shared store unreachable, how long after it was seen a yes keeps being
    /// served (`0`: refuse with `rights_unavailable` at once).
    pub grace: Duration,
    /// After a failed write of a rental's first play, how long this node waits before it
    /// tries a first play's write again (doubling with each further failure, up to
    /// [`crate::rights::FIRST_PLAY_RETRY_GROWTH`] times it).
    pub first_play_retry: Duration,
    /// Header naming the device class.
    pub device_class_header: HeaderName,
    /// Class of requests that name none.
    pub default_device_class: crate::rights::model::DeviceClass,
}

/// Where rights decisions come from.
#[derive(Debug, Clone)]
pub enum RightsSource {
    /// A valid ticket is enough (no rights check).
    None,
    /// The embedded store.
    Store,
    /// The operator's HTTP service.
    External(Box<ExternalConfig>),
}

/// `[rights.external]`, checked.
#[derive(Debug, Clone)]
pub struct ExternalConfig {
    /// URL template.
    pub url: String,
    /// GET or POST.
    pub method: http::Method,
    /// POST body template.
    pub body: Option<String>,
    /// POST content type.
    pub content_type: String,
    /// Exchange timeout.
    pub timeout: Duration,
    /// Statuses that can mean yes.
    pub success_status: Vec<u16>,
    /// JSON pointer and the value that means yes.
    pub success_json: Option<(String, serde_json::Value)>,
    /// Body text that means yes.
    pub success_body_contains: Option<String>,
    /// How long a recent yes outlives an outage.
    pub grace: Duration,
    /// Headers sent on every call (values marked sensitive: `Debug` hides them).
    pub headers: Vec<(HeaderName, http::HeaderValue)>,
}
