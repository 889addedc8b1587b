//! The command line (`assert_cmd`): keys, export, config.

use std::path::Path;

use assert_cmd::Command;
use bitacora_client::{Method, SearchParams};
use serde_json::{Value, json};

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

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

fn stderr_of_failure(cmd: &mut Command) -> String {
    let out = cmd.assert().failure().get_output().stderr.clone();
    String::from_utf8(out).unwrap()
}

fn create_key(data: &Path, scope: &str, name: &str, tenant: Option<&str>) -> String {
    let mut cmd = bitacora(data);
    cmd.args(["keys", "create", "--scope", scope, "--name", name]);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    let out = stdout_of(&mut cmd);
    out.lines().last().expect("a last line").trim().to_owned()
}

fn list_json(data: &Path) -> (String, Vec<Value>) {
    let text = stdout_of(bitacora(data).args(["keys", "list", "--json"]));
    let keys: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (text, keys)
}

/// Every file under `dir`, recursively (the database, its WAL, anything else).
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

#[test]
fn keys_create_list_revoke_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let secret = create_key(dir.path(), "read", "ci-reader", Some("acme"));
    assert!(
        secret.len() >= 20 && !secret.contains(' '),
        "the last line is the secret alone: {secret:?}"
    );

    let (text, keys) = list_json(dir.path());
    assert!(!text.contains(&secret), "keys list --json shows a secret");
    let key = keys
        .iter()
        .find(|k| k["name"] == "ci-reader")
        .expect("the new key is listed");
    let mut fields: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "id",
            "last_used_at",
            "name",
            "revoked",
            "scope",
            "tenant"
        ]
    );
    assert_eq!(key["scope"], "read");
    assert_eq!(key["tenant"], "acme");
    assert_eq!(key["revoked"], false);
    assert_eq!(key["last_used_at"], Value::Null);
    assert!(
        key["created_at"].as_str().unwrap().starts_with("20"),
        "{key}"
    );
    let id = key["id"].as_str().unwrap().to_owned();

    let table = stdout_of(bitacora(dir.path()).args(["keys", "list"]));
    assert!(
        table.contains("ci-reader") && table.contains(&id),
        "{table}"
    );
    assert!(!table.contains(&secret), "keys list shows a secret");

    for (file, bytes) in all_bytes(dir.path()) {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is stored in plain text in {file}"
        );
    }

    stdout_of(bitacora(dir.path()).args(["keys", "revoke", &id]));
    let (_, keys) = list_json(dir.path());
    let key = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(key["revoked"], true);

    let err = stderr_of_failure(bitacora(dir.path()).args(["keys", "revoke", "no-such-key"]));
    assert!(err.contains("no-such-key"), "{err}");

    // Both were audited in the key's tenant, and so is an export (after it completed, so
    // this one lists only the two key events).
    let audit = stdout_of(bitacora(dir.path()).args([
        "export",
        "--format",
        "ndjson",
        "--tenant",
        "acme",
        "--action",
        "bitacora.*",
        "--order",
        "asc",
    ]));
    let events: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["bitacora.key.created", "bitacora.key.revoked"],
        "{audit}"
    );
    for e in &events {
        assert_eq!(e["category"], "bitacora");
        assert_eq!(e["actor"]["id"], "cli");
        assert_eq!(e["target"]["id"], id.as_str());
        assert!(!e.to_string().contains(&secret));
    }
    assert_eq!(events[0]["metadata"]["scope"], "read");
    let audit = stdout_of(bitacora(dir.path()).args([
        "export",
        "--format",
        "ndjson",
        "--tenant",
        "acme",
        "--action",
        "bitacora.export",
    ]));
    let export: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(export["metadata"]["format"], "ndjson");
    assert_eq!(export["metadata"]["filters"]["action"], "bitacora.*");
}

#[test]
fn keys_create_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    bitacora(dir.path())
        .args(["keys", "create", "--scope", "root", "--name", "x"])
        .assert()
        .failure();
    let err = stderr_of_failure(bitacora(dir.path()).args([
        "keys", "create", "--scope", "read", "--name", "x", "--tenant", "a/b",
    ]));
    assert!(err.contains("--tenant"), "{err}");
}

