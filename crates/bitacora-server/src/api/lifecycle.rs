//! The data lifecycle's endpoints (CONTRACT §9): `GET /v1/retention` (read) and the legal
//! holds, `POST/GET /v1/legal-holds` and `DELETE /v1/legal-holds/{id}` (admin). The rules
//! and the purge itself live in `bitacora_lifecycle`; this module is HTTP only.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bitacora_core::api::ErrorBody;
use bitacora_core::{FieldError, TenantName};
use bitacora_store::LegalHoldRecord;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{check_params, param, query_pairs};
use crate::audit;
use crate::auth::{ClientIp, Principal};
use crate::error::ApiError;
use crate::state::AppState;

fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A legal hold as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    /// `lh_...`: what `DELETE /v1/legal-holds/{id}` takes.
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub reason: String,
    /// The search filters of `GET /v1/events` it holds (an empty object: the whole log).
    #[schema(value_type = Object)]
    pub filter: Value,
    /// RFC 3339.
    pub created_at: String,
    /// The id of the credential that placed it.
    pub created_by: String,
    /// RFC 3339; absent while the hold is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
}

impl From<&LegalHoldRecord> for HoldView {
    fn from(h: &LegalHoldRecord) -> Self {
        Self {
            id: h.id.clone(),
            tenant: h.tenant.to_string(),
            name: h.name.clone(),
            reason: h.reason.clone(),
            filter: serde_json::from_str(&h.filter).unwrap_or_else(|_| json!({})),
            created_at: rfc3339(h.created_at),
            created_by: h.created_by.clone(),
            released_at: h.released_at.map(rfc3339),
            released_by: h.released_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldList {
    /// Oldest first.
    pub holds: Vec<HoldView>,
}

/// `POST /v1/legal-holds` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PlaceHold {
    /// Default: the credential's pinned tenant, else `default`.
    tenant: Option<String>,
    /// 1-200 characters; unique among the tenant's holds in force.
    name: String,
    /// 1-2000 characters: the matter, ticket or order behind the hold.
    reason: String,
    /// Search filters of `GET /v1/events` (`actor_id`, `target_type`, `target_id`, `action`,
    /// `since`, `until`, `q`, ...), values as strings; `{}` holds the whole log.
    #[schema(value_type = Object)]
    filter: Value,
}

fn text_field(map: &Map<String, Value>, name: &str, max: usize) -> Result<String, ApiError> {
    match map.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => {
            if s.chars().any(char::is_control) {
                return Err(FieldError::invalid(name, "control characters are not allowed").into());
            }
            Ok(s.clone())
        }
        Some(Value::String(_)) => {
            Err(FieldError::invalid(name, format!("1 to {max} characters")).into())
        }
        None | Some(Value::Null) => {
            Err(FieldError::new("missing_field", name, format!("`{name}` is required")).into())
        }
        Some(_) => Err(FieldError::invalid(name, "must be a string").into()),
    }
}

/// Place a legal hold.
///
/// The events of the tenant that the filter matches (now or later) are never purged by
/// retention while the hold is in force; holds stack. Recorded as a
/// `bitacora.legal_hold.placed` event in the tenant.
#[utoipa::path(
    post,
    path = "/v1/legal-holds",
    tag = "lifecycle",
    request_body(content = PlaceHold, content_type = "application/json"),
    responses(
        (status = 201, description = "Placed", body = HoldView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 409, description = "A hold with this name is already in force in the tenant", body = ErrorBody),
        (status = 415, description = "Content-Type is not `application/json`", body = ErrorBody),
        (status = 422, description = "A field or filter is invalid or unknown (named in `field`)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn place_hold(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return Err(ApiError::UnsupportedMediaType(
            "send `Content-Type: application/json`".into(),
        ));
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| FieldError::whole("invalid_json", format!("malformed JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(FieldError::whole("invalid_body", "the body must be a JSON object").into());
    };
    for name in map.keys() {
        if !["tenant", "name", "reason", "filter"].contains(&name.as_str()) {
            return Err(FieldError::new(
                "unknown_field",
                name.as_str(),
                format!("unknown field `{name}` (accepted: tenant, name, reason, filter)"),
            )
            .into());
        }
    }
    let requested = match map.get("tenant") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err(FieldError::invalid("tenant", "must be a string").into()),
    };
    let tenant = principal.resolve_tenant(requested)?;
    let name = text_field(&map, "name", 200)?;
    let reason = text_field(&map, "reason", 2000)?;
    let filter = match map.get("filter") {
        Some(Value::Object(f)) => f.clone(),
        None | Some(Value::Null) => {
            return Err(FieldError::new(
                "missing_field",
                "filter",
                "`filter` is required (`{}` holds the whole log)",
            )
            .into());
        }
        Some(_) => return Err(FieldError::invalid("filter", "must be an object").into()),
    };
    bitacora_lifecycle::holds::parse_filter(&filter, &tenant)
        .map_err(|e| FieldError::invalid(e.field, e.message))?;
    let in_force = state.store.legal_holds(Some(&tenant), false).await?;
    if in_force.iter().any(|h| h.name == name) {
        return Err(FieldError::new(
            "conflict",
            "name",
            format!("a legal hold named `{name}` is already in force in tenant `{tenant}`"),
        )
        .into());
    }
    let record = LegalHoldRecord {
        id: format!("lh_{}", hex::encode(rand::random::<[u8; 10]>())),
        tenant: tenant.clone(),
        name,
        reason,
        filter: Value::Object(filter.clone()).to_string(),
        created_at: Utc::now().timestamp_micros(),
        created_by: principal.key_id.clone(),
        released_at: None,
        released_by: None,
    };
    // Audited first: a hold bitacora could not record is not placed.
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(record.name));
    metadata.insert("reason".into(), json!(record.reason));
    metadata.insert("filter".into(), Value::Object(filter));
    audit::record(
        &state,
        Some(&tenant),
        bitacora_lifecycle::HOLD_PLACED,
        &principal,
        client_ip,
        Some(json!({"type": "legal_hold", "id": record.id, "name": record.name})),
        metadata,
    )
    .await?;
    state.store.insert_legal_hold(&record).await?;
    tracing::info!(tenant = %tenant, hold.id = %record.id, "legal hold placed");
    Ok((StatusCode::CREATED, Json(HoldView::from(&record))).into_response())
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only this tenant's holds (a pinned credential sees only its own tenant's).
    tenant: Option<String>,
    /// `true` to list released holds too.
    include_released: Option<bool>,
}

