//! Retention by whole partitions on the real PostgreSQL (docs/LIFECYCLE.md): a month whose
//! every event has expired is archived, then detached and dropped; a month holding an event
//! under legal hold is purged row by row instead. After the drop the partition is gone from
//! the catalog, `verify` passes, proofs on both sides of it and a consistency proof across it
//! verify, and the summaries equal a full scan.
//!
//! Skipped (saying so) without PostgreSQL, except under `CI`, where it fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bitacora_core::TenantName;
use bitacora_core::canonical::Hash;
use bitacora_core::checkpoint::NoteSigner;
use bitacora_core::merkle;
use bitacora_lifecycle::{Archive, Retention, RetentionConfig};
use bitacora_log::{BundleOptions, VerifyOptions, VerifyOutcome, checkpoint_tenant, verify_tenant};
use bitacora_store::conformance::{seal, timed_events};
use bitacora_store::{LegalHoldRecord, Store};
use bitacora_store_postgres::testing::TestDatabase;
use bitacora_store_postgres::{PgOptions, PgStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn signer() -> NoteSigner {
    NoteSigner::from_seed("bitacora", [9; 32]).unwrap()
}

fn t(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

async fn leaves(store: &dyn Store, tenant: &TenantName) -> Vec<Hash> {
    let size = store.log_size(tenant).await.unwrap();
    let mut out = Vec::new();
    for seq in 0..size {
        out.push(
            store
                .event_by_seq(tenant, seq)
                .await
                .unwrap()
                .unwrap()
                .leaf_hash,
        );
    }
    out
}

async fn catalog(db: &TestDatabase) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            "SELECT c.relname::text FROM pg_class c WHERE c.relname LIKE 'events_20%'
             AND c.relkind IN ('r', 'p') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_month_is_archived_then_dropped_and_the_log_stays_provable() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(
        PgStore::open(db.url(), PgOptions::default())
            .await
            .expect("open the store"),
    );
    let (default, acme) = (t("default"), t("acme"));
    // November 2025: 250 events of `default` and 81 of `acme`, all to expire. December 2025:
    // 60 of `default`, one of which a legal hold keeps. Then a few recent ones.
    store
        .append(timed_events("default", 250, "2025-11-02T00:00:00Z", 3600))
        .await
        .unwrap();
    store
        .append(timed_events("acme", 80, "2025-11-03T00:00:00Z", 7200))
        .await
        .unwrap();
    store
        .append(timed_events("default", 60, "2025-12-05T00:00:00Z", 3600))
        .await
        .unwrap();
    // An actor whose email only a November event carries (`acme`'s seq 80); its latest
    // event (seq 81, recent, kept) has none: after the drop the actor is known without one.
    store
        .append(vec![seal(
            json!({"tenant": "acme", "action": "user.login",
                   "occurred_at": "2025-11-20T00:00:00Z",
                   "actor": {"id": "mailer", "email": "m@old.example"}}),
            "2025-11-20T00:00:02Z",
        )])
        .await
        .unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    store
        .append(timed_events("default", 5, &now, 1))
        .await
        .unwrap();
    store
        .append(vec![seal(
            json!({"tenant": "acme", "action": "user.login", "actor": {"id": "mailer"}}),
            &now,
        )])
        .await
        .unwrap();
    for tenant in [&default, &acme] {
        checkpoint_tenant(store.as_ref(), &signer(), tenant, 1)
            .await
            .unwrap();
    }
    let before: HashMap<TenantName, Vec<Hash>> = HashMap::from([
        (default.clone(), leaves(store.as_ref(), &default).await),
        (acme.clone(), leaves(store.as_ref(), &acme).await),
    ]);
    let first_acme_id = id_of(store.as_ref(), &acme, 0).await;
    // The hold covers one December event: `default`'s seq 250 is its first (actor u0).
    let december_first = store.event_by_seq(&default, 250).await.unwrap().unwrap();
    store
        .insert_legal_hold(&LegalHoldRecord {
            id: "h1".into(),
            tenant: default.clone(),
            name: "h1".into(),
            reason: "litigation".into(),
            filter: r#"{"since":"2025-12-05T00:00:00Z","until":"2025-12-05T00:00:03Z"}"#.into(),
            created_at: 1,
            created_by: "test".into(),
            released_at: None,
            released_by: None,
        })
        .await
        .unwrap();
    let tables = catalog(&db).await;
    assert!(tables.contains(&"events_2025_11".to_owned()), "{tables:?}");
    assert!(tables.contains(&"events_2025_12".to_owned()), "{tables:?}");

    let dir = tempfile::tempdir().unwrap();
    let config: RetentionConfig =
        toml::from_str("default = \"30d\"\nmin_delay = \"0s\"\nbatch_size = 100\n").unwrap();
    config.validate().unwrap();
    let retention = Retention {
        store: store.clone(),
        config,
        archive: Archive::open(&format!("file://{}", dir.path().display())).unwrap(),
        bundle: BundleOptions::new(Arc::new(signer()), vec![signer().verifier()]),
        policy: Arc::new(bitacora_core::IngestPolicy::default()),
    };
    // A dry run names November as a whole-partition drop with its 331 events, and previews
    // only December's rows as row-by-row purges; it changes nothing.
    let dry = pass_now(&retention, true).await;
    assert_eq!(dry.dropped_partitions, ["events_2025_11"], "{dry:?}");
    assert_eq!(dry.partition_events, [250 + 81], "{dry:?}");
    assert_eq!(dry.purged(), 59, "{dry:?}");
    assert_eq!(dry.held, 1, "{dry:?}");
    assert!(catalog(&db).await.contains(&"events_2025_11".to_owned()));
    assert!(store.purges(&default).await.unwrap().is_empty());

    let report = pass_now(&retention, false).await;

    // November went whole; December row by row, but for the held event.
    assert_eq!(report.dropped_partitions, ["events_2025_11"], "{report:?}");
    let tables = catalog(&db).await;
    assert!(!tables.contains(&"events_2025_11".to_owned()), "{tables:?}");
    assert!(tables.contains(&"events_2025_12".to_owned()), "{tables:?}");
    assert_eq!(report.held, 1, "{report:?}");
    assert_eq!(report.purged(), 250 + 81 + 59, "{report:?}");
    let purged = |tenant: &TenantName| {
        let store = store.clone();
        let tenant = tenant.clone();
        async move {
            store
                .purges(&tenant)
                .await
                .unwrap()
                .iter()
                .map(|p| p.count)
                .sum::<u64>()
        }
    };
    assert_eq!(purged(&default).await, 250 + 59);
    assert_eq!(purged(&acme).await, 81);
    // Batches of at most 100: 3 for default's November, 1 for acme's, 1 for December.
    assert_eq!(r_count(&retention, "default").await, 4);
    assert_eq!(r_count(&retention, "acme").await, 1);
    // Each archived object is a verifiable bundle.
    let mut archived = 0;
    for o in retention.archive.list(None).await.unwrap() {
        let compressed = retention.archive.get(&o.name).await.unwrap();
        let text = zstd::decode_all(&compressed[..]).unwrap();
        archived += bitacora_log::verify_bundle(&text[..], Some(&[signer().verifier()]))
            .unwrap()
            .events;
    }
    assert_eq!(archived, 250 + 81 + 59);

    // What remains: the held December event, the recent ones, the announcements.
    assert!(store.event_by_seq(&default, 0).await.unwrap().is_none());
    assert_eq!(
        store
            .event_by_seq(&default, 250)
            .await
            .unwrap()
            .map(|e| e.leaf_hash),
        Some(december_first.leaf_hash)
    );

    // The log is the same log: verify, summaries, proofs on both sides, consistency.
    for tenant in [&default, &acme] {
        let latest = signed_and_verified(store.as_ref(), tenant, tenant.as_str()).await;
        let old = &before[tenant];
        let old_size = old.len() as u64;
        let old_root = merkle::root_from_leaves(old);
        let size = latest.size;
        let mut seqs = vec![0, old_size / 2, old_size - 1, size - 1];
        if tenant == &default {
            seqs.push(250);
        }
        for seq in seqs {
            let leaf = match old.get(seq as usize) {
                Some(l) => *l,
                None => {
                    store
                        .event_by_seq(tenant, seq)
                        .await
                        .unwrap()
                        .unwrap()
                        .leaf_hash
                }
            };
            let proof = bitacora_log::inclusion_proof(store.as_ref(), tenant, seq, size)
                .await
                .unwrap();
            merkle::verify_inclusion(&leaf, seq, size, &proof.hashes, &latest.root)
                .unwrap_or_else(|e| panic!("{tenant} seq {seq}: {e}"));
        }
        let consistency = bitacora_log::consistency_proof(store.as_ref(), tenant, old_size, size)
            .await
            .unwrap();
        merkle::verify_consistency(old_size, size, &consistency.hashes, &old_root, &latest.root)
            .unwrap();
    }
    // The email only the dropped month carried is gone from the actor's summary.
    let actors = store.actors(&acme, 100).await.unwrap();
    let mailer = actors.iter().find(|a| a.id == "mailer").expect("mailer");
    assert_eq!(
        (mailer.count, mailer.email.as_deref()),
        (1, None),
        "{mailer:?}"
    );
    // A purged event from the dropped month is still known by id, with its seq and leaf hash.
    assert_eq!(
        store.purged_event(&acme, &first_acme_id).await.unwrap(),
        Some((0, before[&acme][0]))
    );

    // Appending still works, and a second pass finds nothing more to do.
    store
        .append(timed_events("acme", 2, &chrono::Utc::now().to_rfc3339(), 1))
        .await
        .unwrap();
    let again = pass_now(&retention, false).await;
    assert_eq!(again.purged(), 0, "{again:?}");
    store.close().await.unwrap();
}

/// How many archived objects a tenant has.
async fn r_count(r: &Retention, tenant: &str) -> usize {
    r.archive.list(Some(tenant)).await.unwrap().len()
}

/// The id of the event at `seq`.
async fn id_of(store: &dyn Store, tenant: &TenantName, seq: u64) -> String {
    let e = store.event_by_seq(tenant, seq).await.unwrap().unwrap();
    serde_json::from_str::<bitacora_core::Event>(&e.body)
        .unwrap()
        .id
}

/// The child half of the staging crash test: one pass over the database named by
/// `BITACORA_PARTITION_CRASH_URL`, in batches of `BITACORA_PARTITION_CRASH_BATCH` (50), with
/// `BITACORA_STORE_CRASH_AT` set by the parent: `staged` (the store aborts the process once
/// the partition's leaf hashes are staged, before the drop's transaction) or `staging` (once
/// the first announced group is staged, while the rest is still being archived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_crash_child() {
    let (Ok(url), Ok(dir)) = (
        std::env::var("BITACORA_PARTITION_CRASH_URL"),
        std::env::var("BITACORA_PARTITION_CRASH_ARCHIVE"),
    ) else {
        return; // Run by the parent only.
    };
    let batch = std::env::var("BITACORA_PARTITION_CRASH_BATCH")
        .map_or(50, |b| b.parse().expect("a batch size"));
    let store: Arc<dyn Store> = Arc::new(PgStore::open(&url, PgOptions::default()).await.unwrap());
    pass_now(
        &crash_retention(store, std::path::Path::new(&dir), batch),
        false,
    )
    .await;
    panic!("the pass should have aborted the process");
}

