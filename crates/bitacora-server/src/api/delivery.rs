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
    /// `webhook`, `slack`, `splunk_hec`, `nats`, `syslog` or `email`.
    pub kind: String,
    /// Where to POST; `nats://host:4222/<subject>` for NATS; `syslog://host[:514]` (TCP) or
    /// `syslogs://host[:6514]` (TLS) for syslog; `mailto:a@example.com,b@example.com` for
    /// email (sent through the server's `[delivery.smtp]` relay). Loopback, private and
    /// link-local addresses are refused unless `[delivery] allow_private_destinations = true`.
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
    /// `syslogs://`: certificates (PEM) to trust besides the public authorities (a receiver
    /// with a private or self-signed certificate).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Syslog: the RFC 5424 facility, 0-23 (default 13, "log audit").
    #[serde(default)]
    pub facility: Option<u8>,
    /// `syslogs://` with mutual TLS: the client certificate chain (PEM, leaf first) to
    /// present to a receiver that asks for one; with `client_key_pem`.
    #[serde(default)]
    pub client_cert_pem: Option<String>,
    /// The private key (PEM) of `client_cert_pem`; stored, never shown.
    #[serde(default)]
    pub client_key_pem: Option<String>,
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
    /// creation response (and a new one in the response of `rotate-secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Webhooks: how many secrets sign each delivery now (2 while one is being rotated out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secrets: Option<u32>,
    /// Webhooks being rotated: when the previous secret stops signing (RFC 3339); `null`
    /// when it signs until retired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
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
    /// Disabled by an admin: not evaluated (`POST /v1/alert-rules/{id}/enable` resumes it
    /// from the events received then on).
    pub disabled: bool,
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
pub(crate) fn visible(principal: &Principal, tenant: Option<&TenantName>) -> bool {
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
        signing_secrets: spec
            .as_ref()
            .filter(|s| s.kind == Kind::Webhook)
            .map(|s| s.signing_secrets(Utc::now().timestamp_micros()).len() as u32),
        previous_secret_expires_at: spec
            .as_ref()
            .filter(|s| s.secrets.len() > 1)
            .and_then(|s| s.previous_secret_expires_at)
            .map(rfc3339),
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
        previous_secret_expires_at: None,
        ca_pem: request.ca_pem,
        facility: request.facility,
        client_cert_pem: request.client_cert_pem,
        client_key_pem: request.client_key_pem,
    };
    spec.check()
        .map_err(|e| FieldError::invalid(e.field, e.message))?;
    if kind == Kind::Email {
        // The relay is the operator's (`[delivery.smtp]`), not an address the admin typed.
        if state.config.delivery.smtp.is_none() {
            return Err(FieldError::invalid(
                "kind",
                "email destinations need an SMTP relay in the server's configuration                  ([delivery.smtp], see docs/DELIVERY.md)",
            )
            .into());
        }
    } else {
        bitacora_delivery::ssrf::check_url(
            &spec.url,
            state.config.delivery.allow_private_destinations,
        )
        .await
        .map_err(|m| FieldError::new("forbidden_destination", "url", m))?;
    }
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
        disabled: spec.as_ref().is_some_and(|s| s.disabled),
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
    let record = insert_rule(&state, &principal, client_ip, request).await?;
    Ok((StatusCode::CREATED, Json(rule_view(&record, None))).into_response())
}

/// Checks, audits and stores a new rule (for the API and the viewer).
pub(crate) async fn insert_rule(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<std::net::IpAddr>,
    request: CreateRule,
) -> Result<AlertRuleRecord, ApiError> {
    check_name(&request.name)?;
    let tenant = scope_tenant(principal, request.tenant.as_deref())?;
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
                && visible(principal, d.tenant.as_ref())
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
        state,
        record.tenant.as_ref(),
        RULE_CREATED,
        principal,
        client_ip,
        Some(json!({"type": "alert_rule", "id": record.id, "name": record.name})),
        Map::new(),
    )
    .await?;
    state.store.insert_alert_rule(&record).await?;
    Ok(record)
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

