//! Shield purges kept in Redis, so that a node that did not hear one (its subscription
//! was broken, or had died unnoticed, when the purge was announced) applies it when it
//! catches up after subscribing again.
//!
//! Each purge is recorded and announced by one script ([`RECORD`]), so the two cannot part:
//! the prefix goes into the sorted set [`LOG`], scored by Redis's clock in milliseconds (a
//! prefix purged again takes the later time), and the announcement carries that time and
//! the sending node's id. [`LOG`] keeps the newest [`KEEP`] prefixes of the last
//! [`KEEP_FOR`]; the latest time it dropped is kept in [`TRIMMED`].
//!
//! Each node remembers up to when it has applied every recorded purge (`purges_heard`,
//! Redis time): from when it connected, raised by each purge it hears and by each catch-up.
//! A catch-up applies the prefixes recorded since then (less [`MARGIN_MS`], should Redis's
//! clock have stepped back, as on a failover to a replica whose clock is behind), and
//! purges the whole shield when [`LOG`] dropped a purge newer than that. A purge applied
//! twice drops only what was fetched in between; so each node also remembers which purges
//! it applied ([`Applied`]: those it heard, sent, or caught up with), and its catch-up
//! leaves the ones it finds there, and applies the others in one purge of the shield.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use super::{BackendError, SharedSessions};

/// The purges recorded: a sorted set of prefixes, each scored by the Redis time (ms) of
/// its latest purge.
pub(super) const LOG: &str = "usher:{purges}:log";

/// The Redis time (ms) of the newest purge [`LOG`] dropped (same hash slot as [`LOG`]).
pub(super) const TRIMMED: &str = "usher:{purges}:trimmed";

/// How many prefixes [`LOG`] keeps at most.
const KEEP: usize = 1000;

/// How long [`LOG`] keeps a purge at least (it is dropped at the first purge after that).
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// How far before the last time a node knew it had heard every purge its catch-up reads.
const MARGIN_MS: u64 = 60_000;

/// Records a purge and announces it, at once: `KEYS` [`LOG`] and [`TRIMMED`]; `ARGV` the
/// prefix, the prefix as a JSON string, the node's id as a JSON string, [`KEEP`],
/// [`KEEP_FOR`] in ms, the channel. Drops from [`LOG`] what is past [`KEEP`] or
/// [`KEEP_FOR`], raising [`TRIMMED`] to the newest time dropped. Returns how many
/// subscribers the announcement was handed to, and the time recorded.
const RECORD: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = string.format('%.0f', now)
redis.call('ZADD', KEYS[1], at, ARGV[1])
local cutoff = '(' .. string.format('%.0f', now - tonumber(ARGV[5]))
local old = redis.call('ZCOUNT', KEYS[1], '-inf', cutoff)
local drop = math.max(redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4]), old)
if drop > 0 then
  local newest = tonumber(redis.call('ZRANGE', KEYS[1], drop - 1, drop - 1, 'WITHSCORES')[2])
  local trimmed = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('SET', KEYS[2], string.format('%.0f', math.max(trimmed, newest)))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, drop - 1)
end
local message = '{"purge":' .. ARGV[2] .. ',"node":' .. ARGV[3] .. ',"at":' .. at .. '}'
return {redis.call('PUBLISH', ARGV[6], message), now}
"#;

/// The purges a node applied, by prefix: the Redis time (ms) of the latest it applied
/// under each. [`LOG`] holds the time of each prefix's latest purge, so a catch-up leaves
/// a prefix whose time there is the one remembered, and applies one whose time differs:
/// a purge recorded since, also one recorded earlier, by a Redis clock that stepped back.
/// Bounded: what no catch-up reads any more goes (older than `heard` less [`MARGIN_MS`]),
/// then the oldest past [`KEEP`] (forgetting one only costs applying it again).
#[derive(Default)]
pub(super) struct Applied(Mutex<HashMap<String, u64>>);

impl Applied {
    /// Notes the purge under `prefix` recorded `at` as applied; `heard` is the node's
    /// `purges_heard`.
    pub(super) fn note(&self, prefix: String, at: u64, heard: u64) {
        let mut applied = self.0.lock().unwrap_or_else(|p| p.into_inner());
        applied.insert(prefix, at);
        if applied.len() > KEEP {
            applied.retain(|_, at| *at >= heard.saturating_sub(MARGIN_MS));
        }
        while applied.len() > KEEP {
            let oldest = applied.iter().min_by_key(|(_, at)| **at).map(|(p, _)| p);
            let oldest = oldest.expect("not empty").clone();
            applied.remove(&oldest);
        }
    }

    /// Of the purges `recorded` ([`LOG`]'s prefixes and times), those not applied yet,
    /// each noted as applied now (the caller applies them); forgets what no later
    /// catch-up reads (older than `since`, where it read from).
    pub(super) fn take_new(&self, recorded: Vec<(String, u64)>, since: u64) -> Vec<String> {
        let mut applied = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = Vec::new();
        for (prefix, at) in recorded {
            if applied.get(&prefix) != Some(&at) {
                new.push(prefix.clone());
                applied.insert(prefix, at);
            }
        }
        applied.retain(|_, at| *at >= since);
        new
    }
}

