//! Alerts and destinations in the viewer (CONTRACT §10, issue 17).
//!
//! - `/ui/alerts` (any reader): the tenant's firings, newest first, each linked to its own
//!   event and to the events that fired it. Admins also see the rules (enable/disable, test
//!   against past events) and a form to create one.
//! - `/ui/destinations`, `/ui/destinations/{id}` (admins): every destination with its health
//!   (position, lag in events and seconds, last success, last error per tenant) and a "send
//!   test" button.
//!
//! Changes go through the same functions as the API (`crate::api::delivery`), so they are
//! checked, audited and scoped alike; every form is a same-origin POST.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Redirect, Response};
use bitacora_core::Event;
use bitacora_core::query::{EventFilter, EventQuery, Order, Pagination};
use bitacora_delivery::alert::ALERT_FIRED;
use bitacora_delivery::spec::{DestinationSpec, RuleSpec};
use bitacora_store::{DestinationRecord, Scope};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::session::{Viewer, check_same_origin};
use super::view::{self, Layout, TimeView, Url};
use super::{UiError, render};
use crate::api::delivery::{
    CreateRule, RuleTestResult, TestRule, find_destination, insert_rule, run_rule_test,
    send_test_delivery, set_rule_disabled, visible,
};
use crate::state::AppState;

/// Firings the page lists.
const FIRINGS_SHOWN: u32 = 50;
/// Events linked per firing (the firing's event lists up to 1000 seqs).
const TRIGGERS_LINKED: usize = 10;

fn require_admin(viewer: &Viewer) -> Result<(), UiError> {
    if viewer.principal.scope == Scope::Admin {
        Ok(())
    } else {
        Err(UiError::Page {
            status: axum::http::StatusCode::FORBIDDEN,
            title: "Not allowed".into(),
            message: "Destinations and alert rules are managed with an admin key.".into(),
        })
    }
}

fn micros_time(micros: i64) -> Option<TimeView> {
    DateTime::<Utc>::from_timestamp_micros(micros).map(|t| view::time(&t))
}

/// One event that fired an alert, linked.
#[derive(Debug, Clone)]
pub struct TriggerLink {
    pub seq: u64,
    pub url: Option<Url>,
}

#[derive(Debug, Clone)]
pub struct FiringView {
    pub url: Url,
    pub time: TimeView,
    pub rule_name: String,
    pub group_by: String,
    pub group: String,
    pub count: u64,
    pub severity: String,
    pub triggers: Vec<TriggerLink>,
    pub more_triggers: usize,
}

#[derive(Debug, Clone)]
pub struct RuleRow {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub matcher: String,
    pub threshold: String,
    pub severity: String,
    pub destinations: Vec<String>,
    pub disabled: bool,
    pub toggle_url: Url,
    pub test_url: Url,
}

#[derive(Debug, Clone)]
pub struct DestinationOption {
    pub id: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "ui/alerts.html")]
