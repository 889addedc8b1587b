//! Load shapes beyond plain ingest, each against a real `bitacora serve` over loopback:
//! searches while ingesting at a fixed rate (search p95 under load next to the same searches
//! idle), export throughput with the server's memory sampled while it streams, cursor pages
//! walked deep through a tenant, and many concurrent connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::data;
use crate::http::{Load, Server, drive};

/// Where the server keeps its store: a fresh temporary folder, or PostgreSQL.
#[derive(Clone, Debug, clap::Args)]
pub struct Target {
    /// The bitacora binary (build it with `cargo build --release -p bitacora`).
    #[arg(long, env = "BITACORA_BIN", default_value = "target/release/bitacora")]
    pub bin: PathBuf,
    /// Run the server on this PostgreSQL database instead of a temporary SQLite folder
    /// (for the `pg` figures; needs the PostgreSQL store).
    #[arg(long)]
    pub database_url: Option<String>,
}

impl Target {
    pub async fn start(&self, dir: &std::path::Path) -> anyhow::Result<Server> {
        Server::start_with(
            &self.bin,
            &dir.join("data"),
            "full",
            self.database_url.as_deref(),
        )
        .await
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    auth: String,
}

impl Conn {
    pub async fn open(base: &str, key: &str) -> anyhow::Result<Self> {
        let host = base.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self {
            sender,
            host,
            auth: format!("Bearer {key}"),
        })
    }

    /// GET `path`; the status and the whole body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        let req = hyper::Request::get(path)
            .header("host", self.host.as_str())
            .header("authorization", self.auth.as_str())
            .body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    /// GET `path`, counting body bytes and lines as they stream, without keeping them.
    pub async fn stream_lines(&mut self, path: &str) -> anyhow::Result<(u16, u64, u64)> {
        let req = hyper::Request::get(path)
            .header("host", self.host.as_str())
            .header("authorization", self.auth.as_str())
            .body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let (mut bytes, mut lines) = (0u64, 0u64);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                bytes += data.len() as u64;
                lines += data.iter().filter(|b| **b == b'\n').count() as u64;
            }
        }
        Ok((status, bytes, lines))
    }
}

pub fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Fills the server's default tenant with `n` generated events, in 1,000-event batches from
/// 4 connections.
pub async fn fill(server: &Server, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let batch = 1000usize;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (base, key, next) = (server.base.clone(), server.key.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let host = base.trim_start_matches("http://").to_owned();
            let stream = tokio::net::TcpStream::connect(&host).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b * batch >= n {
                    return anyhow::Ok(());
                }
                let items: Vec<String> = (b * batch..((b + 1) * batch).min(n))
                    .map(data::event_json)
                    .collect();
                let req = hyper::Request::post("/v1/events/batch")
                    .header("host", host.as_str())
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(format!("[{}]", items.join(",")))))?;
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                resp.into_body().collect().await?;
                if !status.is_success() {
                    bail!("filling: batch answered {status}");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "filled {n} events over HTTP in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Query strings of realistic first pages (the same shapes as `search`).
const QUERIES: &[&str] = &[
    "/v1/events?limit=50",
    "/v1/events?action=user.role_change&limit=50",
    "/v1/events?action=user.*&limit=50",
    "/v1/events?actor_id=42&limit=50",
    "/v1/events?target_type=user&target_id=4242",
    "/v1/events?severity=critical&since=2026-01-01",
    "/v1/events?action=user.login_failed&ip=10.1.0.0/16",
    "/v1/events?q=auditoria&limit=20",
];

/// Runs the query shapes round-robin from `searchers` connections for `duration`.
async fn search_load(
    server: &Server,
    searchers: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for s in 0..searchers {
        let (base, key) = (server.base.clone(), server.key.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&base, &key).await?;
            let mut times = Vec::new();
            let mut i = s;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, _) = conn.get(QUERIES[i % QUERIES.len()]).await?;
                if status != 200 {
                    bail!("search answered {status}");
                }
                times.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all)
}

/// Single-event POSTs at `rate` events/s from `connections` connections, paced, until `stop`.
async fn paced_ingest(
    server: &Server,
    rate: u64,
    connections: usize,
    stop: Arc<AtomicBool>,
    start_at: usize,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let per_conn = (rate as f64 / connections as f64).max(0.1);
    let interval = Duration::from_secs_f64(1.0 / per_conn);
    let counter = Arc::new(AtomicUsize::new(start_at));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (base, key, stop, counter) = (
            server.base.clone(),
            server.key.clone(),
            stop.clone(),
            counter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let host = base.trim_start_matches("http://").to_owned();
            let stream = tokio::net::TcpStream::connect(&host).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut sent, mut times) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let req = hyper::Request::post("/v1/events")
                    .header("host", host.as_str())
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(data::event_json(i))))?;
                let t = Instant::now();
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await?;
                if ok {
                    sent += 1;
                    times.push(t.elapsed());
                }
            }
            anyhow::Ok((sent, times))
        }));
    }
    let (mut sent, mut times) = (0, Vec::new());
    for t in tasks {
        let (s, l) = t.await??;
        sent += s;
        times.extend(l);
    }
    times.sort();
    Ok((sent, times))
}

pub struct MixedArgs {
    pub target: Target,
    pub events: usize,
    pub rate: u64,
    pub searchers: usize,
    pub seconds: u64,
}