/// A node's id in its announcements: 16 random hex digits, new at each start.
pub(super) fn new_node_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SharedSessions {
    /// Records a purge under `prefix` in [`LOG`] and announces it to every node; how many
    /// subscribers Redis handed it to.
    ///
    /// # Errors
    /// When Redis did not run it (nothing recorded, no node told), or the announcement
    /// failed after the record was written (the other nodes apply it when they next catch
    /// up).
    pub(super) async fn record_purge(&self, prefix: &str) -> Result<i64, BackendError> {
        let script = redis::Script::new(RECORD);
        let args = [
            prefix.to_owned(),
            super::json(&prefix),
            super::json(&self.node),
            KEEP.to_string(),
            KEEP_FOR.as_millis().to_string(),
            super::announce::CHANNEL.to_owned(),
        ];
        let (told, at): (i64, u64) = self
            .call("purge", |mut conn| {
                let mut invocation = script.key(LOG);
                invocation.key(TRIMMED).arg(&args);
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        // The caller purged this node's shield already.
        self.applied_purge(prefix.to_owned(), at);
        Ok(told)
    }

    /// Redis's clock now, in milliseconds.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub(super) async fn redis_now(&self) -> Result<u64, BackendError> {
        let (secs, micros): (u64, u64) = self
            .call("time", |mut conn| async move {
                redis::cmd("TIME").query_async(&mut conn).await
            })
            .await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Notes a purge heard on the channel, recorded at `at` (Redis time, ms): the
    /// subscription brings announcements in the order they were recorded, so every purge
    /// recorded until then was heard.
    pub(super) fn heard_purge(&self, at: u64) {
        self.purges_heard.fetch_max(at, Ordering::AcqRel);
    }

    /// Notes that this node applied the purge under `prefix` recorded `at` (Redis time,
    /// ms): a catch-up that reads it back leaves it.
    pub(super) fn applied_purge(&self, prefix: String, at: u64) {
        let heard = self.purges_heard.load(Ordering::Acquire);
        self.purges_applied.note(prefix, at, heard);
    }

    /// The prefixes to purge after (re)subscribing: those recorded since this node last
    /// knew it had heard every purge, less those it applied already ([`Applied`]; `/`
    /// alone when [`LOG`] dropped one of them). The caller must be subscribed already,
    /// and apply them: this node counts them heard and applied.
    ///
    /// # Errors
    /// When Redis does not answer (nothing is counted heard).
    pub(super) async fn missed_purges(&self) -> Result<Vec<String>, BackendError> {
        let heard = self.purges_heard.load(Ordering::Acquire);
        let since = heard.saturating_sub(MARGIN_MS);
        // TIME first: a purge recorded after it reaches the subscription, one recorded
        // before it is in the range read after it.
        type Read = ((u64, u64), Vec<(String, f64)>, Option<u64>);
        let ((secs, micros), recorded, trimmed): Read = self
            .call("missed_purges", |mut conn| async move {
                redis::pipe()
                    .cmd("TIME")
                    .cmd("ZRANGEBYSCORE")
                    .arg(LOG)
                    .arg(since)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .get(TRIMMED)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        self.heard_purge(secs * 1000 + micros / 1000);
        let read = recorded.len();
        // Scores are whole milliseconds, well within a double's exact integers.
        let recorded = recorded
            .into_iter()
            .filter(|(p, _)| p.starts_with('/'))
            .map(|(p, at)| (p, at as u64))
            .collect();
        let new = self.purges_applied.take_new(recorded, since);
        if trimmed.is_some_and(|t| t > heard) {
            tracing::warn!(
                "purges this node did not hear were dropped from Redis; purging the whole shield"
            );
            return Ok(vec!["/".to_owned()]);
        }
        tracing::debug!(read, new = new.len(), "purges recorded while not heard");
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::{Applied, KEEP, MARGIN_MS};

    fn log(purges: &[(&str, u64)]) -> Vec<(String, u64)> {
        purges
            .iter()
            .map(|(p, at)| ((*p).to_owned(), *at))
            .collect()
    }

    #[test]
    fn a_catch_up_leaves_the_purges_applied_and_applies_the_others_once() {
        let applied = Applied::default();
        let now = 10 * MARGIN_MS;
        applied.note("/heard/".to_owned(), now - 5, now);
        applied.note("/again/".to_owned(), now - 9, now);
        applied.note("/stepped/".to_owned(), now - 2, now);
        // `/again/` purged anew since, `/stepped/` too but by a clock that stepped back.
        let recorded = log(&[
            ("/heard/", now - 5),
            ("/again/", now - 1),
            ("/stepped/", now - 30),
            ("/missed/", now - 3),
        ]);
        let since = now - MARGIN_MS;
        let new = applied.take_new(recorded.clone(), since);
        assert_eq!(new, ["/again/", "/stepped/", "/missed/"]);
        assert!(
            applied.take_new(recorded, since).is_empty(),
            "the next catch-up reading them applies none again"
        );
        let later = now + 2 * MARGIN_MS;
        applied.take_new(Vec::new(), later - MARGIN_MS);
        assert!(
            applied.0.lock().unwrap().is_empty(),
            "what no catch-up reads any more is forgotten"
        );
    }

    #[test]
    fn the_purges_remembered_are_bounded() {
        let applied = Applied::default();
        let now = 10 * MARGIN_MS;
        for n in 0..KEEP as u64 + 5 {
            applied.note(format!("/p{n}/"), now - 10_000 + n, now);
        }
        let kept = applied.0.lock().unwrap();
        assert_eq!(kept.len(), KEEP);
        assert!(
            !kept.contains_key("/p4/") && kept.contains_key("/p5/"),
            "the oldest go"
        );
    }
}
