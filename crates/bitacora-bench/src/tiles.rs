//! `tiles`: latency of the C2SP tlog-tiles resources (docs/TRANSPARENCY.md) of a real
//! `bitacora serve` process over loopback, with `GET /healthz` on the same connection as the
//! same-run baseline (the floor of one HTTP round trip through the whole middleware stack).
//!
//! The log is filled over HTTP in batches (or reused from `--dir`, topped up to `--events`),
//! then, one request at a time on one keep-alive connection: the checkpoint; **cold** full
//! level-0 tiles, a random sample drawn without replacement from the whole log, each fetched
//! once and never before by this server process (so never from its tile cache: read from the
//! store); some of those again (warm: the in-memory LRU); a partial tile (never cached: read
//! from the store each time); every full level-1 tile once, in random order (cold); a random
//! sample of entry bundles, each fetched once.
//!
//! "Cold" is about bitacora's own caches. The operating system's page cache is whatever the
//! fill and earlier runs left: the bench does not drop it (that is a root-only, machine-wide
//! act on a shared machine).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::http::Server;

struct Conn {
    addr: String,
    auth: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(base: &str, key: &str) -> anyhow::Result<Self> {
        let addr = base.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self {
            addr,
            auth: format!("Bearer {key}"),
            sender,
        })
    }

    /// One request; its status, body length and latency.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(u16, usize, Duration)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.as_str())
            .header("authorization", self.auth.as_str())
            .header("content-type", "application/x-ndjson")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let t = Instant::now();
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let len = resp.into_body().collect().await?.to_bytes().len();
        Ok((status, len, t.elapsed()))
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, usize, Duration)> {
        self.send("GET", path, None).await
    }
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort_unstable();
    let at = |p: f64| {
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1000.0
    };
    format!(
        "n={:>6}  p50 {:>7.3} ms  p95 {:>7.3} ms  p99 {:>7.3} ms",
        v.len(),
        at(0.50),
        at(0.95),
        at(0.99)
    )
}

/// C2SP `<N>` of a tile path.
fn index_path(n: u64) -> String {
    bitacora_core::tlog::encode_index(n)
}

