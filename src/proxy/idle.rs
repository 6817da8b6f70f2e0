//! Connections that move no bytes: an IO wrapper that notes progress, and a watchdog that
//! ends a connection once a whole `idle` interval passed without any.
//!
//! hyper's header timeout only covers an HTTP/1.1 request head once the protocol is known.
//! Before that (the bytes that tell HTTP/1.1 from h2), and for the whole life of an h2
//! connection, nothing else ends a client that connects and stays silent, or that asks for
//! an object and never reads it, holding a descriptor and the body in memory.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An IO that records, in a flag shared with [`until_idle`], that bytes moved.
pub struct Watched<S> {
    inner: S,
    moved: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    /// `inner`, watched; the flag to hand to [`until_idle`].
    pub fn new(inner: S) -> (Self, Arc<AtomicBool>) {
        let moved = Arc::new(AtomicBool::new(true));
        (
            Self {
                inner,
                moved: moved.clone(),
            },
            moved,
        )
    }

    fn note<T>(&self, polled: Poll<std::io::Result<T>>, moved: bool) -> Poll<std::io::Result<T>> {
        if moved {
            self.moved.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let moved = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        self.note(polled, moved)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.note(polled, moved)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.note(polled, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes once a whole `idle` interval passed in which no byte moved on the connection
/// whose flag `moved` is (so within twice `idle` of its last byte); never, for a zero
/// `idle`.
pub async fn until_idle(moved: Arc<AtomicBool>, idle: Duration) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    loop {
        tick.tick().await;
        if !moved.swap(false, Ordering::Relaxed) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_moves_no_bytes_is_idle_after_one_to_two_intervals() {
        let (client, server) = tokio::io::duplex(64);
        let (mut watched, moved) = Watched::new(server);
        let idle = Duration::from_secs(60);
        let watchdog = tokio::spawn(until_idle(moved, idle));
        let mut client = client;
        // Bytes every 50 s keep it open past several intervals.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            watched.read_exact(&mut one).await.unwrap();
            assert!(!watchdog.is_finished(), "bytes moved within each interval");
        }
        let last = tokio::time::Instant::now();
        watchdog.await.unwrap();
        let quiet = last.elapsed();
        assert!(quiet >= idle && quiet <= idle * 2, "{quiet:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_count_as_progress_too() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut watched, moved) = Watched::new(server);
        let watchdog = tokio::spawn(until_idle(moved, Duration::from_secs(60)));
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            watched.write_all(b"segment bytes").await.unwrap();
            assert!(!watchdog.is_finished());
        }
        let mut got = vec![0u8; 4 * 13];
        client.read_exact(&mut got).await.unwrap();
    }
}
