//! Liveness, readiness and metrics: no authentication, for orchestrators and scrapers.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use bitacora_core::api::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Status))
)]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness, with the state of each capture source.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: &'static str,
    /// `ok`, or `unexplained tail` when a log has events that no commit seal explains and
    /// the server therefore refuses to sign (see `unexplained`). The server stays ready: it
    /// still accepts and serves events.
    pub integrity: &'static str,
    /// The logs with an unexplained tail; absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unexplained: Vec<UnexplainedTail>,
    /// One entry per capture source (`[[capture]]`); absent when there are none. A source
    /// that is down does not make the server unready: the API still accepts and serves
    /// events, and the drain catches up by itself once the source is back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capture: Vec<CaptureSource>,
    /// One entry per destination (CONTRACT §10); absent when there are none. A failing
    /// destination does not make the server unready: its events wait in the log. Errors
    /// and positions are in `GET /v1/destinations` (admin).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivery: Vec<DeliveryDestination>,
    /// One entry per witness of `integrity.witness_policy_file` (CONTRACT §11); absent without
    /// a policy. A witness that is down does not make the server unready: it only delays
    /// cosignatures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<WitnessHealth>,
}

/// A witness as `/readyz` shows it (this process's view).
#[derive(Serialize, ToSchema)]
pub struct WitnessHealth {
    /// Its name in the policy.
    pub name: String,
    /// Its submission URL prefix; absent when the policy gives none (never submitted to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `idle`, `ok`, `failing`, `standby` (another server submits) or `no url`.
    pub state: String,
    /// The largest checkpoint size it cosigned, per tenant.
    pub cosigned: std::collections::BTreeMap<String, u64>,
    /// When it last cosigned (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Its last failure (`<tenant>: <what happened>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// Failed submissions since its last success.
    pub failures: u64,
}

impl WitnessHealth {
    pub fn from_status(s: bitacora_witness::WitnessStatus) -> Self {
        let time = |t: Option<i64>| {
            t.and_then(chrono::DateTime::from_timestamp_micros)
                .map(|t| bitacora_core::event::timestamp::format(&t))
        };
        Self {
            name: s.name,
            url: s.url,
            state: s.state,
            cosigned: s.cosigned,
            last_success_at: time(s.last_success_at),
            last_error: s.last_error,
            last_error_at: time(s.last_error_at),
            failures: s.failures,
        }
    }
}

/// A destination as `/readyz` shows it (this process's view).
#[derive(Serialize, ToSchema)]
pub struct DeliveryDestination {
    pub id: String,
    /// `starting`, `running`, `retrying`, `standby` (another server delivers) or `disabled`.
    pub state: String,
    /// Events accepted by the receiver since this server started.
    pub delivered: u64,
    /// Failed attempts since this server started (each is retried).
    pub failed: u64,
    /// Events not yet examined, over every tenant.
    pub lag: u64,
}

/// A log tail the server refuses to sign, as `/readyz` shows it.
#[derive(Serialize, ToSchema)]
pub struct UnexplainedTail {
    pub tenant: String,
    /// The first `seq` no commit seal vouches for.
    pub first_seq: u64,
    /// The log's size: events `first_seq..log_size` are unexplained.
    pub log_size: u64,
    /// The latest signed size.
    pub signed_size: u64,
    pub reason: String,
    /// What to do about it.
    pub recovery: String,
}

/// A capture source as `/readyz` shows it.
#[derive(Serialize, ToSchema)]
pub struct CaptureSource {
    /// `dbname@host:port`, or the configured name (never the URL).
    pub source: String,
    pub tenant: String,
    /// `starting`, `running`, `standby` (another server drains it) or `down`.
    pub state: String,
    /// Why the source is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// Captured changes waiting in the outbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_depth: Option<u64>,
    /// Age of the oldest waiting change, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Events this process has drained from it.
    pub events_drained: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drained_at: Option<String>,
    /// Outbox rows that could not be converted, quarantined as `bitacora.capture.rejected`
    /// events (and skipped) by this process.
    pub rows_rejected: u64,
    /// The last of them: `outbox row <id>: <reason>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rejection: Option<String>,
}

/// Readiness: the store answers. Capture sources are reported, not required.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The store is unreachable", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    // Any failure means "not ready" to an orchestrator: 503, never 500.
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let capture = state
        .capture
        .iter()
        .map(|handle| {
            let s = handle.snapshot();
            CaptureSource {
                source: s.source,
                tenant: s.tenant,
                state: serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                last_error: s.last_error,
                failures: s.failures,
                outbox_depth: s.outbox_depth,
                lag_seconds: s.lag_seconds,
                events_drained: s.events_drained,
                last_drained_at: s.last_drained_at,
                rows_rejected: s.rows_rejected,
                last_rejection: s.last_rejection,
            }
        })
        .collect();
    let unexplained: Vec<UnexplainedTail> = state
        .tails
        .snapshot()
        .into_iter()
        .map(|t| UnexplainedTail {
            recovery: format!(
                "investigate how events {}..{} got into the store, then run \
                 `bitacora verify --tenant {} --accept-tail` (see README, Integrity)",
                t.first_seq, t.log_size, t.tenant
            ),
            tenant: t.tenant,
            first_seq: t.first_seq,
            log_size: t.log_size,
            signed_size: t.signed_size,
            reason: t.reason,
        })
        .collect();
    Ok(Json(Readiness {
        status: "ready",
        integrity: if unexplained.is_empty() {
            "ok"
        } else {
            "unexplained tail"
        },
        unexplained,
        capture,
        delivery: state
            .delivery
            .snapshot()
            .destinations
            .into_iter()
            .map(|(id, d)| DeliveryDestination {
                id,
                state: d.state,
                delivered: d.delivered,
                failed: d.failed,
                lag: d.lag.values().sum(),
            })
            .collect(),
        witnesses: state
            .witnesses
            .snapshot()
            .into_iter()
            .map(WitnessHealth::from_status)
            .collect(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain"))
)]
pub async fn metrics() -> Response {
    crate::metrics::render().await
}
