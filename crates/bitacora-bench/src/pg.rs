//! PostgreSQL store benchmarks: batch ingest through the store versus a raw binary COPY of
//! the same rows into the same table layout, in the same run (`pg-ingest`), and search
//! latency on a pre-filled database (`pg-search`).
//!
//! Databases are created on the server named by `BITACORA_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`); `pg-ingest` drops its databases afterwards,
//! `pg-search` keeps its filled one (`bitacora_bench_search_<events>`) for the next run.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitacora_core::TenantName;
use bitacora_core::canonical::SealedEvent;
use bitacora_store::Store;
use bitacora_store_postgres::testing::{TestDatabase, server_url};
use bitacora_store_postgres::{PgOptions, PgStore, derive};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::search::{SHAPES, pct, query};
use crate::{median, rate, seal_range};

/// A connection made as the store makes its own (same `sslmode` handling, so TLS or not alike):
/// the raw COPY baseline must not be spared a cost the store pays.
async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let connector = bitacora_store_postgres::connect::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    let (client, connection) = connector.config.connect(connector.tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Appends `events` through the store with `concurrency` appenders of `batch` events.
async fn store_run(
    url: &str,
    events: &Arc<Vec<Vec<SealedEvent>>>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let store = Arc::new(PgStore::open(url, PgOptions::default()).await?);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (store, next, events) = (store.clone(), next.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(batch) = events.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                store.append(batch.clone()).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    store.close().await?;
    Ok(elapsed)
}

const COPY: &str = "COPY events (tenant_id, seq, received_at, event_id, occurred_at, action,
    category, severity, outcome, actor_id, actor_search, target_type, target_id, ip, source,
    fingerprint, leaf_hash, body, fts) FROM STDIN BINARY";

const TYPES: [Type; 19] = [
    Type::INT4,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::INT2,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
];

/// One batch as a bare binary COPY in its own transaction: what a hand-written PostgreSQL
/// audit table with the same columns and indexes would cost at best (no idempotency
/// lookup, no sequencing lock, no Merkle tree, no counters). The derived values are
/// computed here too, as the store computes them per append.
async fn copy_batch(
    client: &mut tokio_postgres::Client,
    first_seq: i64,
    batch: &[SealedEvent],
) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    let sink = tx.copy_in(COPY).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &TYPES));
    for (k, s) in batch.iter().enumerate() {
        let e = &s.event;
        let seq = first_seq + k as i64;
        let severity = i16::from(e.severity.rank());
        let outcome = i16::from(e.outcome.rank());
        let actor_id = e.actor.as_ref().and_then(|a| a.id.as_deref());
        let actor_search = derive::actor_search(e);
        let target_type = e.target.as_ref().map(|t| t.kind.as_str());
        let target_id = e.target.as_ref().and_then(|t| t.id.as_deref());
        let ip = e.context.ip_addr().map(derive::ip_blob);
        let ip = ip.as_ref().map(|b| &b[..]);
        let source = e.context.source.as_deref();
        let fingerprint = &s.fingerprint[..];
        let leaf_hash = &s.leaf_hash[..];
        let fts = derive::fts_text(e);
        let row: [&(dyn ToSql + Sync); 19] = [
            &1i32,
            &seq,
            &e.received_at,
            &e.id,
            &e.occurred_at,
            &e.action,
            &e.category,
            &severity,
            &outcome,
            &actor_id,
            &actor_search,
            &target_type,
            &target_id,
            &ip,
            &source,
            &fingerprint,
            &leaf_hash,
            &s.body,
            &fts,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    Ok(())
}

async fn copy_run(
    url: &str,
    events: &Arc<Vec<Vec<SealedEvent>>>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    // The same schema, partitions and indexes: migrate through the store, then close it.
    PgStore::open(url, PgOptions::default())
        .await?
        .close()
        .await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        clients.push(connect(url).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut client in clients {
        let (next, events) = (next.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(batch) = events.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let first: usize = events[..i].iter().map(Vec::len).sum();
                copy_batch(&mut client, first as i64, batch).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

pub async fn pg_ingest(
    events: usize,
    batch: usize,
    concurrency: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let batches: Vec<Vec<SealedEvent>> = seal_range(0, events)
        .chunks(batch.max(1))
        .map(<[SealedEvent]>::to_vec)
        .collect();
    let batches = Arc::new(batches);
    let (mut store_rates, mut copy_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // Alternate which goes first, so neither always gets the warmer server.
        let mut pair = [0.0f64; 2];
        for which in [run % 2, 1 - run % 2] {
            let db = TestDatabase::create()
                .await
                .context("PostgreSQL is unreachable")?;
            let took = if which == 0 {
                store_run(db.url(), &batches, concurrency).await?
            } else {
                copy_run(db.url(), &batches, concurrency).await?
            };
            pair[which] = rate(events, took);
            drop(db);
        }
        println!(
            "run {run}: store {:.0} events/s, raw binary COPY {:.0} rows/s, ratio {:.2}",
            pair[0],
            pair[1],
            pair[0] / pair[1]
        );
        store_rates.push(pair[0]);
        copy_rates.push(pair[1]);
        ratios.push(pair[0] / pair[1]);
    }
    println!(
        "pg-ingest ({events} events, batches of {batch}, {concurrency} appenders, durable \
         commits): store median {:.0} events/s; raw binary COPY median {:.0} rows/s; \
         median ratio {:.2}",
        median(store_rates),
        median(copy_rates),
        median(ratios)
    );
    Ok(())
}

/// Opens (creating it if needed) the database `bitacora_bench_search_<events>`, first filling
/// it up to `events` generated events (the same events as the embedded store's `search`),
/// then analyzing it. Kept between runs: filling 10M events takes more than an hour here.
pub async fn open_filled(events: usize, total_budget: Duration) -> anyhow::Result<Arc<PgStore>> {
    let name = format!("bitacora_bench_search_{events}");
    let admin = connect(&format!("{}/postgres", server_url().trim_end_matches('/'))).await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
    }
    let url = format!("{}/{name}", server_url().trim_end_matches('/'));
    let options = PgOptions {
        total_budget,
        ..PgOptions::default()
    };
    let store = Arc::new(PgStore::open(&url, options).await?);
    let tenant = TenantName::default_tenant();
    let have = store.log_size(&tenant).await? as usize;
    if have < events {
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(have));
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (store, next) = (store.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(10_000, std::sync::atomic::Ordering::Relaxed);
                    if i >= events {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let batch = seal_range(i, (events - i).min(10_000));
                    store.append(batch).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        println!(
            "filled {} events in {:.0} s",
            events - have,
            started.elapsed().as_secs_f64()
        );
        connect(&url).await?.batch_execute("ANALYZE").await?;
    }
    Ok(store)
}

pub async fn pg_search(events: usize, repeats: usize) -> anyhow::Result<()> {
    let store = open_filled(events, bitacora_store::total::DEFAULT_BUDGET).await?;
    let tenant = TenantName::default_tenant();
    let size = store.log_size(&tenant).await?;
    println!("PostgreSQL store, {size} events in tenant `default`:");
    for (label, params) in SHAPES {
        let q = query(params)?;
        // One untimed run: the first execution plans and warms the statement cache.
        store.search(&q).await?;
        let mut times = Vec::with_capacity(repeats);
        let mut found = 0;
        for _ in 0..repeats {
            let t = Instant::now();
            found = store.search(&q).await?.events.len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{label:<30} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  ({found} events)",
            pct(&times, 0.5),
            pct(&times, 0.95),
            pct(&times, 0.99)
        );
    }
    store.close().await?;
    Ok(())
}
