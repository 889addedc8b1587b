//! Witnessing (CONTRACT §11): the server submits its checkpoints to the witnesses of a
//! C2SP tlog-policy with the tlog-witness protocol, serves their cosignatures, and the CLI
//! checks a policy's quorum. The witnesses are [`TestWitness`]es, written from the spec with
//! no code of bitacora's; what the server serves is checked with `signed_note` and
//! `tlog_tiles`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bitacora_client::{ExportFormat, SearchParams};
use bitacora_core::api::BatchItem;
use bitacora_core::checkpoint::{Checkpoint as CoreCheckpoint, NoteSigner};
use bitacora_core::witness::CosignerKey;
use bitacora_witness::{SubmitError, WitnessClient};
use serde_json::Value;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::Checkpoint;

use crate::common::witness::TestWitness;
use crate::common::*;

/// A signing key made before the server starts, so witnesses and policies can name it.
fn log_key(dir: &Path) -> (PathBuf, NoteSigner) {
    let path = dir.join("log.signing-key");
    let signer = bitacora_log::SigningKeyFile::load_or_create(&path, "bitacora").unwrap();
    (path, signer)
}

/// The verifier key of `tenant`'s log: the signing key named by the log's origin, as a
/// witness or a tlog-policy names the log (`verifier_key` of `GET /v1/log`).
fn log_vkey(log: &NoteSigner, tenant: &str) -> String {
    log.verifier()
        .with_name(format!("bitacora/{tenant}"))
        .unwrap()
        .to_string()
}

