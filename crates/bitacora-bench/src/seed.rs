//! The seed-style reference (`bench/seed-flask`): the approach the project's seed documents
//! describe — a Flask view that builds an SQLAlchemy row and commits it, one commit per
//! request, SQLite, gunicorn with 2 workers — driven with the same generated events by the
//! same client as bitacora, in the same run. It is a reference point, never part of the
//! product.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::http::{Server, drive};
use crate::{data, median};

pub struct SeedArgs {
    pub bin: PathBuf,
    pub seed_cmd: PathBuf,
    pub connections: usize,
    pub seconds: u64,
    pub runs: usize,
}

/// The reference app as a child process group (gunicorn and its workers).
struct SeedApp {
    child: Child,
    base: String,
}

impl SeedApp {
    async fn start(cmd: &PathBuf, dir: &std::path::Path) -> anyhow::Result<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let child = Command::new(cmd)
            .arg(port.to_string())
            .env("SEED_DB", dir.join("seed.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", cmd.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self { child, base });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the seed reference did not listen on port {port}")
    }
}

impl Drop for SeedApp {
    fn drop(&mut self) {
        // gunicorn's workers are in the child's process group: stop them all.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

use std::os::unix::process::CommandExt as _;

pub async fn compare(args: SeedArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let body: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::new(data::event_json);
    let (mut seed_rates, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let tmp = tempfile::tempdir()?;
        let seed = SeedApp::start(&args.seed_cmd, tmp.path()).await?;
        // Warm up: gunicorn's workers import Flask and SQLAlchemy after the port is bound,
        // and the first requests wait for that; ids from a range the measurement never uses.
        let warm: Arc<dyn Fn(usize) -> String + Send + Sync> =
            Arc::new(|i| data::event_json(1_000_000_000 + i));
        drive(
            &seed.base,
            "/events",
            None,
            args.connections,
            Duration::from_secs(2),
            1,
            "application/json",
            warm,
        )
        .await?;
        let reference = drive(
            &seed.base,
            "/events",
            None,
            args.connections,
            duration,
            1,
            "application/json",
            body.clone(),
        )
        .await?;
        drop(seed);
        println!(
            "run {run}: seed-style Flask + SQLAlchemy (gunicorn -w 2), {} connections: {}",
            args.connections,
            reference.summary()
        );
        let server = Server::start(&args.bin, &tmp.path().join("data"), "full").await?;
        let mine = drive(
            &server.base,
            "/v1/events",
            Some(server.key.clone()),
            args.connections,
            duration,
            1,
            "application/json",
            body.clone(),
        )
        .await?;
        println!(
            "run {run}: bitacora single-event POSTs (durable), {} connections: {}",
            args.connections,
            mine.summary()
        );
        if reference.requests == 0 || reference.errors > 0 {
            bail!(
                "the seed reference stored {} events with {} errors",
                reference.requests,
                reference.errors
            );
        }
        seed_rates.push(reference.events_per_sec());
        ours.push(mine.events_per_sec());
        ratios.push(mine.events_per_sec() / reference.events_per_sec());
    }
    println!(
        "median over {} runs: seed-style {:.0} events/s | bitacora {:.0} events/s | {:.1}x",
        args.runs,
        median(seed_rates),
        median(ours),
        median(ratios)
    );
    Ok(())
}
