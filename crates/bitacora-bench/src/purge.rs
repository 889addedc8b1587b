//! `purge`: retention on the embedded store — the purge rate including the archive write
//! (bundle with proofs, zstd, a file), and ingest and search latency while a purge runs versus
//! without one (the same ingest and searches), in the same run; and the database file's size
//! before the purge, after it, and after re-ingesting as many events as were purged (freed
//! pages are reused).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitacora_core::canonical::SealedEvent;
use bitacora_core::event::{IngestContext, IngestPolicy};
use bitacora_core::{EventInput, TenantName};
use bitacora_lifecycle::{Archive, Retention, RetentionConfig};
use bitacora_store::Store;
use bitacora_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use tokio_util::sync::CancellationToken;

use crate::median;

const DAY_US: i64 = 86_400_000_000;

/// Which events expire: `None`, four in five; `Some(n)`, the first `n` (seqs `0..n`).
static EXPIRED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// Event `i`, received at `received_us`; `user.*` ones expire after 10 days, `auth.*` ones
/// are kept. Four in five are `user.*`, or (with `--expired N`) events `0..N` alone.
fn event(i: usize, received_us: i64) -> SealedEvent {
    let expires = match EXPIRED.get().copied().flatten() {
        Some(n) => i < n,
        None => !i.is_multiple_of(5),
    };
    let action = if expires { "user.update" } else { "auth.login" };
    let json = serde_json::json!({
        "id": format!("p-{i}"),
        "action": action,
        "actor": {"id": format!("u{}", i % 500), "name": format!("user {}", i % 500)},
        "target": {"type": "user", "id": format!("{}", i % 10_000)},
        "changes": [{"field": "role", "old": "user", "new": "admin"}],
        "description": format!("cambio de rol número {i}"),
        "context": {"ip": format!("10.0.{}.{}", (i / 250) % 250, i % 250)},
    });
    let input = EventInput::from_json(json.to_string().as_bytes()).expect("event");
    SealedEvent::prepare(
        input,
        &IngestPolicy::default(),
        &IngestContext {
            pinned_tenant: None,
            received_at: chrono::DateTime::from_timestamp_micros(received_us).expect("time"),
            client_ip: None,
            allow_reserved: false,
        },
    )
    .expect("valid")
}

async fn fill(store: &dyn Store, from: usize, n: usize, received_us: i64) -> anyhow::Result<()> {
    let mut i = from;
    while i < from + n {
        let end = (i + 5000).min(from + n);
        store
            .append((i..end).map(|j| event(j, received_us)).collect())
            .await?;
        i = end;
    }
    Ok(())
}

/// Appends batches of 500 from one task until `stop`; returns events appended.
fn ingest_until(
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
    first: usize,
) -> tokio::task::JoinHandle<u64> {
    ingest_counted(store, stop, first, Arc::new(AtomicU64::new(0)))
}

/// [`ingest_until`], counting into `done` as it goes (for a timeline).
fn ingest_counted(
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
    first: usize,
    done: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut i = first;
        let now = chrono::Utc::now().timestamp_micros();
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<_> = (i..i + 500).map(|j| event(j, now)).collect();
            store.append(batch).await.expect("append");
            i += 500;
            done.fetch_add(500, Ordering::Relaxed);
        }
        done.load(Ordering::Relaxed)
    })
}

/// Searches from one task until `stop` — an actor's latest 50 events, then a full-text
/// term, in turn, one every 20 ms — and returns each one's latency.
fn search_until(store: Arc<dyn Store>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<f64>> {
    use bitacora_core::query::{EventFilter, EventQuery, Order, Pagination};
    tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut k = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let mut filter = EventFilter::default();
            if k.is_multiple_of(2) {
                filter.actor_id = Some(format!("u{}", k % 500));
            } else {
                filter.text = vec![format!("{}", k % 10_000)];
            }
            let q = EventQuery {
                tenant: TenantName::default_tenant(),
                filter,
                order: Order::Desc,
                page: Pagination::Cursor {
                    limit: 50,
                    after: None,
                },
            };
            let t = Instant::now();
            store.search(&q).await.expect("search");
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            k += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies
    })
}

