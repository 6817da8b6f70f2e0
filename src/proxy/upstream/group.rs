//! Upstream groups: a primary and its fallbacks, tried in order. A server that does not
//! answer, or answers 5xx, is passed over for the next one (every request usher sends
//! upstream is a GET or HEAD, so any may be retried), and so, for the shield's fetches, is
//! one whose body breaks off before its first bytes; servers marked down by their health
//! are tried only when every server that is up has failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;

use super::first_bytes::first_bytes;
use super::health::HealthState;
use super::slots::{Held, Slots};
use super::{Endpoint, UpstreamError, UpstreamRequest};
use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::proxy::Body;

/// One server of a group.
struct Member {
    label: String,
    endpoint: Endpoint,
    health: HealthState,
    slots: Slots,
    /// How long a request waits for one of `slots`: the server's first-byte timeout.
    wait: Duration,
}

/// A primary and its fallbacks.
pub struct Group {
    /// The group's name (`""` for `[upstream]`), part of every cache key.
    pub name: Arc<str>,
    members: Vec<Member>,
    check_path: Option<String>,
    check_interval: std::time::Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field(
                "servers",
                &self.members.iter().map(|m| &m.label).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Group {
    /// The group `config` describes.
    ///
    /// # Errors
    /// When a server cannot be set up (a CA file, a directory).
    pub fn new(name: &str, config: &config::Upstream, metrics: &Metrics) -> anyhow::Result<Self> {
        let members = config
            .servers()
            .iter()
            .map(|server| {
                let label = server.label();
                let gauge = metrics.upstream_up.with_label_values(&[&label]);
                let in_flight = metrics.upstream_in_flight.with_label_values(&[&label]);
                Ok(Member {
                    endpoint: Endpoint::new(server, config.ca_file.as_deref())?,
                    health: HealthState::new(
                        label.clone(),
                        config.health.failures,
                        config.health.cool_off,
                        gauge,
                    ),
                    label,
                    slots: Slots::new(config.max_requests, in_flight),
                    wait: server.timeout,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            name: Arc::from(name),
            members,
            check_path: config.health.check_path.clone(),
            check_interval: config.health.check_interval,
            metrics: metrics.clone(),
        })
    }

    /// Fetches `req` from the first server that answers without a 5xx: servers that are up
    /// in order, then those marked down. When all fail, the last answer (a 5xx) or error.
    ///
    /// # Errors
    /// The last server's [`UpstreamError`] when none answered.
    pub async fn fetch(&self, req: UpstreamRequest) -> Result<Response<Body>, UpstreamError> {
        self.fetch_from(req, true).await
    }

    /// As [`Group::fetch`], trying servers marked down only when `down_too`: a caller with
    /// something to serve instead (a stale copy) does not wait on servers known to fail.
    ///
    /// # Errors
    /// The last server's [`UpstreamError`]; `Connect` when every server is down and
    /// `down_too` is false.
    pub async fn fetch_from(
        &self,
        req: UpstreamRequest,
        down_too: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        self.attempt(req, down_too, false).await
    }

    /// As [`Group::fetch_from`], a server's answer counting as one only once its body's
    /// first bytes came (at once for a body that has none): a body that breaks off or
    /// reaches the server's total timeout before them is that server's failure, as a 5xx
    /// is, and the next server is asked. The answer's body starts with those bytes. For the
    /// shield, which reads the body at once: its head waits for them.
    ///
    /// # Errors
    /// As [`Group::fetch_from`]; [`UpstreamError::BodyTimeout`] (with the total timeout) or
    /// [`UpstreamError::Protocol`] when the last server's body failed before its bytes.
    pub async fn fetch_started(
        &self,
        req: UpstreamRequest,
        down_too: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        self.attempt(req, down_too, true).await
    }

    /// [`Group::fetch_from`], or [`Group::fetch_started`] when `await_bytes`.
    async fn attempt(
        &self,
        req: UpstreamRequest,
        down_too: bool,
        await_bytes: bool,
    ) -> Result<Response<Body>, UpstreamError> {
        let (up, down): (Vec<&Member>, Vec<&Member>) =
            self.members.iter().partition(|m| m.health.is_up());
        let down = if down_too { down } else { Vec::new() };
        let order: Vec<&Member> = up.into_iter().chain(down).collect();
        let mut last = None;
        for (n, member) in order.iter().enumerate() {
            let started = Instant::now();
            let result = member.fetch(req.clone()).await;
            self.metrics
                .upstream_server_seconds
                .with_label_values(&[&member.label])
                .observe(started.elapsed().as_secs_f64());
            let (result, reason) = match result {
                Ok(response) if response.status().is_server_error() => {
                    (Ok(response), Some("status_5xx"))
                }
                Ok(response) if await_bytes => match first_bytes(response).await {
                    Ok(response) => (Ok(response), None),
                    Err((e, reason)) => (Err(e), Some(reason)),
                },
                Ok(response) => (Ok(response), None),
                Err(e) => {
                    let reason = e.reason();
                    (Err(e), Some(reason))
                }
            };
            let Some(reason) = reason else {
                member.health.success();
                return result;
            };
            let why = match &result {
                Ok(response) => format!("status {}", response.status().as_u16()),
                Err(e) => e.to_string(),
            };
            self.metrics
                .upstream_failures
                .with_label_values(&[&member.label, reason])
                .inc();
            // A server at its own limit is not failing: usher held the request back.
            if !matches!(result, Err(UpstreamError::Busy(_))) {
                member.health.failure(&why);
            }
            if n + 1 < order.len() {
                tracing::warn!(upstream = %member.label, error = %why, "upstream failed; trying the next one");
            }
            last = Some(result);
        }
        last.unwrap_or_else(|| {
            Err(UpstreamError::Connect(
                "every upstream server is marked down".to_owned(),
            ))
        })
    }

    /// Runs the active health check forever: every interval, `check_path` on each server;
    /// a 2xx or 3xx marks it up, anything else counts as a failure. Returns at once when no
    /// check is configured.
    pub async fn check_health(self: Arc<Self>) {
        let Some(path) = self.check_path.clone() else {
            return;
        };
        let mut ticks = tokio::time::interval(self.check_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for member in &self.members {
                let probe = UpstreamRequest {
                    method: Method::GET,
                    path_and_query: path.clone(),
                    headers: HeaderMap::new(),
                    bounded: true,
                };
                let answer =
                    tokio::time::timeout(self.check_interval, member.endpoint.fetch(probe)).await;
                match answer {
                    Ok(Ok(response))
                        if response.status().is_success() || response.status().is_redirection() =>
                    {
                        member.health.success()
                    }
                    Ok(Ok(response)) => member.health.failure(&format!(
                        "health check status {}",
                        response.status().as_u16()
                    )),
                    Ok(Err(e)) => member.health.failure(&e.to_string()),
                    Err(_) => member.health.failure("health check timed out"),
                }
            }
        }
    }
}

impl Member {
    /// Fetches `req` in one of this server's slots, held until the response body ends;
    /// [`UpstreamError::Busy`] when none was free within the first-byte timeout.
    async fn fetch(&self, req: UpstreamRequest) -> Result<Response<Body>, UpstreamError> {
        let slot = self
            .slots
            .take(self.wait)
            .await
            .ok_or(UpstreamError::Busy(self.slots.limit()))?;
        let response = self.endpoint.fetch(req).await?;
        Ok(response.map(|body| Held::new(body, slot).boxed()))
    }
}

/// Every upstream group: `[upstream]` and the named ones.
#[derive(Debug)]
pub struct Upstreams {
    default: Arc<Group>,
    named: HashMap<String, Arc<Group>>,
}

impl Upstreams {
    /// The groups `config` describes.
    ///
    /// # Errors
    /// When a server cannot be set up.
    pub fn new(config: &Config, metrics: &Metrics) -> anyhow::Result<Self> {
        let named = config
            .upstream_groups
            .iter()
            .map(|(name, group)| Ok((name.clone(), Arc::new(Group::new(name, group, metrics)?))))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            default: Arc::new(Group::new("", &config.upstream, metrics)?),
            named,
        })
    }

    /// The group named `name`, or `[upstream]` for `None` (or a name no longer known).
    pub fn group(&self, name: Option<&str>) -> &Arc<Group> {
        name.and_then(|n| self.named.get(n))
            .unwrap_or(&self.default)
    }

    /// Starts the active health checks of every group that has one.
    pub fn spawn_health_checks(&self) {
        for group in std::iter::once(&self.default).chain(self.named.values()) {
            if group.check_path.is_some() {
                tokio::spawn(group.clone().check_health());
            }
        }
    }
}
