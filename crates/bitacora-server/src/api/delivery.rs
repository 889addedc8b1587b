//! `/v1/destinations`, `/v1/alert-rules` (admin) and `/v1/alerts` (read): CONTRACT §10.
//!
//! Handlers only check and store what an admin asks for; `bitacora-delivery` owns the
//! settings' shape and does the delivering. A destination or rule of an admin key pinned to
//! a tenant is pinned to that tenant too, and such a key sees and deletes only those.
//! Creating and deleting are self-audited (`bitacora.destination.*`, `bitacora.alert_rule.*`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use bitacora_core::api::ErrorBody;
use bitacora_core::query::{Cursor, Pagination};
use bitacora_core::{EventQuery, FieldError, TenantName};
use bitacora_delivery::spec::{DestinationSpec, Format, Kind, RuleSpec, new_secret};
use bitacora_delivery::{TenantHealth, alert::ALERT_FIRED};
use bitacora_store::{AlertRuleRecord, DestinationRecord};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{check_params, json_text, param, query_pairs, write_events};
use crate::audit;
use crate::auth::{ClientIp, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/destinations` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    /// A name for people (1-128 characters).
    pub name: String,
    /// Deliver this tenant's events only (default: every tenant; an admin key pinned to a
    /// tenant always creates destinations of its tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// `webhook`, `slack`, `splunk_hec` or `nats`.
    pub kind: String,
    /// Where to POST (`nats://host:4222/<subject>` for NATS). Loopback, private and link-local addresses are refused unless
    /// `[delivery] allow_private_destinations = true`.
    pub url: String,
    /// `bitacora` (default) or `ocsf`.
    #[serde(default)]
    pub format: Option<String>,
    /// Search filters (the names of `GET /v1/events`' parameters) a streamed event must pass.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<BTreeMap<String, String>>,
    /// True: deliver every matching event (a stream). False (default): only the firings of
    /// the alert rules that name this destination.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Webhooks: your own signing secrets (`whsec_...`, at most two, the newest first, to
    /// rotate); by default one is generated and returned once.
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    /// Splunk HEC: the HEC token.
    #[serde(default)]
    pub token: Option<String>,
}

/// A destination as shown (never its secrets or token).
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationView {
    pub id: String,
    pub name: String,
    /// `null`: every tenant.
    pub tenant: Option<String>,
    pub kind: String,
    /// The URL; a Slack webhook's path (its credential) is shown as `…`.
    pub url: String,
    pub format: String,
    #[schema(value_type = Object)]
    pub filter: BTreeMap<String, String>,
    pub stream: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Why deliveries stopped (the receiver answered 410), if they did.
    pub disabled: Option<String>,
    /// Webhooks created without `secrets`: the generated signing secret, shown only in the
    /// creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Per tenant: the position, lag, last success and last error. Absent in the creation
    /// response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Vec<Health>>,
}

/// A destination's health in one tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub tenant: String,
    /// The last `seq` handed to the receiver and accepted (or passed over by the filter).
    pub last_delivered_seq: Option<u64>,
    /// Events of the log not yet examined.
    pub lag: u64,
    /// Age of the oldest event not yet examined, in seconds.
    pub lag_seconds: f64,
    /// RFC 3339.
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationList {
    pub destinations: Vec<DestinationView>,
}

/// `POST /v1/alert-rules` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    /// 1-128 characters.
    pub name: String,
    /// Watch this tenant only (default: every tenant; forced for a pinned admin key).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Search filters (as `GET /v1/events`' parameters), plus optionally
    /// `"changes": {"field": "role", "to": "admin"}`.
    #[serde(rename = "match", default)]
    #[schema(value_type = Option<Object>)]
    pub matcher: Option<Value>,
    /// `{"count": 5, "window": "10m", "group_by": "context.ip"}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub threshold: Option<Value>,
    /// After a firing, stay silent for this group this long (`<n>s|m|h|d`).
    #[serde(default)]
    pub suppress_for: Option<String>,
    /// Severity of the `bitacora.alert.fired` events (default `high`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Destination ids the firings are delivered to.
    #[serde(default)]
    pub destinations: Vec<String>,
}

/// An alert rule as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertRuleView {
    pub id: String,
    pub name: String,
    pub tenant: Option<String>,
    #[serde(rename = "match")]
    #[schema(value_type = Object)]
    pub matcher: Value,
    #[schema(value_type = Option<Object>)]
    pub threshold: Option<Value>,
    pub suppress_for: Option<String>,
    pub severity: Option<String>,
    pub destinations: Vec<String>,
    pub created_at: String,
    /// Events this server evaluated for it since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluated: Option<u64>,
    /// Its firings on this server since it started (all firings: `GET /v1/alerts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<AlertRuleView>,
}

