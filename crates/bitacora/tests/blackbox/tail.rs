//! The server signs only what its writers sealed (issue 14, finding 3): a row appended to the
//! store by hand is never signed, and says so (`/readyz`, the metric, the viewer, `bitacora
//! verify`) until an operator vouches for it with `bitacora verify --accept-tail`; the tails
//! bitacora wrote itself (the CLI's self-audit events, with the server stopped or running)
//! are signed as before.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bitacora_client::{Client, SearchParams};
use bitacora_core::checkpoint::{NoteVerifier, open_log_checkpoint};

use crate::common::*;

/// `bitacora` with a clean environment and `--data DIR`.
fn bitacora(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitacora"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BITACORA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("BITACORA_LOG_LEVEL", "warn")
        .arg("--data")
        .arg(data);
    cmd
}

/// The size of the tenant's latest signed checkpoint (its signature checked), 0 when none.
async fn signed_size(client: &Client, tenant: &str) -> u64 {
    let keys: Vec<NoteVerifier> = client
        .public_key()
        .await
        .unwrap()
        .iter()
        .map(|k| NoteVerifier::parse(k).unwrap())
        .collect();
    // No checkpoint yet: nothing signed.
    let Ok(note) = client.checkpoint(Some(tenant)).await else {
        return 0;
    };
    open_log_checkpoint(&note, &format!("bitacora/{tenant}"), &keys)
        .unwrap()
        .0
        .size
}

