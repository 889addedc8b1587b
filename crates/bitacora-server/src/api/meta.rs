//! Summaries of a tenant's log: `GET /v1/actions`, `/v1/actors`, `/v1/stats`.

use std::time::Instant;

use axum::Json;
use axum::extract::{RawQuery, State};
use bitacora_core::FieldError;
use bitacora_core::api::{ActionList, ActorList, ErrorBody, Stats};
use bitacora_core::query::EventQuery;
use chrono::{Duration, SubsecRound, Utc};
use utoipa::IntoParams;

use super::events::TenantParam;
use super::{check_params, param, query_pairs};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Default and largest `limit` of `/v1/actors`.
pub const ACTORS_DEFAULT: u32 = 100;
pub const ACTORS_MAX: u32 = 1000;
/// Default and largest `top` of `/v1/stats`.
pub const STATS_TOP_DEFAULT: u32 = 10;
pub const STATS_TOP_MAX: u32 = 100;
/// The window `/v1/stats` covers when `since` is not given.
pub const STATS_DEFAULT_DAYS: i64 = 30;

/// The distinct actions with their category and count, most frequent first.
#[utoipa::path(
    get,
    path = "/v1/actions",
    tag = "summaries",
    params(TenantParam),
    responses(
        (status = 200, description = "The actions", body = ActionList),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn actions(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<ActionList>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let started = Instant::now();
    let actions = state.store.actions(&tenant).await?;
    metrics::query("actions", started);
    Ok(Json(ActionList { actions }))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ActorsParams {
    /// The tenant (default: the key's pinned tenant, else `default`).
    tenant: Option<String>,
    /// 1..1000, default 100.
    limit: Option<u32>,
}

/// The distinct actors (by `actor.id`) with count and last seen, most recent first.
#[utoipa::path(
    get,
    path = "/v1/actors",
    tag = "summaries",
    params(ActorsParams),
    responses(
        (status = 200, description = "The actors", body = ActorList),
        (status = 400, description = "Unknown parameter or invalid value", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn actors(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<ActorList>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant", "limit"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let limit = number(&pairs, "limit", ACTORS_MAX)?.unwrap_or(ACTORS_DEFAULT);
    let started = Instant::now();
    let actors = state.store.actors(&tenant, limit).await?;
    metrics::query("actors", started);
    Ok(Json(ActorList { actors }))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StatsParams {
    /// The tenant (default: the key's pinned tenant, else `default`).
    tenant: Option<String>,
    /// Start of the window on `occurred_at` (RFC 3339 or `YYYY-MM-DD`); default 30 days
    /// before `until`.
    since: Option<String>,
    /// End of the window (RFC 3339 or `YYYY-MM-DD`, a bare date includes that day); default now.
    until: Option<String>,
    /// How many top actors and IPs: 1..100, default 10.
    top: Option<u32>,
}

/// Activity counts in a `since`/`until` window: per day, category, severity and outcome,
/// top actors and IPs, and events without an actor.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "summaries",
    params(StatsParams),
    responses(
        (status = 200, description = "The counts", body = Stats),
        (status = 400, description = "Unknown parameter or invalid value", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<Stats>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant", "since", "until", "top"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let top = number(&pairs, "top", STATS_TOP_MAX)?.unwrap_or(STATS_TOP_DEFAULT);
    // The bounds mean what they mean in the search: reuse its parser.
    let window = EventQuery::parse(
        pairs
            .iter()
            .filter(|(k, _)| k == "since" || k == "until")
            .map(|(k, v)| (k.as_str(), v.as_str())),
        &tenant,
    )?;
    let until = window
        .filter
        .until
        .unwrap_or_else(|| Utc::now().trunc_subsecs(6));
    let since = window
        .filter
        .since
        .unwrap_or(until - Duration::days(STATS_DEFAULT_DAYS));
    if since >= until {
        return Err(FieldError::new("invalid_query", "since", "must be before `until`").into());
    }
    let started = Instant::now();
    let stats = state
        .store
        .stats(
            &tenant,
            since.timestamp_micros(),
            until.timestamp_micros(),
            top,
        )
        .await?;
    metrics::query("stats", started);
    Ok(Json(stats))
}

/// An optional `1..=max` number parameter.
fn number(pairs: &[(String, String)], name: &str, max: u32) -> Result<Option<u32>, ApiError> {
    let Some(v) = param(pairs, name).map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .map(Some)
        .ok_or_else(|| {
            FieldError::new(
                "invalid_query",
                name,
                format!("`{v}`: expected a number from 1 to {max}"),
            )
            .into()
        })
}
