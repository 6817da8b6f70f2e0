//! The two connections a node keeps to Redis, and how each is found dead when Redis stops
//! answering on it without closing it (a Redis that moved behind its address, a partition
//! that sends no reset): such a connection would otherwise stay until the system's TCP
//! timeout, every call on it waiting out `sessions.redis.timeout`.
//!
//! - The command connection ([`Link`]) is replaced when a call on it gets no answer within
//!   the timeout: a new connection is made in the background and takes its place, and the
//!   old one is closed once the calls still holding it have given up.
//! - The subscription is asked to answer at a steady pace ([`silence`]); three questions in
//!   a row without an answer within the timeout end it, and it is made anew.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};

/// Questions in a row the subscription may leave unanswered before it is dropped.
const MISSES: u32 = 3;

/// The longest pause between two questions to the subscription.
const MAX_PACE: Duration = Duration::from_secs(5);

/// The command connection: a [`ConnectionManager`] (which reconnects by itself when the
/// connection breaks), replaced by a new one when a call gets no answer.
pub(super) struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
    current: Arc<RwLock<Current>>,
    /// Whether a replacement is being made (one at a time).
    replacing: Arc<AtomicBool>,
}

/// The connection calls use now, and which one it is (counting replacements).
struct Current {
    generation: u64,
    conn: ConnectionManager,
}

impl Link {
    /// Connects with `client`, each attempt and each answer bounded by `timeout`.
    ///
    /// # Errors
    /// When Redis cannot be reached or does not answer.
    pub(super) async fn connect(
        client: redis::Client,
        timeout: Duration,
    ) -> Result<Self, super::BackendError> {
        // Each reconnection is one attempt within the timeout (the next call that finds
        // the connection broken makes another): with the library's defaults a
        // reconnection kept retrying, with growing pauses, behind calls that had given up
        // on it, and a node stayed without a working connection after Redis came back.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let conn = open(&client, &config, timeout).await?;
        Ok(Self {
            client,
            config,
            timeout,
            current: Arc::new(RwLock::new(Current {
                generation: 0,
                conn,
            })),
            replacing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The client the connections are made with.
    pub(super) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The connection to call on, and its generation (for [`Link::replace`]).
    pub(super) fn conn(&self) -> (u64, ConnectionManager) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.generation, current.conn.clone())
    }

    /// Replaces the connection of `generation`, which did not answer, with a new one made
    /// in the background (unless it was replaced already, or a replacement is under way).
    /// Calls go on using it until the new one is made; when none can be made, the next
    /// call that gets no answer tries again.
    pub(super) fn replace(&self, generation: u64) {
        if self.conn().0 != generation || self.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("Redis did not answer; replacing the connection");
        let (client, config, timeout) = (self.client.clone(), self.config.clone(), self.timeout);
        let (current, replacing) = (self.current.clone(), self.replacing.clone());
        tokio::spawn(async move {
            match open(&client, &config, timeout).await {
                Ok(conn) => {
                    let mut current = current.write().unwrap_or_else(|e| e.into_inner());
                    if current.generation == generation {
                        *current = Current {
                            generation: generation + 1,
                            conn,
                        };
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot replace the Redis connection"),
            }
            replacing.store(false, Ordering::Release);
        });
    }
}

/// A new connection, made within five times `timeout` (the library's one attempt, the
/// handshake and the setup commands each wait up to `timeout`).
async fn open(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
    timeout: Duration,
) -> Result<ConnectionManager, super::BackendError> {
    let made = ConnectionManager::new_with_config(client.clone(), config.clone());
    tokio::time::timeout(timeout * 5, made)
        .await
        .map_err(|_| super::BackendError("no answer from Redis".into()))?
        .map_err(super::BackendError::from)
}

/// How often the subscription is asked to answer: twice the answer `timeout`, at most
/// [`MAX_PACE`].
pub(super) fn pace(timeout: Duration) -> Duration {
    (timeout * 2).min(MAX_PACE)
}

/// Resolves when the subscription `sink` belongs to stops answering: at every
/// [`pace`] it subscribes again to `channel`, which it already follows (Redis answers
/// that, changing nothing; the library's subscription cannot send a `PING`, and would take
/// Redis's answer to one for a broken message), and [`MISSES`] answers in a row that do not
/// come within `timeout` end it.
pub(super) async fn silence(mut sink: PubSubSink, channel: &str, timeout: Duration) {
    let mut misses = 0;
    loop {
        tokio::time::sleep(pace(timeout)).await;
        match tokio::time::timeout(timeout, sink.subscribe(channel)).await {
            Ok(Ok(())) => misses = 0,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the session change subscription broke");
                return;
            }
            Err(_) => {
                misses += 1;
                if misses >= MISSES {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_is_asked_every_twice_the_timeout_and_at_most_five_seconds_apart() {
        assert_eq!(pace(Duration::from_millis(500)), Duration::from_secs(1));
        assert_eq!(pace(Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(pace(Duration::from_secs(10)), Duration::from_secs(5));
    }
}