/// A crash after the drop has copied the partition's leaf hashes to `purged_events` and
/// before its transaction: each seq is then in both tables. Proofs, `verify` and the
/// summaries are as before the pass; the next pass drops the month (the copies are taken
/// over by its new purges), or, when a hold placed meanwhile keeps one of its events, purges
/// the rest row by row over the copies (which once failed on `purged_events`'s key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_staging_and_the_drop_leaves_the_log_provable() {
    crash_while_dropping("staged", 50, 250).await;
}

/// A crash while the partition is still being archived, its first announced group (8
/// batches of 10) already staged: the same promise, and the next pass drops the month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_archiving_and_staging_overlap_leaves_the_log_provable() {
    crash_while_dropping("staging", 10, 80).await;
}

/// A pass over 250 expired events of November 2025 in batches of `batch`, aborted at the
/// store's crash point `at` with `copies` leaf hashes staged; then a pass that retries the
/// drop and, in a second database, one after a hold is placed on one of them.
async fn crash_while_dropping(at: &str, batch: u32, copies: i64) {
    for then in ["retry", "hold"] {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store: Arc<dyn Store> = Arc::new(
            PgStore::open(db.url(), PgOptions::default())
                .await
                .expect("open the store"),
        );
        let default = t("default");
        store
            .append(timed_events("default", 250, "2025-11-02T00:00:00Z", 3600))
            .await
            .unwrap();
        store
            .append(timed_events(
                "default",
                5,
                &chrono::Utc::now().to_rfc3339(),
                1,
            ))
            .await
            .unwrap();
        checkpoint_tenant(store.as_ref(), &signer(), &default, 1)
            .await
            .unwrap();
        let before = leaves(store.as_ref(), &default).await;
        let first_id = id_of(store.as_ref(), &default, 0).await;
        let dir = tempfile::tempdir().unwrap();

        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "partition_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BITACORA_PARTITION_CRASH_URL", db.url())
            .env("BITACORA_PARTITION_CRASH_ARCHIVE", dir.path())
            .env("BITACORA_PARTITION_CRASH_BATCH", batch.to_string())
            .env("BITACORA_STORE_CRASH_AT", at)
            .status()
            .unwrap();
        assert!(!status.success(), "{then}: the child should have aborted");

        // The month is still there, every leaf hash is also in `purged_events`, no purge is
        // recorded, and the log is exactly the log it was.
        assert!(catalog(&db).await.contains(&"events_2025_11".to_owned()));
        assert_eq!(staged(&db).await, copies, "{then}");
        assert!(store.purges(&default).await.unwrap().is_empty(), "{then}");
        assert_eq!(store.purged_event(&default, &first_id).await.unwrap(), None);
        assert_eq!(leaves(store.as_ref(), &default).await[..250], before[..250]);
        provable(store.as_ref(), &default, &before, then).await;

        if then == "hold" {
            // Event 10 (2025-11-02T10:00:00Z) is held: the month now goes row by row.
            store
                .insert_legal_hold(&LegalHoldRecord {
                    id: "h1".into(),
                    tenant: default.clone(),
                    name: "h1".into(),
                    reason: "litigation".into(),
                    filter: r#"{"since":"2025-11-02T10:00:00Z","until":"2025-11-02T10:00:01Z"}"#
                        .into(),
                    created_at: 1,
                    created_by: "test".into(),
                    released_at: None,
                    released_by: None,
                })
                .await
                .unwrap();
        }
        let report = pass_now(&crash_retention(store.clone(), dir.path(), batch), false).await;
        if then == "retry" {
            assert_eq!(report.dropped_partitions, ["events_2025_11"], "{report:?}");
            assert_eq!(report.purged(), 250, "{report:?}");
            assert!(!catalog(&db).await.contains(&"events_2025_11".to_owned()));
        } else {
            assert!(report.dropped_partitions.is_empty(), "{report:?}");
            assert_eq!((report.purged(), report.held), (249, 1), "{report:?}");
            assert_eq!(
                store
                    .event_by_seq(&default, 10)
                    .await
                    .unwrap()
                    .map(|e| e.leaf_hash),
                Some(before[10])
            );
        }
        // Every seq still has its one leaf hash (the held event's copy, staged in both
        // cases, stays unrecorded).
        assert_eq!(staged(&db).await, 250, "{then}");
        let purged: u64 = store
            .purges(&default)
            .await
            .unwrap()
            .iter()
            .map(|p| p.count)
            .sum();
        assert_eq!(purged, if then == "retry" { 250 } else { 249 });
        assert_eq!(
            store.purged_event(&default, &first_id).await.unwrap(),
            Some((0, before[0]))
        );
        provable(store.as_ref(), &default, &before, then).await;
        store.close().await.unwrap();
    }
}

