//! Reading events: the search (`GET /v1/events`), one event (`GET /v1/events/{id}`) and a
//! record's history (`GET /v1/targets/{type}/{id}/history`).
//!
//! Responses are written by splicing each event's stored JSON
//! ([`StoredEvent::write_json`](bitacora_store::StoredEvent::write_json)): bodies are never
//! parsed and re-serialized on the way out, so what a client reads is what was hashed.

use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bitacora_core::api::{ErrorBody, EventPage, History};
use bitacora_core::query::{Cursor, EventFilter, EventQuery, Order, Pagination};
use bitacora_store::StoredEvent;
use utoipa::IntoParams;

use super::{check_params, json_text, param, query_pairs, write_events};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Most events `/history` returns; a record with more answers with its oldest
/// `HISTORY_CAP` events and the header `x-bitacora-truncated: true` (use the search with
/// `target_type`/`target_id` and a cursor to read all).
pub const HISTORY_CAP: usize = 100_000;
const HISTORY_PAGE: u32 = 1000;

/// The search filters (CONTRACT §3), all optional and combined with AND. Documentation only:
/// the handler parses the raw query string with [`EventQuery::parse`].
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SearchParams {
    /// The tenant (default: the key's pinned tenant, else `default`).
    tenant: Option<String>,
    /// Comma list of actions; `user.*` matches a prefix.
    action: Option<String>,
    /// Comma list of categories.
    category: Option<String>,
    /// Comma list of `low`, `medium`, `high`, `critical`.
    severity: Option<String>,
    /// This severity or higher.
    min_severity: Option<String>,
    /// `success` or `failure`.
    outcome: Option<String>,
    actor_id: Option<String>,
    /// Case-insensitive part of the actor's name or email.
    actor: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    /// An address or a CIDR block.
    ip: Option<String>,
    /// `context.source`.
    source: Option<String>,
    /// On `occurred_at`: RFC 3339 or `YYYY-MM-DD`, inclusive.
    since: Option<String>,
    /// On `occurred_at`: RFC 3339 or `YYYY-MM-DD` (a bare date includes that whole day).
    until: Option<String>,
    /// Full text over description, actor and target names, changes and metadata
    /// (diacritics and case folded; may trail ingest by up to a second).
    q: Option<String>,
    /// `desc` (default) or `asc`, by `seq`.
    order: Option<String>,
    /// 1..1000, default 50 (cursor pagination).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Numbered pagination: the page (from 1); adds `total`, `page`, `per_page`, `total_pages`.
    page: Option<u32>,
    /// Numbered pagination: 1..1000, default 50.
    per_page: Option<u32>,
}

/// Parses a search query string, resolving the tenant through the credential.
pub(crate) fn parse_search(
    principal: &Principal,
    pairs: &[(String, String)],
) -> Result<EventQuery, ApiError> {
    // Unknown and repeated parameters are reported by the parser, by name.
    let tenant = principal.resolve_tenant(param(pairs, "tenant"))?;
    let query = EventQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), &tenant)?;
    debug_assert_eq!(query.tenant, tenant);
    Ok(query)
}

/// Search events.
///
/// Newest first by default. Page with `limit` + the previous page's `next_cursor` (stable
/// under concurrent ingest), or with `page` + `per_page` (exact totals).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(SearchParams),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "Unknown parameter or invalid value (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let query = parse_search(&principal, &pairs)?;
    let started = Instant::now();
    let result = state.store.search(&query).await?;
    metrics::query("search", started);

    let mut out = String::with_capacity(
        result
            .events
            .iter()
            .map(|e| e.body.len() + 100)
            .sum::<usize>()
            + 64,
    );
    out.push_str("{\"events\":");
    write_events(&mut out, &result.events);
    out.push_str(",\"next_cursor\":");
    match (query.page, result.next_after) {
        (Pagination::Cursor { .. }, Some(seq)) => {
            let cursor = Cursor {
                seq,
                order: query.order,
            };
            out.push('"');
            out.push_str(&cursor.encode());
            out.push('"');
        }
        _ => out.push_str("null"),
    }
    if let Pagination::Numbered { page, per_page } = query.page {
        let total = result.total.unwrap_or(0);
        let total_pages = total.div_ceil(u64::from(per_page));
        let exact = !result.estimated;
        out.push_str(&format!(
            ",\"total\":{total},\"total_exact\":{exact},\"page\":{page},\"per_page\":{per_page},\"total_pages\":{total_pages}"
        ));
    }
    out.push('}');
    Ok(json_text(StatusCode::OK, out))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TenantParam {
    /// The tenant (default: the key's pinned tenant, else `default`).
    tenant: Option<String>,
}

