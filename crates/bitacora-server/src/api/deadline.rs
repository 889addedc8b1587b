//! A deadline for each request body, so that a client trickling its body (slowloris) gets a
//! `408` and its connection back, instead of holding a request — and its share of memory —
//! until the whole-request timeout answers `503` as if the server were at fault.
//!
//! tower-http's `RequestBodyTimeout` is not enough: it limits the gap between two frames,
//! and one byte every few seconds never trips it. This limits the whole body.
//!
//! The same middleware refuses at once a body whose declared `Content-Length` is far beyond
//! what any endpoint accepts ([`EARLY_REFUSAL_BYTES`]), instead of waiting for bytes it would
//! refuse anyway.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use bitacora_core::event::MAX_BATCH_BYTES;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// The error a body yields once its deadline has passed; found again (by type) in the
/// extractor's rejection, which becomes `408` ([`is_body_deadline`]).
#[derive(Debug)]
pub struct BodyDeadline;

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyDeadline {}

/// Whether `error`, or any error it wraps, is a [`BodyDeadline`].
pub fn is_body_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyDeadline>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Declared bodies above this are refused without reading a byte of them.
pub const EARLY_REFUSAL_BYTES: u64 = 4 * MAX_BATCH_BYTES as u64;

/// Middleware: the body must have arrived `State(limit)` after the request head did, and may
/// not announce more than the largest body an endpoint takes.
pub async fn body_deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refusing before reading means the connection is closed with the body unread, and most
    // clients report that as a transport error instead of showing the 413. So a body only
    // somewhat over the limit goes to the endpoint's own limit, which reads up to the limit and
    // answers 413 readably; only absurd sizes are cut off at once.
    if declared.is_some_and(|n| n > EARLY_REFUSAL_BYTES) {
        return ApiError::PayloadTooLarge(format!(
            "the request body is larger than any endpoint accepts ({MAX_BATCH_BYTES} bytes)"
        ))
        .into_response();
    }
    let deadline = Instant::now() + limit;
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        })
    });
    next.run(request).await
}

struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyDeadline)))),
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::extract::rejection::BytesRejection;
    use axum::middleware::from_fn_with_state;
    use axum::routing::post;
    use futures::StreamExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn echo_len(body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
        Ok(body?.len().to_string())
    }

    fn app(limit: Duration) -> Router {
        Router::new()
            .route("/", post(echo_len))
            .layer(from_fn_with_state(limit, body_deadline))
    }

    /// A body that sends one chunk and then never finishes.
    fn stalled() -> Body {
        let first =
            futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"{")) });
        Body::from_stream(first.chain(futures::stream::pending()))
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_a_408_timeout() {
        let started = std::time::Instant::now();
        let response = app(Duration::from_millis(200))
            .oneshot(axum::http::Request::post("/").body(stalled()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "timeout", "{v}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_oversized_declared_length_is_refused_before_any_byte() {
        let response = app(Duration::from_secs(30))
            .oneshot(
                axum::http::Request::post("/")
                    .header("content-length", (1u64 << 30).to_string())
                    .body(stalled())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_in_time_passes_untouched() {
        let response = app(Duration::from_secs(5))
            .oneshot(
                axum::http::Request::post("/")
                    .body(Body::from("12345"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(&body[..], b"5");
    }
}
