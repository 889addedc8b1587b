//! The event list (`/ui/`), its live tail (`/ui/tail`, server-sent events) and its exports
//! (`/ui/export`).
//!
//! The filters live in the URL under the API's own parameter names (`/ui/?action=user.*`), so
//! a view can be bookmarked and shared, and they are parsed by the very parser the API uses
//! ([`EventQuery::parse`]): the list shows exactly what `GET /v1/events` would return.
//! A submitted form is first redirected to its canonical URL (empty fields and defaults
//! dropped, the severity checkboxes joined into one comma list).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use bitacora_core::Event;
use bitacora_core::query::{Cursor, DEFAULT_LIMIT, EventQuery, Order, PARAMETERS, Pagination};
use bitacora_store::StoredEvent;
use futures::{Stream, StreamExt as _, stream};

use super::session::Viewer;
use super::view::{self, ActorView, Badges, Layout, TargetView, TimeView, Url};
use super::{UiError, render};
use crate::api::query_pairs;
use crate::state::AppState;

/// Page sizes offered (any 1..1000 in the URL works).
pub const PAGE_SIZES: [u32; 3] = [20, 50, 100];
/// How often the live tail looks for new events.
const TAIL_INTERVAL: Duration = Duration::from_secs(1);
/// Most rows the tail sends per look; a bigger burst says "reload" instead.
const TAIL_MAX_ROWS: u32 = 200;
/// Parameters that choose a page rather than a set of events.
const PAGING: &[&str] = &["cursor", "page", "per_page", "limit"];

/// The list's filters: the API's parameters, canonical (no empty values, severity as one
/// comma list, in the API's order, defaults dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pairs: Vec<(String, String)>,
}

