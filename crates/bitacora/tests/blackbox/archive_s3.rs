//! Retention archives in S3 (CONTRACT §9, docs/LIFECYCLE.md) against a real S3-compatible
//! server: moto's server mode (PyPI `moto[server]`), started here on an ephemeral port. The
//! archive-then-purge of `bitacora retention run` writes `.bundle.zst` objects to
//! `s3://bucket/prefix`, `bitacora archive list` shows them, one fetched back from the bucket
//! passes `bitacora verify-bundle`, and a bucket that is unreachable or that the server refuses
//! means no purge at all.
//!
//! Without `moto_server` these tests fail when the environment variable `CI` is set (`.ci/test`
//! installs it) and are skipped, saying so, otherwise.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bitacora_client::{ClientError, SearchParams};

use crate::common::*;

/// A moto S3 server on 127.0.0.1, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` on an ephemeral port; `None` (outside CI) when it is not installed.
fn start_moto() -> Option<Moto> {
    let spawned = StdCommand::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI needs moto's S3 server (pip install \"moto[server]\"): {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: moto_server is not installed ({e}); pip install \"moto[server]\" to run \
                 the S3 archive tests"
            );
            return None;
        }
    };
    // werkzeug prints `Running on http://127.0.0.1:PORT` once it listens.
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(at) = line.find("Running on http://") {
                let _ = tx.send(line[at + "Running on ".len()..].trim().to_owned());
                sent = true;
            }
        }
    });
    let endpoint = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("moto_server said where it listens within 30 s");
    Some(Moto { child, endpoint })
}

/// `bitacora` with a clean environment, `--data DIR`, `--config FILE` and test credentials.
fn bitacora(data: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitacora"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("BITACORA_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("BITACORA_LOG_LEVEL", "warn")
        // moto accepts any credentials; these stand for the operator's.
        .env("AWS_ACCESS_KEY_ID", "bitacora-test")
        .env("AWS_SECRET_ACCESS_KEY", "bitacora-test-secret")
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(config);
    cmd
}

fn retention_toml(archive_url: &str, endpoint: &str) -> String {
    format!(
        "[retention]\ndefault = \"1s\"\nmin_delay = \"0s\"\nbatch_size = 5\n\
         archive_url = \"{archive_url}\"\ns3_endpoint = \"{endpoint}\"\ns3_region = \"eu-west-1\"\n"
    )
}

