//! Load over loopback HTTP: the real `bitacora serve` process against a bare axum handler that
//! parses the same JSON and answers 201, driven by the same client in the same run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{data, median};

/// What one load run measured.
pub struct Load {
    pub requests: usize,
    pub events: usize,
    pub elapsed: Duration,
    /// Per-request latencies in microseconds, sorted.
    pub latencies: Vec<u32>,
    pub errors: usize,
}

impl Load {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }

    pub fn summary(&self) -> String {
        format!(
            "{:>8.0} events/s ({} requests, {} errors) latency p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms",
            self.events_per_sec(),
            self.requests,
            self.errors,
            self.percentile(0.50),
            self.percentile(0.95),
            self.percentile(0.99)
        )
    }
}

/// Sends `make_body(i)` to `base` + `path` from `connections` HTTP/1.1 keep-alive
/// connections for `duration`. A bare hyper client: the load generator shares the machine with
/// the server, so it must cost as little CPU per request as possible.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    base: &str,
    path: &str,
    key: Option<String>,
    connections: usize,
    duration: Duration,
    events_per_request: usize,
    content_type: &'static str,
    make_body: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> anyhow::Result<Load> {
    let addr = base.trim_start_matches("http://").to_owned();
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (addr, path, key, counter, make_body) = (
            addr.clone(),
            path.to_owned(),
            key.clone(),
            counter.clone(),
            make_body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let connect = || async {
                let stream = tokio::net::TcpStream::connect(&addr).await?;
                stream.set_nodelay(true)?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                        .await?;
                tokio::spawn(conn);
                anyhow::Ok(sender)
            };
            let mut sender = connect().await?;
            let auth = key.map(|k| format!("Bearer {k}"));
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let mut req = hyper::Request::post(path.as_str())
                    .header("host", addr.as_str())
                    .header("content-type", content_type);
                if let Some(a) = &auth {
                    req = req.header("authorization", a.as_str());
                }
                let req = req.body(Full::new(Bytes::from(make_body(i))))?;
                let t = Instant::now();
                // A server without keep-alive (gunicorn's sync workers) closes after each
                // response: connect again, as a browser or `requests` would.
                if sender.is_closed() || sender.ready().await.is_err() {
                    sender = connect().await?;
                    sender.ready().await?;
                }
                let resp = sender.send_request(req).await?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await?;
                if ok {
                    latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                } else {
                    errors += 1;
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Load {
        requests: latencies.len(),
        events: latencies.len() * events_per_request,
        elapsed,
        latencies,
        errors,
    })
}

/// The baseline: an axum handler that parses the JSON body and answers 201.
pub async fn bare_axum() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    async fn handler(body: axum::body::Bytes) -> (StatusCode, &'static str) {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => {
                std::hint::black_box(v);
                (StatusCode::CREATED, r#"{"ok":true}"#)
            }
            Err(_) => (StatusCode::BAD_REQUEST, r#"{"ok":false}"#),
        }
    }
    let app = Router::new()
        .route("/v1/events", post(handler))
        .route("/v1/events/batch", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), handle))
}

/// A `bitacora serve` child process on a fresh data folder.
pub struct Server {
    child: Child,
    pub base: String,
    pub key: String,
}

impl Server {
    pub async fn start(bin: &Path, data: &Path, synchronous: &str) -> anyhow::Result<Self> {
        Self::start_with(bin, data, synchronous, None).await
    }