/// Search latency idle, then under a fixed ingest rate, on the same pre-filled server.
pub async fn mixed(args: MixedArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = args.target.start(tmp.path()).await?;
    fill(&server, args.events).await?;
    // Let the full-text index catch up, so `q=` measures search, not indexing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let duration = Duration::from_secs(args.seconds);
    let idle = search_load(&server, args.searchers, duration).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = paced_ingest(&server, args.rate, 16, stop.clone(), args.events);
    let searches = async {
        let r = search_load(&server, args.searchers, duration).await;
        stop.store(true, Ordering::Relaxed);
        r
    };
    let (ingested, loaded) = tokio::join!(ingest, searches);
    let (sent, ingest_times) = ingested?;
    let loaded = loaded?;
    println!(
        "search idle ({} searchers): {} searches, p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms",
        args.searchers,
        idle.len(),
        pct_ms(&idle, 0.5),
        pct_ms(&idle, 0.95),
        pct_ms(&idle, 0.99)
    );
    println!(
        "search while ingesting {} events/s: {} searches, p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms ({:.2}x idle p95)",
        args.rate,
        loaded.len(),
        pct_ms(&loaded, 0.5),
        pct_ms(&loaded, 0.95),
        pct_ms(&loaded, 0.99),
        pct_ms(&loaded, 0.95) / pct_ms(&idle, 0.95)
    );
    println!(
        "ingest achieved {:.0} events/s (asked {}), POST p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms | server peak RSS {:.0} MiB",
        sent as f64 / duration.as_secs_f64(),
        args.rate,
        pct_ms(&ingest_times, 0.5),
        pct_ms(&ingest_times, 0.95),
        pct_ms(&ingest_times, 0.99),
        server.peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// Export throughput and the server's memory while it streams a whole tenant.
pub async fn export(target: Target, events: usize, formats: &[String]) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = target.start(tmp.path()).await?;
    fill(&server, events).await?;
    for format in formats {
        let before = server.rss_mib().unwrap_or(f64::NAN);
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            let pid = server.pid();
            tokio::spawn(async move {
                let mut peak = 0f64;
                while sampling.load(Ordering::Relaxed) {
                    if let Some(r) = crate::http::rss_of(pid) {
                        peak = peak.max(r);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                peak
            })
        };
        let mut conn = Conn::open(&server.base, &server.key).await?;
        let started = Instant::now();
        let (status, bytes, lines) = conn
            .stream_lines(&format!("/v1/export?format={format}"))
            .await?;
        let took = started.elapsed();
        sampling.store(false, Ordering::Relaxed);
        let peak = sampler.await?;
        if status != 200 {
            bail!("export answered {status}");
        }
        println!(
            "export format={format}: {lines} lines, {:.0} MB in {:.2} s = {:.0} events/s, {:.0} MB/s | server RSS {before:.0} MiB before, {peak:.0} MiB peak while exporting",
            bytes as f64 / 1e6,
            took.as_secs_f64(),
            events as f64 / took.as_secs_f64(),
            bytes as f64 / 1e6 / took.as_secs_f64(),
        );
    }
    Ok(())
}

/// Walks the whole tenant by `next_cursor`, one page after another, timing each page.
pub async fn deep_pages(target: Target, events: usize, limit: u32) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = target.start(tmp.path()).await?;
    fill(&server, events).await?;
    for filter in ["", "&action=user.*"] {
        let mut conn = Conn::open(&server.base, &server.key).await?;
        let mut times = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = 0usize;
        loop {
            let path = match &cursor {
                None => format!("/v1/events?limit={limit}{filter}"),
                Some(c) => format!("/v1/events?limit={limit}{filter}&cursor={c}"),
            };
            let t = Instant::now();
            let (status, body) = conn.get(&path).await?;
            times.push(t.elapsed());
            if status != 200 {
                bail!("page answered {status}: {}", String::from_utf8_lossy(&body));
            }
            let page: serde_json::Value = serde_json::from_slice(&body)?;
            seen += page["events"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let last: Vec<Duration> = {
            let mut l = times[times.len().saturating_sub(20)..].to_vec();
            l.sort();
            l
        };
        times.sort();
        println!(
            "cursor walk{}: {} pages of {limit} ({seen} events), p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms; last 20 pages p95 {:.2} ms",
            if filter.is_empty() {
                String::new()
            } else {
                format!(" ({})", &filter[1..])
            },
            times.len(),
            pct_ms(&times, 0.5),
            pct_ms(&times, 0.95),
            pct_ms(&times, 0.99),
            pct_ms(&last, 0.95),
        );
    }
    Ok(())
}

/// `connections` concurrent keep-alive connections posting single events for `seconds`.
pub async fn connections(target: Target, connections: usize, seconds: u64) -> anyhow::Result<()> {
    check_fd_limit(connections * 2 + 256)?;
    let tmp = tempfile::tempdir()?;
    let server = target.start(tmp.path()).await?;
    let load: Load = drive(
        &server.base,
        "/v1/events",
        Some(server.key.clone()),
        connections,
        Duration::from_secs(seconds),
        1,
        "application/json",
        Arc::new(data::event_json),
    )
    .await?;
    println!(
        "{connections} concurrent connections, single-event POSTs: {} | server peak RSS {:.0} MiB",
        load.summary(),
        server.peak_rss_mib().unwrap_or(f64::NAN)
    );
    if load.errors > 0 {
        bail!("{} requests failed", load.errors);
    }
    Ok(())
}

/// Checks that this process (and the server it spawns, which inherits the limit) may open
/// `need` files; `bench/run` raises the limit with `ulimit -n` before it starts.
pub fn check_fd_limit(need: usize) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: Option<usize> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok());
    match soft {
        Some(s) if s < need => bail!(
            "the open-file limit is {s}, {need} are needed: run `ulimit -n {need}` first \
             (bench/run does)"
        ),
        _ => Ok(()),
    }
}
