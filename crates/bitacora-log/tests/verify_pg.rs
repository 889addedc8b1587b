//! `verify_tenant` on the PostgreSQL store, tampered with by raw SQL on a stopped store
//! (issue 14, finding 2): every indexed column, the full-text document and the summaries are
//! re-derived from the bodies, as on the embedded store (`log.rs`).

mod common;

use std::time::Duration;

use bitacora_log::{VerifyOptions, VerifyOutcome, checkpoint_tenant, verify_tenant};
use bitacora_store::Store;
use bitacora_store_postgres::testing::TestDatabase;
use bitacora_store_postgres::{PgOptions, PgStore};
use common::*;
use tokio_postgres::NoTls;

const N: u64 = 300;

fn opts() -> VerifyOptions {
    VerifyOptions {
        unsigned_grace: Duration::ZERO,
        ..VerifyOptions::default()
    }
}

async fn open_pg(db: &TestDatabase) -> PgStore {
    PgStore::open(db.url(), PgOptions::default()).await.unwrap()
}

/// A fresh database holding `acme` (300 events) and `other` (36), both signed; then `sql`
/// (with `{tid}` the id of `acme`) run on it while no store is open; then both verified.
/// `None` when PostgreSQL is unreachable outside CI.
async fn verify_after(sql: &str) -> Option<VerifyOutcome> {
    let db = TestDatabase::create().await?;
    {
        let store = open_pg(&db).await;
        let s = signer();
        append(&store, "acme", 0, N).await;
        append(&store, "other", 0, 36).await;
        for t in ["acme", "other"] {
            checkpoint_tenant(&store, &s, &tenant(t), 1).await.unwrap();
        }
        store.close().await.unwrap();
    }
    if !sql.is_empty() {
        let (client, conn) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(conn);
        let tid: i32 = client
            .query_one("SELECT id FROM tenants WHERE name = 'acme'", &[])
            .await
            .unwrap()
            .get(0);
        client
            .batch_execute(&sql.replace("{tid}", &tid.to_string()))
            .await
            .unwrap();
    }
    let store = open_pg(&db).await;
    let report = verify_tenant(&store, &tenant("acme"), &verifiers(), &opts(), |_, _| {})
        .await
        .unwrap();
    let other = verify_tenant(&store, &tenant("other"), &verifiers(), &opts(), |_, _| {})
        .await
        .unwrap();
    assert!(other.is_intact(), "{}", other.summary());
    store.close().await.unwrap();
    println!("{}", report.summary());
    Some(report.outcome)
}

#[tokio::test]
async fn an_intact_log_verifies() {
    let Some(outcome) = verify_after("").await else {
        return;
    };
    assert_eq!(outcome, VerifyOutcome::Intact);
}

/// Seq 41 is a `user.role_change` by actor 6 on user 41, with no IP and no source.
#[tokio::test]
async fn a_changed_index_column_is_named() {
    let row = "WHERE tenant_id = {tid} AND seq = 41";
    let cases = [
        ("action", "SET action = 'user.login'"),
        ("category", "SET category = 'evil'"),
        ("severity", "SET severity = (severity + 1) % 4"),
        ("outcome", "SET outcome = 1 - outcome"),
        ("actor_id", "SET actor_id = 'nobody'"),
        ("actor_search", "SET actor_search = 'nobody'"),
        ("target_type", "SET target_type = 'evil'"),
        ("target_id", "SET target_id = '14'"),
        (
            "ip",
            "SET ip = '\\x00000000000000000000ffff08080808'::bytea",
        ),
        ("source", "SET source = 'evil'"),
        (
            "occurred_at",
            "SET occurred_at = occurred_at - interval '1 day'",
        ),
        (
            "received_at",
            "SET received_at = received_at - interval '1 second'",
        ),
        ("event_id", "SET event_id = 'forged'"),
    ];
    for (column, set) in cases {
        let Some(outcome) = verify_after(&format!("UPDATE events {set} {row}")).await else {
            return;
        };
        match &outcome {
            VerifyOutcome::Tampered { seq, reason } => {
                assert_eq!(*seq, 41, "{column}: {reason}");
                assert!(
                    reason.contains(&format!("indexed column `{column}`")),
                    "{column}: {reason}"
                );
            }
            other => panic!("{column}: expected Tampered, got {other:?}"),
        }
    }
    for (what, set) in [
        (
            "fingerprint",
            "SET fingerprint = '\\x00000000000000000000000000000000'::bytea",
        ),
        // The GIN index is PostgreSQL's, built from this column: emptying it is deleting
        // the event's full-text entry.
        ("full-text index", "SET fts = 'nothing'"),
    ] {
        let Some(outcome) = verify_after(&format!("UPDATE events {set} {row}")).await else {
            return;
        };
        match &outcome {
            VerifyOutcome::Tampered { seq, reason } => {
                assert_eq!(*seq, 41, "{what}: {reason}");
                assert!(reason.contains(what), "{what}: {reason}");
            }
            other => panic!("{what}: expected Tampered, got {other:?}"),
        }
    }
}

