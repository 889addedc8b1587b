//! The process: graceful shutdown on SIGTERM, and durability of acknowledged events across a
//! `kill -9` — both with the real binary and a restart on the same data folder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitacora_client::{Client, SearchParams};
use bitacora_core::api::BatchItem;
use bitacora_core::{Event, Order};
use futures::TryStreamExt as _;
use serde_json::json;

use crate::common::*;

/// id → (seq, leaf_hash) of every acknowledged event.
type Acked = Arc<Mutex<HashMap<String, (u64, String)>>>;

/// Writers that send singles and batches until the server goes away; they record every
/// acknowledgement they receive.
fn start_writers(
    client: &Client,
    tenant: &'static str,
    writers: usize,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked: Acked = Arc::default();
    let handles = (0..writers)
        .map(|w| {
            let client = client.clone();
            let acked = acked.clone();
            tokio::spawn(async move {
                for round in 0usize.. {
                    if round % 2 == 0 {
                        let e = event(json!({"id": format!("w{w}-r{round}"), "tenant": tenant, "action": "crash.single"}));
                        match client.send(&e).await {
                            Ok(ack) => {
                                acked.lock().unwrap().insert(ack.id, (ack.seq, ack.leaf_hash));
                            }
                            Err(_) => return,
                        }
                    } else {
                        let batch: Vec<_> = (0..20)
                            .map(|i| event(json!({"id": format!("w{w}-r{round}-{i}"), "tenant": tenant, "action": "crash.batch"})))
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
        .collect();
    (acked, handles)
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("writers stop once the server is gone")
            .expect("writer panicked");
    }
}

/// Every acknowledged event is present with its seq and leaf hash, and the tenant's seqs are
/// gapless from 0.
async fn assert_all_acknowledged_present(client: &Client, tenant: &str, acked: &Acked) {
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged before the stop"
    );
    eprintln!(
        "{tenant}: {} events acknowledged before the stop",
        acked.len()
    );
    let events: Vec<Event> = client
        .search_all(&SearchParams::new().tenant(tenant).order(Order::Asc))
        .try_collect()
        .await
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq.unwrap()).collect();
    let expected: Vec<u64> = (0..events.len() as u64).collect();
    assert_eq!(seqs, expected, "seqs are gapless from 0");
    eprintln!("{tenant}: {} events stored after the restart", events.len());
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
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Spot-check through GET /v1/events/{id} as well.
    for (id, (seq, leaf)) in acked.iter().take(20) {
        let e = client.event(id, Some(tenant)).await.unwrap();
        assert_eq!(
            (e.seq, e.leaf_hash.as_deref()),
            (Some(*seq), Some(leaf.as_str()))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    let mut app = spawn_binary(&dir).await;
    assert!(
        app.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("/docs")),
        "serve prints the URLs to open"
    );
    let key = std::fs::read_to_string(dir.join("initial-admin-key")).unwrap();
    assert!(
        app.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.trim() == key.trim()),
        "serve prints the initial admin key on an empty store"
    );
    let (acked, writers) = start_writers(&app.client, "graceful", 6);
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.terminate();
    join_all(writers).await;
    let status = app.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );

    let app = spawn_binary(&dir).await;
    assert_all_acknowledged_present(&app.client, "graceful", &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    let mut app = spawn_binary(&dir).await;
    let (acked, writers) = start_writers(&app.client, "crash", 8);
    tokio::time::sleep(Duration::from_millis(700)).await;
    app.child.kill().unwrap(); // SIGKILL, mid-flight
    join_all(writers).await;
    let _ = app.child.wait();
    drop(app);

    let app = spawn_binary(&dir).await;
    assert_all_acknowledged_present(&app.client, "crash", &acked).await;
    // The log goes on from where it was.
    let next = app
        .client
        .send(&event(json!({"tenant": "crash", "action": "after"})))
        .await
        .unwrap();
    let size = app
        .client
        .search(&SearchParams::new().tenant("crash").page(1).per_page(1))
        .await
        .unwrap()
        .total
        .unwrap();
    assert_eq!(next.seq + 1, size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_also_stops_gracefully_and_the_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    let dir = data_folder(root.path());
    let mut app = spawn_binary(&dir).await;
    let mode = std::fs::metadata(dir.join("initial-admin-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "initial-admin-key is readable by its owner alone"
    );
    app.client
        .send(&event(json!({"id": "before-int", "action": "x"})))
        .await
        .unwrap();
    nix::sys::signal::kill(app.pid(), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = app.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status:?}");

    // A restart on a store that has keys creates no new admin key and keeps the events.
    let app = spawn_binary(&dir).await;
    assert!(app.client.event("before-int", None).await.is_ok());
    let stdout = app.stdout.lock().unwrap().join("\n");
    assert!(
        !stdout.contains("bk_"),
        "no key is printed on a restart: {stdout}"
    );
}
