//! Sessions shared by every node through Redis (`sessions.backend = "redis"`), so a
//! concurrency limit counts the account's streams on all nodes, and a session replaced or
//! ended on one node is refused on the node playing it at its next request.
//!
//! Per account, two hashes with a common hash tag (one cluster slot):
//! `usher:{account}:s` holds each session as JSON (and the field `~v`, a version bumped by
//! every change), `usher:{account}:seen` each session's last request time. A start reads
//! both, decides with the same [`super::plan`] a single node uses, and writes its outcome
//! with a script that applies it only if the version is still the one it read (otherwise it
//! reads again), so two nodes starting sessions for one account at once cannot both take
//! the last stream. A session's record stays as long as a token of its could verify (the
//! session token's lifetime past its last request, at least two idle timeouts), so one
//! ended or replaced is refused everywhere rather than adopted again; the keys expire two
//! idle timeouts after that without a change. Each session's id is indexed to its account
//! (`usher:sid:{sid}`, [`ends`]), for ending it by id through a node that does not hold it.
//!
//! Segment requests stay off the network: each node touches its own copy, and at most once
//! per `touch_interval` per session writes the time to Redis in the background (only an
//! expired session token whose session this node does not hold live asks Redis, [`live`]).
//! Replacing or ending a session is announced on the channel `usher:sessions`
//! ([`announce`], which carries the operator's shield purges too, each also recorded in
//! Redis, [`purges`]); every node marks its copy at once, and after (re)subscribing
//! re-reads the state of the sessions it holds and applies the purges it missed.
//!
//! A connection Redis stopped answering on without closing it is replaced ([`link`]). What
//! Redis missed (a start or an end decided while it did not answer, a Redis that restarted
//! empty) is written back once it answers ([`write_back`]).

mod announce;
mod ends;
mod follow;
mod link;
mod live;
mod purges;
mod write_back;

pub use live::LiveElsewhere;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::limits::{own_session, plan, Plan};
use super::{Limits, Session, SessionDenied, Start, ENDED, LIVE, REPLACED};
use crate::config::{OnBackendError, RedisConfig};
use crate::metrics::SessionsBackendMetrics;

/// Writes the changes a start decided, if the account's sessions are still at the version
/// read: `KEYS` the sessions and seen hashes; `ARGV` the version, the key lifetime in ms,
/// then triples `op field value`: `s` sets a session, `t` its last-seen time, `d` deletes
/// it. 1 when written, 0 when another node changed the account first.
const COMMIT: &str = r"
local v = redis.call('HGET', KEYS[1], '~v') or '0'
if v ~= ARGV[1] then return 0 end
redis.call('HINCRBY', KEYS[1], '~v', 1)
local i = 3
while i <= #ARGV do
  local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 's' then redis.call('HSET', KEYS[1], field, value)
  elseif op == 't' then redis.call('HSET', KEYS[2], field, value)
  elseif op == 'd' then redis.call('HDEL', KEYS[1], field); redis.call('HDEL', KEYS[2], field)
  end
  i = i + 3
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// One session as stored in Redis.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    purchase: Option<String>,
    product: Option<String>,
    device: Option<String>,
    ip: IpAddr,
    started_at: u64,
    state: u8,
}

impl Record {
    fn of(session: &Session) -> Self {
        Record {
            purchase: session.purchase.clone(),
            product: session.product.clone(),
            device: session.device.clone(),
            ip: session.ip,
            started_at: session.started_at,
            state: session.state.load(Ordering::Relaxed),
        }
    }
}

/// Why the shared store did not answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub(crate) String);

impl From<redis::RedisError> for BackendError {
    fn from(e: redis::RedisError) -> Self {
        BackendError(e.to_string())
    }
}

/// What a shared start decided.
pub(super) enum Admitted {
    /// The start joins this live session (as Redis records it).
    Join(Arc<Session>),
    /// A new session was recorded (or, without commit, may be) under `sid`; `replaced`
    /// gave way.
    New {
        /// Its id: the one asked for, or the device's own session a take-up came to
        /// ([`super::device_session`]).
        sid: String,
        /// The sessions that gave way.
        replaced: Vec<Arc<Session>>,
    },
}

