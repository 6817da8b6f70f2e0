//! Following the other nodes: the subscription to [`announce::CHANNEL`], (re)made with
//! backoff, the catch-up after each (re)subscription, and the changes and purges heard on
//! it applied to this node's sessions and shield.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{announce, link, BackendError, SharedSessions};

impl SharedSessions {
    /// Follows the other nodes' session changes and purges until the process ends, marking
    /// the sessions `state` holds and purging its shield; after each (re)subscription it
    /// re-reads the state of all of them, and applies the purges recorded meanwhile.
    /// Reconnects with backoff (100 ms doubling to 5 s), also when the subscription stops
    /// answering ([`link::silence`]). Meanwhile, writes back what this node decided without
    /// Redis ([`super::write_back`]).
    pub async fn follow(self: Arc<Self>, state: Arc<crate::proxy::State>) {
        tokio::spawn(self.clone().write_back_deferred(state.clone()));
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.subscribe().await {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(100);
                    // Changes arriving meanwhile wait in the subscription.
                    if self.settle(&state).await {
                        self.metrics.up.set(1);
                        self.listen(pubsub, &state).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to session changes")
                }
            }
            self.metrics.up.set(0);
            self.metrics.errors.with_label_values(&["subscribe"]).inc();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// A new connection subscribed to [`announce::CHANNEL`], made within five times the
    /// timeout (a Redis that accepts and never answers does not hold the node up).
    async fn subscribe(&self) -> Result<redis::aio::PubSub, BackendError> {
        let made = async {
            let mut pubsub = self.link.client().get_async_pubsub().await?;
            pubsub.subscribe(announce::CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        tokio::time::timeout(self.timeout * 5, made)
            .await
            .map_err(|_| BackendError("no answer from Redis".into()))?
            .map_err(BackendError::from)
    }

    /// Catches up with what the subscription missed: session changes
    /// ([`SharedSessions::catch_up`]) and purges ([`SharedSessions::missed_purges`]); the
    /// command connection may still be reconnecting, so it tries a few times. Whether it
    /// did; an account whose sessions could not be levelled is left to the write-back
    /// (see [`SharedSessions::catch_up`]).
    async fn settle(&self, state: &crate::proxy::State) -> bool {
        let mut pause = Duration::from_millis(50);
        for _ in 0..8 {
            let now = (state.clock)();
            let caught = async {
                let caught = self.catch_up(&state.sessions.remembered(), now).await?;
                caught.mark(state);
                self.missed_purges().await
            };
            match caught.await {
                Ok(purges) => {
                    if !purges.is_empty() {
                        let purged = state.shield.purge_all(&purges);
                        tracing::info!(
                            purged,
                            prefixes = purges.len(),
                            "shield purged, as nodes announced while not heard"
                        );
                    }
                    return true;
                }
                Err(e) => tracing::warn!(error = %e, "sessions not caught up yet"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        false
    }

    /// Applies what `pubsub` brings to `state` ([`SharedSessions::hear`]) until it breaks
    /// or stops answering.
    async fn listen(&self, pubsub: redis::aio::PubSub, state: &crate::proxy::State) {
        let (sink, mut messages) = pubsub.split();
        let silence = link::silence(sink, announce::CHANNEL, self.timeout);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    self.hear(&payload, state);
                }
                () = &mut silence => {
                    tracing::warn!("the session change subscription stopped answering");
                    return;
                }
            }
        }
        tracing::warn!("session change subscription lost");
    }
}
