//! The search matrix: every filter of CONTRACT §3 alone and with every other one, time
//! windows at the start, middle and end of the log (alone and with every filter), in both
//! orders, as a cursor first page and as a numbered page with its total; then `stats` over
//! 30 and 90 days. Generated, not hand-picked, so a shape nobody thought of cannot hide a
//! slow plan. p50/p95/p99 per cell, and the worst cells named at the end.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitacora_core::TenantName;
use bitacora_core::query::Pagination;
use bitacora_store::Store;

use crate::search::{open_filled, pct, query};

/// Events per day of `occurred_at` in the generated log (`data::event_json`).
const EVENTS_PER_DAY: usize = 40_000;

/// One value per filter of CONTRACT §3 (a "dimension"); two values of one dimension are never
/// combined.
const FILTERS: &[(&str, &str)] = &[
    ("action", "action=user.role_change"),
    ("action prefix", "action=user.*"),
    ("category", "category=device"),
    ("severity", "severity=critical"),
    ("min_severity", "min_severity=high"),
    ("outcome", "outcome=failure"),
    ("actor_id", "actor_id=42"),
    ("actor", "actor=usuario 17"),
    ("target_type", "target_type=user"),
    ("target", "target_type=user&target_id=4242"),
    ("ip", "ip=10.1.0.0/16"),
    // One address: 1 event in 1,000 (`data::event` cycles through 1,000 addresses).
    ("ip address", "ip=10.1.64.7"),
    ("source", "source=admin_panel"),
    // A term in every event, and one in a few (target 4242's name, and event 4242's text).
    ("q", "q=auditoria"),
    ("q rare", "q=4242"),
];

struct Cell {
    name: String,
    p50: f64,
    p95: f64,
    p99: f64,
    found: usize,
    total: Option<u64>,
    /// The total is an estimate (`total_exact: false`).
    estimated: bool,
    runs: usize,
}

