//! Search latency on a pre-filled store, through the `Store` trait (no HTTP): realistic
//! filtered first pages, deep cursor pages and full-text queries, p50/p95/p99 per shape.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitacora_core::TenantName;
use bitacora_core::query::{Cursor, EventQuery, Order};
use bitacora_store::Store;
use bitacora_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};

/// Query shapes an investigator uses, as query strings.
pub(crate) const SHAPES: &[(&str, &str)] = &[
    ("newest page", ""),
    ("one action", "action=user.role_change"),
    ("action prefix", "action=user.*"),
    ("one actor", "actor_id=42"),
    ("one record", "target_type=user&target_id=4242"),
    (
        "critical, last 30 days",
        "severity=critical&since=2026-01-01",
    ),
    (
        "failed logins from a /16",
        "action=user.login_failed&ip=10.1.0.0/16",
    ),
    ("actor name part", "actor=usuario 17"),
    ("full text", "q=auditoria"),
    ("full text + action", "q=cuenta&action=user.logout"),
    (
        "numbered page 50 with total",
        "action=device.create&page=50&per_page=50",
    ),
];

pub(crate) fn query(params: &str) -> anyhow::Result<EventQuery> {
    let pairs: Vec<(&str, &str)> = params
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    EventQuery::parse(pairs, &TenantName::default_tenant()).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Opens the store in `dir`, first filling it up to `events` generated events.
pub(crate) async fn open_filled(
    dir: &Path,
    events: usize,
    total_budget: Duration,
) -> anyhow::Result<Arc<SqliteStore>> {
    let store = Arc::new(
        SqliteStore::open(
            dir,
            SqliteOptions {
                synchronous: Synchronous::Off,
                total_budget,
                ..SqliteOptions::default()
            },
        )
        .context("opening the store")?,
    );
    let have = store.log_size(&TenantName::default_tenant()).await?;
    if (have as usize) < events {
        let started = Instant::now();
        let mut i = have as usize;
        while i < events {
            let n = (events - i).min(10_000);
            let batch = crate::seal_range(i, n);
            store.append(batch).await?;
            i += n;
        }
        println!(
            "filled {} events in {:.0} s (synchronous=OFF)",
            events - have as usize,
            started.elapsed().as_secs_f64()
        );
        // Let the full-text index catch up before timing `q=`.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(store)
}

pub async fn search(dir: &Path, events: usize, repeats: usize) -> anyhow::Result<()> {
    let store = open_filled(dir, events, bitacora_store::total::DEFAULT_BUDGET).await?;
    for (name, params) in SHAPES {
        let q = query(params)?;
        let mut times = Vec::with_capacity(repeats);
        let mut found = 0;
        for _ in 0..repeats {
            let t = Instant::now();
            found = store.search(&q).await?.events.len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{name:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  ({found} events)",
            pct(&times, 0.5),
            pct(&times, 0.95),
            pct(&times, 0.99)
        );
    }
    // Deep cursor pages: jump to positions spread over the log and read one page after each.
    let mut times = Vec::new();
    let size = store.log_size(&TenantName::default_tenant()).await?;
    for k in 0..repeats {
        let mut q = query("")?;
        let at = size * (k as u64 % 10 + 1) / 11;
        q.page = bitacora_core::Pagination::Cursor {
            limit: 50,
            after: Some(
                Cursor {
                    seq: at,
                    order: Order::Desc,
                }
                .seq,
            ),
        };
        let t = Instant::now();
        store.search(&q).await?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms",
        "deep cursor page",
        pct(&times, 0.5),
        pct(&times, 0.95),
        pct(&times, 0.99)
    );
    proofs(store.as_ref(), size, repeats).await?;
    store.close().await?;
    Ok(())
}

/// Inclusion and consistency proof latency (what `/v1/log/proof/*` does besides HTTP).
async fn proofs(store: &dyn Store, size: u64, repeats: usize) -> anyhow::Result<()> {
    let tenant = TenantName::default_tenant();
    let (mut inclusion, mut consistency) = (Vec::new(), Vec::new());
    for k in 0..repeats as u64 {
        // Spread over the log, with sizes that are not powers of two (ragged right edges).
        let seq = (size / repeats as u64) * k + k % 7;
        let t = Instant::now();
        bitacora_log::inclusion_proof(store, &tenant, seq, size - k).await?;
        inclusion.push(t.elapsed());
        let t = Instant::now();
        bitacora_log::consistency_proof(store, &tenant, seq + 1, size - k).await?;
        consistency.push(t.elapsed());
    }
    for (name, mut times) in [
        ("inclusion proof", inclusion),
        ("consistency proof", consistency),
    ] {
        times.sort();
        println!(
            "{name:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  (tree of {size})",
            pct(&times, 0.5),
            pct(&times, 0.95),
            pct(&times, 0.99)
        );
    }
    Ok(())
}