/// A policy file: the log key of `tenant`'s log, the witnesses `(policy name, witness, url)`,
/// and `rules`.
fn policy(
    dir: &Path,
    file: &str,
    (log, tenant): (&NoteSigner, &str),
    witnesses: &[(&str, &TestWitness, &str)],
    rules: &str,
) -> PathBuf {
    let mut text = format!(
        "# witnesses of the test log\nlog {}\n",
        log_vkey(log, tenant)
    );
    for (name, w, url) in witnesses {
        text.push_str(&format!("witness {name} {} {url}\n", w.vkey()));
    }
    text.push_str(rules);
    text.push('\n');
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

async fn ingest(app: &TestApp, tenant: &str, prefix: &str, n: usize) -> Vec<String> {
    let resp = app
        .client
        .send_batch(&numbered(tenant, prefix, n))
        .await
        .unwrap();
    resp.results
        .into_iter()
        .map(|item| match item {
            BatchItem::Stored(ack) => ack.leaf_hash,
            other => panic!("rejected: {other:?}"),
        })
        .collect()
}

async fn get_text(app: &TestApp, path: &str) -> (u16, String) {
    let resp = app
        .client
        .http()
        .get(format!("{}{path}", app.base_url()))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Verifiers for `signed_note`: the log's key (named by its origin) and the witnesses'
/// cosignature keys.
fn verifiers(log: &NoteSigner, tenant: &str, witnesses: &[&TestWitness]) -> VerifierList {
    let mut list: Vec<Box<dyn signed_note::Verifier>> = vec![Box::new(
        StandardVerifier::new(&log_vkey(log, tenant)).unwrap(),
    )];
    for w in witnesses {
        list.push(Box::new(w.verifier()));
    }
    VerifierList::new(list)
}

/// Polls `/logs/<tenant>/checkpoint` until it is of `size` and carries cosignatures by every
/// one of `witnesses` that `signed_note` verifies; returns the note.
async fn cosigned_checkpoint(
    app: &TestApp,
    tenant: &str,
    size: u64,
    log: &NoteSigner,
    witnesses: &[&TestWitness],
) -> String {
    let keys = verifiers(log, tenant, witnesses);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = get_text(app, &format!("/logs/{tenant}/checkpoint")).await;
        if status == 200 {
            let note = Note::from_bytes(body.as_bytes()).unwrap();
            let (verified, _) = note.verify(&keys).expect("every known signature verifies");
            let cp = Checkpoint::from_bytes(note.text()).unwrap();
            let names: Vec<&str> = verified.iter().map(|s| s.name()).collect();
            if cp.size() == size && witnesses.iter().all(|w| names.contains(&w.name.as_str())) {
                // Signed under the log's origin, and only under it (a new log).
                let origin = format!("bitacora/{tenant}");
                assert!(names.contains(&origin.as_str()), "{names:?}");
                assert!(
                    !body.contains("\u{2014} bitacora "),
                    "a new log carries no legacy signature line: {body}"
                );
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} cosigned by every witness: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_witnesses_cosign_and_every_served_checkpoint_carries_their_cosignatures() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, log) = log_key(dir.path());
    let (w1, w2) = (
        TestWitness::new("w1.example/witness", 1),
        TestWitness::new("w2.example/witness", 2),
    );
    for w in [&w1, &w2] {
        w.trust(&log_vkey(&log, "acme"));
    }
    let (u1, u2) = (w1.spawn().await, w2.spawn().await);
    let both = policy(
        dir.path(),
        "both.policy",
        (&log, "acme"),
        &[("w1", &w1, &u1), ("w2", &w2, &u2)],
        "group both all w1 w2\nquorum both",
    );
    let app = spawn_app_with(|c| {
        c.integrity.signing_key_file = Some(key_file.clone());
        c.integrity.checkpoint_interval_ms = 100;
        c.integrity.witness_policy_file = Some(both.clone());
        c.integrity.witness_interval_ms = 200;
    })
    .await;

    ingest(&app, "acme", "a", 10).await;
    let note = cosigned_checkpoint(&app, "acme", 10, &log, &[&w1, &w2]).await;
    // The witnesses recorded the checkpoint the server serves.
    let cp = Checkpoint::from_bytes(Note::from_bytes(note.as_bytes()).unwrap().text()).unwrap();
    assert_eq!(w1.latest("bitacora/acme"), Some((10, cp.hash().0)));
    assert_eq!(w2.latest("bitacora/acme"), Some((10, cp.hash().0)));
    // `GET /v1/log` says who cosigned the latest checkpoint.
    let (status, described) = get_text(&app, "/v1/log?tenant=acme").await;
    assert_eq!(status, 200, "{described}");
    let described: Value = serde_json::from_str(&described).unwrap();
    assert_eq!(
        described["cosigned_by"],
        serde_json::json!(["w1.example/witness", "w2.example/witness"])
    );
    assert_eq!(described["witnessed_size"], 10);
    assert_eq!(described["origin"], "bitacora/acme");
    // The log's own verifier key, named by its origin: what the witnesses were given.
    assert_eq!(described["verifier_key"], log_vkey(&log, "acme"));
    assert_eq!(described["verifier_keys"][0], log_vkey(&log, "acme"));
    // The JSON API's checkpoint is the same cosigned note.
    let (_, api_note) = get_text(&app, "/v1/log/checkpoint?tenant=acme").await;
    assert_eq!(api_note, note);

    // The log grows: the next submission starts from the witnesses' size with a
    // consistency proof, which they check with tlog_tiles.
    ingest(&app, "acme", "b", 7).await;
    cosigned_checkpoint(&app, "acme", 17, &log, &[&w1, &w2]).await;
    for w in [&w1, &w2] {
        let answers = w.answers();
        assert!(
            answers
                .iter()
                .any(|a| a.status == 200 && a.old == Some(10) && a.size == Some(17)),
            "{answers:?}"
        );
        // Never a request the witness had to refuse.
        assert!(
            answers.iter().all(|a| a.status == 200 || a.status == 404),
            "{answers:?}"
        );
    }

    // A tlog-proof leads to the cosigned checkpoint; `verify-proof --policy` checks the quorum.
    let (status, proof) = get_text(&app, "/v1/events/a-3/proof?tenant=acme").await;
    assert_eq!(status, 200, "{proof}");
    assert!(
        proof.contains("\u{2014} w1.example/witness ")
            && proof.contains("\u{2014} w2.example/witness "),
        "{proof}"
    );
    let event = app.client.event_json("a-3", Some("acme")).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let event_file = files.path().join("a-3.json");
    let proof_file = files.path().join("a-3.tlog-proof");
    std::fs::write(&event_file, &event).unwrap();
    std::fs::write(&proof_file, &proof).unwrap();
    let out = bitacora()
        .arg("verify-proof")
        .arg(&event_file)
        .arg(&proof_file)
        .arg("--policy")
        .arg(&both)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("cosigned by w1, w2"), "{out}");
    // A policy that also wants a third witness is not met, and says so.
    let w3 = TestWitness::new("w3.example/witness", 3);
    let three = policy(
        dir.path(),
        "three.policy",
        (&log, "acme"),
        &[
            ("w1", &w1, &u1),
            ("w2", &w2, &u2),
            ("w3", &w3, "https://w3.example"),
        ],
        "group all3 all w1 w2 w3\nquorum all3",
    );
    let err = bitacora()
        .arg("verify-proof")
        .arg(&event_file)
        .arg(&proof_file)
        .arg("--policy")
        .arg(&three)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&err).contains("quorum is not met"),
        "{}",
        String::from_utf8_lossy(&err)
    );

    // A bundle carries the cosignatures too: `verify-bundle --policy`.
    let bundle = app
        .client
        .export_bytes(ExportFormat::Bundle, &SearchParams::new().tenant("acme"))
        .await
        .unwrap();
    let bundle_file = files.path().join("acme.bundle");
    std::fs::write(&bundle_file, &bundle).unwrap();
    let out = bitacora()
        .arg("verify-bundle")
        .arg(&bundle_file)
        .arg("--policy")
        .arg(&both)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains("cosigned by w1, w2"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let err = bitacora()
        .arg("verify-bundle")
        .arg(&bundle_file)
        .arg("--policy")
        .arg(&three)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&err).contains("does not satisfy the policy"),
        "{}",
        String::from_utf8_lossy(&err)
    );

    // `bitacora verify --policy` re-checks the stored cosignatures and says how far the log
    // is witnessed (the server keeps running: the embedded store takes several processes).
    let out = bitacora()
        .args(["verify", "--tenant", "acme", "--data"])
        .arg(app.data_dir())
        .arg("--signing-key-file")
        .arg(&key_file)
        .arg("--policy")
        .arg(&both)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    // (The export above appended its own `bitacora.export` event: the log may be witnessed
    // at 18 by now.)
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("tenant acme: witnessed up to tree size 1"),
        "{out}"
    );
    assert!(out.contains(", cosigned by w1, w2"), "{out}");
    bitacora()
        .args(["verify", "--tenant", "acme", "--data"])
        .arg(app.data_dir())
        .arg("--signing-key-file")
        .arg(&key_file)
        .arg("--policy")
        .arg(&three)
        .assert()
        .code(1);

    // Health: /readyz and /metrics.
    let ready: Value = serde_json::from_str(&app.client.readyz().await.unwrap()).unwrap();
    let witnesses = ready["witnesses"].as_array().unwrap();
    assert_eq!(witnesses.len(), 2, "{ready}");
    for (w, name) in witnesses.iter().zip(["w1", "w2"]) {
        assert_eq!(w["name"], name);
        assert_eq!(w["state"], "ok", "{w}");
        assert!(w["cosigned"]["acme"].as_u64().unwrap() >= 17, "{w}");
        assert!(w["last_success_at"].is_string(), "{w}");
    }
    let metrics = app.client.metrics().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bitacora_witness_cosigned_size")
                && l.contains("witness=\"w1\"")
                && l.contains("tenant=\"acme\"")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("bitacora_witness_up")
            && l.contains("witness=\"w2\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );

    // The viewer's integrity page: the witnesses table, and who cosigned the checkpoint.
    // (The export's own event is cosigned within an interval.)
    let page = eventually("the integrity page shows the cosigned checkpoint", || async {
        let page = crate::tail::integrity_page(&app.base_url(), &app.admin_key).await;
        if page.contains(
            "Cosigned by 2 witnesses: <code>w1.example/witness</code>, <code>w2.example/witness</code>",
        ) {
            Ok(page)
        } else {
            Err(page)
        }
    })
    .await;
    assert!(
        page.contains("<h2 id=\"h-witnesses\">Witnesses</h2>"),
        "{page}"
    );
    assert!(page.contains(&u1) && page.contains(&u2), "{page}");
}

