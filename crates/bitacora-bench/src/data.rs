//! Realistic generated events (the seeds' scenarios) and the raw-SQLite baseline.

use std::path::Path;
use std::time::{Duration, Instant};

use bitacora_core::canonical::SealedEvent;
use rusqlite::params;

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

const ACTIONS: &[&str] = &[
    "user.login",
    "user.login_failed",
    "user.logout",
    "user.role_change",
    "device.create",
    "device.disable",
    "credential.update",
    "BAN_USER",
];

/// The `i`-th generated event: about 400 bytes of JSON, with 200 actors, 50,000 targets and
/// 1,000 client addresses.
pub fn event_json(i: usize) -> String {
    let action = ACTIONS[i % ACTIONS.len()];
    let actor = i % 200;
    let target = (i * 7919) % 50_000;
    serde_json::json!({
        "id": format!("evt-{i:012}"),
        "occurred_at": format!("2026-01-{:02}T{:02}:{:02}:00Z", 1 + (i / 40_000) % 28, (i / 60) % 24, i % 60),
        "action": action,
        "severity": SEVERITIES[i % 4],
        "outcome": if i.is_multiple_of(10) { "failure" } else { "success" },
        "actor": {"id": actor.to_string(), "name": format!("Usuario {actor}"), "email": format!("u{actor}@example.com")},
        "target": {"type": "user", "id": target.to_string(), "name": format!("Cuenta {target}")},
        "changes": [{"field": "role", "label": "Rol", "old": "user", "new": "admin"}],
        "description": format!("Acción {action} registrada por auditoría {i}"),
        "context": {"ip": format!("10.{}.{}.{}", i % 4, (i / 4) % 250, i % 250), "user_agent": "Mozilla/5.0", "source": "admin_panel"},
        "metadata": {"reason": "Solicitud administrativa manual", "n": i}
    })
    .to_string()
}

/// Inserts the same rows into a database with the store's schema, in transactions of `batch`
/// rows: what a careful hand-written SQLite audit table would do.
pub fn raw_insert(path: &Path, events: &[SealedEvent], batch: usize) -> anyhow::Result<Duration> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;
         CREATE TABLE events (
            pos INTEGER PRIMARY KEY, event_id TEXT NOT NULL, occurred_at INTEGER NOT NULL,
            action INTEGER NOT NULL, category INTEGER NOT NULL, severity INTEGER NOT NULL,
            outcome INTEGER NOT NULL, actor_id TEXT, actor_search TEXT, target_type INTEGER,
            target_id TEXT, ip BLOB, source INTEGER, fingerprint BLOB NOT NULL,
            leaf_hash BLOB NOT NULL, body TEXT NOT NULL);
         CREATE INDEX events_event_id ON events (event_id);
         CREATE INDEX events_action ON events (action);
         CREATE INDEX events_actor ON events (actor_id) WHERE actor_id IS NOT NULL;
         CREATE INDEX events_target ON events (target_id, target_type) WHERE target_id IS NOT NULL;
         CREATE INDEX events_occurred ON events (occurred_at);",
    )?;
    let started = Instant::now();
    for (b, chunk) in events.chunks(batch).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            for (i, s) in chunk.iter().enumerate() {
                let e = &s.event;
                let seq = (b * batch + i) as i64;
                stmt.execute(params![
                    (1i64 << 40) | seq,
                    e.id,
                    e.occurred_at.timestamp_micros(),
                    (seq % 8) + 1,
                    (seq % 4) + 1,
                    e.severity.rank(),
                    e.outcome.rank(),
                    e.actor.as_ref().and_then(|a| a.id.as_deref()),
                    e.actor.as_ref().and_then(|a| a.name.as_deref()),
                    1,
                    e.target.as_ref().and_then(|t| t.id.as_deref()),
                    e.context.ip.as_deref().map(str::as_bytes),
                    2,
                    &s.fingerprint[..],
                    &s.leaf_hash[..],
                    s.body,
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}