fn bad_summary(outcome: &VerifyOutcome) -> (&str, &str, &str) {
    match outcome {
        VerifyOutcome::BadSummary {
            summary,
            key,
            reason,
        } => (summary, key, reason),
        other => panic!("expected BadSummary, got {other:?}"),
    }
}

#[tokio::test]
async fn a_changed_summary_is_named() {
    let Some(outcome) = verify_after(
        "UPDATE action_counts SET count = count - 1
         WHERE tenant_id = {tid} AND action = 'user.role_change'",
    )
    .await
    else {
        return;
    };
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!(summary, "action_counts");
    assert!(key.contains("action=user.role_change"), "{key}");
    assert_eq!(reason, "count is 199, the events give 200");

    let outcome = verify_after(
        "UPDATE actor_stats SET count = count - 1 WHERE tenant_id = {tid} AND actor_id = '3'",
    )
    .await
    .unwrap();
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("actor_stats", "actor_id=3"));
    assert!(reason.starts_with("count is"), "{reason}");

    let outcome = verify_after(
        "UPDATE actor_stats SET name = 'Mallory' WHERE tenant_id = {tid} AND actor_id = '2'",
    )
    .await
    .unwrap();
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("actor_stats", "actor_id=2"));
    assert!(reason.starts_with("name is not"), "{reason}");
}

/// The zone map and the stats rollups (migration 4) are summaries too: a block whose bounds
/// no longer contain its events would hide them from time-window searches, and a rollup row
/// changed or deleted would change the dashboard's numbers; verify names both.
#[tokio::test]
async fn a_changed_zone_map_or_rollup_is_named() {
    let Some(outcome) = verify_after(
        "UPDATE event_blocks SET min_at = min_at + interval '1 second'
         WHERE tenant_id = {tid} AND block = 0",
    )
    .await
    else {
        return;
    };
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("event_blocks", "block=0"));
    assert!(reason.contains("bounds"), "{reason}");

    let outcome = verify_after(
        "UPDATE stats_days SET count = count + 1 WHERE ctid =
             (SELECT min(ctid) FROM stats_days WHERE tenant_id = {tid})",
    )
    .await
    .unwrap();
    let (summary, _, reason) = bad_summary(&outcome);
    assert_eq!(summary, "stats_days");
    assert!(reason.starts_with("count is"), "{reason}");

    let outcome = verify_after(
        "DELETE FROM stats_day_actors WHERE ctid =
             (SELECT min(ctid) FROM stats_day_actors WHERE tenant_id = {tid})",
    )
    .await
    .unwrap();
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!(summary, "stats_day_actors");
    assert!(key.starts_with("day=2026-01-20 actor_id="), "{key}");
    assert!(reason.starts_with("count is missing"), "{reason}");

    // These events carry no address: a row for one is invented.
    let outcome = verify_after(
        "INSERT INTO stats_day_ips (tenant_id, day, ip, count)
         VALUES ({tid}, '2026-01-20', '\\x00000000000000000000ffff0a000001', 5)",
    )
    .await
    .unwrap();
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!(summary, "stats_day_ips");
    assert!(key.starts_with("day=2026-01-20 ip="), "{key}");
    assert_eq!(reason, "count is 5, the events give 0");

    // The hourly rollups are checked the same way.
    let outcome = verify_after(
        "UPDATE stats_hour_actors SET count = count - 1 WHERE ctid =
             (SELECT min(ctid) FROM stats_hour_actors WHERE tenant_id = {tid})",
    )
    .await
    .unwrap();
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!(summary, "stats_hour_actors");
    assert!(key.starts_with("hour=2026-01-20T"), "{key}");
    assert!(reason.starts_with("count is"), "{reason}");
}