/// The Redis side of the session registry.
pub struct SharedSessions {
    link: link::Link,
    idle: u64,
    /// Seconds a session's record stays after its last request: as long as a token of its
    /// could still verify, so an ended or replaced one is refused, not adopted again by a
    /// node that does not hold it (at least twice the idle timeout).
    remember: AtomicU64,
    timeout: Duration,
    /// What a start gets when Redis does not answer.
    pub policy: OnBackendError,
    metrics: SessionsBackendMetrics,
    /// Sessions started or ended here while Redis did not answer, by id: written back once
    /// it answers again ([`write_back`]).
    deferred: std::sync::Mutex<HashMap<String, Arc<Session>>>,
    /// This node's id in its purge announcements ([`announce`]).
    node: String,
    /// Redis time (ms) up to which this node applied every recorded purge ([`purges`]).
    purges_heard: AtomicU64,
    /// The purges this node applied, left by its catch-ups ([`purges`]).
    purges_applied: purges::Applied,
}

/// What a touch of a session read of it in Redis ([`SharedSessions::touch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Touched {
    /// Nothing new (or Redis did not answer).
    Nothing,
    /// Ended by id meanwhile (its marker): its record is still to be written ended.
    EndedById,
    /// Its record holds it replaced or ended (this state) by another node.
    Recorded(u8),
}

impl Touched {
    /// What a request joining the session is told: nothing when it is still live.
    pub(super) fn refusal(self) -> Option<SessionDenied> {
        match self {
            Touched::Nothing => None,
            Touched::Recorded(REPLACED) => Some(SessionDenied::Replaced),
            Touched::Recorded(_) | Touched::EndedById => Some(SessionDenied::Ended),
        }
    }
}

fn keys(account: &str) -> (String, String) {
    (
        format!("usher:{{{account}}}:s"),
        format!("usher:{{{account}}}:seen"),
    )
}

impl SharedSessions {
    /// Connects to `config.url` (the connection reconnects by itself after a failure, and
    /// is replaced when it does not answer).
    ///
    /// # Errors
    /// When the URL is bad or Redis cannot be reached at start.
    pub async fn connect(
        config: &RedisConfig,
        idle: u64,
        remember: u64,
        metrics: SessionsBackendMetrics,
    ) -> Result<Self, BackendError> {
        let client = redis::Client::open(config.url.as_str())?;
        let shared = Self {
            link: link::Link::connect(client, config.timeout).await?,
            idle,
            remember: AtomicU64::new(remember),
            timeout: config.timeout,
            policy: config.on_backend_error,
            metrics,
            deferred: std::sync::Mutex::default(),
            node: purges::new_node_id(),
            purges_heard: AtomicU64::new(0),
            purges_applied: purges::Applied::default(),
        };
        // Purges recorded before this node connected concern nothing its shield holds.
        shared.heard_purge(shared.redis_now().await?);
        Ok(shared)
    }

    /// Whether this node is subscribed to the other nodes' session changes.
    pub fn is_up(&self) -> bool {
        self.metrics.up.get() == 1
    }

    /// Counts a start decided without the shared store, by `policy`.
    pub(super) fn fallback(&self, policy: OnBackendError) {
        let policy = match policy {
            OnBackendError::Deny => "deny",
            OnBackendError::Local => "local",
        };
        self.metrics.fallbacks.with_label_values(&[policy]).inc();
    }

