//! PostgreSQL restarted during sustained ingest: requests in the gap get `503` with a JSON
//! error and `Retry-After` (never a 500, never a dropped connection, never an acknowledgement
//! for something not committed, never a `503` for something that was), ingest recovers by
//! itself without restarting bitacora, nothing acknowledged is lost, and `bitacora verify`
//! passes.
//!
//! By default the real `bitacora serve` runs on a private, throwaway cluster
//! (`bitacora_store_postgres::testing::PrivateCluster`), restarted three times with
//! `pg_ctl restart`: fast, `-m immediate` (a crash), fast. `drills/pg-restart --database-url
//! URL --restart CMD` aims it at a real server instead (`BITACORA_DRILL_DATABASE_URL`,
//! `BITACORA_DRILL_PG_RESTART`, `BITACORA_DRILL_PG_RESTARTS`).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitacora_client::Client;
use bitacora_core::api::{Ack, BatchItem};
use bitacora_store_postgres::testing::{PrivateCluster, Shutdown};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::common::PATIENCE;
use crate::support::*;

const TENANT: &str = "drill-pg";

/// How the database is restarted.
enum Restarter {
    /// The private cluster: `pg_ctl restart -m <mode>`, cycling through these.
    Private(PrivateCluster, Vec<Shutdown>),
    /// A shell command (`drills/pg-restart --restart CMD`).
    Command(String),
}

impl Restarter {
    async fn restart(&self, round: usize) -> String {
        match self {
            Restarter::Private(cluster, modes) => {
                let how = modes[round % modes.len()];
                cluster.restart(how).await;
                format!("pg_ctl restart -m {}", how_name(how))
            }
            Restarter::Command(cmd) => {
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .status()
                    .await
                    .unwrap();
                assert!(status.success(), "`{cmd}` failed");
                cmd.clone()
            }
        }
    }
}

fn how_name(how: Shutdown) -> &'static str {
    match how {
        Shutdown::Fast => "fast",
        Shutdown::Immediate => "immediate",
    }
}

/// What the writers saw, for the assertions and the figures.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    acknowledged: AtomicU64,
    unavailable: AtomicU64,
    /// Resent after a 503 and found already stored: a 503 for a commit that happened.
    duplicate_after_503: AtomicU64,
    /// Anything else: a 500, another status, a dropped connection (with what it was).
    wrong: Mutex<Vec<String>>,
    /// When each 503 and each acknowledgement came back.
    times: Mutex<Vec<(Instant, bool)>>,
}

