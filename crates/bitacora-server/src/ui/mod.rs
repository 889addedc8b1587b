//! The viewer (CONTRACT §7): server-rendered HTML pages under `/ui/` over the same
//! [`AppState`] as the API, with every asset embedded in the binary.
//!
//! - [`session`]: login with an API key (or a viewer URL's `?token=`), the `bitacora_session`
//!   cookie, logout, and the [`Viewer`](session::Viewer) extractor that re-resolves the
//!   cookie's credential through [`crate::auth::resolve`] on every request (a revoked key stops
//!   working within a second) and resolves the tenant the page shows.
//! - [`list`]: the searchable event list, its live tail (server-sent events) and exports.
//! - [`event`], [`target`]: one event (with its inclusion proof checked server-side) and one
//!   record's history. [`dashboard`]: activity charts as server-rendered SVG.
//!   [`integrity`]: checkpoints, the public key, and full verification in the background.
//!   [`alerts`]: alert firings and rules, destinations and their health (issue 17).
//! - [`view`]: the view models templates render, and the one place URLs are built.
//! - [`assets`]: CSS, JS and icons compiled in, served under content-hashed names.
//!
//! **Invariant:** event content is attacker-controlled. Templates (askama) escape every value;
//! no template marks anything `safe`, and charts are drawn by templates from numbers, never
//! from pre-rendered markup. Every `href` is built by [`view`] from a fixed `/ui/` path with
//! percent-encoded parts, so event data can never become a `javascript:` (or any off-site) URL.
//!
//! **Invariant:** the UI calls the store and `bitacora_log` directly; it never makes HTTP
//! requests to its own API. Tenancy is the API's: a pinned credential resolves only its tenant.
//!
//! Every response carries a strict Content-Security-Policy (no inline script or style), so an
//! injection that slipped past escaping still could not run.

pub mod alerts;
pub mod assets;
pub mod dashboard;
pub mod event;
pub mod integrity;
pub mod list;
pub mod session;
pub mod target;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::ApiError;
use crate::state::AppState;

/// The Content-Security-Policy of every viewer response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'";

/// Largest request body a viewer route accepts (login and a few buttons).
const BODY_LIMIT: usize = 16 * 1024;

/// Shared by the viewer's handlers (beside [`AppState`]): background verification jobs.
#[derive(Default)]
pub struct UiState {
    pub verify: integrity::VerifyJobs,
}

/// The viewer's routes, with their own middleware (security headers, HTML error pages).
/// `crate::app` merges them with the API.
pub fn router(state: AppState) -> Router {
    let ui = Arc::new(UiState::default());
    let timeout = Duration::from_secs(state.config.server.request_timeout_secs.max(1));
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn(crate::metrics::track))
        .layer(from_fn(security_headers))
        .layer(CatchPanicLayer::custom(panic_page))
        // Streams (the live tail, exports) are timed only until their headers.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(axum::Extension(ui));
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .layer(from_fn(single_valued_params))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware)
        .with_state(state)
}

/// Every viewer route: [`router`] is built from this list, and the tests walk it (so a new
/// page is covered by the tenant-isolation and parameter tests the day it is added).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/ui", get(|| async { Redirect::permanent("/ui/") })),
        ("/ui/", get(list::page)),
        ("/ui/tail", get(list::tail)),
        ("/ui/export", get(list::export)),
        ("/ui/login", get(session::login_page).post(session::login)),
        ("/ui/logout", post(session::logout)),
        ("/ui/events/{id}", get(event::page)),
        ("/ui/targets/{kind}/{id}", get(target::page)),
        ("/ui/dashboard", get(dashboard::page)),
        ("/ui/integrity", get(integrity::page)),
        ("/ui/integrity/verify", post(integrity::start)),
        ("/ui/integrity/progress", get(integrity::progress)),
        ("/ui/alerts", get(alerts::page)),
        ("/ui/alerts/rules", post(alerts::create)),
        ("/ui/alerts/rules/{id}/{action}", post(alerts::toggle)),
        ("/ui/alerts/test", post(alerts::test)),
        ("/ui/destinations", get(alerts::destinations)),
        ("/ui/destinations/{id}", get(alerts::destination)),
        ("/ui/destinations/{id}/test", post(alerts::send_test)),
        ("/ui/assets/{file}", get(assets::serve)),
        ("/ui/{*rest}", get(not_found).post(not_found)),
    ]
}

