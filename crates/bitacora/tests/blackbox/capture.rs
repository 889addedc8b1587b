//! Database change capture end to end: `bitacora capture` on a real PostgreSQL database, and
//! `bitacora serve --capture-database-url` draining it, including `kill -9` mid-drain.
//! Without PostgreSQL at 127.0.0.1:5432 these skip with a printed reason, unless `CI` is set:
//! then they fail.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bitacora_client::{ExportFormat, SearchParams};
use futures::TryStreamExt as _;
use serde_json::Value;
use tokio_postgres::NoTls;

use crate::common::*;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own, dropped when the test ends.
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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("bitacora_bb_{}_{nanos}", std::process::id());
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

/// `bitacora` with a clean environment; the store's variable is set to nonsense to prove
/// `capture` never reads it.
fn bitacora(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitacora"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BITACORA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("BITACORA_LOG_LEVEL", "warn")
        .env(
            "BITACORA_DATABASE_URL",
            "postgres://not-the-app-db.invalid/x",
        )
        .arg("--data")
        .arg(data);
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

async fn readyz(client: &bitacora_client::Client) -> Value {
    serde_json::from_str(&client.readyz().await.unwrap()).unwrap()
}

async fn outbox_len(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM bitacora_capture.outbox", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn capture_commands_install_report_and_uninstall() {
    let db = test_db!();
    let tmp = tempfile::tempdir().unwrap();
    let app = db.client().await;
    app.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, email text, pw text);
         CREATE TABLE memberships (org int, usr int, role text, PRIMARY KEY (org, usr));",
    )
    .await
    .unwrap();
    let out = stdout(bitacora(tmp.path()).args([
        "capture",
        "install",
        "--database-url",
        &db.url,
        "--table",
        "public.users",
        "memberships",
        "--exclude-column",
        "users.pw",
        "--mask-column",
        "users.email",
        "--full-rows",
    ]));
    assert!(out.contains("bitacora capture installed in"), "{out}");
    assert!(
        out.contains("public.users  key (id)  excluded: pw  masked: email  full rows"),
        "{out}"
    );
    assert!(out.contains("public.memberships  key (org, usr)"), "{out}");
    assert!(!out.contains("postgres@"), "the URL is not echoed: {out}");
    // Again: harmless.
    let out = stdout(bitacora(tmp.path()).args([
        "capture",
        "install",
        "--database-url",
        &db.url,
        "--table",
        "public.users",
    ]));
    assert!(out.contains("already installed"), "{out}");

    let status: Value = serde_json::from_str(&stdout(bitacora(tmp.path()).args([
        "capture",
        "status",
        "--json",
        "--database-url",
        &db.url,
    ])))
    .unwrap();
    assert_eq!(status["installed"], true);
    assert_eq!(status["tables"].as_array().unwrap().len(), 2);
    assert_eq!(status["pending"], 0);

    let err = String::from_utf8(
        bitacora(tmp.path())
            .args([
                "capture",
                "install",
                "--database-url",
                &db.url,
                "--table",
                "nope",
            ])
            .assert()
            .failure()
            .get_output()
            .stderr
            .clone(),
    )
    .unwrap();
    assert!(err.contains("table `nope` does not exist"), "{err}");

    app.batch_execute("INSERT INTO users VALUES (1, 'a@b', 'x')")
        .await
        .unwrap();
    let err = String::from_utf8(
        bitacora(tmp.path())
            .args(["capture", "uninstall", "--database-url", &db.url])
            .assert()
            .failure()
            .get_output()
            .stderr
            .clone(),
    )
    .unwrap();
    assert!(err.contains("--force"), "{err}");
    let out = stdout(bitacora(tmp.path()).args([
        "capture",
        "uninstall",
        "--database-url",
        &db.url,
        "--force",
    ]));
    assert!(out.contains("uninstalled"), "{out}");
    let out = stdout(bitacora(tmp.path()).args(["capture", "status", "--database-url", &db.url]));
    assert!(out.contains("not installed"), "{out}");
    let n: i64 = app
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "application data untouched");
}

