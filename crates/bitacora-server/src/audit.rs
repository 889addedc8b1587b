//! The server audits itself (CONTRACT §6): creating or revoking a key, issuing or revoking a
//! viewer token, an export and a failed viewer login are appended as `bitacora.*` events
//! (category `bitacora`) to the tenant they concern (`default` when none).
//!
//! They go through the same validation, sealing and store path as a client's event — only
//! the reserved-prefix check is lifted — so they are hashed into the tenant's Merkle log and
//! covered by its signed checkpoints like any other. Clients cannot forge them: ingest refuses
//! actions starting with `bitacora.` (422, field `action`).
//!
//! | action | severity | when |
//! |---|---|---|
//! | `bitacora.key.created` | high (admin key) / medium | `bitacora keys create` |
//! | `bitacora.key.revoked` | medium | `bitacora keys revoke` |
//! | `bitacora.viewer_token.issued` | medium | `POST /v1/viewer-tokens` |
//! | `bitacora.viewer_token.revoked` | low | `DELETE /v1/viewer-tokens/{id}` |
//! | `bitacora.export` | medium | `GET /v1/export`, `bitacora export` |
//! | `bitacora.viewer_login.failed` | medium, outcome failure | a refused viewer login |
//! | `bitacora.legal_hold.placed` / `.released` | medium | `POST` / `DELETE /v1/legal-holds` |
//! | `bitacora.retention.purge` | medium | each retention purge (appended by `bitacora_lifecycle`) |

use std::net::IpAddr;

use bitacora_core::{EventInput, FieldError, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_store::{AppendOutcome, Store, StoreError};
use chrono::{SubsecRound as _, Utc};
use serde_json::{Map, Value, json};

use crate::auth::{CredentialKind, Principal};
use crate::error::ApiError;
use crate::state::AppState;

pub const KEY_CREATED: &str = "bitacora.key.created";
pub const KEY_REVOKED: &str = "bitacora.key.revoked";
pub const VIEWER_TOKEN_ISSUED: &str = "bitacora.viewer_token.issued";
pub const VIEWER_TOKEN_REVOKED: &str = "bitacora.viewer_token.revoked";
pub const EXPORT: &str = "bitacora.export";
pub const VIEWER_LOGIN_FAILED: &str = "bitacora.viewer_login.failed";
/// An operator vouched for a tail of a log that no commit seal explained
/// (`bitacora verify --accept-tail`).
pub const TAIL_ACCEPTED: &str = "bitacora.integrity.tail_accepted";

/// Who did it, as recorded in `actor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditActor {
    pub id: String,
    pub name: String,
    /// `user`, `service`, `system` or `anonymous`.
    pub kind: &'static str,
}

impl AuditActor {
    /// The caller behind a credential: a key is a service, a JWT a user of the application,
    /// a viewer token whoever holds it.
    pub fn of(principal: &Principal) -> Self {
        Self {
            id: principal.key_id.clone(),
            name: principal.name.clone(),
            kind: match principal.kind {
                CredentialKind::ApiKey => "service",
                CredentialKind::Jwt => "user",
                CredentialKind::ViewerToken => "user",
            },
        }
    }

    /// The operator at the command line (`bitacora keys`, `bitacora export`).
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .ok()
            .filter(|u| !u.is_empty() && u.len() <= 64);
        Self {
            id: "cli".into(),
            name: match user {
                Some(u) => format!("bitacora CLI ({u})"),
                None => "bitacora CLI".into(),
            },
            kind: "system",
        }
    }

    fn anonymous() -> Self {
        Self {
            id: "anonymous".into(),
            name: "anonymous".into(),
            kind: "anonymous",
        }
    }
}

/// One self-audit event, before it is sealed.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub tenant: Option<&'a TenantName>,
    pub action: &'static str,
    pub actor: AuditActor,
    pub client_ip: Option<IpAddr>,
    /// `{"type","id","name"}` of what was acted upon, if anything.
    pub target: Option<Value>,
    pub metadata: Map<String, Value>,
    pub outcome_failure: bool,
}

fn severity(action: &str, metadata: &Map<String, Value>) -> &'static str {
    match action {
        KEY_CREATED if metadata.get("scope").and_then(Value::as_str) == Some("admin") => "high",
        VIEWER_TOKEN_REVOKED => "low",
        TAIL_ACCEPTED => "critical",
        _ => "medium",
    }
}

