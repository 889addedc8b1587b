//! The PostgreSQL store through the real binary: several `bitacora serve` processes on one
//! database, the CLI commands with `--database-url`, and full-text search with accents.
//!
//! Each test creates its own database and drops it afterwards. Without a reachable
//! PostgreSQL at 127.0.0.1:5432 (or `BITACORA_TEST_POSTGRES`) the tests skip with a printed
//! reason, except when `CI` is set: then they fail.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitacora_client::{Client, SearchParams};
use bitacora_core::api::BatchItem;
use bitacora_store_postgres::testing::TestDatabase;
use common::{PATIENCE, event, wait_until_healthy};
use futures::TryStreamExt as _;
use serde_json::json;

/// `bitacora` with no `BITACORA_*` variable from the environment.
fn bitacora() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitacora"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BITACORA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("BITACORA_LOG_LEVEL", "warn");
    cmd
}

/// `bitacora keys create --scope admin` on the database; the secret is stdout's last line.
/// Like every command that appends (its self-audit event), it needs the signing key file the
/// servers use, to seal what it writes (creating the file when there is none).
fn create_admin_key(url: &str, signing_key: &Path) -> String {
    let out = bitacora()
        .args(["keys", "create", "--scope", "admin", "--name", "pg-test"])
        .args(["--database-url", url])
        .arg("--signing-key-file")
        .arg(signing_key)
        .output()
        .expect("run bitacora keys create");
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().trim().to_owned()
}

struct Server {
    child: Child,
    client: Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    /// SIGTERM, then waits for a clean exit (the writer drains and the final checkpoint is
    /// signed).
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the server exited with {status}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `bitacora serve --database-url URL` on port 0.
async fn serve(url: &str, signing_key: &Path, admin_key: &str) -> Server {
    serve_with_env(url, signing_key, admin_key, &[]).await
}

/// [`serve`] with `BITACORA_*` settings.
async fn serve_with_env(
    url: &str,
    signing_key: &Path,
    admin_key: &str,
    env: &[(&str, &str)],
) -> Server {
    let mut cmd = bitacora();
    cmd.envs(env.iter().copied());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .arg("--signing-key-file")
        .arg(signing_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("spawn bitacora serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("listening on http://")
                && let Ok(addr) = rest.trim().parse::<SocketAddr>()
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(PATIENCE)
        .expect("a `listening on` line from bitacora serve");
    let client = Client::new(format!("http://{addr}"), admin_key).unwrap();
    wait_until_healthy(&client).await;
    Server { child, client }
}

async fn all_events(client: &Client, tenant: &str) -> Vec<bitacora_core::Event> {
    client
        .search_all(&SearchParams::new().tenant(tenant).limit(1000))
        .try_collect()
        .await
        .expect("search")
}

fn verify(url: &str, signing_key: &Path) -> (bool, String) {
    let out = bitacora()
        .args(["verify", "--database-url", url])
        .arg("--signing-key-file")
        .arg(signing_key)
        .output()
        .expect("run bitacora verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn sql(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.batch_execute(statement).await.expect("sql");
}

const TENANTS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Two servers on one database, written to concurrently, both sequencing the same tenants:
/// every tenant's log is 0..n with no gap and no duplicate, re-sent events are duplicates
/// whichever server gets them, and `bitacora verify` finds the Merkle log intact (and names
/// a row edited afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_one_database_without_gaps_or_forks() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signing_key: PathBuf = dir.path().join("signing-key");
    let url = db.url().to_owned();
    let admin = tokio::task::spawn_blocking({
        let (url, signing_key) = (url.clone(), signing_key.clone());
        move || create_admin_key(&url, &signing_key)
    })
    .await
    .unwrap();
    // The CLI created the signing key; both servers share it.
    let a = serve(&url, &signing_key, &admin).await;
    let b = serve(&url, &signing_key, &admin).await;

    let writers = 4usize;
    let batches = 12usize;
    let per_batch = 40usize;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = if w % 2 == 0 {
            a.client.clone()
        } else {
            b.client.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut stored = 0usize;
            for n in 0..batches {
                let events: Vec<_> = (0..per_batch)
                    .map(|i| {
                        let tenant = TENANTS[(w + n + i) % TENANTS.len()];
                        // Every writer also re-sends ids of the "shared" series, so the same
                        // event reaches both servers at about the same time.
                        let id = if i % 10 == 0 {
                            format!("shared-{n}-{i}")
                        } else {
                            format!("w{w}-{n}-{i}")
                        };
                        let tenant = if i % 10 == 0 { "alpha" } else { tenant };
                        event(json!({
                            "id": id, "tenant": tenant, "action": "doc.edit",
                            // Shared ids carry identical content, whoever sends them.
                            "actor": {"id": if i % 10 == 0 { "shared".to_owned() } else { format!("u{w}") }},
                            "description": format!("edición número {i} de la auditoría"),
                        }))
                    })
                    .collect();
                let resp = client.send_batch(&events).await.expect("batch");
                for item in &resp.results {
                    match item {
                        BatchItem::Stored(ack) if !ack.duplicate => stored += 1,
                        BatchItem::Stored(_) => {}
                        other => panic!("rejected: {other:?}"),
                    }
                }
            }
            stored
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap();
    }
    let shared = batches * per_batch.div_ceil(10);
    let unique = writers * batches * (per_batch - per_batch.div_ceil(10)) + shared;
    assert_eq!(stored, unique, "each distinct id stored exactly once");

    let mut total = 0;
    let mut sizes = BTreeMap::new();
    for tenant in TENANTS {
        // Read through the other server than the one most of them were written to.
        let events = all_events(&b.client, tenant).await;
        let mut seqs: Vec<u64> = events.iter().map(|e| e.seq.unwrap()).collect();
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "tenant {tenant}: seqs are 0..n, no gap, no dup"
        );
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), events.len(), "tenant {tenant}: ids are unique");
        total += events.len();
        sizes.insert(tenant, events.len());
    }
    assert_eq!(total, unique);