/// List legal holds.
#[utoipa::path(
    get,
    path = "/v1/legal-holds",
    tag = "lifecycle",
    params(ListParams),
    responses(
        (status = 200, description = "The holds, oldest first", body = HoldList),
        (status = 400, description = "Unknown parameter or invalid value", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_holds(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<HoldList>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant", "include_released"])?;
    let tenant = scoped_tenant(&principal, param(&pairs, "tenant"))?;
    let include_released = match param(&pairs, "include_released") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(
                FieldError::new("invalid_query", "include_released", "`true` or `false`").into(),
            );
        }
    };
    let holds = state
        .store
        .legal_holds(tenant.as_ref(), include_released)
        .await?;
    Ok(Json(HoldList {
        holds: holds.iter().map(HoldView::from).collect(),
    }))
}

/// The tenant a listing is narrowed to: the requested one (if the credential may), the pinned
/// one, or none (every tenant).
fn scoped_tenant(
    principal: &Principal,
    requested: Option<&str>,
) -> Result<Option<TenantName>, ApiError> {
    match (
        requested.filter(|t| !t.trim().is_empty()),
        principal.pinned(),
    ) {
        (Some(t), _) => principal.resolve_tenant(Some(t)).map(Some),
        (None, Some(pinned)) => Ok(Some(pinned.clone())),
        (None, None) => Ok(None),
    }
}

/// Release a legal hold.
///
/// Its events become subject to the retention rules again (at the next pass). Recorded as a
/// `bitacora.legal_hold.released` event in the hold's tenant.
#[utoipa::path(
    delete,
    path = "/v1/legal-holds/{id}",
    tag = "lifecycle",
    params(("id" = String, Path, description = "The hold's id (`lh_...`)")),
    responses(
        (status = 200, description = "Released", body = HoldView),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such hold in force (in the credential's tenant)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn release_hold(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<HoldView>, ApiError> {
    let Some(hold) = state
        .store
        .legal_holds(principal.pinned(), false)
        .await?
        .into_iter()
        .find(|h| h.id == id)
    else {
        return Err(ApiError::NotFound(format!("no legal hold `{id}` in force")));
    };
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(hold.name));
    audit::record(
        &state,
        Some(&hold.tenant),
        bitacora_lifecycle::HOLD_RELEASED,
        &principal,
        client_ip,
        Some(json!({"type": "legal_hold", "id": hold.id, "name": hold.name})),
        metadata,
    )
    .await?;
    let released = state
        .store
        .release_legal_hold(
            &id,
            Some(&hold.tenant),
            Utc::now().timestamp_micros(),
            &principal.key_id,
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no legal hold `{id}` in force")))?;
    tracing::info!(tenant = %released.tenant, hold.id = %id, "legal hold released");
    Ok(Json(HoldView::from(&released)))
}

/// One retention rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRuleView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// An action, or a prefix ending in `*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `<n>s|m|h|d`, or `forever`.
    pub keep: String,
}

