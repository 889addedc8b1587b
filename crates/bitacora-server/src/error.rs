//! [`ApiError`]: the only place that knows HTTP status codes.
//!
//! Every handler returns `Result<_, ApiError>`, and every error response — including axum's
//! own rejections, unknown routes, wrong methods, timeouts and panics, which [`json_errors`]
//! rewrites — has the body `{"error":{"code","message","field"}}` ([`ErrorBody`]).
//!
//! **Invariant:** a request never gets a 5xx for anything it sent. Input problems arrive as
//! [`FieldError`]s and become 4xx naming the field; 5xx bodies are generic and their cause is
//! logged once, here, when the response is built.

use axum::body::Body;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bitacora_core::FieldError;
use bitacora_core::api::{ErrorBody, ErrorDetail};
use bitacora_store::StoreError;

/// Seconds a client is asked to wait after a `503`.
const RETRY_AFTER_UNAVAILABLE: u64 = 1;

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// Something wrong with what the client sent; the status follows from `code`.
    Field(FieldError),
    /// No credential, or one that is unknown or revoked.
    Unauthorized(String),
    /// A valid credential without the scope for this route.
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed,
    /// Another event with this `id` and different content is stored.
    Conflict {
        id: String,
    },
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    TooManyRequests {
        retry_after_secs: u64,
    },
    /// The tenant's log has no signed checkpoint yet (it is empty, or signed within a second).
    NoCheckpoint(String),
    /// The store cannot serve now; the client may retry.
    Unavailable(String),
    /// A bug or an I/O failure. The cause is logged, never sent.
    Internal(String),
}

impl ApiError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Field(e) => field_status(e.code),
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoCheckpoint(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body sent to the client.
    pub fn detail(&self) -> ErrorDetail {
        let (code, message, field): (&str, String, Option<String>) = match self {
            ApiError::Field(e) => return e.clone().into(),
            ApiError::Unauthorized(m) => ("unauthorized", m.clone(), None),
            ApiError::Forbidden(m) => ("forbidden", m.clone(), None),
            ApiError::NotFound(m) => ("not_found", m.clone(), None),
            ApiError::NoCheckpoint(m) => ("no_checkpoint", m.clone(), None),
            ApiError::MethodNotAllowed => (
                "method_not_allowed",
                "this method is not allowed on this path".into(),
                None,
            ),
            ApiError::Conflict { id } => (
                "conflict",
                format!("another event with id `{id}` and different content is already stored"),
                Some("id".into()),
            ),
            ApiError::PayloadTooLarge(m) => ("too_large", m.clone(), None),
            ApiError::UnsupportedMediaType(m) => ("unsupported_media_type", m.clone(), None),
            ApiError::TooManyRequests { .. } => (
                "too_many_requests",
                "too many failed authentication attempts from this address; retry later".into(),
                None,
            ),
            // The store's message may name files or hosts: say only what the client needs.
            ApiError::Unavailable(_) => (
                "unavailable",
                "the service is temporarily unavailable; retry shortly".into(),
                None,
            ),
            ApiError::Internal(_) => ("internal", "internal server error".into(), None),
        };
        ErrorDetail {
            code: code.to_owned(),
            message,
            field,
        }
    }
}

/// The status for a [`FieldError`] code. Unknown codes are input problems too: 422.
pub fn field_status(code: &str) -> StatusCode {
    match code {
        "invalid_json" | "invalid_query" | "unknown_parameter" | "unsupported_format"
        | "invalid_body" => StatusCode::BAD_REQUEST,
        "tenant_forbidden" => StatusCode::FORBIDDEN,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "timeout" => StatusCode::REQUEST_TIMEOUT,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not_found" => StatusCode::NOT_FOUND,
        "conflict" => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Field(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<bitacora_log::LogError> for ApiError {
    fn from(e: bitacora_log::LogError) -> Self {
        use bitacora_log::LogError;
        match e {
            // Only request values are `Invalid`: a 400 naming the query parameter.
            LogError::Invalid { field, message } => {
                ApiError::Field(FieldError::new("invalid_query", field, message))
            }
            LogError::NotFound(m) => ApiError::NotFound(m),
            LogError::NoCheckpoint(tenant) => ApiError::NoCheckpoint(format!(
                "the log of tenant `{tenant}` has no signed checkpoint yet (it is empty, or its \
                 first events are signed within a second)"
            )),
            LogError::Signing(e) => ApiError::Internal(format!("cannot sign a checkpoint: {e}")),
            LogError::Store(e) => e.into(),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(
                "the request body is larger than this endpoint accepts".into(),
            )
        } else if crate::api::deadline::is_body_deadline(&r) {
            ApiError::Field(FieldError::whole(
                "timeout",
                "the request body did not arrive in time; send it faster or in smaller requests",
            ))
        } else {
            // Reading the body failed: the client went away or sent a broken body.
            ApiError::Field(FieldError::whole("invalid_body", r.body_text()))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            ApiError::Unavailable(cause) => tracing::warn!(error = %cause, "service unavailable"),
            _ => {}
        }
        let body = serde_json::to_vec(&ErrorBody {
            error: self.detail(),
        })
        .expect("an error body always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER_UNAVAILABLE),
                );
            }
            _ => {}
        }
        response
    }
}

/// Router fallback: unknown paths are a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// Method fallback: a known path with the wrong method is a JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Rewrites any error response that is not JSON yet — axum's extractor rejections, tower-http's
/// timeout (`408` becomes `503`: the server was slow, not the client) and body limit — into
/// the one error shape.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection bodies are a sentence; anything longer is not worth showing.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let error = match parts.status {
        StatusCode::NOT_FOUND => ApiError::NotFound(text.unwrap_or_else(|| "not found".into())),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
            text.unwrap_or_else(|| "the request body is too large".into()),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            text.unwrap_or_else(|| "unsupported content type".into()),
        ),
        // Only the timeout layer answers 408 or a bare 503: the server was too slow.
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
            ApiError::Unavailable("request timed out".into())
        }
        StatusCode::UNAUTHORIZED => {
            ApiError::Unauthorized(text.unwrap_or_else(|| "unauthorized".into()))
        }
        StatusCode::FORBIDDEN => ApiError::Forbidden(text.unwrap_or_else(|| "forbidden".into())),
        s if s.is_server_error() => {
            ApiError::Internal(text.unwrap_or_else(|| format!("status {s} without a body")))
        }
        s => {
            let mut detail = ErrorDetail {
                code: "bad_request".into(),
                message: text.unwrap_or_else(|| "bad request".into()),
                field: None,
            };
            if s == StatusCode::UNPROCESSABLE_ENTITY {
                detail.code = "invalid_request".into();
            }
            let mut rebuilt = (s, axum::Json(ErrorBody { error: detail })).into_response();
            copy_headers(&parts.headers, rebuilt.headers_mut());
            return rebuilt;
        }
    };
    let mut rebuilt = error.into_response();
    copy_headers(&parts.headers, rebuilt.headers_mut());
    rebuilt
}

