//! Who may do what in the `bitacora_capture` schema (schema version 3), and a drain that
//! keeps going past rows it cannot convert, against a real PostgreSQL
//! (`bitacora_store_postgres::testing::TestDatabase`).
//!
//! The application writes as a role of its own, as it does in production: an unprivileged
//! `LOGIN` role with rights on its tables only. Its writes are captured (the triggers run as
//! the installing role), and everything else — writing or reading the outbox, hashing a guess
//! with the masking key, calling or attaching the trigger functions — is refused. Roles are
//! cluster-wide, so each test names its own after its database and drops it at the end (also
//! on panic). Without PostgreSQL the tests skip with a printed reason, except when `CI` is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitacora_capture::{DrainConfig, InstallOptions, SourceState, StatusHandle, spawn_drain};
use bitacora_core::{IngestPolicy, TenantName};
use bitacora_store::Store;
use bitacora_store_postgres::testing::TestDatabase;
use bitacora_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

const V1_TABLES: &str = include_str!("../sql/v1.sql");
const V2_TABLES: &str = include_str!("../sql/v2.sql");
/// The trigger functions exactly as schema version 2 installed them.
const V2_FUNCTIONS: &str = include_str!("fixtures/v2_functions.sql");

macro_rules! test_db {
    () => {
        match TestDatabase::create().await {
            Some(db) => db,
            None => return,
        }
    };
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A `LOGIN` role with no privileges of its own, dropped (with its grants) when the test ends.
struct Role {
    name: String,
    db_url: String,
}

impl Role {
    async fn create(db: &TestDatabase, suffix: &str) -> Self {
        let name = format!("{}_{suffix}", db.name());
        connect(db.url())
            .await
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap();
        Self {
            name,
            db_url: db.url().to_owned(),
        }
    }

    fn url(&self) -> String {
        self.db_url.replace("postgres@", &format!("{}@", self.name))
    }

    async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.db_url.clone());
        // Async cleanup from a sync Drop: a runtime of its own on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&url, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Runs `sql` and returns PostgreSQL's error message; panics if it succeeds.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("an unprivileged role was allowed to run: {sql}"),
        Err(e) => bitacora_capture::pg_message(&e),
    }
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

struct Drain {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    status: StatusHandle,
}