/// The destination `id`, if this credential may see it.
pub(crate) async fn find_destination(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<DestinationRecord, ApiError> {
    state
        .store
        .destinations()
        .await?
        .into_iter()
        .find(|d| d.id == id && visible(principal, d.tenant.as_ref()))
        .ok_or_else(|| ApiError::NotFound(format!("no destination `{id}`")))
}

/// The rule `id`, if this credential may see it.
async fn find_rule(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<AlertRuleRecord, ApiError> {
    state
        .store
        .alert_rules()
        .await?
        .into_iter()
        .find(|r| r.id == id && visible(principal, r.tenant.as_ref()))
        .ok_or_else(|| ApiError::NotFound(format!("no alert rule `{id}`")))
}

fn stored_spec<T: serde::de::DeserializeOwned>(spec: &str) -> Result<T, ApiError> {
    serde_json::from_str(spec).map_err(ApiError::internal)
}

/// `POST /v1/destinations/{id}/rotate-secret` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the current secret keeps signing beside the new one (`<n>s|m|h|d`, default
    /// `24h`), so receivers can move to the new one without missing a delivery.
    #[serde(default)]
    pub previous_expires_in: Option<String>,
}

const DESTINATION_SECRET_ROTATED: &str = "bitacora.destination.secret_rotated";
const DESTINATION_SECRET_RETIRED: &str = "bitacora.destination.secret_retired";
const DESTINATION_TESTED: &str = "bitacora.destination.tested";
const RULE_DISABLED: &str = "bitacora.alert_rule.disabled";
const RULE_ENABLED: &str = "bitacora.alert_rule.enabled";

/// Rotate a webhook's signing secret.
///
/// Generates a new `whsec_` secret (returned only here, in `secret`) that signs every
/// delivery from now on, beside the current one until `previous_expires_in` has passed (or
/// `retire-secret` is called): each delivery's `webhook-signature` carries both `v1,`
/// signatures, which the Standard Webhooks libraries accept with either secret. A secret
/// that was already being retired is dropped.
#[utoipa::path(
    post,
    path = "/v1/destinations/{id}/rotate-secret",
    tag = "delivery",
    params(("id" = String, Path, description = "The destination's id")),
    request_body(content = Option<RotateSecret>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rotated: the destination with its new `secret`", body = DestinationView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such destination (for this credential)", body = ErrorBody),
        (status = 422, description = "Not a webhook destination, or a bad duration", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: RotateSecret = match &body {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => RotateSecret::default(),
        _ => parse_json(body)?,
    };
    let keep_for = bitacora_delivery::spec::parse_duration(
        request.previous_expires_in.as_deref().unwrap_or("24h"),
    )
    .map_err(|m| FieldError::invalid("previous_expires_in", m))?;
    let mut record = find_destination(&state, &principal, &id).await?;
    let mut spec: DestinationSpec = stored_spec(&record.spec)?;
    if spec.kind != Kind::Webhook {
        return Err(FieldError::invalid("kind", "only webhook destinations have secrets").into());
    }
    let now = Utc::now().timestamp_micros();
    let secret = new_secret();
    // The one that signs now stays for a while; an older one is dropped.
    let current = spec.signing_secrets(now).into_iter().next();
    spec.secrets = std::iter::once(secret.clone()).chain(current).collect();
    spec.previous_secret_expires_at = Some(now + keep_for);
    record.spec = serde_json::to_string(&spec).map_err(ApiError::internal)?;
    audit::record(
        &state,
        record.tenant.as_ref(),
        DESTINATION_SECRET_ROTATED,
        &principal,
        client_ip,
        Some(json!({"type": "destination", "id": record.id, "name": record.name})),
        Map::new(),
    )
    .await?;
    if !state
        .store
        .update_destination_spec(&id, &record.spec)
        .await?
    {
        return Err(ApiError::NotFound(format!("no destination `{id}`")));
    }
    Ok(Json(view(&record, Some(secret), None)).into_response())
}

/// Retire a webhook's previous signing secret now.
///
/// Only the newest secret signs from now on (a receiver confirmed it moved to it).
#[utoipa::path(
    post,
    path = "/v1/destinations/{id}/retire-secret",
    tag = "delivery",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "Retired: the destination, signed by one secret", body = DestinationView),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such destination (for this credential)", body = ErrorBody),
        (status = 422, description = "Not a webhook destination", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retire_secret(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut record = find_destination(&state, &principal, &id).await?;
    let mut spec: DestinationSpec = stored_spec(&record.spec)?;
    if spec.kind != Kind::Webhook {
        return Err(FieldError::invalid("kind", "only webhook destinations have secrets").into());
    }
    spec.secrets.truncate(1);
    spec.previous_secret_expires_at = None;
    record.spec = serde_json::to_string(&spec).map_err(ApiError::internal)?;
    audit::record(
        &state,
        record.tenant.as_ref(),
        DESTINATION_SECRET_RETIRED,
        &principal,
        client_ip,
        Some(json!({"type": "destination", "id": record.id, "name": record.name})),
        Map::new(),
    )
    .await?;
    if !state
        .store
        .update_destination_spec(&id, &record.spec)
        .await?
    {
        return Err(ApiError::NotFound(format!("no destination `{id}`")));
    }
    Ok(Json(view(&record, None, None)).into_response())
}

/// The result of a test delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestDelivery {
    /// True when the receiver accepted it.
    pub delivered: bool,
    /// Why it was not, as the destination's health would say.
    pub error: Option<String>,
}