fn description(action: &str) -> &'static str {
    match action {
        KEY_CREATED => "API key created",
        KEY_REVOKED => "API key revoked",
        VIEWER_TOKEN_ISSUED => "Viewer token issued",
        VIEWER_TOKEN_REVOKED => "Viewer token revoked",
        EXPORT => "Events exported",
        VIEWER_LOGIN_FAILED => "Failed viewer login",
        TAIL_ACCEPTED => "Unexplained log tail accepted by an operator",
        bitacora_lifecycle::HOLD_PLACED => "Legal hold placed",
        bitacora_lifecycle::HOLD_RELEASED => "Legal hold released",
        _ => "bitacora administrative action",
    }
}

/// Validates, seals and appends a self-audit event to `store`; the server and the CLI both
/// come through here.
pub async fn append(
    store: &dyn Store,
    policy: &IngestPolicy,
    event: AuditEvent<'_>,
) -> Result<(), StoreError> {
    let tenant = event
        .tenant
        .cloned()
        .unwrap_or_else(TenantName::default_tenant);
    let mut body = json!({
        "tenant": tenant.as_str(),
        "action": event.action,
        "category": "bitacora",
        "severity": severity(event.action, &event.metadata),
        "outcome": if event.outcome_failure { "failure" } else { "success" },
        "actor": {"id": event.actor.id, "name": event.actor.name, "type": event.actor.kind},
        "description": description(event.action),
        "context": {"source": "bitacora"},
        "metadata": event.metadata,
    });
    if let Some(target) = event.target {
        body["target"] = target;
    }
    let input = EventInput::from_json(body.to_string().as_bytes()).map_err(invalid)?;
    let sealed = SealedEvent::prepare(
        input,
        policy,
        &IngestContext {
            pinned_tenant: None,
            received_at: Utc::now().trunc_subsecs(6),
            client_ip: event.client_ip,
            allow_reserved: true,
        },
    )
    .map_err(invalid)?;
    match store.append(vec![sealed]).await?.into_iter().next() {
        Some(AppendOutcome::Stored { .. } | AppendOutcome::Duplicate { .. }) => Ok(()),
        Some(AppendOutcome::Conflict { id }) => Err(StoreError::Internal(format!(
            "a self-audit event's generated id `{id}` conflicts"
        ))),
        None => Err(StoreError::Internal(
            "the store returned no outcome for a self-audit event".into(),
        )),
    }
}

/// The metadata of a `bitacora.export` event: the format and the filters used.
pub fn export_metadata<'a>(
    format: &str,
    filters: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Map<String, Value> {
    let filters: Map<String, Value> = filters
        .into_iter()
        .map(|(k, v)| {
            // Filters are the caller's text: bounded, so one export cannot bloat the log, and
            // without control characters, which event text may not hold.
            let v: String = v
                .chars()
                .take(512)
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
            (k.chars().take(64).collect(), Value::String(v))
        })
        .collect();
    let mut metadata = Map::new();
    metadata.insert("format".into(), Value::String(format.to_owned()));
    metadata.insert("filters".into(), Value::Object(filters));
    metadata
}

/// A self-audit event built by the server is always valid; if not, that is a bug, not input.
fn invalid(e: FieldError) -> StoreError {
    StoreError::Internal(format!("invalid self-audit event: {}", e.message))
}

/// Records an action taken through the server by `actor` from `client_ip` in `tenant`
/// (`default` when `None`). Fails (503 or 500) when the event cannot be stored: an action
/// bitacora cannot audit is not taken.
pub async fn record(
    state: &AppState,
    tenant: Option<&TenantName>,
    action: &'static str,
    actor: &Principal,
    client_ip: Option<IpAddr>,
    target: Option<Value>,
    metadata: Map<String, Value>,
) -> Result<(), ApiError> {
    append(
        &*state.store,
        &state.policy,
        AuditEvent {
            tenant,
            action,
            actor: AuditActor::of(actor),
            client_ip,
            target,
            metadata,
            outcome_failure: false,
        },
    )
    .await
    .map_err(ApiError::from)
}

/// Records a refused viewer login (the viewer calls this). `tenant` is the tenant the
/// credential was for when known (a valid but insufficient one), else `default`; `reason` is
/// a short code such as `unknown_credential`, never the credential itself. Errors are logged,
/// not returned: the login is refused either way.
pub async fn failed_viewer_login(
    state: &AppState,
    tenant: Option<&TenantName>,
    client_ip: Option<IpAddr>,
    reason: &str,
) {
    let mut metadata = Map::new();
    metadata.insert(
        "reason".into(),
        Value::String(reason.chars().take(200).collect()),
    );
    let result = append(
        &*state.store,
        &state.policy,
        AuditEvent {
            tenant,
            action: VIEWER_LOGIN_FAILED,
            actor: AuditActor::anonymous(),
            client_ip,
            target: None,
            metadata,
            outcome_failure: true,
        },
    )
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot record a failed viewer login");
    }
}
