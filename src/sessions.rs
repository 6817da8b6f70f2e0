//! Live playback sessions: one device playing one content under one purchase. A session
//! starts at the first playlist request with a ticket, stays alive while its requests keep
//! coming, and ends after the idle timeout, when the operator ends it, or when a newer
//! session replaces it under a product's `replace_oldest` policy.
//!
//! Each node keeps its sessions in memory; with `sessions.backend = "redis"` starts are
//! decided over every node's sessions ([`shared`]). After a restart, a request carrying a
//! valid session token adopts its session again, under the same limits, so nobody's
//! playback is lost to a deploy.
//!
//! # Concurrency
//! Starting a session takes the write lock; the per-segment touch takes only the read lock
//! and one atomic store, and only once per `touch_interval` per session.

pub mod cluster;
mod denied;
pub mod kept;
mod limits;
pub mod shared;
mod start;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

pub use denied::SessionDenied;
pub use kept::token_lifetime;
pub use limits::{device_session, Limits, Policy};
use limits::{on_another_device, plan, Plan};
use start::copy_of;
pub use start::{Start, Touch};

/// A fresh session id: 64 random bits, hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A session id derived from `parts` (SHA-256 over them, a 0 byte between each two, its
/// first 64 bits in hex): the form of [`new_id`], and the same id for the same parts on
/// every node and every request (a foreign credential's session, a device's own one).
pub fn derived_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            hash.update([0]);
        }
        hash.update(part.as_bytes());
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const LIVE: u8 = 0;
const REPLACED: u8 = 1;
const ENDED: u8 = 2;

/// One session.
#[derive(Debug)]
pub struct Session {
    /// Session id, as carried in session tokens.
    pub sid: String,
    /// The account playing.
    pub account: String,
    /// The purchase it plays under, when rights come from the store.
    pub purchase: Option<String>,
    /// The product, for per-product limits.
    pub product: Option<String>,
    /// The device (hashed).
    pub device: Option<String>,
    /// The client address at start.
    pub ip: IpAddr,
    /// When it started (Unix seconds).
    pub started_at: u64,
    last_seen: AtomicU64,
    state: AtomicU8,
}

impl Session {
    /// When a request last touched it.
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    fn is_live(&self, now: u64, idle: u64) -> bool {
        self.state.load(Ordering::Relaxed) == LIVE && now < self.last_seen().saturating_add(idle)
    }

    /// Why its requests are refused once it was replaced or ended; `None` while it is not.
    fn refusal(&self) -> Option<SessionDenied> {
        match self.state.load(Ordering::Relaxed) {
            REPLACED => Some(SessionDenied::Replaced),
            ENDED => Some(SessionDenied::Ended),
            _ => None,
        }
    }
}

impl Session {
    /// A live session for `start`, named `sid`, last seen `now`.
    fn new(start: &Start<'_>, sid: String, now: u64) -> Self {
        Session {
            sid,
            account: start.account.to_owned(),
            purchase: start.purchase.map(str::to_owned),
            product: start.product.map(str::to_owned),
            device: start.device.map(str::to_owned),
            ip: start.ip,
            started_at: now,
            last_seen: AtomicU64::new(now),
            state: AtomicU8::new(LIVE),
        }
    }
}

/// Every session, by id.
pub struct Sessions {
    by_id: RwLock<HashMap<String, Arc<Session>>>,
    idle: u64,
    touch_interval: u64,
    active: prometheus::IntGauge,
    webhooks: Option<crate::webhooks::Webhooks>,
    /// Every node's sessions, when `sessions.backend = "redis"` (set once at start).
    shared: std::sync::OnceLock<Arc<shared::SharedSessions>>,
}

