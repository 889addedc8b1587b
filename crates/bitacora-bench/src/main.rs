//! `bitacora-bench`: prints throughput figures for bitacora next to baselines measured in the
//! same run, so every figure is also a ratio (machines here are noisy; absolute numbers drift,
//! ratios much less). Method and results: BENCHMARKS.md.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitacora_core::canonical::SealedEvent;
use bitacora_core::event::{IngestContext, IngestPolicy};
use bitacora_core::{EventInput, TenantName};
use bitacora_store::Store;
use bitacora_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use clap::{Parser, Subcommand};

mod data;

#[derive(Parser)]
#[command(about = "bitacora benchmarks (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Batch ingest straight into the embedded store versus a raw rusqlite insert of the same
    /// rows into the same schema (durable: synchronous=FULL), in one run.
    StoreIngest {
        /// Events in total.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per append call.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Concurrent appenders.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Directory for the temporary databases (default: the system temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::StoreIngest {
            events,
            batch,
            concurrency,
            dir,
        } => store_ingest(events, batch, concurrency, dir.as_deref()),
    }
}

fn seal_all(n: usize) -> Vec<SealedEvent> {
    let policy = IngestPolicy::default();
    let tenant = TenantName::default_tenant();
    (0..n)
        .map(|i| {
            let json = data::event_json(i);
            let input = EventInput::from_json(json.as_bytes()).expect("generated event parses");
            SealedEvent::prepare(
                input,
                &policy,
                &IngestContext {
                    pinned_tenant: Some(&tenant),
                    received_at: chrono::Utc::now(),
                    client_ip: None,
                    allow_reserved: false,
                },
            )
            .expect("generated event is valid")
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn store_ingest(
    events: usize,
    batch: usize,
    concurrency: usize,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let prepare_started = Instant::now();
    let sealed = seal_all(events);
    let prepare = prepare_started.elapsed();
    println!(
        "prepare (parse, validate, canonicalize, hash; 1 core): {:>10.0} events/s",
        rate(events, prepare)
    );

    // Baseline: the same rows, the same schema and indexes, one rusqlite transaction per
    // batch on one connection, synchronous=FULL. No FTS, no counters, no Merkle nodes.
    let raw = data::raw_insert(&tmp.path().join("raw.db"), &sealed, batch)?;
    println!(
        "raw rusqlite insert (same rows, same indexes):         {:>10.0} rows/s",
        rate(events, raw)
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store_dir = tmp.path().join("store");
    let took = rt.block_on(async {
        let store = Arc::new(
            SqliteStore::open(
                &store_dir,
                SqliteOptions {
                    synchronous: Synchronous::Full,
                    ..SqliteOptions::default()
                },
            )
            .context("opening the store")?,
        );
        let chunks: Vec<Vec<SealedEvent>> = sealed.chunks(batch).map(<[_]>::to_vec).collect();
        let queue = Arc::new(std::sync::Mutex::new(chunks));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (store, queue) = (store.clone(), queue.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let next = queue.lock().expect("queue").pop();
                    let Some(chunk) = next else { break };
                    store.append(chunk).await.expect("append");
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let took = started.elapsed();
        store.close().await?;
        anyhow::Ok(took)
    })?;
    println!(
        "bitacora store append (durable, + Merkle, counters):   {:>10.0} events/s  ({:.2}x raw)",
        rate(events, took),
        raw.as_secs_f64() / took.as_secs_f64()
    );
    Ok(())
}
