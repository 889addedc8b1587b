//! Bundles: produced from a real store, verified offline by `verify_bundle` and by the
//! independent Python verifier written from docs/BUNDLE.md.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bitacora_core::checkpoint::NoteSigner;
use bitacora_core::query::{EventQuery, Order};
use bitacora_log::{
    BundleOptions, BundleReport, KeySource, bundle_stream, checkpoint_tenant, verify_bundle,
};
use bitacora_store::Store;
use common::*;
use futures::TryStreamExt as _;

async fn bundle(store: Arc<dyn Store>, query: EventQuery) -> String {
    let mut options = BundleOptions::new(Arc::new(signer()), verifiers());
    options.filter = serde_json::json!({"action": "user.login"});
    options.page_size = 37;
    let chunks: Vec<bytes::Bytes> = bundle_stream(store, query, options)
        .try_collect()
        .await
        .unwrap();
    String::from_utf8(chunks.concat()).unwrap()
}

fn check(text: &str) -> Result<BundleReport, bitacora_log::BundleError> {
    verify_bundle(text.as_bytes(), None)
}

fn query(t: &str, action: Option<&str>, order: Order) -> EventQuery {
    let mut params = vec![("tenant", t)];
    if let Some(a) = action {
        params.push(("action", a));
    }
    let mut q = EventQuery::parse(params, &tenant(t)).unwrap();
    q.order = order;
    q
}

async fn sample() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(store.as_ref(), "acme", 0, 300).await;
    checkpoint_tenant(store.as_ref(), &signer(), &tenant("acme"), 1)
        .await
        .unwrap();
    // Appended after the checkpoint: left out of bundles.
    append(store.as_ref(), "acme", 300, 305).await;
    (dir, store)
}

#[tokio::test]
async fn a_bundle_round_trips() {
    let (_dir, store) = sample().await;
    let text = bundle(
        store.clone(),
        query("acme", Some("user.login"), Order::Desc),
    )
    .await;
    let report = check(&text).unwrap();
    assert_eq!(
        (report.events, report.tree_size, report.keys),
        (100, 300, KeySource::Embedded)
    );
    assert_eq!(report.filter["action"], "user.login");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 102);
    assert!(lines[0].starts_with("{\"bitacora_bundle\":1,"));
    assert!(
        lines[1].starts_with("{\"event\":{\"seq\":297,"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[101], r#"{"end":true,"events":100}"#);
    // With trusted keys: the right one, and a stranger's.
    let trusted = verifiers();
    assert_eq!(
        verify_bundle(text.as_bytes(), Some(&trusted)).unwrap().keys,
        KeySource::Trusted
    );
    let stranger = NoteSigner::from_seed("bitacora", [9; 32])
        .unwrap()
        .verifier();
    let err = verify_bundle(text.as_bytes(), Some(&[stranger])).unwrap_err();
    assert_eq!(err.line, 1, "{err}");

    // The whole log, oldest first: bounded at the checkpoint.
    let text = bundle(store.clone(), query("acme", None, Order::Asc)).await;
    let report = check(&text).unwrap();
    assert_eq!(report.events, 300);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("{\"event\":{\"seq\":0,")
    );
    println!("{}", report.summary());

    // A tenant with no checkpoint gets one; an empty tenant gets a signed empty tree.
    append(store.as_ref(), "fresh", 0, 3).await;
    let report = check(&bundle(store.clone(), query("fresh", None, Order::Desc)).await).unwrap();
    assert_eq!((report.events, report.tree_size), (3, 3));
    assert_eq!(
        store
            .latest_checkpoint(&tenant("fresh"))
            .await
            .unwrap()
            .unwrap()
            .size,
        3
    );
    let report = check(&bundle(store.clone(), query("nobody", None, Order::Desc)).await).unwrap();
    assert_eq!((report.events, report.tree_size), (0, 0));
    store.close().await.unwrap();
}

