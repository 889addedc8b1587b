//! The capture trigger of schema version 2 (the cheaper one) against a real PostgreSQL
//! (`bitacora_store_postgres::testing::TestDatabase`): what it skips without being called, what it still
//! records, and the upgrade of a version 1 install with changes waiting in its outbox. Each
//! test creates its own database and drops it. Without PostgreSQL the tests skip with a
//! printed reason, except when `CI` is set: then they fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitacora_capture::{DrainConfig, InstallOptions, spawn_drain};
use bitacora_core::{IngestPolicy, TenantName};
use bitacora_store::Store;
use bitacora_store_postgres::testing::TestDatabase;
use bitacora_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// The trigger functions exactly as schema version 1 installed them.
const V1_FUNCTIONS: &str = include_str!("fixtures/v1_functions.sql");
const V1_TABLES: &str = include_str!("../sql/v1.sql");

/// A database of its own (`TestDatabase`: dropped when the test ends, also on panic) and a way
/// to open connections to it.
struct TestDb(TestDatabase);

impl TestDb {
    fn url(&self) -> &str {
        self.0.url()
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(self.url(), NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

macro_rules! test_db {
    () => {
        match TestDatabase::create().await {
            Some(db) => TestDb(db),
            None => return,
        }
    };
}

fn tenant() -> TenantName {
    TenantName::default_tenant()
}

/// A fresh embedded store; keep the folder as long as the store.
fn open_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &dir.path().join("data"),
        SqliteOptions {
            synchronous: Synchronous::Off,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    (dir, Arc::new(store))
}

/// Drains `db` into `store` until the outbox is empty and the log holds `n` events, then
/// stops the drain and returns every event, oldest first.
async fn drain_until(db: &TestDb, store: &Arc<dyn Store>, n: u64) -> Vec<Value> {
    let mut config = DrainConfig::new(db.url().to_owned(), tenant());
    config.poll_interval = Duration::from_millis(100);
    config.batch_size = 4;
    let cancel = CancellationToken::new();
    let (task, _status) = spawn_drain(
        config,
        store.clone(),
        Arc::new(IngestPolicy::default()),
        cancel.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = store.log_size(&tenant()).await.unwrap();
        if size == n && outbox_len(db).await == 0 {
            break;
        }
        assert!(size <= n, "more events than changes: {size} > {n}");
        assert!(
            Instant::now() < deadline,
            "not drained after 30 s: {size} of {n} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the drain stops")
        .unwrap();
    let mut out = Vec::new();
    for seq in 0..n {
        let e = store.event_by_seq(&tenant(), seq).await.unwrap().unwrap();
        out.push(serde_json::from_str(&e.to_json()).unwrap());
    }
    out
}

async fn outbox_len(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM bitacora_capture.outbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// The outbox id at the end of a capture event id.
fn outbox_id(event: &Value) -> i64 {
    event["id"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sets up capture as bitacora with schema version 1 did: its tables and functions, its meta
/// rows, and one AFTER INSERT OR UPDATE OR DELETE trigger per table with its arguments.
async fn install_version_1(app: &tokio_postgres::Client, install_id: &str) {
    app.batch_execute(V1_TABLES).await.unwrap();
    app.batch_execute(V1_FUNCTIONS).await.unwrap();
    app.batch_execute(&format!(
        "INSERT INTO bitacora_capture.meta VALUES ('schema_version', '1'),
             ('install_id', '{install_id}'), ('installed_at', now()::text);
         INSERT INTO bitacora_capture.mask_key (inner_pad, outer_pad)
             VALUES (decode(repeat('36', 64), 'hex'), decode(repeat('5c', 64), 'hex'));
         INSERT INTO bitacora_capture.tables (relid, schema_name, table_name, key_columns, excluded)
             VALUES ('items'::regclass, 'public', 'items', '{{id}}', '{{secret}}'),
                    ('pairs'::regclass, 'public', 'pairs', '{{b,a}}', '{{}}');
         CREATE TRIGGER bitacora_capture_row AFTER INSERT OR UPDATE OR DELETE ON items
             FOR EACH ROW EXECUTE FUNCTION bitacora_capture.capture_row('{{id}}', '{{secret}}', '{{}}', 'f');
         CREATE TRIGGER bitacora_capture_truncate AFTER TRUNCATE ON items
             FOR EACH STATEMENT EXECUTE FUNCTION bitacora_capture.capture_truncate();
         CREATE TRIGGER bitacora_capture_row AFTER INSERT OR UPDATE OR DELETE ON pairs
             FOR EACH ROW EXECUTE FUNCTION bitacora_capture.capture_row('{{b,a}}', '{{}}', '{{}}', 'f');
         CREATE TRIGGER bitacora_capture_truncate AFTER TRUNCATE ON pairs
             FOR EACH STATEMENT EXECUTE FUNCTION bitacora_capture.capture_truncate();"
    ))
    .await
    .unwrap();
}

/// Writes as `actor`, in one transaction.
async fn write_as(app: &mut tokio_postgres::Client, actor: &str, sql: &str) {
    let tx = app.transaction().await.unwrap();
    tx.execute(
        "SELECT set_config('bitacora.actor_id', $1, true), \
                set_config('bitacora.request_id', 'req-' || $1, true)",
        &[&actor],
    )
    .await
    .unwrap();
    tx.batch_execute(sql).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn an_upgrade_from_version_1_keeps_draining_with_nothing_lost_or_duplicated() {
    let db = test_db!();
    let mut app = db.client().await;
    app.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text, secret text);
         CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (b, a));",
    )
    .await
    .unwrap();
    install_version_1(&app, "v1install").await;

    // Version 1 at work: three changes, drained.
    write_as(
        &mut app,
        "u1",
        "INSERT INTO items VALUES (1, 'one', 's1'), (2, 'two', 's2');
         INSERT INTO pairs VALUES (7, 'es', 0);",
    )
    .await;
    let (_dir, store) = open_store();
    drain_until(&db, &store, 3).await;

    // Two more under version 1, still waiting when bitacora is upgraded.
    write_as(
        &mut app,
        "u2",
        "UPDATE items SET name = 'uno' WHERE id = 1; UPDATE pairs SET v = 1;",
    )
    .await;
    let waiting: Vec<(String, Option<Value>)> = app
        .query(
            "SELECT op, pk FROM bitacora_capture.outbox ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        waiting,
        [
            ("update".to_owned(), Some(json!([["id", 1]]))),
            ("update".to_owned(), Some(json!([["b", "es"], ["a", 7]]))),
        ]
    );

    // Re-running install upgrades: here for `items` only; `pairs` keeps its version 1
    // trigger, which now calls the version 2 function with the same arguments.
    let report = bitacora_capture::install(
        db.url(),
        &InstallOptions {
            tables: vec!["items".into()],
            exclude_columns: vec!["items.secret".into()],
            ..InstallOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.previous_version, 1);
    assert_eq!(
        report.schema_version,
        bitacora_capture::install::SCHEMA_VERSION
    );
    assert_eq!(report.install_id, "v1install");
    let status = bitacora_capture::status(db.url()).await.unwrap();
    assert_eq!(status.pending, 2);
    assert!(
        status.tables.iter().all(|t| t.triggers_ok),
        "{:?}",
        status.tables
    );
    let triggers: Vec<String> = app
        .query(
            "SELECT tgrelid::regclass::text || ':' || tgname FROM pg_trigger \
             WHERE NOT tgisinternal ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        triggers,
        [
            "items:bitacora_capture_row",
            "items:bitacora_capture_truncate",
            "items:bitacora_capture_update",
            "pairs:bitacora_capture_row",
            "pairs:bitacora_capture_truncate",
        ]
    );

    // A setting this session once set reads as '' afterwards, not NULL: still "not set".
    app.batch_execute("BEGIN; SELECT set_config('bitacora.ip', '10.0.0.1', true); ROLLBACK")
        .await
        .unwrap();
    // Version 2 at work, on both trigger layouts.
    write_as(
        &mut app,
        "u3",
        "UPDATE items SET secret = 'changed' WHERE id = 2; -- excluded only: nothing
         UPDATE items SET name = name;                     -- no-op: nothing
         UPDATE items SET name = 'dos' WHERE id = 2;
         UPDATE pairs SET v = v;                           -- no-op, version 1 layout: nothing
         UPDATE pairs SET b = 'en', v = 2;                 -- a new key
         DELETE FROM items WHERE id = 1;
         INSERT INTO pairs VALUES (8, 'es', 3);",
    )
    .await;
    let written: Vec<(String, Option<String>, Option<Value>)> = app
        .query(
            "SELECT op, key_columns, pk FROM bitacora_capture.outbox ORDER BY id OFFSET 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        written,
        [
            ("UPDATE".to_owned(), Some("{id}".to_owned()), None),
            ("UPDATE".to_owned(), Some("{b,a}".to_owned()), None),
            ("DELETE".to_owned(), Some("{id}".to_owned()), None),
            ("INSERT".to_owned(), Some("{b,a}".to_owned()), None),
        ]
    );

    let events = drain_until(&db, &store, 9).await;
    let summary: Vec<(String, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"]["id"].clone(),
                e["actor"]["id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("items.insert".to_owned(), json!("1"), json!("u1")),
            ("items.insert".to_owned(), json!("2"), json!("u1")),
            ("pairs.insert".to_owned(), json!("[\"es\",7]"), json!("u1")),
            ("items.update".to_owned(), json!("1"), json!("u2")),
            ("pairs.update".to_owned(), json!("[\"es\",7]"), json!("u2")),
            ("items.update".to_owned(), json!("2"), json!("u3")),
            ("pairs.update".to_owned(), json!("[\"en\",7]"), json!("u3")),
            ("items.delete".to_owned(), json!("1"), json!("u3")),
            ("pairs.insert".to_owned(), json!("[\"es\",8]"), json!("u3")),
        ]
    );
    // One event per outbox row, in outbox order, each under the install's identity.
    let ids: Vec<i64> = events.iter().map(outbox_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(
        events
            .iter()
            .all(|e| e["id"].as_str().unwrap().starts_with("capture:v1install:"))
    );
    // Rows of both versions read the same: changed columns, unset settings absent.
    assert_eq!(
        events[3]["changes"],
        json!([{"field": "name", "old": "one", "new": "uno"}])
    );
    assert_eq!(
        events[5]["changes"],
        json!([{"field": "name", "old": "two", "new": "dos"}])
    );
    assert_eq!(
        events[6]["changes"],
        json!([{"field": "b", "old": "es", "new": "en"}, {"field": "v", "old": 1, "new": 2}])
    );
    for e in &events {
        let actor = e["actor"]["id"].as_str().unwrap();
        assert_eq!(
            e["context"],
            json!({"request_id": format!("req-{actor}"), "source": "db_trigger"})
        );
        assert!(e["actor"].get("name").is_none(), "{e}");
    }
    let all = serde_json::to_string(&events).unwrap();
    for secret in ["s1", "s2", "changed", "\"secret\""] {
        assert!(!all.contains(secret), "`{secret}` leaked: {all}");
    }
}

#[tokio::test]
async fn unchanged_rows_are_skipped_before_the_trigger_runs_and_changes_are_kept() {
    let db = test_db!();
    let app = db.client().await;
    // json and point have no equality operator: `OLD IS DISTINCT FROM NEW` would fail on them.
    app.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, body json, pos point, amount numeric,
                            token text, email text);
         INSERT INTO docs SELECT g, '{\"a\": 1}', point(0, 0), 1.5, 't', 'm@example.com'
                          FROM generate_series(1, 50) g;",
    )
    .await
    .unwrap();
    bitacora_capture::install(
        db.url(),
        &InstallOptions {
            tables: vec!["docs".into()],
            exclude_columns: vec!["docs.token".into()],
            mask_columns: vec!["docs.email".into()],
            ..InstallOptions::default()
        },
    )
    .await
    .unwrap();

    /// How often the row function ran, and the outbox rows written, by `sql` in one
    /// transaction. A session of its own: a session's function counts reach the statistics
    /// only now and then, so until then pg_stat_xact_user_functions also holds the counts of
    /// its earlier transactions.
    async fn effect(db: &TestDb, sql: &str) -> (i64, i64) {
        let app = db.client().await;
        let before = outbox_len(db).await;
        app.batch_execute(&format!(
            "BEGIN; SET LOCAL track_functions = 'pl'; {sql};
             CREATE TEMP TABLE calls ON COMMIT DROP AS
                 SELECT coalesce(sum(calls), 0)::int8 AS n FROM pg_stat_xact_user_functions
                 WHERE schemaname = 'bitacora_capture' AND funcname = 'capture_row';"
        ))
        .await
        .unwrap();
        let calls: i64 = app
            .query_one("SELECT n FROM calls", &[])
            .await
            .unwrap()
            .get(0);
        app.batch_execute("COMMIT").await.unwrap();
        (calls, outbox_len(db).await - before)
    }

    // Nothing changed: the trigger is not even called.
    assert_eq!(
        effect(&db, "UPDATE docs SET body = body, pos = pos").await,
        (0, 0)
    );
    // Only an excluded column: called, records nothing.
    assert_eq!(
        effect(&db, "UPDATE docs SET token = 'u' WHERE id <= 3").await,
        (3, 0)
    );
    // 1.5 → 1.50 changes the stored value's scale but not its JSON: nothing recorded.
    assert_eq!(
        effect(&db, "UPDATE docs SET amount = 1.50 WHERE id = 4").await,
        (1, 0)
    );
    // Real changes, many rows in one statement, including columns without equality and a
    // masked one: one row each, and only for the rows that changed.
    assert_eq!(
        effect(
            &db,
            "UPDATE docs SET pos = CASE WHEN id % 2 = 0 THEN point(1, 2) ELSE pos END"
        )
        .await,
        (25, 25)
    );
    assert_eq!(
        effect(
            &db,
            "UPDATE docs SET body = '{\"a\": 2}', email = 'n@example.com' WHERE id = 1"
        )
        .await,
        (1, 1)
    );

    let (_dir, store) = open_store();
    let events = drain_until(&db, &store, 26).await;
    assert!(events.iter().all(|e| e["action"] == "docs.update"));
    let mut moved: Vec<i64> = events[..25]
        .iter()
        .map(|e| {
            assert_eq!(
                e["changes"],
                json!([{"field": "pos", "old": "(0,0)", "new": "(1,2)"}])
            );
            e["target"]["id"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    moved.sort_unstable();
    assert_eq!(moved, (1..=25).map(|i| i * 2).collect::<Vec<i64>>());
    let last = &events[25];
    assert_eq!(last["target"]["id"], "1");
    let fields: Vec<&str> = last["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["body", "email"]);
    let all = serde_json::to_string(&events).unwrap();
    for leaked in ["example.com", "token"] {
        assert!(!all.contains(leaked), "`{leaked}` leaked: {all}");
    }

    // A disabled update trigger shows in status.
    app.batch_execute("ALTER TABLE docs DISABLE TRIGGER bitacora_capture_update")
        .await
        .unwrap();
    let status = bitacora_capture::status(db.url()).await.unwrap();
    assert!(!status.tables[0].triggers_ok);
}
