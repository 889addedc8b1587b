//! Commit seals and the checkpointer (issue 14, finding 3), on a real SQLite store: the
//! checkpointer of a store with a commit key signs only what a seal explains.

mod common;

use std::time::Duration;

use bitacora_log::{
    Signing, VerifyOptions, VerifyOutcome, checkpoint_tenant_checked, verify_tenant,
};
use bitacora_store::Store;
use common::*;
use rusqlite::{Connection, params};

/// Appends a copy of the tenant's last row as a new event (correct leaf hash, size bumped),
/// as someone editing the database file would.
fn forge_row(dir: &std::path::Path, t: &str) -> u64 {
    let db = Connection::open(db_path(dir)).unwrap();
    let (tid, size): (i64, i64) = db
        .query_row("SELECT id, size FROM tenants WHERE name = ?1", [t], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let last = (tid << 40) | (size - 1);
    let body: String = db
        .query_row("SELECT body FROM events WHERE pos = ?1", [last], |r| {
            r.get(0)
        })
        .unwrap();
    let from = format!("\"id\":\"{t}-{}\"", size - 1);
    assert!(body.contains(&from), "{body}");
    let forged = body.replace(&from, "\"id\":\"forged\"");
    let leaf = bitacora_core::canonical::leaf_hash(forged.as_bytes());
    // Every column consistent with the forged body (what `verify` re-derives), fingerprint
    // included: only the seal can tell this row was not written by bitacora.
    let fingerprint = bitacora_store::check::fingerprint_of(
        &bitacora_store::check::parse_body(forged.as_bytes()).unwrap(),
    );
    db.execute(
        "INSERT INTO events (pos, event_id, occurred_at, action, category, severity, outcome,
            actor_id, actor_search, target_type, target_id, ip, source, fingerprint, leaf_hash,
            body)
         SELECT ?2, 'forged', occurred_at, action, category, severity, outcome, actor_id,
            actor_search, target_type, target_id, ip, source, ?5, ?3, ?4
         FROM events WHERE pos = ?1",
        params![last, last + 1, &leaf[..], forged, &fingerprint[..]],
    )
    .unwrap();
    db.execute("UPDATE tenants SET size = size + 1 WHERE id = ?1", [tid])
        .unwrap();
    size as u64
}

async fn sign(store: &dyn Store, t: &str) -> Signing {
    checkpoint_tenant_checked(store, &signer(), &tenant(t), 1)
        .await
        .unwrap()
}

fn keyed(dir: &std::path::Path) -> std::sync::Arc<bitacora_store_sqlite::SqliteStore> {
    let store = open(dir);
    store.set_commit_key(Some(signer().commit_key()));
    store
}

#[tokio::test]
async fn a_forged_row_is_never_signed_even_after_the_writer_appends_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyed(dir.path());
    append(&*store, "acme", 0, 20).await;
    assert!(matches!(sign(&*store, "acme").await, Signing::Signed(cp) if cp.size == 20));
    store.close().await.unwrap();

    assert_eq!(forge_row(dir.path(), "acme"), 20);
    let store = keyed(dir.path());
    let Signing::Unexplained(tail) = sign(&*store, "acme").await else {
        panic!("the forged row was signed");
    };
    assert_eq!(
        (tail.first_seq, tail.log_size, tail.signed_size),
        (20, 21, 20)
    );

    // The writer finds a log its seal does not describe: it vouches only for what it writes,
    // which does not cover seq 20.
    append(&*store, "acme", 100, 103).await;
    let Signing::Unexplained(tail) = sign(&*store, "acme").await else {
        panic!("the forged row was signed once the writer appended past it");
    };
    assert_eq!((tail.first_seq, tail.log_size), (20, 24));
    assert_eq!(
        store
            .latest_checkpoint(&tenant("acme"))
            .await
            .unwrap()
            .unwrap()
            .size,
        20
    );

    let report = verify_tenant(
        &*store,
        &tenant("acme"),
        &verifiers(),
        &VerifyOptions {
            commit_key: Some(signer().commit_key()),
            unsigned_grace: Duration::ZERO,
            ..VerifyOptions::default()
        },
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(
        matches!(&report.outcome, VerifyOutcome::Unexplained { seq: 20, .. }),
        "{report:?}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_sealed_tail_is_signed_after_a_restart_and_a_legacy_store_keeps_signing() {
    let dir = tempfile::tempdir().unwrap();
    // A store written without seals (before they existed), signed up to its end.
    let store = open(dir.path());
    append(&*store, "acme", 0, 10).await;
    assert!(matches!(sign(&*store, "acme").await, Signing::Signed(_)));
    store.close().await.unwrap();

    // With a key: the first sealed commit starts its chain at the signed size.
    let store = keyed(dir.path());
    append(&*store, "acme", 10, 15).await;
    // A crash before signing: the sealed tail waits in the store.
    store.close().await.unwrap();
    let store = keyed(dir.path());
    let report = verify_tenant(
        &*store,
        &tenant("acme"),
        &verifiers(),
        &VerifyOptions {
            commit_key: Some(signer().commit_key()),
            unsigned_grace: Duration::ZERO,
            ..VerifyOptions::default()
        },
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(
        matches!(&report.outcome, VerifyOutcome::Unsigned { seq: 10, .. }),
        "{report:?}"
    );
    assert!(matches!(sign(&*store, "acme").await, Signing::Signed(cp) if cp.size == 15));
    // A fresh tenant's chain starts at 0.
    append(&*store, "fresh", 0, 3).await;
    assert!(matches!(sign(&*store, "fresh").await, Signing::Signed(cp) if cp.size == 3));
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_legacy_unsigned_tail_or_a_wrong_key_is_unexplained() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&*store, "acme", 0, 10).await;
    assert!(matches!(sign(&*store, "acme").await, Signing::Signed(_)));
    // Written by a bitacora without seals, never signed.
    append(&*store, "acme", 10, 12).await;
    store.close().await.unwrap();
    let store = keyed(dir.path());
    assert!(matches!(sign(&*store, "acme").await, Signing::Unexplained(t) if t.first_seq == 10));
    store.close().await.unwrap();

    // Seals made with another key explain nothing.
    let other = tempfile::tempdir().unwrap();
    let store = open(other.path());
    store.set_commit_key(Some(bitacora_core::seal::CommitKey::from_bytes([9; 32])));
    append(&*store, "acme", 0, 4).await;
    store.set_commit_key(Some(signer().commit_key()));
    assert!(matches!(sign(&*store, "acme").await, Signing::Unexplained(t) if t.first_seq == 0));
    store.close().await.unwrap();
}
