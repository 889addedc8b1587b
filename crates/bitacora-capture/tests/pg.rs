//! Capture against a real PostgreSQL (127.0.0.1:5432, user `postgres`): each test creates its
//! own database and drops it. Without PostgreSQL the tests skip with a printed reason, except
//! when `CI` is set: then they fail.
//!
//! The drain appends into the embedded SQLite store, the store `bitacora serve` uses by default.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitacora_capture::{DrainConfig, InstallOptions, SourceState, StatusHandle, spawn_drain};
use bitacora_core::{IngestPolicy, TenantName};
use bitacora_store::Store;
use bitacora_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own, dropped when the test ends (also on panic).
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Option<Self> {
        let admin = match tokio_postgres::connect(&format!("{SERVER}/postgres"), NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client
            }
            Err(e) => {
                if std::env::var_os("CI").is_some() {
                    panic!("CI is set and PostgreSQL at {SERVER} is unreachable: {e}");
                }
                eprintln!("skipping: PostgreSQL at {SERVER} is unreachable ({e})");
                return None;
            }
        };
        let name = format!(
            "bitacora_capture_t_{}",
            hex::encode(rand::random::<[u8; 6]>())
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Some(Self {
            url: format!("{SERVER}/{name}"),
            name,
        })
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Async cleanup from a sync Drop: a runtime of its own on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&format!("{SERVER}/postgres"), NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

macro_rules! test_db {
    () => {
        match TestDb::create().await {
            Some(db) => db,
            None => return,
        }
    };
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

fn tenant() -> TenantName {
    TenantName::default_tenant()
}

struct Drain {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    status: StatusHandle,
}

impl Drain {
    fn start(db: &TestDb, store: &Arc<dyn Store>) -> Self {
        let mut config = DrainConfig::new(db.url.clone(), tenant());
        config.poll_interval = Duration::from_millis(100);
        config.batch_size = 100;
        config.max_backoff = Duration::from_millis(500);
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

/// Every event of the tenant's log, oldest first, as JSON.
async fn events(store: &Arc<dyn Store>) -> Vec<Value> {
    let size = store.log_size(&tenant()).await.unwrap();
    let mut out = Vec::new();
    for seq in 0..size {
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

/// Waits until the outbox is empty and the log holds `n` events.
async fn drained(db: &TestDb, store: &Arc<dyn Store>, n: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = store.log_size(&tenant()).await.unwrap();
        if size == n && outbox_len(db).await == 0 {
            return events(store).await;
        }
        assert!(size <= n, "more events than changes: {size} > {n}");
        assert!(
            Instant::now() < deadline,
            "not drained after 30 s: {size} of {n} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn opts(tables: &[&str]) -> InstallOptions {
    InstallOptions {
        tables: tables.iter().map(|t| t.to_string()).collect(),
        ..InstallOptions::default()
    }
}

fn change<'a>(event: &'a Value, field: &str) -> &'a Value {
    event["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == field)
        .unwrap_or_else(|| panic!("no change of `{field}` in {event}"))
}

fn fields(event: &Value) -> Vec<String> {
    event["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_operation_becomes_one_event_with_its_actor() {
    let db = test_db!();
    let mut app = db.client().await;
    app.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, name text, role text, active boolean);
         CREATE TABLE untouched (id int PRIMARY KEY, v text);",
    )
    .await
    .unwrap();
    bitacora_capture::install(&db.url, &opts(&["public.users"]))
        .await
        .unwrap();

    // The application's transaction: context first, then its writes.
    let tx = app.transaction().await.unwrap();
    bitacora_client::capture::set_context(
        &tx,
        &bitacora_client::capture::CaptureContext::new()
            .actor_id("42")
            .actor_name("ana")
            .actor_email("ana@example.com")
            .ip("192.168.1.100")
            .user_agent("Mozilla/5.0")
            .request_id("r-1"),
    )
    .await
    .unwrap();
    tx.batch_execute(
        "INSERT INTO users VALUES (456, 'Juan Pérez', 'user', true);
         UPDATE users SET role = 'admin' WHERE id = 456;
         UPDATE users SET role = 'admin' WHERE id = 456; -- changes nothing: no record
         INSERT INTO untouched VALUES (1, 'not captured');",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // Rolled back: recorded nowhere.
    let tx = app.transaction().await.unwrap();
    tx.batch_execute(
        "INSERT INTO users VALUES (999, 'ghost', 'user', true); UPDATE users SET name = 'x'",
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    // Without settings: no actor. The settings of the committed transaction are gone.
    app.batch_execute("DELETE FROM users WHERE id = 456; INSERT INTO users VALUES (1, 'a', 'b', false); TRUNCATE users")
        .await
        .unwrap();

    let (_dir, store) = open_store();
    let drain = Drain::start(&db, &store);
    let events = drained(&db, &store, 5).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "users.insert",
            "users.update",
            "users.delete",
            "users.insert",
            "users.truncate"
        ]
    );
    let install_id = bitacora_capture::status(&db.url)
        .await
        .unwrap()
        .install_id
        .unwrap();
    for e in &events {
        assert_eq!(e["category"], "db");
        assert_eq!(e["context"]["source"], "db_trigger");
        assert!(
            e["id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("capture:{install_id}:")),
            "{e}"
        );
    }

    let insert = &events[0];
    assert_eq!(insert["target"], json!({"type": "users", "id": "456"}));
    assert_eq!(fields(insert), ["active", "id", "name", "role"]);
    assert_eq!(
        change(insert, "name"),
        &json!({"field": "name", "new": "Juan Pérez"})
    );
    assert_eq!(
        insert["actor"],
        json!({"id": "42", "name": "ana", "email": "ana@example.com", "type": "user"})
    );
    assert_eq!(
        insert["context"],
        json!({"ip": "192.168.1.100", "user_agent": "Mozilla/5.0", "request_id": "r-1", "source": "db_trigger"})
    );
    // One transaction, one txid.
    assert_eq!(insert["metadata"]["txid"], events[1]["metadata"]["txid"]);

    let update = &events[1];
    assert_eq!(
        update["changes"],
        json!([{"field": "role", "old": "user", "new": "admin"}])
    );
    assert_eq!(update["actor"]["id"], "42");

    // A deleted row can be rebuilt from its event.
    let delete = &events[2];
    assert!(delete.get("actor").is_none(), "{delete}");
    assert_eq!(delete["target"]["id"], "456");
    assert_eq!(
        change(delete, "role"),
        &json!({"field": "role", "old": "admin"})
    );
    assert_eq!(
        change(delete, "active"),
        &json!({"field": "active", "old": true})
    );
    assert!(delete["context"].get("ip").is_none());

    let truncate = &events[4];
    assert_eq!(truncate["target"], json!({"type": "users"}));
    assert!(truncate.get("changes").is_none());

    // The drain reports itself.
    let status = drain.status.snapshot();
    assert_eq!(status.state, SourceState::Running);
    assert_eq!(status.events_drained, 5);
    drain.stop().await;
}

#[tokio::test]
async fn install_is_idempotent_versioned_and_uninstall_keeps_the_data() {
    let db = test_db!();
    let app = db.client().await;
    app.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.orders (id bigint PRIMARY KEY, total numeric, note text);
         INSERT INTO shop.orders VALUES (1, 10.5, 'first');",
    )
    .await
    .unwrap();
    let first = bitacora_capture::install(&db.url, &opts(&["shop.orders"]))
        .await
        .unwrap();
    assert_eq!(first.previous_version, 0);
    let second = bitacora_capture::install(&db.url, &opts(&["shop.orders"]))
        .await
        .unwrap();
    assert_eq!(
        second.previous_version,
        bitacora_capture::install::SCHEMA_VERSION
    );
    assert_eq!(first.install_id, second.install_id);
    // Twice installed, once recorded.
    app.batch_execute("UPDATE shop.orders SET note = 'second'")
        .await
        .unwrap();
    assert_eq!(outbox_len(&db).await, 1);
    let triggers: i64 = app
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.orders'::regclass AND NOT tgisinternal",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 3);

    let status = bitacora_capture::status(&db.url).await.unwrap();
    assert!(status.installed);
    assert_eq!(
        status.schema_version,
        Some(bitacora_capture::install::SCHEMA_VERSION)
    );
    assert_eq!(status.tables.len(), 1);
    assert_eq!(status.tables[0].table, "shop.orders");
    assert_eq!(status.tables[0].key_columns, ["id"]);
    assert!(status.tables[0].triggers_ok);
    assert_eq!(status.pending, 1);

    // Bad requests say what is wrong.
    for (options, expect) in [
        (opts(&["shop.nope"]), "does not exist"),
        (opts(&[]), "at least one table"),
        (
            InstallOptions {
                exclude_columns: vec!["orders.id".into()],
                ..opts(&["shop.orders"])
            },
            "primary key",
        ),
        (
            InstallOptions {
                mask_columns: vec!["orders.missing".into()],
                ..opts(&["shop.orders"])
            },
            "no column",
        ),
        (
            InstallOptions {
                mask_columns: vec!["other.note".into()],
                ..opts(&["shop.orders"])
            },
            "not among the --table",
        ),
    ] {
        let err = bitacora_capture::install(&db.url, &options)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{err}");
    }
    app.batch_execute("CREATE TABLE nokey (v text)")
        .await
        .unwrap();
    let err = bitacora_capture::install(&db.url, &opts(&["nokey"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no primary key"), "{err}");

    // Undrained changes are not thrown away silently.
    let err = bitacora_capture::uninstall(&db.url, &[], false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 captured changes"), "{err}");
    let report = bitacora_capture::uninstall(&db.url, &[], true)
        .await
        .unwrap();
    assert!(report.schema_dropped);
    assert_eq!(report.tables, ["shop.orders"]);
    assert_eq!(report.discarded, 1);
    let left: (i64, String) = {
        let r = app
            .query_one("SELECT count(*), max(note) FROM shop.orders", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(left, (1, "second".to_owned()));
    let schema: Option<String> = app
        .query_one("SELECT to_regnamespace('bitacora_capture')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, None);
    // Writes work without capture; uninstalling again is harmless.
    app.batch_execute("UPDATE shop.orders SET note = 'third'")
        .await
        .unwrap();
    let again = bitacora_capture::uninstall(&db.url, &[], false)
        .await
        .unwrap();
    assert!(!again.schema_dropped);
    assert!(!bitacora_capture::status(&db.url).await.unwrap().installed);
}

#[tokio::test]
async fn masked_and_excluded_columns_never_leak() {
    let db = test_db!();
    let app = db.client().await;
    app.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, email text, password_hash text, ssn text, plan text);",
    )
    .await
    .unwrap();
    bitacora_capture::install(
        &db.url,
        &InstallOptions {
            exclude_columns: vec!["accounts.password_hash".into()],
            mask_columns: vec!["accounts.ssn".into(), "public.accounts.email".into()],
            full_rows: true,
            ..opts(&["accounts"])
        },
    )
    .await
    .unwrap();
    app.batch_execute(
        "INSERT INTO accounts VALUES (1, 'secret-mail@example.com', 'HASH-SECRET', 'SSN-111', 'free');
         INSERT INTO accounts VALUES (2, 'secret-mail@example.com', 'HASH-SECRET-2', 'SSN-222', 'free');
         UPDATE accounts SET password_hash = 'HASH-CHANGED' WHERE id = 1; -- excluded only: no record
         UPDATE accounts SET ssn = 'SSN-999', plan = 'pro' WHERE id = 1;
         DELETE FROM accounts WHERE id = 2;",
    )
    .await
    .unwrap();
    let secrets = [
        "secret-mail",
        "HASH-SECRET",
        "HASH-CHANGED",
        "SSN-111",
        "SSN-222",
        "SSN-999",
        "password_hash",
    ];
    let outbox: String = app
        .query_one(
            "SELECT string_agg(o::text, ' ') FROM bitacora_capture.outbox o",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for s in secrets {
        assert!(
            !outbox.contains(s),
            "`{s}` leaked into the outbox: {outbox}"
        );
    }
    // An application role cannot read the key (nor the outbox).
    // Roles are cluster-wide: a name of this test's own.
    let role_name = format!("{}_app", db.name);
    app.batch_execute(&format!(
        "CREATE ROLE {role_name} LOGIN; GRANT ALL ON accounts TO {role_name};"
    ))
    .await
    .unwrap();
    let role_url = db.url.replace("postgres@", &format!("{role_name}@"));
    let (role, conn) = tokio_postgres::connect(&role_url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let denied = role
        .query("SELECT * FROM bitacora_capture.mask_key", &[])
        .await
        .unwrap_err();
    assert!(bitacora_capture::pg_message(&denied).contains("permission denied"));
    // ... yet its own writes are captured, through the trigger.
    role.batch_execute("UPDATE accounts SET plan = 'team' WHERE id = 1")
        .await
        .unwrap();
    drop(role);

    let (_dir, store) = open_store();
    let drain = Drain::start(&db, &store);
    let events = drained(&db, &store, 5).await;
    drain.stop().await;
    let all = serde_json::to_string(&events).unwrap();
    for s in secrets {
        assert!(!all.contains(s), "`{s}` leaked into the log: {all}");
    }
    // Masked values: a keyed hash; equal values hash equal, different ones differ.
    let email_1 = change(&events[0], "email")["new"]
        .as_str()
        .unwrap()
        .to_owned();
    let email_2 = change(&events[1], "email")["new"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(email_1.starts_with("hmac-sha256:"), "{email_1}");
    assert_eq!(email_1, email_2);
    let ssn = change(&events[2], "ssn");
    assert_ne!(ssn["old"], ssn["new"]);
    assert_eq!(fields(&events[2]), ["plan", "ssn"]);
    assert_eq!(events[2]["metadata"]["before"]["plan"], "free");
    assert_eq!(events[2]["metadata"]["after"]["plan"], "pro");
    assert!(
        events[2]["metadata"]["after"]
            .get("password_hash")
            .is_none()
    );
    assert_eq!(events[3]["action"], "accounts.delete");
    assert_eq!(
        events[4]["changes"],
        json!([{"field": "plan", "old": "pro", "new": "team"}])
    );
    app.batch_execute(&format!(
        "REVOKE ALL ON accounts FROM {role_name}; DROP ROLE {role_name}"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn composite_keys_unicode_and_large_rows() {
    let db = test_db!();
    let app = db.client().await;
    app.batch_execute(
        r#"CREATE SCHEMA "Facturación";
           CREATE TABLE "Facturación"."líneas" (org int, lang text, n int, texto text, datos jsonb,
                                                 PRIMARY KEY (lang, org));
           CREATE TABLE docs (id uuid PRIMARY KEY, body text);"#,
    )
    .await
    .unwrap();
    bitacora_capture::install(&db.url, &opts(&[r#""Facturación"."líneas""#, "docs"]))
        .await
        .unwrap();
    let big = "ñ".repeat(300_000);
    app.batch_execute(&format!(
        r#"BEGIN;
           SELECT set_config('bitacora.actor_name', 'José Ñúñez 🚀', true);
           INSERT INTO "Facturación"."líneas" VALUES (7, 'es', 1, 'Añadir línea — “comillas” 日本語', '{{"k": "ü"}}');
           UPDATE "Facturación"."líneas" SET n = 2 WHERE org = 7;
           INSERT INTO docs VALUES ('6f1c1a1e-0000-4000-8000-000000000001', '{big}');
           UPDATE docs SET body = 'small';
           COMMIT;"#
    ))
    .await
    .unwrap();
    let (_dir, store) = open_store();
    let drain = Drain::start(&db, &store);
    let events = drained(&db, &store, 4).await;
    drain.stop().await;

    let line = &events[0];
    assert_eq!(line["action"], "Facturaci_n.l_neas.insert");
    // The composite key in the key's column order (lang, org).
    assert_eq!(
        line["target"],
        json!({"type": "Facturación.líneas", "id": "[\"es\",7]"})
    );
    assert_eq!(line["actor"]["name"], "José Ñúñez 🚀");
    assert_eq!(
        change(line, "texto")["new"],
        "Añadir línea — “comillas” 日本語"
    );
    assert_eq!(change(line, "datos")["new"], json!({"k": "ü"}));
    assert_eq!(events[1]["target"]["id"], "[\"es\",7]");

    let doc = &events[2];
    assert_eq!(doc["target"]["id"], "6f1c1a1e-0000-4000-8000-000000000001");
    let body = change(doc, "body")["new"].as_str().unwrap();
    assert!(
        body.starts_with("[truncated: 600002 bytes, sha256:"),
        "{body}"
    );
    assert_eq!(doc["metadata"]["truncated"], json!(["changes.body.new"]));
    let shrink = change(&events[3], "body");
    assert!(shrink["old"].as_str().unwrap().starts_with("[truncated"));
    assert_eq!(shrink["new"], "small");
}

#[tokio::test]
async fn a_lost_connection_is_recovered_and_nothing_is_drained_twice() {
    let db = test_db!();
    let app = db.client().await;
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    bitacora_capture::install(&db.url, &opts(&["t"]))
        .await
        .unwrap();
    let (_dir, store) = open_store();
    // Two drains on one outbox: one works, the other stands by.
    let drain = Drain::start(&db, &store);
    let standby = Drain::start(&db, &store);
    app.batch_execute("INSERT INTO t SELECT g, 0 FROM generate_series(1, 300) g")
        .await
        .unwrap();
    drained(&db, &store, 300).await;
    let states = [
        drain.status.snapshot().state,
        standby.status.snapshot().state,
    ];
    assert!(
        states.contains(&SourceState::Running) && states.contains(&SourceState::Standby),
        "{states:?}"
    );

    // Kill the drains' connections, repeatedly, while changes keep coming.
    for round in 0..5 {
        app.batch_execute(&format!(
            "UPDATE t SET v = {} WHERE id % 5 = {round}",
            round + 1
        ))
        .await
        .unwrap();
        // Once they have reconnected (backoff) from the previous round.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let killed: i64 = app
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = 'bitacora capture drain' \
                       AND datname = current_database()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if killed >= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no drain reconnected in round {round}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let events = drained(&db, &store, 600).await;
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 600, "every change exactly once");
    // The failure is visible while it lasts, and gone once recovered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states = [drain.status.snapshot(), standby.status.snapshot()];
        if states.iter().any(|s| s.state == SourceState::Running) {
            break;
        }
        assert!(Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain.stop().await;
    standby.stop().await;
}

#[tokio::test]
async fn a_source_that_is_not_installed_is_retried_until_it_is() {
    let db = test_db!();
    let (_dir, store) = open_store();
    let drain = Drain::start(&db, &store);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = drain.status.snapshot();
        if s.state == SourceState::Down {
            assert!(
                s.last_error.as_deref().unwrap().contains("not installed"),
                "{s:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = db.client().await;
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    bitacora_capture::install(&db.url, &opts(&["t"]))
        .await
        .unwrap();
    app.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    drained(&db, &store, 1).await;
    assert_eq!(drain.status.snapshot().failures, 0);
    drain.stop().await;
}

#[tokio::test]
async fn an_unreachable_source_is_reported_down_without_panicking() {
    let (_dir, store) = open_store();
    let mut config = DrainConfig::new("postgres://nobody@127.0.0.1:1/none", tenant());
    config.max_backoff = Duration::from_millis(100);
    let cancel = CancellationToken::new();
    let (task, status) = spawn_drain(
        config,
        store.clone(),
        Arc::new(IngestPolicy::default()),
        cancel.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while status.snapshot().failures < 2 {
        assert!(Instant::now() < deadline, "{:?}", status.snapshot());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = status.snapshot();
    assert_eq!(s.state, SourceState::Down);
    assert_eq!(s.source, "none@127.0.0.1:1");
    assert!(s.last_error.unwrap().contains("connect"));
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn the_sql_hmac_matches_rfc_2104() {
    let db = test_db!();
    let app = db.client().await;
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
        .await
        .unwrap();
    bitacora_capture::install(&db.url, &opts(&["t"]))
        .await
        .unwrap();
    // RFC 4231 test case 2 through the SQL function (the value's JSON text is what is keyed).
    let (inner, outer) = bitacora_capture::install::hmac_pads(b"Jefe");
    let got: Value = app
        .query_one(
            "SELECT bitacora_capture.mask(to_jsonb($1::text), $2, $3)",
            &[
                &"what do ya want for nothing?",
                &inner.as_slice(),
                &outer.as_slice(),
            ],
        )
        .await
        .unwrap()
        .get(0);
    // HMAC over `"what do ya want for nothing?"` (with the quotes), computed independently.
    let expected = {
        use sha2::Digest as _;
        let msg = br#""what do ya want for nothing?""#;
        let ih = sha2::Sha256::new()
            .chain_update(inner)
            .chain_update(msg)
            .finalize();
        hex::encode(
            sha2::Sha256::new()
                .chain_update(outer)
                .chain_update(ih)
                .finalize(),
        )
    };
    assert_eq!(got, json!(format!("hmac-sha256:{expected}")));
}

#[tokio::test]
async fn the_sqlx_helper_sets_the_context_for_the_transaction_only() {
    use bitacora_client::capture::{CaptureContext, set_context_sqlx};
    let db = test_db!();
    let app = db.client().await;
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    bitacora_capture::install(&db.url, &opts(&["t"]))
        .await
        .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    set_context_sqlx(
        &mut tx,
        &CaptureContext::new()
            .actor_id("svc-7")
            .actor_type("service")
            .request_id("r-sqlx"),
    )
    .await
    .unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The same pooled connection, next transaction: nothing carried over.
    sqlx::query("INSERT INTO t VALUES (2)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = app
        .query(
            "SELECT actor_id, actor_type, request_id FROM bitacora_capture.outbox ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (
                Some("svc-7".into()),
                Some("service".into()),
                Some("r-sqlx".into())
            ),
            (None, None, None)
        ]
    );
}

#[tokio::test]
async fn a_waiting_drain_is_woken_by_notify_not_by_polling() {
    let db = test_db!();
    let app = db.client().await;
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    bitacora_capture::install(&db.url, &opts(&["t"]))
        .await
        .unwrap();
    let (_dir, store) = open_store();
    let mut config = DrainConfig::new(db.url.clone(), tenant());
    config.poll_interval = Duration::from_secs(120);
    let cancel = CancellationToken::new();
    let (task, _status) = spawn_drain(
        config,
        store.clone(),
        Arc::new(IngestPolicy::default()),
        cancel.clone(),
    );
    // Once the drain waits, it has asked the triggers for a NOTIFY.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening: bool = app
            .query_one("SELECT listening FROM bitacora_capture.drain_state", &[])
            .await
            .unwrap()
            .get(0);
        if listening {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drain never waits for NOTIFY"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
    let started = Instant::now();
    drained(&db, &store, 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the poll, not the NOTIFY"
    );
    cancel.cancel();
    task.await.unwrap();
}
