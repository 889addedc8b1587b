//! Retention end to end on a real embedded store: rules and holds, archive then purge, the
//! log still verifying (and failing when a purge is faked), proofs across a purge, a crash at
//! every step, and a purge while appending.

use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bitacora_core::canonical::Hash;
use bitacora_core::checkpoint::{NoteSigner, NoteVerifier};
use bitacora_core::event::timestamp;
use bitacora_core::merkle;
use bitacora_core::{EventInput, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_lifecycle::{Archive, Retention, RetentionConfig};
use bitacora_log::{BundleOptions, VerifyOptions, VerifyOutcome, checkpoint_tenant, verify_tenant};
use bitacora_store::{LegalHoldRecord, Store};
use bitacora_store_sqlite::{SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;

const DAY_US: i64 = 86_400_000_000;
/// "Now" for the passes: events were received on 2026-01-20 (see [`event`]).
fn now_plus(days: i64) -> i64 {
    timestamp::parse("2026-01-20T00:00:00Z")
        .unwrap()
        .timestamp_micros()
        + days * DAY_US
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("bitacora", [7; 32]).unwrap()
}

fn verifiers() -> Vec<NoteVerifier> {
    vec![signer().verifier()]
}

fn tenant() -> TenantName {
    TenantName::default_tenant()
}

fn open(dir: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("data"), SqliteOptions::default()).unwrap())
}

/// Event `i`: received on day `i / 10` of 2026-01-20.., actor `i % 3`, every fifth one in
/// category `auth`.
fn event(i: u64) -> SealedEvent {
    let action = if i.is_multiple_of(5) {
        "auth.login"
    } else {
        "user.update"
    };
    let json = serde_json::json!({
        "id": format!("ev-{i}"),
        "action": action,
        "actor": {"id": format!("{}", i % 3), "name": format!("actor {}", i % 3)},
        "target": {"type": "user", "id": format!("{i}")},
        "description": format!("cambio número {i}"),
        "context": {"ip": format!("10.0.0.{}", i % 5)},
    });
    let input = EventInput::from_json(json.to_string().as_bytes()).unwrap();
    let received = now_plus((i / 10) as i64);
    SealedEvent::prepare(
        input,
        &IngestPolicy::default(),
        &IngestContext {
            pinned_tenant: None,
            received_at: chrono::DateTime::from_timestamp_micros(received).unwrap(),
            client_ip: None,
            allow_reserved: false,
        },
    )
    .unwrap()
}

async fn append(store: &dyn Store, from: u64, to: u64) {
    let batch: Vec<_> = (from..to).map(event).collect();
    store.append(batch).await.unwrap();
}

async fn sign(store: &dyn Store) {
    checkpoint_tenant(store, &signer(), &tenant(), 1)
        .await
        .unwrap();
}

fn config(toml_text: &str) -> RetentionConfig {
    let c: RetentionConfig = toml::from_str(toml_text).unwrap();
    c.validate().unwrap();
    c
}

fn retention(store: Arc<dyn Store>, archive: &Path, c: RetentionConfig) -> Retention {
    Retention {
        store,
        config: c,
        archive: Archive::open(&format!("file://{}", archive.display())).unwrap(),
        bundle: BundleOptions::new(Arc::new(signer()), verifiers()),
        policy: Arc::new(IngestPolicy::default()),
    }
}

async fn verify(store: &dyn Store) -> VerifyOutcome {
    verify_tenant(
        store,
        &tenant(),
        &verifiers(),
        &VerifyOptions {
            unsigned_grace: Duration::ZERO,
            ..VerifyOptions::default()
        },
        |_, _| {},
    )
    .await
    .unwrap()
    .outcome
}

async fn present(store: &dyn Store, i: u64) -> bool {
    store
        .event_by_id(&tenant(), &format!("ev-{i}"))
        .await
        .unwrap()
        .is_some()
}

fn hold(id: &str, filter: &str) -> LegalHoldRecord {
    LegalHoldRecord {
        id: id.into(),
        tenant: tenant(),
        name: id.into(),
        reason: "litigation".into(),
        filter: filter.into(),
        created_at: 1,
        created_by: "test".into(),
        released_at: None,
        released_by: None,
    }
}

const RULES: &str = r#"
    default = "10d"
    min_delay = "0s"
    batch_size = 7
    [[rule]]
    category = "auth"
    keep = "forever"
    [[rule]]
    action = "user.*"
    tenant = "default"
    keep = "5d"
"#;

