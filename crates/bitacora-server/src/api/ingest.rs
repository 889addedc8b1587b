//! `POST /v1/events` and `POST /v1/events/batch`: validate, complete, seal, append.
//!
//! Parsing, validation, canonicalization and the leaf hash run here, in parallel across
//! requests (and, for a large batch, across blocking threads); the store's single writer only
//! assigns `seq` and commits. A response is sent once the events are durable.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bitacora_core::api::{Ack, BatchItem, BatchResponse, ErrorBody};
use bitacora_core::canonical::hex_hash;
use bitacora_core::event::{MAX_BATCH_EVENTS, MAX_EVENT_BYTES};
use bitacora_core::{EventInput, FieldError, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_store::AppendOutcome;
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::value::RawValue;

use crate::auth::{ClientIp, Principal};
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Batch bodies up to this size are sealed on the request's task; larger ones on blocking
/// threads, so a 10,000-event batch never stalls the runtime.
const INLINE_BATCH_BYTES: usize = 64 * 1024;
/// Fewest events handed to one blocking thread.
const MIN_CHUNK: usize = 256;

/// Store one event.
///
/// Acknowledged once durable. Re-sending an event whose `id` is already stored with identical
/// content answers `200` with `duplicate: true` and stores nothing; the same `id` with other
/// content is `409`.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "ingest",
    request_body(content = EventInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored and durable", body = Ack),
        (status = 200, description = "Already stored with identical content; nothing written (`duplicate: true`)", body = Ack),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `ingest` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time (slow client)", body = ErrorBody),
        (status = 409, description = "Another event with this `id` and different content is stored", body = ErrorBody),
        (status = 413, description = "Event larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not `application/json`", body = ErrorBody),
        (status = 422, description = "A field is invalid, missing or unknown (named in `field`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_event(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    no_query_parameters(raw.as_deref())?;
    if media_type(&headers).as_deref() != Some("application/json") {
        return Err(ApiError::UnsupportedMediaType(
            "send the event as `Content-Type: application/json`".into(),
        ));
    }
    let body = body?;
    let sealer = Sealer::new(&state, &principal, client_ip);
    let sealed = sealer
        .seal(&body)
        .inspect_err(|_| metrics::ingested("rejected", 1))?;
    let outcome = state
        .store
        .append(vec![sealed])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the store returned no outcome for an append"))?;
    match outcome {
        AppendOutcome::Stored { id, seq, leaf_hash } => {
            metrics::ingested("stored", 1);
            Ok((StatusCode::CREATED, Json(ack(id, seq, &leaf_hash, false))).into_response())
        }
        AppendOutcome::Duplicate { id, seq, leaf_hash } => {
            metrics::ingested("duplicate", 1);
            Ok((StatusCode::OK, Json(ack(id, seq, &leaf_hash, true))).into_response())
        }
        AppendOutcome::Conflict { id } => {
            metrics::ingested("rejected", 1);
            Err(ApiError::Conflict { id })
        }
    }
}

/// Store many events: a JSON array, or NDJSON (`application/x-ndjson`, one event a line).
///
/// At most 10,000 events and 16 MiB. Each event is checked on its own: a bad one (including
/// one over 64 KiB, code `too_large`, or an `id` conflict, code `conflict`) becomes
/// `{"index","error"}` in `results` and does not stop the others, which are all committed
/// together. `results` has one entry per event, in order, sent once all are durable.
#[utoipa::path(
    post,
    path = "/v1/events/batch",
    tag = "ingest",
    request_body(
        description = "A JSON array of events, or NDJSON",
        content(
            (Vec<EventInput> = "application/json"),
            (String = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 200, description = "One result per event, in order", body = BatchResponse),
        (status = 400, description = "The body is not a JSON array (or NDJSON)", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `ingest` scope", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time (slow client)", body = ErrorBody),
        (status = 413, description = "More than 10,000 events or 16 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is neither `application/json` nor `application/x-ndjson`", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_batch(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResponse>, ApiError> {
    no_query_parameters(raw.as_deref())?;
    let format = match media_type(&headers).as_deref() {
        Some("application/json") => BatchFormat::Array,
        Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => {
            BatchFormat::Ndjson
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send a JSON array as `application/json` or NDJSON as `application/x-ndjson`"
                    .into(),
            ));
        }
    };
    let body = body?;
    let sealer = Sealer::new(&state, &principal, client_ip);

    let sealed: Vec<Result<SealedEvent, FieldError>> = if body.len() <= INLINE_BATCH_BYTES {
        let ranges = split_batch(&body, format)?;
        ranges.into_iter().map(|r| sealer.seal(&body[r])).collect()
    } else {
        seal_in_parallel(body, format, sealer).await?
    };
    metrics::batch_size(sealed.len());

    let mut results: Vec<Option<BatchItem>> = Vec::with_capacity(sealed.len());
    let mut good = Vec::with_capacity(sealed.len());
    let mut good_index = Vec::with_capacity(sealed.len());
    for (index, item) in sealed.into_iter().enumerate() {
        match item {
            Ok(event) => {
                good.push(event);
                good_index.push(index);
                results.push(None);
            }
            Err(error) => results.push(Some(BatchItem::Rejected {
                index,
                error: error.into(),
            })),
        }
    }
    let mut rejected = results.iter().filter(|r| r.is_some()).count() as u64;
    let (mut stored, mut duplicate) = (0u64, 0u64);
    if !good.is_empty() {
        let outcomes = state.store.append(good).await?;
        if outcomes.len() != good_index.len() {
            return Err(ApiError::internal(format!(
                "the store returned {} outcomes for {} events",
                outcomes.len(),
                good_index.len()
            )));
        }
        for (index, outcome) in good_index.into_iter().zip(outcomes) {
            results[index] = Some(match outcome {
                AppendOutcome::Stored { id, seq, leaf_hash } => {
                    stored += 1;
                    BatchItem::Stored(ack(id, seq, &leaf_hash, false))
                }
                AppendOutcome::Duplicate { id, seq, leaf_hash } => {
                    duplicate += 1;
                    BatchItem::Stored(ack(id, seq, &leaf_hash, true))
                }
                AppendOutcome::Conflict { id } => {
                    rejected += 1;
                    BatchItem::Rejected {
                        index,
                        error: ApiError::Conflict { id }.detail(),
                    }
                }
            });
        }
    }
    metrics::ingested("stored", stored);
    metrics::ingested("duplicate", duplicate);
    metrics::ingested("rejected", rejected);
    tracing::debug!(stored, duplicate, rejected, "batch appended");
    Ok(Json(BatchResponse {
        results: results
            .into_iter()
            .map(|r| r.expect("every index has a result"))
            .collect(),
    }))
}

/// Ingest takes no query parameters: the tenant is the event's `tenant` field (or the
/// credential's), so `?tenant=globex` must not look accepted while the event goes elsewhere.
fn no_query_parameters(raw: Option<&str>) -> Result<(), ApiError> {
    super::check_params(&super::query_pairs(raw), &[])
}

fn ack(id: String, seq: u64, leaf_hash: &[u8; 32], duplicate: bool) -> Ack {
    Ack {
        id,
        seq,
        leaf_hash: hex_hash(leaf_hash),
        duplicate,
    }
}

/// The lowercase media type of `Content-Type`, without parameters such as `charset`.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    Some(essence)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchFormat {
    Array,
    Ndjson,
}

/// What sealing an event needs, owned so it can move to a blocking thread.
#[derive(Clone)]
struct Sealer {
    policy: Arc<IngestPolicy>,
    pinned: Option<TenantName>,
    default_tenant: TenantName,
    received_at: DateTime<Utc>,
    client_ip: Option<IpAddr>,
}

impl Sealer {
    fn new(state: &AppState, principal: &Principal, client_ip: Option<IpAddr>) -> Self {
        Self {
            policy: state.policy.clone(),
            pinned: principal.pinned().cloned(),
            default_tenant: principal.default_tenant.clone(),
            // Stored timestamps have microsecond precision; truncate once so every event of
            // a batch gets the same `received_at`.
            received_at: Utc::now().trunc_subsecs(6),
            client_ip,
        }
    }

    fn seal(&self, json: &[u8]) -> Result<SealedEvent, FieldError> {
        if json.len() > MAX_EVENT_BYTES {
            return Err(FieldError::whole(
                "too_large",
                format!(
                    "the event is {} bytes; at most {MAX_EVENT_BYTES} are accepted",
                    json.len()
                ),
            ));
        }
        let mut input = EventInput::from_json(json)?;
        // The tenant is not part of the fingerprint, so filling it keeps idempotency intact.
        if input.tenant.is_none() {
            input.tenant = Some(self.default_tenant.clone());
        }
        SealedEvent::prepare(
            input,
            &self.policy,
            &IngestContext {
                pinned_tenant: self.pinned.as_ref(),
                received_at: self.received_at,
                client_ip: self.client_ip,
                allow_reserved: false,
            },
        )
    }
}

/// The byte range of each event in a batch body, after checking the batch as a whole.
fn split_batch(body: &[u8], format: BatchFormat) -> Result<Vec<Range<usize>>, ApiError> {
    let ranges = match format {
        BatchFormat::Array => {
            if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
                return Err(FieldError::whole(
                    "invalid_json",
                    "a batch must be a JSON array of events (or NDJSON sent as application/x-ndjson)",
                )
                .into());
            }
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
                FieldError::whole("invalid_json", format!("malformed JSON batch: {e}"))
            })?;
            let base = body.as_ptr() as usize;
            items
                .iter()
                .map(|raw| {
                    let start = raw.get().as_ptr() as usize - base;
                    start..start + raw.get().len()
                })
                .collect::<Vec<_>>()
        }
        BatchFormat::Ndjson => {
            let mut ranges = Vec::new();
            let mut start = 0;
            for line in body.split(|b| *b == b'\n') {
                let end = start + line.len();
                let lead = line.iter().take_while(|b| b.is_ascii_whitespace()).count();
                let trail = line[lead..]
                    .iter()
                    .rev()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                if lead < line.len() {
                    ranges.push(start + lead..end - trail);
                }
                start = end + 1;
            }
            ranges
        }
    };
    if ranges.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::PayloadTooLarge(format!(
            "the batch has {} events; at most {MAX_BATCH_EVENTS} are accepted",
            ranges.len()
        )));
    }
    Ok(ranges)
}

