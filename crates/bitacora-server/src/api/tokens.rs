//! `/v1/viewer-tokens` (admin): issue, list and revoke viewer tokens — short-lived, read-only
//! credentials pinned to one tenant, with a URL that logs into the viewer
//! ([`crate::auth::viewer`] explains the design). Issuing and revoking are self-audited.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bitacora_core::api::ErrorBody;
use bitacora_core::{FieldError, TenantName};
use bitacora_store::ViewerTokenRecord;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{check_params, param, query_pairs};
use crate::audit;
use crate::auth::{ClientIp, Principal, generate_viewer_token};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/viewer-tokens` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// The tenant the token may read (default: the admin key's pinned tenant, else `default`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Lifetime in seconds (default and maximum are configured: `auth.viewer_token_ttl_secs`,
    /// 1 h, and `auth.viewer_token_max_ttl_secs`, 24 h).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
}

/// A newly issued viewer token. The token is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// The id to revoke it with.
    pub id: String,
    /// The secret (`bv_...`): `Authorization: Bearer <token>`, read-only, this tenant only.
    pub token: String,
    pub tenant: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Opens the viewer logged in with this token.
    pub url: String,
}

/// A viewer token as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub tenant: String,
    pub created_at: String,
    pub expires_at: String,
    /// The id of the credential that issued it.
    pub created_by: String,
    pub revoked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Tokens not yet expired, newest first.
    pub tokens: Vec<TokenView>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only this tenant's tokens (a pinned admin key sees only its own tenant's).
    tenant: Option<String>,
}

fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl From<&ViewerTokenRecord> for TokenView {
    fn from(t: &ViewerTokenRecord) -> Self {
        Self {
            id: t.id.clone(),
            tenant: t.tenant.as_str().to_owned(),
            created_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
            created_by: t.created_by.clone(),
            revoked: t.revoked,
        }
    }
}

/// Issue a viewer token.
///
/// A read-only credential for one tenant that expires after `ttl_seconds`, and a viewer URL
/// (`<server.public_url or this request's host>/ui/login?token=...`) that logs in with it.
/// Recorded as a `bitacora.viewer_token.issued` event in that tenant.
#[utoipa::path(
    post,
    path = "/v1/viewer-tokens",
    tag = "access",
    request_body(content = IssueRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Issued; the token is shown only now", body = IssuedToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 415, description = "Content-Type is not `application/json`", body = ErrorBody),
        (status = 422, description = "A field is invalid or unknown (named in `field`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn issue(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let request: IssueRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IssueRequest::default()
    } else {
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
        parse_body(&body)?
    };
    let tenant = principal.resolve_tenant(request.tenant.as_deref())?;
    let auth = &state.config.auth;
    let max = auth.viewer_token_max_ttl_secs.max(1);
    let ttl = match request.ttl_seconds {
        None => auth.viewer_token_ttl_secs.clamp(1, max),
        Some(0) => {
            return Err(FieldError::invalid("ttl_seconds", "must be at least 1 second").into());
        }
        Some(t) if t > max => {
            return Err(FieldError::invalid(
                "ttl_seconds",
                format!("at most {max} seconds (auth.viewer_token_max_ttl_secs)"),
            )
            .into());
        }
        Some(t) => t,
    };
    let now = Utc::now().timestamp_micros();
    let (secret, record) = generate_viewer_token(tenant.clone(), ttl, &principal.key_id, now);
    // Audited first: a token bitacora could not record is not issued.
    let mut metadata = Map::new();
    metadata.insert("ttl_seconds".into(), json!(ttl));
    metadata.insert("expires_at".into(), json!(rfc3339(record.expires_at)));
    audit::record(
        &state,
        Some(&tenant),
        audit::VIEWER_TOKEN_ISSUED,
        &principal,
        client_ip,
        Some(json!({"type": "viewer_token", "id": record.id})),
        metadata,
    )
    .await?;
    state.store.insert_viewer_token(&record).await?;
    tracing::info!(tenant = %tenant, token.id = %record.id, ttl, "viewer token issued");
    let url = format!("{}/ui/login?token={secret}", public_base(&state, &headers));
    let issued = IssuedToken {
        id: record.id.clone(),
        token: secret,
        tenant: tenant.as_str().to_owned(),
        expires_at: rfc3339(record.expires_at),
        url,
    };
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

fn parse_body(body: &[u8]) -> Result<IssueRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FieldError::whole("invalid_json", format!("malformed JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(FieldError::whole("invalid_body", "the body must be a JSON object").into());
    };
    for (name, v) in map {
        match (name.as_str(), v) {
            ("tenant", Value::String(_) | Value::Null) => {}
            ("ttl_seconds", Value::Null) => {}
            ("ttl_seconds", Value::Number(n)) if n.as_u64().is_some() => {}
            ("tenant", _) => {
                return Err(FieldError::invalid("tenant", "must be a string").into());
            }
            ("ttl_seconds", _) => {
                return Err(
                    FieldError::invalid("ttl_seconds", "must be a positive integer").into(),
                );
            }
            (other, _) => {
                return Err(FieldError::new(
                    "unknown_field",
                    other,
                    format!("unknown field `{other}` (accepted: tenant, ttl_seconds)"),
                )
                .into());
            }
        }
    }
    serde_json::from_value(value)
        .map_err(|e| FieldError::whole("invalid_body", e.to_string()).into())
}

/// `server.public_url`, else `http(s)://<Host>` when the Host header is a plain host[:port],
/// else the listen address.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.server.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let scheme = if state.config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.server.listen.to_string());
    format!("{scheme}://{host}")
}

/// List viewer tokens that have not expired.
#[utoipa::path(
    get,
    path = "/v1/viewer-tokens",
    tag = "access",
    params(ListParams),
    responses(
        (status = 200, description = "Tokens not yet expired, newest first (never their secrets)", body = TokenList),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<TokenList>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant: Option<TenantName> = match (param(&pairs, "tenant"), principal.pinned()) {
        (None, None) => None,
        (requested, _) => Some(principal.resolve_tenant(requested)?),
    };
    let now = Utc::now().timestamp_micros();
    let tokens = state.store.viewer_tokens(tenant.as_ref(), now).await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(TokenView::from).collect(),
    }))
}

/// Revoke a viewer token.
///
/// Effective at once on this server and within a second on every server sharing the store.
/// Recorded as a `bitacora.viewer_token.revoked` event in the token's tenant.
#[utoipa::path(
    delete,
    path = "/v1/viewer-tokens/{id}",
    tag = "access",
    params(("id" = String, Path, description = "The token's id (`vt_...`)")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 401, description = "Missing, unknown or revoked credential", body = ErrorBody),
        (status = 403, description = "Credential lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such token (in the credential's tenant)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(client_ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("there is no viewer token `{id}`"));
    if id.len() > 128 {
        return Err(not_found());
    }
    let Some(record) = state
        .store
        .revoke_viewer_token(&id, principal.pinned())
        .await?
    else {
        return Err(not_found());
    };
    state.auth.forget_cached();
    if !record.revoked {
        audit::record(
            &state,
            Some(&record.tenant),
            audit::VIEWER_TOKEN_REVOKED,
            &principal,
            client_ip,
            Some(json!({"type": "viewer_token", "id": record.id})),
            Map::new(),
        )
        .await?;
        tracing::info!(tenant = %record.tenant, token.id = %record.id, "viewer token revoked");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
