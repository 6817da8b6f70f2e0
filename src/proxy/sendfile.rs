//! A plain TCP connection that sends slices of mapped bodies with `sendfile(2)`.
//!
//! hyper writes a response as a vectored write of its head and body slices. Where a slice
//! lies within a body kept in a file of its own ([`crate::mapped`]), this connection sends it
//! from the file, so the kernel takes the file's pages instead of copying the bytes in
//! from user space (the copy was 44 % of usher's CPU serving 188 KB segments); the slices
//! before it go first with `MSG_MORE`, so the head and the body's start still leave
//! together. Everything else is written as before: short slices, HTTP/2 connections (each
//! 16 KiB frame would cost a `sendmsg` for its 9-byte header and a `sendfile`, and 188 KB
//! segments over h2c went 5 to 15 % slower than with one copying `writev` a frame), and
//! every connection under TLS.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::mapped;

/// Slices shorter than this are copied as before: a file lookup and a second system call
/// cost more than copying a few kilobytes.
pub const MIN_SENDFILE: usize = 8 * 1024;

/// `usher_sendfile_bytes_total`: body bytes sent from bodies' files, process-wide (every
/// [`crate::metrics::Metrics`] registers this one counter).
pub fn bytes_sent() -> &'static IntCounter {
    static SENT: OnceLock<IntCounter> = OnceLock::new();
    SENT.get_or_init(|| {
        IntCounter::new(
            "usher_sendfile_bytes_total",
            "Body bytes sent from bodies' files with sendfile instead of copied into the socket.",
        )
        .expect("valid metric")
    })
}

/// The start of the HTTP/2 connection preface, the first bytes an h2c client sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A plain TCP connection that sends mapped body slices from their files.
#[derive(Debug)]
pub struct SendfileStream {
    tcp: TcpStream,
    /// What the client's first bytes said: unknown before they come, then whether this is
    /// an HTTP/1.1 connection (the only kind that sends from files).
    http1: Option<bool>,
}

impl SendfileStream {
    /// Wraps an accepted connection.
    pub fn new(tcp: TcpStream) -> Self {
        Self { tcp, http1: None }
    }

    /// Sends `len` bytes of the file `file` from `offset`; at most a part of them, as a
    /// write may.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: RawFd,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let socket = self.tcp.as_raw_fd();
        self.poll_send(cx, || {
            let mut offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
            // SAFETY: both descriptors are open (the socket is ours, and the caller holds
            // the body whose file `file` is); the offset is a local the call may move.
            let sent = unsafe { libc::sendfile(socket, file, &mut offset, len) };
            usize::try_from(sent).map_err(|_| io::Error::last_os_error())
        })
        .map_ok(|sent| {
            bytes_sent().inc_by(sent as u64);
            sent
        })
    }

    /// Sends `bufs` with `MSG_MORE`: more of the response follows at once.
    fn poll_send_more(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = self.tcp.as_raw_fd();
        self.poll_send(cx, || {
            // SAFETY: an all-zero `msghdr` is a valid empty one.
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            // `IoSlice` is ABI-compatible with `iovec` on Unix; the kernel only reads them.
            message.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            message.msg_iovlen = bufs.len() as _;
            // SAFETY: `message` points at `bufs`, which outlive the call.
            let sent =
                unsafe { libc::sendmsg(socket, &message, libc::MSG_MORE | libc::MSG_NOSIGNAL) };
            usize::try_from(sent).map_err(|_| io::Error::last_os_error())
        })
    }

    /// Runs the non-blocking `send` when the socket is writable, waiting when it is full.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        mut send: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_io(Interest::WRITABLE, &mut send) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
    }
}

