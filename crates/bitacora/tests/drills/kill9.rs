//! `kill -9` during sustained ingest, several times on the same data folder (3 here; the
//! script `drills/kill9` does it 20 times): after every restart each acknowledged event is there with
//! its seq and leaf hash, the log is gapless, and `bitacora verify` passes.

use std::time::Duration;

use serde_json::json;

use crate::common::{data_folder, event};
use crate::support::*;

const TENANT: &str = "drill-kill9";

/// Kills per run: 3 in the test suite, `BITACORA_DRILL_KILLS` (the script sets 20) otherwise.
fn kills() -> usize {
    std::env::var("BITACORA_DRILL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// After a restart the server signs what the crash left unsigned (up to a second of events;
/// `verify` on the crashed store itself reports them as "not signed yet": the writer sealed
/// them, so they are never an unexplained tail); then `verify` passes.
async fn signed_and_verified(app: &crate::common::BinaryApp, stored: usize) {
    crate::common::eventually("the restarted server signs the whole log", || async {
        match app.client.checkpoint(Some(TENANT)).await {
            Ok(note) if note.lines().nth(1) == Some(stored.to_string().as_str()) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_verify_passes(&app.data);
}

/// What the crash left unsigned was sealed by the writer in the same transactions: `verify`
/// says "not signed yet" (or intact), never "unexplained tail".
fn assert_crash_tail_sealed(data: &std::path::Path) {
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_remove("BITACORA_DATA")
        .env_remove("BITACORA_DATABASE_URL")
        .args(["verify", "--data"])
        .arg(data)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() || stdout.contains("NOT SIGNED YET"),
        "after a kill -9: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("UNEXPLAINED"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_repeated_kill_9_and_verify_passes() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    let acked = Acked::default();
    for round in 0..kills() {
        let mut app = spawn_with(&dir, &[]).await;
        if round > 0 {
            let stored = assert_acknowledged_present(&app.client, TENANT, &acked).await;
            signed_and_verified(&app, stored).await;
        }
        let before = acked.lock().unwrap().len();
        let writers = start_writers(&app.client, TENANT, round, 8, &acked);
        // Vary where in the write path the kill lands.
        tokio::time::sleep(Duration::from_millis(400 + 170 * (round % 6) as u64)).await;
        app.child.kill().unwrap(); // SIGKILL
        join_all(writers).await;
        let _ = app.child.wait();
        drop(app);
        assert_crash_tail_sealed(&dir);
        let now = acked.lock().unwrap().len();
        assert!(
            now > before,
            "round {round}: nothing was acknowledged before the kill"
        );
        eprintln!("kill {round}: {} events acknowledged in total", now);
    }
    let app = spawn_with(&dir, &[]).await;
    let stored = assert_acknowledged_present(&app.client, TENANT, &acked).await;
    signed_and_verified(&app, stored).await;
    // The log goes on where it stopped.
    let next = app
        .client
        .send(&event(json!({"tenant": TENANT, "action": "drill.after"})))
        .await
        .unwrap();
    assert_eq!(next.seq, stored as u64);
    assert_verify_passes(&dir);
}
