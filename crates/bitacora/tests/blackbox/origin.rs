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

/// The served checkpoint of `tenant` once it covers `size`, checked with `signed_note`:
/// `(origin, note)`.
async fn origin_at(app: &TestApp, tenant: &str, size: u64) -> (String, String) {
    let keys = app.client.public_key().await.unwrap();
    let keys = VerifierList::new(
        keys.iter()
            .map(|k| Box::new(StandardVerifier::new(k).unwrap()) as Box<dyn signed_note::Verifier>)
            .collect(),
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(note) = app.client.checkpoint(Some(tenant)).await {
            let parsed = Note::from_bytes(note.as_bytes()).unwrap();
            parsed.verify(&keys).unwrap();
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
    // `GET /v1/log` lists each log's origin and verifier keys.
    for (tenant, origin) in [
        ("old", "bitacora/old"),
        ("new", "audit.example.com/bitacora/new"),
    ] {
        let resp = app
            .client
            .http()
            .get(format!("{}/v1/log?tenant={tenant}", app.base_url()))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let log: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(log["tenant"], tenant);
        assert_eq!(log["origin"], origin);
        assert_eq!(log["verifier_keys"], serde_json::json!(keys));
        assert!(log["checkpoint_size"].as_u64().unwrap() >= 4, "{log}");
    }
    // The integrity page shows each log's origin.
    let page = crate::tail::integrity_page(&app.base_url(), &app.admin_key).await;
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
