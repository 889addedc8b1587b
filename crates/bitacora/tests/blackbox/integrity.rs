//! Tamper evidence end to end (CONTRACT §4): signed checkpoints and proofs over HTTP, checked
//! here with the core's verifiers; `bitacora verify` on an intact and on a tampered store;
//! bundles exported over HTTP and checked by `bitacora verify-bundle`; the signing key file.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bitacora_client::{Client, ExportFormat, SearchParams};
use bitacora_core::api::BatchItem;
use bitacora_core::canonical::{Hash, parse_hex_hash};
use bitacora_core::checkpoint::{Checkpoint, NoteVerifier, open_log_checkpoint};
use bitacora_core::merkle;

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

async fn verifiers(client: &Client) -> Vec<NoteVerifier> {
    let keys = client.public_key().await.unwrap();
    assert!(!keys.is_empty());
    keys.iter()
        .map(|k| NoteVerifier::parse(k).unwrap())
        .collect()
}

/// Polls the tenant's checkpoint until it covers `size` events (the server signs within a
/// second), then returns it opened with the server's public key.
async fn checkpoint_at_least(client: &Client, tenant: &str, size: u64) -> Checkpoint {
    let keys = verifiers(client).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Ok(note) = client.checkpoint(Some(tenant)).await {
            let (cp, _) = open_log_checkpoint(&note, &format!("bitacora/{tenant}"), &keys)
                .unwrap_or_else(|e| panic!("the checkpoint does not verify: {e}\n{note}"));
            if cp.size >= size {
                return cp;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of tenant {tenant} covering {size} events within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `n` events to `tenant` and returns their leaf hashes by seq.
async fn ingest(client: &Client, tenant: &str, prefix: &str, n: usize) -> Vec<(u64, Hash)> {
    let resp = client
        .send_batch(&numbered(tenant, prefix, n))
        .await
        .unwrap();
    resp.results
        .iter()
        .map(|item| match item {
            BatchItem::Stored(ack) => (ack.seq, parse_hex_hash(&ack.leaf_hash).unwrap()),
            other => panic!("rejected: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_proofs_verify_with_the_public_key() {
    let app = spawn_app().await;
    let first = ingest(&app.client, "proofs", "a", 37).await;
    let cp1 = checkpoint_at_least(&app.client, "proofs", 37).await;
    assert_eq!(cp1.size, 37);

    for &(seq, leaf) in first.iter().step_by(5).chain(first.last()) {
        let proof = app
            .client
            .inclusion_proof(seq, None, Some("proofs"))
            .await
            .unwrap();
        assert_eq!((proof.leaf_index, proof.tree_size), (seq, 37));
        merkle::verify_inclusion(&leaf, seq, 37, &proof.hashes, &cp1.root)
            .unwrap_or_else(|e| panic!("seq {seq}: {e}"));
    }

    let second = ingest(&app.client, "proofs", "b", 60).await;
    let cp2 = checkpoint_at_least(&app.client, "proofs", 97).await;
    assert_eq!(cp2.size, 97);
    let proof = app
        .client
        .consistency_proof(cp1.size, cp2.size, Some("proofs"))
        .await
        .unwrap();
    assert_eq!((proof.first, proof.second), (37, 97));
    merkle::verify_consistency(37, 97, &proof.hashes, &cp1.root, &cp2.root).unwrap();
    // An old event proved against the new checkpoint, with an explicit tree size.
    let (seq, leaf) = first[3];
    let proof = app
        .client
        .inclusion_proof(seq, Some(97), Some("proofs"))
        .await
        .unwrap();
    merkle::verify_inclusion(&leaf, seq, 97, &proof.hashes, &cp2.root).unwrap();
    let (seq, leaf) = second[10];
    let proof = app
        .client
        .inclusion_proof(seq, Some(97), Some("proofs"))
        .await
        .unwrap();
    merkle::verify_inclusion(&leaf, seq, 97, &proof.hashes, &cp2.root).unwrap();

    // The viewer's per-event status.
    let status = app
        .client
        .event_inclusion("a-4", Some("proofs"))
        .await
        .unwrap();
    assert!(status.verified, "{status:?}");
    assert_eq!(status.state, "verified");
    assert_eq!(status.seq, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proof_parameters_are_400_naming_the_field() {
    let app = spawn_app().await;
    ingest(&app.client, "default", "x", 10).await;
    checkpoint_at_least(&app.client, "default", 10).await;
    let c = &app.client;
    assert_api_error(
        c.inclusion_proof(10, Some(10), None).await,
        400,
        Some("seq"),
    );
    assert_api_error(
        c.inclusion_proof(0, Some(11), None).await,
        400,
        Some("tree_size"),
    );
    assert_api_error(c.consistency_proof(5, 11, None).await, 400, Some("second"));
    assert_api_error(c.consistency_proof(6, 5, None).await, 400, Some("first"));
    for (path, field) in [
        ("/v1/log/proof/inclusion?seq=abc", "seq"),
        ("/v1/log/proof/inclusion", "seq"),
        ("/v1/log/proof/inclusion?seq=1&tree_size=-3", "tree_size"),
        ("/v1/log/proof/consistency?first=1", "second"),
        ("/v1/log/proof/consistency?first=x&second=2", "first"),
    ] {
        let resp = c.request(bitacora_client::Method::GET, path).send().await;
        let resp = bitacora_client::check(resp.unwrap()).await;
        assert_api_error(resp, 400, Some(field));
    }
    // A tenant with no events has no checkpoint: a JSON 404.
    let e = assert_api_error(c.checkpoint(Some("empty")).await, 404, None);
    assert_eq!(e.code, "no_checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_keys_cannot_read_another_tenants_log() {
    let app = spawn_app().await;
    ingest(&app.client, "acme", "a", 3).await;
    ingest(&app.client, "other", "o", 3).await;
    checkpoint_at_least(&app.client, "other", 3).await;
    checkpoint_at_least(&app.client, "acme", 3).await;
    let data = app.stop().await;
    let out = bitacora(&data_folder(data.path()))
        .args([
            "keys", "create", "--scope", "read", "--tenant", "acme", "--name", "r",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let secret = String::from_utf8(out)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let app = spawn_app_in(data).await;
    let read = app.client.with_api_key(&secret);

    let note = read.checkpoint(None).await.unwrap();
    assert!(note.starts_with("bitacora/acme\n"), "{note}");
    assert_api_error(read.checkpoint(Some("other")).await, 403, Some("tenant"));
    assert_api_error(
        read.inclusion_proof(0, Some(3), Some("other")).await,
        403,
        Some("tenant"),
    );
    assert_api_error(
        read.consistency_proof(1, 3, Some("other")).await,
        403,
        Some("tenant"),
    );
    assert_api_error(
        read.event_inclusion("o-1", Some("other")).await,
        403,
        Some("tenant"),
    );
    assert_api_error(
        read.export_bytes(ExportFormat::Bundle, &SearchParams::new().tenant("other"))
            .await,
        403,
        Some("tenant"),
    );
    read.inclusion_proof(0, None, None).await.unwrap();
}

/// The key file: created 0600 beside (not inside) the data folder, reused on restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_is_private_outside_the_store_and_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    let data = data_folder(root.path());
    let app = spawn_binary(&data).await;
    let key_file = root.path().join("data.signing-key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !std::fs::read_dir(&data).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("signing")),
        "no key inside the data folder"
    );
    let public = app.client.public_key().await.unwrap();
    assert_eq!(public.len(), 1);
    assert!(public[0].starts_with("bitacora+"), "{public:?}");
    let stdout = app.stdout.lock().unwrap().join("\n");
    assert!(
        stdout.contains(&public[0]),
        "serve prints the key: {stdout}"
    );
    // Public: no credential needed.
    let anonymous = app.client.with_api_key("");
    assert_eq!(anonymous.public_key().await.unwrap(), public);
    app.terminate();
    let mut app = app;
    assert_eq!(app.wait_exit(Duration::from_secs(30)).code(), Some(0));

    let app = spawn_binary(&data).await;
    assert_eq!(app.client.public_key().await.unwrap(), public);
}

/// Rewrites one event's body in the SQLite file, as an attacker with the database would.
fn tamper_body(data: &Path, tenant: &str, seq: u64, from: &str, to: &str) {
    let db = rusqlite::Connection::open(data.join("bitacora.db")).unwrap();
    let tid: i64 = db
        .query_row("SELECT id FROM tenants WHERE name = ?1", [tenant], |r| {
            r.get(0)
        })
        .unwrap();
    let pos = (tid << 40) | seq as i64;
    let body: String = db
        .query_row("SELECT body FROM events WHERE pos = ?1", [pos], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(body.contains(from), "{body}");
    let changed = db
        .execute(
            "UPDATE events SET body = ?1 WHERE pos = ?2",
            rusqlite::params![body.replace(from, to), pos],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_an_intact_store_and_names_the_tampered_seq() {
    let app = spawn_app().await;
    ingest(&app.client, "acme", "a", 50).await;
    ingest(&app.client, "beta", "b", 20).await;
    checkpoint_at_least(&app.client, "acme", 50).await;

    // While the server runs (SQLite WAL lets the CLI read beside it).
    let data = app.data_dir();
    let out = bitacora(&data)
        .arg("verify")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().count(), 2, "one line per tenant: {out}");
    assert!(out.contains("tenant acme: intact: 50 events"), "{out}");
    assert!(out.contains("tenant beta: intact: 20 events"), "{out}");

    let root = app.stop().await;
    let out = bitacora(&data)
        .args(["verify", "--tenant", "beta"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);

    tamper_body(&data, "acme", 17, "\"id\":\"a-17\"", "\"id\":\"a-71\"");
    let assert = bitacora(&data).arg("verify").assert().code(1);
    let out = assert.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("tenant acme: TAMPERED: seq 17"), "{stdout}");
    assert!(stdout.contains("tenant beta: intact"), "{stdout}");
    assert!(stderr.contains("first bad seq 17"), "{stderr}");
    // The other tenant alone is still intact.
    bitacora(&data)
        .args(["verify", "--tenant", "beta"])
        .assert()
        .success();
    drop(root);
}

/// Issue 14, finding 2: with the server stopped, a changed index column hides an event from
/// filtered searches without touching a hash, and a changed counter makes `/v1/actions`
/// lie; `bitacora verify` exits 1 naming the seq and the column, or the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_changed_index_column_and_summary() {
    let app = spawn_app().await;
    ingest(&app.client, "acme", "a", 30).await;
    checkpoint_at_least(&app.client, "acme", 30).await;
    let data = app.data_dir();
    let root = app.stop().await;
    bitacora(&data).arg("verify").assert().success();

    let db = rusqlite::Connection::open(data.join("bitacora.db")).unwrap();
    let tid: i64 = db
        .query_row("SELECT id FROM tenants WHERE name = 'acme'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let shift = |by: i64| {
        db.execute(
            "UPDATE events SET occurred_at = occurred_at + ?1 WHERE pos = ?2",
            rusqlite::params![by, (tid << 40) | 12],
        )
        .unwrap();
    };
    shift(-86_400_000_000);
    let assert = bitacora(&data).arg("verify").assert().code(1);
    let out = assert.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("tenant acme: TAMPERED: seq 12: the indexed column `occurred_at`"),
        "{stdout}"
    );
    assert!(stderr.contains("first bad seq 12"), "{stderr}");
    shift(86_400_000_000);
    bitacora(&data).arg("verify").assert().success();

    db.execute(
        "UPDATE action_counts SET count = count - 1 WHERE tenant_id = ?1",
        [tid],
    )
    .unwrap();
    let assert = bitacora(&data).arg("verify").assert().code(1);
    let out = assert.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("tenant acme: TAMPERED: summary action_counts"),
        "{stdout}"
    );
    assert!(stderr.contains("action_counts"), "{stderr}");
    drop(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_verify_offline_and_a_flipped_byte_is_named() {
    let app = spawn_app().await;
    ingest(&app.client, "acme", "a", 40).await;
    checkpoint_at_least(&app.client, "acme", 40).await;
    let public = app.client.public_key().await.unwrap();
    let bundle = app
        .client
        .export_bytes(
            ExportFormat::Bundle,
            &SearchParams::new().tenant("acme").actor_id("u3"),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.bundle.ndjson");
    std::fs::write(&file, &bundle).unwrap();
    let text = String::from_utf8(bundle.clone()).unwrap();
    // Header, the 6 events of actor u3 (i % 7 == 3 below 40), trailer.
    assert_eq!(text.lines().count(), 8, "{text}");

    // No store, no config: an empty environment and a folder that is not a data folder.
    let ok = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_clear()
        .current_dir(dir.path())
        .args(["verify-bundle"])
        .arg(&file)
        .args(["--trusted-key", &public[0]])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let ok = String::from_utf8(ok).unwrap();
    assert!(ok.contains("6 events of tenant acme"), "{ok}");
    // From stdin, with the bundle's own keys.
    Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_clear()
        .args(["verify-bundle", "-"])
        .write_stdin(bundle.clone())
        .assert()
        .success();

    // Flip one byte inside an event line (line 4): the bundle fails, naming that line.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let target = &mut lines[3];
    let at = target.find("item.touch").expect("an event line") + 1;
    target.replace_range(at..at + 1, "x");
    let tampered = lines.join("\n") + "\n";
    std::fs::write(&file, tampered).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_clear()
        .arg("verify-bundle")
        .arg(&file)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(err.contains("line 4"), "{err}");

    // A key that did not sign it is refused.
    let other = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [1; 32])
        .unwrap()
        .verifier()
        .to_string();
    std::fs::write(&file, &bundle).unwrap();
    Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_clear()
        .arg("verify-bundle")
        .arg(&file)
        .args(["--trusted-key", &other])
        .assert()
        .code(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_export_writes_the_same_verifiable_bundle() {
    let app = spawn_app().await;
    ingest(&app.client, "acme", "a", 25).await;
    let data = app.data_dir();
    let _root = app.stop().await;
    let out = bitacora(&data)
        .args([
            "export", "--format", "bundle", "--tenant", "acme", "--order", "asc",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.lines().count(), 27, "header, 25 events, trailer");
    Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_clear()
        .args(["verify-bundle", "-"])
        .write_stdin(out)
        .assert()
        .success();
}

/// Retention from the command line (docs/LIFECYCLE.md): a backup of the live store, then
/// `retention run --dry-run` and `retention run` with a 1-second rule, `archive list`, and the
/// archived `.bundle.zst` verified offline with the server's public key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_run_archives_then_purges_and_backup_copies_a_live_store() {
    let app = spawn_app().await;
    ingest(&app.client, "acme", "r", 12).await;
    checkpoint_at_least(&app.client, "acme", 12).await;
    let public = app.client.public_key().await.unwrap();
    let data = app.data_dir();
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("copy");
    let out = bitacora(&data)
        .args(["backup", "--to"])
        .arg(&copy)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("is not in the backup")
    );
    let _root = app.stop().await;

    let config = backup.path().join("retention.toml");
    std::fs::write(
        &config,
        "[retention]\ndefault = \"1s\"\nmin_delay = \"0s\"\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = |args: &[&str]| {
        let out = bitacora(&data)
            .arg("--config")
            .arg(&config)
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let dry = run(&["retention", "run", "--dry-run", "--tenant", "acme"]);
    assert!(dry.contains("would purge 12 events"), "{dry}");
    let done = run(&["retention", "run", "--tenant", "acme"]);
    assert!(done.contains("purged 12 events in 1 batches"), "{done}");
    let list: serde_json::Value =
        serde_json::from_str(&run(&["archive", "list", "--json"])).unwrap();
    let objects = list.as_array().unwrap();
    assert_eq!(objects.len(), 1, "{list}");
    let name = objects[0]["name"].as_str().unwrap();
    assert!(name.starts_with("acme/000000000000-000000000011-") && name.ends_with(".bundle.zst"));
    let file = format!("{}.archive/{name}", data.display());
    let ok = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_clear()
        .arg("verify-bundle")
        .arg(&file)
        .args(["--trusted-key", &public[0]])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8(ok)
            .unwrap()
            .contains("12 events of tenant acme")
    );

    // The backup, taken while the server ran, is a store with every event.
    let out = bitacora(&copy)
        .args(["export", "--format", "ndjson", "--tenant", "acme"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 12);
}
