//! An answer judged by its first body bytes, not by its head alone: a body that breaks off
//! (or reaches the server's total timeout) before them is a failed exchange with that
//! server, and one whose bytes came is handed on with them put back in front of the rest.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::deadline::TotalTimeout;
use super::UpstreamError;
use crate::proxy::{Body, BoxError};

/// Why a body failed before its first bytes: the error for the caller, and the reason
/// `usher_upstream_failures_total` counts it under (`body_timeout`, `body_broken`).
pub(super) type Broken = (UpstreamError, &'static str);

/// `response` once its body's first frame came (at once for a body already ended, such as
/// the answer to a HEAD, a 204 or a 304, or an empty one), that frame put back in front.
///
/// # Errors
/// The body failed before: [`UpstreamError::BodyTimeout`] with the total timeout when that is
/// why, else [`UpstreamError::Protocol`].
pub(super) async fn first_bytes(response: Response<Body>) -> Result<Response<Body>, Broken> {
    let (parts, mut body) = response.into_parts();
    if body.is_end_stream() {
        return Ok(Response::from_parts(parts, body));
    }
    loop {
        let first = match body.frame().await {
            // Ended without a byte: nothing more to read, nothing failed.
            None => return Ok(Response::from_parts(parts, body)),
            Some(Ok(frame)) if frame.data_ref().is_some_and(|d| !d.has_remaining()) => continue,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(broken(&e)),
        };
        let body = PutBack {
            first: Some(first),
            rest: body,
        };
        return Ok(Response::from_parts(parts, body.boxed()));
    }
}

/// The error and reason for a body that failed before its first bytes with `e`.
fn broken(e: &BoxError) -> Broken {
    match e.downcast_ref::<TotalTimeout>() {
        Some(TotalTimeout(total)) => (UpstreamError::BodyTimeout(*total), "body_timeout"),
        None => (
            UpstreamError::Protocol(format!("body broke off before its first bytes: {e}")),
            "body_broken",
        ),
    }
}

/// A body's first frame, read already, then the rest of it.
struct PutBack {
    first: Option<Frame<Bytes>>,
    rest: Body,
}

impl HttpBody for PutBack {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.first.take() {
            Some(first) => Poll::Ready(Some(Ok(first))),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let first = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full, StreamBody};
    use std::time::Duration;

    fn answer(body: Body) -> Response<Body> {
        Response::new(body)
    }

    fn frames(frames: Vec<Result<Frame<Bytes>, BoxError>>) -> Body {
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[tokio::test]
    async fn the_first_bytes_are_put_back_in_front_of_the_rest() {
        let body = frames(vec![
            Ok(Frame::data(Bytes::new())),
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
        ]);
        let response = first_bytes(answer(body)).await.expect("bytes came");
        let whole = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(whole, "abcd");
    }

    #[tokio::test]
    async fn a_body_without_bytes_is_not_a_failure() {
        let empty = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed();
        let response = first_bytes(answer(empty))
            .await
            .expect("nothing to wait for");
        assert!(response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
        let ends = frames(vec![]);
        assert!(first_bytes(answer(ends)).await.is_ok());
        let whole = Full::new(Bytes::from_static(b"x"))
            .map_err(|never| match never {})
            .boxed();
        let response = first_bytes(answer(whole)).await.unwrap();
        let body = response.into_body();
        assert_eq!(body.size_hint().exact(), Some(1));
    }

    #[tokio::test]
    async fn a_break_or_the_total_timeout_before_them_is_a_failure() {
        let broken = frames(vec![Err("connection reset".into())]);
        let (error, reason) = first_bytes(answer(broken)).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Protocol(_)), "{error}");
        assert_eq!(reason, "body_broken");
        let late = frames(vec![Err(Box::new(TotalTimeout(Duration::from_secs(3))))]);
        let (error, reason) = first_bytes(answer(late)).await.unwrap_err();
        assert!(matches!(error, UpstreamError::BodyTimeout(t) if t == Duration::from_secs(3)));
        assert_eq!(reason, "body_timeout");
    }
}
