//! A response body that must end by a deadline (the server's total timeout): a stalled
//! origin fails the response instead of holding it open.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::proxy::{Body, BoxError};

/// `inner`, failing with [`TotalTimeout`] once `deadline` passes before it ends.
pub struct Deadline {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    total: Duration,
}

/// The body did not end within the total timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream response did not complete within {0:?}")]
pub struct TotalTimeout(pub Duration);

impl Deadline {
    /// Wraps `inner`.
    pub fn new(inner: Body, deadline: Instant, total: Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            total,
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TotalTimeout(this.total))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
