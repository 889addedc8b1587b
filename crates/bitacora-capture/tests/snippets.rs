//! The application snippets of `examples/capture/` (Python with SQLAlchemy + psycopg, Node with
//! node-postgres), run against a real database: what the docs show is what works.
//!
//! They need `pip install -r examples/capture/python/requirements.txt` and `npm install` in
//! `examples/capture/node` (`.ci/run` does both). Missing PostgreSQL or packages skip the test
//! with a printed reason, unless `CI` is set: then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::NoTls;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/capture")
}

fn unavailable(what: String) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and {what}");
    }
    eprintln!("skipping: {what}");
}

/// A fresh database with `tickets` captured; `None` (after reporting) without PostgreSQL.
async fn database(tag: &str) -> Option<(String, String)> {
    let admin = match tokio_postgres::connect(&format!("{SERVER}/postgres"), NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            unavailable(format!("PostgreSQL at {SERVER} is unreachable: {e}"));
            return None;
        }
    };
    let name = format!(
        "bitacora_snippet_{tag}_{}",
        hex::encode(rand::random::<[u8; 4]>())
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{SERVER}/{name}");
    let (app, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    app.batch_execute("CREATE TABLE tickets (id int PRIMARY KEY, title text, status text)")
        .await
        .unwrap();
    bitacora_capture::install(
        &url,
        &bitacora_capture::InstallOptions {
            tables: vec!["tickets".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Some((name, url))
}

async fn drop_database(name: &str) {
    let (admin, conn) = tokio_postgres::connect(&format!("{SERVER}/postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// (op, actor_id, actor_name, ip, user_agent, request_id) of every outbox row, in order; `op`
/// folded to lower case as the drain does (schema version 2 triggers store `TG_OP` as it is).
type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn outbox(url: &str) -> Vec<Row> {
    let (app, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    app.query(
        "SELECT lower(op), actor_id, actor_name, ip, user_agent, request_id \
         FROM bitacora_capture.outbox ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

fn run(mut cmd: Command) -> String {
    let out = cmd.output().expect("the interpreter runs");
    assert!(
        out.status.success(),
        "{:?} failed:\n{}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[tokio::test]
async fn the_python_sqlalchemy_snippet_sets_the_context() {
    let ready = Command::new("python3")
        .args(["-c", "import sqlalchemy, psycopg"])
        .output();
    if !ready.is_ok_and(|o| o.status.success()) {
        return unavailable(
            "python3 with SQLAlchemy and psycopg is missing (pip install -r \
             examples/capture/python/requirements.txt)"
                .into(),
        );
    }
    let Some((name, url)) = database("py").await else {
        return;
    };
    let mut cmd = Command::new("python3");
    cmd.current_dir(examples().join("python"))
        .arg("demo.py")
        .arg(url.replace("postgres://", "postgresql+psycopg://"));
    assert_eq!(run(cmd).trim(), "ok");
    let rows = outbox(&url).await;
    drop_database(&name).await;
    let actor = (
        some("42"),
        some("Ana Pérez"),
        some("192.168.1.100"),
        some("python-demo"),
        some("req-py-1"),
    );
    assert_eq!(
        rows,
        [
            (
                "insert".into(),
                actor.0.clone(),
                actor.1.clone(),
                actor.2.clone(),
                actor.3.clone(),
                actor.4.clone()
            ),
            ("update".into(), actor.0, actor.1, actor.2, actor.3, actor.4),
            ("delete".into(), None, None, None, None, None),
        ]
    );
}

#[tokio::test]
async fn the_node_postgres_snippet_sets_the_context() {
    let node = examples().join("node");
    if !node.join("node_modules/pg").is_dir() {
        return unavailable(
            "node-postgres is not installed (run `npm install` in examples/capture/node)".into(),
        );
    }
    let Some((name, url)) = database("js").await else {
        return;
    };
    let mut cmd = Command::new("node");
    cmd.current_dir(&node).arg("demo.js").arg(&url);
    assert_eq!(run(cmd).trim(), "ok");
    let rows = outbox(&url).await;
    drop_database(&name).await;
    let actor = (
        some("7"),
        some("Dr. Nexo"),
        some("10.0.2.45"),
        some("node-demo"),
        some("req-js-1"),
    );
    assert_eq!(
        rows,
        [
            (
                "insert".into(),
                actor.0.clone(),
                actor.1.clone(),
                actor.2.clone(),
                actor.3.clone(),
                actor.4.clone()
            ),
            ("update".into(), actor.0, actor.1, actor.2, actor.3, actor.4),
            ("delete".into(), None, None, None, None, None),
        ]
    );
}