struct AlertsTemplate {
    layout: Layout,
    firings: Vec<FiringView>,
    admin: bool,
    rules: Vec<RuleRow>,
    destinations: Vec<DestinationOption>,
    create_url: Url,
    test_url: Url,
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AlertsQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

fn firing_view(viewer: &Viewer, stored_seq: u64, e: &Event) -> FiringView {
    let m = |k: &str| e.metadata.get(k);
    let text = |k: &str| m(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let seqs: Vec<u64> = m("seqs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let _ = stored_seq;
    FiringView {
        url: viewer.url_with("/ui/events/", &[&e.id]),
        time: view::time(&e.received_at),
        rule_name: text("rule_name"),
        group_by: text("group_by"),
        group: text("group"),
        count: m("count")
            .and_then(Value::as_u64)
            .unwrap_or(seqs.len() as u64),
        severity: e.severity.as_str().to_owned(),
        more_triggers: seqs.len().saturating_sub(TRIGGERS_LINKED),
        triggers: seqs
            .into_iter()
            .take(TRIGGERS_LINKED)
            .map(|seq| TriggerLink { seq, url: None })
            .collect(),
    }
}

/// `GET /ui/alerts`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<AlertsQuery>,
) -> Result<Response, UiError> {
    let _ = query.tenant;
    let result = state
        .store
        .search(&EventQuery {
            tenant: viewer.tenant.clone(),
            filter: EventFilter {
                actions: vec![bitacora_core::query::ActionPattern::Exact(
                    ALERT_FIRED.to_owned(),
                )],
                ..EventFilter::default()
            },
            order: Order::Desc,
            page: Pagination::Cursor {
                limit: FIRINGS_SHOWN,
                after: None,
            },
        })
        .await?;
    let mut firings = Vec::new();
    for stored in &result.events {
        let Ok(e) = serde_json::from_str::<Event>(&stored.body) else {
            continue;
        };
        let mut f = firing_view(&viewer, stored.seq, &e);
        for t in &mut f.triggers {
            if let Some(ev) = state.store.event_by_seq(&viewer.tenant, t.seq).await?
                && let Ok(ev) = serde_json::from_str::<Event>(&ev.body)
            {
                t.url = Some(viewer.url_with("/ui/events/", &[&ev.id]));
            }
        }
        firings.push(f);
    }
    let admin = viewer.principal.scope == Scope::Admin;
    let (mut rules, mut destinations) = (Vec::new(), Vec::new());
    if admin {
        let all_destinations = state.store.destinations().await?;
        let name_of = |id: &str| {
            all_destinations
                .iter()
                .find(|d| d.id == id)
                .map_or_else(|| id.to_owned(), |d| d.name.clone())
        };
        for record in state.store.alert_rules().await? {
            if !visible(&viewer.principal, record.tenant.as_ref()) {
                continue;
            }
            let Ok(spec) = serde_json::from_str::<RuleSpec>(&record.spec) else {
                continue;
            };
            let action = if spec.disabled { "enable" } else { "disable" };
            rules.push(RuleRow {
                toggle_url: viewer.url_with("/ui/alerts/rules/", &[&record.id, action]),
                test_url: viewer.url("/ui/alerts/test").param("rule_id", &record.id),
                id: record.id.clone(),
                name: record.name.clone(),
                tenant: record
                    .tenant
                    .as_ref()
                    .map_or_else(|| "every tenant".to_owned(), ToString::to_string),
                matcher: serde_json::to_string(&spec.matcher).unwrap_or_default(),
                threshold: spec.threshold.as_ref().map_or_else(
                    || "every match".to_owned(),
                    |t| {
                        format!(
                            "{} in {}{}",
                            t.count,
                            t.window,
                            t.group_by
                                .as_ref()
                                .map(|g| format!(" by {g}"))
                                .unwrap_or_default()
                        )
                    },
                ),
                severity: spec.severity.map_or("high", |s| s.as_str()).to_owned(),
                destinations: spec.destinations.iter().map(|d| name_of(d)).collect(),
                disabled: spec.disabled,
            });
        }
        destinations = all_destinations
            .iter()
            .filter(|d| {
                visible(&viewer.principal, d.tenant.as_ref())
                    && d.tenant.as_ref().is_none_or(|t| *t == viewer.tenant)
            })
            .map(|d| DestinationOption {
                id: d.id.clone(),
                label: format!("{} ({})", d.name, kind_of(d)),
            })
            .collect();
    }
    let notice = match query.done.as_deref() {
        Some("created") => Some("The rule was created; it evaluates events from now on.".into()),
        Some("disabled") => Some("The rule was disabled.".into()),
        Some("enabled") => Some("The rule was enabled; it evaluates events from now on.".into()),
        _ => None,
    };
    let page = AlertsTemplate {
        layout: Layout::new("Alerts", "alerts", "/ui/alerts", &viewer),
        firings,
        admin,
        rules,
        destinations,
        create_url: viewer.url("/ui/alerts/rules"),
        test_url: viewer.url("/ui/alerts/test"),
        notice,
    };
    Ok(render(&page))
}

/// The rule form of `/ui/alerts` (create, or test before creating).
#[derive(Debug, Default)]
pub struct RuleForm {
    name: String,
    action: String,
    outcome: String,
    min_severity: String,
    actor_id: String,
    q: String,
    change_field: String,
    change_to: String,
    count: String,
    window: String,
    group_by: String,
    suppress_for: String,
    severity: String,
    /// Destination ids, comma-separated (one `destination` pair per checked box).
    destinations: String,
    lookback: String,
    rule_id: String,
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl RuleForm {
    fn matcher(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("min_severity", &self.min_severity),
            ("actor_id", &self.actor_id),
            ("q", &self.q),
        ] {
            if let Some(v) = nonempty(v) {
                m.insert(k.into(), json!(v));
            }
        }
        if let Some(field) = nonempty(&self.change_field) {
            let mut c = json!({"field": field});
            if let Some(to) = nonempty(&self.change_to) {
                c["to"] = json!(to);
            }
            m.insert("changes".into(), c);
        }
        Value::Object(m)
    }

    fn threshold(&self) -> Result<Option<Value>, UiError> {
        let Some(count) = nonempty(&self.count) else {
            return Ok(None);
        };
        let count: u32 = count
            .parse()
            .map_err(|_| UiError::bad_request("threshold count: a whole number"))?;
        let mut t = json!({"count": count, "window": nonempty(&self.window).unwrap_or_else(|| "10m".into())});
        if let Some(g) = nonempty(&self.group_by) {
            t["group_by"] = json!(g);
        }
        Ok(Some(t))
    }
}

/// `POST /ui/alerts/rules` (admin): creates a rule for the page's tenant.
pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    check_same_origin(&headers)?;
    require_admin(&viewer)?;
    let form = parse_form(&form)?;
    let request = CreateRule {
        name: form.name.clone(),
        tenant: Some(viewer.tenant.to_string()),
        matcher: Some(form.matcher()),
        threshold: form.threshold()?,
        suppress_for: nonempty(&form.suppress_for),
        severity: nonempty(&form.severity),
        destinations: form.destinations.split(',').filter_map(nonempty).collect(),
    };
    insert_rule(&state, &viewer.principal, viewer.client_ip, request).await?;
    Ok(Redirect::to(viewer.url("/ui/alerts").param("done", "created").as_str()).into_response())
}

/// The form's pairs as a [`RuleForm`]: each checked `destination` box sends one pair.
fn parse_form(pairs: &[(String, String)]) -> Result<RuleForm, UiError> {
    let mut form = RuleForm::default();
    let mut destinations = Vec::new();
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "destination" => {
                destinations.push(v.clone());
                continue;
            }
            "name" => &mut form.name,
            "action" => &mut form.action,
            "outcome" => &mut form.outcome,
            "min_severity" => &mut form.min_severity,
            "actor_id" => &mut form.actor_id,
            "q" => &mut form.q,
            "change_field" => &mut form.change_field,
            "change_to" => &mut form.change_to,
            "count" => &mut form.count,
            "window" => &mut form.window,
            "group_by" => &mut form.group_by,
            "suppress_for" => &mut form.suppress_for,
            "severity" => &mut form.severity,
            "lookback" => &mut form.lookback,
            "rule_id" => &mut form.rule_id,
            other => {
                return Err(UiError::bad_request(format!(
                    "unknown form field `{other}`"
                )));
            }
        };
        slot.clone_from(v);
    }
    form.destinations = destinations.join(",");
    Ok(form)
}