/// The retention task the benchmarks run: `rules` (TOML) over `store`, archiving to the folder
/// `archive` and signing bundles with `signer`.
fn retention(
    store: Arc<dyn Store>,
    signer: &bitacora_core::checkpoint::NoteSigner,
    rules: &str,
    archive: &Path,
) -> anyhow::Result<Retention> {
    Ok(Retention {
        store,
        config: toml::from_str::<RetentionConfig>(rules)?,
        archive: Archive::open(&format!("file://{}", archive.display()))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        bundle: bitacora_log::BundleOptions::new(Arc::new(signer.clone()), vec![signer.verifier()]),
        policy: Arc::new(IngestPolicy::default()),
    })
}

/// CPU seconds (user + system) used so far, read from `/proc` (Linux; zeros elsewhere): by
/// this process, by the PostgreSQL backends serving database `db` (their process titles name
/// it), and by PostgreSQL's own processes (WAL writer, checkpointer, …, shared with any other
/// database on the server). A backend that exits in between loses its share: the store's pool
/// keeps its connections for the whole run.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    process: f64,
    backends: f64,
    postgres: f64,
}

impl Cpu {
    fn now(db: &str) -> Self {
        // Clock ticks per second: 100 on every Linux this runs on (`getconf CLK_TCK`).
        let ticks = |stat: &str| -> f64 {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return 0.0;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (field(11) + field(12)) / 100.0
        };
        let mut cpu = Self {
            process: std::fs::read_to_string("/proc/self/stat").map_or(0.0, |s| ticks(&s)),
            ..Self::default()
        };
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let Ok(cmdline) = std::fs::read_to_string(path.join("cmdline")) else {
                continue;
            };
            let Some(title) = cmdline.strip_prefix("postgres: ") else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
                continue;
            };
            if title.split_whitespace().any(|w| w == db) {
                cpu.backends += ticks(&stat);
            } else if !title.contains('(') {
                // Not a client backend (those show their client's address): a PostgreSQL
                // process of its own.
                cpu.postgres += ticks(&stat);
            }
        }
        cpu
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            process: self.process - before.process,
            backends: self.backends - before.backends,
            postgres: self.postgres - before.postgres,
        }
    }

    fn total(&self) -> f64 {
        self.process + self.backends + self.postgres
    }
}

fn p95(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.95) as usize).min(v.len() - 1)]
}

fn file_mb(dir: &Path) -> f64 {
    std::fs::metadata(dir.join("bitacora.db")).map_or(0.0, |m| m.len() as f64 / 1e6)
}

/// What `bitacora-bench purge` was asked.
pub struct PurgeArgs<'a> {
    pub events: usize,
    pub runs: usize,
    pub dir: Option<&'a Path>,
    pub batch: u32,
    pub expired: Option<usize>,
    pub template: Option<&'a Path>,
    pub alone: bool,
}

/// Copies the store saved in `template` to `data`, if `template` holds one made with these
/// arguments; returns whether it did.
fn from_template(template: &Path, data: &Path, label: &str) -> anyhow::Result<bool> {
    let saved = template.join("data");
    let Ok(found) = std::fs::read_to_string(template.join("template.txt")) else {
        return Ok(false);
    };
    anyhow::ensure!(
        found.trim() == label,
        "{} holds a store filled with `{}`, not `{label}`",
        template.display(),
        found.trim()
    );
    std::fs::create_dir_all(data)?;
    for file in ["bitacora.db", "bitacora-fts.db"] {
        std::fs::copy(saved.join(file), data.join(file))
            .with_context(|| format!("copying {file} from the template"))?;
    }
    Ok(true)
}