impl Filters {
    /// Cleans raw query pairs; `changed` tells whether the URL should be rewritten.
    pub fn canonical(raw: &[(String, String)]) -> (Self, bool) {
        let mut severities: BTreeSet<u8> = BTreeSet::new();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in raw {
            if k == "severity" {
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    // Unknown values are kept as they are, for the parser to name.
                    match s.parse::<bitacora_core::Severity>() {
                        Ok(sev) => {
                            severities.insert(sev.rank());
                        }
                        Err(_) => {
                            pairs.retain(|(n, _)| n != "severity#bad");
                            pairs.push(("severity#bad".into(), s.to_owned()));
                        }
                    }
                }
                continue;
            }
            let value = v.trim();
            let is_default = (k == "order" && value == "desc")
                || (k == "limit" && value == DEFAULT_LIMIT.to_string());
            if value.is_empty() || is_default {
                continue;
            }
            // Only `severity` may arrive repeated (the router refuses any other repeated
            // name); keep one value per name all the same.
            pairs.retain(|(n, _)| n != k);
            pairs.push((k.clone(), value.to_owned()));
        }
        let bad_severity = pairs
            .iter()
            .position(|(n, _)| n == "severity#bad")
            .map(|i| pairs.remove(i).1);
        if !severities.is_empty() || bad_severity.is_some() {
            let mut list: Vec<String> = severities
                .into_iter()
                .filter_map(bitacora_core::Severity::from_rank)
                .map(|s| s.as_str().to_owned())
                .collect();
            list.extend(bad_severity);
            pairs.push(("severity".into(), list.join(",")));
        }
        let rank = |k: &str| {
            PARAMETERS
                .iter()
                .position(|p| *p == k)
                .unwrap_or(PARAMETERS.len())
        };
        pairs.sort_by_key(|(k, _)| rank(k));
        let changed = pairs != *raw;
        (Self { pairs }, changed)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The filters without the page choice (what a new page, an export or the tail keeps).
    pub fn without_paging(&self) -> Self {
        Self {
            pairs: self
                .pairs
                .iter()
                .filter(|(k, _)| !PAGING.contains(&k.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// With `name=value` set (replacing any), back to the first page.
    pub fn with(&self, name: &str, value: &str) -> Self {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != name && k != "cursor" && k != "page")
            .cloned()
            .collect();
        pairs.push((name.to_owned(), value.to_owned()));
        Self::canonical(&pairs).0
    }

    pub fn without(&self, name: &str) -> Self {
        Self {
            pairs: self
                .pairs
                .iter()
                .filter(|(k, _)| k != name && k != "cursor" && k != "page")
                .cloned()
                .collect(),
        }
    }

    /// The list URL for these filters, with the tenant when the viewer's links carry it.
    pub fn url(&self, viewer: &Viewer) -> Url {
        let mut url = Url::new("/ui/");
        if viewer.needs_tenant_param() && self.get("tenant").is_none() {
            url = url.param("tenant", viewer.tenant.as_str());
        }
        url.params(self.pairs())
    }

    /// Same filters, this tenant named explicitly (exports and the tail must not guess).
    fn with_tenant(&self, viewer: &Viewer) -> Self {
        let mut f = self.clone();
        f.pairs.retain(|(k, _)| k != "tenant");
        f.pairs
            .insert(0, ("tenant".into(), viewer.tenant.to_string()));
        f
    }
}

/// A human label for a filter parameter.
pub fn label(param: &str) -> &'static str {
    match param {
        "action" => "Action",
        "category" => "Category",
        "severity" => "Severity",
        "min_severity" => "Min. severity",
        "outcome" => "Outcome",
        "actor_id" => "Actor id",
        "actor" => "Actor",
        "target_type" => "Target type",
        "target_id" => "Target id",
        "ip" => "IP",
        "source" => "Source",
        "since" => "Since",
        "until" => "Until",
        "q" => "Text",
        "order" => "Order",
        _ => "Filter",
    }
}

/// One event as a row of the list (and of the live tail).
#[derive(Debug, Clone)]
pub struct RowView {
    pub seq: u64,
    pub id: String,
    pub url: Url,
    pub time: TimeView,
    pub action: String,
    pub action_url: Url,
    pub badges: Badges,
    pub category_url: Url,
    pub severity_url: Url,
    pub outcome_url: Url,
    pub actor: Option<ActorView>,
    pub actor_url: Url,
    pub target: Option<TargetView>,
    /// The record's history, when the target has an id.
    pub history_url: Option<Url>,
    pub target_filter_url: Url,
    pub description: String,
    /// The first changes, e.g. "role: user → admin".
    pub changes: Vec<String>,
    pub more_changes: usize,
    pub ip: String,
    pub ip_url: Url,
    pub source: String,
    pub source_url: Url,
}

/// A row for a stored event (`None` if its body cannot be read, which `bitacora verify`
/// would report).
pub fn row(stored: &StoredEvent, filters: &Filters, viewer: &Viewer) -> Option<RowView> {
    let e: Event = match serde_json::from_str(&stored.body) {
        Ok(e) => e,
        Err(err) => {
            tracing::error!(seq = stored.seq, error = %err, "a stored event cannot be read");
            return None;
        }
    };
    Some(row_for(&e, stored.seq, filters, viewer))
}

pub fn row_for(e: &Event, seq: u64, filters: &Filters, viewer: &Viewer) -> RowView {
    let link = |name: &str, value: &str| filters.with(name, value).url(viewer);
    let actor = view::actor(e);
    let actor_url = match (&actor, e.actor.as_ref()) {
        (Some(a), _) if a.id.is_some() => link("actor_id", a.id.as_deref().unwrap_or_default()),
        (Some(a), _) => link("actor", &a.label),
        _ => filters.url(viewer),
    };
    let target = view::target(e);
    let history_url = target.as_ref().and_then(|t| {
        t.id.as_deref()
            .map(|id| viewer.url_with("/ui/targets/", &[&t.kind, id]))
    });
    let target_filter_url = match &target {
        Some(t) => {
            let f = filters.with("target_type", &t.kind);
            match &t.id {
                Some(id) => f.with("target_id", id).url(viewer),
                None => f.url(viewer),
            }
        }
        None => filters.url(viewer),
    };
    let changes: Vec<String> = e
        .changes
        .iter()
        .take(2)
        .map(|c| {
            let name = c.label.as_deref().unwrap_or(&c.field);
            format!(
                "{}: {} → {}",
                view::truncate(name, 40),
                view::short(c.old.as_ref(), 40),
                view::short(c.new.as_ref(), 40)
            )
        })
        .collect();
    let ip = e.context.ip.clone().unwrap_or_default();
    let source = e.context.source.clone().unwrap_or_default();
    let badges = view::badges(e);
    RowView {
        seq,
        url: viewer.url_with("/ui/events/", &[&e.id]),
        id: e.id.clone(),
        time: view::time(&e.occurred_at),
        action_url: link("action", &e.action),
        action: e.action.clone(),
        category_url: link("category", &e.category),
        severity_url: link("severity", badges.severity),
        outcome_url: link("outcome", e.outcome.as_str()),
        badges,
        actor,
        actor_url,
        target,
        history_url,
        target_filter_url,
        description: view::truncate(e.description.as_deref().unwrap_or_default(), 300),
        more_changes: e.changes.len().saturating_sub(2),
        changes,
        ip_url: link("ip", &ip),
        ip,
        source_url: link("source", &source),
        source,
    }
}

#[derive(Template)]
#[template(path = "ui/row.html")]
struct RowTemplate<'a> {
    row: &'a RowView,
}

/// A removable filter chip.
#[derive(Debug, Clone)]
pub struct Chip {
    pub label: &'static str,
    pub value: String,
    pub remove_url: Url,
}

#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Debug, Clone)]
pub struct Suggestion {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "ui/list.html")]
struct ListTemplate {
    layout: Layout,
    /// The current value of each control.
    f_action: String,
    f_category: String,
    f_actor: String,
    f_actor_id: String,
    f_target_type: String,
    f_target_id: String,
    f_ip: String,
    f_source: String,
    f_since: String,
    f_until: String,
    f_q: String,
    severities: Vec<Choice>,
    min_severities: Vec<Choice>,
    outcomes: Vec<Choice>,
    orders: Vec<Choice>,
    limits: Vec<Choice>,
    /// `tenant` to keep in the filter form, when the viewer's links carry it.
    form_tenant: Option<String>,
    action_suggestions: Vec<Suggestion>,
    category_suggestions: Vec<Suggestion>,
    actor_suggestions: Vec<Suggestion>,
    actor_id_suggestions: Vec<Suggestion>,
    chips: Vec<Chip>,
    clear_url: Url,
    error: Option<String>,
    rows: Vec<RowView>,
    unreadable: usize,
    /// Cursor paging: the next page and (on later pages) the first.
    next_url: Option<Url>,
    first_url: Option<Url>,
    /// Numbered paging.
    prev_url: Option<Url>,
    page_info: String,
    csv_url: Url,
    ndjson_url: Url,
    tail_url: Url,
    /// The log size when the page was read: the tail starts there.
    head: u64,
    /// Whether the live tail makes sense here (newest first, first page).
    can_tail: bool,
    empty_log: bool,
    oldest_first: bool,
    /// When retention purged events of this tenant: the oldest event still held (seq and
    /// received time), since an empty result older than it proves nothing.
    horizon: Option<(u64, String)>,
}