/// Query parameters the viewer takes more than once: its severity checkboxes submit one
/// `severity=` each. Any other repeated name is refused (see [`crate::api::repeated_param`]).
const MAY_REPEAT: &[&str] = &["severity"];

/// The viewer's guard for repeated parameters: a `400` page naming the parameter.
async fn single_valued_params(request: Request, next: Next) -> Response {
    let pairs = crate::api::query_pairs(request.uri().query());
    if let Some(name) = crate::api::repeated_param(&pairs, MAY_REPEAT) {
        return UiError::bad_request(format!("the parameter `{name}` is given more than once"))
            .into_response();
    }
    next.run(request).await
}

/// One span per request: method, route and request id (never the query string: it holds
/// search terms, and on `/ui/login` a token).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched");
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request.id = request_id,
    )
}

/// CSP and friends on every viewer response; pages are never cached (audit data), assets
/// decide their own caching.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What a viewer handler can fail with: a trip to the login page, or an error page.
#[derive(Debug)]
pub enum UiError {
    /// No valid session: to `/ui/login`, coming back to `next` afterwards.
    Login { next: String, expired: bool },
    /// An error page with this status.
    Page {
        status: StatusCode,
        title: String,
        message: String,
    },
}

impl UiError {
    pub fn not_found(message: impl Into<String>) -> Self {
        UiError::Page {
            status: StatusCode::NOT_FOUND,
            title: "Not found".into(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        UiError::Page {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request".into(),
            message: message.into(),
        }
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        match &e {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "viewer request failed"),
            ApiError::Unavailable(cause) => tracing::warn!(error = %cause, "service unavailable"),
            _ => {}
        }
        let detail = e.detail();
        let title = match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "Bad request",
            StatusCode::UNAUTHORIZED => "Not signed in",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
            _ => "Something went wrong",
        };
        let message = match &detail.field {
            Some(field) if !detail.message.contains(field.as_str()) => {
                format!("{field}: {}", detail.message)
            }
            _ => detail.message,
        };
        UiError::Page {
            status,
            title: title.into(),
            message,
        }
    }
}

impl From<bitacora_store::StoreError> for UiError {
    fn from(e: bitacora_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<bitacora_log::LogError> for UiError {
    fn from(e: bitacora_log::LogError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login { next, expired } => {
                let mut to = view::Url::new("/ui/login");
                if next != "/ui/" {
                    to = to.param("next", &next);
                }
                if expired {
                    to = to.param("expired", "1");
                }
                let mut r = Redirect::to(to.as_str()).into_response();
                if expired {
                    session::clear_cookie(&mut r);
                }
                r
            }
            UiError::Page {
                status,
                title,
                message,
            } => error_page(status, &title, &message),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorTemplate<'a> {
    layout: view::Layout,
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// A standalone error page (no tenant or navigation: it must render whatever failed).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorTemplate {
        layout: view::Layout::bare(title),
        status: status.as_u16(),
        title,
        message,
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r
}

/// Renders a template as an HTML response (a generic 500 page if it cannot be rendered).
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a viewer template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>Internal error.</p>"),
            )
                .into_response()
        }
    }
}

async fn not_found() -> UiError {
    UiError::not_found("There is no page at this address.")
}

fn panic_page(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a viewer handler panicked");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not show this page. The error was logged.",
    )
}

#[cfg(test)]
mod tests;