/// Keys made by the CLI work against the server: scopes are enforced, a revoked key is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keys_work_against_the_server() {
    let app = spawn_app().await;
    let data = app.stop().await;
    let reader = create_key(&data_folder(data.path()), "read", "reader", None);
    let ingester = create_key(&data_folder(data.path()), "ingest", "ingester", None);
    let doomed = create_key(&data_folder(data.path()), "admin", "doomed", None);
    let (_, keys) = list_json(&data_folder(data.path()));
    let doomed_id = keys.iter().find(|k| k["name"] == "doomed").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    stdout_of(bitacora(&data_folder(data.path())).args(["keys", "revoke", &doomed_id]));

    let app = spawn_app_in(data).await;
    let e = event(json!({"action": "x"}));
    let ingest = app.client.with_api_key(&ingester);
    ingest.send(&e).await.unwrap();
    assert_api_error(ingest.search(&SearchParams::new()).await, 403, None);

    let read = app.client.with_api_key(&reader);
    // `action=x`: the key commands' own `bitacora.key.*` records are in the log too.
    assert_eq!(
        read.search(&SearchParams::new().action("x"))
            .await
            .unwrap()
            .events
            .len(),
        1
    );
    assert_api_error(read.send(&e).await, 403, None);

    let revoked = app.client.with_api_key(&doomed);
    assert_api_error(revoked.search(&SearchParams::new()).await, 401, None);
    let resp = revoked
        .request(Method::POST, "/v1/events")
        .json(&json!({"action": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_the_store_with_the_search_filters() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let data = app.stop().await;
    let dir = &data_folder(data.path());

    let ndjson_ids = |args: &[&str]| -> Vec<String> {
        let mut cmd = bitacora(dir);
        cmd.args(["export", "--format", "ndjson", "--tenant", SEED_TENANT])
            .args(args);
        stdout_of(&mut cmd)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ndjson_ids(&[]).len(), 9);
    assert_eq!(
        ndjson_ids(&["--action", "user.*"]),
        ["login-fail-1", "login-1", "role-1"]
    );
    assert_eq!(
        ndjson_ids(&["--min-severity", "high", "--target-type", "user"]),
        ["ban-1", "role-2", "role-1"]
    );
    assert_eq!(
        ndjson_ids(&[
            "--since",
            "2026-01-22",
            "--until",
            "2026-01-23",
            "--ip",
            "2001:db8::/32"
        ]),
        ["login-fail-1", "login-1"]
    );
    assert_eq!(
        ndjson_ids(&["--actor", "NEXO", "--order", "asc"]),
        ["role-2", "ban-1"]
    );
    assert_eq!(
        ndjson_ids(&[
            "--actor-id",
            "15",
            "--category",
            "device",
            "--source",
            "web"
        ]),
        ["dev-2", "dev-1"]
    );
    assert_eq!(
        ndjson_ids(&["--outcome", "failure", "--severity", "high"]),
        ["login-fail-2"]
    );
    assert_eq!(ndjson_ids(&["--target-id", "789"]), ["ban-1"]);
    let acme = stdout_of(bitacora(dir).args(["export", "--format", "ndjson", "--tenant", "acme"]));
    assert_eq!(acme.lines().count(), 1);

    let csv_text = stdout_of(bitacora(dir).args([
        "export",
        "--format",
        "csv",
        "--tenant",
        SEED_TENANT,
        "--outcome",
        "failure",
        "--order",
        "asc",
    ]));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let id_col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "id")
        .unwrap();
    let ids: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[id_col].to_owned())
        .collect();
    assert_eq!(ids, ["login-fail-1", "login-fail-2"]);

    let err =
        stderr_of_failure(bitacora(dir).args(["export", "--format", "ndjson", "--ip", "1.2.3"]));
    assert!(err.contains("--ip"), "the message names the flag: {err}");
    let err =
        stderr_of_failure(bitacora(dir).args(["export", "--format", "ndjson", "--since", "ayer"]));
    assert!(err.contains("--since"), "{err}");
}

