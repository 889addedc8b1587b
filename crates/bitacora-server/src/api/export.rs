//! `GET /v1/export`: the search as a stream (NDJSON or CSV), in constant memory.
//!
//! The walk itself ([`crate::export`]) is shared with `bitacora export`. The response status is
//! decided before the first byte (the store is asked for the log size first, so an unavailable
//! store is a `503`); a store failure later aborts the body, so a client never mistakes a cut
//! export for a complete one.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bitacora_core::FieldError;
use bitacora_core::api::ErrorBody;
use futures::StreamExt as _;
use utoipa::IntoParams;

use super::events::parse_search;
use super::query_pairs;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::export::{csv_chunk, export_pages, ndjson_chunk};
use crate::state::AppState;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ExportParams {
    /// `ndjson` (default; one event a line, exactly as `GET /v1/events/{id}` returns it) or
    /// `csv`. `bundle` is not available in this build yet.
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

/// Export every event the search filters match, as a stream.
///
/// Takes the filters of `GET /v1/events` (its `limit`, `cursor`, `page` and `per_page` are
/// ignored: an export holds every match). It covers the log as it was when the export
/// started. CSV columns: seq, id, tenant, occurred_at, received_at, action, category,
/// severity, outcome, actor_id, actor_name, actor_email, actor_type, target_type, target_id,
/// target_name, ip, user_agent, request_id, source, description, changes (JSON), metadata
/// (JSON), leaf_hash; a cell starting with `=`, `+`, `-`, `@`, tab or carriage return is
/// prefixed with `'` so spreadsheets do not run it as a formula.
#[utoipa::path(
    get,
    path = "/v1/export",
    tag = "events",
    params(ExportParams, super::events::SearchParams),
    responses(
        (status = 200, description = "The events, streamed", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Unknown parameter, invalid value, or unsupported format", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut pairs = query_pairs(raw.as_deref());
    let formats: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "format")
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .collect();
    pairs.retain(|(k, _)| k != "format");
    if formats.len() > 1 {
        return Err(FieldError::new("invalid_query", "format", "given more than once").into());
    }
    let format = match formats.first().map(String::as_str) {
        None | Some("") | Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some("bundle") => {
            return Err(FieldError::new(
                "unsupported_format",
                "format",
                "format=bundle (a verifiable bundle) is not available in this build yet; use ndjson or csv",
            )
            .into());
        }
        Some(other) => {
            return Err(FieldError::new(
                "unsupported_format",
                "format",
                format!("unknown format `{other}`: expected ndjson or csv"),
            )
            .into());
        }
    };
    let query = parse_search(&principal, &pairs)?;
    let bound = state.store.log_size(&query.tenant).await?;
    tracing::info!(tenant = %query.tenant, bound, "export started");

    let mut first = true;
    let body = export_pages(state.store.clone(), query.clone(), Some(bound)).map(move |page| {
        let header = std::mem::take(&mut first);
        let events = page.map_err(|e| {
            tracing::error!(error = %e, "export aborted");
            std::io::Error::other("export aborted")
        })?;
        match format {
            Format::Ndjson => Ok(ndjson_chunk(&events)),
            Format::Csv => csv_chunk(&events, header).map_err(|e| {
                tracing::error!(error = %e, "export aborted");
                std::io::Error::other("export aborted")
            }),
        }
    });
    // CSV always starts with its header, even when nothing matches.
    let body = match format {
        Format::Csv if bound == 0 => Body::from(csv_chunk(&[], true).map_err(ApiError::internal)?),
        _ => Body::from_stream(body),
    };
    let (content_type, extension) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"bitacora-{}.{extension}\"",
        query.tenant
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