/// `GET /v1/alerts`: firings as the events they are.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub alerts: Vec<bitacora_core::Event>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AlertParams {
    /// The tenant (default: the credential's).
    tenant: Option<String>,
    /// 1..1000, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

const DESTINATION_CREATED: &str = "bitacora.destination.created";
const DESTINATION_DELETED: &str = "bitacora.destination.deleted";
const RULE_CREATED: &str = "bitacora.alert_rule.created";
const RULE_DELETED: &str = "bitacora.alert_rule.deleted";

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| FieldError::whole("invalid_json", format!("malformed JSON: {e}")))?;
    if !value.is_object() {
        return Err(FieldError::whole("invalid_body", "the body must be a JSON object").into());
    }
    serde_json::from_value(value)
        .map_err(|e| FieldError::whole("invalid_field", e.to_string()).into())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(
            FieldError::invalid("name", "1 to 128 characters, no control characters").into(),
        );
    }
    Ok(())
}

/// The tenant a new destination or rule is limited to: the pinned one, else the one asked
/// for, else none (every tenant).
fn scope_tenant(
    principal: &Principal,
    asked: Option<&str>,
) -> Result<Option<TenantName>, ApiError> {
    match (
        principal.pinned(),
        asked.map(str::trim).filter(|t| !t.is_empty()),
    ) {
        (None, None) => Ok(None),
        (_, asked) => principal.resolve_tenant(asked).map(Some),
    }
}

/// Whether a pinned credential may see something of `tenant` (unpinned ones see all).
fn visible(principal: &Principal, tenant: Option<&TenantName>) -> bool {
    principal.pinned().is_none_or(|p| tenant == Some(p))
}

fn shown_url(kind: Kind, url: &str) -> String {
    match (kind, reqwest_free_origin(url)) {
        (Kind::Slack, Some(origin)) => format!("{origin}/…"),
        _ => url.to_owned(),
    }
}

/// `scheme://host[:port]` of a URL, without parsing libraries (the URL was checked when
/// the destination was created).
fn reqwest_free_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}

fn view(
    record: &DestinationRecord,
    secret: Option<String>,
    health: Option<Vec<Health>>,
) -> DestinationView {
    let spec: Option<DestinationSpec> = serde_json::from_str(&record.spec).ok();
    DestinationView {
        id: record.id.clone(),
        name: record.name.clone(),
        tenant: record.tenant.as_ref().map(|t| t.as_str().to_owned()),
        kind: spec
            .as_ref()
            .map_or("unknown", |s| s.kind.as_str())
            .to_owned(),
        url: spec
            .as_ref()
            .map(|s| shown_url(s.kind, &s.url))
            .unwrap_or_default(),
        format: match spec.as_ref().map(|s| s.format) {
            Some(Format::Ocsf) => "ocsf",
            _ => "bitacora",
        }
        .to_owned(),
        filter: spec.as_ref().map(|s| s.filter.clone()).unwrap_or_default(),
        stream: spec.as_ref().is_some_and(|s| s.stream),
        created_at: rfc3339(record.created_at),
        disabled: record.disabled.clone(),
        secret,
        health,
    }
}

fn health_view(h: TenantHealth) -> Health {
    Health {
        tenant: h.tenant,
        last_delivered_seq: h.last_delivered_seq,
        lag: h.lag,
        lag_seconds: h.lag_seconds,
        last_success_at: h.last_success_at.map(rfc3339),
        last_error: h.last_error,
        last_error_at: h.last_error_at.map(rfc3339),
    }
}