#[tokio::test]
async fn rules_and_holds_decide_and_the_log_stays_provable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Days 0..5 (ten events each).
    append(store.as_ref(), 0, 50).await;
    sign(store.as_ref()).await;
    let leaves: Vec<Hash> = {
        let mut v = Vec::new();
        for seq in 0..50 {
            v.push(
                store
                    .event_by_seq(&tenant(), seq)
                    .await
                    .unwrap()
                    .unwrap()
                    .leaf_hash,
            );
        }
        v
    };
    let root_before = merkle::root_from_leaves(&leaves);
    // Actor 1's events and ev-7 are held; holds overlap (ev-7 is actor 1's).
    store
        .insert_legal_hold(&hold("h1", r#"{"actor_id":"1"}"#))
        .await
        .unwrap();
    store
        .insert_legal_hold(&hold("h2", r#"{"target_type":"user","target_id":"7"}"#))
        .await
        .unwrap();
    let archive = dir.path().join("archive");
    let r = retention(store.clone(), &archive, config(RULES));

    // A dry run changes nothing.
    let dry = r
        .pass(now_plus(8), true, None, &CancellationToken::new())
        .await
        .unwrap();
    assert!(dry.purged() > 0);
    assert!(present(store.as_ref(), 1).await);
    assert!(
        Archive::open(&format!("file://{}", archive.display()))
            .unwrap()
            .list(None)
            .await
            .unwrap()
            .is_empty()
    );

    // On day 8, user.* events at least 5 days old (received days 0..=3) go, except held ones
    // and auth events (kept forever).
    let report = r
        .pass(now_plus(8), false, None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.purged(), dry.purged());
    let expect_gone = |i: u64| i < 40 && !i.is_multiple_of(5) && i % 3 != 1 && i != 7;
    for i in 0..50 {
        assert_eq!(!present(store.as_ref(), i).await, expect_gone(i), "ev-{i}");
    }
    let gone = (0..50).filter(|&i| expect_gone(i)).count() as u64;
    assert_eq!(report.purged(), gone);
    assert!(report.held > 0);
    // batch_size 7: several archive objects, each a verifiable bundle.
    assert!(report.purges.len() >= 2, "{report:?}");
    let objects = r.archive.list(Some("default")).await.unwrap();
    assert_eq!(objects.len(), report.purges.len());
    let mut archived = 0;
    for o in &objects {
        let compressed = r.archive.get(&o.name).await.unwrap();
        let mut text = Vec::new();
        zstd::stream::read::Decoder::new(&compressed[..])
            .unwrap()
            .read_to_end(&mut text)
            .unwrap();
        let report = bitacora_log::verify_bundle(&text[..], Some(&verifiers())).unwrap();
        archived += report.events;
    }
    assert_eq!(archived, gone);

    // The log still verifies; the tree is unchanged; proofs on both sides of the purge and a
    // consistency proof across it hold.
    sign(store.as_ref()).await;
    assert_eq!(verify(store.as_ref()).await, VerifyOutcome::Intact);
    let ids = merkle::root_nodes(50);
    let hashes = store.tree_nodes(&tenant(), &ids).await.unwrap();
    let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
    let root = merkle::root_from_nodes(50, |id| Ok::<_, ()>(map[&id])).unwrap();
    assert_eq!(root, root_before);
    let size = store.log_size(&tenant()).await.unwrap();
    let latest = store.latest_checkpoint(&tenant()).await.unwrap().unwrap();
    assert_eq!(latest.size, size);
    for seq in [2u64, 3, 30, 49] {
        let proof = bitacora_log::inclusion_proof(store.as_ref(), &tenant(), seq, size)
            .await
            .unwrap();
        merkle::verify_inclusion(
            &leaves[seq as usize],
            seq,
            size,
            &proof.hashes,
            &latest.root,
        )
        .unwrap_or_else(|e| panic!("seq {seq}: {e}"));
    }
    let consistency = bitacora_log::consistency_proof(store.as_ref(), &tenant(), 50, size)
        .await
        .unwrap();
    merkle::verify_consistency(50, size, &consistency.hashes, &root_before, &latest.root).unwrap();

    // Releasing a hold lets its events go at the next pass.
    store
        .release_legal_hold("h1", None, 2, "test")
        .await
        .unwrap()
        .unwrap();
    r.pass(now_plus(8), false, None, &CancellationToken::new())
        .await
        .unwrap();
    assert!(!present(store.as_ref(), 1).await);
    assert!(present(store.as_ref(), 7).await, "still under h2");
    sign(store.as_ref()).await;
    assert_eq!(verify(store.as_ref()).await, VerifyOutcome::Intact);
    assert_eq!(store.check_summaries(&tenant()).await.unwrap(), None);
}

#[tokio::test]
async fn a_changed_rule_set_waits_min_delay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(store.as_ref(), 0, 30).await;
    sign(store.as_ref()).await;
    let c = config(&RULES.replace("min_delay = \"0s\"", "min_delay = \"7d\""));
    let r = retention(store.clone(), &dir.path().join("archive"), c);
    // First seen now: nothing goes for seven days, but the dry run says what will.
    let now = now_plus(8);
    let report = r
        .pass(now, false, None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.purged(), 0);
    assert_eq!(report.delayed.len(), 1);
    assert!(present(store.as_ref(), 1).await);
    let dry = r
        .pass(now, true, None, &CancellationToken::new())
        .await
        .unwrap();
    assert!(dry.purged() > 0);
    // Seven days after the rule set was first seen, it purges.
    let report = r
        .pass(now + 7 * DAY_US, false, None, &CancellationToken::new())
        .await
        .unwrap();
    assert!(report.purged() > 0);
    assert!(!present(store.as_ref(), 1).await);
}

/// Tampering the way an insider with the database file would.
fn sql(dir: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(dir.join("data").join("bitacora.db")).unwrap();
    conn.execute_batch(statements).unwrap();
}

#[tokio::test]
async fn verify_fails_when_a_purge_is_faked_or_removes_more_than_it_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(store.as_ref(), 0, 40).await;
    sign(store.as_ref()).await;
    let r = retention(store.clone(), &dir.path().join("archive"), config(RULES));
    r.pass(now_plus(8), false, None, &CancellationToken::new())
        .await
        .unwrap();
    sign(store.as_ref()).await;
    assert_eq!(verify(store.as_ref()).await, VerifyOutcome::Intact);
    store.close().await.unwrap();
    drop(store);

    // ev-35 (seq 35) deleted by hand and dressed up as purged under the real purge: the
    // purge then removed more than it recorded.
    let purge: i64 = {
        let conn = rusqlite::Connection::open(dir.path().join("data").join("bitacora.db")).unwrap();
        conn.query_row("SELECT event_seq FROM purges LIMIT 1", [], |r| r.get(0))
            .unwrap()
    };
    let copy = tempfile::tempdir().unwrap();
    bitacora_store_sqlite::backup(&dir.path().join("data"), &copy.path().join("data")).unwrap();
    sql(
        dir.path(),
        &format!(
            "INSERT INTO purged_events (pos, event_id, leaf_hash, purge)
               SELECT pos, event_id, leaf_hash, {purge} FROM events WHERE event_id = 'ev-35';
             DELETE FROM events WHERE event_id = 'ev-35';"
        ),
    );
    let store = open(dir.path());
    match verify(store.as_ref()).await {
        VerifyOutcome::Tampered { seq, reason } => {
            assert_eq!(seq, 35, "{reason}");
        }
        other => panic!("{other:?}"),
    }
    store.close().await.unwrap();

    // The same, with a purge record of its own: no signed announcement vouches for it.
    let store = open(copy.path());
    assert_eq!(
        verify(store.as_ref()).await,
        VerifyOutcome::Intact,
        "the backup verifies"
    );
    store.close().await.unwrap();
    sql(
        copy.path(),
        "INSERT INTO purges (tenant_id, event_seq, ranges, count, root, archive, created_at)
           SELECT 1, 36, '35-35', 1, leaf_hash, 'file:///nowhere', 0 FROM events WHERE event_id = 'ev-35';
         INSERT INTO purged_events (pos, event_id, leaf_hash, purge)
           SELECT pos, event_id, leaf_hash, 36 FROM events WHERE event_id = 'ev-35';
         DELETE FROM events WHERE event_id = 'ev-35';",
    );
    let store = open(copy.path());
    match verify(store.as_ref()).await {
        VerifyOutcome::Tampered { seq, reason } => {
            assert_eq!(seq, 36, "{reason}");
            assert!(reason.contains("announcement"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_purge_while_appending_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(store.as_ref(), 0, 200).await;
    sign(store.as_ref()).await;
    let r = retention(store.clone(), &dir.path().join("archive"), config(RULES));
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for k in 0..50u64 {
                let from = 1000 + k * 20;
                append(store.as_ref(), from, from + 20).await;
            }
        })
    };
    let report = r
        .pass(now_plus(30), false, None, &CancellationToken::new())
        .await
        .unwrap();
    writer.await.unwrap();
    assert!(report.purged() > 0);
    for i in (1000..2000).step_by(37) {
        assert!(present(store.as_ref(), i).await, "ev-{i}");
    }
    sign(store.as_ref()).await;
    assert_eq!(verify(store.as_ref()).await, VerifyOutcome::Intact);
}

/// The child half of the crash test: one pass over the store in `BITACORA_CRASH_DIR`, with
/// `BITACORA_LIFECYCLE_CRASH_AT` set by the parent (the pass aborts the process there).
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var("BITACORA_CRASH_DIR") else {
        return; // Run by the parent only.
    };
    let dir = Path::new(&dir);
    let store = open(dir);
    let r = retention(store.clone(), &dir.join("archive"), config(&crash_rules()));
    r.pass(now_plus(8), false, None, &CancellationToken::new())
        .await
        .unwrap();
    panic!("the pass should have aborted the process");
}

/// The crash test's rules: groups of two batches (pages of 7 events hold 5 or 6 expired ones,
/// so two archive objects reach 10 events), announced by one append and purged by one store
/// transaction.
fn crash_rules() -> String {
    RULES.replace(
        "batch_size = 7",
        "batch_size = 7\n    transaction_size = 10",
    )
}

/// Archive objects (batches) per group under [`crash_rules`].
const PER_GROUP: usize = 2;

#[tokio::test]
async fn a_crash_at_every_step_never_purges_without_its_archive() {
    for step in ["archived", "announced", "purged"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            append(store.as_ref(), 0, 30).await;
            sign(store.as_ref()).await;
            store.close().await.unwrap();
        }
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("BITACORA_CRASH_DIR", dir.path())
            .env("BITACORA_LIFECYCLE_CRASH_AT", step)
            .status()
            .unwrap();
        assert!(!status.success(), "{step}: the child should have aborted");
        let store = open(dir.path());
        let r = retention(
            store.clone(),
            &dir.path().join("archive"),
            config(&crash_rules()),
        );
        let objects = r.archive.list(None).await.unwrap();
        let purges = store.purges(&tenant()).await.unwrap();
        // The first batch's archive is always there; a purge only with its archive. A group's
        // batches are archived one by one, announced together and purged together; a pass
        // archives group N+1 while group N's purge commits, so a crash right after a purge
        // may leave the next group archived (and not purged) too.
        let (most_objects, purged) = match step {
            "archived" => (1, 0..=0),
            "announced" => (PER_GROUP, 0..=0),
            _ => (2 * PER_GROUP, 1..=PER_GROUP),
        };
        assert!(
            (1..=most_objects).contains(&objects.len()),
            "{step}: {} objects",
            objects.len()
        );
        assert!(purged.contains(&purges.len()), "{step}: {purges:?}");
        if step == "announced" {
            // The whole group was archived before its one announcement.
            assert_eq!(objects.len(), PER_GROUP, "{step}");
        }
        for p in &purges {
            assert!(objects.iter().any(|o| o.url == p.archive), "{step}: {p:?}");
        }
        sign(store.as_ref()).await;
        assert_eq!(
            verify(store.as_ref()).await,
            VerifyOutcome::Intact,
            "{step}"
        );
        // The next pass finishes the job, and the log still verifies.
        r.pass(now_plus(8), false, None, &CancellationToken::new())
            .await
            .unwrap();
        for p in store.purges(&tenant()).await.unwrap() {
            let name = p.archive.rsplit_once("/default/").unwrap().1;
            assert!(
                r.archive.get(&format!("default/{name}")).await.is_ok(),
                "{step}"
            );
        }
        assert!(!present(store.as_ref(), 1).await, "{step}");
        sign(store.as_ref()).await;
        assert_eq!(
            verify(store.as_ref()).await,
            VerifyOutcome::Intact,
            "{step}"
        );
        store.close().await.unwrap();
    }
}

