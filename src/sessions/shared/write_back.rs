//! Writing back what Redis missed, so every node counts a session as it stands:
//!
//! - a session this node started, replaced (under its own limits) or ended while Redis did
//!   not answer (`on_backend_error = "local"`; an end that could not be recorded): it is
//!   kept as deferred, and written back at the pace the subscription is asked to answer
//!   once Redis answers again, even when the subscription never broke (a Redis stalled for
//!   a moment, a call that timed out);
//! - after a gap in the subscription, every session this node remembers (a restarted Redis
//!   holds nothing; an end it could not take).
//!
//! A session is written with the record a start writes, as it stands here: one ended by
//! id meanwhile (its end marker, [`super::ends`]) is written ended, and stops here; one
//! that idled out is not brought back. A deferred session written ended or replaced is
//! announced, for the other nodes holding a copy of it (one that played on several). The
//! write-back applies no limit: if another node admitted sessions of the account
//! meanwhile, the account may hold more than its limits allow, and the next start of the
//! account (on any node) is decided over all of them (refused, or replacing the oldest).
//! A viewer let in is not stopped for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{json, link, BackendError, Record, SharedSessions};
use crate::sessions::{Session, LIVE};

/// What a [`SharedSessions::catch_up`] found: the state Redis holds of each session of
/// the accounts levelled, to mark here.
pub(super) struct CaughtUp {
    marks: Vec<(String, u8)>,
}

impl CaughtUp {
    /// Marks the sessions `state` holds as Redis holds them.
    pub(super) fn mark(&self, state: &crate::proxy::State) {
        for (sid, mark) in &self.marks {
            state.sessions.mark(sid, *mark);
        }
    }
}