impl SendfileStream {
    /// Where `slice` lies in a mapped body's file, when this connection sends from files
    /// and the slice is long enough to.
    fn in_file(&self, slice: &[u8]) -> Option<(RawFd, u64)> {
        if self.http1 != Some(true) || slice.len() < MIN_SENDFILE {
            return None;
        }
        mapped::locate(slice)
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.tcp).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if self.http1.is_none() && !read.is_empty() {
            let n = read.len().min(H2_PREFACE.len());
            self.http1 = Some(read[..n] != H2_PREFACE[..n]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.in_file(buf) {
            Some((file, offset)) => self.poll_sendfile(cx, file, offset, buf.len()),
            None => Pin::new(&mut self.tcp).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let found = bufs
            .iter()
            .enumerate()
            .find_map(|(i, buf)| self.in_file(buf).map(|at| (i, at)));
        match found {
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
            Some((0, (file, offset))) => self.poll_sendfile(cx, file, offset, bufs[0].len()),
            Some((first, _)) => self.poll_send_more(cx, &bufs[..first]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads the client's `request` through a `SendfileStream`, then writes `parts` as one
    /// vectored write after another (as hyper does) and returns what the client read.
    async fn through(request: &'static [u8], parts: Vec<Bytes>) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(request).await.unwrap();
            let mut got = Vec::new();
            tcp.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut stream = SendfileStream::new(listener.accept().await.unwrap().0);
        let mut read = vec![0u8; request.len()];
        stream.read_exact(&mut read).await.unwrap();
        assert_eq!(read, request, "reads pass through");
        let mut parts: Vec<Bytes> = parts;
        while parts.iter().any(|p| !p.is_empty()) {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let mut n = stream.write_vectored(&slices).await.unwrap();
            assert!(n > 0);
            for part in &mut parts {
                let take = n.min(part.len());
                let _ = part.split_to(take);
                n -= take;
            }
            parts.retain(|p| !p.is_empty());
        }
        stream.shutdown().await.unwrap();
        client.await.unwrap()
    }

    const HTTP1: &[u8] = b"GET /seg.ts HTTP/1.1\r\nhost: a\r\n\r\n";

    // One test for everything that reads the process-wide counter, so that no other test
    // moves it meanwhile.
    #[tokio::test]
    async fn a_head_and_a_mapped_body_arrive_whole_and_in_order() {
        // Larger than the socket buffers, so sends come back short and wait for room.
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mapped = mapped::collect(&[Bytes::from(body.clone())], &mapped::Backing::Memory)
            .expect("memory files work");
        assert!(mapped::locate(&mapped).is_some());
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 3000000\r\n\r\n");
        let tail = Bytes::from_static(b"and a trailing heap slice");
        let before = bytes_sent().get();
        let parts = vec![head.clone(), mapped.slice(..), tail.clone()];
        let got = through(HTTP1, parts.clone()).await;
        let sent = bytes_sent().get() - before;
        assert!(sent >= 3_000_000, "the body went by sendfile: {sent}");
        let mut want = head.to_vec();
        want.extend_from_slice(&body);
        want.extend_from_slice(&tail);
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "the bytes on the wire are the head, the body, the tail"
        );

        // The same writes on an h2c connection are copies, with the same bytes.
        let before = bytes_sent().get();
        let got = through(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", parts).await;
        assert_eq!(bytes_sent().get(), before, "HTTP/2 never sends from files");
        assert!(got == want);
    }

    #[tokio::test]
    async fn heap_bodies_and_short_slices_are_written_as_before() {
        let heap = Bytes::from(vec![3u8; 200_000]);
        let mapped =
            mapped::collect(&[Bytes::from(vec![9u8; 100_000])], &mapped::Backing::Memory).unwrap();
        let short = mapped.slice(..100);
        let got = through(
            HTTP1,
            vec![Bytes::from_static(b"head"), heap.clone(), short],
        )
        .await;
        assert_eq!(got.len(), 4 + 200_000 + 100);
        assert!(got[4..200_004].iter().all(|&b| b == 3));
        assert!(got[200_004..].iter().all(|&b| b == 9));
    }
}