/// Bundles whose line `line` is bad, each with how it was broken.
fn broken(text: &str) -> Vec<(&'static str, String, u64)> {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let join = |l: &[String]| l.join("\n") + "\n";
    let mut out = Vec::new();

    let mut l = lines.clone();
    l[3] = l[3].replacen("número", "numero", 1);
    out.push(("edited event", join(&l), 4));

    let mut l = lines.clone();
    let ev: serde_json::Value = serde_json::from_str(&l[2]).unwrap();
    let other: serde_json::Value = serde_json::from_str(&l[5]).unwrap();
    let h = other["proof"][0].as_str().unwrap();
    let mine = ev["proof"][0].as_str().unwrap();
    l[2] = l[2].replacen(mine, h, 1);
    out.push(("swapped proof hash", join(&l), 3));

    let mut l = lines.clone();
    let mut header: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    let note = header["checkpoint"].as_str().unwrap();
    let forger = NoteSigner::from_seed("bitacora", [9; 32]).unwrap();
    let text_part = &note[..note.rfind("\n\n").unwrap() + 1];
    let forged = forger.sign(text_part).unwrap();
    // The forger's signature bytes under the real key's name and id.
    let sig_line = forged.lines().last().unwrap().to_owned();
    let real_sig = note.lines().last().unwrap();
    header["checkpoint"] = serde_json::Value::String(note.replacen(
        real_sig,
        &{
            // Keep the real key id (first 4 bytes), replace the signature bytes.
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let real = b64.decode(real_sig.rsplit(' ').next().unwrap()).unwrap();
            let fake = b64.decode(sig_line.rsplit(' ').next().unwrap()).unwrap();
            let mut blob = real[..4].to_vec();
            blob.extend_from_slice(&fake[4..]);
            format!("\u{2014} bitacora {}", b64.encode(blob))
        },
        1,
    ));
    l[0] = header.to_string();
    out.push(("wrong checkpoint signature", join(&l), 1));

    let mut l = lines.clone();
    let n = l.len();
    l.truncate(n - 1);
    out.push(("missing trailer", join(&l), n as u64));

    let mut l = lines.clone();
    l.remove(4);
    out.push(("a removed event", join(&l), (lines.len() - 1) as u64));
    out
}

#[tokio::test]
async fn a_broken_bundle_names_its_line() {
    let (_dir, store) = sample().await;
    let text = bundle(
        store.clone(),
        query("acme", Some("user.login"), Order::Desc),
    )
    .await;
    for (what, bad, line) in broken(&text) {
        let err = check(&bad).expect_err(what);
        assert_eq!(err.line, line, "{what}: {err}");
        println!("{what}: {err}");
    }
    store.close().await.unwrap();
}

/// Python with `cryptography`, or why not.
fn python() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .map_err(|e| format!("python3 is not available: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err("the Python package `cryptography` is not installed".into())
    }
}

fn run_python(bundle: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_bundle.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(bundle)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_owned())
}

#[tokio::test]
async fn the_independent_python_verifier_agrees() {
    if let Err(why) = python() {
        if std::env::var_os("CI").is_some() {
            panic!("{why} (CI needs `pip install cryptography`)");
        }
        println!("skipping the Python verifier test: {why}");
        return;
    }
    let (dir, store) = sample().await;
    let text = bundle(store.clone(), query("acme", None, Order::Desc)).await;
    let path = dir.path().join("good.ndjson");
    std::fs::write(&path, &text).unwrap();
    let (ok, out) = run_python(&path);
    assert!(ok, "{out}");
    assert_eq!(out, "OK 300 events of acme at tree size 300");

    for (what, bad, line) in broken(&text) {
        let path = dir.path().join("bad.ndjson");
        std::fs::write(&path, &bad).unwrap();
        let (ok, out) = run_python(&path);
        assert!(!ok, "{what}: python accepted it");
        assert!(out.starts_with(&format!("line {line}:")), "{what}: {out}");
    }
    store.close().await.unwrap();
}