impl SharedSessions {
    /// Keeps `sessions`, started, replaced or ended while Redis did not answer, to write
    /// back once it answers again (an account's at once: a write-back takes all of them or
    /// none).
    pub(in crate::sessions) fn defer_writes<'s>(
        &self,
        sessions: impl IntoIterator<Item = &'s Arc<Session>>,
    ) {
        let mut deferred = self.deferred_sessions();
        for session in sessions {
            deferred.insert(session.sid.clone(), session.clone());
        }
        self.count_pending(&deferred);
    }

    /// Forgets the deferred sessions `keep` says no (as the registry forgets them).
    pub(in crate::sessions) fn retain_deferred(&self, keep: impl Fn(&Session) -> bool) {
        let mut deferred = self.deferred_sessions();
        deferred.retain(|_, s| keep(s));
        self.count_pending(&deferred);
    }

    fn deferred_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.deferred.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shows how many sessions wait to be written back
    /// (`usher_sessions_write_back_pending`).
    fn count_pending(&self, deferred: &HashMap<String, Arc<Session>>) {
        self.metrics
            .pending
            .set(i64::try_from(deferred.len()).unwrap_or(i64::MAX));
    }

    /// Writes back the deferred sessions until the process ends: at every
    /// [`link::pace`], while this node is subscribed (after a gap [`SharedSessions::settle`]
    /// catches up with all of them), and marks the states Redis holds in `state`.
    pub(super) async fn write_back_deferred(self: Arc<Self>, state: Arc<crate::proxy::State>) {
        let mut ticks = tokio::time::interval(link::pace(self.timeout));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let deferred: Vec<Arc<Session>> = self.deferred_sessions().values().cloned().collect();
            if deferred.is_empty() || !self.is_up() {
                continue;
            }
            match self.catch_up(&deferred, (state.clock)()).await {
                // An account not levelled was logged and counted, and stays deferred.
                Ok(caught) => caught.mark(&state),
                Err(e) => tracing::warn!(
                    error = %e,
                    sessions = deferred.len(),
                    "sessions decided without Redis not written back yet"
                ),
            }
        }
    }

    /// Brings this node and Redis level over `sessions` (after a gap, every one this node
    /// remembers; else the deferred ones): each that Redis holds takes Redis's state here,
    /// unless it ended here (or was ended by id, [`super::ends`]) while Redis holds it
    /// live; that end, and each live or ended session Redis does not hold, is written back,
    /// so the limits count it as it stands. They are no longer deferred (unless one changed
    /// meanwhile).
    ///
    /// Each account is levelled on its own: one whose sessions cannot be (its read or
    /// write fails, or they keep changing) is logged, counted in
    /// `usher_sessions_backend_errors_total{op="write_back"}` and its sessions are
    /// deferred (after a gap too), so that [`SharedSessions::write_back_deferred`] tries
    /// them again, while the others' are written back. Returns the states to mark.
    ///
    /// # Errors
    /// When Redis does not answer before any account is levelled (its ping, the end
    /// markers), or no longer answers after an account failed: nothing is taken as
    /// levelled (the accounts written meanwhile are written again, to the same end).
    pub(super) async fn catch_up(
        &self,
        sessions: &[Arc<Session>],
        now: u64,
    ) -> Result<CaughtUp, BackendError> {
        // The command connection answers too (not only the subscription).
        self.ping().await?;
        self.end_marked(sessions).await?;
        // As levelled: one that changes meanwhile (an end Redis could not take) stays
        // deferred.
        let levelled: Vec<u8> = sessions
            .iter()
            .map(|s| s.state.load(Ordering::Relaxed))
            .collect();
        let mut marks = Vec::new();
        let mut by_account: HashMap<&str, Vec<&Arc<Session>>> = HashMap::new();
        for s in sessions {
            by_account.entry(&s.account).or_default().push(s);
        }
        let mut failed = HashSet::new();
        for (account, mine) in by_account {
            // What Redis holds is marked here also when the account's write fails: a
            // replacement or an end another node made stops the session here all the same.
            let mut read = Vec::new();
            let outcome = self.level(account, &mine, now, &mut read).await;
            marks.append(&mut read);
            if let Err(e) = outcome {
                self.metrics.errors.with_label_values(&["write_back"]).inc();
                tracing::warn!(
                    error = %e,
                    account,
                    sessions = mine.len(),
                    "an account's sessions not levelled with Redis; tried again later"
                );
                failed.insert(account);
                // Redis itself may have gone (a timeout, a broken connection): then each
                // account left would wait out the timeout in turn. Nothing more is
                // levelled on this pass, and all of it is tried again.
                self.ping().await?;
            }
        }
        let mut deferred = self.deferred_sessions();
        for (s, state) in sessions.iter().zip(levelled) {
            if failed.contains(&*s.account) {
                // Left to the write-back: one gap's account does not keep this node from
                // catching up with the others (and with missed purges).
                deferred.entry(s.sid.clone()).or_insert_with(|| s.clone());
                continue;
            }
            // Not one deferred anew under the same id meanwhile (a session taken up again).
            let same = deferred.get(&s.sid).is_some_and(|d| Arc::ptr_eq(d, s));
            if same && s.state.load(Ordering::Relaxed) == state {
                deferred.remove(&s.sid);
            }
        }
        self.count_pending(&deferred);
        Ok(CaughtUp { marks })
    }

    /// Whether Redis answers on the command connection.
    async fn ping(&self) -> Result<(), BackendError> {
        self.call("ping", |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// [`SharedSessions::catch_up`] for `mine`, sessions of `account`. `marks` gets the
    /// states Redis holds of them, as last read (also when the write then fails).
    async fn level(
        &self,
        account: &str,
        mine: &[&Arc<Session>],
        now: u64,
        marks: &mut Vec<(String, u8)>,
    ) -> Result<(), BackendError> {
        for _ in 0..16 {
            let (held, version) = self.read(account).await?;
            // Missing from Redis (a restarted Redis holds nothing, a start it never saw),
            // or live there while ended or replaced here (an end Redis could not take):
            // written back, so the limits count it as it stands. An end is never undone.
            let missing: Vec<&Arc<Session>> = mine
                .iter()
                .copied()
                .filter(|s| match held.get(&s.sid) {
                    // An idled-out session is not brought back to count again.
                    None => s.is_live(now, self.idle) || s.state.load(Ordering::Relaxed) != LIVE,
                    Some(h) => {
                        h.state.load(Ordering::Relaxed) == LIVE
                            && s.state.load(Ordering::Relaxed) != LIVE
                    }
                })
                .collect();
            *marks = mine
                .iter()
                .filter_map(|s| {
                    Some((
                        s.sid.clone(),
                        held.get(&s.sid)?.state.load(Ordering::Relaxed),
                    ))
                })
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            // Which were decided here without Redis, read before the write: once it lands,
            // a concurrent catch-up may take them out of the deferred set.
            let local: Vec<bool> = {
                let deferred = self.deferred_sessions();
                missing
                    .iter()
                    .map(|s| deferred.contains_key(&s.sid))
                    .collect()
            };
            let mut args = vec![version, self.key_ttl_ms().to_string()];
            let mut ends = Vec::new();
            for (s, local) in missing.iter().zip(&local) {
                let record = Record::of(s);
                if *local && record.state != LIVE {
                    ends.push((s.sid.as_str(), record.state));
                }
                args.extend(["s".to_owned(), s.sid.clone(), json(&record)]);
                args.extend([
                    "t".to_owned(),
                    s.sid.clone(),
                    s.last_seen().max(now).to_string(),
                ]);
            }
            if self.commit(account, &args).await? {
                self.count_written(&local);
                let sids: Vec<&str> = missing.iter().map(|s| s.sid.as_str()).collect();
                if let Err(e) = self.index(account, &sids).await {
                    // Their next background touch indexes those that play on.
                    tracing::warn!(error = %e, "sessions written back but not indexed");
                }
                // Nodes holding a copy (a session that played on several) were not told
                // of an end or a replacement decided here while Redis did not answer.
                for (sid, state) in ends {
                    self.announce(sid, state).await;
                }
                return Ok(());
            }
        }
        Err(BackendError(
            "the account's sessions kept changing; gave up after 16 tries".into(),
        ))
    }

    /// Counts sessions written in `usher_sessions_written_back_total`, by cause: `local`
    /// tells, for each, whether it was deferred.
    fn count_written(&self, local: &[bool]) {
        let deferred = local.iter().filter(|l| **l).count();
        for (cause, n) in [("local", deferred), ("gap", local.len() - deferred)] {
            if n > 0 {
                self.metrics
                    .written_back
                    .with_label_values(&[cause])
                    .inc_by(n as u64);
                tracing::info!(sessions = n, cause, "sessions written back to Redis");
            }
        }
    }
}