/// Send a test event to a destination now.
///
/// One `bitacora.destination.test` event (not in any log: `seq` 0; a webhook body's `type`
/// is `bitacora.test`), sent as the destination's worker sends (format, signature, address
/// guard), once, without retries. Answers whether the receiver accepted it.
#[utoipa::path(
    post,
    path = "/v1/destinations/{id}/test",
    tag = "delivery",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "Sent (or not: see `delivered` and `error`)", body = TestDelivery),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such destination (for this credential)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn test_destination(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<TestDelivery>, ApiError> {
    let record = find_destination(&state, &principal, &id).await?;
    Ok(Json(
        send_test_delivery(&state, &principal, client_ip, &record).await?,
    ))
}

/// Sends a test delivery and records who asked (for the API and the viewer).
pub(crate) async fn send_test_delivery(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<std::net::IpAddr>,
    record: &DestinationRecord,
) -> Result<TestDelivery, ApiError> {
    let result = bitacora_delivery::send_test(
        state.store.clone(),
        &state.config.delivery,
        record,
        &principal.key_id,
    )
    .await;
    let mut metadata = Map::new();
    metadata.insert("delivered".into(), json!(result.is_ok()));
    audit::record(
        state,
        record.tenant.as_ref(),
        DESTINATION_TESTED,
        principal,
        client_ip,
        Some(json!({"type": "destination", "id": record.id, "name": record.name})),
        metadata,
    )
    .await?;
    Ok(TestDelivery {
        delivered: result.is_ok(),
        error: result.err(),
    })
}

/// Sets a rule's `disabled` (and `disabled_at` or `enabled_at`), self-audited.
pub(crate) async fn set_rule_disabled(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<std::net::IpAddr>,
    id: &str,
    disabled: bool,
) -> Result<AlertRuleRecord, ApiError> {
    let mut record = find_rule(state, principal, id).await?;
    let mut spec: RuleSpec = stored_spec(&record.spec)?;
    if spec.disabled == disabled {
        return Ok(record);
    }
    spec.disabled = disabled;
    let now = Some(Utc::now().timestamp_micros());
    if disabled {
        spec.disabled_at = now;
    } else {
        spec.enabled_at = now;
    }
    record.spec = serde_json::to_string(&spec).map_err(ApiError::internal)?;
    audit::record(
        state,
        record.tenant.as_ref(),
        if disabled {
            RULE_DISABLED
        } else {
            RULE_ENABLED
        },
        principal,
        client_ip,
        Some(json!({"type": "alert_rule", "id": record.id, "name": record.name})),
        Map::new(),
    )
    .await?;
    if !state.store.update_alert_rule_spec(id, &record.spec).await? {
        return Err(ApiError::NotFound(format!("no alert rule `{id}`")));
    }
    Ok(record)
}

/// Disable an alert rule.
///
/// It stops being evaluated at once; its past firings stay in the log.
#[utoipa::path(
    post,
    path = "/v1/alert-rules/{id}/disable",
    tag = "delivery",
    params(("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "Disabled (or already)", body = AlertRuleView),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such rule (for this credential)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn disable_rule(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<AlertRuleView>, ApiError> {
    let record = set_rule_disabled(&state, &principal, client_ip, &id, true).await?;
    Ok(Json(rule_view(&record, None)))
}

/// Enable a disabled alert rule.
///
/// It evaluates the events received from now on, with a fresh state: nothing of the time it
/// was disabled fires.
#[utoipa::path(
    post,
    path = "/v1/alert-rules/{id}/enable",
    tag = "delivery",
    params(("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "Enabled (or already)", body = AlertRuleView),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such rule (for this credential)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn enable_rule(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<AlertRuleView>, ApiError> {
    let record = set_rule_disabled(&state, &principal, client_ip, &id, false).await?;
    Ok(Json(rule_view(&record, None)))
}

/// `POST /v1/alert-rules/test` body: a stored rule, or the settings of one not yet created.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRule {
    /// Test this stored rule (then `match`, `threshold` and `suppress_for` must be absent).
    #[serde(default)]
    pub rule_id: Option<String>,
    /// The tenant whose events to test against (default: the rule's, else the credential's).
    #[serde(default)]
    pub tenant: Option<String>,
    /// As in `POST /v1/alert-rules`.
    #[serde(rename = "match", default)]
    #[schema(value_type = Option<Object>)]
    pub matcher: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub threshold: Option<Value>,
    #[serde(default)]
    pub suppress_for: Option<String>,
    /// How far back to look (`<n>s|m|h|d`, default `7d`).
    #[serde(default)]
    pub lookback: Option<String>,
    /// Accepted and ignored, so a rule's creation body can be tested as it is.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub destinations: Option<Vec<String>>,
}

/// One firing a test found.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestFiring {
    /// The `seq` of the event that completed it.
    pub trigger_seq: u64,
    pub group: String,
    /// The matching events it covers.
    pub seqs: Vec<u64>,
    /// RFC 3339: when the completing event was received.
    pub at: String,
}

/// What a rule would have done over past events.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleTestResult {
    pub tenant: String,
    /// RFC 3339: the start of the window looked at (events received since).
    pub since: String,
    /// The `seq` range examined, `from_seq..to_seq`.
    pub from_seq: u64,
    pub to_seq: u64,
    /// Events the rule matched.
    pub matched: u64,
    /// Times it would have fired ("would have fired 3 times last week").
    pub firings: u64,
    /// The first firings (at most 20).
    pub examples: Vec<TestFiring>,
    /// True when only the first million matches were evaluated.
    pub truncated: bool,
}

