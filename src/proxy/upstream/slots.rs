//! How many requests one server is asked at once (`upstream.max_requests`): each request
//! holds a slot from the moment it is sent until its response body has ended or been
//! dropped, so misses, byte ranges and streams a client reads slowly cannot open more than
//! that many upstream requests.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::proxy::{Body, BoxError};

/// One server's slots.
#[derive(Debug, Clone)]
pub struct Slots {
    free: Arc<Semaphore>,
    limit: u32,
    in_flight: IntGauge,
}

/// One slot taken: given back, and `usher_upstream_in_flight` lowered, when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    in_flight: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Slots {
    /// `limit` slots, the number taken shown in `in_flight`.
    pub fn new(limit: u32, in_flight: IntGauge) -> Self {
        Self {
            free: Arc::new(Semaphore::new(limit as usize)),
            limit,
            in_flight,
        }
    }

    /// How many there are.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// A slot, waiting up to `wait` for one to be given back; `None` when none was.
    pub async fn take(&self, wait: Duration) -> Option<Slot> {
        let free = self.free.clone();
        // The semaphore is never closed: an error is the timeout.
        let permit = tokio::time::timeout(wait, free.acquire_owned())
            .await
            .ok()?
            .ok()?;
        self.in_flight.inc();
        Some(Slot {
            _permit: permit,
            in_flight: self.in_flight.clone(),
        })
    }
}

/// A response body that gives its slot back when it ends, fails or is dropped.
pub struct Held {
    inner: Body,
    slot: Option<Slot>,
}

impl Held {
    /// `inner`, holding `slot` until it ends.
    pub fn new(inner: Body, slot: Slot) -> Self {
        Self {
            inner,
            slot: Some(slot),
        }
    }
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.slot = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn body(text: &'static str) -> Body {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed()
    }

    fn one_slot() -> (Slots, IntGauge) {
        let gauge = IntGauge::new("in_flight", "in flight").unwrap();
        (Slots::new(1, gauge.clone()), gauge)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_held_until_the_body_ends() {
        let (slots, in_flight) = one_slot();
        let slot = slots.take(Duration::from_secs(1)).await.expect("one free");
        let mut held = Held::new(body("abc"), slot);
        assert_eq!(in_flight.get(), 1);
        assert!(
            slots.take(Duration::from_secs(1)).await.is_none(),
            "the only slot is held"
        );
        let data = held.frame().await.unwrap().unwrap();
        assert_eq!(data.into_data().unwrap(), "abc");
        assert!(held.frame().await.is_none());
        assert_eq!(in_flight.get(), 0, "given back at the end");
        assert!(slots.take(Duration::ZERO).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_body_gives_its_slot_back_to_a_waiter() {
        let (slots, in_flight) = one_slot();
        let held = Held::new(body("abc"), slots.take(Duration::ZERO).await.unwrap());
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take(Duration::from_secs(5)).await.is_some() }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiting.await.unwrap(), "the waiter got the slot");
        assert_eq!(in_flight.get(), 0);
    }
}