#[test]
fn config_print_default_is_a_usable_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = stdout_of(bitacora(dir.path()).args(["config", "print-default"]));
    let value: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(value["server"]["listen"].as_str(), Some("127.0.0.1:8480"));
    assert_eq!(value["store"]["data"].as_str(), Some("./bitacora-data"));
    assert!(
        text.lines().any(|l| l.trim_start().starts_with('#')),
        "it is commented"
    );

    // It works as --config, and flags win over it.
    let file = dir.path().join("bitacora.toml");
    std::fs::write(&file, &text).unwrap();
    let data = dir.path().join("store");
    create_key(&data, "read", "via-config", None);
    let mut cmd = bitacora(&data);
    cmd.arg("--config")
        .arg(&file)
        .args(["keys", "list", "--json"]);
    assert!(stdout_of(&mut cmd).contains("via-config"));
}

#[test]
fn settings_come_from_the_environment_and_errors_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("env-store");
    // BITACORA_DATA instead of --data.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitacora"));
    cmd.env("BITACORA_DATA", &data)
        .args(["keys", "create", "--scope", "ingest", "--name", "from-env"]);
    cmd.assert().success();
    let (_, keys) = list_json(&data);
    assert!(keys.iter().any(|k| k["name"] == "from-env"));

    let err = stderr_of_failure(
        bitacora(dir.path())
            .arg("--config")
            .arg(dir.path().join("missing.toml"))
            .args(["keys", "list"]),
    );
    assert!(err.contains("--config"), "{err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = stderr_of_failure(bitacora(&file).args(["keys", "list"]));
    assert!(
        err.contains("--data") && err.contains("BITACORA_DATA"),
        "{err}"
    );

    let err = stderr_of_failure(bitacora(dir.path()).args(["serve", "--listen", "nowhere"]));
    assert!(err.contains("--listen"), "{err}");
    let mut cmd = bitacora(dir.path());
    cmd.env("BITACORA_LISTEN", "nowhere").arg("serve");
    let err = stderr_of_failure(&mut cmd);
    assert!(
        err.contains("--listen") || err.contains("BITACORA_LISTEN"),
        "{err}"
    );
}

/// A key pinned to a tenant sees and writes that tenant alone (CONTRACT §6), in every endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_keys_see_and_write_their_tenant_alone() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let data = app.stop().await;
    let reader = create_key(
        &data_folder(data.path()),
        "read",
        "acme-reader",
        Some("acme"),
    );
    let writer = create_key(
        &data_folder(data.path()),
        "ingest",
        "acme-writer",
        Some("acme"),
    );
    let app = spawn_app_in(data).await;

    let read = app.client.with_api_key(&reader);
    let page = read.search(&SearchParams::new()).await.unwrap();
    // Besides the `bitacora.key.created` records of the two keys, in their tenant.
    let ids: Vec<_> = page
        .events
        .iter()
        .filter(|e| !e.action.starts_with("bitacora."))
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids, ["acme-1"], "a pinned key defaults to its tenant");
    read.search(&SearchParams::new().tenant("acme"))
        .await
        .unwrap();
    assert_api_error(
        read.search(&SearchParams::new().tenant(SEED_TENANT)).await,
        403,
        Some("tenant"),
    );
    assert_api_error(
        read.event("role-1", Some(SEED_TENANT)).await,
        403,
        Some("tenant"),
    );
    assert_api_error(read.actions(Some(SEED_TENANT)).await, 403, Some("tenant"));
    assert_api_error(
        read.export_bytes(
            bitacora_client::ExportFormat::Ndjson,
            &SearchParams::new().tenant(SEED_TENANT),
        )
        .await,
        403,
        Some("tenant"),
    );
    assert_eq!(
        read.event("acme-1", None).await.unwrap().tenant.as_str(),
        "acme"
    );

    let write = app.client.with_api_key(&writer);
    let ack = write
        .send(&event(json!({"id": "pinned-1", "action": "x"})))
        .await
        .unwrap();
    // After acme-1 and the two keys' `bitacora.key.created` records.
    assert_eq!(ack.seq, 3, "written to acme, after acme-1");
    assert_eq!(
        read.event("pinned-1", None).await.unwrap().tenant.as_str(),
        "acme"
    );
    assert_api_error(
        write
            .send(&event(json!({"action": "x", "tenant": SEED_TENANT})))
            .await,
        403,
        Some("tenant"),
    );
}