/// The oldest event a tenant still holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct HorizonView {
    pub seq: u64,
    pub id: String,
    pub received_at: String,
    pub occurred_at: String,
}

/// One tenant's retention.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantRetentionView {
    pub tenant: String,
    /// The age of an event no rule covers; `forever` when there is no default.
    pub default: String,
    /// The rules that can apply to this tenant, most specific first.
    pub rules: Vec<RetentionRuleView>,
    /// The oldest event still held; `null` when none. A search that finds nothing before this
    /// is not evidence that nothing happened then.
    pub horizon: Option<HorizonView>,
    /// Events whose content retention purged (their seq and leaf hash remain).
    pub purged_events: u64,
    pub purges: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_purge_archive: Option<String>,
    /// Legal holds in force.
    pub holds: Vec<HoldView>,
}

/// The retention task on this server.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionTaskView {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pass_at: Option<String>,
    /// When this server looks for expired events next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_pass_at: Option<String>,
    pub purged_events: u64,
    pub purges: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// While a changed rule set waits out `min_delay`: when purging starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purging_from: Option<String>,
    /// Another server sharing the store is the one that purges (one purger per store).
    pub standby: bool,
}

/// `GET /v1/retention`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionView {
    pub check_interval: String,
    pub min_delay: String,
    /// Where purged events are archived first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_url: Option<String>,
    pub task: RetentionTaskView,
    pub tenants: Vec<TenantRetentionView>,
}

fn keep_text(keep: Option<bitacora_lifecycle::Keep>) -> String {
    match keep {
        Some(bitacora_lifecycle::Keep::For(age)) => age.to_string(),
        Some(bitacora_lifecycle::Keep::Forever) | None => "forever".into(),
    }
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RetentionParams {
    /// Only this tenant (a pinned credential sees only its own).
    tenant: Option<String>,
}

/// Retention rules, horizon, holds and archive.
///
/// Per tenant: the rules in effect, the horizon (oldest event still held), how much was
/// purged and where it was archived, and the legal holds in force.
#[utoipa::path(
    get,
    path = "/v1/retention",
    tag = "lifecycle",
    params(RetentionParams),
    responses(
        (status = 200, description = "Retention", body = RetentionView),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retention(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<RetentionView>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenants = match scoped_tenant(&principal, param(&pairs, "tenant"))? {
        Some(t) => vec![t],
        None => state.store.tenants().await?,
    };
    let config = &state.config.retention;
    let mut views = Vec::with_capacity(tenants.len());
    for tenant in &tenants {
        let t = bitacora_lifecycle::describe_tenant(&*state.store, config, tenant)
            .await
            .map_err(|e| match e {
                bitacora_lifecycle::LifecycleError::Store(e) => ApiError::from(e),
                other => ApiError::internal(other),
            })?;
        let holds = state.store.legal_holds(Some(tenant), false).await?;
        views.push(TenantRetentionView {
            tenant: t.tenant,
            default: keep_text(t.default),
            rules: t
                .rules
                .into_iter()
                .map(|r| RetentionRuleView {
                    tenant: r.tenant.map(|t| t.to_string()),
                    category: r.category,
                    action: r.action,
                    keep: keep_text(Some(r.keep)),
                })
                .collect(),
            horizon: t.horizon.map(|h| HorizonView {
                seq: h.seq,
                id: h.id,
                received_at: h.received_at,
                occurred_at: h.occurred_at,
            }),
            purged_events: t.purged_events,
            purges: t.purges,
            last_purge_archive: t.last_purge_archive,
            holds: holds.iter().map(HoldView::from).collect(),
        });
    }
    let s = state.retention.snapshot();
    Ok(Json(RetentionView {
        check_interval: config.check_interval.to_string(),
        min_delay: config.min_delay.to_string(),
        archive_url: crate::store::archive_url(&state.config),
        task: RetentionTaskView {
            enabled: s.enabled,
            last_pass_at: s.last_pass_at,
            next_pass_at: s.next_pass_at,
            purged_events: s.purged_events,
            purges: s.purges,
            last_error: s.last_error,
            purging_from: s.purging_from,
            standby: s.standby,
        },
        tenants: views,
    }))
}