fn choices(options: &[(&str, &str)], current: Option<&str>) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: current.unwrap_or("") == *value,
        })
        .collect()
}

/// `GET /ui/`: the list.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let raw_pairs = query_pairs(raw.as_deref());
    let (filters, changed) = Filters::canonical(&raw_pairs);
    if changed {
        let url = Url::new("/ui/").params(filters.pairs());
        return Ok(Redirect::to(url.as_str()).into_response());
    }
    let tenant = viewer.tenant.clone();
    let head = state.store.log_size(&tenant).await?;
    let parsed = EventQuery::parse(filters.pairs(), &tenant);
    let (rows, unreadable, result_page, error, query) = match parsed {
        Ok(query) => {
            let result = state.store.search(&query).await?;
            let mut rows = Vec::with_capacity(result.events.len());
            let mut unreadable = 0;
            for e in &result.events {
                match row(e, &filters, &viewer) {
                    Some(r) => rows.push(r),
                    None => unreadable += 1,
                }
            }
            (rows, unreadable, Some(result), None, Some(query))
        }
        Err(e) => {
            let message = match &e.field {
                Some(field) => format!("{} ({field}): {}", label(field), e.message),
                None => e.message.clone(),
            };
            (Vec::new(), 0, None, Some(message), None)
        }
    };

    // Suggestions for the controls, from the log's own counters.
    let actions = state.store.actions(&tenant).await?;
    let actors = state.store.actors(&tenant, 500).await?;
    let mut action_suggestions: Vec<Suggestion> = Vec::new();
    let mut prefixes: BTreeSet<String> = BTreeSet::new();
    let mut categories: BTreeSet<String> = BTreeSet::new();
    for a in &actions {
        action_suggestions.push(Suggestion {
            value: a.action.clone(),
            label: format!("{} events", a.count),
        });
        if let Some((prefix, _)) = a.action.split_once('.') {
            prefixes.insert(format!("{prefix}.*"));
        }
        categories.insert(a.category.clone());
    }
    action_suggestions.extend(prefixes.into_iter().map(|p| Suggestion {
        label: "prefix".into(),
        value: p,
    }));
    let category_suggestions = categories
        .into_iter()
        .map(|c| Suggestion {
            value: c,
            label: String::new(),
        })
        .collect();
    let mut actor_suggestions: Vec<Suggestion> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for a in &actors {
        for v in [&a.name, &a.email].into_iter().flatten() {
            if seen.insert(v.clone()) {
                actor_suggestions.push(Suggestion {
                    value: v.clone(),
                    label: format!("{} events", a.count),
                });
            }
        }
    }
    let actor_id_suggestions = actors
        .iter()
        .map(|a| Suggestion {
            value: a.id.clone(),
            label: a
                .name
                .clone()
                .or_else(|| a.email.clone())
                .unwrap_or_default(),
        })
        .collect();

    // Paging.
    let mut next_url = None;
    let mut first_url = None;
    let mut prev_url = None;
    let mut page_info = String::new();
    if let (Some(result), Some(query)) = (&result_page, &query) {
        match query.page {
            Pagination::Cursor { .. } => {
                if let Some(after) = result.next_after {
                    let cursor = Cursor {
                        seq: after,
                        order: query.order,
                    }
                    .encode();
                    let mut pairs: Vec<(String, String)> = filters
                        .pairs
                        .iter()
                        .filter(|(k, _)| k != "cursor")
                        .cloned()
                        .collect();
                    pairs.push(("cursor".into(), cursor));
                    next_url = Some(Filters::canonical(&pairs).0.url(&viewer));
                }
                if filters.get("cursor").is_some() {
                    first_url = Some(filters.without("cursor").url(&viewer));
                }
                page_info = match (rows.len(), filters.get("cursor")) {
                    (0, _) => String::new(),
                    (n, None) => format!("Newest {n} events"),
                    (n, Some(_)) => format!("{n} events"),
                };
            }
            Pagination::Numbered { page, per_page } => {
                let total = result.total.unwrap_or(0);
                let pages = total.div_ceil(u64::from(per_page)).max(1);
                // An estimated total (too costly to count within the store's budget) says
                // so; a full page then always offers the next one.
                page_info = if result.estimated {
                    format!("Page {page} of about {pages} · about {total} events")
                } else {
                    format!("Page {page} of {pages} · {total} events")
                };
                if page > 1 {
                    prev_url = Some(filters.with("page", &(page - 1).to_string()).url(&viewer));
                }
                let full = result.events.len() == per_page as usize;
                if u64::from(page) < pages || (result.estimated && full) {
                    next_url = Some(filters.with("page", &(page + 1).to_string()).url(&viewer));
                }
            }
        }
    }

    let get = |k: &str| filters.get(k).unwrap_or_default().to_owned();
    let severity_set: Vec<String> = filters
        .get("severity")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let severities = ["low", "medium", "high", "critical"]
        .iter()
        .map(|s| Choice {
            value: (*s).to_owned(),
            label: (*s).to_owned(),
            selected: severity_set.iter().any(|x| x == s),
        })
        .collect();
    let chips = filters
        .pairs
        .iter()
        .filter(|(k, _)| !PAGING.contains(&k.as_str()) && k != "tenant")
        .filter(|(k, v)| !(k == "order" && v == "desc"))
        .map(|(k, v)| Chip {
            label: label(k),
            value: if k == "order" && v == "asc" {
                "oldest first".into()
            } else {
                v.clone()
            },
            remove_url: filters.without(k).url(&viewer),
        })
        .collect();
    let exportable = filters.without_paging().with_tenant(&viewer);
    let limit = filters.get("limit").map(str::to_owned);
    let mut limits: Vec<Choice> = PAGE_SIZES
        .iter()
        .map(|n| Choice {
            value: n.to_string(),
            label: format!("{n} per page"),
            selected: limit.as_deref().unwrap_or("50") == n.to_string(),
        })
        .collect();
    if let Some(l) = &limit
        && !limits.iter().any(|c| c.selected)
    {
        limits.push(Choice {
            value: l.clone(),
            label: format!("{l} per page"),
            selected: true,
        });
    }
    let can_tail = error.is_none()
        && filters.get("cursor").is_none()
        && filters.get("page").is_none()
        && filters.get("order").is_none();
    let empty_log = head == 0;
    let clear = if viewer.needs_tenant_param() {
        Url::new("/ui/").param("tenant", viewer.tenant.as_str())
    } else {
        Url::new("/ui/")
    };
    let horizon = if state.store.purges(&tenant).await?.is_empty() {
        None
    } else {
        bitacora_lifecycle::describe_tenant(&*state.store, &state.config.retention, &tenant)
            .await
            .ok()
            .and_then(|t| t.horizon)
            .map(|h| (h.seq, h.received_at))
    };
    let page = ListTemplate {
        layout: Layout::new("Events", "events", "/ui/", &viewer),
        f_action: get("action"),
        f_category: get("category"),
        f_actor: get("actor"),
        f_actor_id: get("actor_id"),
        f_target_type: get("target_type"),
        f_target_id: get("target_id"),
        f_ip: get("ip"),
        f_source: get("source"),
        f_since: get("since"),
        f_until: get("until"),
        f_q: get("q"),
        severities,
        min_severities: choices(
            &[
                ("", "any"),
                ("low", "low"),
                ("medium", "medium or higher"),
                ("high", "high or higher"),
                ("critical", "critical"),
            ],
            filters.get("min_severity"),
        ),
        outcomes: choices(
            &[("", "any"), ("success", "success"), ("failure", "failure")],
            filters.get("outcome"),
        ),
        orders: choices(
            &[("", "newest first"), ("asc", "oldest first")],
            filters.get("order"),
        ),
        limits,
        form_tenant: viewer
            .needs_tenant_param()
            .then(|| viewer.tenant.to_string()),
        action_suggestions,
        category_suggestions,
        actor_suggestions,
        actor_id_suggestions,
        chips,
        clear_url: clear,
        rows,
        unreadable,
        next_url,
        first_url,
        prev_url,
        page_info,
        csv_url: Url::new("/ui/export")
            .param("format", "csv")
            .params(exportable.pairs()),
        ndjson_url: Url::new("/ui/export")
            .param("format", "ndjson")
            .params(exportable.pairs()),
        tail_url: Url::new("/ui/tail").params(exportable.pairs()),
        head,
        can_tail,
        empty_log,
        oldest_first: filters.get("order") == Some("asc"),
        horizon,
        error: error.clone(),
    };
    let mut response = render(&page);
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// `GET /ui/export?format=csv|ndjson|bundle&<filters>`: the API's export, with the session's
/// credential (so it streams through the same code, limits and audit as `/v1/export`).
pub async fn export(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let raw_pairs = query_pairs(raw.as_deref());
    let format = raw_pairs
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "ndjson".into());
    let rest: Vec<(String, String)> = raw_pairs
        .into_iter()
        .filter(|(k, _)| k != "format")
        .collect();
    let (filters, _) = Filters::canonical(&rest);
    let filters = filters.without_paging().with_tenant(&viewer);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("format", &format)
        .extend_pairs(filters.pairs())
        .finish();
    crate::api::export::export(
        State(state),
        viewer.principal.clone(),
        crate::auth::ClientIp(viewer.client_ip),
        RawQuery(Some(query)),
    )
    .await
    .map_err(UiError::from)
}

