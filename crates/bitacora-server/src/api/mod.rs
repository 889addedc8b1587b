//! The router: every endpoint of CONTRACT §3 that this build serves, the scope each needs,
//! and the middleware stack around them.
//!
//! Each `/v1` route is registered through [`scoped`], which layers [`auth::authenticate`]
//! with that route's scope, so the list below is also the access table.

pub mod deadline;
pub mod delivery;
pub mod events;
pub mod export;
pub mod health;
pub mod ingest;
pub mod lifecycle;
pub mod log;
pub mod meta;
pub mod tlog;
pub mod tokens;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bitacora_core::FieldError;
use bitacora_core::event::{MAX_BATCH_BYTES, MAX_EVENT_BYTES};
use bitacora_store::Scope;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth;
use crate::error::{self, ApiError};
use crate::metrics;
use crate::openapi::ApiDoc;
use crate::state::AppState;

/// Body limit of the endpoints that take none (a small margin for clients that send `{}`).
const NO_BODY_LIMIT: usize = 16 * 1024;

/// The whole application: API, docs, health, metrics, with the middleware stack.
pub fn router(state: AppState) -> Router {
    build(state).0
}

/// The application and its OpenAPI document (generated from the handlers' annotations).
pub fn build(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let s = &state;
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(scoped(
            routes!(ingest::post_event),
            s,
            Scope::Ingest,
            MAX_EVENT_BYTES,
        ))
        .routes(scoped(
            routes!(ingest::post_batch),
            s,
            Scope::Ingest,
            MAX_BATCH_BYTES,
        ))
        .routes(scoped(
            routes!(events::search),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(events::by_id),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(events::history),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(meta::actions),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(routes!(meta::actors), s, Scope::Read, NO_BODY_LIMIT))
        .routes(scoped(routes!(meta::stats), s, Scope::Read, NO_BODY_LIMIT))
        .routes(scoped(
            routes!(export::export),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(log::checkpoint),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(log::describe),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(log::inclusion),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(log::consistency),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(log::event_inclusion),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(tlog::event_proof),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(tokens::issue, tokens::list),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(tokens::revoke),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::create_destination, delivery::list_destinations),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::delete_destination),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::rotate_secret),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::retire_secret),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::test_destination),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::test_rule),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::disable_rule),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::enable_rule),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::create_rule, delivery::list_rules),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::delete_rule),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(delivery::alerts),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(lifecycle::retention),
            s,
            Scope::Read,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(lifecycle::place_hold, lifecycle::list_holds),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        .routes(scoped(
            routes!(lifecycle::release_hold),
            s,
            Scope::Admin,
            NO_BODY_LIMIT,
        ))
        // Public on purpose: verifying needs the key, and the key proves nothing secret.
        .routes(routes!(log::public_key))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts();

    let timeout = Duration::from_secs(state.config.server.request_timeout_secs.max(1));
    // The body must be in well before the whole request times out, so a slow client is told
    // `408` (its fault) rather than `503` (ours); the rest is left for the store.
    let body_limit = timeout * 2 / 3;
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // One line per request is too many at 15,000 requests/s: debug only.
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
                // 5xx causes are logged once, by `ApiError`; not again here.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn(metrics::track))
        .layer(from_fn(error::json_errors))
        .layer(from_fn(single_valued_params))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(from_fn_with_state(body_limit, deadline::body_deadline));

    let app = Router::new()
        .merge(api)
        .merge(tlog::router(&state))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi.clone()))
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware)
        .with_state(state);
    (app, openapi)
}

/// Puts a `/v1` route behind authentication with `scope`, and gives it its body limit.
fn scoped(
    (schemas, paths, method_router): UtoipaMethodRouter<AppState>,
    state: &AppState,
    scope: Scope,
    body_limit: usize,
) -> UtoipaMethodRouter<AppState> {
    let method_router = method_router
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(from_fn_with_state(
            (state.clone(), scope),
            auth::authenticate,
        ));
    (schemas, paths, method_router)
}

/// One span per request: method, route pattern and request id (never the query string,
/// which may hold search terms, nor headers, which hold credentials).
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
        key.id = tracing::field::Empty,
    )
}

/// The decoded `name=value` pairs of a query string.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Refuses parameters outside `allowed` (a typo must not silently widen a query) and
/// repeated ones.
pub(crate) fn check_params(pairs: &[(String, String)], allowed: &[&str]) -> Result<(), ApiError> {
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            let accepted = if allowed.is_empty() {
                "this endpoint takes none".to_owned()
            } else {
                format!("accepted: {}", allowed.join(", "))
            };
            return Err(FieldError::new(
                "unknown_parameter",
                name.clone(),
                format!("unknown query parameter `{name}` ({accepted})"),
            )
            .into());
        }
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(
                FieldError::new("invalid_query", name.clone(), "given more than once").into(),
            );
        }
    }
    Ok(())
}

/// The first parameter named more than once, except those in `may_repeat`.
///
/// Every route of the API and the viewer refuses such a request before anything else reads
/// its query: when one layer reads the first value of a parameter and another the last (the
/// viewer's session checked `tenant=acme` while its search read `tenant=globex`), a credential
/// pinned to one tenant could read another. With each name given once, every reader sees the
/// same value. Names are compared decoded (`ten%61nt` is `tenant`), as every reader decodes them.
pub(crate) fn repeated_param<'a>(
    pairs: &'a [(String, String)],
    may_repeat: &[&str],
) -> Option<&'a str> {
    pairs.iter().enumerate().find_map(|(i, (name, _))| {
        (!may_repeat.contains(&name.as_str()) && pairs[..i].iter().any(|(n, _)| n == name))
            .then_some(name.as_str())
    })
}

/// The API's guard for [`repeated_param`]: `400 invalid_query` naming the parameter.
async fn single_valued_params(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let pairs = query_pairs(request.uri().query());
    if let Some(name) = repeated_param(&pairs, &[]) {
        return ApiError::from(FieldError::new(
            "invalid_query",
            name,
            "given more than once (use a comma-separated list)",
        ))
        .into_response();
    }
    next.run(request).await
}

/// The value of a parameter (the first, if repeated).
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A JSON response from text already written as JSON.
pub(crate) fn json_text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Writes `[e1,e2,...]` by splicing each stored body, never re-serializing it.
pub(crate) fn write_events(out: &mut String, events: &[bitacora_store::StoredEvent]) {
    out.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        e.write_json(out);
    }
    out.push(']');
}

#[cfg(test)]
mod tests;