    // Full text with accents folded, through either server.
    let found = a
        .client
        .search(
            &SearchParams::new()
                .tenant("beta")
                .set("q", "AUDITORIA edicion"),
        )
        .await
        .unwrap();
    assert!(!found.events.is_empty());

    a.stop();
    b.stop();

    let (ok, output) = tokio::task::spawn_blocking({
        let (url, key) = (url.clone(), signing_key.clone());
        move || verify(&url, &key)
    })
    .await
    .unwrap();
    assert!(ok, "verify after two servers: {output}");

    // And the check has teeth on this store too: an edited row is named by its seq.
    sql(
        &url,
        "UPDATE events SET body = replace(body, 'edición', 'edicion')
         WHERE tenant_id = (SELECT id FROM tenants WHERE name = 'gamma') AND seq = 5",
    )
    .await;
    let (ok, output) = tokio::task::spawn_blocking({
        let (url, key) = (url.clone(), signing_key.clone());
        move || verify(&url, &key)
    })
    .await
    .unwrap();
    assert!(!ok, "verify must fail after tampering: {output}");
    assert!(output.contains("seq 5"), "{output}");
    drop(db);
}

/// `serve` on an empty PostgreSQL store prints the initial admin key once (there is no data
/// folder to write it to), and `keys list` / `export` work against the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_take_the_database_url() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signing_key = dir.path().join("signing-key");
    let url = db.url().to_owned();

    let mut cmd = bitacora();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .arg("--signing-key-file")
        .arg(&signing_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    // `listening on` comes first, then (on an empty store) the key, printed once.
    let (mut addr, mut key) = (None::<SocketAddr>, None::<String>);
    while addr.is_none() || key.is_none() {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("the listening line and the key");
        if let Some(rest) = line.strip_prefix("listening on http://") {
            addr = Some(rest.trim().parse().unwrap());
        }
        if line.trim().starts_with("bk_") {
            key = Some(line.trim().to_owned());
        }
    }
    let (addr, key) = (addr.unwrap(), key.unwrap());
    let server = Server {
        child,
        client: Client::new(format!("http://{addr}"), &key).unwrap(),
    };
    wait_until_healthy(&server.client).await;
    assert!(
        !dir.path().join("initial-admin-key").exists(),
        "no key file for PostgreSQL"
    );
    server
        .client
        .send(&event(json!({"id": "x-1", "action": "user.login",
                               "description": "Sesión iniciada en la auditoría"})))
        .await
        .unwrap();
    let found = server
        .client
        .search(&SearchParams::new().set("q", "auditoria sesion"))
        .await
        .unwrap();
    assert_eq!(found.events.len(), 1);
    server.stop();

    let url2 = url.clone();
    let signing_key2 = signing_key.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        let list = bitacora()
            .args(["keys", "list", "--json", "--database-url", &url2])
            .output()
            .unwrap();
        let export = bitacora()
            .args(["export", "--format", "ndjson", "--database-url", &url2])
            .arg("--signing-key-file")
            .arg(&signing_key2)
            .output()
            .unwrap();
        (list, export)
    })
    .await
    .unwrap();
    let (list, export) = outputs;
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let keys: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let text = String::from_utf8(export.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("\"id\":\"x-1\""), "{text}");
    drop(db);
}