/// A start decided but not yet recorded everywhere (see [`Sessions::begin`]).
pub struct Started {
    /// The session, in this node's registry.
    pub session: Arc<Session>,
    /// Sessions it replaces on this node.
    victims: Vec<Arc<Session>>,
    /// Whether the shared store still has to record it.
    shared: bool,
    /// Whether the shared store's (dry-run) decision had other sessions give way.
    replaces_shared: bool,
    /// Whether it was decided without the shared store, to be written there once it answers.
    deferred: bool,
}

impl Started {
    /// Whether starting it ends another session (`replace_oldest`), on this node or,
    /// as far as the shared store said at [`Sessions::begin`], on another.
    pub fn replaces_others(&self) -> bool {
        !self.victims.is_empty() || self.replaces_shared
    }
}

impl Sessions {
    /// A registry whose sessions end after `idle` seconds without a request, touched at
    /// most every `touch_interval` seconds; `active` is kept equal to the live count at
    /// each sweep.
    pub fn new(idle: u64, touch_interval: u64, active: prometheus::IntGauge) -> Self {
        Self {
            by_id: RwLock::new(HashMap::new()),
            idle,
            touch_interval,
            active,
            webhooks: None,
            shared: std::sync::OnceLock::new(),
        }
    }

    /// On shared sessions, whether this node hears the others' session changes.
    pub fn shared_up(&self) -> Option<bool> {
        self.shared.get().map(|shared| shared.is_up())
    }

    /// Shares sessions with the other nodes through `shared` from now on.
    pub fn share(&self, shared: Arc<shared::SharedSessions>) {
        let _ = self.shared.set(shared);
    }

    /// What a failed shared call leaves a start with: a refusal (`deny`), or `None` to go
    /// on with this node's sessions alone (`local`).
    fn backend_failed(
        &self,
        shared: &shared::SharedSessions,
        e: &shared::BackendError,
    ) -> Option<SessionDenied> {
        tracing::warn!(error = %e, policy = ?shared.policy, "shared sessions unavailable");
        shared.fallback(shared.policy);
        match shared.policy {
            crate::config::OnBackendError::Deny => Some(SessionDenied::Unavailable),
            crate::config::OnBackendError::Local => None,
        }
    }