    /// Runs one Redis call within the timeout, counting failures by `op`. A call that
    /// finds the connection broken is made once more: the first failure sets the
    /// connection reconnecting, and the second waits for it. A call that gets no answer
    /// has the connection replaced, for the calls after it.
    async fn call<T, F, Fut>(&self, op: &'static str, work: F) -> Result<T, BackendError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let (generation, conn) = self.link.conn();
            let silent = || {
                self.link.replace(generation);
                BackendError(format!("no answer within {:?}", self.timeout))
            };
            match tokio::time::timeout(self.timeout, work(conn)).await {
                Ok(Ok(value)) => break Ok(value),
                Ok(Err(e)) if e.is_timeout() => break Err(silent()),
                Ok(Err(e))
                    if attempt == 1
                        && (e.is_io_error()
                            || e.is_connection_dropped()
                            || e.is_connection_refusal()) => {}
                Ok(Err(e)) => break Err(BackendError::from(e)),
                Err(_) => break Err(silent()),
            }
        };
        self.metrics
            .seconds
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.errors.with_label_values(&[op]).inc();
        }
        result
    }

    /// Every session of `account` as Redis holds it, and the version read.
    async fn read(
        &self,
        account: &str,
    ) -> Result<(HashMap<String, Arc<Session>>, String), BackendError> {
        let (sessions_key, seen_key) = keys(account);
        let (records, seen): (HashMap<String, String>, HashMap<String, u64>) = self
            .call("read", |mut conn| {
                let (a, b) = (sessions_key.clone(), seen_key.clone());
                async move {
                    redis::pipe()
                        .hgetall(a)
                        .hgetall(b)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        let mut version = "0".to_owned();
        let mut sessions = HashMap::new();
        for (sid, json) in records {
            if sid == "~v" {
                version = json;
                continue;
            }
            let Ok(record) = serde_json::from_str::<Record>(&json) else {
                continue;
            };
            let last_seen = seen.get(&sid).copied().unwrap_or(record.started_at);
            let session = Session {
                sid: sid.clone(),
                account: account.to_owned(),
                purchase: record.purchase,
                product: record.product,
                device: record.device,
                ip: record.ip,
                started_at: record.started_at,
                last_seen: AtomicU64::new(last_seen),
                state: AtomicU8::new(record.state),
            };
            sessions.insert(sid, Arc::new(session));
        }
        Ok((sessions, version))
    }

    /// Decides `start` against every node's sessions of its account (a new session is
    /// named `sid`; a session it takes up that was ended by id is refused). With `commit`,
    /// records the outcome (the new session, the sessions it replaces, stale sessions
    /// dropped) and announces the replaced ones; without, only decides (a refusal costs
    /// no write).
    ///
    /// # Errors
    /// The refusal (`Ok(Err)`), or the backend failure.
    pub(super) async fn start(
        &self,
        start: &Start<'_>,
        sid: &str,
        limits: &Limits,
        now: u64,
        commit: bool,
    ) -> Result<Result<Admitted, SessionDenied>, BackendError> {
        for _ in 0..16 {
            let (sessions, version) = self.read(start.account).await?;
            let (ended_by_id, named_ended) = self.apply_ends(&sessions, start.sid, now).await?;
            // Unless the take-up is another device's own session: that one is decided.
            if named_ended && own_session(&sessions, start, now, self.idle).is_none() {
                return Ok(Err(SessionDenied::Ended));
            }
            let planned = plan(&sessions, start, limits, now, self.idle);
            let (planned_sid, victims) = match planned {
                Err(denied) => return Ok(Err(denied)),
                Ok(Plan::Join(existing)) => {
                    if commit {
                        let touched = self.touch(start.account, &existing.sid, now).await;
                        if let Some(refused) = touched.refusal() {
                            return Ok(Err(refused));
                        }
                    }
                    return Ok(Ok(Admitted::Join(existing)));
                }
                Ok(Plan::New { sid: own, victims }) => (own, victims),
            };
            let sid = planned_sid.as_deref().unwrap_or(sid);
            if !commit {
                let sid = sid.to_owned();
                return Ok(Ok(Admitted::New {
                    sid,
                    replaced: victims,
                }));
            }
            let fresh = Session::new(start, sid.to_owned(), now);
            let mut args: Vec<String> = vec![version, self.key_ttl_ms().to_string()];
            let mut op = |op: &str, field: &str, value: String| {
                args.extend([op.to_owned(), field.to_owned(), value]);
            };
            op("s", sid, json(&Record::of(&fresh)));
            op("t", sid, now.to_string());
            for ended in &ended_by_id {
                op("s", &ended.sid, json(&Record::of(ended)));
            }
            for victim in &victims {
                victim.state.store(REPLACED, Ordering::Relaxed);
                op("s", &victim.sid, json(&Record::of(victim)));
            }
            for old in sessions.values() {
                let forget_at = old.last_seen().saturating_add(self.remembered());
                if now >= forget_at && old.sid != sid {
                    op("d", &old.sid, String::new());
                }
            }
            let written = self.commit(start.account, &args).await?;
            if written {
                // Its id leads to its record, for an end through a node that does not hold
                // it; if this write fails, its first background touch makes it.
                if let Err(e) = self.index(start.account, &[sid]).await {
                    tracing::warn!(error = %e, "a new session not indexed in the shared store");
                }
                for victim in &victims {
                    self.announce(&victim.sid, REPLACED).await;
                }
                let sid = sid.to_owned();
                return Ok(Ok(Admitted::New {
                    sid,
                    replaced: victims,
                }));
            }
        }
        Err(BackendError(
            "the account's sessions kept changing; gave up after 16 tries".into(),
        ))
    }

    /// Records a request on a session (in the background of the request that made it), and
    /// reads what other nodes did to it meanwhile: an end by id ([`ends`]), or a replacement
    /// or end its record holds (its announcement may have been lost: a PUBLISH Redis did not
    /// take, a subscription that missed it). [`Touched::Nothing`] also when Redis did not
    /// answer (counted in the backend errors).
    #[must_use]
    pub(super) async fn touch(&self, account: &str, sid: &str, now: u64) -> Touched {
        let (sessions_key, seen_key) = keys(account);
        let ttl = self.key_ttl_ms() as i64;
        // Both keys, and its index entry, live on while a session plays, however long since
        // the last start.
        let touched = self
            .call("touch", |mut conn| {
                let (sessions, seen, sid) =
                    (sessions_key.clone(), seen_key.clone(), sid.to_owned());
                async move {
                    redis::pipe()
                        .hset(&seen, &sid, now)
                        .ignore()
                        .pexpire(&seen, ttl)
                        .ignore()
                        .pexpire(&sessions, ttl)
                        .ignore()
                        .pset_ex(ends::index_key(&sid), account, ttl as u64)
                        .ignore()
                        .exists(ends::key(&sid))
                        .hget(&sessions, &sid)
                        .query_async::<(bool, Option<String>)>(&mut conn)
                        .await
                }
            })
            .await;
        match touched {
            Ok((true, _)) => Touched::EndedById,
            Ok((false, Some(record))) => serde_json::from_str::<Record>(&record)
                .ok()
                .filter(|r| r.state != LIVE)
                .map_or(Touched::Nothing, |r| Touched::Recorded(r.state)),
            _ => Touched::Nothing,
        }
    }

    /// Marks a session ended (the operator's `DELETE /api/v1/sessions/{sid}` on any node).
    /// `Ok(false)` when Redis does not hold it.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(super) async fn end(&self, account: &str, sid: &str) -> Result<bool, BackendError> {
        for _ in 0..16 {
            let (sessions, version) = self.read(account).await?;
            let Some(session) = sessions.get(sid) else {
                return Ok(false);
            };
            session.state.store(ENDED, Ordering::Relaxed);
            let args = [
                version,
                self.key_ttl_ms().to_string(),
                "s".to_owned(),
                sid.to_owned(),
                json(&Record::of(session)),
            ];
            let written = self.commit(account, &args).await?;
            if written {
                self.announce(sid, ENDED).await;
                return Ok(true);
            }
        }
        Err(BackendError("the account's sessions kept changing".into()))
    }

    /// Sets how long a record stays after its session's last request (the session token's
    /// lifetime, which a reload may change).
    pub fn remember_for(&self, seconds: u64) {
        self.remember.store(seconds, Ordering::Relaxed);
    }

    /// Seconds a record stays after its session's last request.
    fn remembered(&self) -> u64 {
        self.remember
            .load(Ordering::Relaxed)
            .max(self.idle.saturating_mul(2))
    }

    /// The keys' expiry: twice the idle timeout past the records they must keep, so an
    /// account whose sessions all ended keeps them as long as their tokens verify.
    fn key_ttl_ms(&self) -> u64 {
        self.remembered()
            .saturating_add(self.idle.saturating_mul(2))
            .max(60)
            .saturating_mul(1000)
    }

    /// Runs [`COMMIT`] for `account` with `args`; whether it wrote.
    async fn commit(&self, account: &str, args: &[String]) -> Result<bool, BackendError> {
        let (sessions_key, seen_key) = keys(account);
        let script = redis::Script::new(COMMIT);
        let written: i64 = self
            .call("commit", |mut conn| {
                let mut invocation = script.key(&sessions_key);
                invocation.key(&seen_key).arg(args);
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(written == 1)
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("session records serialize")
}
