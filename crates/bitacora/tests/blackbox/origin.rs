//! `integrity.origin_prefix` (CONTRACT §11): a log's origin is `<prefix>/<tenant>`, fixed
//! when its first checkpoint is signed, so changing the prefix leaves existing logs verifying.

use std::time::{Duration, Instant};

use assert_cmd::Command;
use bitacora_client::{ExportFormat, SearchParams};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::Checkpoint;

use crate::common::*;

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

/// `GET /v1/log?tenant=T` as JSON.
async fn describe(app: &TestApp, tenant: &str) -> serde_json::Value {
    let resp = app
        .client
        .http()
        .get(format!("{}/v1/log?tenant={tenant}", app.base_url()))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A `signed_note` verifier list of one verifier key.
fn verifier_list(vkey: &str) -> VerifierList {
    VerifierList::new(vec![Box::new(StandardVerifier::new(vkey).unwrap())])
}

/// The served checkpoint of `tenant` once it covers `size`, checked with `signed_note` and
/// the log's own verifier key (`verifier_key` of `GET /v1/log`, named by the origin):
/// `(origin, note)`.
async fn origin_at(app: &TestApp, tenant: &str, size: u64) -> (String, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(note) = app.client.checkpoint(Some(tenant)).await {
            let log = describe(app, tenant).await;
            let vkey = log["verifier_key"].as_str().unwrap();
            let parsed = Note::from_bytes(note.as_bytes()).unwrap();
            parsed.verify(&verifier_list(vkey)).unwrap();
            let cp = Checkpoint::from_bytes(parsed.text()).unwrap();
            if cp.size() >= size {
                return (cp.origin().to_owned(), note);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} for {tenant}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_prefix_names_new_logs_and_never_renames_old_ones() {
    let app = spawn_app().await;
    app.client
        .send_batch(&numbered("old", "o", 3))
        .await
        .unwrap();
    assert_eq!(origin_at(&app, "old", 3).await.0, "bitacora/old");
    let data = app.stop().await;

    let prefix = |c: &mut bitacora_server::Config| {
        c.integrity.origin_prefix = "audit.example.com/bitacora".into();
        c.integrity.checkpoint_interval_ms = 100;
    };
    let app = spawn_app_in_with(data, prefix).await;
    app.client
        .send_batch(&numbered("old", "p", 2))
        .await
        .unwrap();
    app.client
        .send_batch(&numbered("new", "n", 4))
        .await
        .unwrap();
    // The old log keeps its origin; the new one gets the prefix.
    assert_eq!(origin_at(&app, "old", 5).await.0, "bitacora/old");
    let (origin, _) = origin_at(&app, "new", 4).await;
    assert_eq!(origin, "audit.example.com/bitacora/new");

    // Everything that checks an origin accepts both: `bitacora verify` (the stored origins),
    // bundles, tlog-proofs, and the tiles as tlog_tiles reads them.
    let key_file = app.data.path().join("data.signing-key");
    let out = bitacora()
        .arg("verify")
        .arg("--data")
        .arg(app.data_dir())
        .arg("--signing-key-file")
        .arg(&key_file)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("new") && out.contains("old"), "{out}");
    let files = tempfile::tempdir().unwrap();
    let keys = app.client.public_key().await.unwrap();
    for tenant in ["old", "new"] {
        let bundle = app
            .client
            .export_bytes(ExportFormat::Bundle, &SearchParams::new().tenant(tenant))
            .await
            .unwrap();
        let file = files.path().join(format!("{tenant}.bundle"));
        std::fs::write(&file, &bundle).unwrap();
        let mut cmd = bitacora();
        cmd.arg("verify-bundle").arg(&file);
        for k in &keys {
            cmd.args(["--trusted-key", k]);
        }
        cmd.assert().success();
    }
    let id = "n-2";
    let event = app.client.event_json(id, Some("new")).await.unwrap();
    let resp = app
        .client
        .http()
        .get(format!(
            "{}/v1/events/{id}/proof?tenant=new",
            app.base_url()
        ))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let proof = resp.text().await.unwrap();
    assert!(
        proof.contains("\naudit.example.com/bitacora/new\n"),
        "{proof}"
    );
    let event_file = files.path().join("n-2.json");
    let proof_file = files.path().join("n-2.tlog-proof");
    std::fs::write(&event_file, &event).unwrap();
    std::fs::write(&proof_file, &proof).unwrap();
    let mut cmd = bitacora();
    cmd.arg("verify-proof").arg(&event_file).arg(&proof_file);
    for k in &keys {
        cmd.args(["--trusted-key", k]);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    assert!(
        String::from_utf8_lossy(&out).contains("of audit.example.com/bitacora/new"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // `GET /v1/log` lists each log's origin and its verifier key, named by the origin (the
    // same Ed25519 key as the published one, another key id), then every key it verifies
    // with: the published ones among them.
    let mut vkeys = Vec::new();
    for (tenant, origin) in [
        ("old", "bitacora/old"),
        ("new", "audit.example.com/bitacora/new"),
    ] {
        let log = describe(&app, tenant).await;
        assert_eq!(log["tenant"], tenant);
        assert_eq!(log["origin"], origin);
        let vkey = log["verifier_key"].as_str().unwrap().to_owned();
        assert!(vkey.starts_with(&format!("{origin}+")), "{vkey}");
        assert_eq!(
            vkey.rsplit('+').next(),
            keys[0].rsplit('+').next(),
            "the same key"
        );
        assert_eq!(log["verifier_keys"][0], vkey.as_str());
        for k in &keys {
            assert!(
                log["verifier_keys"]
                    .as_array()
                    .unwrap()
                    .contains(&k.as_str().into()),
                "{log}"
            );
        }
        assert!(log["checkpoint_size"].as_u64().unwrap() >= 4, "{log}");
        vkeys.push(vkey);
    }
    // `verify-proof` and `verify-bundle` take the log's own key too.
    let mut cmd = bitacora();
    cmd.arg("verify-proof")
        .arg(&event_file)
        .arg(&proof_file)
        .args(["--trusted-key", &vkeys[1]]);
    cmd.assert().success();
    // ...and refuse another key under the log's name.
    let stranger =
        bitacora_core::checkpoint::NoteSigner::from_seed("audit.example.com/bitacora/new", [3; 32])
            .unwrap()
            .verifier()
            .to_string();
    let mut cmd = bitacora();
    cmd.arg("verify-proof")
        .arg(&event_file)
        .arg(&proof_file)
        .args(["--trusted-key", &stranger]);
    cmd.assert().code(1);
    // The integrity page shows each log's origin and verifier key.
    let page = crate::tail::integrity_page(&app.base_url(), &app.admin_key).await;
    for vkey in &vkeys {
        assert!(
            page.contains(&format!("<code class=\"vkey\">{vkey}</code>")),
            "{page}"
        );
    }
    assert!(
        page.contains("<code class=\"origin\">bitacora/old</code>"),
        "{page}"
    );
    assert!(
        page.contains("<code class=\"origin\">audit.example.com/bitacora/new</code>"),
        "{page}"
    );
    app.stop().await;

    // A prefix that cannot make an origin is a startup error naming the setting.
    let err = bitacora()
        .arg("serve")
        .arg("--data")
        .arg(files.path().join("d"))
        .env("BITACORA_INTEGRITY__ORIGIN_PREFIX", "has space")
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&err).contains("integrity.origin_prefix"),
        "{}",
        String::from_utf8_lossy(&err)
    );
}

/// Rewrites every stored checkpoint of `tenant` as a server from before key names followed
/// origins stored it: the same body, signed under the key file's own name alone.
fn sign_as_before(data: &std::path::Path, key_file: &std::path::Path, tenant: &str) -> usize {
    let key = bitacora_log::SigningKeyFile::load(key_file).unwrap();
    assert_eq!(key.name(), "bitacora");
    let db = rusqlite::Connection::open(data.join("bitacora.db")).unwrap();
    let tid: i64 = db
        .query_row("SELECT id FROM tenants WHERE name = ?1", [tenant], |r| {
            r.get(0)
        })
        .unwrap();
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT size, note FROM checkpoints WHERE tenant_id = ?1")
        .unwrap()
        .query_map([tid], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (size, note) in &rows {
        let text = bitacora_core::checkpoint::SignedNote::parse(note.as_bytes())
            .unwrap()
            .text;
        let legacy = key.sign(&text).unwrap();
        assert_ne!(&legacy, note, "the server signed under another name");
        db.execute(
            "UPDATE checkpoints SET note = ?1 WHERE tenant_id = ?2 AND size = ?3",
            rusqlite::params![legacy, tid, size],
        )
        .unwrap();
    }
    rows.len()
}

/// The signature lines' key names of a served checkpoint (witness cosignatures aside).
fn signers(note: &str) -> Vec<String> {
    bitacora_core::checkpoint::SignedNote::parse(note.as_bytes())
        .unwrap()
        .signatures
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// The served checkpoint of `tenant` once it covers `size` (signatures not checked).
async fn note_at(app: &TestApp, tenant: &str, size: u64) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(note) = app.client.checkpoint(Some(tenant)).await {
            let parsed = Note::from_bytes(note.as_bytes()).unwrap();
            if Checkpoint::from_bytes(parsed.text()).unwrap().size() >= size {
                return note;
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint of {size}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_signed_under_the_old_key_name_keeps_verifying_through_the_move() {
    let fast = |c: &mut bitacora_server::Config| c.integrity.checkpoint_interval_ms = 100;
    let app = spawn_app_with(fast).await;
    app.client
        .send_batch(&numbered("old", "o", 5))
        .await
        .unwrap();
    note_at(&app, "old", 5).await;
    let public = app.client.public_key().await.unwrap().remove(0);
    let data = app.stop().await;
    let folder = data_folder(data.path());
    let key_file = data.path().join("data.signing-key");
    // The store as the previous release left it: checkpoints under `bitacora` alone.
    assert!(sign_as_before(&folder, &key_file, "old") >= 1);

    // Upgraded: the old log's new checkpoints carry the origin-named signature and, during
    // the transition, the legacy one; a new log only the origin-named one.
    let app = spawn_app_in_with(data, fast).await;
    let legacy_note = app.client.checkpoint(Some("old")).await.unwrap();
    assert_eq!(signers(&legacy_note), ["bitacora"]);
    app.client
        .send_batch(&numbered("old", "p", 3))
        .await
        .unwrap();
    app.client
        .send_batch(&numbered("fresh", "f", 2))
        .await
        .unwrap();
    let moved = note_at(&app, "old", 8).await;
    assert_eq!(signers(&moved), ["bitacora/old", "bitacora"]);
    assert_eq!(
        signers(&note_at(&app, "fresh", 2).await),
        ["bitacora/fresh"]
    );
    // The independent implementation accepts it with either key: the log's own (how
    // witnesses are configured now) and the old one (how they were).
    let vkey = describe(&app, "old").await["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for key in [&vkey, &public] {
        Note::from_bytes(moved.as_bytes())
            .unwrap()
            .verify(&verifier_list(key))
            .unwrap();
    }
    // The old checkpoint verifies with the old key only, as it always did.
    let old = Note::from_bytes(legacy_note.as_bytes()).unwrap();
    assert!(old.verify(&verifier_list(&public)).is_ok());
    assert!(old.verify(&verifier_list(&vkey)).is_err());

    // `bitacora verify` checks every stored checkpoint, old and new; so do bundles and
    // tlog-proofs with the published key or the log's own.
    let verify = |data: &std::path::Path| {
        bitacora()
            .arg("verify")
            .arg("--data")
            .arg(data)
            .arg("--signing-key-file")
            .arg(&key_file)
            .assert()
            .success();
    };
    verify(&app.data_dir());
    let files = tempfile::tempdir().unwrap();
    let bundle = app
        .client
        .export_bytes(ExportFormat::Bundle, &SearchParams::new().tenant("old"))
        .await
        .unwrap();
    let bundle_file = files.path().join("old.bundle");
    std::fs::write(&bundle_file, &bundle).unwrap();
    for key in [&vkey, &public] {
        bitacora()
            .arg("verify-bundle")
            .arg(&bundle_file)
            .args(["--trusted-key", key])
            .assert()
            .success();
    }

    // The transition ends: without legacy signatures the next checkpoints carry the
    // origin-named line alone, and the whole history still verifies.
    let data = app.stop().await;
    let app = spawn_app_in_with(data, |c| {
        fast(c);
        c.integrity.legacy_key_name_signatures = false;
    })
    .await;
    app.client
        .send_batch(&numbered("old", "q", 2))
        .await
        .unwrap();
    assert_eq!(signers(&note_at(&app, "old", 10).await), ["bitacora/old"]);
    verify(&app.data_dir());
    app.stop().await;
}