/// Test an alert rule against past events.
///
/// Evaluates a rule (a stored one, or one described as for its creation) over the tenant's
/// events received within `lookback`, with the evaluator's own semantics (threshold, group,
/// suppression; a fresh state), and says how many times it would have fired. Nothing is
/// stored or sent.
#[utoipa::path(
    post,
    path = "/v1/alert-rules/test",
    tag = "delivery",
    request_body(content = TestRule, content_type = "application/json"),
    responses(
        (status = 200, description = "What the rule would have done", body = RuleTestResult),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 404, description = "No such rule (for this credential)", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn test_rule(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RuleTestResult>, ApiError> {
    let request: TestRule = parse_json(body)?;
    run_rule_test(&state, &principal, request).await.map(Json)
}

/// The rule test, for the API and the viewer.
pub(crate) async fn run_rule_test(
    state: &AppState,
    principal: &Principal,
    request: TestRule,
) -> Result<RuleTestResult, ApiError> {
    let lookback =
        bitacora_delivery::spec::parse_duration(request.lookback.as_deref().unwrap_or("7d"))
            .map_err(|m| FieldError::invalid("lookback", m))?;
    let record = match &request.rule_id {
        Some(id) => {
            if request.matcher.is_some()
                || request.threshold.is_some()
                || request.suppress_for.is_some()
            {
                return Err(FieldError::invalid(
                    "rule_id",
                    "give either a stored rule's id or a rule's settings, not both",
                )
                .into());
            }
            find_rule(state, principal, id).await?
        }
        None => {
            let spec: RuleSpec = serde_json::from_value(json!({
                "match": request.matcher.clone().unwrap_or_else(|| json!({})),
                "threshold": request.threshold,
                "suppress_for": request.suppress_for,
            }))
            .map_err(|e| FieldError::whole("invalid_field", e.to_string()))?;
            spec.check(|_| true)
                .map_err(|e| FieldError::invalid(e.field, e.message))?;
            AlertRuleRecord {
                id: "test".into(),
                name: request.name.clone().unwrap_or_else(|| "test".into()),
                tenant: None,
                spec: serde_json::to_string(&spec).map_err(ApiError::internal)?,
                created_at: 0,
            }
        }
    };
    let asked = request
        .tenant
        .as_deref()
        .or(record.tenant.as_ref().map(TenantName::as_str));
    let tenant = principal.resolve_tenant(asked)?;
    let mut compiled = bitacora_delivery::alert::Compiled::new(&record)
        .map_err(|m| FieldError::whole("invalid_rule", m))?;
    // A disabled rule is tested as if it were enabled.
    compiled.spec.disabled = false;
    let since = Utc::now().timestamp_micros() - lookback;
    let result =
        bitacora_delivery::alert::backtest(&*state.store, &compiled, &tenant, since).await?;
    Ok(RuleTestResult {
        tenant: tenant.as_str().to_owned(),
        since: rfc3339(since),
        from_seq: result.from_seq,
        to_seq: result.to_seq,
        matched: result.matched,
        firings: result.firings,
        examples: result
            .examples
            .into_iter()
            .map(|f| TestFiring {
                trigger_seq: f.trigger_seq,
                group: f.group,
                seqs: f.seqs,
                at: rfc3339(f.at),
            })
            .collect(),
        truncated: result.truncated,
    })
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
