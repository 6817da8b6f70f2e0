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
//! twice drops only what was fetched in between.

use std::sync::atomic::Ordering;
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
/// subscribers the announcement was handed to.
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
return redis.call('PUBLISH', ARGV[6], message)
"#;

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
        self.call("purge", |mut conn| {
            let mut invocation = script.key(LOG);
            invocation.key(TRIMMED).arg(&args);
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
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

    /// The prefixes to purge after (re)subscribing: those recorded since this node last
    /// knew it had heard every purge (`/` alone when [`LOG`] dropped one of them). The
    /// caller must be subscribed already, and apply them: this node counts them heard.
    ///
    /// # Errors
    /// When Redis does not answer (nothing is counted heard).
    pub(super) async fn missed_purges(&self) -> Result<Vec<String>, BackendError> {
        let heard = self.purges_heard.load(Ordering::Acquire);
        let since = heard.saturating_sub(MARGIN_MS);
        // TIME first: a purge recorded after it reaches the subscription, one recorded
        // before it is in the range read after it.
        let ((secs, micros), prefixes, trimmed): ((u64, u64), Vec<String>, Option<u64>) = self
            .call("missed_purges", |mut conn| async move {
                redis::pipe()
                    .cmd("TIME")
                    .cmd("ZRANGEBYSCORE")
                    .arg(LOG)
                    .arg(since)
                    .arg("+inf")
                    .get(TRIMMED)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        self.heard_purge(secs * 1000 + micros / 1000);
        if trimmed.is_some_and(|t| t > heard) {
            tracing::warn!(
                "purges this node did not hear were dropped from Redis; purging the whole shield"
            );
            return Ok(vec!["/".to_owned()]);
        }
        Ok(prefixes
            .into_iter()
            .filter(|p| p.starts_with('/'))
            .collect())
    }
}
