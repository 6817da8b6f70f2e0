//! One upstream fetch in flight, shared by everyone who asked for the object meanwhile:
//! the first viewer and every later one read the same chunks as they arrive, and all see
//! the same error if it fails.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::watch;

use super::budget::Grant;
use super::entry::Head;
use crate::proxy::upstream::UpstreamError;
use crate::proxy::{Body, BoxError};

/// Where the fetch is.
#[derive(Debug, Default)]
enum Progress {
    /// No response head yet.
    #[default]
    Waiting,
    /// The head, the chunks so far, and how the body ended once it has.
    Body {
        head: Arc<Head>,
        /// The chunks held, from the `base`th of the body (0 until a body too large to
        /// keep whole drops what lies behind its window, see [`Fill::push_within`]).
        chunks: VecDeque<Bytes>,
        base: usize,
        /// Bytes in `chunks`.
        held: u64,
        /// The bytes of `shield.max_in_flight_bytes` those chunks take (none for a kept
        /// copy served on errors: its bytes are the cache's). It goes back with them, once
        /// the fetch and its last reader are done.
        grant: Option<Grant>,
        /// How deep the body is held once the budget refused it more: what it held then
        /// (see [`Fill::push_within`]).
        cap: u64,
        end: Option<Result<(), String>>,
        /// A kept copy served on errors, this many seconds old (sent as `Age`).
        stale: Option<u64>,
    },
    /// No response: every waiter gets this.
    Failed(UpstreamError),
    /// Not for the shield (too large to hold): every waiter fetches it on its own.
    Pass,
}

/// A fetch in flight.
#[derive(Debug)]
pub struct Fill {
    progress: watch::Sender<Progress>,
}

/// The body of a shared fetch broke off.
#[derive(Debug, thiserror::Error)]
#[error("upstream body failed: {0}")]
pub struct BrokenBody(String);

/// What a reader got: a response to send, and whether it is a stale copy.
pub struct Joined {
    /// The response.
    pub response: Response<Body>,
    /// Whether it was served past its lifetime because every upstream failed, or the
    /// body broke off before its first bytes.
    pub stale: bool,
}

impl Fill {
    /// A fetch that has not answered yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            progress: watch::Sender::new(Progress::Waiting),
        })
    }

    /// The response head arrived (`stale`: it is a kept copy served on errors, of that
    /// age in seconds). The body's chunks are held against `grant`.
    pub fn head(&self, head: Arc<Head>, stale: Option<u64>, grant: Option<Grant>) {
        self.progress.send_replace(Progress::Body {
            head,
            chunks: VecDeque::new(),
            base: 0,
            held: 0,
            grant,
            cap: u64::MAX,
            end: None,
            stale,
        });
    }

    /// A body chunk arrived; whether it is within the budget (see [`Fill::push_within`]).
    pub fn push(&self, chunk: Bytes) -> bool {
        self.push_within(chunk, u64::MAX)
    }

    /// A body chunk arrived, of a body held only `window` bytes deep: the oldest chunks
    /// go once more are held. A reader who falls further behind than that gets a broken
    /// body; the fetch is not held back for it, and memory stays bounded.
    ///
    /// `false`: the budget of bytes in flight refused the body more room (now or
    /// before). From then on it is held no deeper than it was then (and the newest chunk,
    /// which the budget shows all the same): the window shrinks to that.
    pub fn push_within(&self, chunk: Bytes, window: u64) -> bool {
        let mut within = true;
        self.progress.send_modify(|p| {
            if let Progress::Body {
                chunks,
                base,
                held,
                grant,
                cap,
                ..
            } = p
            {
                *held += chunk.len() as u64;
                chunks.push_back(chunk);
                trim(chunks, base, held, window.min(*cap));
                if let Some(grant) = grant {
                    if !grant.cover(*held) {
                        *cap = (*cap).min(grant.bytes());
                        trim(chunks, base, held, *cap);
                        grant.force(*held);
                    }
                }
                within = *cap == u64::MAX;
            }
        });
        within
    }

    /// The last chunk of a body already kept whole (see [`Fill::push_within`]), held
    /// whatever the budget says (which shows it all the same): a body complete and kept
    /// is not cut down to a window, which would break its readers behind.
    pub fn push_last(&self, chunk: Bytes) {
        self.progress.send_modify(|p| {
            if let Progress::Body {
                chunks,
                held,
                grant,
                ..
            } = p
            {
                *held += chunk.len() as u64;
                chunks.push_back(chunk);
                if let Some(grant) = grant {
                    grant.force(*held);
                }
            }
        });
    }

    /// The body ended: completely, or broken off with a reason.
    pub fn finish(&self, end: Result<(), String>) {
        self.progress.send_modify(|p| {
            if let Progress::Body { end: slot, .. } = p {
                *slot = Some(end);
            }
        });
    }

    /// The fetch is over: a reader still waiting for a head gets an error, and one waiting
    /// for more body gets a broken body. Nothing changes for a fetch that ended properly.
    pub fn abandon(&self) {
        self.progress.send_if_modified(|p| match p {
            Progress::Waiting => {
                *p = Progress::Failed(UpstreamError::Protocol("shared fetch abandoned".to_owned()));
                true
            }
            Progress::Body {
                end: end @ None, ..
            } => {
                *end = Some(Err("shared fetch abandoned".to_owned()));
                true
            }
            _ => false,
        });
    }

    /// The object is not for the shield: waiters fetch it on their own.
    pub fn pass(&self) {
        self.progress.send_replace(Progress::Pass);
    }

    /// No response came.
    pub fn fail(&self, error: UpstreamError) {
        self.progress.send_replace(Progress::Failed(error));
    }

    /// Waits for the head and answers with a body that follows the fetch from its first
    /// byte (empty for HEAD), the headers made private for shared caches when `private`;
    /// `None` when the object is not for the shield.
    ///
    /// # Errors
    /// The fetch's [`UpstreamError`] when no response came.
    pub async fn join(
        &self,
        head_only: bool,
        private: bool,
        outcome: &'static str,
    ) -> Result<Option<Joined>, UpstreamError> {
        let mut rx = self.progress.subscribe();
        let (head, stale) = loop {
            match &*rx.borrow_and_update() {
                Progress::Waiting => {}
                Progress::Body { head, stale, .. } => break (head.clone(), *stale),
                Progress::Failed(e) => return Err(e.clone()),
                Progress::Pass => return Ok(None),
            }
            if rx.changed().await.is_err() {
                return Err(UpstreamError::Protocol("shared fetch abandoned".to_owned()));
            }
        };
        let body = if head_only {
            http_body_util::Empty::new().map_err(|e| match e {}).boxed()
        } else {
            follow(rx)
        };
        let outcome = if stale.is_some() { "stale" } else { outcome };
        Ok(Some(Joined {
            // A stale copy says how old it is, so a cache in front does not take it for
            // a fresh one.
            response: head.response(body, outcome, stale, private),
            stale: stale.is_some(),
        }))
    }
}