/// Any number of processes may append to one embedded store: `keys create|revoke` and
/// `export` append self-audit events beside a running server, whose writer must notice those
/// commits (it caches each log's size and Merkle frontier) instead of failing its next group
/// commit with a 500 for every request in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_appends_beside_a_running_server_without_failing_its_writes() {
    let app = spawn_app().await;
    let data = app.data_dir();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let client = app.client.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..60 {
                    let tenant = if i % 2 == 0 { "default" } else { "acme" };
                    let r = client
                        .request(Method::POST, "/v1/events")
                        .json(&json!({"id": format!("w{w}-{i}"), "tenant": tenant, "action": "beside.cli"}))
                        .send()
                        .await
                        .unwrap();
                    statuses.push(r.status().as_u16());
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                statuses
            })
        })
        .collect();
    // Meanwhile the CLI writes to the same store: keys (audited in `default` and `acme`) and
    // an export (audited too).
    let cli = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            for i in 0..4 {
                create_key(&data, "read", &format!("side-{i}"), Some("acme"));
                create_key(&data, "ingest", &format!("plain-{i}"), None);
            }
            stdout_of(bitacora(&data).args(["export", "--format", "ndjson", "--tenant", "acme"]));
        }
    });
    cli.await.unwrap();
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    assert!(
        all.iter().all(|s| *s == 201),
        "every write beside the CLI is stored: {:?}",
        all.iter().filter(|s| **s != 201).collect::<Vec<_>>()
    );
    // Both processes' events are in one gapless log per tenant, and it verifies.
    for tenant in ["default", "acme"] {
        let page = app
            .client
            .search(
                &SearchParams::new()
                    .tenant(tenant)
                    .action("bitacora.*")
                    .limit(1000),
            )
            .await
            .unwrap();
        assert!(
            !page.events.is_empty(),
            "{tenant}: the CLI's self-audit is there"
        );
    }
    let data_root = app.stop().await;
    let out = stdout_of(bitacora(&data_folder(data_root.path())).arg("verify"));
    assert!(out.contains("intact"), "{out}");
}

/// A bad `[retention]` (CONTRACT §9) stops `serve` (and every command) at startup with an
/// error naming the setting: a bad duration, an unknown field, a malformed action pattern,
/// an archive or S3 endpoint bitacora cannot use — from the file or the environment.
#[test]
fn bad_retention_settings_are_startup_errors_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bitacora.toml");
    for (toml_text, expect) in [
        (
            "[retention]\ndefault = \"90 days\"\n",
            &["retention", "`90 days` is not a duration"][..],
        ),
        (
            "[retention]\n[[retention.rule]]\ncategory = \"auth\"\nkeep = \"1y\"\n",
            &["`1y` is not a duration"],
        ),
        (
            "[retention]\n[[retention.rule]]\ncategory = \"auth\"\nkepp = \"1d\"\n",
            &["retention.rule.0.kepp", "unknown field"],
        ),
        (
            "[retention]\ndefualt = \"30d\"\n",
            &["retention.defualt", "unknown field"],
        ),
        (
            "[retention]\n[[retention.rule]]\naction = \"us*er\"\nkeep = \"1d\"\n",
            &["retention.rule[0].action", "prefix ending in *"],
        ),
        (
            "[retention]\narchive_url = \"ftp://archive/x\"\n",
            &["retention.archive_url", "unsupported scheme `ftp`"],
        ),
        (
            "[retention]\narchive_url = \"s3://b/p\"\ns3_endpoint = \"minio:9000\"\n",
            &["retention.s3_endpoint"],
        ),
        (
            "[retention]\nmin_delay = \"-1d\"\n",
            &["`-1d` is not a duration"],
        ),
    ] {
        std::fs::write(&file, toml_text).unwrap();
        let err = stderr_of_failure(
            bitacora(&dir.path().join("data"))
                .arg("--config")
                .arg(&file)
                .args(["serve", "--listen", "127.0.0.1:0"]),
        );
        for e in expect {
            assert!(err.contains(e), "{toml_text}: {err}");
        }
    }
    let mut cmd = bitacora(&dir.path().join("data"));
    cmd.env("BITACORA_RETENTION__DEFAULT", "30 days")
        .args(["retention", "run", "--dry-run"]);
    let err = stderr_of_failure(&mut cmd);
    assert!(err.contains("`30 days` is not a duration"), "{err}");
}
