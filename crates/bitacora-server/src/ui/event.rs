//! One event (`/ui/events/{id}`): who, what, when, where; its changes as a before/after diff;
//! context and metadata; and its integrity — the inclusion proof checked here, on the server,
//! against the latest signed checkpoint (with the server's trusted keys), and shown so anyone
//! can copy it and check it again elsewhere.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use bitacora_core::Event;
use bitacora_core::api::InclusionState;

use super::list::Filters;
use super::session::Viewer;
use super::view::{
    self, ActorView, Badges, ChangeView, JsonToken, Layout, TargetView, TimeView, Url,
};
use super::{UiError, render};
use crate::state::AppState;

/// The integrity panel.
#[derive(Debug, Clone)]
pub struct IntegrityView {
    /// `verified`, `pending` or `failed`.
    pub state: &'static str,
    pub detail: String,
    pub tree_size: String,
    pub leaf_hash: String,
    pub checkpoint: String,
    /// The proof as the API serves it (`{"leaf_index","tree_size","hashes"}`), pretty.
    pub proof_json: String,
    pub hashes: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/event.html")]
struct EventTemplate {
    layout: Layout,
    title: String,
    id: String,
    seq: u64,
    action: String,
    action_url: Url,
    badges: Badges,
    category_url: Url,
    severity_url: Url,
    outcome: &'static str,
    outcome_url: Url,
    actor: Option<ActorView>,
    actor_url: Option<Url>,
    target: Option<TargetView>,
    history_url: Option<Url>,
    target_filter_url: Option<Url>,
    occurred: TimeView,
    received: TimeView,
    ip: String,
    ip_url: Option<Url>,
    user_agent: String,
    request_id: String,
    source: String,
    source_url: Option<Url>,
    changes: Vec<ChangeView>,
    metadata: Vec<JsonToken>,
    raw: Vec<JsonToken>,
    integrity: IntegrityView,
    prev_url: Option<Url>,
    next_url: Option<Url>,
    list_url: Url,
    public_key_url: Url,
}

/// `GET /ui/events/{id}`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let tenant = &viewer.tenant;
    let Some(stored) = state.store.event_by_id(tenant, &id).await? else {
        return Err(UiError::not_found(format!(
            "There is no event with id “{id}” in tenant “{tenant}”."
        )));
    };
    let e: Event = serde_json::from_str(&stored.body).map_err(|err| {
        tracing::error!(seq = stored.seq, error = %err, "a stored event cannot be read");
        UiError::Page {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            title: "Unreadable event".into(),
            message: format!(
                "The event at position {} cannot be read. Run `bitacora verify` to check the log.",
                stored.seq
            ),
        }
    })?;
    let status = bitacora_log::event_inclusion_status(
        &*state.store,
        tenant,
        stored.seq,
        &state.keys.verifiers(),
    )
    .await?;
    let integrity = IntegrityView {
        state: match status.state {
            InclusionState::Verified => "verified",
            InclusionState::Pending => "pending",
            InclusionState::Failed => "failed",
        },
        detail: status.detail.clone(),
        tree_size: status.tree_size.map(|s| s.to_string()).unwrap_or_default(),
        leaf_hash: status.leaf_hash.clone(),
        checkpoint: status.checkpoint.clone().unwrap_or_default(),
        proof_json: status
            .proof
            .as_ref()
            .and_then(|p| serde_json::to_string_pretty(p).ok())
            .unwrap_or_default(),
        hashes: status
            .proof
            .as_ref()
            .map(|p| {
                p.hashes
                    .iter()
                    .map(bitacora_core::canonical::hex_hash)
                    .collect()
            })
            .unwrap_or_default(),
    };

    let neighbour = |seq: Option<u64>| {
        let state = state.clone();
        let tenant = tenant.clone();
        async move {
            match seq {
                Some(seq) => state
                    .store
                    .event_by_seq(&tenant, seq)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|s| serde_json::from_str::<Event>(&s.body).ok())
                    .map(|e| e.id),
                None => None,
            }
        }
    };
    let prev_id = neighbour(stored.seq.checked_sub(1)).await;
    let next_id = neighbour(stored.seq.checked_add(1)).await;

    let none = Filters::default();
    let link = |name: &str, value: &str| none.with(name, value).url(&viewer);
    let actor = view::actor(&e);
    let actor_url = actor.as_ref().map(|a| match &a.id {
        Some(id) => link("actor_id", id),
        None => link("actor", &a.label),
    });
    let target = view::target(&e);
    let history_url = target.as_ref().and_then(|t| {
        t.id.as_deref()
            .map(|id| viewer.url_with("/ui/targets/", &[&t.kind, id]))
    });
    let target_filter_url = target.as_ref().map(|t| {
        let f = none.with("target_type", &t.kind);
        match &t.id {
            Some(id) => f.with("target_id", id).url(&viewer),
            None => f.url(&viewer),
        }
    });
    let metadata = if e.metadata.is_empty() {
        Vec::new()
    } else {
        view::json_tokens(&serde_json::Value::Object(e.metadata.clone()))
    };
    let raw_value: serde_json::Value =
        serde_json::from_str(&stored.to_json()).unwrap_or(serde_json::Value::Null);
    let ip = e.context.ip.clone().unwrap_or_default();
    let source = e.context.source.clone().unwrap_or_default();
    let badges = view::badges(&e);
    let page = EventTemplate {
        layout: Layout::new(
            format!("{} · event", view::truncate(&e.action, 60)),
            "events",
            "/ui/",
            &viewer,
        ),
        title: e
            .description
            .clone()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| e.action.clone()),
        id: e.id.clone(),
        seq: stored.seq,
        action_url: link("action", &e.action),
        action: e.action.clone(),
        category_url: link("category", &e.category),
        severity_url: link("severity", badges.severity),
        outcome: e.outcome.as_str(),
        outcome_url: link("outcome", e.outcome.as_str()),
        badges,
        actor,
        actor_url,
        target,
        history_url,
        target_filter_url,
        occurred: view::time(&e.occurred_at),
        received: view::time(&e.received_at),
        ip_url: (!ip.is_empty()).then(|| link("ip", &ip)),
        ip,
        user_agent: e.context.user_agent.clone().unwrap_or_default(),
        request_id: e.context.request_id.clone().unwrap_or_default(),
        source_url: (!source.is_empty()).then(|| link("source", &source)),
        source,
        changes: view::changes(&e),
        metadata,
        raw: view::json_tokens(&raw_value),
        integrity,
        prev_url: prev_id.map(|id| viewer.url_with("/ui/events/", &[&id])),
        next_url: next_id.map(|id| viewer.url_with("/ui/events/", &[&id])),
        list_url: viewer.url("/ui/"),
        public_key_url: Url::new("/ui/integrity"),
    };
    Ok(render(&page))
}