/// The size of the tenant's latest checkpoint, as served (0 when none).
async fn served_size(client: &Client, tenant: &str) -> u64 {
    let Ok(note) = client.checkpoint(Some(tenant)).await else {
        return 0;
    };
    note.lines().nth(1).unwrap().parse().unwrap()
}

async fn wait_served_size(client: &Client, tenant: &str, size: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while served_size(client, tenant).await < size {
        assert!(
            std::time::Instant::now() < deadline,
            "tenant {tenant} not signed at {size} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_size(client, tenant).await, size);
}

/// Issue 14, finding 3, on PostgreSQL: a row inserted by hand (correct leaf hash, the log's
/// size and Merkle frontier updated) is never signed by the servers, `/readyz` and `verify`
/// say so naming its seq, and `bitacora verify --accept-tail` is the way back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_inserted_by_hand_is_not_signed_until_accepted() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signing_key = dir.path().join("signing-key");
    let url = db.url().to_owned();
    let admin = tokio::task::spawn_blocking({
        let (url, signing_key) = (url.clone(), signing_key.clone());
        move || create_admin_key(&url, &signing_key)
    })
    .await
    .unwrap();
    let server = serve(&url, &signing_key, &admin).await;
    server
        .client
        .send_batch(&common::numbered("acme", "a", 5))
        .await
        .unwrap();
    wait_served_size(&server.client, "acme", 5).await;
    server.stop();

    // The attack, with the servers stopped: a copy of seq 4 as seq 5 under a new id.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            r#"INSERT INTO events (tenant_id, seq, received_at, event_id, occurred_at, action,
                   category, severity, outcome, actor_id, actor_search, target_type, target_id,
                   ip, source, fingerprint, leaf_hash, body, fts)
               SELECT tenant_id, 5, received_at, 'forged-1', occurred_at, action, category,
                   severity, outcome, actor_id, actor_search, target_type, target_id, ip, source,
                   fingerprint,
                   sha256('\x00'::bytea || convert_to(replace(body, '"id":"a-4"', '"id":"forged-1"'), 'UTF8')),
                   replace(body, '"id":"a-4"', '"id":"forged-1"'), fts
               FROM events WHERE tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
                 AND seq = 4"#,
        )
        .await
        .unwrap();
    // Consistent with its body in every place `verify` re-derives (the fingerprint, the
    // counters): only the seal can tell this row was not written by bitacora.
    let forged: String = client
        .query_one(
            "SELECT body FROM events WHERE tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               AND seq = 5",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let fingerprint = bitacora_store::check::fingerprint_of(
        &bitacora_store::check::parse_body(forged.as_bytes()).unwrap(),
    );
    client
        .execute(
            "UPDATE events SET fingerprint = $1
             WHERE tenant_id = (SELECT id FROM tenants WHERE name = 'acme') AND seq = 5",
            &[&&fingerprint[..]],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "UPDATE action_counts a SET count = count + 1 FROM events e
               WHERE e.tenant_id = a.tenant_id AND e.seq = 5 AND a.action = e.action
                 AND a.category = e.category
                 AND a.tenant_id = (SELECT id FROM tenants WHERE name = 'acme');
             UPDATE actor_stats a SET count = count + 1 FROM events e
               WHERE e.tenant_id = a.tenant_id AND e.seq = 5 AND a.actor_id = e.actor_id
                 AND a.tenant_id = (SELECT id FROM tenants WHERE name = 'acme');
             UPDATE event_blocks b SET count = count + 1,
                 min_at = LEAST(b.min_at, e.occurred_at), max_at = GREATEST(b.max_at, e.occurred_at)
               FROM events e
               WHERE e.tenant_id = b.tenant_id AND e.seq = 5 AND b.block = e.seq >> 12
                 AND b.tenant_id = (SELECT id FROM tenants WHERE name = 'acme');
             INSERT INTO stats_days AS r
                 (tenant_id, day, category, severity, outcome, no_actor, count)
               SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, category, severity,
                      outcome, actor_id IS NULL, 1
               FROM events WHERE seq = 5
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, day, category, severity, outcome, no_actor)
               DO UPDATE SET count = r.count + 1;
             INSERT INTO stats_day_actors AS r (tenant_id, day, actor_id, count)
               SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, actor_id, 1
               FROM events WHERE seq = 5 AND actor_id IS NOT NULL
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, day, actor_id) DO UPDATE SET count = r.count + 1;
             INSERT INTO stats_day_ips AS r (tenant_id, day, ip, count)
               SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, ip, 1
               FROM events WHERE seq = 5 AND ip IS NOT NULL
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, day, ip) DO UPDATE SET count = r.count + 1;
             INSERT INTO stats_hours AS r
                 (tenant_id, hour, category, severity, outcome, no_actor, count)
               SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), category, severity,
                      outcome, actor_id IS NULL, 1
               FROM events WHERE seq = 5
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, hour, category, severity, outcome, no_actor)
               DO UPDATE SET count = r.count + 1;
             INSERT INTO stats_hour_actors AS r (tenant_id, hour, actor_id, count)
               SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), actor_id, 1
               FROM events WHERE seq = 5 AND actor_id IS NOT NULL
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, hour, actor_id) DO UPDATE SET count = r.count + 1;
             INSERT INTO stats_hour_ips AS r (tenant_id, hour, ip, count)
               SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), ip, 1
               FROM events WHERE seq = 5 AND ip IS NOT NULL
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, hour, ip) DO UPDATE SET count = r.count + 1;
             INSERT INTO event_facets AS f
                 (tenant_id, action, category, severity, outcome, source, block, count,
                  areas_0, areas_1, areas_2, areas_3, actors_0, actors_1, actors_2, actors_3)
               SELECT tenant_id, action, category, severity, outcome, coalesce(source, ''),
                      seq >> 12, 1, -1, -1, -1, -1, -1, -1, -1, -1
               FROM events WHERE seq = 5
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, action, category, severity, outcome, source, block)
               DO UPDATE SET count = f.count + 1, areas_0 = -1, areas_1 = -1, areas_2 = -1,
                  areas_3 = -1, actors_0 = -1, actors_1 = -1, actors_2 = -1,
                  actors_3 = -1;
             INSERT INTO facet_counts AS f
                 (tenant_id, action, category, severity, outcome, source, count,
                  areas_0, areas_1, areas_2, areas_3, actors_0, actors_1, actors_2, actors_3)
               SELECT tenant_id, action, category, severity, outcome, coalesce(source, ''), 1,
                      -1, -1, -1, -1, -1, -1, -1, -1
               FROM events WHERE seq = 5
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme')
               ON CONFLICT (tenant_id, action, category, severity, outcome, source)
               DO UPDATE SET count = f.count + 1, areas_0 = -1, areas_1 = -1, areas_2 = -1,
                  areas_3 = -1, actors_0 = -1, actors_1 = -1, actors_2 = -1,
                  actors_3 = -1;
             INSERT INTO event_addresses (tenant_id, block, ip, first, offsets)
               SELECT tenant_id, seq >> 12, ip, (seq & 4095)::int2, ARRAY[(seq & 4095)::int2]
               FROM events WHERE seq = 5 AND ip IS NOT NULL
                 AND tenant_id = (SELECT id FROM tenants WHERE name = 'acme');",
        )
        .await
        .unwrap();
    let mut range = bitacora_core::merkle::CompactRange::new();
    for r in client
        .query(
            "SELECT leaf_hash FROM events WHERE tenant_id = (SELECT id FROM tenants WHERE name = 'acme') ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
    {
        let leaf: &[u8] = r.get(0);
        range.append(leaf.try_into().unwrap()).unwrap();
    }
    assert_eq!(range.size(), 6);
    client
        .execute(
            "UPDATE tenants SET size = 6, frontier = $1 WHERE name = 'acme'",
            &[&range.hashes().concat()],
        )
        .await
        .unwrap();

    let server = serve(&url, &signing_key, &admin).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(served_size(&server.client, "acme").await, 5);
    let ready = server.client.readyz().await.unwrap();
    assert!(
        ready.contains("\"integrity\":\"unexplained tail\""),
        "{ready}"
    );
    assert!(ready.contains("\"first_seq\":5"), "{ready}");
    // The server's own appends after it do not launder it.
    server
        .client
        .send_batch(&common::numbered("acme", "b", 2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(served_size(&server.client, "acme").await, 5);
    server.stop();

    let (ok, out) = verify(&url, &signing_key);
    assert!(!ok, "{out}");
    assert!(
        out.contains("tenant acme: UNEXPLAINED TAIL: seq 5"),
        "{out}"
    );

    let accept = bitacora()
        .args([
            "verify",
            "--tenant",
            "acme",
            "--accept-tail",
            "--database-url",
            &url,
        ])
        .arg("--signing-key-file")
        .arg(&signing_key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&accept.stdout),
        String::from_utf8_lossy(&accept.stderr)
    );
    assert!(accept.status.success(), "{text}");
    assert!(text.contains("accepted events 5..8"), "{text}");

    let server = serve(&url, &signing_key, &admin).await;
    // The three accepted events and the acceptance's own event.
    wait_served_size(&server.client, "acme", 9).await;
    server.stop();
    let (ok, out) = verify(&url, &signing_key);
    assert!(ok, "{out}");
    drop(db);
}

/// Two servers on one database deliver a stream of every tenant through one of them at a
/// time (a lease in the store); the one delivering is killed with `kill -9` mid-stream, a
/// batch in flight, and the other takes over from the stored positions once the lease runs
/// out. The receiver (verifying every signature) ends with every event of every tenant, each
/// tenant's in `seq` order: duplicates allowed, gaps not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_delivers_per_destination_and_another_takes_over_when_it_dies() {
    use common::receiver::{Receiver, check_in_order_per_tenant};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let signing_key: PathBuf = dir.path().join("signing-key");
    let url = db.url().to_owned();
    let admin = tokio::task::spawn_blocking({
        let (url, signing_key) = (url.clone(), signing_key.clone());
        move || create_admin_key(&url, &signing_key)
    })
    .await
    .unwrap();
    // The lease outlives a delivery attempt (timeout 1 s) with room to spare, so the server
    // that holds it keeps it while it is alive, however slow the receiver.
    let env = [
        ("BITACORA_DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true"),
        ("BITACORA_DELIVERY__POLL_INTERVAL_MS", "50"),
        ("BITACORA_DELIVERY__LEASE_SECS", "4"),
        ("BITACORA_DELIVERY__MAX_BATCH", "10"),
        ("BITACORA_DELIVERY__TIMEOUT_SECS", "1"),
        ("BITACORA_DELIVERY__MAX_BACKOFF_SECS", "1"),
    ];
    let mut servers = vec![
        serve_with_env(&url, &signing_key, &admin, &env).await,
        serve_with_env(&url, &signing_key, &admin, &env).await,
    ];
    let r = servers[0]
        .client
        .request(reqwest::Method::POST, "/v1/destinations")
        .json(&json!({"name": "siem", "kind": "webhook", "stream": true,
                      "url": receiver.url("/hook"), "filter": {"action": "item.*"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let d: serde_json::Value = r.json().await.unwrap();
    // A slow receiver (50 ms a request, 10 events a batch: about 150 events/s over the three
    // tenants), so the stream is still flowing when the test acts.
    receiver
        .control(json!({"secret": d["secret"], "delay": 0.05}))
        .await;
    let batch = |tenant: &str, prefix: &str, n: usize| -> Vec<_> {
        (0..n)
            .map(|i| event(json!({"id": format!("{prefix}-{i}"), "tenant": tenant, "action": "item.touch"})))
            .collect()
    };
    // The backlog, written through both servers.
    for (i, tenant) in TENANTS.iter().enumerate() {
        servers[i % 2]
            .client
            .send_batch(&batch(tenant, "a", 300))
            .await
            .unwrap();
    }
    let total_a = 300 * TENANTS.len();
    let delivered = || async {
        check_in_order_per_tenant(&receiver.accepted("/hook").await)
            .values()
            .map(Vec::len)
            .sum::<usize>()
    };

    // Exactly one server delivers; the other stands by.
    let states = |servers: &[Server]| {
        let clients: Vec<Client> = servers.iter().map(|s| s.client.clone()).collect();
        async move {
            let mut states = Vec::new();
            for c in clients {
                let ready: serde_json::Value = c
                    .request_without_key(reqwest::Method::GET, "/readyz")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                states.push(
                    ready["delivery"][0]["state"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            states
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let running = loop {
        let states = states(&servers).await;
        let n = delivered().await;
        if n >= 100 && states.iter().filter(|s| *s == "standby").count() == 1 {
            assert!(
                states.iter().any(|s| s == "running" || s == "retrying"),
                "{states:?}"
            );
            break states.iter().position(|s| s != "standby").unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{states:?}, {n} delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Kill the delivering server mid-stream (with a request in flight: every request takes
    // 50 ms at the receiver).
    let mut dead = servers.remove(running);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let at_kill = delivered().await;
    assert!(
        at_kill < total_a,
        "the stream was over before the kill ({at_kill} of {total_a})"
    );
    // The survivor takes the stream over once the lease runs out, and gets more events.
    let survivor = servers.remove(0);
    receiver.control(json!({"delay": 0.0})).await;
    for tenant in TENANTS {
        survivor
            .client
            .send_batch(&batch(tenant, "b", 50))
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = delivered().await;
        if n == 350 * TENANTS.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} of {} delivered ({at_kill} at the kill)",
            350 * TENANTS.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        states(std::slice::from_ref(&survivor)).await,
        vec!["running".to_owned()]
    );
    let per_tenant = check_in_order_per_tenant(&receiver.accepted("/hook").await);
    let expected: Vec<String> = (0..300)
        .map(|i| format!("a-{i}"))
        .chain((0..50).map(|i| format!("b-{i}")))
        .collect();
    assert_eq!(
        per_tenant.keys().map(String::as_str).collect::<Vec<_>>(),
        TENANTS.to_vec()
    );
    for (tenant, ids) in &per_tenant {
        assert_eq!(ids, &expected, "tenant {tenant}");
    }
    assert_eq!(receiver.received().await["bad_signatures"], 0);
    survivor.stop();
    drop(db);
}