/// Create a destination.
///
/// A webhook gets a generated `whsec_` signing secret, returned only here (unless `secrets`
/// were given). The URL's addresses are checked now and at every delivery.
#[utoipa::path(
    post,
    path = "/v1/destinations",
    tag = "delivery",
    request_body(content = CreateDestination, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = DestinationView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`), or the URL is a loopback/private address", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_destination(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CreateDestination = parse_json(body)?;
    check_name(&request.name)?;
    let tenant = scope_tenant(&principal, request.tenant.as_deref())?;
    let kind: Kind = serde_json::from_value(json!(request.kind)).map_err(|_| {
        FieldError::invalid(
            "kind",
            format!(
                "`{}`: this build delivers to {}",
                request.kind,
                Kind::ACCEPTED
            ),
        )
    })?;
    let format: Format = match request.format.as_deref() {
        None => Format::Bitacora,
        Some(f) => serde_json::from_value(json!(f)).map_err(|_| {
            FieldError::invalid("format", format!("`{f}`: expected bitacora or ocsf"))
        })?,
    };
    let generated = (kind == Kind::Webhook && request.secrets.is_none()).then(new_secret);
    let spec = DestinationSpec {
        kind,
        url: request.url.trim().to_owned(),
        format,
        filter: request.filter.unwrap_or_default(),
        stream: request.stream.unwrap_or(false),
        secrets: match (&generated, request.secrets) {
            (Some(s), _) => vec![s.clone()],
            (None, Some(s)) => s,
            (None, None) => Vec::new(),
        },
        token: request.token,
    };
    spec.check()
        .map_err(|e| FieldError::invalid(e.field, e.message))?;
    bitacora_delivery::ssrf::check_url(&spec.url, state.config.delivery.allow_private_destinations)
        .await
        .map_err(|m| FieldError::new("forbidden_destination", "url", m))?;
    let record = DestinationRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: request.name.trim().to_owned(),
        tenant,
        spec: serde_json::to_string(&spec).map_err(ApiError::internal)?,
        created_at: Utc::now().timestamp_micros(),
        disabled: None,
    };
    let mut metadata = Map::new();
    metadata.insert("kind".into(), json!(kind.as_str()));
    metadata.insert("url".into(), json!(reqwest_free_origin(&spec.url)));
    metadata.insert("stream".into(), json!(spec.stream));
    audit::record(
        &state,
        record.tenant.as_ref(),
        DESTINATION_CREATED,
        &principal,
        client_ip,
        Some(json!({"type": "destination", "id": record.id, "name": record.name})),
        metadata,
    )
    .await?;
    state.store.insert_destination(&record).await?;
    tracing::info!(destination = %record.id, kind = kind.as_str(), "destination created");
    Ok((StatusCode::CREATED, Json(view(&record, generated, None))).into_response())
}

/// List destinations with their health.
#[utoipa::path(
    get,
    path = "/v1/destinations",
    tag = "delivery",
    responses(
        (status = 200, description = "Every destination this credential may see, oldest first", body = DestinationList),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_destinations(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<DestinationList>, ApiError> {
    check_params(&query_pairs(raw.as_deref()), &[])?;
    let mut out = Vec::new();
    for record in state.store.destinations().await? {
        if !visible(&principal, record.tenant.as_ref()) {
            continue;
        }
        let health = bitacora_delivery::health(&*state.store, &record)
            .await?
            .into_iter()
            .map(health_view)
            .collect();
        out.push(view(&record, None, Some(health)));
    }
    Ok(Json(DestinationList { destinations: out }))
}

/// Delete a destination (and its positions).
#[utoipa::path(
    delete,
    path = "/v1/destinations/{id}",
    tag = "delivery",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such destination (for this credential)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_destination(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(record) = state
        .store
        .destinations()
        .await?
        .into_iter()
        .find(|d| d.id == id && visible(&principal, d.tenant.as_ref()))
    else {
        return Err(ApiError::NotFound(format!("no destination `{id}`")));
    };
    audit::record(
        &state,
        record.tenant.as_ref(),
        DESTINATION_DELETED,
        &principal,
        client_ip,
        Some(json!({"type": "destination", "id": record.id, "name": record.name})),
        Map::new(),
    )
    .await?;
    state.store.delete_destination(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn rule_view(
    record: &AlertRuleRecord,
    status: Option<&bitacora_delivery::RuleStatus>,
) -> AlertRuleView {
    let spec: Option<RuleSpec> = serde_json::from_str(&record.spec).ok();
    AlertRuleView {
        id: record.id.clone(),
        name: record.name.clone(),
        tenant: record.tenant.as_ref().map(|t| t.as_str().to_owned()),
        matcher: spec
            .as_ref()
            .and_then(|s| serde_json::to_value(&s.matcher).ok())
            .unwrap_or(Value::Null),
        threshold: spec
            .as_ref()
            .and_then(|s| s.threshold.as_ref())
            .and_then(|t| serde_json::to_value(t).ok()),
        suppress_for: spec.as_ref().and_then(|s| s.suppress_for.clone()),
        severity: spec
            .as_ref()
            .and_then(|s| s.severity)
            .map(|s| s.as_str().to_owned()),
        destinations: spec.map(|s| s.destinations).unwrap_or_default(),
        created_at: rfc3339(record.created_at),
        evaluated: status.map(|s| s.evaluated),
        fired: status.map(|s| s.fired),
    }
}

/// Create an alert rule.
///
/// Without `threshold`, every matching event fires; with one, a group fires once `count`
/// matches fall within `window`, then stays silent for `suppress_for`. Each firing is a
/// `bitacora.alert.fired` event in the tenant, delivered to `destinations` at least once.
/// A new rule evaluates events appended from now on.
#[utoipa::path(
    post,
    path = "/v1/alert-rules",
    tag = "delivery",
    request_body(content = CreateRule, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = AlertRuleView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_rule(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CreateRule = parse_json(body)?;
    check_name(&request.name)?;
    let tenant = scope_tenant(&principal, request.tenant.as_deref())?;
    let spec: RuleSpec = serde_json::from_value(json!({
        "match": request.matcher.unwrap_or_else(|| json!({})),
        "threshold": request.threshold,
        "suppress_for": request.suppress_for,
        "severity": request.severity,
        "destinations": request.destinations,
    }))
    .map_err(|e| FieldError::whole("invalid_field", e.to_string()))?;
    let destinations = state.store.destinations().await?;
    // A rule's firings go to destinations that serve its tenant(s).
    spec.check(|id| {
        destinations.iter().any(|d| {
            d.id == id
                && visible(&principal, d.tenant.as_ref())
                && (d.tenant.is_none() || d.tenant == tenant)
        })
    })
    .map_err(|e| FieldError::invalid(e.field, e.message))?;
    let record = AlertRuleRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: request.name.trim().to_owned(),
        tenant,
        spec: serde_json::to_string(&spec).map_err(ApiError::internal)?,
        created_at: Utc::now().timestamp_micros(),
    };
    audit::record(
        &state,
        record.tenant.as_ref(),
        RULE_CREATED,
        &principal,
        client_ip,
        Some(json!({"type": "alert_rule", "id": record.id, "name": record.name})),
        Map::new(),
    )
    .await?;
    state.store.insert_alert_rule(&record).await?;
    Ok((StatusCode::CREATED, Json(rule_view(&record, None))).into_response())
}

/// List alert rules.
#[utoipa::path(
    get,
    path = "/v1/alert-rules",
    tag = "delivery",
    responses(
        (status = 200, description = "Every rule this credential may see, oldest first", body = RuleList),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_rules(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<RuleList>, ApiError> {
    check_params(&query_pairs(raw.as_deref()), &[])?;
    let status = state.delivery.snapshot();
    let rules = state
        .store
        .alert_rules()
        .await?
        .iter()
        .filter(|r| visible(&principal, r.tenant.as_ref()))
        .map(|r| rule_view(r, status.rules.get(&r.id)))
        .collect();
    Ok(Json(RuleList { rules }))
}

/// Delete an alert rule (its past firings stay in the log).
#[utoipa::path(
    delete,
    path = "/v1/alert-rules/{id}",
    tag = "delivery",
    params(("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such rule (for this credential)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_rule(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(record) = state
        .store
        .alert_rules()
        .await?
        .into_iter()
        .find(|r| r.id == id && visible(&principal, r.tenant.as_ref()))
    else {
        return Err(ApiError::NotFound(format!("no alert rule `{id}`")));
    };
    audit::record(
        &state,
        record.tenant.as_ref(),
        RULE_DELETED,
        &principal,
        client_ip,
        Some(json!({"type": "alert_rule", "id": record.id, "name": record.name})),
        Map::new(),
    )
    .await?;
    state.store.delete_alert_rule(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// List alert firings.
///
/// The tenant's `bitacora.alert.fired` events, newest first: each names its rule
/// (`metadata.rule_id`, `rule_name`), the group value and the `seq`s of the events that fired
/// it (`metadata.seqs`).
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "delivery",
    params(AlertParams),
    responses(
        (status = 200, description = "A page of firings (as events)", body = AlertPage),
        (status = 400, description = "Unknown parameter or invalid value (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn alerts(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant", "limit", "cursor"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let mut params: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| k != "tenant")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    params.push(("action", ALERT_FIRED));
    let query = EventQuery::parse(params, &tenant)?;
    let result = state.store.search(&query).await?;
    let mut out = String::from("{\"alerts\":");
    write_events(&mut out, &result.events);
    out.push_str(",\"next_cursor\":");
    match (query.page, result.next_after) {
        (Pagination::Cursor { .. }, Some(seq)) => {
            out.push('"');
            out.push_str(
                &Cursor {
                    seq,
                    order: query.order,
                }
                .encode(),
            );
            out.push('"');
        }
        _ => out.push_str("null"),
    }
    out.push('}');
    Ok(json_text(StatusCode::OK, out))
}