/// `GET /ui/tail?<filters>&from=<seq>`: new events matching the filters, as rendered rows,
/// one server-sent event each (`event: row`, `id: <seq>`), from log position `from` (or
/// after `Last-Event-ID` when the browser reconnects). The credential is re-checked on every
/// look; when it stops being accepted the stream says `event: end` and closes.
pub async fn tail(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, UiError> {
    let raw_pairs = query_pairs(raw.as_deref());
    let from_param = raw_pairs
        .iter()
        .find(|(k, _)| k == "from")
        .map(|(_, v)| v.clone());
    let rest: Vec<(String, String)> = raw_pairs.into_iter().filter(|(k, _)| k != "from").collect();
    let (filters, _) = Filters::canonical(&rest);
    let filters = filters.without_paging();
    let mut query = EventQuery::parse(filters.pairs(), &viewer.tenant)
        .map_err(|e| UiError::bad_request(e.message))?;
    query.order = Order::Asc;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|seq| seq + 1);
    let from = match resume.or_else(|| from_param.and_then(|v| v.trim().parse().ok())) {
        Some(from) => from,
        None => state.store.log_size(&viewer.tenant).await?,
    };
    // Row links keep the list's filters (minus the tenant, which the viewer's links add).
    let link_filters = filters.without("tenant");

    struct Tail {
        state: AppState,
        viewer: Viewer,
        query: EventQuery,
        filters: Filters,
        next: u64,
        ended: bool,
    }
    let start = Tail {
        state,
        viewer,
        query,
        filters: link_filters,
        next: from,
        ended: false,
    };
    let stream = stream::unfold(start, |mut t| async move {
        if t.ended {
            return None;
        }
        tokio::time::sleep(TAIL_INTERVAL).await;
        if !t.viewer.still_valid(&t.state).await {
            t.ended = true;
            return Some((vec![SseEvent::default().event("end").data("signed out")], t));
        }
        let events = t.look().await;
        Some((events, t))
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)));

    impl Tail {
        /// New matching events since `next`, as SSE events.
        async fn look(&mut self) -> Vec<SseEvent> {
            let size = match self.state.store.log_size(&self.query.tenant).await {
                Ok(size) => size,
                Err(e) => {
                    tracing::warn!(error = %e, "live tail cannot read the log size");
                    return Vec::new();
                }
            };
            if size <= self.next {
                return Vec::new();
            }
            let mut q = self.query.clone();
            q.page = Pagination::Cursor {
                limit: TAIL_MAX_ROWS,
                after: self.next.checked_sub(1),
            };
            let page = match self.state.store.search(&q).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "live tail cannot search");
                    return Vec::new();
                }
            };
            let mut out = Vec::new();
            let events: Vec<&StoredEvent> = page.events.iter().filter(|e| e.seq < size).collect();
            if events.len() as u32 >= TAIL_MAX_ROWS {
                out.push(SseEvent::default().event("overflow").data("reload"));
                self.next = size;
                return out;
            }
            for stored in events {
                if let Some(r) = row(stored, &self.filters, &self.viewer) {
                    match (RowTemplate { row: &r }).render() {
                        Ok(html) => out.push(
                            SseEvent::default()
                                .event("row")
                                .id(stored.seq.to_string())
                                .data(html.replace(['\n', '\r'], " ")),
                        ),
                        Err(e) => tracing::error!(error = %e, "cannot render a tail row"),
                    }
                }
            }
            self.next = size;
            out
        }
    }

    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn canonical_filters_drop_empties_and_join_severities() {
        let (f, changed) = Filters::canonical(&pairs(&[
            ("q", ""),
            ("severity", "critical"),
            ("action", "user.*"),
            ("severity", "high"),
            ("order", "desc"),
            ("limit", "50"),
            ("actor", " ana "),
        ]));
        assert!(changed);
        assert_eq!(
            f.pairs().collect::<Vec<_>>(),
            [
                ("action", "user.*"),
                ("severity", "high,critical"),
                ("actor", "ana")
            ]
        );
        // Canonical is a fixed point: no redirect loop.
        let (again, changed) = Filters::canonical(&f.pairs);
        assert!(!changed);
        assert_eq!(again, f);
    }

    #[test]
    fn bad_severities_reach_the_parser() {
        let (f, _) = Filters::canonical(&pairs(&[("severity", "high,bogus")]));
        assert_eq!(f.get("severity"), Some("high,bogus"));
        let err =
            EventQuery::parse(f.pairs(), &bitacora_core::TenantName::default_tenant()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("severity"));
    }

    #[test]
    fn with_and_without_reset_the_page() {
        let (f, _) = Filters::canonical(&pairs(&[
            ("action", "a"),
            ("cursor", "xyz"),
            ("limit", "20"),
        ]));
        let g = f.with("ip", "10.0.0.0/8");
        assert_eq!(g.get("cursor"), None);
        assert_eq!(g.get("limit"), Some("20"));
        assert_eq!(g.get("ip"), Some("10.0.0.0/8"));
        assert_eq!(f.without("action").get("action"), None);
        assert_eq!(f.without_paging().pairs().count(), 1);
    }
}
