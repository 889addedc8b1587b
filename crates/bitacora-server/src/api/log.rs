//! `GET /v1/log/*` and `GET /v1/events/{id}/inclusion`: the signed checkpoints and the proofs
//! that let anyone check the log was not altered (CONTRACT §4), served by `bitacora_log`.
//!
//! Every number comes from the query string and is checked here (a bad one is a 400 naming
//! the parameter) or by `bitacora_log` (`LogError::Invalid`, also a 400 naming it); none is
//! ever passed to the store unchecked.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bitacora_core::FieldError;
use bitacora_core::api::{ConsistencyProof, ErrorBody, InclusionProof, InclusionStatus};
use serde::Serialize;
use utoipa::IntoParams;

use super::{check_params, json_text, param, query_pairs};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

fn text(body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    r
}

fn json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_string(value).map_err(ApiError::internal)?;
    Ok(json_text(StatusCode::OK, body))
}

/// A required or optional non-negative integer query parameter; anything else is a 400
/// naming it.
fn number(pairs: &[(String, String)], name: &str, required: bool) -> Result<Option<u64>, ApiError> {
    match param(pairs, name).map(str::trim) {
        None | Some("") if required => Err(FieldError::new(
            "invalid_query",
            name,
            format!("the `{name}` parameter is required"),
        )
        .into()),
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            FieldError::new(
                "invalid_query",
                name,
                format!("`{v}` is not a non-negative integer"),
            )
            .into()
        }),
    }
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TenantParam {
    /// The tenant (default: the key's pinned tenant, else `default`).
    tenant: Option<String>,
}

/// The tenant's latest signed checkpoint.
///
/// A C2SP `tlog-checkpoint` (origin `<prefix>/<tenant>`, tree size, base64 root hash) in an
/// Ed25519 `signed-note`, signed under the origin as key name; verify it with the log's
/// `verifier_key` from `GET /v1/log` (or the key of `GET /v1/log/public-key` under that name). The server
/// signs each growing log at least once a second. With a witness policy, the note also
/// carries the `cosignature/v1` lines witnesses returned for this checkpoint (CONTRACT §11).
#[utoipa::path(
    get,
    path = "/v1/log/checkpoint",
    tag = "integrity",
    params(TenantParam),
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 404, description = "`no_checkpoint`: the log is empty or not signed yet", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    match state.store.latest_checkpoint(&tenant).await? {
        Some(cp) => Ok(text(
            crate::integrity::cosigned_note(&*state.store, &tenant, &cp).await?,
        )),
        None => Err(bitacora_log::LogError::NoCheckpoint(tenant.to_string()).into()),
    }
}

/// What a verifier needs to know about one tenant's log (CONTRACT §11).
#[derive(Serialize, utoipa::ToSchema)]
pub struct LogDescription {
    pub tenant: String,
    /// The log's checkpoint origin, `<prefix>/<tenant>`, fixed when its first checkpoint was
    /// signed (`bitacora/<tenant>` for logs from before `integrity.origin_prefix`).
    pub origin: String,
    /// The log's verifier key, named by its origin (`<origin>+<key id>+<key>`): the key its
    /// checkpoints are signed under, and what a witness or a C2SP `tlog-policy` `log` line
    /// names this log by.
    pub verifier_key: String,
    /// Every signed-note verifier key its checkpoints verify with: the current key and the
    /// retired ones still trusted, each named by the origin, then each under its own name
    /// (the lines of `GET /v1/log/public-key`, which signed checkpoints from before key names
    /// followed origins, and sign the legacy line during the transition).
    pub verifier_keys: Vec<String>,
    /// Events in the log.
    pub size: u64,
    /// The latest signed checkpoint's tree size; absent when none is signed yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_size: Option<u64>,
    /// The witnesses (key names) whose cosignatures the latest checkpoint carries.
    pub cosigned_by: Vec<String>,
    /// The largest tree size any witness cosigned; absent when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witnessed_size: Option<u64>,
}

