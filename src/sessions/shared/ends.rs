//! Ends by session id alone. A node ending a session it does not hold (the operator's
//! `DELETE /api/v1/sessions/{sid}` through any node, the sessions other nodes play on a
//! device freed through this one, found in its account's records, an IP recovery) writes
//! an end marker, `usher:end:{sid}`, that lasts as long as the records do
//! ([`SharedSessions::key_ttl_ms`]): it does not always know the account whose hash holds
//! the session's record, and the node playing the session reads the marker with its
//! touch, which does not read the record. An announcement alone could be lost: a
//! subscriber whose connection died unnoticed still counts as having heard it.
//!
//! The marker is read where a session's state matters and Redis is asked anyway, never on a
//! segment request: by every start reading an account's sessions (a live record with a
//! marker reads as ended), by a node catching up after a gap (its sessions with a marker
//! end, and the end is written into their records), by the throttled background touch,
//! and by an expired session token's request on a node that does not hold its session
//! ([`super::live`]).
//!
//! An index, `usher:sid:{sid}` naming the account, tells a node asked to end a session it
//! does not hold whether Redis knows that id at all (the index entry, or an end marker):
//! an id no node knows is answered as such, and no marker is written for it. Written with
//! a new session's record (a start, a write-back), and by every background touch of this
//! version's nodes, so also for a session Redis holds no record of (kept without rights,
//! or admitted while Redis did not answer) and one a node of an earlier version started
//! (once a node of this version touches it), it lasts as long as the records do.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{BackendError, SharedSessions, Touched};
use crate::sessions::{Session, ENDED, LIVE};

/// The end marker of session `sid`.
pub(super) fn key(sid: &str) -> String {
    format!("usher:end:{{{sid}}}")
}

/// The index entry of session `sid`: the account whose records hold it (in the slot of
/// its end marker).
pub(super) fn index_key(sid: &str) -> String {
    format!("usher:sid:{{{sid}}}")
}

impl SharedSessions {
    /// Indexes `sids` as sessions of `account`, for as long as the account's records
    /// last (one round trip; none when `sids` is empty).
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(super) async fn index(&self, account: &str, sids: &[&str]) -> Result<(), BackendError> {
        if sids.is_empty() {
            return Ok(());
        }
        let ttl = self.key_ttl_ms();
        self.call("index", |mut conn| {
            let mut pipe = redis::pipe();
            for sid in sids {
                pipe.pset_ex(index_key(sid), account, ttl).ignore();
            }
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    /// Whether Redis knows session `sid`, whichever node plays it: a node indexed it (its
    /// start, a write-back, a touch within its records' lifetime) or it carries an end
    /// marker (one round trip). The index answers, not the record: Redis holds no record
    /// of a session kept without rights (`rights.source = "none"`), nor of one admitted
    /// while Redis did not answer until it is written back, and both play on a node whose
    /// touches index them.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(in crate::sessions) async fn knows(&self, sid: &str) -> Result<bool, BackendError> {
        let (index, marker) = (index_key(sid), key(sid));
        let found: u64 = self
            .call("index", |mut conn| {
                // One slot: both keys carry the session id as their hash tag.
                let (index, marker) = (index.clone(), marker.clone());
                async move {
                    redis::cmd("EXISTS")
                        .arg(index)
                        .arg(marker)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(found > 0)
    }

    /// Records that `sid` was ended, whichever account it belongs to.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(in crate::sessions) async fn end_by_id(&self, sid: &str) -> Result<(), BackendError> {
        let (marker, ttl) = (key(sid), self.key_ttl_ms());
        self.call("end_marker", |mut conn| {
            let marker = marker.clone();
            async move {
                redis::cmd("SET")
                    .arg(marker)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    /// Which of `sids` were ended by id (one round trip; none when `sids` is empty).
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(super) async fn ended_by_id(&self, sids: &[&str]) -> Result<HashSet<String>, BackendError> {
        if sids.is_empty() {
            return Ok(HashSet::new());
        }
        let markers: Vec<String> = sids.iter().map(|sid| key(sid)).collect();
        let found: Vec<bool> = self
            .call("end_marker", |mut conn| {
                let mut pipe = redis::pipe();
                for marker in &markers {
                    pipe.exists(marker);
                }
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        Ok(sids
            .iter()
            .zip(found)
            .filter(|(_, ended)| *ended)
            .map(|(sid, _)| (*sid).to_owned())
            .collect())
    }

    /// Every session of `account` that Redis holds (copies, whatever their state), for
    /// ending a freed device's sessions on whichever node plays them.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(in crate::sessions) async fn sessions_of(
        &self,
        account: &str,
    ) -> Result<Vec<Arc<Session>>, BackendError> {
        Ok(self.read(account).await?.0.into_values().collect())
    }

    /// Reads the live ones of `sessions` (copies read from Redis, live at `now`) that were
    /// ended by id as ended, and says whether `named` (the session a start takes up, live
    /// or not, with a record or without) was; returns the ended copies, for the caller to
    /// write their ends into their records.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(super) async fn apply_ends(
        &self,
        sessions: &HashMap<String, Arc<Session>>,
        named: Option<&str>,
        now: u64,
    ) -> Result<(Vec<Arc<Session>>, bool), BackendError> {
        let mut asked: Vec<&str> = sessions
            .values()
            .filter(|s| s.is_live(now, self.idle))
            .map(|s| s.sid.as_str())
            .collect();
        if let Some(named) = named.filter(|n| !asked.contains(n)) {
            asked.push(named);
        }
        let ended = self.ended_by_id(&asked).await?;
        let copies: Vec<Arc<Session>> = ended
            .iter()
            .filter_map(|sid| sessions.get(sid))
            .filter(|s| s.state.load(Ordering::Relaxed) == LIVE)
            .cloned()
            .collect();
        for session in &copies {
            session.state.store(ENDED, Ordering::Relaxed);
        }
        Ok((copies, named.is_some_and(|n| ended.contains(n))))
    }

    /// Writes a touch of `session`, this node's copy (throttled by the caller); when it was
    /// ended by id meanwhile, ends it here and writes the end into its record; when its
    /// record says another node replaced or ended it, marks it so here.
    pub(in crate::sessions) async fn touch_held(&self, session: &Session, now: u64) {
        let mark = |state| {
            session
                .state
                .compare_exchange(LIVE, state, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        };
        match self.touch(&session.account, &session.sid, now).await {
            Touched::EndedById if mark(ENDED) => {
                if let Err(e) = self.end(&session.account, &session.sid).await {
                    // Not lost: this copy is ended, and the marker stays for the others.
                    tracing::warn!(error = %e, "an end by id not yet written into its record");
                }
            }
            // Replaced or ended by another node whose announcement did not come: stopped
            // here within a touch interval all the same.
            Touched::Recorded(state) if mark(state) => {
                tracing::info!(state, "a session change heard at its touch, not announced");
            }
            _ => {}
        }
    }

    /// Ends this node's live copies (of `mine`) that were ended by id while it was not
    /// listening, so that catching up writes their ends into their records.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(super) async fn end_marked(&self, mine: &[Arc<Session>]) -> Result<(), BackendError> {
        let live: Vec<&str> = mine
            .iter()
            .filter(|s| s.state.load(Ordering::Relaxed) == LIVE)
            .map(|s| s.sid.as_str())
            .collect();
        let ended = self.ended_by_id(&live).await?;
        for session in mine.iter().filter(|s| ended.contains(&s.sid)) {
            let _ =
                session
                    .state
                    .compare_exchange(LIVE, ENDED, Ordering::Relaxed, Ordering::Relaxed);
        }
        Ok(())
    }
}