impl Drain {
    fn start(url: &str, store: &Arc<dyn Store>) -> Self {
        let mut config = DrainConfig::new(url.to_owned(), tenant());
        config.poll_interval = Duration::from_millis(100);
        config.batch_size = 3;
        config.max_backoff = Duration::from_millis(300);
        let cancel = CancellationToken::new();
        let (task, status) = spawn_drain(
            config,
            store.clone(),
            Arc::new(IngestPolicy::default()),
            cancel.clone(),
        );
        Self {
            cancel,
            task,
            status,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the drain stops")
            .unwrap();
    }
}

async fn outbox_len(url: &str) -> i64 {
    connect(url)
        .await
        .query_one("SELECT count(*) FROM bitacora_capture.outbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the outbox is empty and the log holds `n` events; returns them, oldest first.
async fn drained(url: &str, store: &Arc<dyn Store>, n: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = store.log_size(&tenant()).await.unwrap();
        if size == n && outbox_len(url).await == 0 {
            break;
        }
        assert!(size <= n, "more events than changes: {size} > {n}");
        assert!(
            Instant::now() < deadline,
            "not drained after 30 s: {size} of {n} events, {} rows waiting",
            outbox_len(url).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    for seq in 0..n {
        let e = store.event_by_seq(&tenant(), seq).await.unwrap().unwrap();
        out.push(serde_json::from_str(&e.to_json()).unwrap());
    }
    out
}

/// Every way an application role could reach the capture objects other than by writing its
/// own tables, each refused for lack of privilege.
async fn assert_locked_out(app: &tokio_postgres::Client) {
    for sql in [
        // Forging a change (issue 14, finding 5).
        "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, \
             old_values, actor_id, actor_name, ip) \
         VALUES (1, 'public', 'payments', 'DELETE', '{id}', '{\"id\": 1}', 'ceo', 'ceo', '8.8.8.8')",
        "UPDATE bitacora_capture.outbox SET actor_id = 'ceo'",
        "DELETE FROM bitacora_capture.outbox",
        "SELECT * FROM bitacora_capture.outbox",
        "TRUNCATE bitacora_capture.outbox",
        "SELECT nextval('bitacora_capture.outbox_id_seq')",
        // Guessing a masked value (finding 6): hash a guess with the key, or read the key.
        "SELECT bitacora_capture.mask_columns('{\"card\": \"4111111111111111\"}', '{card}')",
        "SELECT * FROM bitacora_capture.mask_key",
        "SELECT bitacora_capture.mask(to_jsonb('x'::text), '\\x00', '\\x00')",
        // The drain's and the install's state.
        "UPDATE bitacora_capture.drain_state SET listening = true",
        "SELECT * FROM bitacora_capture.drain_state",
        "UPDATE bitacora_capture.meta SET value = 'forged' WHERE key = 'install_id'",
        "DELETE FROM bitacora_capture.tables",
        // The trigger functions, called or attached to a table of the role's own.
        "SELECT bitacora_capture.capture_row()",
        "CREATE TABLE own.forge (id int PRIMARY KEY); \
         CREATE TRIGGER forge AFTER INSERT ON own.forge FOR EACH ROW \
             EXECUTE FUNCTION bitacora_capture.capture_row('{id}', '{}', '{}', 'f')",
        "CREATE TABLE own.forge2 (id int PRIMARY KEY); \
         CREATE TRIGGER forge AFTER TRUNCATE ON own.forge2 FOR EACH STATEMENT \
             EXECUTE FUNCTION bitacora_capture.capture_truncate()",
        // Objects of its own in the schema, to shadow or to be drained.
        "CREATE TABLE bitacora_capture.mine (x int)",
    ] {
        let message = refused(app, sql).await;
        assert!(
            message.contains("permission denied"),
            "`{sql}` failed, but not for lack of privilege: {message}"
        );
    }
}

/// The application's tables, and its role with the rights an application has on them (and a
/// schema of its own, where it may create tables and triggers).
async fn application(db: &TestDatabase) -> Role {
    let owner = connect(db.url()).await;
    owner
        .batch_execute(
            "CREATE TABLE payments (id int PRIMARY KEY, amount int, card text, note text);
             CREATE TABLE refunds (id int PRIMARY KEY, payment int);",
        )
        .await
        .unwrap();
    let app = Role::create(db, "app").await;
    owner
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON payments, refunds TO {0};
             CREATE SCHEMA own AUTHORIZATION {0};",
            app.name
        ))
        .await
        .unwrap();
    app
}

/// The application's writes, as its own role and with its actor: five changes.
async fn app_writes(app: &tokio_postgres::Client, actor: &str, first_id: i32) {
    app.batch_execute(&format!(
        "BEGIN;
         SELECT set_config('bitacora.actor_id', '{actor}', true);
         INSERT INTO payments VALUES ({first_id}, 10, '4111111111111111', 'a');
         UPDATE payments SET amount = 20, card = '5500000000000004' WHERE id = {first_id};
         INSERT INTO refunds VALUES ({first_id}, {first_id});
         DELETE FROM refunds WHERE id = {first_id};
         DELETE FROM payments WHERE id = {first_id};
         COMMIT;"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn an_application_role_is_captured_but_cannot_forge_changes_or_hash_guesses() {
    let db = test_db!();
    let app = application(&db).await;
    // Installed as docs/CAPTURE.md says: by the tables' owner, not a superuser.
    let owner = Role::create(&db, "owner").await;
    connect(db.url())
        .await
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {1} TO {0};
             ALTER TABLE payments OWNER TO {0}; ALTER TABLE refunds OWNER TO {0};",
            owner.name,
            db.name()
        ))
        .await
        .unwrap();
    bitacora_capture::install(
        &owner.url(),
        &InstallOptions {
            tables: vec!["payments".into(), "refunds".into()],
            mask_columns: vec!["payments.card".into()],
            ..InstallOptions::default()
        },
    )
    .await
    .unwrap();

    let client = app.client().await;
    assert_locked_out(&client).await;
    // Its ordinary writes, TRUNCATE included, are captured all the same.
    app_writes(&client, "u1", 1).await;
    client.batch_execute("TRUNCATE refunds").await.unwrap();

    let (_dir, store) = open_store();
    let drain = Drain::start(&owner.url(), &store);
    let events = drained(db.url(), &store, 6).await;
    drain.stop().await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "payments.insert",
            "payments.update",
            "refunds.insert",
            "refunds.delete",
            "payments.delete",
            "refunds.truncate"
        ]
    );
    assert!(events[..5].iter().all(|e| e["actor"]["id"] == "u1"));
    let all = serde_json::to_string(&events).unwrap();
    for leaked in ["4111111111111111", "5500000000000004", "ceo", "8.8.8.8"] {
        assert!(!all.contains(leaked), "`{leaked}` in the log: {all}");
    }
    let card = &events[1]["changes"][1];
    assert_eq!(card["field"], "card");
    assert!(card["new"].as_str().unwrap().starts_with("hmac-sha256:"));
    assert!(
        events
            .iter()
            .all(|e| e["category"] == "db" && e["context"]["source"] == "db_trigger")
    );
}