pub async fn purge(args: PurgeArgs<'_>) -> anyhow::Result<()> {
    let PurgeArgs {
        events,
        runs,
        dir,
        batch,
        expired,
        template,
        alone: purge_alone,
    } = args;
    let label = format!("events={events} expired={expired:?}");
    EXPIRED
        .set(expired)
        .map_err(|_| anyhow::anyhow!("purge runs once per process"))?;
    let signer = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [3; 32])?;
    let tenant = TenantName::default_tenant();
    let (mut purge_rates, mut alone_rates, mut during_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut idle_p95s, mut purge_p95s) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let tmp = match dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        let data = tmp.path().join("data");
        let copied = match template {
            Some(t) => from_template(t, &data, &label)?,
            None => false,
        };
        let options = SqliteOptions {
            synchronous: Synchronous::Full,
            ..SqliteOptions::default()
        };
        let mut store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&data, options.clone()).context("opening the store")?);
        if copied {
            eprintln!(
                "run {run}: copied the filled store ({:.1} MB)",
                file_mb(&data)
            );
        } else {
            let old = chrono::Utc::now().timestamp_micros() - 30 * DAY_US;
            let filling = Instant::now();
            fill(store.as_ref(), 0, events, old).await?;
            bitacora_log::checkpoint_tenant(store.as_ref(), &signer, &tenant, 1).await?;
            eprintln!(
                "run {run}: filled {events} events in {:.0} s ({:.1} MB)",
                filling.elapsed().as_secs_f64(),
                file_mb(&data)
            );
            if let Some(t) = template {
                // Saved after the checkpoint, closed and reopened, so every run starts alike.
                store.close().await?;
                drop(store);
                let _ = std::fs::remove_dir_all(t.join("data"));
                bitacora_store_sqlite::backup(&data, &t.join("data"))
                    .map_err(|e| anyhow::anyhow!("saving the template: {e}"))?;
                std::fs::write(t.join("template.txt"), &label)?;
                std::fs::remove_dir_all(&data)?;
                from_template(t, &data, &label)?;
                store = Arc::new(SqliteStore::open(&data, options).context("opening the store")?);
            }
        }
        let retention = retention(
            store.clone(),
            &signer,
            &format!(
                "min_delay = \"0s\"\nbatch_size = {batch}\n[[rule]]\naction = \"user.*\"\nkeep = \"10d\"\n"
            ),
            &tmp.path().join("archive"),
        )?;

        // Ingest and searches without a purge (baseline), for 8 s.
        let stop = Arc::new(AtomicBool::new(false));
        let task = ingest_until(store.clone(), stop.clone(), 10_000_000);
        let searches = search_until(store.clone(), stop.clone());
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        stop.store(true, Ordering::Relaxed);
        let alone = task.await? as f64 / started.elapsed().as_secs_f64();
        let idle_p95 = p95(searches.await?);

        // The purge, with the same ingest and searches running beside it (unless `alone`).
        let before_mb = file_mb(&data);
        let stop = Arc::new(AtomicBool::new(purge_alone));
        let task = ingest_until(store.clone(), stop.clone(), 20_000_000);
        let searches = search_until(store.clone(), stop.clone());
        let started = Instant::now();
        let report = retention
            .pass(
                chrono::Utc::now().timestamp_micros(),
                false,
                None,
                &CancellationToken::new(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let during = task.await? as f64 / started.elapsed().as_secs_f64();
        let purge_p95 = p95(searches.await?);
        let purged = report.purged();
        let rate = purged as f64 / took.as_secs_f64();
        let after_mb = file_mb(&data);
        // As many new events as were purged: the freed pages take them.
        fill(
            store.as_ref(),
            30_000_000,
            purged as usize,
            chrono::Utc::now().timestamp_micros(),
        )
        .await?;
        let refilled_mb = file_mb(&data);
        println!(
            "run {run}: purged {purged} of {events} in {:.2} s ({rate:.0} events/s incl. archive, {} objects) | \
             ingest alone {alone:.0} events/s, during the purge {during:.0} events/s ({:.2}x) | \
             search p95 {idle_p95:.1} ms without a purge, {purge_p95:.1} ms during it ({:.2}x) | \
             file {before_mb:.1} MB before, {after_mb:.1} MB after, {refilled_mb:.1} MB after re-ingesting {purged}",
            took.as_secs_f64(),
            report.purges.len(),
            during / alone,
            purge_p95 / idle_p95.max(0.001),
        );
        idle_p95s.push(idle_p95);
        purge_p95s.push(purge_p95);
        purge_rates.push(rate);
        alone_rates.push(alone);
        during_rates.push(during);
        store.close().await?;
    }
    let (alone, during) = (median(alone_rates), median(during_rates));
    let (idle, busy) = (median(idle_p95s), median(purge_p95s));
    println!(
        "median over {runs} runs: purge {:.0} events/s incl. archive; ingest alone {alone:.0}/s, during purge {during:.0}/s ({:.2}x); \
         search p95 {idle:.1} ms without a purge, {busy:.1} ms during it ({:.2}x)",
        median(purge_rates),
        during / alone,
        busy / idle.max(0.001)
    );
    Ok(())
}