/// `writers` tasks sending singles and batches of 10 (ids `pg-r{round}-w{w}-...`) until
/// `stop`; a `503` is checked (JSON error, `Retry-After`) and the same events are resent
/// until acknowledged, as a client following the contract does.
fn start_writers(
    client: &Client,
    round: usize,
    writers: usize,
    acked: &Acked,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (client, acked, tally, stop) =
                (client.clone(), acked.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (path, body) = if n.is_multiple_of(2) {
                        let id = format!("pg-r{round}-w{w}-{n}");
                        let body = json!({"id": id, "tenant": TENANT, "action": "drill.pg",
                                          "actor": {"id": format!("w{w}")}});
                        ("/v1/events", body)
                    } else {
                        let batch: Vec<Value> = (0..10)
                            .map(|i| {
                                json!({"id": format!("pg-r{round}-w{w}-{n}-{i}"),
                                            "tenant": TENANT, "action": "drill.pg.batch"})
                            })
                            .collect();
                        ("/v1/events/batch", Value::Array(batch))
                    };
                    let mut after_503 = false;
                    // Resend until acknowledged (bounded: the drill ends long before).
                    for _ in 0..2000 {
                        tally.requests.fetch_add(1, Ordering::Relaxed);
                        let sent = client
                            .request(Method::POST, path)
                            .timeout(Duration::from_secs(60))
                            .json(&body)
                            .send()
                            .await;
                        let resp = match sent {
                            Ok(r) => r,
                            Err(e) => {
                                tally
                                    .wrong
                                    .lock()
                                    .unwrap()
                                    .push(format!("no response: {e}"));
                                return;
                            }
                        };
                        let status = resp.status();
                        let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
                        let text = resp.text().await.unwrap_or_default();
                        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        match status {
                            StatusCode::SERVICE_UNAVAILABLE => {
                                tally.unavailable.fetch_add(1, Ordering::Relaxed);
                                tally.times.lock().unwrap().push((Instant::now(), false));
                                if json["error"]["code"] != "unavailable" || retry_after.is_none() {
                                    tally.wrong.lock().unwrap().push(format!(
                                        "503 without a JSON error or Retry-After: {text}"
                                    ));
                                }
                                after_503 = true;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            StatusCode::CREATED | StatusCode::OK => {
                                let acks: Vec<Ack> = if status == StatusCode::CREATED {
                                    vec![serde_json::from_value(json).unwrap()]
                                } else {
                                    let results: Vec<BatchItem> =
                                        serde_json::from_value(json["results"].clone()).unwrap();
                                    results
                                        .into_iter()
                                        .map(|item| match item {
                                            BatchItem::Stored(ack) => ack,
                                            other => panic!("unexpected rejection {other:?}"),
                                        })
                                        .collect()
                                };
                                tally.acknowledged.fetch_add(1, Ordering::Relaxed);
                                tally.times.lock().unwrap().push((Instant::now(), true));
                                let mut acked = acked.lock().unwrap();
                                for ack in acks {
                                    if ack.duplicate && after_503 {
                                        tally.duplicate_after_503.fetch_add(1, Ordering::Relaxed);
                                    }
                                    acked.insert(ack.id, (ack.seq, ack.leaf_hash));
                                }
                                break;
                            }
                            other => {
                                tally
                                    .wrong
                                    .lock()
                                    .unwrap()
                                    .push(format!("{other} during a restart: {text}"));
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_during_ingest_loses_nothing_acknowledged() {
    let restarts: usize = std::env::var("BITACORA_DRILL_PG_RESTARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (url, restarter) = match std::env::var("BITACORA_DRILL_DATABASE_URL") {
        Ok(url) => {
            let restart = std::env::var("BITACORA_DRILL_PG_RESTART").unwrap_or_else(|_| {
                let version = std::fs::read_dir("/etc/postgresql")
                    .ok()
                    .and_then(|mut d| d.next())
                    .and_then(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_else(|| "15".into());
                format!("pg_ctlcluster {version} main restart")
            });
            (url, Restarter::Command(restart))
        }
        Err(_) => {
            let Some(cluster) = PrivateCluster::create().await else {
                return;
            };
            let url = cluster.create_database("drill").await;
            let modes = vec![Shutdown::Fast, Shutdown::Immediate, Shutdown::Fast];
            (url, Restarter::Private(cluster, modes))
        }
    };
    let root = tempfile::tempdir().unwrap();
    let signing = root.path().join("drill.signing-key");
    let key_file = root.path().join("admin-key");
    let out = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .args([
            "keys",
            "create",
            "--scope",
            "admin",
            "--name",
            "pg-drill",
            "--database-url",
            &url,
        ])
        .arg("--signing-key-file")
        .arg(&signing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let store = [
        "--database-url".into(),
        url.clone().into(),
        "--signing-key-file".into(),
        signing.clone().into_os_string(),
    ];
    let mut app = spawn_on(&store, root.path(), key_file, &[]).await;
    let pid = app.child.id();

    let acked = Acked::default();
    let mut total = (0, 0, 0);
    for round in 0..restarts {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&app.client, round, 8, &acked, &tally, &stop);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let began = Instant::now();
        let how = restarter.restart(round).await;
        let back = Instant::now();
        // bitacora recovers by itself: ready again, then writes acknowledged again.
        let deadline = Instant::now() + PATIENCE * 3;
        while app.client.readyz().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "bitacora did not recover after `{how}`"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ready = Instant::now();
        tokio::time::sleep(Duration::from_millis(800)).await;
        stop.store(true, Ordering::Relaxed);
        join_all(writers).await;
        assert!(
            matches!(app.child.try_wait(), Ok(None)),
            "bitacora (pid {pid}) exited during the restart"
        );
        let wrong = tally.wrong.lock().unwrap().clone();
        assert!(wrong.is_empty(), "after `{how}`: {wrong:?}");
        assert_eq!(
            tally.duplicate_after_503.load(Ordering::Relaxed),
            0,
            "a 503 was answered for events that had been committed"
        );
        let times = tally.times.lock().unwrap().clone();
        let first_ack_after = times
            .iter()
            .filter(|(t, ok)| *ok && *t > back)
            .map(|(t, _)| *t)
            .min()
            .expect("writes acknowledged again after the restart");
        let last_503 = times.iter().filter(|(_, ok)| !ok).map(|(t, _)| *t).max();
        let stored = assert_acknowledged_present(&app.client, TENANT, &acked).await;
        let (requests, acks, unavailable) = (
            tally.requests.load(Ordering::Relaxed),
            tally.acknowledged.load(Ordering::Relaxed),
            tally.unavailable.load(Ordering::Relaxed),
        );
        total = (total.0 + requests, total.1 + acks, total.2 + unavailable);
        eprintln!(
            "pg-restart round {round} (`{how}`): {requests} requests, {acks} acknowledged, \
             {unavailable} answered 503; PostgreSQL back after {:.2} s, /readyz ready {:.2} s \
             and the first write acknowledged {:.2} s after that; last 503 at {}; \
             {stored} events stored, all {} acknowledged present",
            back.duration_since(began).as_secs_f64(),
            ready.duration_since(back).as_secs_f64(),
            first_ack_after.duration_since(back).as_secs_f64(),
            last_503.map_or("-".into(), |t| format!(
                "+{:.2} s",
                t.saturating_duration_since(began).as_secs_f64()
            )),
            acked.lock().unwrap().len(),
        );
    }
    eprintln!(
        "pg-restart: {restarts} restarts, {} requests, {} acknowledged, {} answered 503, \
         0 errors of another kind, 0 dropped connections",
        total.0, total.1, total.2
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .args(["verify", "--tenant", TENANT, "--database-url", &url])
        .arg("--signing-key-file")
        .arg(&signing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(app);
    drop(restarter);
}