/// `POST /ui/alerts/rules/{id}/{enable|disable}` (admin).
pub async fn toggle(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    check_same_origin(&headers)?;
    require_admin(&viewer)?;
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(UiError::not_found("There is no page at this address.")),
    };
    set_rule_disabled(&state, &viewer.principal, viewer.client_ip, &id, disabled).await?;
    let done = if disabled { "disabled" } else { "enabled" };
    Ok(Redirect::to(viewer.url("/ui/alerts").param("done", done).as_str()).into_response())
}

#[derive(Template)]
#[template(path = "ui/rule_test.html")]
struct RuleTestTemplate {
    layout: Layout,
    title: String,
    lookback: String,
    result: RuleTestResult,
    examples: Vec<ExampleView>,
    alerts_url: Url,
}

#[derive(Debug, Clone)]
pub struct ExampleView {
    pub at: String,
    pub group: String,
    pub count: usize,
    pub trigger: TriggerLink,
}

/// `POST /ui/alerts/test` (admin): "would have fired N times" for a stored rule (the
/// `rule_id` query parameter) or the settings in the form.
pub async fn test(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    check_same_origin(&headers)?;
    require_admin(&viewer)?;
    let form = parse_form(&form)?;
    let rule_id = query
        .iter()
        .find(|(k, _)| k == "rule_id")
        .map(|(_, v)| v.clone())
        .or_else(|| nonempty(&form.rule_id));
    let lookback = nonempty(&form.lookback).unwrap_or_else(|| "7d".into());
    let request = match &rule_id {
        Some(id) => TestRule {
            rule_id: Some(id.clone()),
            tenant: Some(viewer.tenant.to_string()),
            matcher: None,
            threshold: None,
            suppress_for: None,
            lookback: Some(lookback.clone()),
            name: None,
            severity: None,
            destinations: None,
        },
        None => TestRule {
            rule_id: None,
            tenant: Some(viewer.tenant.to_string()),
            matcher: Some(form.matcher()),
            threshold: form.threshold()?,
            suppress_for: nonempty(&form.suppress_for),
            lookback: Some(lookback.clone()),
            name: None,
            severity: None,
            destinations: None,
        },
    };
    let title = match &rule_id {
        Some(id) => state
            .store
            .alert_rules()
            .await?
            .into_iter()
            .find(|r| r.id == *id)
            .map_or_else(|| id.clone(), |r| r.name),
        None => nonempty(&form.name).unwrap_or_else(|| "New rule".into()),
    };
    let result = run_rule_test(&state, &viewer.principal, request).await?;
    let mut examples = Vec::new();
    for f in &result.examples {
        let url = match state
            .store
            .event_by_seq(&viewer.tenant, f.trigger_seq)
            .await?
        {
            Some(s) => serde_json::from_str::<Event>(&s.body)
                .ok()
                .map(|e| viewer.url_with("/ui/events/", &[&e.id])),
            None => None,
        };
        examples.push(ExampleView {
            at: f.at.clone(),
            group: f.group.clone(),
            count: f.seqs.len(),
            trigger: TriggerLink {
                seq: f.trigger_seq,
                url,
            },
        });
    }
    let page = RuleTestTemplate {
        layout: Layout::new(
            format!("Test · {}", view::truncate(&title, 60)),
            "alerts",
            "/ui/alerts",
            &viewer,
        ),
        title,
        lookback,
        result,
        examples,
        alerts_url: viewer.url("/ui/alerts"),
    };
    Ok(render(&page))
}

