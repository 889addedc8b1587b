//! `tiles`: latency of the C2SP tlog-tiles resources (docs/TRANSPARENCY.md) of a real
//! `bitacora serve` process over loopback, with `GET /healthz` on the same connection as the
//! same-run baseline (the floor of one HTTP round trip through the whole middleware stack).
//!
//! The log is filled over HTTP in batches, then, one request at a time on one keep-alive
//! connection: the checkpoint; every full level-0 tile once (cold: read from the store, then
//! cached); random full level-0 tiles again (warm: the in-memory LRU); a partial tile (never
//! cached: read from the store each time); the level-1 tiles.

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

pub async fn tiles(bin: &Path, events: usize, repeats: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(bin, &dir.path().join("data"), "normal").await?;
    let mut conn = Conn::open(&server.base, &server.key).await?;

    // Fill the log: NDJSON batches of 5,000 small events.
    let filled = Instant::now();
    let mut sent = 0usize;
    while sent < events {
        let n = (events - sent).min(5_000);
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
    println!(
        "filled {events} events in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    // Wait for a checkpoint of the whole log.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, len, _) = conn
            .get(&format!(
                "/logs/bench/tile/0/{}.p/{}",
                index_path(events as u64 / 256),
                events % 256
            ))
            .await?;
        let whole = if events.is_multiple_of(256) {
            conn.get(&format!(
                "/logs/bench/tile/0/{}",
                index_path(events as u64 / 256 - 1)
            ))
            .await?
            .0 == 200
        } else {
            status == 200 && len == 32 * (events % 256)
        };
        if whole {
            break;
        }
        if Instant::now() > deadline {
            bail!("no checkpoint of {events} events within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let full_tiles = events as u64 / 256;
    let mut baseline = Vec::new();
    let mut checkpoint = Vec::new();
    for _ in 0..repeats {
        baseline.push(conn.get("/healthz").await?.2);
        let (status, _, d) = conn.get("/logs/bench/checkpoint").await?;
        anyhow::ensure!(status == 200, "checkpoint answered {status}");
        checkpoint.push(d);
    }
    let mut cold = Vec::new();
    for n in 0..full_tiles {
        let (status, len, d) = conn
            .get(&format!("/logs/bench/tile/0/{}", index_path(n)))
            .await?;
        anyhow::ensure!(
            status == 200 && len == 8192,
            "tile {n}: {status}, {len} bytes"
        );
        cold.push(d);
    }
    let mut warm = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..repeats {
        // xorshift: a spread of tiles without a dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = state % full_tiles.max(1);
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
    for n in 0..level1_full {
        level1.push(
            conn.get(&format!("/logs/bench/tile/1/{}", index_path(n)))
                .await?
                .2,
        );
    }
    let mut entries = Vec::new();
    for n in 0..full_tiles.min(200) {
        let (status, _, d) = conn
            .get(&format!("/logs/bench/tile/entries/{}", index_path(n)))
            .await
            .context("entry bundle")?;
        anyhow::ensure!(status == 200, "bundle {n}: {status}");
        entries.push(d);
    }

    println!("log of {events} events, one keep-alive connection, sequential requests");
    println!(
        "  GET /healthz (baseline)          {}",
        percentiles(baseline)
    );
    println!(
        "  checkpoint                       {}",
        percentiles(checkpoint)
    );
    println!("  full level-0 tile, first fetch   {}", percentiles(cold));
    println!("  full level-0 tile, cached        {}", percentiles(warm));
    if !partial.is_empty() {
        println!(
            "  partial level-0 tile (no cache)  {}",
            percentiles(partial)
        );
    }
    if !level1.is_empty() {
        println!("  full level-1 tile, first fetch   {}", percentiles(level1));
    }
    println!(
        "  full entry bundle (256 events)   {}",
        percentiles(entries)
    );
    drop(server);
    Ok(())
}