/// Splits and seals a large batch on blocking threads, a chunk per core, keeping order.
async fn seal_in_parallel(
    body: Bytes,
    format: BatchFormat,
    sealer: Sealer,
) -> Result<Vec<Result<SealedEvent, FieldError>>, ApiError> {
    let split_body = body.clone();
    let ranges = tokio::task::spawn_blocking(move || split_batch(&split_body, format))
        .await
        .map_err(ApiError::internal)??;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let chunk = ranges.len().div_ceil(workers).max(MIN_CHUNK);
    let mut tasks = Vec::new();
    for part in ranges.chunks(chunk) {
        let part = part.to_vec();
        let body = body.clone();
        let sealer = sealer.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|r| sealer.seal(&body[r]))
                .collect::<Vec<_>>()
        }));
    }
    let mut sealed = Vec::with_capacity(ranges.len());
    for task in tasks {
        sealed.extend(task.await.map_err(ApiError::internal)?);
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_batches_split_into_items() {
        let body = br#" [ {"action":"a"}, {"action":"b","metadata":{"x":[1,2]}} ,3 ] "#;
        let ranges = split_batch(body, BatchFormat::Array).unwrap();
        let items: Vec<&str> = ranges
            .into_iter()
            .map(|r| std::str::from_utf8(&body[r]).unwrap())
            .collect();
        assert_eq!(
            items,
            [
                r#"{"action":"a"}"#,
                r#"{"action":"b","metadata":{"x":[1,2]}}"#,
                "3"
            ]
        );
    }

    #[test]
    fn ndjson_batches_skip_blank_lines() {
        let body = b"{\"action\":\"a\"}\r\n\n  \n{\"action\":\"b\"}";
        let ranges = split_batch(body, BatchFormat::Ndjson).unwrap();
        let items: Vec<&[u8]> = ranges.into_iter().map(|r| &body[r]).collect();
        assert_eq!(
            items,
            [&b"{\"action\":\"a\"}"[..], &b"{\"action\":\"b\"}"[..]]
        );
    }

    #[test]
    fn bad_batches_are_refused_whole() {
        let err = split_batch(br#"{"action":"a"}"#, BatchFormat::Array).unwrap_err();
        assert_eq!(err.status(), 400);
        let err = split_batch(br#"[{"action":"a"}"#, BatchFormat::Array).unwrap_err();
        assert_eq!(err.status(), 400);
        let many = format!("[{}]", vec!["{}"; MAX_BATCH_EVENTS + 1].join(","));
        let err = split_batch(many.as_bytes(), BatchFormat::Array).unwrap_err();
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn media_types_ignore_parameters_and_case() {
        let mut h = HeaderMap::new();
        assert_eq!(media_type(&h), None);
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
    }
}