#[tokio::test]
async fn kill_9_mid_drain_records_every_change_exactly_once() {
    let db = test_db!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let app = db.client().await;
    app.batch_execute("CREATE TABLE items (id int PRIMARY KEY, qty int, secret text)")
        .await
        .unwrap();
    stdout(bitacora(tmp.path()).args([
        "capture",
        "install",
        "--database-url",
        &db.url,
        "--table",
        "items",
        "--mask-column",
        "items.secret",
    ]));
    const N: i64 = 4000;
    for chunk in 0..(N / 200) {
        app.batch_execute(&format!(
            "BEGIN; SELECT set_config('bitacora.actor_id', 'loader', true);
             INSERT INTO items SELECT g, g, 'TOPSECRET-' || g FROM generate_series({}, {}) g; COMMIT;",
            chunk * 200 + 1,
            chunk * 200 + 200
        ))
        .await
        .unwrap();
    }

    let mut server = spawn_binary_with(&data, &["--capture-database-url", &db.url]).await;
    // Kill it as soon as it has drained something, while it still has more to do.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = readyz(&server.client).await;
        if r["capture"][0]["events_drained"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing drained: {r}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let left = outbox_len(&db).await;
    eprintln!("killed with {left} of {N} changes still in the outbox");

    // More changes while bitacora is down; then a restart drains everything.
    app.batch_execute("UPDATE items SET qty = qty + 1 WHERE id <= 10")
        .await
        .unwrap();
    let server = spawn_binary_with(&data, &["--capture-database-url", &db.url]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox_len(&db).await > 0 {
        assert!(Instant::now() < deadline, "not drained after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<_> = server
        .client
        .search_all(&SearchParams::new().action("items.*").limit(1000))
        .try_collect()
        .await
        .unwrap();
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(events.len() as i64, N + 10, "one event per change");
    assert_eq!(ids.len(), events.len(), "no change recorded twice");
    let inserts = events.iter().filter(|e| e.action == "items.insert").count();
    assert_eq!(inserts as i64, N);

    // /readyz and /metrics show the source.
    let r = readyz(&server.client).await;
    assert_eq!(r["status"], "ready");
    assert_eq!(r["capture"][0]["state"], "running", "{r}");
    assert_eq!(r["capture"][0]["tenant"], "default");
    assert!(
        !r.to_string().contains("postgres@"),
        "no URL in /readyz: {r}"
    );
    let metrics = server.client.metrics().await.unwrap();
    for name in [
        "bitacora_capture_events_drained_total",
        "bitacora_capture_outbox_depth",
        "bitacora_capture_lag_seconds",
        "bitacora_capture_up",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // The masked column never reaches an export.
    let export = server
        .client
        .export_bytes(ExportFormat::Ndjson, &SearchParams::new().action("items.*"))
        .await
        .unwrap();
    let export = String::from_utf8(export).unwrap();
    assert!(!export.contains("TOPSECRET"));
    assert!(export.contains("hmac-sha256:"));
    // A graceful stop signs what was appended (an unsigned tail is what `verify` flags).
    let mut server = server;
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).success());

    // The log is intact.
    let out = stdout(
        bitacora(&data)
            .env_remove("BITACORA_DATABASE_URL")
            .arg("verify"),
    );
    assert!(out.contains("intact"), "{out}");
}

#[tokio::test]
async fn an_unreachable_capture_source_does_not_stop_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = spawn_binary_with(
        &tmp.path().join("data"),
        &[
            "--capture-database-url",
            "postgres://nobody:hunter2@127.0.0.1:1/shop",
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = readyz(&server.client).await;
        if r["capture"][0]["state"] == "down" {
            assert_eq!(r["status"], "ready");
            assert_eq!(r["capture"][0]["source"], "shop@127.0.0.1:1");
            assert!(!r.to_string().contains("hunter2"));
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The API works meanwhile.
    let ack = server
        .client
        .send(&event(serde_json::json!({"action": "user.login"})))
        .await
        .unwrap();
    assert!(!ack.duplicate);
}