    /// Starts a session as [`Sessions::start_deferred`] does, under the limits of every
    /// node's sessions when they are shared (nothing is written there yet: a refused device
    /// must cost nobody anything). Finish with [`Sessions::commit`], or
    /// [`Sessions::discard`] the session.
    ///
    /// # Errors
    /// `ConcurrencyLimit`, `Replaced`, `Ended`; `Unavailable` when the shared store does
    /// not answer and the policy is `deny`.
    pub async fn begin(
        &self,
        start: Start<'_>,
        limits: &Limits,
        now: u64,
    ) -> Result<Started, SessionDenied> {
        let local = |start: Start<'_>, limits: &Limits, shared: bool, replaces_shared: bool| {
            self.start_deferred(start, limits, now, new_id)
                .map(|(session, victims)| Started {
                    session,
                    victims,
                    shared,
                    replaces_shared,
                    deferred: false,
                })
        };
        let Some(shared) = self.shared.get() else {
            return local(start, limits, false, false);
        };
        let sid = start.sid.map_or_else(new_id, str::to_owned);
        let named = |sid| Start {
            sid: Some(sid),
            ..start.clone()
        };
        match shared.start(&start, &sid, limits, now, false).await {
            // This node keeps a copy, on the device Redis records (the request may name
            // none); the limits were applied over every node's sessions.
            Ok(Ok(shared::Admitted::Join(existing))) => {
                // Its last request is now, for every node: a viewer resuming here after a
                // pause must not look idle elsewhere until this node's next touch.
                // Replaced or ended since it was read.
                let touched = shared.touch(start.account, &existing.sid, now).await;
                if let Some(refused) = touched.refusal() {
                    return Err(refused);
                }
                local(copy_of(&existing, &start), &Limits::default(), false, false)
            }
            Ok(Ok(shared::Admitted::New { sid, replaced })) => {
                local(named(&sid), &Limits::default(), true, !replaced.is_empty())
            }
            Ok(Err(denied)) => Err(denied),
            Err(e) => match self.backend_failed(shared, &e) {
                Some(denied) => Err(denied),
                None => local(start, limits, false, false).map(|started| Started {
                    deferred: true,
                    ..started
                }),
            },
        }
    }

    /// Records a begun start: on shared sessions it is decided again and written (a start
    /// on another node may have taken the last stream since; then it is refused and
    /// discarded). Then the sessions it replaces give way, on whichever node they play. A
    /// start decided without the shared store is written there once it answers, with the
    /// sessions it replaced on this node.
    ///
    /// # Errors
    /// As [`Sessions::begin`].
    pub async fn commit(
        &self,
        started: Started,
        start: Start<'_>,
        limits: &Limits,
        now: u64,
    ) -> Result<Arc<Session>, SessionDenied> {
        let mut victims = started.victims;
        let mut deferred = started.deferred;
        if let (true, Some(shared)) = (started.shared, self.shared.get()) {
            let sid = &started.session.sid;
            // A take-up names the session begun (a device's own one, when it came to that).
            let start = Start {
                sid: start.sid.map(|_| sid.as_str()),
                ..start
            };
            match shared.start(&start, sid, limits, now, true).await {
                Ok(Ok(shared::Admitted::New { replaced, sid: own })) if own != *sid => {
                    // Another device took the id first (a foreign token's first requests on
                    // two devices at once, on two nodes): Redis recorded this device's own
                    // session. This node holds that one, so the grant carries it and every
                    // node counts the same two streams.
                    // A copy of that session this node still holds, replaced or ended, is
                    // stale: Redis has just admitted it afresh.
                    self.discard(sid);
                    self.discard(&own);
                    self.replace(&replaced);
                    let own = Start {
                        sid: Some(own.as_str()),
                        ..start
                    };
                    let (session, _) = self.start_deferred(own, &Limits::default(), now, new_id)?;
                    return Ok(session);
                }
                Ok(Ok(shared::Admitted::New { replaced, .. })) => victims.extend(replaced),
                Ok(Ok(shared::Admitted::Join(existing))) if existing.sid != *sid => {
                    // The same device started meanwhile on another node: this start is
                    // that session, the one Redis counts.
                    self.discard(sid);
                    return self
                        .start_deferred(copy_of(&existing, &start), &Limits::default(), now, new_id)
                        .map(|(session, _)| session);
                }
                Ok(Ok(shared::Admitted::Join(_))) => {}
                Ok(Err(denied)) => {
                    self.discard(sid);
                    return Err(denied);
                }
                Err(e) => {
                    if let Some(denied) = self.backend_failed(shared, &e) {
                        self.discard(sid);
                        return Err(denied);
                    }
                    deferred = true;
                }
            }
        }
        self.replace(&victims);
        if let (true, Some(shared)) = (deferred, self.shared.get()) {
            // The sessions it replaced here (under this node's limits alone) are written
            // back replaced with it: Redis holds them live.
            shared.defer_writes(std::iter::once(&started.session).chain(&victims));
        }
        Ok(started.session)
    }

    /// [`Sessions::begin`] and [`Sessions::commit`] at once.
    ///
    /// # Errors
    /// As [`Sessions::begin`].
    pub async fn admit(
        &self,
        start: Start<'_>,
        limits: &Limits,
        now: u64,
    ) -> Result<Arc<Session>, SessionDenied> {
        let started = self.begin(start.clone(), limits, now).await?;
        self.commit(started, start, limits, now).await
    }

    /// Marks this node's copy of a session (a change announced by another node). A session
    /// ended elsewhere by id only is recorded as ended in the shared store by the node
    /// that holds it.
    pub fn mark(&self, sid: &str, state: u8) {
        if !matches!(state, REPLACED | ENDED) {
            return;
        }
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let Some(session) = sessions.get(sid).cloned() else {
            return;
        };
        drop(sessions);
        // Only a live session changes: an ended one is not replaced after all, nor the
        // other way round.
        let changed = session
            .state
            .compare_exchange(LIVE, state, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if changed && state == ENDED {
            if let (Some(shared), Ok(runtime)) = (
                self.shared.get().cloned(),
                tokio::runtime::Handle::try_current(),
            ) {
                runtime.spawn(async move {
                    let _ = shared.end(&session.account, &session.sid).await;
                });
            }
        }
    }

    /// The same registry, announcing replaced sessions on `webhooks`.
    pub fn with_webhooks(mut self, webhooks: crate::webhooks::Webhooks) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Starts a session, or joins the live one this device already has for this purchase
    /// (a player reloading its master with the ticket is one viewer, not two).
    ///
    /// # Errors
    /// `ConcurrencyLimit` when the limits refuse it.
    pub fn start(
        &self,
        start: Start<'_>,
        limits: &Limits,
        now: u64,
        new_sid: impl FnOnce() -> String,
    ) -> Result<Arc<Session>, SessionDenied> {
        let (session, victims) = self.start_deferred(start, limits, now, new_sid)?;
        self.replace(&victims);
        Ok(session)
    }

    /// [`Sessions::start`] without its effect on others: the sessions it would replace
    /// are returned, for the caller to [`Sessions::replace`] once the rest of its checks
    /// passed, or to leave alone (and [`Sessions::discard`] the new one) if they did not.
    ///
    /// # Errors
    /// As [`Sessions::start`].
    pub fn start_deferred(
        &self,
        start: Start<'_>,
        limits: &Limits,
        now: u64,
        new_sid: impl FnOnce() -> String,
    ) -> Result<(Arc<Session>, Vec<Arc<Session>>), SessionDenied> {
        let mut sessions = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        let (sid, victims) = match plan(&sessions, &start, limits, now, self.idle)? {
            Plan::Join(existing) => {
                existing.last_seen.store(now, Ordering::Relaxed);
                return Ok((existing, Vec::new()));
            }
            Plan::New { sid, victims } => (sid, victims),
        };
        let session = Arc::new(Session::new(&start, sid.unwrap_or_else(new_sid), now));
        sessions.insert(session.sid.clone(), session.clone());
        Ok((session, victims))
    }

    /// Marks sessions replaced: their next request gets `session_replaced`.
    pub fn replace(&self, victims: &[Arc<Session>]) {
        for old in victims {
            old.state.store(REPLACED, Ordering::Relaxed);
            // A victim read from the shared store is a copy: mark this node's own too.
            self.mark(&old.sid, REPLACED);
            if let Some(webhooks) = &self.webhooks {
                webhooks.emit(crate::webhooks::Event::SessionReplaced {
                    sid: old.sid.clone(),
                    account: old.account.clone(),
                    purchase: old.purchase.clone(),
                    product: old.product.clone(),
                    device: old.device.clone(),
                });
            }
        }
    }

    /// Forgets a session that was started but not let through after all.
    pub fn discard(&self, sid: &str) {
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
    }

    /// Records a request on session `sid` (at most once per touch interval), when it is
    /// live here and, if `purchase` is given, plays under that purchase (one lookup: the
    /// hot path's only one). [`Touch::NotHere`] when usher does not know the session
    /// (restarted, or swept after idling) or it idled out: the caller adopts it with
    /// [`Sessions::start`]. `device`, for a foreign credential's session only: the device
    /// its request names; [`Touch::OnAnotherDevice`] when the session is recorded on
    /// another named device (checked first: a device that replaced it is not refused).
    ///
    /// # Errors
    /// `Replaced` or `Ended`.
    pub fn touch(
        &self,
        sid: &str,
        purchase: Option<&str>,
        device: Option<&str>,
        now: u64,
    ) -> Result<Touch, SessionDenied> {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let Some(session) = sessions.get(sid) else {
            return Ok(Touch::NotHere);
        };
        if on_another_device(session, device) {
            return Ok(Touch::OnAnotherDevice);
        }
        if let Some(refused) = session.refusal() {
            return Err(refused);
        }
        if now.saturating_sub(session.last_seen()) >= self.idle {
            // Idle past the timeout: over. The caller adopts it afresh under the limits.
            return Ok(Touch::NotHere);
        }
        let played = session.purchase.as_deref();
        if purchase.is_some_and(|asked| played.is_some_and(|p| p != asked)) {
            return Ok(Touch::UnderAnother);
        }
        if now >= session.last_seen().saturating_add(self.touch_interval) {
            session.last_seen.store(now, Ordering::Relaxed);
            if let (Some(shared), Ok(runtime)) = (
                self.shared.get().cloned(),
                tokio::runtime::Handle::try_current(),
            ) {
                let session = session.clone();
                runtime.spawn(async move { shared.touch_held(&session, now).await });
            }
        }
        Ok(Touch::Live)
    }

    /// Why session `sid`'s requests are refused, when this node holds it replaced or ended
    /// (whatever its token's expiry: the player must hear the reason, not `expired`).
    pub fn refusal(&self, sid: &str) -> Option<SessionDenied> {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        sessions.get(sid).and_then(|s| s.refusal())
    }

    /// Whether `sid` is live at `now` (for renewing an expired session token).
    pub fn is_live(&self, sid: &str, now: u64) -> bool {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        sessions.get(sid).is_some_and(|s| s.is_live(now, self.idle))
    }

    /// Whether session `sid` (known to this node) plays under `purchase`.
    pub fn plays_under(&self, sid: &str, purchase: &str) -> bool {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(sid)
            .is_some_and(|s| s.purchase.as_deref() == Some(purchase))
    }

    /// A live session of `purchase` from an address in `same_network`, for IP recovery.
    pub fn recoverable(
        &self,
        purchase: &str,
        same_network: impl Fn(IpAddr) -> bool,
        now: u64,
    ) -> Option<Arc<Session>> {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        sessions
            .values()
            .filter(|s| {
                s.purchase.as_deref() == Some(purchase)
                    && s.is_live(now, self.idle)
                    && same_network(s.ip)
            })
            .max_by_key(|s| s.last_seen())
            .cloned()
    }

    /// Ends a session; its next request is refused with `session_ended`.
    pub fn end(&self, sid: &str) -> bool {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        sessions.get(sid).is_some_and(|s| {
            s.state.store(ENDED, Ordering::Relaxed);
            true
        })
    }

    /// Every session this node remembers: the live ones and those that ended, were
    /// replaced or idled out but whose tokens could still verify (until the sweep forgets
    /// them). What a node writes back to Redis after a gap, ends included.
    pub fn remembered(&self) -> Vec<Arc<Session>> {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        sessions.values().cloned().collect()
    }

    /// Every live session at `now`, oldest first.
    pub fn live(&self, now: u64) -> Vec<Arc<Session>> {
        let sessions = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<_> = sessions
            .values()
            .filter(|s| s.is_live(now, self.idle))
            .cloned()
            .collect();
        live.sort_by_key(|s| (s.started_at, s.sid.clone()));
        live
    }

    /// Forgets sessions that idled out or were replaced or ended long enough ago that their
    /// tokens have expired too, and updates the active-sessions gauge.
    pub fn sweep(&self, now: u64, forget_after: u64) {
        let kept = |s: &Session| now < s.last_seen().saturating_add(self.idle.max(forget_after));
        if let Some(shared) = self.shared.get() {
            shared.remember_for(forget_after);
            shared.retain_deferred(kept);
        }
        let mut sessions = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| kept(s));
        let live = sessions
            .values()
            .filter(|s| s.is_live(now, self.idle))
            .count();
        self.active.set(live as i64);
    }
}

#[cfg(test)]
mod tests;