/// Drops the oldest of `chunks` (`held` bytes, the first of them the `base`th of the
/// body) until they hold no more than `window` bytes, or only the newest is left.
fn trim(chunks: &mut VecDeque<Bytes>, base: &mut usize, held: &mut u64, window: u64) {
    while *held > window && chunks.len() > 1 {
        let dropped = chunks.pop_front().expect("more than one chunk");
        *held -= dropped.len() as u64;
        *base += 1;
    }
}

/// The body chunks as they are published, from the first.
fn follow(rx: watch::Receiver<Progress>) -> Body {
    let stream =
        futures_util::stream::unfold((rx, 0usize, false), |(mut rx, next, done)| async move {
            if done {
                return None;
            }
            loop {
                let step = match &*rx.borrow_and_update() {
                    Progress::Body { base, .. } if next < *base => Some(Err(
                        "fell behind a shared fetch too large to hold".to_owned(),
                    )),
                    Progress::Body {
                        chunks, base, end, ..
                    } => match (chunks.get(next - base), end) {
                        (Some(chunk), _) => Some(Ok(chunk.clone())),
                        (None, Some(Ok(()))) => return None,
                        (None, Some(Err(why))) => Some(Err(why.clone())),
                        (None, None) => None,
                    },
                    _ => Some(Err("shared fetch lost".to_owned())),
                };
                match step {
                    Some(Ok(chunk)) => {
                        return Some((Ok(Frame::data(chunk)), (rx, next + 1, false)))
                    }
                    Some(Err(why)) => {
                        let err: BoxError = Box::new(BrokenBody(why));
                        return Some((Err(err), (rx, next, true)));
                    }
                    None => {
                        if rx.changed().await.is_err() {
                            // The fetch task is gone; whatever it published is all there is.
                            let complete = matches!(
                                &*rx.borrow(),
                                Progress::Body { chunks, base, end: Some(Ok(())), .. }
                                    if base + chunks.len() <= next
                            );
                            if complete {
                                return None;
                            }
                            let err: BoxError =
                                Box::new(BrokenBody("fetch ended early".to_owned()));
                            return Some((Err(err), (rx, next, true)));
                        }
                    }
                }
            }
        });
    StreamBody::new(stream).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, StatusCode};

    /// A fill whose head (200, no headers) is in, holding `grant` of a budget.
    fn headed(grant: Option<super::super::budget::Grant>) -> Arc<Fill> {
        let fill = Fill::new();
        fill.head(
            Arc::new(Head::new(StatusCode::OK, HeaderMap::new())),
            None,
            grant,
        );
        fill
    }

    #[tokio::test]
    async fn an_abandoned_fetch_fails_its_waiters_instead_of_holding_them() {
        let waiting = Fill::new();
        let reader = tokio::spawn({
            let fill = waiting.clone();
            async move { fill.join(false, false, "coalesced").await.map(|_| ()) }
        });
        waiting.abandon();
        assert!(reader.await.unwrap().is_err(), "no head: an error");

        let midway = Fill::new();
        midway.head(
            Arc::new(Head::new(StatusCode::OK, HeaderMap::new())),
            None,
            None,
        );
        midway.push(Bytes::from_static(b"half"));
        let joined = midway
            .join(false, false, "coalesced")
            .await
            .unwrap()
            .unwrap();
        midway.abandon();
        let body = joined.response.into_body().collect().await;
        assert!(
            body.is_err(),
            "a body broken off is an error, not a short body"
        );

        let done = Fill::new();
        done.head(
            Arc::new(Head::new(StatusCode::OK, HeaderMap::new())),
            None,
            None,
        );
        done.push(Bytes::from_static(b"whole"));
        done.finish(Ok(()));
        done.abandon();
        let joined = done.join(false, false, "coalesced").await.unwrap().unwrap();
        let body = joined.response.into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "whole", "a finished fetch stays finished");
    }

    /// A body too large to hold is held through a window: a reader that keeps up gets
    /// every byte, one that falls further behind gets a broken body, and no more than the
    /// window (and one chunk) is ever held.
    #[tokio::test]
    async fn a_body_held_through_a_window_serves_who_keeps_up_and_breaks_who_lags() {
        let fill = headed(None);
        let lagging = fill.join(false, false, "coalesced").await.unwrap().unwrap();
        let keeping_up = fill.join(false, false, "coalesced").await.unwrap().unwrap();
        let mut keeping_up = keeping_up.response.into_body();
        let mut got = Vec::new();
        for n in 0..10u8 {
            fill.push_within(Bytes::from(vec![n; 10]), 30);
            let frame = keeping_up.frame().await.unwrap().unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
            let held = match &*fill.progress.borrow() {
                Progress::Body { held, .. } => *held,
                _ => unreachable!(),
            };
            assert!(held <= 30, "{held} bytes held");
        }
        fill.finish(Ok(()));
        assert!(keeping_up.frame().await.is_none(), "ended whole");
        assert_eq!(got.len(), 100);
        assert_eq!(got[95], 9);
        let lagged = lagging.response.into_body().collect().await;
        assert!(lagged.is_err(), "fell behind the window: broken, not short");
    }

    /// A body of unknown length held against a budget: once the budget refuses it more,
    /// it is held no deeper than it was then, a reader that keeps up still gets every
    /// byte, and the bytes go back to the budget once the fetch is over and its last
    /// reader has read to the end, not before.
    #[tokio::test]
    async fn a_body_past_the_budget_stops_growing_and_gives_its_bytes_back_when_read() {
        let gauge = prometheus::IntGauge::new("held", "held").unwrap();
        let budget = super::super::budget::Budget::new(30, gauge.clone());
        let fill = headed(budget.grant(0));
        let reader = fill.join(false, false, "miss").await.unwrap().unwrap();
        let mut reader = reader.response.into_body();
        let mut got = Vec::new();
        let mut within = Vec::new();
        for n in 0..10u8 {
            within.push(fill.push(Bytes::from(vec![n; 10])));
            let frame = reader.frame().await.unwrap().unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
            assert!(gauge.get() <= 40, "{} bytes held", gauge.get());
        }
        assert_eq!(
            within,
            [[true; 3].as_slice(), &[false; 7]].concat(),
            "30 bytes fit, the 40th does not, and once refused always refused"
        );
        assert_eq!(got.len(), 100);
        assert_eq!(got[99], 9);
        fill.finish(Ok(()));
        drop(fill);
        assert!(
            gauge.get() > 0,
            "the fetch over, a reader not at the end yet holds the bytes"
        );
        assert!(reader.frame().await.is_none(), "ended whole");
        assert_eq!(
            gauge.get(),
            0,
            "given back once the last reader read the end"
        );
        assert!(budget.grant(30).is_some(), "the whole budget again");
    }

    /// A fetch that fails or is passed by gives its bytes back at once, though a reader
    /// still holds the channel.
    #[tokio::test]
    async fn a_failed_or_passed_fetch_gives_its_bytes_back() {
        let gauge = prometheus::IntGauge::new("held", "held").unwrap();
        let budget = super::super::budget::Budget::new(100, gauge.clone());
        for end in [0, 1] {
            let fill = headed(budget.grant(60));
            let reader = fill.join(false, false, "miss").await.unwrap().unwrap();
            assert_eq!(gauge.get(), 60);
            if end == 0 {
                fill.fail(UpstreamError::Protocol("gone".to_owned()));
            } else {
                fill.pass();
            }
            assert_eq!(gauge.get(), 0, "end {end}");
            drop(reader);
        }
    }
}