#[tokio::test]
async fn a_row_that_cannot_be_converted_is_quarantined_and_later_changes_keep_flowing() {
    let db = test_db!();
    let owner = connect(db.url()).await;
    owner
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    bitacora_capture::install(
        db.url(),
        &InstallOptions {
            tables: vec!["t".into()],
            ..InstallOptions::default()
        },
    )
    .await
    .unwrap();
    // Only the owner can write the outbox now; these stand for a bug or a hand-made row.
    // Each between two real changes; every one of them stopped the drain before.
    let poison = [
        (
            "key_columns",
            "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, new_values) VALUES (1, 'public', 't', 'INSERT', 'not an array', '{\"id\": 9}')",
        ),
        (
            "op",
            "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, new_values) VALUES (1, 'public', 't', 'explode', '{id}', '{\"id\": 9}')",
        ),
        (
            "old_values",
            "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, old_values) VALUES (1, 'public', 't', 'DELETE', '{id}', '\"a scalar\"')",
        ),
        (
            "key column",
            "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, new_values) VALUES (1, 'public', 't', 'INSERT', '{nope}', '{\"id\": 9}')",
        ),
        (
            "occurred_at",
            "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, new_values, occurred_at) VALUES (1, 'public', 't', 'INSERT', '{id}', '{\"id\": 9}', 'infinity')",
        ),
        (
            "readable JSON",
            "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, new_values) VALUES (1, 'public', 't', 'INSERT', '{id}', '{\"id\": 9, \"n\": 1e400}')",
        ),
        (
            "key_columns",
            "INSERT INTO bitacora_capture.outbox (txid, schema_name, table_name, op, key_columns, new_values) VALUES (1, 'public', 't', 'INSERT', '{\"unterminated', jsonb_build_object('id', 9, 'big', repeat('x', 100000)))",
        ),
    ];
    owner
        .batch_execute("INSERT INTO t VALUES (0, 'first')")
        .await
        .unwrap();
    for (i, (_, sql)) in poison.iter().enumerate() {
        owner.batch_execute(sql).await.unwrap();
        owner
            .batch_execute(&format!("INSERT INTO t VALUES ({}, 'after')", i + 1))
            .await
            .unwrap();
    }

    let (_dir, store) = open_store();
    let drain = Drain::start(db.url(), &store);
    let total = 1 + 2 * poison.len() as u64;
    let events = drained(db.url(), &store, total).await;
    // Every later change arrived, in order, exactly once.
    let changes: Vec<&Value> = events.iter().filter(|e| e["category"] == "db").collect();
    let ids: Vec<&str> = changes
        .iter()
        .map(|e| e["target"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "5", "6", "7"]);
    let rejected: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "bitacora.capture.rejected")
        .collect();
    assert_eq!(rejected.len(), poison.len(), "{events:#?}");
    let install_id = bitacora_capture::status(db.url())
        .await
        .unwrap()
        .install_id
        .unwrap();
    for (event, (column, _)) in rejected.iter().zip(&poison) {
        assert_eq!(event["category"], "bitacora");
        assert_eq!(event["severity"], "high");
        assert_eq!(event["outcome"], "failure");
        assert_ne!(event["context"]["source"], "db_trigger");
        let outbox_id = event["metadata"]["outbox_id"].as_i64().unwrap();
        // Its id is the one the change's event would have had: exactly once still holds.
        assert_eq!(event["id"], format!("capture:{install_id}:{outbox_id}"));
        assert_eq!(event["target"]["id"], outbox_id.to_string());
        let reason = event["metadata"]["reason"].as_str().unwrap();
        assert!(reason.contains(column), "{column}: {reason}");
        assert!(
            event["metadata"]["row_sha256"].as_str().unwrap().len() == 64,
            "{event}"
        );
        // The raw row, bounded: as JSON, or (too large, or not JSON we can read) as text.
        let row = &event["metadata"]["row"];
        match row {
            Value::String(text) => assert!(text.len() <= 16 * 1024, "{column}"),
            _ => assert_eq!(row["table_name"], "t", "{row}"),
        }
        assert!(serde_json::to_vec(event).unwrap().len() < 32 * 1024);
    }
    assert_eq!(
        rejected[0]["metadata"]["row"]["key_columns"],
        "not an array"
    );
    assert_eq!(rejected[1]["metadata"]["row"]["op"], "explode");
    assert!(rejected[6]["metadata"]["row"].is_string());
    assert!(rejected[6]["metadata"]["row_bytes"].as_u64().unwrap() > 100_000);

    // The drain says so, and its numbers are the outbox's.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = drain.status.snapshot();
        if s.outbox_depth == Some(0) && s.events_drained == total {
            assert_eq!(s.state, SourceState::Running);
            assert_eq!((s.failures, s.last_error), (0, None));
            assert_eq!(s.rows_rejected, poison.len() as u64);
            let last = s.last_rejection.unwrap();
            assert!(last.contains("key_columns"), "{last}");
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain.stop().await;
}

