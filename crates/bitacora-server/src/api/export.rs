//! `GET /v1/export`: the search as a stream (NDJSON, CSV, or a self-verifying bundle), in
//! constant memory.
//!
//! The walk itself ([`crate::export`]) is shared with `bitacora export`. The response status is
//! decided before the first byte (the store is asked for the log size first, so an unavailable
//! store is a `503`); a store failure later aborts the body, so a client never mistakes a cut
//! export for a complete one.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bitacora_core::api::ErrorBody;
use bitacora_core::{FieldError, TenantName};
use bitacora_log::{BundleOptions, bundle_stream};
use futures::StreamExt as _;
use utoipa::IntoParams;

use super::events::parse_search;
use super::query_pairs;
use crate::audit;
use crate::auth::{ClientIp, Principal};
use crate::error::ApiError;
use crate::export::{csv_chunk, export_pages, ndjson_chunk};
use crate::state::AppState;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ExportParams {
    /// `ndjson` (default; one event a line, exactly as `GET /v1/events/{id}` returns it),
    /// `csv`, or `bundle` (NDJSON with a signed checkpoint and each event's inclusion proof,
    /// verifiable offline with `bitacora verify-bundle`; format in `docs/BUNDLE.md`).
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
    Bundle,
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
///
/// `format=bundle` holds the matching events up to the latest signed checkpoint (events
/// appended after it are left out), each with its inclusion proof, between a header with the
/// signed checkpoint and the verifier keys and a trailer with the event count.
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
    ClientIp(client_ip): ClientIp,
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
        Some("bundle") => Format::Bundle,
        Some(other) => {
            return Err(FieldError::new(
                "unsupported_format",
                "format",
                format!("unknown format `{other}`: expected ndjson, csv or bundle"),
            )
            .into());
        }
    };
    let query = parse_search(&principal, &pairs)?;
    let audit = ExportAudit {
        principal: &principal,
        client_ip,
        format: match format {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Bundle => "bundle",
        },
        pairs: &pairs,
    };
    if format == Format::Bundle {
        return bundle(&state, query, &pairs, audit).await;
    }
    let bound = state.store.log_size(&query.tenant).await?;
    // After the bound: the export covers the log as it was, without its own record.
    audit.record(&state, &query.tenant).await?;
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
            Format::Bundle => unreachable!("answered above"),
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
        Format::Bundle => unreachable!("answered above"),
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

/// `format=bundle`: the header (and with it the checkpoint, signed first if the log has none)
/// is produced before the response starts, so a problem there is a proper status; a failure
/// later aborts the body.
/// What the `bitacora.export` self-audit event records: who, from where, what format and
/// which filters.
struct ExportAudit<'a> {
    principal: &'a Principal,
    client_ip: Option<std::net::IpAddr>,
    format: &'a str,
    pairs: &'a [(String, String)],
}

impl ExportAudit<'_> {
    async fn record(&self, state: &AppState, tenant: &TenantName) -> Result<(), ApiError> {
        audit::record(
            state,
            Some(tenant),
            audit::EXPORT,
            self.principal,
            self.client_ip,
            None,
            audit::export_metadata(
                self.format,
                self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        )
        .await
    }
}

async fn bundle(
    state: &AppState,
    query: bitacora_core::query::EventQuery,
    pairs: &[(String, String)],
    audit: ExportAudit<'_>,
) -> Result<Response, ApiError> {
    let filter: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut options = BundleOptions::new(state.signer.clone(), state.keys.verifiers());
    options.origin_prefix = state.config.integrity.origin_prefix.clone();
    options.filter = serde_json::Value::Object(filter);
    let tenant = query.tenant.clone();
    tracing::info!(tenant = %tenant, "bundle export started");
    let mut stream = Box::pin(bundle_stream(state.store.clone(), query, options));
    let head = match stream.next().await {
        Some(head) => head?,
        None => {
            return Err(ApiError::internal(
                "a bundle stream ended before its header",
            ));
        }
    };
    // After the header fixed the checkpoint: the bundle does not hold its own record.
    audit.record(state, &tenant).await?;
    let rest = stream.map(|chunk| {
        chunk.map_err(|e| {
            tracing::error!(error = %e, "bundle export aborted");
            std::io::Error::other("export aborted")
        })
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"bitacora-{tenant}.bundle.ndjson\""
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