    /// Starts `bitacora serve` on `data` (SQLite), or on PostgreSQL when `database_url` is
    /// given (then with an admin key created by `bitacora keys create`, since a PostgreSQL
    /// store has no folder to write the initial key to).
    pub async fn start_with(
        bin: &Path,
        data: &Path,
        synchronous: &str,
        database_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        let pg_key = match database_url {
            Some(url) => {
                let key_file = data.with_extension("signing-key");
                std::fs::create_dir_all(data)?;
                let out = Command::new(bin)
                    .args([
                        "keys",
                        "create",
                        "--scope",
                        "admin",
                        "--name",
                        "bench",
                        "--database-url",
                        url,
                    ])
                    .arg("--signing-key-file")
                    .arg(&key_file)
                    .output()
                    .context("bitacora keys create")?;
                if !out.status.success() {
                    bail!(
                        "bitacora keys create failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let key = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                cmd.args(["--database-url", url])
                    .arg("--signing-key-file")
                    .arg(&key_file);
                Some(key)
            }
            None => {
                cmd.arg("--data").arg(data);
                None
            }
        };
        let mut child = cmd
            .env("BITACORA_LOG_LEVEL", "warn")
            .env("BITACORA_STORE__SYNCHRONOUS", synchronous)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let stdout = tokio::process::ChildStdout::from_std(stdout)?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return anyhow::Ok(rest.trim().to_owned());
                }
            }
            bail!("the server exited before listening")
        })
        .await
        .context("waiting for the server to listen")??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // "listening" is printed once the port is bound, before the store is open: wait for
        // the initial key and for /readyz.
        let started = Instant::now();
        let key = match pg_key {
            Some(k) => k,
            None => loop {
                if let Ok(k) = std::fs::read_to_string(data.join("initial-admin-key")) {
                    break k.trim().to_owned();
                }
                if started.elapsed() > Duration::from_secs(30) {
                    bail!("the server wrote no initial admin key");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            },
        };
        let addr = base.trim_start_matches("http://").to_owned();
        // A reused store (`--dir`) may first run a migration over millions of events.
        while started.elapsed() < Duration::from_secs(600) {
            if ready(&addr).await {
                return Ok(Self { child, base, key });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the server never became ready")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process now, from /proc.
    pub fn rss_mib(&self) -> Option<f64> {
        rss_of(self.child.id())
    }

    /// Peak resident set size of the server process, from /proc.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

/// `VmRSS` of process `pid`, in MiB.
pub fn rss_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn ready(addr: &str) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let Ok(req) = hyper::Request::get("/readyz")
        .header("host", addr)
        .body(Full::new(Bytes::new()))
    else {
        return false;
    };
    matches!(sender.send_request(req).await, Ok(r) if r.status().is_success())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpIngestArgs {
    pub bin: PathBuf,
    pub connections: usize,
    pub batch: usize,
    pub batch_connections: usize,
    pub seconds: u64,
    pub runs: usize,
    pub synchronous: String,
}

pub async fn http_ingest(args: HttpIngestArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let single: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::new(data::event_json);
    let batch = args.batch;
    let batched: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::new(move |i| {
        let items: Vec<String> = (0..batch)
            .map(|j| data::event_json(i * batch + j))
            .collect();
        format!("[{}]", items.join(","))
    });

    let (mut base_rates, mut single_rates, mut batch_rates, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rss: Vec<f64> = Vec::new();
    for run in 1..=args.runs {
        let (bare, handle) = bare_axum().await?;
        let base = drive(
            &bare,
            "/v1/events",
            None,
            args.connections,
            duration,
            1,
            "application/json",
            single.clone(),
        )
        .await?;
        handle.abort();
        println!(
            "run {run}: bare axum handler, {} connections: {}",
            args.connections,
            base.summary()
        );

        let tmp = tempfile::tempdir()?;
        let server = Server::start(&args.bin, &tmp.path().join("data"), &args.synchronous).await?;
        let one = drive(
            &server.base,
            "/v1/events",
            Some(server.key.clone()),
            args.connections,
            duration,
            1,
            "application/json",
            single.clone(),
        )
        .await?;
        println!(
            "run {run}: bitacora single-event POSTs, {} connections: {}",
            args.connections,
            one.summary()
        );
        let many = drive(
            &server.base,
            "/v1/events/batch",
            Some(server.key.clone()),
            args.batch_connections,
            duration,
            args.batch,
            "application/json",
            batched.clone(),
        )
        .await?;
        println!(
            "run {run}: bitacora batches of {}, {} connections: {}",
            args.batch,
            args.batch_connections,
            many.summary()
        );
        if let Some(r) = server.peak_rss_mib() {
            println!("run {run}: server peak RSS {r:.0} MiB");
            rss.push(r);
        }
        base_rates.push(base.events_per_sec());
        single_rates.push(one.events_per_sec());
        batch_rates.push(many.events_per_sec());
        ratios.push(one.events_per_sec() / base.events_per_sec());
    }
    println!(
        "median over {} runs (synchronous={}): bare axum {:.0} req/s | single-event {:.0} events/s ({:.2}x bare) | batches {:.0} events/s | peak RSS {:.0} MiB",
        args.runs,
        args.synchronous,
        median(base_rates),
        median(single_rates),
        median(ratios),
        median(batch_rates),
        rss.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}