/// A deterministic spread without a dependency (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `k` distinct values of `0..n`, in random order (a partial Fisher-Yates shuffle).
    fn sample(&mut self, n: u64, k: usize) -> Vec<u64> {
        let mut all: Vec<u64> = (0..n).collect();
        let k = k.min(all.len());
        for i in 0..k {
            let j = i + (self.next() % (all.len() - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }
}

/// The tree size of the log's latest checkpoint (0 when none is served yet).
async fn checkpoint_size(conn: &mut Conn) -> anyhow::Result<u64> {
    let req = hyper::Request::builder()
        .uri("/logs/bench/checkpoint")
        .header("host", conn.addr.as_str())
        .header("authorization", conn.auth.as_str())
        .body(Full::new(Bytes::new()))?;
    conn.sender.ready().await?;
    let resp = conn.sender.send_request(req).await?;
    if resp.status() != 200 {
        return Ok(0);
    }
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .context("a checkpoint's second line is its tree size")
}

/// Appends events `from..to` to tenant `bench`: NDJSON batches of 5,000 small events.
async fn fill(conn: &mut Conn, from: usize, to: usize) -> anyhow::Result<()> {
    let mut sent = from;
    while sent < to {
        let n = (to - sent).min(5_000);
        let body: String = (sent..sent + n)
            .map(|i| {
                format!(
                    "{{\"tenant\":\"bench\",\"action\":\"item.touch\",\"actor\":{{\"id\":\"u{}\"}},\"target\":{{\"type\":\"item\",\"id\":\"{i}\"}}}}\n",
                    i % 97
                )
            })
            .collect();
        let (status, _, _) = conn.send("POST", "/v1/events/batch", Some(body)).await?;
        if status != 200 {
            bail!("batch ingest answered {status}");
        }
        sent += n;
    }
    Ok(())
}

/// Total size of the files in `dir` (not recursive), in MiB.
fn dir_mib(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / (1024.0 * 1024.0)
}

pub async fn tiles(
    bin: &Path,
    events: usize,
    repeats: usize,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    // With `--dir` the store outlives the run (a 10M-event fill takes minutes); else a
    // temporary one.
    let tmp = tempfile::tempdir()?;
    let data = match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.to_path_buf()
        }
        None => tmp.path().join("data"),
    };
    let started = Instant::now();
    let server = Server::start(bin, &data, "normal").await?;
    println!(
        "server ready in {:.1} s (migrations included)",
        started.elapsed().as_secs_f64()
    );
    let mut conn = Conn::open(&server.base, &server.key).await?;

    let have = checkpoint_size(&mut conn).await? as usize;
    if have < events {
        let filled = Instant::now();
        fill(&mut conn, have, events).await?;
        println!(
            "filled events {have}..{events} in {:.1} s",
            filled.elapsed().as_secs_f64()
        );
    } else {
        println!("reused the log of {have} events in {}", data.display());
    }
    // Wait for a checkpoint of the whole log.
    let deadline = Instant::now() + Duration::from_secs(120);
    let events = loop {
        let size = checkpoint_size(&mut conn).await? as usize;
        if size >= events {
            break size;
        }
        if Instant::now() > deadline {
            bail!("no checkpoint of {events} events within 120 s (latest: {size})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("store: {:.0} MiB in {}", dir_mib(&data), data.display());

    let full_tiles = events as u64 / 256;
    // A new sample each run (printed), so that a rerun on a kept store does not fetch the
    // tiles the previous run left in the operating system's page cache.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    println!("sample seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut baseline = Vec::new();
    let mut checkpoint = Vec::new();
    for _ in 0..repeats {
        baseline.push(conn.get("/healthz").await?.2);
        let (status, _, d) = conn.get("/logs/bench/checkpoint").await?;
        anyhow::ensure!(status == 200, "checkpoint answered {status}");
        checkpoint.push(d);
    }
    // Cold: distinct random tiles from the whole log, each fetched once.
    let picked = rng.sample(full_tiles, repeats);
    let mut cold = Vec::new();
    for &n in &picked {
        let (status, len, d) = conn
            .get(&format!("/logs/bench/tile/0/{}", index_path(n)))
            .await?;
        anyhow::ensure!(
            status == 200 && len == 8192,
            "tile {n}: {status}, {len} bytes"
        );
        cold.push(d);
    }
    // Warm: tiles among the last 1,000 fetched, well within the default LRU (4,096).
    let recent = &picked[picked.len().saturating_sub(1_000)..];
    let mut warm = Vec::new();
    for _ in 0..if recent.is_empty() { 0 } else { repeats } {
        let n = recent[(rng.next() % recent.len() as u64) as usize];
        warm.push(
            conn.get(&format!("/logs/bench/tile/0/{}", index_path(n)))
                .await?
                .2,
        );
    }
    let mut partial = Vec::new();
    if !events.is_multiple_of(256) {
        let path = format!(
            "/logs/bench/tile/0/{}.p/{}",
            index_path(full_tiles),
            events % 256
        );
        for _ in 0..repeats.min(500) {
            partial.push(conn.get(&path).await?.2);
        }
    }
    let mut level1 = Vec::new();
    let level1_full = events as u64 / 65_536;
    for n in rng.sample(level1_full, repeats) {
        let (status, len, d) = conn
            .get(&format!("/logs/bench/tile/1/{}", index_path(n)))
            .await?;
        anyhow::ensure!(
            status == 200 && len == 8192,
            "level-1 tile {n}: {status}, {len} bytes"
        );
        level1.push(d);
    }
    let mut entries = Vec::new();
    for n in rng.sample(full_tiles, repeats.min(500)) {
        let (status, _, d) = conn
            .get(&format!("/logs/bench/tile/entries/{}", index_path(n)))
            .await
            .context("entry bundle")?;
        anyhow::ensure!(status == 200, "bundle {n}: {status}");
        entries.push(d);
    }

    println!("log of {events} events, one keep-alive connection, sequential requests");
    println!(
        "  GET /healthz (baseline)            {}",
        percentiles(baseline)
    );
    println!(
        "  checkpoint                         {}",
        percentiles(checkpoint)
    );
    if !cold.is_empty() {
        println!("  full level-0 tile, cold (random)   {}", percentiles(cold));
    }
    if !warm.is_empty() {
        println!("  full level-0 tile, cached          {}", percentiles(warm));
    }
    if !partial.is_empty() {
        println!(
            "  partial level-0 tile (no cache)    {}",
            percentiles(partial)
        );
    }
    if !level1.is_empty() {
        println!(
            "  full level-1 tile, cold (random)   {}",
            percentiles(level1)
        );
    }
    if !entries.is_empty() {
        println!(
            "  full entry bundle, cold (random)   {}",
            percentiles(entries)
        );
    }
    drop(server);
    Ok(())
}
