//! A record's history (`/ui/targets/{type}/{id}`): every event on one record, newest first,
//! each with its field-level diff, and the record's last known value of every field that
//! the events changed.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use bitacora_core::Event;
use bitacora_core::query::{EventFilter, EventQuery, Order, Pagination};

use super::list::Filters;
use super::session::Viewer;
use super::view::{self, ActorView, Badges, ChangeView, Layout, TimeView, Url, ValueView};
use super::{UiError, render};
use crate::state::AppState;

/// Most events the page shows; a longer history links to the filtered list.
pub const HISTORY_LIMIT: u32 = 500;

#[derive(Debug, Clone)]
pub struct EntryView {
    pub url: Url,
    pub time: TimeView,
    pub action: String,
    pub badges: Badges,
    pub actor: Option<ActorView>,
    pub description: String,
    pub changes: Vec<ChangeView>,
}

#[derive(Debug, Clone)]
pub struct FieldState {
    pub label: String,
    pub value: ValueView,
    pub since: TimeView,
}

#[derive(Template)]
#[template(path = "ui/target.html")]
struct TargetTemplate {
    layout: Layout,
    kind: String,
    id: String,
    name: String,
    entries: Vec<EntryView>,
    fields: Vec<FieldState>,
    truncated: bool,
    list_url: Url,
    first: Option<TimeView>,
    last: Option<TimeView>,
}

/// `GET /ui/targets/{type}/{id}`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let query = EventQuery {
        tenant: viewer.tenant.clone(),
        filter: EventFilter {
            target_type: Some(kind.clone()),
            target_id: Some(id.clone()),
            ..EventFilter::default()
        },
        order: Order::Desc,
        page: Pagination::Cursor {
            limit: HISTORY_LIMIT,
            after: None,
        },
    };
    let result = state.store.search(&query).await?;
    let truncated = result.next_after.is_some();
    let mut events: Vec<Event> = result
        .events
        .iter()
        .filter_map(|s| serde_json::from_str(&s.body).ok())
        .collect();
    // Oldest first to fold the fields' last values, then newest first to show.
    events.reverse();
    let mut fields: BTreeMap<String, FieldState> = BTreeMap::new();
    let mut name = String::new();
    for e in &events {
        if let Some(n) = e.target.as_ref().and_then(|t| t.name.clone()) {
            name = n;
        }
        for c in &e.changes {
            fields.insert(
                c.field.clone(),
                FieldState {
                    label: c.label.clone().unwrap_or_else(|| c.field.clone()),
                    value: match &c.new {
                        Some(v) => view::value(Some(v)),
                        // A change without a new value removed the field (e.g. a delete).
                        None => ValueView {
                            kind: "absent",
                            text: "removed".into(),
                        },
                    },
                    since: view::time(&e.occurred_at),
                },
            );
        }
    }
    let first = events.first().map(|e| view::time(&e.occurred_at));
    let last = events.last().map(|e| view::time(&e.occurred_at));
    events.reverse();
    let entries = events
        .iter()
        .map(|e| EntryView {
            url: viewer.url_with("/ui/events/", &[&e.id]),
            time: view::time(&e.occurred_at),
            action: e.action.clone(),
            badges: view::badges(e),
            actor: view::actor(e),
            description: e.description.clone().unwrap_or_default(),
            changes: view::changes(e),
        })
        .collect();
    let list_url = Filters::default()
        .with("target_type", &kind)
        .with("target_id", &id)
        .url(&viewer);
    let title = if name.is_empty() {
        format!("{kind} {id}")
    } else {
        name.clone()
    };
    let page = TargetTemplate {
        layout: Layout::new(
            format!("{} · history", view::truncate(&title, 60)),
            "events",
            "/ui/",
            &viewer,
        ),
        kind,
        id,
        name,
        entries,
        fields: fields.into_values().collect(),
        truncated,
        list_url,
        first,
        last,
    };
    Ok(render(&page))
}
