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
mod http;
mod load;
mod matrix;
mod pg;
mod purge;
mod search;
mod seed;
mod tiles;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Repetitions; medians are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Single-event POSTs and batches against a `bitacora serve` process, next to a bare
    /// axum handler parsing the same JSON, over loopback.
    HttpIngest {
        /// The bitacora binary (build it with `cargo build --release -p bitacora`).
        #[arg(long, env = "BITACORA_BIN", default_value = "target/release/bitacora")]
        bin: std::path::PathBuf,
        /// Connections for single-event POSTs.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Events per batch request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Connections for batches.
        #[arg(long, default_value_t = 4)]
        batch_connections: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The server's `synchronous` setting (full = durable).
        #[arg(long, default_value = "full")]
        synchronous: String,
    },
    /// Latency of the C2SP tlog-tiles resources (checkpoint, hash tiles cold and cached, entry
    /// bundles) of a `bitacora serve` process filled with `--events` over HTTP, next to
    /// `GET /healthz` on the same connection.
    Tiles {
        /// The bitacora binary.
        #[arg(long, env = "BITACORA_BIN", default_value = "target/release/bitacora")]
        bin: std::path::PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Requests per measured series (checkpoint, cold and cached tiles, baseline).
        #[arg(long, default_value_t = 5_000)]
        repeats: usize,
        /// Keep the store in this folder between runs (filled once, topped up to `--events`);
        /// default: a temporary folder.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Search latency on a store pre-filled with generated events (kept in `--dir` between
    /// runs, so a 10M-event store is filled once).
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 50)]
        repeats: usize,
    },
    /// The search matrix on a store pre-filled with generated events (kept in `--dir`, the
    /// same store as `search`): every filter alone and with every other one, time windows at
    /// the start, middle and end of the log, both orders, cursor and numbered pages, and
    /// stats over 30 and 90 days; p50/p95/p99 per cell and the worst cells.
    Matrix {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// The embedded store's folder (one of `--dir` and `--pg`).
        #[arg(long, required_unless_present = "pg", conflicts_with = "pg")]
        dir: Option<std::path::PathBuf>,
        /// Run on PostgreSQL (`BITACORA_TEST_POSTGRES`, default 127.0.0.1:5432), in the
        /// database `pg-search` fills and keeps (`bitacora_bench_search_<events>`).
        #[arg(long)]
        pg: bool,
        /// Timed runs per cell (fewer when a cell takes more than about 2 s in all).
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        /// How many of the slowest cells to name at the end.
        #[arg(long, default_value_t = 15)]
        worst: usize,
        /// Only the combinations whose name contains this (e.g. `window`, which also keeps
        /// the stats cells).
        #[arg(long)]
        only: Option<String>,
        /// The store's budget for counting a numbered page's total (`store.total_budget_ms`);
        /// a large one counts every total exactly (the baseline).
        #[arg(long, default_value_t = 25)]
        total_budget_ms: u64,
    },
    /// Batch ingest through the PostgreSQL store versus a raw binary COPY of the same rows
    /// into the same table layout, in one run (databases on `BITACORA_TEST_POSTGRES`,
    /// default postgres://postgres@127.0.0.1:5432, created and dropped).
    PgIngest {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Search latency on a PostgreSQL store pre-filled with generated events (kept in the
    /// database `bitacora_bench_search_<events>` between runs).
    PgSearch {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 50)]
        repeats: usize,
    },
    /// Search latency while ingesting at a fixed rate, next to the same searches on the idle
    /// server (same store, same run).
    Mixed {
        #[command(flatten)]
        target: load::Target,
        /// Events to fill the store with first.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Ingest rate (single-event POSTs per second) during the loaded phase.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Concurrent search connections.
        #[arg(long, default_value_t = 4)]
        searchers: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Export throughput of a whole tenant and the server's RSS while it streams.
    Export {
        #[command(flatten)]
        target: load::Target,
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        /// Formats to export, in turn.
        #[arg(long, value_delimiter = ',', default_value = "ndjson,csv,bundle")]
        formats: Vec<String>,
    },
    /// Walks a whole tenant by `next_cursor` over HTTP, timing every page.
    DeepPages {
        #[command(flatten)]
        target: load::Target,
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Many concurrent keep-alive connections posting single events.
    Connections {
        #[command(flatten)]
        target: load::Target,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The seed-style reference (bench/seed-flask: Flask + SQLAlchemy + SQLite, one commit
    /// per request, gunicorn with 2 workers) against bitacora, with the same events and the
    /// same client, in one run.
    Seed {
        /// The bitacora binary.
        #[arg(long, env = "BITACORA_BIN", default_value = "target/release/bitacora")]
        bin: std::path::PathBuf,
        /// The script that serves the reference on the port given as its argument.
        #[arg(long, default_value = "bench/seed-flask/serve")]
        seed_cmd: std::path::PathBuf,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Parse, validate, canonicalize and hash events on one core.
    Prepare {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Retention on the embedded store: purge rate including the archive write, ingest during
    /// the purge versus ingest alone, and the file size (space reuse), in one run.
    Purge {
        /// Expired-and-kept events in the store before the purge (4 in 5 expire, unless
        /// `--expired`).
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Directory for the temporary stores (default: the system temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// `retention.batch_size`: events per purge transaction and archive object.
        #[arg(long, default_value_t = 2000)]
        batch: u32,
        /// Only the first N events expire (the rest are kept), instead of 4 in 5: e.g. 1M
        /// expired events out of a 10M-event store.
        #[arg(long)]
        expired: Option<usize>,
        /// A folder for a filled store: the first run fills it there (a `bitacora backup`
        /// copy, after the signed checkpoint) and every run, of this or another build, copies
        /// it instead of filling. Two builds compared on the same store; fills take minutes.
        #[arg(long)]
        template: Option<std::path::PathBuf>,
        /// Run the purge pass with nothing beside it (no ingest, no searches): the purge by
        /// itself. The baseline ingest phase still runs first.
        #[arg(long)]
        alone: bool,
    },
    /// Retention on PostgreSQL: a month partition, all expired, archived then detached and
    /// dropped; ingest into the current month during it versus alone.
    PurgePartition {
        /// Events in the expired month.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// `retention.batch_size`: events per archive object and announcement.
        #[arg(long, default_value_t = 2000)]
        batch: u32,
        /// `retention.partition_pause_percent` (absent: its default).
        #[arg(long)]
        pause_percent: Option<u32>,
        /// Run the pass with no ingest beside it (for its own CPU time and pace).
        #[arg(long)]
        alone: bool,
        /// A control: no pass, the same ingest for this many seconds after the 8 s alone
        /// (what "during" is worth when nothing runs beside ingest: the fill's aftermath,
        /// autovacuum, checkpoints).
        #[arg(long)]
        control: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    // `RUST_LOG=bitacora_lifecycle=debug` shows each retention batch's stages and times.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match Cli::parse().command {
        Command::StoreIngest {
            events,
            batch,
            concurrency,
            dir,
            runs,
        } => store_ingest(events, batch, concurrency, dir.as_deref(), runs),
        Command::Purge {
            events,
            runs,
            dir,
            batch,
            expired,
            template,
            alone,
        } => runtime()?.block_on(purge::purge(purge::PurgeArgs {
            events,
            runs,
            dir: dir.as_deref(),
            batch,
            expired,
            template: template.as_deref(),
            alone,
        })),
        Command::PurgePartition {
            events,
            runs,
            batch,
            pause_percent,
            alone,
            control,
        } => runtime()?.block_on(purge::purge_partition(
            events,
            runs,
            batch,
            pause_percent,
            alone,
            control,
        )),
        Command::HttpIngest {
            bin,
            connections,
            batch,
            batch_connections,
            seconds,
            runs,
            synchronous,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(http::http_ingest(http::HttpIngestArgs {
                bin,
                connections,
                batch,
                batch_connections,
                seconds,
                runs,
                synchronous,
            })),
        Command::Tiles {
            bin,
            events,
            repeats,
            dir,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(tiles::tiles(&bin, events, repeats, dir.as_deref())),
        Command::Search {
            events,
            dir,
            repeats,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(search::search(&dir, events, repeats)),
        Command::Matrix {
            events,
            dir,
            pg: _,
            repeats,
            worst,
            only,
            total_budget_ms,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(matrix::matrix(
                match &dir {
                    Some(dir) => matrix::Target::Embedded(dir),
                    None => matrix::Target::Postgres,
                },
                events,
                repeats,
                worst,
                only.as_deref(),
                Duration::from_millis(total_budget_ms),
            )),
        Command::PgIngest {
            events,
            batch,
            concurrency,
            runs,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(pg::pg_ingest(events, batch, concurrency, runs)),
        Command::PgSearch { events, repeats } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(pg::pg_search(events, repeats)),
        Command::Mixed {
            target,
            events,
            rate,
            searchers,
            seconds,
        } => runtime()?.block_on(load::mixed(load::MixedArgs {
            target,
            events,
            rate,
            searchers,
            seconds,
        })),
        Command::Export {
            target,
            events,
            formats,
        } => runtime()?.block_on(load::export(target, events, &formats)),
        Command::DeepPages {
            target,
            events,
            limit,
        } => runtime()?.block_on(load::deep_pages(target, events, limit)),
        Command::Connections {
            target,
            connections,
            seconds,
        } => runtime()?.block_on(load::connections(target, connections, seconds)),
        Command::Seed {
            bin,
            seed_cmd,
            connections,
            seconds,
            runs,
        } => runtime()?.block_on(seed::compare(seed::SeedArgs {
            bin,
            seed_cmd,
            connections,
            seconds,
            runs,
        })),
        Command::Prepare { events, runs } => {
            let rates: Vec<f64> = (0..runs)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(seal_all(events));
                    rate(events, started.elapsed())
                })
                .collect();
            println!(
                "prepare (parse, validate, canonicalize, hash; 1 core): median {:.0} events/s over {runs} runs {rates:.0?}",
                median(rates.clone())
            );
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn seal_all(n: usize) -> Vec<SealedEvent> {
    seal_range(0, n)
}

/// Generated events `start..start + n`, sealed, spread over January 2026.
pub fn seal_range(start: usize, n: usize) -> Vec<SealedEvent> {
    let policy = IngestPolicy::default();
    let tenant = TenantName::default_tenant();
    (start..start + n)
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

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn store_ingest(
    events: usize,
    batch: usize,
    concurrency: usize,
    dir: Option<&Path>,
    runs: usize,
) -> anyhow::Result<()> {
    let sealed = seal_all(events);
    let (mut raw_rates, mut store_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let tmp = match dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        // Baseline: the same rows, the same schema and indexes, one rusqlite transaction per
        // batch on one connection, synchronous=FULL. No full text, counters or Merkle nodes.
        let raw = rate(
            events,
            data::raw_insert(&tmp.path().join("raw.db"), &sealed, batch)?,
        );
        let store = rate(
            events,
            store_append(&tmp.path().join("store"), &sealed, batch, concurrency)?,
        );
        println!(
            "run {run}: raw rusqlite insert {raw:>8.0} rows/s | bitacora store append {store:>8.0} events/s | {:.2}x",
            store / raw
        );
        raw_rates.push(raw);
        store_rates.push(store);
        ratios.push(store / raw);
    }
    println!(
        "median over {runs} runs: raw {:.0} rows/s, store {:.0} events/s, ratio {:.2}x",
        median(raw_rates),
        median(store_rates),
        median(ratios)
    );
    Ok(())
}

/// Appends `sealed` to a fresh durable store with `concurrency` concurrent appenders of
/// `batch` events each; returns the time until the last acknowledgement.
fn store_append(
    dir: &Path,
    sealed: &[SealedEvent],
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Arc::new(
            SqliteStore::open(
                dir,
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
    })
}