/// `purge-partition`: retention on PostgreSQL — a month partition of `events` events, all
/// expired, archived (bundles with proofs, zstd, files) and then detached and dropped, timed
/// from the start of the pass to the drop's commit; and ingest into the current month while
/// it runs versus ingest alone, in the same run. Needs PostgreSQL (`BITACORA_TEST_POSTGRES`,
/// default `postgres://postgres@127.0.0.1:5432`); each run uses a throwaway database.
pub async fn purge_partition(
    events: usize,
    runs: usize,
    batch: u32,
    pause_percent: Option<u32>,
    pass_alone: bool,
    control: Option<u64>,
) -> anyhow::Result<()> {
    use bitacora_store_postgres::testing::TestDatabase;
    use bitacora_store_postgres::{PgOptions, PgStore};
    let signer = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [3; 32])?;
    let tenant = TenantName::default_tenant();
    let (mut times, mut alone_rates, mut during_rates) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let db = TestDatabase::create()
            .await
            .context("PostgreSQL is needed (BITACORA_TEST_POSTGRES)")?;
        let store: Arc<dyn Store> = Arc::new(
            PgStore::open(db.url(), PgOptions::default())
                .await
                .context("opening the PostgreSQL store")?,
        );
        // Every event received 90 days ago: one month partition, wholly expired under 30d.
        let old = chrono::Utc::now().timestamp_micros() - 90 * DAY_US;
        let filled = Instant::now();
        fill(store.as_ref(), 0, events, old).await?;
        let fill_secs = filled.elapsed().as_secs_f64();
        bitacora_log::checkpoint_tenant(store.as_ref(), &signer, &tenant, 1).await?;
        let tmp = tempfile::tempdir()?;
        let retention = retention(
            store.clone(),
            &signer,
            &format!(
                "default = \"30d\"\nmin_delay = \"0s\"\nbatch_size = {batch}\n{}",
                pause_percent
                    .map(|p| format!("partition_pause_percent = {p}\n"))
                    .unwrap_or_default()
            ),
            &tmp.path().join("archive"),
        )?;

        let stop = Arc::new(AtomicBool::new(false));
        let task = ingest_until(store.clone(), stop.clone(), 10_000_000);
        let cpu = Cpu::now(db.name());
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        stop.store(true, Ordering::Relaxed);
        let ingested = task.await?;
        let alone_secs = started.elapsed().as_secs_f64();
        let alone = ingested as f64 / alone_secs;
        let ingest_cpu = Cpu::now(db.name()).since(&cpu);

        // With `--alone`, the pass runs with no ingest beside it (its own CPU, measured).
        let stop = Arc::new(AtomicBool::new(pass_alone));
        let counted = Arc::new(AtomicU64::new(0));
        let task = ingest_counted(store.clone(), stop.clone(), 20_000_000, counted.clone());
        let cpu = Cpu::now(db.name());
        let started = Instant::now();
        // Ingest per 5 s while the pass runs (to set against the pass's debug log: which of
        // its steps costs ingest what).
        let timeline = {
            let (stop, counted) = (stop.clone(), counted.clone());
            tokio::spawn(async move {
                let mut rates = Vec::new();
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let now = counted.load(Ordering::Relaxed);
                    rates.push((now - last) / 5);
                    last = now;
                }
                rates
            })
        };
        if let Some(secs) = control {
            // The control: the same ingest for as long as a pass, with no pass beside it.
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.store(true, Ordering::Relaxed);
            let during = task.await? as f64 / started.elapsed().as_secs_f64();
            println!(
                "run {run}: control, no pass: ingest alone {alone:.0} events/s, in the next {secs} s {during:.0} events/s ({:.2}x); per 5 s: {}",
                during / alone,
                timeline
                    .await?
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            alone_rates.push(alone);
            during_rates.push(during);
            store.close().await?;
            continue;
        }
        let report = retention
            .pass(
                chrono::Utc::now().timestamp_micros(),
                false,
                None,
                &CancellationToken::new(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let ingested_during = task.await?;
        let during = ingested_during as f64 / started.elapsed().as_secs_f64();
        let pass_cpu = Cpu::now(db.name()).since(&cpu);
        let timeline = timeline.await?;
        // The pass's own CPU: what the process and the database's backends used while it
        // ran, less the ingest beside it at the CPU per event ingest used alone.
        let per_event = |c: f64| c / ingested.max(1) as f64;
        println!(
            "run {run}: CPU seconds (user + system): ingest alone {:.1} s for {ingested} events \
             ({:.2} cores: bitacora {:.1}, its PostgreSQL backends {:.1}, PostgreSQL's own processes {:.1}); \
             during the pass {:.1} s ({:.2} cores: bitacora {:.1}, backends {:.1}, own {:.1}), \
             of which the pass ~{:.1} s (bitacora ~{:.1}, backends ~{:.1}) after ingest's {ingested_during} events",
            ingest_cpu.total(),
            ingest_cpu.total() / alone_secs,
            ingest_cpu.process,
            ingest_cpu.backends,
            ingest_cpu.postgres,
            pass_cpu.total(),
            pass_cpu.total() / took.as_secs_f64(),
            pass_cpu.process,
            pass_cpu.backends,
            pass_cpu.postgres,
            pass_cpu.total() - per_event(ingest_cpu.total()) * ingested_during as f64,
            pass_cpu.process - per_event(ingest_cpu.process) * ingested_during as f64,
            pass_cpu.backends - per_event(ingest_cpu.backends) * ingested_during as f64,
        );
        println!(
            "run {run}: ingest per 5 s during the pass (events/s): {}",
            timeline
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
        anyhow::ensure!(
            report.dropped_partitions.len() == 1,
            "expected one partition dropped, got {:?}",
            report.dropped_partitions
        );
        println!(
            "run {run}: {} ({} events, filled in {fill_secs:.1} s) archived in {} objects and dropped in \
             {:.1} s ({:.0} events/s) | ingest alone {alone:.0} events/s, during {during:.0} events/s ({:.2}x)",
            report.dropped_partitions[0],
            report.purged(),
            report.purges.len(),
            took.as_secs_f64(),
            report.purged() as f64 / took.as_secs_f64(),
            during / alone
        );
        times.push(took.as_secs_f64());
        alone_rates.push(alone);
        during_rates.push(during);
        store.close().await?;
    }
    let (alone, during) = (median(alone_rates), median(during_rates));
    if control.is_some() {
        println!(
            "median over {runs} control runs: ingest alone {alone:.0}/s, after it {during:.0}/s ({:.2}x)",
            during / alone
        );
        return Ok(());
    }
    println!(
        "median over {runs} runs: partition of {events} archived and dropped in {:.1} s; ingest alone {alone:.0}/s, \
         during {during:.0}/s ({:.2}x)",
        median(times),
        during / alone
    );
    Ok(())
}