/// Keeps headers such as `Allow`, `Retry-After` and `x-request-id` of the original response.
fn copy_headers(from: &axum::http::HeaderMap, to: &mut axum::http::HeaderMap) {
    for (name, value) in from {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && !to.contains_key(name)
        {
            to.insert(name.clone(), value.clone());
        }
    }
}

/// `CatchPanicLayer`'s response: a generic JSON 500; the panic message is logged.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a handler panicked");
    ApiError::Internal(format!("panic: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_and_code(e: ApiError) -> (u16, String, Option<String>) {
        let d = e.detail();
        (e.status().as_u16(), d.code, d.field)
    }

    #[test]
    fn field_errors_map_to_4xx_by_code() {
        for (code, status) in [
            ("invalid_json", 400),
            ("invalid_query", 400),
            ("unknown_parameter", 400),
            ("unsupported_format", 400),
            ("invalid_body", 400),
            ("invalid_field", 422),
            ("missing_field", 422),
            ("unknown_field", 422),
            ("invalid_event", 422),
            ("reserved_action", 422),
            ("tenant_forbidden", 403),
            ("too_large", 413),
            ("timeout", 408),
            ("something_new", 422),
        ] {
            let e = ApiError::from(FieldError::new(code, "f", "m"));
            assert_eq!(
                status_and_code(e),
                (status, code.to_owned(), Some("f".into()))
            );
        }
    }

    #[test]
    fn other_errors_map_to_their_status() {
        let cases = [
            (ApiError::Unauthorized("x".into()), 401, "unauthorized"),
            (ApiError::Forbidden("x".into()), 403, "forbidden"),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::Conflict { id: "e1".into() }, 409, "conflict"),
            (ApiError::PayloadTooLarge("x".into()), 413, "too_large"),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::TooManyRequests {
                    retry_after_secs: 3,
                },
                429,
                "too_many_requests",
            ),
            (
                StoreError::Unavailable("disk full".into()).into(),
                503,
                "unavailable",
            ),
            (StoreError::Corrupt("x".into()).into(), 500, "internal"),
            (
                bitacora_log::LogError::Invalid {
                    field: "tree_size",
                    message: "too big".into(),
                }
                .into(),
                400,
                "invalid_query",
            ),
            (
                bitacora_log::LogError::NotFound("x".into()).into(),
                404,
                "not_found",
            ),
            (
                bitacora_log::LogError::NoCheckpoint("acme".into()).into(),
                404,
                "no_checkpoint",
            ),
            (
                bitacora_log::LogError::Store(StoreError::Unavailable("x".into())).into(),
                503,
                "unavailable",
            ),
            (StoreError::Internal("x".into()).into(), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let (s, c, _) = status_and_code(e);
            assert_eq!((s, c.as_str()), (status, code));
        }
    }

    #[tokio::test]
    async fn responses_are_json_with_the_right_headers() {
        let r = ApiError::Unauthorized("missing key".into()).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");

        let r =
            ApiError::from(StoreError::Unavailable("/secret/path is full".into())).into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert!(
            !body.error.message.contains("secret"),
            "5xx bodies stay generic"
        );

        let r = ApiError::Internal("db file /x corrupted".into()).into_response();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.message, "internal server error");

        let r = ApiError::TooManyRequests {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }

    #[tokio::test]
    async fn responses_from_outside_handlers_are_rewritten_as_json() {
        use axum::Router;
        use axum::routing::get;
        use tower::ServiceExt as _;

        let app = Router::new()
            .route("/slow", get(|| async { StatusCode::REQUEST_TIMEOUT }))
            .route(
                "/panic",
                get(|| async {
                    if true {
                        panic!("boom");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/typed",
                get(
                    |_: axum::extract::Query<std::collections::HashMap<String, u32>>| async {
                        "ok"
                    },
                ),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                panic_response,
            ))
            .layer(axum::middleware::from_fn(json_errors));
        let call = |uri: &'static str| {
            let app = app.clone();
            async move {
                let r = app
                    .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
                let body: ErrorBody = serde_json::from_slice(&body).unwrap();
                (status, body.error.code)
            }
        };
        assert_eq!(call("/slow").await, (503, "unavailable".into()));
        assert_eq!(call("/panic").await, (500, "internal".into()));
        assert_eq!(call("/typed?n=x").await, (400, "bad_request".into()));
    }
}
