//! The dashboard (`/ui/dashboard`): activity in a `since`/`until` window (the API's names and
//! meaning; default the last 30 UTC days) — events per day stacked by category, by severity,
//! top actors and IPs, failed logins over time, the latest critical events, events without
//! an actor.
//!
//! Charts are SVG drawn by the template from numbers computed here (no markup is built from
//! data, and no chart library is shipped). Counts come from [`Store::stats`], one call per
//! day (or week, for windows over 92 days) for the stacked chart; failed logins from a walk
//! of the matching events only.
//!
//! [`Store::stats`]: bitacora_store::Store::stats

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bitacora_core::api::Stats;
use bitacora_core::query::{ActionPattern, EventFilter, EventQuery, Order, Pagination};
use bitacora_core::{Event, Outcome, Severity, TenantName};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream};

use super::list::{Filters, RowView, row};
use super::session::Viewer;
use super::view::{self, Layout, Url};
use super::{UiError, render};
use crate::api::query_pairs;
use crate::state::AppState;

/// Default window, in days.
const DEFAULT_DAYS: i64 = 30;
/// Longest window.
const MAX_DAYS: i64 = 366;
/// Windows longer than this are bucketed by week.
const DAILY_UP_TO: i64 = 92;
/// Categories drawn with their own colour; the rest are "other".
const TOP_CATEGORIES: usize = 6;
/// Most failed-login events counted (the chart says so when it is cut).
const FAILED_LOGIN_CAP: usize = 100_000;

// Chart geometry, in SVG user units (the SVG scales to its box).
const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

#[derive(Debug, Clone)]
pub struct Rect {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub class: String,
    pub title: String,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub x: String,
    pub y: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Legend {
    pub class: String,
    pub label: String,
    pub count: u64,
    pub url: Url,
}

/// A bar chart over time buckets, stacked when there are several series.
#[derive(Debug, Clone, Default)]
pub struct TimeChart {
    pub rects: Vec<Rect>,
    pub x_labels: Vec<Label>,
    pub y_labels: Vec<Label>,
    /// Horizontal grid lines' y.
    pub grid: Vec<String>,
    pub legend: Vec<Legend>,
    /// A data table for screen readers and for reading exact numbers.
    pub table_head: Vec<String>,
    pub table_rows: Vec<(String, Vec<u64>)>,
    pub total: u64,
}

/// One horizontal bar of a ranked list.
#[derive(Debug, Clone)]
pub struct RankBar {
    pub label: String,
    pub detail: String,
    pub count: u64,
    /// Bar length, 0..100.
    pub pct: String,
    pub class: String,
    pub url: Url,
}

#[derive(Template)]
#[template(path = "ui/dashboard.html")]
struct DashboardTemplate {
    layout: Layout,
    error: Option<String>,
    window_text: String,
    bucket_text: &'static str,
    f_since: String,
    f_until: String,
    form_tenant: Option<String>,
    ranges: Vec<(String, Url)>,
    total: u64,
    total_url: Url,
    failures: u64,
    failures_url: Url,
    critical: u64,
    critical_url: Url,
    without_actor: u64,
    without_actor_pct: String,
    per_day: TimeChart,
    failed_logins: TimeChart,
    failed_login_actions: String,
    failed_logins_cut: bool,
    severities: Vec<RankBar>,
    categories: Vec<RankBar>,
    top_actors: Vec<RankBar>,
    top_ips: Vec<RankBar>,
    latest_critical: Vec<RowView>,
}

/// Rounds up to 1, 2 or 5 times a power of ten (at least 1): the chart's top.
fn nice_max(v: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * p >= v.max(1) {
                return m * p;
            }
        }
        p = p.saturating_mul(10);
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// A (stacked) bar chart: `series` names with their classes, `values[bucket][series]`.
fn time_chart(
    buckets: &[(DateTime<Utc>, DateTime<Utc>)],
    label_of: impl Fn(&DateTime<Utc>) -> String,
    series: &[(String, String)],
    values: &[Vec<u64>],
) -> TimeChart {
    let n = buckets.len().max(1) as f64;
    let totals: Vec<u64> = values.iter().map(|v| v.iter().sum()).collect();
    let top = nice_max(totals.iter().copied().max().unwrap_or(0));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let slot = pw / n;
    let bar_w = (slot * 0.72).max(1.0);
    let mut chart = TimeChart {
        total: totals.iter().sum(),
        ..TimeChart::default()
    };
    for (i, ((start, _), counts)) in buckets.iter().zip(values).enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut y = TOP + ph;
        for ((name, class), &count) in series.iter().zip(counts) {
            if count == 0 {
                continue;
            }
            let h = (count as f64 / top as f64) * ph;
            y -= h;
            chart.rects.push(Rect {
                x: fmt(x),
                y: fmt(y),
                w: fmt(bar_w),
                h: fmt(h.max(0.5)),
                class: class.clone(),
                title: format!("{} · {name}: {count}", label_of(start)),
            });
        }
    }
    let every = (buckets.len() as f64 / 8.0).ceil().max(1.0) as usize;
    for (i, (start, _)) in buckets.iter().enumerate() {
        if i % every == 0 {
            chart.x_labels.push(Label {
                x: fmt(LEFT + slot * i as f64 + slot / 2.0),
                y: fmt(H - 8.0),
                text: label_of(start),
            });
        }
    }
    for k in 0..=2u64 {
        let v = top * k / 2;
        let y = TOP + ph - (v as f64 / top as f64) * ph;
        chart.grid.push(fmt(y));
        chart.y_labels.push(Label {
            x: fmt(LEFT - 6.0),
            y: fmt(y + 4.0),
            text: v.to_string(),
        });
    }
    chart.table_head = series.iter().map(|(n, _)| n.clone()).collect();
    chart.table_rows = buckets
        .iter()
        .zip(values)
        .map(|((start, _), v)| (label_of(start), v.clone()))
        .collect();
    chart
}