async fn wait_signed(client: &Client, tenant: &str, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let signed = signed_size(client, tenant).await;
        if signed >= size {
            assert_eq!(signed, size, "signed more than the log holds");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tenant {tenant} not signed at {size} within 5 s (signed {signed})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends a row to the tenant's log in the SQLite file, as an insider with the database
/// would: a copy of the last event under a new id, with its correct leaf hash, and the log's
/// size bumped.
fn forge_row(data: &Path, tenant: &str, from_id: &str, new_id: &str) -> u64 {
    let db = rusqlite::Connection::open(data.join("bitacora.db")).unwrap();
    let (tid, size): (i64, i64) = db
        .query_row(
            "SELECT id, size FROM tenants WHERE name = ?1",
            [tenant],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let last = (tid << 40) | (size - 1);
    let body: String = db
        .query_row("SELECT body FROM events WHERE pos = ?1", [last], |r| {
            r.get(0)
        })
        .unwrap();
    let from = format!("\"id\":\"{from_id}\"");
    assert!(body.contains(&from), "{body}");
    let forged = body.replace(&from, &format!("\"id\":\"{new_id}\""));
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
         SELECT ?2, ?3, occurred_at, action, category, severity, outcome, actor_id,
            actor_search, target_type, target_id, ip, source, ?6, ?4, ?5
         FROM events WHERE pos = ?1",
        rusqlite::params![last, last + 1, new_id, &leaf[..], forged, &fingerprint[..]],
    )
    .unwrap();
    db.execute("UPDATE tenants SET size = size + 1 WHERE id = ?1", [tid])
        .unwrap();
    // And every summary the row counts in, as an insider who knows the schema would: only
    // the seal can tell this row was not written by bitacora.
    let new = last + 1;
    db.execute_batch(&format!(
        "UPDATE action_counts SET count = count + 1 WHERE tenant_id = {tid}
           AND (action, category) = (SELECT action, category FROM events WHERE pos = {new});
         UPDATE actor_stats SET count = count + 1 WHERE tenant_id = {tid}
           AND actor_id = (SELECT actor_id FROM events WHERE pos = {new});
         UPDATE event_blocks SET count = count + 1 WHERE tenant_id = {tid}
           AND block = ({new} - ({tid} << 40)) >> 12;
         UPDATE stats_days SET count = count + 1 WHERE tenant_id = {tid}
           AND (day, category, severity, outcome, no_actor) = (
             SELECT occurred_at / 86400000000 - (occurred_at % 86400000000 < 0), category,
                    severity, outcome, actor_id IS NULL FROM events WHERE pos = {new});
         UPDATE stats_day_actors SET count = count + 1 WHERE tenant_id = {tid}
           AND (day, actor_id) = (
             SELECT occurred_at / 86400000000 - (occurred_at % 86400000000 < 0), actor_id
             FROM events WHERE pos = {new});
         UPDATE stats_day_ips SET count = count + 1 WHERE tenant_id = {tid}
           AND (day, ip) = (
             SELECT occurred_at / 86400000000 - (occurred_at % 86400000000 < 0), ip
             FROM events WHERE pos = {new});
         UPDATE stats_hours SET count = count + 1 WHERE tenant_id = {tid}
           AND (hour, category, severity, outcome, no_actor) = (
             SELECT occurred_at / 3600000000 - (occurred_at % 3600000000 < 0), category,
                    severity, outcome, actor_id IS NULL FROM events WHERE pos = {new});
         UPDATE stats_hour_actors SET count = count + 1 WHERE tenant_id = {tid}
           AND (hour, actor_id) = (
             SELECT occurred_at / 3600000000 - (occurred_at % 3600000000 < 0), actor_id
             FROM events WHERE pos = {new});
         UPDATE stats_hour_ips SET count = count + 1 WHERE tenant_id = {tid}
           AND (hour, ip) = (
             SELECT occurred_at / 3600000000 - (occurred_at % 3600000000 < 0), ip
             FROM events WHERE pos = {new});
         INSERT INTO event_facets
             (tenant_id, action, category, severity, outcome, source, block, count,
              areas_0, areas_1, areas_2, areas_3, actors_0, actors_1, actors_2, actors_3)
           SELECT {tid}, action, category, severity, outcome, coalesce(source, 0),
                  ({new} - ({tid} << 40)) >> 12, 1, -1, -1, -1, -1, -1, -1, -1, -1
           FROM events WHERE pos = {new}
           ON CONFLICT DO UPDATE SET count = count + 1, areas_0 = -1, areas_1 = -1,
              areas_2 = -1, areas_3 = -1, actors_0 = -1, actors_1 = -1, actors_2 = -1,
              actors_3 = -1;
         INSERT INTO facet_counts
             (tenant_id, action, category, severity, outcome, source, count,
              areas_0, areas_1, areas_2, areas_3, actors_0, actors_1, actors_2, actors_3)
           SELECT {tid}, action, category, severity, outcome, coalesce(source, 0), 1,
                  -1, -1, -1, -1, -1, -1, -1, -1
           FROM events WHERE pos = {new}
           ON CONFLICT DO UPDATE SET count = count + 1, areas_0 = -1, areas_1 = -1,
              areas_2 = -1, areas_3 = -1, actors_0 = -1, actors_1 = -1, actors_2 = -1,
              actors_3 = -1;"
    ))
    .unwrap();
    // The address postings: the offset of the row in its block of 4,096, as a little-endian
    // u16 (a forged row always starts a commit of its own, hence a row of its own).
    let offset = (size as u16 & 4095).to_le_bytes();
    db.execute(
        "INSERT INTO event_addresses (tenant_id, block, ip, first, offsets)
         SELECT ?1, ?2, ip, ?3, ?4 FROM events WHERE pos = ?5 AND ip IS NOT NULL",
        rusqlite::params![tid, size >> 12, size & 4095, &offset[..], new],
    )
    .unwrap();
    size as u64
}

/// Signs in to the viewer with `key` and returns the integrity page's HTML.
pub(crate) async fn integrity_page(base: &str, key: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{base}/ui/login"))
        .form(&[("key", key)])
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("bitacora_session="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {login:?}"))
        .to_owned();
    let page = http
        .get(format!("{base}/ui/integrity"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_appended_by_hand_is_never_signed_until_an_operator_accepts_it() {
    let app = spawn_app().await;
    app.client
        .send_batch(&numbered("acme", "a", 5))
        .await
        .unwrap();
    wait_signed(&app.client, "acme", 5).await;
    let data = app.data_dir();
    let root = app.stop().await;

    // The attack: with the server stopped, a row with a correct leaf hash.
    let forged_seq = forge_row(&data, "acme", "a-4", "forged-1");
    assert_eq!(forged_seq, 5);

    let app = spawn_app_in(root).await;
    // Several checkpoint intervals (1 s): never signed.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(signed_size(&app.client, "acme").await, 5);
    let ready = app.client.readyz().await.unwrap();
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["integrity"], "unexplained tail", "{ready}");
    let tail = &ready["unexplained"][0];
    assert_eq!(tail["tenant"], "acme", "{ready}");
    assert_eq!(tail["first_seq"], 5, "{ready}");
    assert_eq!(tail["log_size"], 6, "{ready}");
    assert!(
        tail["recovery"].as_str().unwrap().contains("--accept-tail"),
        "{ready}"
    );
    let metrics = app.client.metrics().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bitacora_log_unexplained_events{tenant=\"acme\"} 1")),
        "{metrics}"
    );
    let page = integrity_page(&app.base_url(), &app.admin_key).await;
    assert!(page.contains("Unexplained tail"), "{page}");
    assert!(page.contains("--accept-tail"), "{page}");

    // New events after the forged one extend an unexplained log: still not signed.
    app.client
        .send_batch(&numbered("acme", "b", 1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(signed_size(&app.client, "acme").await, 5);
    let root = app.stop().await;

    // `verify` names the forged row, apart from "not signed yet".
    let (ok, stdout, stderr) = output(bitacora(&data).args(["verify", "--tenant", "acme"]));
    assert!(!ok);
    assert!(
        stdout.contains("tenant acme: UNEXPLAINED TAIL: seq 5"),
        "{stdout}"
    );
    assert!(stderr.contains("seq nobody vouches for 5"), "{stderr}");

    // The documented recovery: accept it (after investigating), recorded in the log.
    let (ok, stdout, stderr) =
        output(bitacora(&data).args(["verify", "--tenant", "acme", "--accept-tail"]));
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("accepted events 5..7"), "{stdout}");

    let app = spawn_app_in(root).await;
    wait_signed(&app.client, "acme", 8).await;
    let ready = app.client.readyz().await.unwrap();
    assert!(ready.contains("\"integrity\":\"ok\""), "{ready}");
    let accepted = app
        .client
        .search(
            &SearchParams::new()
                .tenant("acme")
                .action("bitacora.integrity.tail_accepted"),
        )
        .await
        .unwrap();
    assert_eq!(accepted.events.len(), 1);
    let meta = &accepted.events[0].metadata;
    assert_eq!(meta["first_seq"], 5, "{meta:?}");
    assert_eq!(meta["last_seq"], 6, "{meta:?}");
    let root = app.stop().await;
    bitacora(&data)
        .args(["verify", "--tenant", "acme"])
        .assert()
        .success();
    drop(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_self_audit_events_are_sealed_and_signed_with_the_server_stopped_or_running() {
    let app = spawn_app().await;
    app.client
        .send_batch(&numbered("default", "a", 3))
        .await
        .unwrap();
    wait_signed(&app.client, "default", 3).await;
    let data = app.data_dir();

    // While it runs: the key's `bitacora.key.created` event is signed like any other.
    bitacora(&data)
        .args([
            "keys",
            "create",
            "--scope",
            "read",
            "--name",
            "while-running",
        ])
        .assert()
        .success();
    wait_signed(&app.client, "default", 4).await;
    let root = app.stop().await;

    // While it is stopped: sealed, so `verify` says "not signed yet", not "unexplained".
    bitacora(&data)
        .args([
            "keys",
            "create",
            "--scope",
            "read",
            "--name",
            "while-stopped",
        ])
        .assert()
        .success();
    let (ok, stdout, _) = output(bitacora(&data).args(["verify", "--tenant", "default"]));
    assert!(!ok);
    assert!(stdout.contains("NOT SIGNED YET: seq 4"), "{stdout}");
    assert!(!stdout.contains("UNEXPLAINED"), "{stdout}");

    let app = spawn_app_in(root).await;
    wait_signed(&app.client, "default", 5).await;
    let ready = app.client.readyz().await.unwrap();
    assert!(ready.contains("\"integrity\":\"ok\""), "{ready}");
    let root = app.stop().await;
    bitacora(&data).arg("verify").assert().success();
    drop(root);
}