#[tokio::test]
async fn a_drain_that_cannot_finish_its_passes_reports_the_backlog_and_why() {
    let db = test_db!();
    let owner = connect(db.url()).await;
    owner
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    bitacora_capture::install(
        db.url(),
        &InstallOptions {
            tables: vec!["t".into()],
            ..InstallOptions::default()
        },
    )
    .await
    .unwrap();
    // A drain role granted everything docs/CAPTURE.md lists but DELETE: every pass appends
    // and then fails.
    let drainer = Role::create(&db, "drain").await;
    owner
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA bitacora_capture TO {0};
             GRANT SELECT ON bitacora_capture.outbox, bitacora_capture.meta TO {0};
             GRANT SELECT, UPDATE ON bitacora_capture.drain_state TO {0};
             INSERT INTO t SELECT generate_series(1, 6);",
            drainer.name
        ))
        .await
        .unwrap();
    let (_dir, store) = open_store();
    let drain = Drain::start(&drainer.url(), &store);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = drain.status.snapshot();
        if s.failures >= 3 && s.outbox_depth.is_some() {
            assert_eq!(s.outbox_depth, Some(6), "{s:?}");
            assert!(s.lag_seconds.unwrap() > 0.0, "{s:?}");
            assert!(
                s.last_error
                    .as_deref()
                    .unwrap()
                    .contains("permission denied"),
                "{s:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Granted what it lacked, it catches up (nothing twice) and the error clears.
    owner
        .batch_execute(&format!(
            "GRANT DELETE ON bitacora_capture.outbox TO {}",
            drainer.name
        ))
        .await
        .unwrap();
    let events = drained(db.url(), &store, 6).await;
    assert_eq!(events.len(), 6);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = drain.status.snapshot();
        if s.state == SourceState::Running && s.outbox_depth == Some(0) {
            assert_eq!((s.failures, s.last_error), (0, None));
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain.stop().await;
}

/// Sets up capture as bitacora with schema version 2 did, on `payments` and `refunds`.
async fn install_version_2(owner: &tokio_postgres::Client, install_id: &str) {
    owner.batch_execute(V1_TABLES).await.unwrap();
    owner.batch_execute(V2_TABLES).await.unwrap();
    owner.batch_execute(V2_FUNCTIONS).await.unwrap();
    let mut sql = format!(
        "INSERT INTO bitacora_capture.meta VALUES ('schema_version', '2'),
             ('install_id', '{install_id}'), ('installed_at', now()::text);
         INSERT INTO bitacora_capture.mask_key (inner_pad, outer_pad)
             VALUES (decode(repeat('36', 64), 'hex'), decode(repeat('5c', 64), 'hex'));
         INSERT INTO bitacora_capture.tables (relid, schema_name, table_name, key_columns, masked)
             VALUES ('payments'::regclass, 'public', 'payments', '{{id}}', '{{card}}'),
                    ('refunds'::regclass, 'public', 'refunds', '{{id}}', '{{}}');"
    );
    for (table, masked) in [("payments", "{card}"), ("refunds", "{}")] {
        sql.push_str(&format!(
            "CREATE TRIGGER bitacora_capture_row AFTER INSERT OR DELETE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION bitacora_capture.capture_row('{{id}}', '{{}}', '{masked}', 'f');
             CREATE TRIGGER bitacora_capture_update AFTER UPDATE ON {table}
                 FOR EACH ROW WHEN (OLD *<> NEW)
                 EXECUTE FUNCTION bitacora_capture.capture_row('{{id}}', '{{}}', '{masked}', 'f');
             CREATE TRIGGER bitacora_capture_truncate AFTER TRUNCATE ON {table}
                 FOR EACH STATEMENT EXECUTE FUNCTION bitacora_capture.capture_truncate();"
        ));
    }
    owner.batch_execute(&sql).await.unwrap();
}

#[tokio::test]
async fn an_upgrade_from_version_2_locks_the_schema_and_keeps_every_change() {
    let db = test_db!();
    let app = application(&db).await;
    let owner = connect(db.url()).await;
    install_version_2(&owner, "v2install").await;
    let client = app.client().await;
    // Version 2 at work: the application's writes, waiting when bitacora is upgraded ...
    app_writes(&client, "u1", 1).await;
    // ... and what version 2 let any role do.
    let hash: Value = client
        .query_one(
            "SELECT bitacora_capture.mask_columns('{\"card\": \"4111111111111111\"}', '{card}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(hash["card"].as_str().unwrap().starts_with("hmac-sha256:"));

    // Re-running install upgrades, here naming `payments` only: `refunds` keeps its version 2
    // triggers, which now call the version 3 functions.
    let report = bitacora_capture::install(
        db.url(),
        &InstallOptions {
            tables: vec!["payments".into()],
            mask_columns: vec!["payments.card".into()],
            ..InstallOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.previous_version, 2);
    assert_eq!(report.schema_version, 3);
    assert_eq!(report.install_id, "v2install");
    let status = bitacora_capture::status(db.url()).await.unwrap();
    assert_eq!(status.pending, 5);
    assert!(status.tables.iter().all(|t| t.triggers_ok));

    // The same session, still open across the upgrade, is locked out now ...
    assert_locked_out(&client).await;
    // ... and its writes, on both tables, are still captured.
    app_writes(&client, "u2", 2).await;
    client.batch_execute("TRUNCATE refunds").await.unwrap();

    let (_dir, store) = open_store();
    let drain = Drain::start(db.url(), &store);
    let events = drained(db.url(), &store, 11).await;
    drain.stop().await;
    let summary: Vec<(String, Value)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"]["id"].clone(),
            )
        })
        .collect();
    let expect = |actor: &str| {
        [
            "payments.insert",
            "payments.update",
            "refunds.insert",
            "refunds.delete",
            "payments.delete",
        ]
        .map(|a| (a.to_owned(), json!(actor)))
    };
    let mut expected: Vec<(String, Value)> = expect("u1").into();
    expected.extend(expect("u2"));
    expected.push(("refunds.truncate".to_owned(), Value::Null));
    assert_eq!(summary, expected);
    // One event per outbox row, in outbox order, under the install's identity.
    let ids: Vec<i64> = events
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            assert!(id.starts_with("capture:v2install:"), "{id}");
            id.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // The key stayed: hashes before and after the upgrade compare.
    assert_eq!(events[1]["changes"][1]["field"], "card");
    assert_eq!(events[6]["changes"][1], events[1]["changes"][1]);
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("4111111111111111"), "{all}");
}