/// Accepts connections and never answers: a witness that is down the worst way (a timeout,
/// not a refused connection).
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_that_is_down_delays_neither_ingest_nor_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, log) = log_key(dir.path());
    let up = TestWitness::new("up.example/witness", 4);
    let down = TestWitness::new("down.example/witness", 5);
    up.trust(&log_vkey(&log, "slow"));
    let (u_up, u_down) = (up.spawn().await, black_hole().await);
    let any = policy(
        dir.path(),
        "any.policy",
        (&log, "slow"),
        &[("up", &up, &u_up), ("down", &down, &u_down)],
        "group one any up down\nquorum one",
    );
    let app = spawn_app_with(|c| {
        c.integrity.signing_key_file = Some(key_file.clone());
        c.integrity.checkpoint_interval_ms = 100;
        c.integrity.witness_policy_file = Some(any.clone());
        c.integrity.witness_interval_ms = 200;
        c.integrity.witness_timeout_ms = 5_000;
    })
    .await;

    // Events keep being acknowledged and signed at their usual pace while the submissions to
    // the dead witness hang for 5 s each.
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        ingest(&app, "slow", &format!("s{i}"), 1).await;
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let acked = Instant::now();
    assert!(
        slowest < Duration::from_secs(2),
        "an ingest took {slowest:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let cp = app.client.checkpoint(Some("slow")).await.unwrap();
        let size = Checkpoint::from_bytes(Note::from_bytes(cp.as_bytes()).unwrap().text())
            .unwrap()
            .size();
        if size == 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint of 30 events took over 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signed_after = acked.elapsed();
    assert!(signed_after < Duration::from_secs(3), "{signed_after:?}");

    // The live witness cosigns; the policy (any one of them) is met.
    cosigned_checkpoint(&app, "slow", 30, &log, &[&up]).await;
    // The dead one is reported, with why, once its submission timed out.
    let ready = eventually("the dead witness reported as failing", || async {
        let ready: Value = serde_json::from_str(&app.client.readyz().await.unwrap()).unwrap();
        if ready["witnesses"][1]["state"] == "failing" {
            Ok(ready)
        } else {
            Err(ready.to_string())
        }
    })
    .await;
    let dead = &ready["witnesses"][1];
    assert_eq!(dead["name"], "down");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{dead}"
    );
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["witnesses"][0]["state"], "ok");
    let metrics = app.client.metrics().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("bitacora_witness_up")
            && l.contains("witness=\"down\"")
            && l.ends_with(" 0")),
        "{metrics}"
    );
    let page = crate::tail::integrity_page(&app.base_url(), &app.admin_key).await;
    assert!(page.contains("failing"), "{page}");
    assert!(page.contains("slow: no answer within"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forgot_where_a_witness_stands_resynchronises_on_409() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, log) = log_key(dir.path());
    let w = TestWitness::new("w.example/witness", 6);
    w.trust(&log_vkey(&log, "sync"));
    let url = w.spawn().await;
    let only = policy(
        dir.path(),
        "w.policy",
        (&log, "sync"),
        &[("w", &w, &url)],
        "quorum w",
    );
    let configure = |c: &mut bitacora_server::Config| {
        c.integrity.signing_key_file = Some(key_file.clone());
        c.integrity.checkpoint_interval_ms = 100;
        c.integrity.witness_policy_file = Some(only.clone());
        c.integrity.witness_interval_ms = 200;
    };
    let app = spawn_app_with(configure).await;
    ingest(&app, "sync", "x", 12).await;
    cosigned_checkpoint(&app, "sync", 12, &log, &[&w]).await;
    let data = app.stop().await;

    // The stored cosignatures are lost: the server no longer knows the witness is at 12.
    let db = rusqlite::Connection::open(data_folder(data.path()).join("bitacora.db")).unwrap();
    assert!(db.execute("DELETE FROM cosignatures", []).unwrap() >= 1);
    drop(db);

    let app = spawn_app_in_with(data, configure).await;
    ingest(&app, "sync", "y", 5).await;
    cosigned_checkpoint(&app, "sync", 17, &log, &[&w]).await;
    // It asked from 0, was told 12 (409), and asked again from 12 with a proof.
    let answers = w.answers();
    let conflict = answers
        .iter()
        .position(|a| a.status == 409 && a.old == Some(0))
        .unwrap_or_else(|| panic!("no 409: {answers:?}"));
    assert!(
        answers[conflict..]
            .iter()
            .any(|a| a.status == 200 && a.old == Some(12) && a.size == Some(17)),
        "{answers:?}"
    );
    assert_eq!(w.latest("bitacora/sync").unwrap().0, 17);
}

