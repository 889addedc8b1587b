//! PostgreSQL restarted during sustained ingest: requests in the gap get `503` (never a 500,
//! never an acknowledgement for something not committed), ingest recovers by itself without
//! restarting bitacora, nothing acknowledged is lost, and `bitacora verify` passes.
//!
//! Ignored by default (it needs the PostgreSQL store and a database it may restart):
//! `drills/pg-restart --database-url URL` runs it with
//! `BITACORA_DRILL_DATABASE_URL` and `BITACORA_DRILL_PG_RESTART` (the restart command,
//! default `pg_ctlcluster <version> main restart`).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::PATIENCE;
use crate::support::*;

const TENANT: &str = "drill-pg";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the PostgreSQL store and a restartable database: drills/pg-restart"]
async fn postgres_restart_during_ingest_loses_nothing_acknowledged() {
    let url = std::env::var("BITACORA_DRILL_DATABASE_URL")
        .expect("set BITACORA_DRILL_DATABASE_URL (drills/pg-restart does)");
    let restart = std::env::var("BITACORA_DRILL_PG_RESTART").unwrap_or_else(|_| {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_else(|| "15".into());
        format!("pg_ctlcluster {version} main restart")
    });
    let restarts: usize = std::env::var("BITACORA_DRILL_PG_RESTARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
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
    let app = spawn_on(&store, root.path(), key_file, &[]).await;

    let acked = Acked::default();
    for round in 0..restarts {
        let writers = start_writers_retrying(&app.client, TENANT, round, 8, &acked);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let status = Command::new("sh").arg("-c").arg(&restart).status().unwrap();
        assert!(status.success(), "`{restart}` failed");
        // bitacora recovers by itself: a write succeeds again within PATIENCE.
        let deadline = Instant::now() + PATIENCE * 3;
        loop {
            if app.client.readyz().await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bitacora did not recover after the restart"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        for w in &writers.1 {
            w.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        join_all(writers.0).await;
        assert_acknowledged_present(&app.client, TENANT, &acked).await;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .args(["verify", "--tenant", TENANT, "--database-url", &url])
        .arg("--signing-key-file")
        .arg(&signing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