/// Servers sharing a store (PostgreSQL) run one retention task each, but only one purges: the
/// task takes the store's `retention` lease before each pass, and the others stand by (their
/// status says so) instead of archiving and announcing the same batches.
#[tokio::test]
async fn only_the_lease_holder_purges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = config(&RULES.replace(
        "default = \"10d\"",
        "default = \"10d\"\n    check_interval = \"1s\"",
    ));
    let cancel = CancellationToken::new();
    let (a_task, a) = bitacora_lifecycle::spawn_retention(
        retention(store.clone(), &dir.path().join("archive"), c.clone()),
        cancel.clone(),
    );
    let (b_task, b) = bitacora_lifecycle::spawn_retention(
        retention(store.clone(), &dir.path().join("archive"), c),
        cancel.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (sa, sb) = (a.snapshot(), b.snapshot());
        let passed = sa.last_pass_at.is_some() || sb.last_pass_at.is_some();
        if passed && (sa.standby || sb.standby) {
            // One ran a pass, the other found the lease taken.
            assert_ne!(sa.standby, sb.standby, "{sa:?} {sb:?}");
            let (ran, waited) = if sa.standby { (sb, sa) } else { (sa, sb) };
            assert!(ran.last_pass_at.is_some(), "{ran:?}");
            assert!(waited.last_pass_at.is_none(), "{waited:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sa:?} {sb:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    a_task.await.unwrap();
    b_task.await.unwrap();
}