fn rank_bars(items: Vec<(String, String, u64, String, Url)>) -> Vec<RankBar> {
    let max = items.iter().map(|i| i.2).max().unwrap_or(0).max(1);
    items
        .into_iter()
        .map(|(label, detail, count, class, url)| RankBar {
            label,
            detail,
            count,
            pct: fmt(count as f64 * 100.0 / max as f64),
            class,
            url,
        })
        .collect()
}

/// Whether an action names a sign-in (`user.login`, `auth_failed`, `LOGIN_FAILED`, ...).
pub fn is_login_action(action: &str) -> bool {
    let a = action.to_ascii_lowercase();
    ["login", "logon", "signin", "sign_in", "auth"]
        .iter()
        .any(|k| a.contains(k))
        && !a.contains("logout")
}

/// `GET /ui/dashboard?since=&until=&tenant=`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let pairs = query_pairs(raw.as_deref());
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let (f_since, f_until) = (get("since"), get("until"));
    let tenant = viewer.tenant.clone();
    let mut error = None;
    let window = EventQuery::parse(
        [("since", f_since.as_deref()), ("until", f_until.as_deref())]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v))),
        &tenant,
    );
    let today = Utc::now().date_naive();
    let tomorrow = (today + Duration::days(1))
        .and_time(NaiveTime::MIN)
        .and_utc();
    let (mut since, mut until) = (tomorrow - Duration::days(DEFAULT_DAYS), tomorrow);
    match window {
        Ok(q) => {
            until = q.filter.until.unwrap_or(tomorrow);
            since = q
                .filter
                .since
                .unwrap_or(until - Duration::days(DEFAULT_DAYS));
        }
        Err(e) => error = Some(format!("{}: {}", e.field.unwrap_or_default(), e.message)),
    }
    if error.is_none() && since >= until {
        error = Some("since: must be before `until`".into());
    }
    if error.is_none() && until - since > Duration::days(MAX_DAYS) {
        error = Some(format!(
            "the window is longer than {MAX_DAYS} days; choose a shorter one"
        ));
    }
    if error.is_some() {
        since = tomorrow - Duration::days(DEFAULT_DAYS);
        until = tomorrow;
    }

    // The window as list filters, so every number links to the events behind it.
    let since_param = f_since
        .clone()
        .unwrap_or_else(|| since.format("%Y-%m-%d").to_string());
    let until_param = f_until
        .clone()
        .unwrap_or_else(|| (until - Duration::days(1)).format("%Y-%m-%d").to_string());
    let window_filters = Filters::default()
        .with("since", &since_param)
        .with("until", &until_param);
    let link = |name: &str, value: &str| window_filters.with(name, value).url(&viewer);

    let stats = state
        .store
        .stats(
            &tenant,
            since.timestamp_micros(),
            until.timestamp_micros(),
            10,
        )
        .await?;

    // Buckets: days, or weeks for long windows.
    let span_days = (until - since).num_days().max(1);
    let step = if span_days <= DAILY_UP_TO {
        Duration::days(1)
    } else {
        Duration::days(7)
    };
    let mut buckets = Vec::new();
    let mut at = since;
    while at < until {
        let end = (at + step).min(until);
        buckets.push((at, end));
        at = end;
    }
    let bounds: Vec<(i64, i64)> = buckets
        .iter()
        .map(|(a, b)| (a.timestamp_micros(), b.timestamp_micros()))
        .collect();
    let per_bucket: Vec<Stats> = stream::iter(bounds.into_iter().map(|(a, b)| {
        let store = state.store.clone();
        let tenant = tenant.clone();
        async move { store.stats(&tenant, a, b, 1).await }
    }))
    .buffered(4)
    .try_collect()
    .await?;

    let mut categories: Vec<(String, u64)> = stats
        .per_category
        .iter()
        .map(|k| (k.key.clone(), k.count))
        .collect();
    categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = categories
        .iter()
        .take(TOP_CATEGORIES)
        .map(|(c, _)| c.clone())
        .collect();
    let has_other = categories.len() > TOP_CATEGORIES;
    let mut series: Vec<(String, String)> = shown
        .iter()
        .map(|c| (c.clone(), view::category_class(c)))
        .collect();
    if has_other {
        series.push(("other".into(), "cat-other".into()));
    }
    let values: Vec<Vec<u64>> = per_bucket
        .iter()
        .map(|s| {
            let mut row = vec![0u64; series.len()];
            for k in &s.per_category {
                match shown.iter().position(|c| *c == k.key) {
                    Some(i) => row[i] += k.count,
                    None if has_other => *row.last_mut().expect("other") += k.count,
                    None => {}
                }
            }
            row
        })
        .collect();
    let label_of = |d: &DateTime<Utc>| d.format("%b %d").to_string();
    let mut per_day = time_chart(&buckets, label_of, &series, &values);
    per_day.legend = categories
        .iter()
        .take(TOP_CATEGORIES)
        .map(|(c, n)| Legend {
            class: view::category_class(c),
            label: c.clone(),
            count: *n,
            url: link("category", c),
        })
        .collect();
    if has_other {
        let rest: u64 = categories.iter().skip(TOP_CATEGORIES).map(|c| c.1).sum();
        per_day.legend.push(Legend {
            class: "cat-other".into(),
            label: "other".into(),
            count: rest,
            url: window_filters.url(&viewer),
        });
    }

    // Failed logins: sign-in actions that failed (by outcome, or by a name that says so).
    let login_actions: Vec<String> = state
        .store
        .actions(&tenant)
        .await?
        .into_iter()
        .map(|a| a.action)
        .filter(|a| is_login_action(a))
        .collect();
    let (fail_counts, cut) =
        failed_logins(&state, &tenant, &login_actions, since, until, &buckets).await?;
    let failed_logins_chart = time_chart(
        &buckets,
        label_of,
        &[("failed logins".into(), "fail".into())],
        &fail_counts.iter().map(|c| vec![*c]).collect::<Vec<_>>(),
    );

    let count_of = |sev: Severity| {
        stats
            .per_severity
            .iter()
            .find(|s| s.severity == sev)
            .map_or(0, |s| s.count)
    };
    let severities = rank_bars(
        Severity::ALL
            .iter()
            .rev()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    String::new(),
                    count_of(*s),
                    format!("sev-{}", s.as_str()),
                    link("severity", s.as_str()),
                )
            })
            .collect(),
    );
    let category_bars = rank_bars(
        categories
            .iter()
            .take(10)
            .map(|(c, n)| {
                (
                    c.clone(),
                    String::new(),
                    *n,
                    view::category_class(c),
                    link("category", c),
                )
            })
            .collect(),
    );
    let top_actors = rank_bars(
        stats
            .top_actors
            .iter()
            .map(|a| {
                let label = a.name.clone().unwrap_or_else(|| a.id.clone());
                let detail = if a.name.is_some() {
                    format!("id {}", a.id)
                } else {
                    String::new()
                };
                let class = view::avatar(&label).class;
                (label, detail, a.count, class, link("actor_id", &a.id))
            })
            .collect(),
    );
    let top_ips = rank_bars(
        stats
            .top_ips
            .iter()
            .map(|k| {
                (
                    k.key.clone(),
                    String::new(),
                    k.count,
                    "ipbar".to_owned(),
                    link("ip", &k.key),
                )
            })
            .collect(),
    );

    let critical_query = EventQuery {
        tenant: tenant.clone(),
        filter: EventFilter {
            severities: vec![Severity::Critical],
            since: Some(since),
            until: Some(until),
            ..EventFilter::default()
        },
        order: Order::Desc,
        page: Pagination::Cursor {
            limit: 8,
            after: None,
        },
    };
    let critical_events = state.store.search(&critical_query).await?;
    let none = Filters::default();
    let latest_critical = critical_events
        .events
        .iter()
        .filter_map(|e| row(e, &none, &viewer))
        .collect();

    let failures = stats
        .per_outcome
        .iter()
        .find(|k| k.key == "failure")
        .map_or(0, |k| k.count);
    let without_actor_pct = if stats.total == 0 {
        "0".into()
    } else {
        format!(
            "{:.1}",
            stats.without_actor as f64 * 100.0 / stats.total as f64
        )
    };
    let ranges = [7, 30, 90]
        .iter()
        .map(|days| {
            let s = (tomorrow - Duration::days(*days))
                .format("%Y-%m-%d")
                .to_string();
            let mut u = viewer.url("/ui/dashboard").param("since", &s);
            u = u.param("until", &today.format("%Y-%m-%d").to_string());
            (format!("Last {days} days"), u)
        })
        .collect();
    let last_day = until - Duration::microseconds(1);
    let page = DashboardTemplate {
        layout: Layout::new("Dashboard", "dashboard", "/ui/dashboard", &viewer),
        window_text: format!(
            "{} – {} (UTC)",
            since.format("%Y-%m-%d %H:%M"),
            last_day.format("%Y-%m-%d %H:%M")
        ),
        bucket_text: if step == Duration::days(1) {
            "per day"
        } else {
            "per week"
        },
        f_since: f_since.unwrap_or_default(),
        f_until: f_until.unwrap_or_default(),
        form_tenant: viewer
            .needs_tenant_param()
            .then(|| viewer.tenant.to_string()),
        ranges,
        total: stats.total,
        total_url: window_filters.url(&viewer),
        failures,
        failures_url: link("outcome", "failure"),
        critical: count_of(Severity::Critical),
        critical_url: link("severity", "critical"),
        without_actor: stats.without_actor,
        without_actor_pct,
        per_day,
        failed_logins: failed_logins_chart,
        failed_login_actions: login_actions.join(", "),
        failed_logins_cut: cut,
        severities,
        categories: category_bars,
        top_actors,
        top_ips,
        latest_critical,
        error: error.clone(),
    };
    let mut response = render(&page);
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// Failed sign-ins per bucket, and whether the count was cut at [`FAILED_LOGIN_CAP`].
async fn failed_logins(
    state: &AppState,
    tenant: &TenantName,
    login_actions: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    buckets: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<(Vec<u64>, bool), UiError> {
    let mut counts = vec![0u64; buckets.len()];
    if login_actions.is_empty() {
        return Ok((counts, false));
    }
    let named_failed: Vec<String> = login_actions
        .iter()
        .filter(|a| {
            let a = a.to_ascii_lowercase();
            a.contains("fail") || a.contains("denied") || a.contains("invalid")
        })
        .cloned()
        .collect();
    // Failures of any sign-in action, then successes of actions named as failures (an
    // application that records `auth_failed` without an outcome).
    let passes = [
        (login_actions.to_vec(), Outcome::Failure),
        (named_failed, Outcome::Success),
    ];
    let mut seen = 0usize;
    let mut cut = false;
    for (actions, outcome) in passes {
        if actions.is_empty() {
            continue;
        }
        let query = EventQuery {
            tenant: tenant.clone(),
            filter: EventFilter {
                actions: actions.into_iter().map(ActionPattern::Exact).collect(),
                outcome: Some(outcome),
                since: Some(since),
                until: Some(until),
                ..EventFilter::default()
            },
            order: Order::Asc,
            page: Pagination::Cursor {
                limit: 1000,
                after: None,
            },
        };
        let mut pages = std::pin::pin!(crate::export::export_pages(
            state.store.clone(),
            query,
            None
        ));
        'walk: while let Some(page) = pages.next().await {
            for stored in page? {
                seen += 1;
                if seen > FAILED_LOGIN_CAP {
                    cut = true;
                    break 'walk;
                }
                let Ok(e) = serde_json::from_str::<Event>(&stored.body) else {
                    continue;
                };
                if let Some(i) = buckets
                    .iter()
                    .position(|(a, b)| e.occurred_at >= *a && e.occurred_at < *b)
                {
                    counts[i] += 1;
                }
            }
        }
    }
    Ok((counts, cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(180), 200);
        assert_eq!(nice_max(501), 1000);
    }

    #[test]
    fn login_actions_are_recognised() {
        for a in [
            "user.login",
            "user.login_failed",
            "auth_failed",
            "auth_login",
            "LOGIN",
        ] {
            assert!(is_login_action(a), "{a}");
        }
        for a in ["user.logout", "device_create", "auth_logout"] {
            assert!(!is_login_action(a), "{a}");
        }
    }

    #[test]
    fn charts_stack_and_scale() {
        let day = |d: i64| {
            let a = DateTime::from_timestamp(d * 86_400, 0).unwrap();
            (a, a + Duration::days(1))
        };
        let buckets = vec![day(0), day(1)];
        let series = vec![
            ("a".to_owned(), "cat-1".to_owned()),
            ("b".to_owned(), "cat-2".to_owned()),
        ];
        let chart = time_chart(
            &buckets,
            |d| d.format("%d").to_string(),
            &series,
            &[vec![3, 1], vec![0, 0]],
        );
        assert_eq!(chart.total, 4);
        assert_eq!(chart.rects.len(), 2);
        // The top of the scale is 5; the stack of 4 fills 80% of the plot.
        let plot = H - TOP - BOTTOM;
        let stacked: f64 = chart
            .rects
            .iter()
            .map(|r| r.h.parse::<f64>().unwrap())
            .sum();
        assert!((stacked - plot * 0.8).abs() < 0.2, "{stacked}");
        assert_eq!(chart.y_labels.last().unwrap().text, "5");
    }
}
