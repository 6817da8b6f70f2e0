//! The record of one request while usher serves it: counted in flight, logged once.

use std::time::Instant;

use http::{Method, StatusCode};

use super::{credentials, State};
use crate::path::ObjectKind;

/// One request in flight: counted in `usher_requests_in_flight` until dropped, and logged
/// once, when answered or, if the client went away first (a closed connection, an HTTP/2
/// reset, the idle watchdog), when dropped, as status 499 `cancelled`.
pub(super) struct InFlight<'a> {
    pub(super) state: &'a State,
    pub(super) id: u64,
    pub(super) client: std::net::IpAddr,
    pub(super) method: Method,
    /// The path only is logged: the query may hold a credential.
    pub(super) uri: http::Uri,
    pub(super) started: Instant,
    pub(super) kind: ObjectKind,
    /// Logged and counted already.
    pub(super) answered: bool,
}

impl InFlight<'_> {
    /// Counts and logs the answer, once.
    pub(super) fn log(&mut self, status: StatusCode, reason: &str) {
        self.answered = true;
        self.state.metrics.count_request(self.kind, status);
        tracing::info!(
            request_id = %format_args!("{:x}", self.id),
            client = %self.client,
            method = %self.method,
            path = credentials::loggable_path(self.uri.path()),
            kind = self.kind.as_str(),
            status = status.as_u16(),
            reason,
            micros = self.started.elapsed().as_micros() as u64,
            "request"
        );
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.answered {
            // 499: nginx's "client closed request".
            let cancelled = StatusCode::from_u16(499).expect("a valid status");
            self.log(cancelled, "cancelled");
        }
        self.state.metrics.in_flight.dec();
    }
}