/// Tenant acme's `item.touch` events (not the self-audit events exports and purges add).
async fn count(data: &Path, config: &Path) -> usize {
    let out = bitacora(data, config)
        .args(["export", "--format", "ndjson", "--tenant", "acme"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""action":"item.touch""#))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_archives_to_s3_and_purges_only_after_the_bucket_confirmed() {
    let Some(moto) = start_moto() else { return };
    let http = reqwest::Client::new();
    // The bucket the archive goes to (moto needs no signature to create it).
    let made = http
        .put(format!("{}/audit-archive", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "create bucket: {made:?}");

    // 12 events of tenant acme, signed by a checkpoint, in a stopped server's store.
    let app = spawn_app().await;
    app.client
        .send_batch(&numbered("acme", "s3", 12))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app
        .client
        .checkpoint(Some("acme"))
        .await
        .map_or(true, |note| !note.contains("\n12\n"))
    {
        assert!(Instant::now() < deadline, "no checkpoint of 12 events");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let public = app.client.public_key().await.unwrap();
    let data = app.data_dir();
    let _root = app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("retention.toml");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A bucket the server refuses (it does not exist): the pass fails, nothing is purged.
    std::fs::write(
        &config,
        retention_toml("s3://no-such-bucket/bitacora", &moto.endpoint),
    )
    .unwrap();
    let refused = bitacora(&data, &config)
        .args(["retention", "run", "--tenant", "acme"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let refused = String::from_utf8(refused).unwrap();
    assert!(
        refused.contains("archive") && refused.contains("NoSuchBucket"),
        "{refused}"
    );
    assert_eq!(count(&data, &config).await, 12, "nothing purged");

    // An unreachable endpoint: the same.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::fs::write(
        &config,
        retention_toml(
            "s3://audit-archive/bitacora",
            &format!("http://127.0.0.1:{port}"),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let unreachable = bitacora(&data, &config)
        .args(["retention", "run", "--tenant", "acme"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let unreachable = String::from_utf8(unreachable).unwrap();
    assert!(unreachable.contains("archive"), "{unreachable}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "an unreachable archive fails the pass promptly"
    );
    assert_eq!(count(&data, &config).await, 12, "nothing purged");

    // The bucket: 12 events in 3 archived bundles, then purged.
    std::fs::write(
        &config,
        retention_toml("s3://audit-archive/bitacora/prod", &moto.endpoint),
    )
    .unwrap();
    let out = bitacora(&data, &config)
        .args(["retention", "run", "--tenant", "acme"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("purged 12 events in 3 batches"), "{out}");
    assert!(
        out.contains(
            "archived to s3://audit-archive/bitacora/prod/acme/000000000000-000000000004-"
        ),
        "{out}"
    );
    assert_eq!(count(&data, &config).await, 0, "the content is gone");

    let listed = bitacora(&data, &config)
        .args(["archive", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let objects = listed.as_array().unwrap();
    assert_eq!(objects.len(), 3, "{listed}");
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        names[0].starts_with("acme/000000000000-000000000004-"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with("acme/000000000005-000000000009-"),
        "{names:?}"
    );
    assert!(
        names[2].starts_with("acme/000000000010-000000000011-"),
        "{names:?}"
    );
    for o in objects {
        let name = o["name"].as_str().unwrap();
        assert!(name.ends_with(".bundle.zst"));
        assert_eq!(
            o["url"].as_str().unwrap(),
            format!("s3://audit-archive/bitacora/prod/{name}")
        );
        assert!(o["size"].as_u64().unwrap() > 0);
    }
    let text = bitacora(&data, &config)
        .args(["archive", "list", "--tenant", "acme"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(text).unwrap().lines().count(), 3);

    // One object, fetched from the bucket by another S3 client (boto3, which moto runs on),
    // verified offline.
    let file = dir.path().join("fetched.bundle.zst");
    let fetched = StdCommand::new("python3")
        .args([
            "-c",
            "import sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='eu-west-1',\n\
                  aws_access_key_id='bitacora-test', aws_secret_access_key='bitacora-test-secret')\n\
             s3.download_file('audit-archive', sys.argv[2], sys.argv[3])",
            &moto.endpoint,
            &format!("bitacora/prod/{}", names[1]),
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(fetched.success(), "boto3 could not fetch the object");
    let verified = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .env_clear()
        .arg("verify-bundle")
        .arg(&file)
        .args(["--trusted-key", &public[0]])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let verified = String::from_utf8(verified).unwrap();
    assert!(verified.contains("5 events of tenant acme"), "{verified}");

    // A server on the purged store answers 410 for a purged event and searches find none.
    let app = spawn_app_in(_root).await;
    let found = app
        .client
        .search(&SearchParams::new().tenant("acme").action("item.touch"))
        .await
        .unwrap();
    assert_eq!(found.events.len(), 0);
    let gone = app.client.event("s3-3", Some("acme")).await.unwrap_err();
    match gone {
        ClientError::Api { status, body } => {
            assert_eq!((status.as_u16(), body.error.code.as_str()), (410, "purged"));
        }
        other => panic!("expected 410 purged, got {other}"),
    }
    // Once the server has signed what the CLI appended (exports, purge announcements),
    // `bitacora verify` accounts for every purge.
    let newest = app
        .client
        .search(&SearchParams::new().tenant("acme").limit(1))
        .await
        .unwrap()
        .events[0]
        .seq
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let note = app.client.checkpoint(Some("acme")).await.unwrap();
        let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
        if size > newest {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covering seq {newest}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _root = app.stop().await;
    let out = bitacora(&data, &config)
        .arg("verify")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("acme"), "{out}");
}