/// One event, with `seq` and `leaf_hash`.
///
/// Looked up by `id` within the tenant (the `tenant` parameter or the key's).
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The event's id"), TenantParam),
    responses(
        (status = 200, description = "The event", body = bitacora_core::Event),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 404, description = "No event with this id in this tenant", body = ErrorBody),
        (status = 410, description = "Purged by retention: `code` is `purged`, with the event's `seq` and `leaf_hash`", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn by_id(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let started = Instant::now();
    let found = state.store.event_by_id(&tenant, &id).await?;
    metrics::query("by_id", started);
    match found {
        Some(event) => Ok(json_text(StatusCode::OK, event.to_json())),
        None => match state.store.purged_event(&tenant, &id).await? {
            // Retention removed its content; its place in the log remains (CONTRACT §9).
            Some((seq, leaf_hash)) => Ok(json_text(
                StatusCode::GONE,
                serde_json::json!({"error": {
                    "code": "purged",
                    "message": format!(
                        "event `{id}` was purged by retention (archived first); its seq and leaf \
                         hash remain in the log"
                    ),
                    "seq": seq,
                    "leaf_hash": bitacora_core::canonical::hex_hash(&leaf_hash),
                }})
                .to_string(),
            )),
            None => Err(ApiError::NotFound(format!(
                "no event with id `{id}` in tenant `{tenant}`"
            ))),
        },
    }
}

/// Every event on one record, oldest first, with its changes.
///
/// At most 100,000 events; a longer history returns its oldest 100,000 and the header
/// `x-bitacora-truncated: true` (read the rest with the search, filtering on
/// `target_type` and `target_id`).
#[utoipa::path(
    get,
    path = "/v1/targets/{type}/{id}/history",
    tag = "events",
    params(
        ("type" = String, Path, description = "`target.type`"),
        ("id" = String, Path, description = "`target.id`"),
        TenantParam
    ),
    responses(
        (status = 200, description = "The record's events, oldest first", body = History),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let mut query = EventQuery {
        tenant,
        filter: EventFilter {
            target_type: Some(kind),
            target_id: Some(id),
            ..EventFilter::default()
        },
        order: Order::Asc,
        page: Pagination::Cursor {
            limit: HISTORY_PAGE,
            after: None,
        },
    };
    let started = Instant::now();
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut truncated = false;
    loop {
        let page = state.store.search(&query).await?;
        let more = page.next_after.filter(|_| !page.events.is_empty());
        events.extend(page.events);
        if events.len() >= HISTORY_CAP {
            truncated = events.len() > HISTORY_CAP || more.is_some();
            events.truncate(HISTORY_CAP);
            break;
        }
        match more {
            Some(after) => {
                query.page = Pagination::Cursor {
                    limit: HISTORY_PAGE,
                    after: Some(after),
                }
            }
            None => break,
        }
    }
    metrics::query("history", started);

    let mut out =
        String::with_capacity(events.iter().map(|e| e.body.len() + 100).sum::<usize>() + 16);
    out.push_str("{\"events\":");
    write_events(&mut out, &events);
    out.push('}');
    let mut response = json_text(StatusCode::OK, out);
    if truncated {
        response.headers_mut().insert(
            "x-bitacora-truncated",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Keeps `query::PARAMETERS` and [`SearchParams`] in step.
#[cfg(test)]
mod tests {
    #[test]
    fn documented_search_parameters_match_the_parser() {
        use utoipa::IntoParams as _;
        let documented: Vec<String> = super::SearchParams::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(documented, bitacora_core::query::PARAMETERS);
    }
}