/// The retention of the staging crash tests: 30 days, archives of `batch` events in `dir`.
fn crash_retention(store: Arc<dyn Store>, dir: &std::path::Path, batch: u32) -> Retention {
    let config: RetentionConfig = toml::from_str(&format!(
        "default = \"30d\"\nmin_delay = \"0s\"\nbatch_size = {batch}\n"
    ))
    .unwrap();
    Retention {
        store,
        config,
        archive: Archive::open(&format!("file://{}", dir.display())).unwrap(),
        bundle: BundleOptions::new(Arc::new(signer()), vec![signer().verifier()]),
        policy: Arc::new(bitacora_core::IngestPolicy::default()),
    }
}

/// Rows in `purged_events`, recorded or not.
async fn staged(db: &TestDatabase) -> i64 {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one("SELECT count(*) FROM purged_events", &[])
        .await
        .unwrap()
        .get(0)
}

/// One retention pass now (`dry_run` or not), over every tenant.
async fn pass_now(retention: &Retention, dry_run: bool) -> bitacora_lifecycle::PassReport {
    retention
        .pass(
            chrono::Utc::now().timestamp_micros(),
            dry_run,
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap()
}

/// Signs the log as it is now and checks it (`verify`, and the summaries against a scan);
/// returns the signed checkpoint.
async fn signed_and_verified(
    store: &dyn Store,
    tenant: &TenantName,
    what: &str,
) -> bitacora_store::StoredCheckpoint {
    checkpoint_tenant(store, &signer(), tenant, 1)
        .await
        .unwrap();
    let outcome = verify_tenant(
        store,
        tenant,
        &[signer().verifier()],
        &VerifyOptions {
            unsigned_grace: Duration::ZERO,
            ..VerifyOptions::default()
        },
        |_, _| {},
    )
    .await
    .unwrap()
    .outcome;
    assert_eq!(outcome, VerifyOutcome::Intact, "{what}");
    assert_eq!(store.check_summaries(tenant).await.unwrap(), None, "{what}");
    store.latest_checkpoint(tenant).await.unwrap().unwrap()
}

/// Signs the log as it is now, and checks it: `verify`, the summaries against a scan,
/// inclusion proofs of events from the first `before.len()` (purged or not) and of the
/// newest, and consistency from the log of `before`.
async fn provable(store: &dyn Store, tenant: &TenantName, before: &[Hash], what: &str) {
    let latest = signed_and_verified(store, tenant, what).await;
    let old_size = before.len() as u64;
    for seq in [0, 10, 17, 130, 249, old_size - 1] {
        let proof = bitacora_log::inclusion_proof(store, tenant, seq, latest.size)
            .await
            .unwrap();
        merkle::verify_inclusion(
            &before[seq as usize],
            seq,
            latest.size,
            &proof.hashes,
            &latest.root,
        )
        .unwrap_or_else(|e| panic!("{what}: seq {seq}: {e}"));
    }
    let consistency = bitacora_log::consistency_proof(store, tenant, old_size, latest.size)
        .await
        .unwrap();
    merkle::verify_consistency(
        old_size,
        latest.size,
        &consistency.hashes,
        &merkle::root_from_leaves(before),
        &latest.root,
    )
    .unwrap_or_else(|e| panic!("{what}: consistency: {e}"));
}
