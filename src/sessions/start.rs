//! What a session start is about, and what a touch finds.

use std::net::IpAddr;

use super::Session;

/// What [`super::Sessions::touch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// Live here (and under the purchase asked about): the request is recorded.
    Live,
    /// Not live here (unknown, or idle past the timeout): the caller adopts it afresh.
    NotHere,
    /// Live here under another purchase than the one asked about: not recorded. A
    /// session moves onto another purchase only by being taken up afresh.
    UnderAnother,
    /// Recorded here (in whatever state) on another named device than the one asked
    /// about: not recorded. The request is that device's own session's,
    /// [`super::device_session`].
    OnAnotherDevice,
}

/// What a new session is about.
#[derive(Debug, Clone)]
pub struct Start<'a> {
    /// Keep this id (adopting a session token's session); `None` makes a new one.
    pub sid: Option<&'a str>,
    /// The account.
    pub account: &'a str,
    /// The purchase, if known.
    pub purchase: Option<&'a str>,
    /// The product, if known.
    pub product: Option<&'a str>,
    /// The hashed device, if named.
    pub device: Option<&'a str>,
    /// The client address.
    pub ip: IpAddr,
    /// A session this one takes over (IP recovery): not counted against the limits.
    pub taking_over: Option<&'a str>,
    /// Whether taking up `sid` on another named device than the one it is recorded on
    /// starts that device's own session, [`super::device_session`] (a foreign credential's,
    /// named after its token); else it joins `sid` (a session token, whose claims bind
    /// its device).
    pub per_device: bool,
}

/// `start` as a copy of `existing`, a session another node holds (the device it is
/// recorded on, not the one the request names: every node checks the same).
pub(super) fn copy_of<'a>(existing: &'a Session, start: &Start<'a>) -> Start<'a> {
    Start {
        sid: Some(&existing.sid),
        device: existing.device.as_deref(),
        ..start.clone()
    }
}