/// The tenant's log: its origin, verifier keys, size and witnessing.
///
/// Everything a monitor, a mirror or a witness operator needs to follow the log with the
/// C2SP tools: the origin line its checkpoints carry and the keys they verify with.
#[utoipa::path(
    get,
    path = "/v1/log",
    tag = "integrity",
    params(TenantParam),
    responses(
        (status = 200, description = "The log", body = LogDescription),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn describe(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let latest = state.store.latest_checkpoint(&tenant).await?;
    let origin = match (&latest, state.store.log_origin(&tenant).await?) {
        (_, Some(origin)) => origin,
        (Some(_), None) => bitacora_core::checkpoint::tenant_origin(tenant.as_str()),
        // Not signed yet: the origin its first checkpoint will get.
        (None, None) => format!("{}/{tenant}", state.config.integrity.origin_prefix),
    };
    let cosigned_by = match &latest {
        Some(cp) => state
            .store
            .cosignatures(&tenant, cp.size)
            .await?
            .into_iter()
            .map(|c| c.witness)
            .collect(),
        None => Vec::new(),
    };
    let witnessed_size = state
        .store
        .latest_cosignatures(&tenant)
        .await?
        .iter()
        .map(|c| c.size)
        .max();
    let verifier_key = state
        .keys
        .verifier_for(&origin)
        .map_err(|e| ApiError::Internal(format!("the origin `{origin}` is not a key name: {e}")))?
        .to_string();
    json(&LogDescription {
        verifier_key,
        verifier_keys: state
            .keys
            .verifiers_for(&origin)
            .iter()
            .map(ToString::to_string)
            .collect(),
        origin,
        size: state.store.log_size(&tenant).await?,
        checkpoint_size: latest.map(|cp| cp.size),
        cosigned_by,
        witnessed_size,
        tenant: tenant.to_string(),
    })
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct InclusionParams {
    /// The event's `seq` (its leaf index).
    seq: u64,
    /// The tree size the proof is for; default: the latest checkpoint's size.
    tree_size: Option<u64>,
    /// The tenant (default: the key's pinned tenant, else `default`).
    tenant: Option<String>,
}

/// The inclusion proof of one event in the tenant's tree.
///
/// Proves that the event at `seq` (leaf hash `leaf_hash` of `GET /v1/events/{id}`) is in the
/// tree of `tree_size` events, whose root a signed checkpoint commits to. Without
/// `tree_size`, the latest checkpoint's size is used (`404 no_checkpoint` if there is none).
#[utoipa::path(
    get,
    path = "/v1/log/proof/inclusion",
    tag = "integrity",
    params(InclusionParams),
    responses(
        (status = 200, description = "The proof", body = InclusionProof),
        (status = 400, description = "Missing or invalid `seq`/`tree_size` (named in `field`), or out of range", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 404, description = "`no_checkpoint`: no `tree_size` given and the log is not signed yet", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn inclusion(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["seq", "tree_size", "tenant"])?;
    let seq = number(&pairs, "seq", true)?.unwrap_or_default();
    let tree_size = number(&pairs, "tree_size", false)?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let tree_size = match tree_size {
        Some(size) => size,
        None => match state.store.latest_checkpoint(&tenant).await? {
            Some(cp) => cp.size,
            None => return Err(bitacora_log::LogError::NoCheckpoint(tenant.to_string()).into()),
        },
    };
    let proof = bitacora_log::inclusion_proof(&*state.store, &tenant, seq, tree_size).await?;
    json(&proof)
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ConsistencyParams {
    /// The smaller tree size.
    first: u64,
    /// The bigger tree size (at most the log's size).
    second: u64,
    /// The tenant (default: the key's pinned tenant, else `default`).
    tenant: Option<String>,
}

/// The consistency proof between two tree sizes.
///
/// Proves that the tree of `second` events extends the tree of `first` events unchanged:
/// given two signed checkpoints, nothing before the first was altered since.
#[utoipa::path(
    get,
    path = "/v1/log/proof/consistency",
    tag = "integrity",
    params(ConsistencyParams),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "Missing or invalid `first`/`second` (named in `field`), or out of range", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn consistency(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["first", "second", "tenant"])?;
    let first = number(&pairs, "first", true)?.unwrap_or_default();
    let second = number(&pairs, "second", true)?.unwrap_or_default();
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let proof = bitacora_log::consistency_proof(&*state.store, &tenant, first, second).await?;
    json(&proof)
}

/// The checkpoint verifier keys (no authentication).
///
/// Signed-note verifier key format (`<name>+<key id hex>+<base64 of 0x01 || Ed25519 public
/// key>`), one a line: the current signing key on the first line, then any retired keys
/// that still vouch for older checkpoints (key rotation). One key signs every tenant's log,
/// each under its origin as key name (same key, another key id): `GET /v1/log` gives a
/// log's own verifier key; these lines carry the key file's name.
#[utoipa::path(
    get,
    path = "/v1/log/public-key",
    tag = "integrity",
    responses(
        (status = 200, description = "Verifier keys, current first", body = String, content_type = "text/plain; charset=utf-8"),
    )
)]
pub async fn public_key(State(state): State<AppState>) -> Response {
    text(crate::integrity::public_key_text(&state.keys))
}

/// Whether one event is provably in the signed log.
///
/// Checks the latest checkpoint's signature with the server's trusted keys, recomputes the
/// event's leaf hash from the stored event and verifies its inclusion proof to the signed
/// root. `state` is `verified`, `pending` (the event is newer than the latest checkpoint; it
/// is signed within about a second) or `failed` (`detail` says what does not verify).
#[utoipa::path(
    get,
    path = "/v1/events/{id}/inclusion",
    tag = "integrity",
    params(("id" = String, Path, description = "The event's id"), TenantParam),
    responses(
        (status = 200, description = "The event's inclusion status", body = InclusionStatus),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 404, description = "No event with this id in this tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn event_inclusion(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let Some(event) = state.store.event_by_id(&tenant, &id).await? else {
        return Err(ApiError::NotFound(format!(
            "no event with id `{id}` in tenant `{tenant}`"
        )));
    };
    let status = bitacora_log::event_inclusion_status(
        &*state.store,
        &tenant,
        event.seq,
        &state.keys.verifiers(),
    )
    .await?;
    json(&status)
}