/// The RFC 6962 root of leaf hashes given in hex.
fn root_of(leaves: &[String]) -> [u8; 32] {
    let leaves: Vec<[u8; 32]> = leaves
        .iter()
        .map(|h| bitacora_core::canonical::parse_hex_hash(h).unwrap())
        .collect();
    bitacora_core::merkle::root_from_leaves(&leaves)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_refuses_forks_rollbacks_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, log) = log_key(dir.path());
    let w = TestWitness::new("strict.example/witness", 7);
    w.trust(&log_vkey(&log, "fork"));
    let url = w.spawn().await;
    let only = policy(
        dir.path(),
        "w.policy",
        (&log, "fork"),
        &[("w", &w, &url)],
        "quorum w",
    );
    // One submission, then none for ten minutes: the attempts below face a witness at 8.
    let app = spawn_app_with(|c| {
        c.integrity.signing_key_file = Some(key_file.clone());
        c.integrity.checkpoint_interval_ms = 100;
        c.integrity.witness_policy_file = Some(only.clone());
        c.integrity.witness_interval_ms = 600_000;
    })
    .await;
    let mut leaves = ingest(&app, "fork", "f", 8).await;
    cosigned_checkpoint(&app, "fork", 8, &log, &[&w]).await;
    let root8 = root_of(&leaves);
    assert_eq!(w.latest("bitacora/fork"), Some((8, root8)));
    leaves.extend(ingest(&app, "fork", "g", 4).await);
    let root12 = root_of(&leaves);

    // The attacks use the witness client the server uses, with the log's real key.
    let client = WitnessClient::new(
        CosignerKey::parse(&w.vkey()).unwrap(),
        &url,
        Duration::from_secs(5),
    );
    // Signed as the server signs: under the log's origin as key name.
    let named = log.with_name("bitacora/fork").unwrap();
    let sign = |size: u64, root: [u8; 32]| {
        named
            .sign_checkpoint(&CoreCheckpoint::new("bitacora/fork", size, root))
            .unwrap()
    };
    let proof_8_12: Vec<[u8; 32]> = app
        .client
        .consistency_proof(8, 12, Some("fork"))
        .await
        .unwrap()
        .hashes;

    // A fork at the same size: another tree of 8 entries.
    let err = client
        .add_checkpoint(8, &[], &sign(8, [0xaa; 32]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SubmitError::Conflict {
            witness_size: Some(8)
        }
    );
    // A fork that grows: a tree of 12 the proof does not connect to the witnessed 8.
    assert_eq!(
        client
            .add_checkpoint(8, &proof_8_12, &sign(12, [0xbb; 32]))
            .await
            .unwrap_err(),
        SubmitError::BadProof
    );
    let mut forged = proof_8_12.clone();
    forged[0][0] ^= 1;
    assert_eq!(
        client
            .add_checkpoint(8, &forged, &sign(12, root12))
            .await
            .unwrap_err(),
        SubmitError::BadProof
    );
    // A rollback: an older, genuine checkpoint.
    let root5 = root_of(&leaves[..5]);
    assert!(matches!(
        client
            .add_checkpoint(8, &[], &sign(5, root5))
            .await
            .unwrap_err(),
        SubmitError::BadRequest(_)
    ));
    assert_eq!(
        client
            .add_checkpoint(5, &[], &sign(5, root5))
            .await
            .unwrap_err(),
        SubmitError::Conflict {
            witness_size: Some(8)
        }
    );
    // A stale old size.
    assert_eq!(
        client
            .add_checkpoint(0, &[], &sign(12, root12))
            .await
            .unwrap_err(),
        SubmitError::Conflict {
            witness_size: Some(8)
        }
    );
    // The log's key under another name than the origin: a witness configured the standard
    // way does not know it.
    let legacy = log
        .sign_checkpoint(&CoreCheckpoint::new("bitacora/fork", 12, root12))
        .unwrap();
    assert_eq!(
        client
            .add_checkpoint(8, &proof_8_12, &legacy)
            .await
            .unwrap_err(),
        SubmitError::Forbidden
    );
    // Another key, another origin.
    let stranger = NoteSigner::from_seed("bitacora/fork", [77; 32]).unwrap();
    let theirs = stranger
        .sign_checkpoint(&CoreCheckpoint::new("bitacora/fork", 12, root12))
        .unwrap();
    assert_eq!(
        client
            .add_checkpoint(8, &proof_8_12, &theirs)
            .await
            .unwrap_err(),
        SubmitError::Forbidden
    );
    let elsewhere = log
        .sign_checkpoint(&CoreCheckpoint::new("bitacora/elsewhere", 12, root12))
        .unwrap();
    assert_eq!(
        client.add_checkpoint(0, &[], &elsewhere).await.unwrap_err(),
        SubmitError::UnknownLog
    );
    // Nothing moved the witness.
    assert_eq!(w.latest("bitacora/fork"), Some((8, root8)));

    // The genuine extension is cosigned, and the cosignature verifies with the policy's key.
    let cosigned = client
        .add_checkpoint(8, &proof_8_12, &sign(12, root12))
        .await
        .unwrap();
    assert_eq!(cosigned.len(), 1);
    assert_eq!(cosigned[0].name, "strict.example/witness");
    assert_eq!(w.latest("bitacora/fork"), Some((12, root12)));
    app.stop().await;
}
