//! What the drills share: a `bitacora serve` child with extra settings, writers that record
//! every acknowledgement, the check that every acknowledged event survived, `bitacora verify`,
//! and the server's memory from /proc.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitacora_client::{Client, SearchParams};
use bitacora_core::api::BatchItem;
use bitacora_core::{Event, Order};
use futures::TryStreamExt as _;
use serde_json::json;

use crate::common::{BinaryApp, PATIENCE, event, wait_until_healthy};

/// id → (seq, leaf_hash) of every acknowledged event.
pub type Acked = Arc<Mutex<HashMap<String, (u64, String)>>>;

/// `bitacora serve --listen 127.0.0.1:0 --data DIR` with `env` added (e.g.
/// `BITACORA_SERVER__REQUEST_TIMEOUT_SECS`), like `common::spawn_binary`.
pub async fn spawn_with(data: &Path, env: &[(&str, &str)]) -> BinaryApp {
    let store = ["--data".into(), data.as_os_str().to_owned()];
    spawn_on(&store, data, admin_key_file(data), env).await
}

fn admin_key_file(data: &Path) -> std::path::PathBuf {
    data.join("initial-admin-key")
}

/// `bitacora serve` with `store` arguments (`--data DIR` or `--database-url URL
/// --signing-key-file FILE`), logged in with the key in `key_file`; `data` is what
/// [`BinaryApp::data`] reports.
pub async fn spawn_on(
    store: &[std::ffi::OsString],
    data: &Path,
    key_file: std::path::PathBuf,
    env: &[(&str, &str)],
) -> BinaryApp {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitacora"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(store)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BITACORA_") {
            cmd.env_remove(k);
        }
    }
    if std::env::var_os("TEST_LOG").is_some() {
        cmd.stderr(Stdio::inherit());
    } else {
        cmd.stderr(Stdio::null()).env("BITACORA_LOG_LEVEL", "error");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn bitacora serve");
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("listening on http://")
                    && let Ok(addr) = rest.trim().parse::<SocketAddr>()
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    let Ok(addr) = rx.recv_timeout(PATIENCE) else {
        let _ = child.kill();
        panic!("no `listening on` line within {PATIENCE:?}");
    };
    let deadline = Instant::now() + PATIENCE;
    let key = loop {
        if let Ok(k) = std::fs::read_to_string(&key_file)
            && !k.trim().is_empty()
        {
            break k.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "no {}", key_file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let client = Client::new(format!("http://{addr}"), key).unwrap();
    wait_until_healthy(&client).await;
    BinaryApp {
        child,
        addr,
        data: data.to_path_buf(),
        client,
        stdout: lines,
    }
}

/// The admin key of a data folder.
pub fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("initial-admin-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `writers` tasks sending singles and batches of 20 (ids `r{round}-w{w}-...`) until the
/// server goes away, recording every acknowledgement in `acked`.
pub fn start_writers(
    client: &Client,
    tenant: &'static str,
    round: usize,
    writers: usize,
    acked: &Acked,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (client, acked) = (client.clone(), acked.clone());
            tokio::spawn(async move {
                for n in 0usize.. {
                    if n % 2 == 0 {
                        let e = event(json!({
                            "id": format!("r{round}-w{w}-{n}"), "tenant": tenant,
                            "action": "drill.single", "actor": {"id": format!("w{w}")},
                            "description": "evento de simulacro"
                        }));
                        match client.send(&e).await {
                            Ok(ack) => {
                                acked
                                    .lock()
                                    .unwrap()
                                    .insert(ack.id, (ack.seq, ack.leaf_hash));
                            }
                            Err(_) => return,
                        }
                    } else {
                        let batch: Vec<_> = (0..20)
                            .map(|i| {
                                event(json!({
                                    "id": format!("r{round}-w{w}-{n}-{i}"), "tenant": tenant,
                                    "action": "drill.batch", "metadata": {"i": i}
                                }))
                            })
                            .collect();
                        match client.send_batch(&batch).await {
                            Ok(resp) => {
                                let mut acked = acked.lock().unwrap();
                                for item in resp.results {
                                    match item {
                                        BatchItem::Stored(ack) => {
                                            acked.insert(ack.id, (ack.seq, ack.leaf_hash));
                                        }
                                        other => panic!("unexpected rejection {other:?}"),
                                    }
                                }
                            }
                            Err(_) => return,
                        }
                    }
                }
            })
        })
        .collect()
}

pub async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("writers stop once the server is gone")
            .expect("a writer panicked");
    }
}

/// Every acknowledged event is stored with the seq and leaf hash it was acknowledged with,
/// and the tenant's seqs are gapless from 0. Returns the number of stored events.
pub async fn assert_acknowledged_present(client: &Client, tenant: &str, acked: &Acked) -> usize {
    let acked = acked.lock().unwrap().clone();
    let events: Vec<Event> = client
        .search_all(
            &SearchParams::new()
                .tenant(tenant)
                .order(Order::Asc)
                .limit(1000),
        )
        .try_collect()
        .await
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq.unwrap()).collect();
    assert!(
        seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
        "seqs are gapless from 0"
    );
    let stored: HashMap<&str, (u64, &str)> = events
        .iter()
        .map(|e| {
            (
                e.id.as_str(),
                (e.seq.unwrap(), e.leaf_hash.as_deref().unwrap()),
            )
        })
        .collect();
    let mut missing = Vec::new();
    for (id, (seq, leaf)) in &acked {
        match stored.get(id.as_str()) {
            Some(&(s, l)) => assert_eq!((s, l), (*seq, leaf.as_str()), "{id} changed"),
            None => missing.push(id.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    events.len()
}

/// `bitacora verify --data DIR` exits 0 (with the server running or not).
pub fn assert_verify_passes(data: &Path) -> String {
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_remove("BITACORA_DATA")
        .env_remove("BITACORA_DATABASE_URL")
        .args(["verify", "--data"])
        .arg(data)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bitacora verify failed ({:?}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A process's resident memory now and at its peak, in MiB (`VmRSS`, `VmHWM`).
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