fn kind_of(d: &DestinationRecord) -> String {
    serde_json::from_str::<DestinationSpec>(&d.spec)
        .map(|s| s.kind.as_str().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[derive(Debug, Clone)]
pub struct HealthRow {
    pub tenant: String,
    pub position: String,
    pub lag: u64,
    pub lag_seconds: String,
    pub last_success: Option<TimeView>,
    pub last_error: Option<String>,
    pub last_error_at: Option<TimeView>,
}

#[derive(Debug, Clone)]
pub struct DestinationRow {
    pub url: Url,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub format: String,
    pub stream: bool,
    pub tenant: String,
    pub disabled: Option<String>,
    pub lag: u64,
    pub last_success: Option<TimeView>,
    pub last_error: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/destinations.html")]
struct DestinationsTemplate {
    layout: Layout,
    destinations: Vec<DestinationRow>,
}

async fn health_rows(state: &AppState, d: &DestinationRecord) -> Result<Vec<HealthRow>, UiError> {
    Ok(bitacora_delivery::health(&*state.store, d)
        .await?
        .into_iter()
        .map(|h| HealthRow {
            tenant: h.tenant,
            position: h
                .last_delivered_seq
                .map_or_else(|| "nothing yet".to_owned(), |s| format!("seq {s}")),
            lag: h.lag,
            lag_seconds: format!("{:.1}", h.lag_seconds),
            last_success: h.last_success_at.and_then(micros_time),
            last_error: h.last_error,
            last_error_at: h.last_error_at.and_then(micros_time),
        })
        .collect())
}

fn shown_target(spec: Option<&DestinationSpec>) -> String {
    match spec {
        // A Slack webhook's path is its credential.
        Some(s) if s.kind == bitacora_delivery::spec::Kind::Slack => s
            .url
            .split_once("://")
            .map(|(scheme, rest)| format!("{scheme}://{}/…", rest.split('/').next().unwrap_or("")))
            .unwrap_or_default(),
        Some(s) => s.url.clone(),
        None => String::new(),
    }
}

/// `GET /ui/destinations` (admin).
pub async fn destinations(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    require_admin(&viewer)?;
    let mut rows = Vec::new();
    for d in state.store.destinations().await? {
        if !visible(&viewer.principal, d.tenant.as_ref()) {
            continue;
        }
        let spec = serde_json::from_str::<DestinationSpec>(&d.spec).ok();
        let health = health_rows(&state, &d).await?;
        let last_error = health
            .iter()
            .filter(|h| h.last_error.is_some())
            .max_by_key(|h| h.last_error_at.as_ref().map(|t| t.iso.clone()))
            .and_then(|h| h.last_error.clone());
        rows.push(DestinationRow {
            url: viewer.url_with("/ui/destinations/", &[&d.id]),
            name: d.name.clone(),
            kind: kind_of(&d),
            target: shown_target(spec.as_ref()),
            format: spec
                .as_ref()
                .map_or("bitacora", |s| match s.format {
                    bitacora_delivery::spec::Format::Ocsf => "ocsf",
                    bitacora_delivery::spec::Format::Bitacora => "bitacora",
                })
                .to_owned(),
            stream: spec.as_ref().is_some_and(|s| s.stream),
            tenant: d
                .tenant
                .as_ref()
                .map_or_else(|| "every tenant".to_owned(), ToString::to_string),
            disabled: d.disabled.clone(),
            lag: health.iter().map(|h| h.lag).sum(),
            last_success: health
                .iter()
                .filter_map(|h| h.last_success.clone())
                .max_by(|a, b| a.iso.cmp(&b.iso)),
            last_error,
        });
    }
    let page = DestinationsTemplate {
        layout: Layout::new("Destinations", "destinations", "/ui/destinations", &viewer),
        destinations: rows,
    };
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "ui/destination.html")]
struct DestinationTemplate {
    layout: Layout,
    row: DestinationRow,
    filter: String,
    health: Vec<HealthRow>,
    test_url: Url,
    list_url: Url,
    tested: Option<bool>,
    test_error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DestinationQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    test: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /ui/destinations/{id}` (admin): the destination's health and a "send test" button.
pub async fn destination(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<DestinationQuery>,
) -> Result<Response, UiError> {
    require_admin(&viewer)?;
    let _ = query.tenant;
    let d = find_destination(&state, &viewer.principal, &id).await?;
    let spec = serde_json::from_str::<DestinationSpec>(&d.spec).ok();
    let health = health_rows(&state, &d).await?;
    let row = DestinationRow {
        url: viewer.url_with("/ui/destinations/", &[&d.id]),
        name: d.name.clone(),
        kind: kind_of(&d),
        target: shown_target(spec.as_ref()),
        format: spec
            .as_ref()
            .map_or("bitacora", |s| match s.format {
                bitacora_delivery::spec::Format::Ocsf => "ocsf",
                bitacora_delivery::spec::Format::Bitacora => "bitacora",
            })
            .to_owned(),
        stream: spec.as_ref().is_some_and(|s| s.stream),
        tenant: d
            .tenant
            .as_ref()
            .map_or_else(|| "every tenant".to_owned(), ToString::to_string),
        disabled: d.disabled.clone(),
        lag: health.iter().map(|h| h.lag).sum(),
        last_success: None,
        last_error: None,
    };
    let page = DestinationTemplate {
        layout: Layout::new(
            format!("{} · destination", view::truncate(&d.name, 60)),
            "destinations",
            "/ui/destinations",
            &viewer,
        ),
        filter: spec
            .as_ref()
            .map(|s| serde_json::to_string(&s.filter).unwrap_or_default())
            .unwrap_or_default(),
        row,
        health,
        test_url: viewer.url_with("/ui/destinations/", &[&d.id, "test"]),
        list_url: viewer.url("/ui/destinations"),
        tested: match query.test.as_deref() {
            Some("ok") => Some(true),
            Some("failed") => Some(false),
            _ => None,
        },
        test_error: query.error,
    };
    Ok(render(&page))
}

/// `POST /ui/destinations/{id}/test` (admin): sends a test event, back to the page with the
/// outcome.
pub async fn send_test(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    check_same_origin(&headers)?;
    require_admin(&viewer)?;
    let d = find_destination(&state, &viewer.principal, &id).await?;
    let outcome = send_test_delivery(&state, &viewer.principal, viewer.client_ip, &d).await?;
    let mut to = viewer.url_with("/ui/destinations/", &[&d.id]);
    to = match outcome.error {
        None => to.param("test", "ok"),
        Some(e) => to
            .param("test", "failed")
            .param("error", &view::truncate(&e, 300)),
    };
    Ok(Redirect::to(to.as_str()).into_response())
}