/// Times `repeats` runs of `f` (fewer when a cell is slow: at least 5 and about 2 s).
async fn time<F, Fut>(
    repeats: usize,
    mut f: F,
) -> anyhow::Result<(Vec<Duration>, usize, Option<u64>)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(usize, Option<u64>)>>,
{
    // One untimed run, so every cell starts from the same (warm) cache.
    let (mut found, mut total) = f().await?;
    let mut times = Vec::with_capacity(repeats);
    let started = Instant::now();
    for i in 0..repeats {
        if i >= 5 && started.elapsed() > Duration::from_secs(2) {
            break;
        }
        let t = Instant::now();
        (found, total) = f().await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((times, found, total))
}

/// Which store the matrix runs on.
pub enum Target<'a> {
    /// The embedded store in this folder.
    Embedded(&'a Path),
    /// The PostgreSQL database `bitacora_bench_search_<events>` (see `pg::open_filled`).
    Postgres,
}

pub async fn matrix(
    target: Target<'_>,
    events: usize,
    repeats: usize,
    worst: usize,
    only: Option<&str>,
    total_budget: Duration,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = match target {
        Target::Embedded(dir) => open_filled(dir, events, total_budget).await?,
        Target::Postgres => crate::pg::open_filled(events, total_budget).await?,
    };
    let size = store.log_size(&TenantName::default_tenant()).await? as usize;
    // Days 1..=days of January 2026 hold events (the generator wraps after 28).
    let days = size.div_ceil(EVENTS_PER_DAY).clamp(1, 28);
    let windows = [
        (
            "window start",
            "since=2026-01-01&until=2026-01-01".to_string(),
        ),
        (
            "window middle",
            format!(
                "since=2026-01-{0:02}&until=2026-01-{0:02}",
                days.div_ceil(2)
            ),
        ),
        (
            "window end",
            format!("since=2026-01-{0:02}&until=2026-01-{0:02}", days),
        ),
    ];
    let mut combos: Vec<(String, String)> = vec![("no filter".into(), String::new())];
    for (i, (a, qa)) in FILTERS.iter().enumerate() {
        combos.push(((*a).into(), (*qa).into()));
        for (b, qb) in &FILTERS[i + 1..] {
            // A parameter is given once (`action` and `action prefix` are two values of one).
            let names = |q: &str| -> Vec<String> {
                q.split('&')
                    .map(|p| p.split('=').next().unwrap_or_default().to_owned())
                    .collect()
            };
            if names(qa).iter().any(|n| names(qb).contains(n)) {
                continue;
            }
            combos.push((format!("{a} + {b}"), format!("{qa}&{qb}")));
        }
    }
    for (w, qw) in &windows {
        combos.push(((*w).into(), qw.clone()));
        for (a, qa) in FILTERS {
            combos.push((format!("{w} + {a}"), format!("{qw}&{qa}")));
        }
    }
    if let Some(only) = only {
        combos.retain(|(name, _)| name.contains(only));
    }
    println!(
        "matrix: {} filter combinations x 2 orders x (cursor first page, numbered page 3 of 50 with total) on {size} events",
        combos.len()
    );
    let mut cells = Vec::new();
    for (name, params) in &combos {
        for order in ["desc", "asc"] {
            for numbered in [false, true] {
                let mut full = params.clone();
                if !full.is_empty() {
                    full.push('&');
                }
                full.push_str(&format!("order={order}"));
                if numbered {
                    full.push_str("&page=3&per_page=50");
                }
                let q = query(&full)?;
                let s = &store;
                let estimated = std::sync::atomic::AtomicBool::new(false);
                let (times, found, total) = time(repeats, || {
                    let (q, estimated) = (q.clone(), &estimated);
                    async move {
                        let r = s.search(&q).await?;
                        estimated.store(r.estimated, std::sync::atomic::Ordering::Relaxed);
                        Ok((r.events.len(), r.total))
                    }
                })
                .await?;
                let cell = Cell {
                    name: format!(
                        "{name} | {order} | {}",
                        if numbered { "numbered" } else { "cursor" }
                    ),
                    p50: pct(&times, 0.5),
                    p95: pct(&times, 0.95),
                    p99: pct(&times, 0.99),
                    found,
                    total,
                    estimated: estimated.into_inner(),
                    runs: times.len(),
                };
                print_cell(&cell);
                debug_assert!(matches!(q.page, Pagination::Cursor { .. }) != numbered);
                cells.push(cell);
            }
        }
    }
    // Stats windows ending at the log's last day, at a time of day that is not midnight (as
    // `GET /v1/stats` without bounds does: until = now).
    let end = chrono::DateTime::parse_from_rfc3339(&format!("2026-01-{days:02}T13:37:11Z"))?
        .timestamp_micros();
    let stats_windows = if only.is_none_or(|o| "stats".contains(o) || o == "window") {
        vec![("stats 30 days", 30i64), ("stats 90 days", 90)]
    } else {
        Vec::new()
    };
    for (label, span_days) in stats_windows {
        for (edge, until) in [
            ("mid-day", end),
            ("midnight", end - end.rem_euclid(86_400_000_000)),
        ] {
            let since = until - span_days * 86_400_000_000;
            let s = &store;
            let (times, found, _) = time(repeats, || async move {
                let st = s
                    .stats(&TenantName::default_tenant(), since, until, 10)
                    .await?;
                Ok((st.total as usize, None))
            })
            .await?;
            let cell = Cell {
                name: format!("{label}, ends {edge}"),
                p50: pct(&times, 0.5),
                p95: pct(&times, 0.95),
                p99: pct(&times, 0.99),
                found,
                total: None,
                estimated: false,
                runs: times.len(),
            };
            print_cell(&cell);
            cells.push(cell);
        }
    }
    cells.sort_by(|a, b| b.p95.total_cmp(&a.p95));
    let search_cells = cells
        .iter()
        .filter(|c| !c.name.starts_with("stats"))
        .count();
    println!("\nworst {worst} cells by p95:");
    for c in cells.iter().take(worst) {
        print_cell(c);
    }
    let estimated = cells.iter().filter(|c| c.estimated).count();
    println!(
        "\n{estimated} numbered cells estimated their total (budget {} ms)",
        total_budget.as_millis()
    );
    let over = |ms: f64| cells.iter().filter(|c| c.p95 > ms).count();
    println!(
        "\n{} cells ({} search): p95 > 5 ms: {}, > 20 ms: {}, > 50 ms: {}, > 200 ms: {}",
        cells.len(),
        search_cells,
        over(5.0),
        over(20.0),
        over(50.0),
        over(200.0)
    );
    let mut p95s: Vec<f64> = cells.iter().map(|c| c.p95).collect();
    p95s.sort_by(f64::total_cmp);
    if p95s.is_empty() {
        return Ok(());
    }
    println!(
        "median cell p95 {:.2} ms, worst cell p95 {:.2} ms",
        p95s[p95s.len() / 2],
        p95s.last().copied().unwrap_or_default()
    );
    store.close().await?;
    Ok(())
}

fn print_cell(c: &Cell) {
    println!(
        "{:<58} p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  ({} events{}, {} runs)",
        c.name,
        c.p50,
        c.p95,
        c.p99,
        c.found,
        c.total
            .map(|t| format!(", total {}{t}", if c.estimated { "~" } else { "" }))
            .unwrap_or_default(),
        c.runs
    );
}
