//! Shared fixtures: a real SQLite store in a temp dir, filled with events.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitacora_core::checkpoint::{NoteSigner, NoteVerifier};
use bitacora_core::event::timestamp;
use bitacora_core::{EventInput, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_store::Store;
use bitacora_store_sqlite::{SqliteOptions, SqliteStore};

pub fn signer() -> NoteSigner {
    NoteSigner::from_seed("bitacora", [42; 32]).unwrap()
}

pub fn verifiers() -> Vec<NoteVerifier> {
    vec![signer().verifier()]
}

pub fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

pub fn open(dir: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir, SqliteOptions::default()).unwrap())
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("bitacora.db")
}

pub fn event(tenant: &str, i: u64) -> SealedEvent {
    let json = serde_json::json!({
        "id": format!("{tenant}-{i}"),
        "tenant": tenant,
        "action": if i.is_multiple_of(3) { "user.login" } else { "user.role_change" },
        "occurred_at": "2026-01-20T10:30:00Z",
        "actor": {"id": format!("{}", i % 7), "name": "Juan Pérez"},
        "target": {"type": "user", "id": format!("{i}")},
        "changes": [{"field": "role", "old": "user", "new": "admin"}],
        "description": format!("evento número {i}"),
        "metadata": {"n": i, "ratio": 2.5, "tiny": 1e-7, "big": 1.5e22, "flag": true, "none": null}
    });
    let input = EventInput::from_json(json.to_string().as_bytes()).unwrap();
    SealedEvent::prepare(
        input,
        &IngestPolicy::default(),
        &IngestContext {
            pinned_tenant: None,
            received_at: timestamp::parse("2026-01-20T10:30:01Z").unwrap(),
            client_ip: None,
            allow_reserved: false,
        },
    )
    .unwrap()
}

/// Appends events `from..to` to `tenant`.
pub async fn append(store: &dyn Store, tenant: &str, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let end = (i + 5000).min(to);
        let batch: Vec<_> = (i..end).map(|j| event(tenant, j)).collect();
        store.append(batch).await.unwrap();
        i = end;
    }
}
