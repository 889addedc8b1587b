//! The log on the transparency-log standards (CONTRACT §11), checked with code nobody here
//! wrote: the `tlog_tiles` and `signed_note` crates (cloudflare/azul, a Rust port of the Go
//! checksum database's `tlog` and `note` packages that Go's own tooling and Sunlight use).
//! They read `/logs/<tenant>/` over HTTP, authenticate every tile against the signed
//! checkpoint, recompute the root, and check a `tlog-proof` from `GET /v1/events/{id}/proof`.
//! Nothing of `bitacora_core` is used to decide whether what the server sent is right.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bitacora_client::Client;
use bitacora_core::api::BatchItem;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{
    Checkpoint, Hash, HashReader as _, Tile, TileHashReader, TileReader, check_record,
    prove_record, record_hash, tree_hash,
};

use crate::common::*;

/// GET `path` with `key` (or none); status, headers and body.
async fn get(
    app: &TestApp,
    key: Option<&str>,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app
        .client
        .http()
        .request(Method::GET, format!("{}{path}", app.base_url()));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

/// The verifier key of `tenant`'s log as `GET /v1/log` lists it (`verifier_key`): the key
/// named by the log's origin, the way C2SP witnesses and tlog-policy files name a log.
async fn log_vkey(app: &TestApp, tenant: &str) -> String {
    let (status, _, body) = get(
        app,
        Some(app.admin_key.as_str()),
        &format!("/v1/log?tenant={tenant}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let log: Value = serde_json::from_slice(&body).unwrap();
    let vkey = log["verifier_key"].as_str().unwrap().to_owned();
    let origin = log["origin"].as_str().unwrap();
    assert_eq!(vkey.split('+').next(), Some(origin), "named by the origin");
    vkey
}

/// The verifier list of the independent implementation: the log's own verifier key only.
fn verifier_list(vkey: &str) -> VerifierList {
    VerifierList::new(vec![Box::new(StandardVerifier::new(vkey).unwrap())])
}

/// Sends `n` events to `tenant` and returns their leaf hashes (hex) in seq order.
async fn ingest(client: &Client, tenant: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in numbered(tenant, prefix, n).chunks(1000) {
        let resp = client.send_batch(chunk).await.unwrap();
        for item in resp.results {
            match item {
                BatchItem::Stored(ack) => out.push(ack.leaf_hash),
                other => panic!("rejected: {other:?}"),
            }
        }
    }
    out
}

/// Polls `/logs/<tenant>/checkpoint` until it covers `size` entries; returns the note.
async fn checkpoint_covering(app: &TestApp, tenant: &str, size: u64) -> Vec<u8> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, headers, body) = get(
            app,
            Some(app.admin_key.as_str()),
            &format!("/logs/{tenant}/checkpoint"),
        )
        .await;
        if status == StatusCode::OK {
            assert_eq!(headers["cache-control"], "no-store");
            assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
            let note = Note::from_bytes(&body).unwrap();
            let cp = Checkpoint::from_bytes(note.text()).unwrap();
            if cp.size() >= size {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint of {size} entries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `tlog_tiles::TileReader` over HTTP: `tlog_tiles` writes Go sumdb paths
/// (`tile/8/<L>/<N>`, `tile/8/data/<N>`), C2SP drops the height (`tile/<L>/<N>`).
struct HttpTiles {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpTiles {
    fn url(&self, tile: &Tile) -> String {
        let path = tile.path();
        let c2sp = path
            .strip_prefix("tile/8/")
            .expect("tiles of height 8")
            .replacen("data/", "entries/", 1);
        format!("{}/tile/{c2sp}", self.base)
    }

    fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        self.runtime.block_on(async {
            let mut req = self.http.get(url);
            if let Some(key) = &self.key {
                req = req.bearer_auth(key);
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            if resp.status() != StatusCode::OK {
                return Err(format!("{url}: {}", resp.status()));
            }
            Ok(resp.bytes().await.map_err(|e| e.to_string())?.to_vec())
        })
    }
}

impl TileReader for HttpTiles {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                self.fetch(&self.url(t))
                    .map_err(|_| tlog_tiles::Error::InvalidTile)
            })
            .collect()
    }

    fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
}

/// Splits an entry bundle (big-endian u16 length, then the entry), written here from the
/// spec rather than taken from `bitacora_core`.
fn entries_of(bundle: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_log_is_read_and_authenticated_by_tlog_tiles() {
    let app = spawn_app().await;
    // 600 entries: two full level-0 tiles, a partial one of 88, a partial level-1 tile of 2.
    let leaves = ingest(&app.client, "tiles", "t", 600).await;
    let note = checkpoint_covering(&app, "tiles", 600).await;

    // The checkpoint: a signed note that an independent verifier accepts with the log's
    // verifier key, whose name is the checkpoint's origin (the C2SP convention), and a
    // tlog-checkpoint body it parses.
    let vkey = log_vkey(&app, "tiles").await;
    assert!(vkey.starts_with("bitacora/tiles+"), "{vkey}");
    let parsed = Note::from_bytes(&note).unwrap();
    let (verified, _) = parsed.verify(&verifier_list(&vkey)).unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].name(), "bitacora/tiles");
    let cp = Checkpoint::from_bytes(parsed.text()).unwrap();
    assert_eq!(cp.origin(), "bitacora/tiles");
    assert_eq!(cp.origin(), verified[0].name());
    // A new log carries no signature under the key file's name: the published key under that
    // name is no log's verifier key by the signed-note rules.
    let public = app.client.public_key().await.unwrap().remove(0);
    assert!(public.starts_with("bitacora+"), "{public}");
    assert!(parsed.verify(&verifier_list(&public)).is_err());
    assert_eq!(cp.size(), 600);
    let (size, root) = (cp.size(), *cp.hash());

    let tiles = HttpTiles {
        base: format!("{}/logs/tiles", app.base_url()),
        key: Some(app.admin_key.clone()),
        http: app.client.http().clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let hex_leaves = leaves.clone();
    tokio::task::spawn_blocking(move || {
        // Every tile the tree needs, fetched over HTTP and authenticated against the signed
        // root by `TileHashReader` (it recomputes the root from them).
        let reader = TileHashReader::new(size, root, &tiles);
        assert!(
            tree_hash(size, &reader).unwrap() == root,
            "the tiles recompute the signed root"
        );
        // Inclusion proofs computed by tlog_tiles from the served tiles, for leaves in a full
        // tile, at a tile edge and in the partial tile.
        for index in [0u64, 255, 256, 511, 599] {
            let proof = prove_record(size, index, &reader).unwrap();
            let leaf = Hash(
                hex::decode(&hex_leaves[index as usize])
                    .unwrap()
                    .try_into()
                    .unwrap(),
            );
            check_record(&proof, size, root, index, leaf).unwrap();
        }
        let stored = reader
            .read_hashes(&[tlog_tiles::stored_hash_index(0, 599)])
            .unwrap();
        assert_eq!(hex::encode(stored[0].0), hex_leaves[599]);

        // Entry bundles: each entry hashes (RFC 6962 leaf) to the level-0 tile's hash.
        for (bundle, tile, first, width) in [
            ("tile/entries/000", "tile/0/000", 0usize, 256usize),
            ("tile/entries/001", "tile/0/001", 256, 256),
            ("tile/entries/002.p/88", "tile/0/002.p/88", 512, 88),
        ] {
            let entries = entries_of(&tiles.fetch(&format!("{}/{bundle}", tiles.base)).unwrap());
            let hashes = tiles.fetch(&format!("{}/{tile}", tiles.base)).unwrap();
            assert_eq!(entries.len(), width, "{bundle}");
            assert_eq!(hashes.len(), 32 * width, "{tile}");
            for (i, entry) in entries.iter().enumerate() {
                assert_eq!(
                    record_hash(entry).0,
                    hashes[32 * i..32 * (i + 1)],
                    "{bundle} #{i}"
                );
                assert_eq!(hex::encode(record_hash(entry).0), hex_leaves[first + i]);
            }
        }
    })
    .await
    .unwrap();

    // An entry is the event's canonical form: the event as the API returns it, minus seq
    // and leaf_hash, in RFC 8785 order (here checked by re-serializing the parsed entry).
    let (_, _, bundle) = get(
        &app,
        Some(app.admin_key.as_str()),
        "/logs/tiles/tile/entries/000",
    )
    .await;
    let first: Value = serde_json::from_slice(&entries_of(&bundle)[0]).unwrap();
    assert_eq!(first["id"], "t-0");
    assert!(first.get("seq").is_none() && first.get("leaf_hash").is_none());

    // Caching: every tile is immutable; with a credential, only the client may keep it.
    for path in [
        "tile/0/000",
        "tile/0/002.p/88",
        "tile/1/000.p/2",
        "tile/entries/001",
    ] {
        let (status, headers, _) = get(
            &app,
            Some(app.admin_key.as_str()),
            &format!("/logs/tiles/{path}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(
            headers["cache-control"], "private, max-age=31536000, immutable",
            "{path}"
        );
    }
    // A full tile served twice is the same bytes (the second from the in-memory cache).
    let (_, _, a) = get(&app, Some(app.admin_key.as_str()), "/logs/tiles/tile/0/001").await;
    let (_, _, b) = get(&app, Some(app.admin_key.as_str()), "/logs/tiles/tile/0/001").await;
    assert_eq!(a, b);
    assert!(
        app.client
            .metrics()
            .await
            .unwrap()
            .contains("bitacora_tlog_tiles_served_total")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_beyond_the_signed_tree_and_bad_paths_are_404() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    // No log yet: no checkpoint, no tile.
    let (status, _, body) = get(&app, Some(key.as_str()), "/logs/empty/checkpoint").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "no_checkpoint");
    assert_eq!(
        get(&app, Some(key.as_str()), "/logs/empty/tile/0/000.p/1")
            .await
            .0,
        404
    );

    ingest(&app.client, "edge", "e", 300).await;
    checkpoint_covering(&app, "edge", 300).await;
    for (path, want) in [
        ("tile/0/000", 200),
        ("tile/0/001.p/44", 200),
        ("tile/0/001.p/43", 200),
        // Not yet in the signed tree.
        ("tile/0/001.p/45", 404),
        ("tile/0/001", 404),
        ("tile/entries/001.p/45", 404),
        ("tile/1/000", 404),
        ("tile/1/000.p/2", 404),
        ("tile/1/000.p/1", 200),
        // Only the spec's spelling of a path.
        ("tile/0/0", 404),
        ("tile/00/000", 404),
        ("tile/0/x000/000", 404),
        ("tile/0/000.p/256", 404),
        ("tile/0/000.p/0", 404),
        ("tile/0/000.p/07", 404),
        ("tile/64/000", 404),
        ("tile/8/000.p/1", 404),
        ("tile/0/x018/x446/x744/x073/x709/x551/615", 404),
        ("tile/0/x999/x999/x999/x999/x999/x999/x999/999", 404),
        ("tile/entries/x001", 404),
    ] {
        let (status, _, body) = get(&app, Some(key.as_str()), &format!("/logs/edge/{path}")).await;
        assert_eq!(
            status.as_u16(),
            want,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        if want == 404 {
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert!(
                body["error"]["code"].is_string(),
                "{path}: a JSON error body"
            );
        }
    }
    // A tenant that is not a tenant name.
    assert_eq!(
        get(&app, Some(key.as_str()), "/logs/a%20b/checkpoint")
            .await
            .0,
        400
    );
}

/// A read-only viewer token pinned to `tenant`.
async fn viewer_token(app: &TestApp, tenant: &str) -> String {
    let resp = app
        .client
        .request(Method::POST, "/v1/viewer-tokens")
        .json(&json!({"tenant": tenant, "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_need_the_tenants_read_credential() {
    let app = spawn_app().await;
    ingest(&app.client, "alpha", "a", 3).await;
    ingest(&app.client, "beta", "b", 3).await;
    checkpoint_covering(&app, "alpha", 3).await;
    checkpoint_covering(&app, "beta", 3).await;
    let alpha = viewer_token(&app, "alpha").await;
    for resource in ["checkpoint", "tile/0/000.p/3", "tile/entries/000.p/3"] {
        let path = format!("/logs/alpha/{resource}");
        assert_eq!(get(&app, None, &path).await.0, 401, "{path}");
        assert_eq!(
            get(&app, Some("bk_not_a_key"), &path).await.0,
            401,
            "{path}"
        );
        assert_eq!(
            get(&app, Some(alpha.as_str()), &path).await.0,
            200,
            "{path}"
        );
        // A credential pinned to alpha reads nothing of beta.
        let other = format!("/logs/beta/{resource}");
        let (status, _, body) = get(&app, Some(alpha.as_str()), &other).await;
        assert_eq!(status, 403, "{other}: {}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_tiles_open_the_checkpoint_and_hashes_never_the_entries() {
    let app = spawn_app_with(|c| c.integrity.public_tiles = true).await;
    ingest(&app.client, "open", "o", 256).await;
    checkpoint_covering(&app, "open", 256).await;
    let (status, headers, _) = get(&app, None, "/logs/open/checkpoint").await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    let (status, headers, body) = get(&app, None, "/logs/open/tile/0/000").await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 8192);
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // The events themselves stay behind the read credential.
    assert_eq!(get(&app, None, "/logs/open/tile/entries/000").await.0, 401);
    let token = viewer_token(&app, "open").await;
    assert_eq!(
        get(&app, Some(token.as_str()), "/logs/open/tile/entries/000")
            .await
            .0,
        200
    );
}

/// `bitacora` with a clean environment.
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

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_proofs_are_tlog_proofs_any_implementation_checks() {
    let app = spawn_app().await;
    ingest(&app.client, "proofs", "p", 21).await;
    checkpoint_covering(&app, "proofs", 21).await;
    let keys = verifier_list(&log_vkey(&app, "proofs").await);
    let dir = tempfile::tempdir().unwrap();
    // `bitacora verify-proof` takes the key the server publishes (under the key file's name)
    // and checks the log's checkpoint with it under the log's origin.
    let key_lines = app.client.public_key().await.unwrap();

    for id in ["p-0", "p-13", "p-20"] {
        let (status, headers, proof) = get(
            &app,
            Some(app.admin_key.as_str()),
            &format!("/v1/events/{id}/proof?tenant=proofs"),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&proof));
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        let text = String::from_utf8(proof.clone()).unwrap();

        // Read the proof by the spec's words, check it with tlog_tiles and signed_note.
        let mut lines = text.split('\n');
        assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
        let index: u64 = lines
            .next()
            .unwrap()
            .strip_prefix("index ")
            .unwrap()
            .parse()
            .unwrap();
        let hashes: Vec<Hash> = lines
            .by_ref()
            .take_while(|l| !l.is_empty())
            .map(|l| Hash::parse_hash(l).unwrap())
            .collect();
        let note_text: Vec<&str> = lines.collect();
        let note = Note::from_bytes(note_text.join("\n").as_bytes()).unwrap();
        note.verify(&keys).unwrap();
        let cp = Checkpoint::from_bytes(note.text()).unwrap();
        assert_eq!(cp.origin(), "bitacora/proofs");

        let event = app.client.event_json(id, Some("proofs")).await.unwrap();
        let mut value: Value = serde_json::from_slice(&event).unwrap();
        assert_eq!(value["seq"], index);
        let map = value.as_object_mut().unwrap();
        map.remove("seq");
        map.remove("leaf_hash");
        // serde_json_canonicalizer is the RFC 8785 serializer; the leaf is hashed by tlog_tiles.
        let canonical = serde_json_canonicalizer::to_vec(&value).unwrap();
        check_record(
            &hashes,
            cp.size(),
            *cp.hash(),
            index,
            record_hash(&canonical),
        )
        .unwrap();
        // Another entry's hash does not verify against it.
        assert!(check_record(&hashes, cp.size(), *cp.hash(), index, record_hash(b"{}")).is_err());

        // `bitacora verify-proof`, offline.
        let event_file = write(dir.path(), &format!("{id}.json"), &event);
        let proof_file = write(dir.path(), &format!("{id}.tlog-proof"), &proof);
        let mut cmd = bitacora();
        cmd.arg("verify-proof").arg(&event_file).arg(&proof_file);
        for k in &key_lines {
            cmd.args(["--trusted-key", k]);
        }
        let out = cmd.assert().success().get_output().stdout.clone();
        assert!(String::from_utf8_lossy(&out).starts_with("ok: "));

        // An altered event, or a proof for another event, fails (exit 1).
        let altered = String::from_utf8(event.to_vec())
            .unwrap()
            .replace("item.touch", "item.tauch");
        let altered = write(dir.path(), "altered.json", altered.as_bytes());
        let mut cmd = bitacora();
        cmd.arg("verify-proof").arg(&altered).arg(&proof_file);
        for k in &key_lines {
            cmd.args(["--trusted-key", k]);
        }
        cmd.assert().code(1);
    }
    // A stranger's key does not accept the proof.
    let event = app.client.event_json("p-1", Some("proofs")).await.unwrap();
    let (_, _, proof) = get(
        &app,
        Some(app.admin_key.as_str()),
        "/v1/events/p-1/proof?tenant=proofs",
    )
    .await;
    let event_file = write(dir.path(), "p1.json", &event);
    let proof_file = write(dir.path(), "p1.tlog-proof", &proof);
    bitacora()
        .arg("verify-proof")
        .arg(&event_file)
        .arg(&proof_file)
        .args([
            "--trusted-key",
            &bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [9; 32])
                .unwrap()
                .verifier()
                .to_string(),
        ])
        .assert()
        .code(1);

    // Unknown event: 404; a parameter it does not take: 400.
    assert_eq!(
        get(
            &app,
            Some(app.admin_key.as_str()),
            "/v1/events/nope/proof?tenant=proofs"
        )
        .await
        .0,
        404
    );
    assert_eq!(
        get(
            &app,
            Some(app.admin_key.as_str()),
            "/v1/events/p-1/proof?tenant=proofs&x=1"
        )
        .await
        .0,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_whose_canonical_form_overflows_an_entry_bundle_are_refused() {
    let app = spawn_app().await;
    // Under the 64 KiB limit on what is sent, but the server's additions (id, received_at,
    // category, severity) take the canonical form past 65,535 bytes.
    let filler = "x".repeat(65_536 - 120);
    let input = json!({"tenant": "big", "action": "a.b", "metadata": {"f": filler}});
    let sent = serde_json::to_vec(&input).unwrap();
    assert!(sent.len() <= 65_536, "{}", sent.len());
    let resp = app
        .client
        .request(Method::POST, "/v1/events")
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("canonical form"),
        "{body}"
    );
    // In a batch, only that event is refused.
    let small = json!({"tenant": "big", "action": "a.b"});
    let resp = app
        .client
        .request(Method::POST, "/v1/events/batch")
        .json(&json!([input, small]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["results"][0]["error"]["code"], "too_large");
    assert_eq!(body["results"][1]["seq"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_proof_checks_witness_cosignatures_against_a_policy() {
    use bitacora_core::witness::Cosigner;

    let app = spawn_app().await;
    ingest(&app.client, "witnessed", "w", 5).await;
    checkpoint_covering(&app, "witnessed", 5).await;
    let dir = tempfile::tempdir().unwrap();
    let event = app
        .client
        .event_json("w-3", Some("witnessed"))
        .await
        .unwrap();
    let event_file = write(dir.path(), "w3.json", &event);
    let (_, _, proof) = get(
        &app,
        Some(app.admin_key.as_str()),
        "/v1/events/w-3/proof?tenant=witnessed",
    )
    .await;
    let proof = String::from_utf8(proof).unwrap();
    // The checkpoint's text: after the proof's blank line, up to the note's blank line.
    let note = &proof[proof.find("\n\n").unwrap() + 2..];
    let text = &note[..note.rfind("\n\n").unwrap() + 1];
    let witnesses: Vec<Cosigner> = (1..=3)
        .map(|i| Cosigner::from_seed(format!("w{i}.example"), [i; 32]).unwrap())
        .collect();
    // A proof whose checkpoint carries the cosignatures of `by` (appended signature lines).
    let cosigned = |by: &[usize]| -> std::path::PathBuf {
        let mut out = proof.clone();
        for &i in by {
            out.push_str(&witnesses[i].cosign(text, 1_790_000_000));
        }
        write(
            dir.path(),
            &format!("cosigned-{by:?}.tlog-proof"),
            out.as_bytes(),
        )
    };
    // The policy names the log by its own verifier key (named by the origin), as C2SP
    // tlog-policy files do.
    let log_key = log_vkey(&app, "witnessed").await;
    let policy_file = |quorum: &str| -> std::path::PathBuf {
        let text = format!(
            "log {log_key}\nwitness A {}\nwitness B {}\nwitness C {}\n{quorum}\n",
            witnesses[0].key(),
            witnesses[1].key(),
            witnesses[2].key()
        );
        write(
            dir.path(),
            &format!("policy-{}", quorum.len()),
            text.as_bytes(),
        )
    };
    let two_of_three = policy_file("group two 2 A B C\nquorum two");
    let run = |proof: &std::path::Path, policy: &std::path::Path| {
        let mut cmd = bitacora();
        cmd.arg("verify-proof")
            .arg(&event_file)
            .arg(proof)
            .arg("--policy")
            .arg(policy);
        cmd.assert()
    };
    let out = run(&cosigned(&[0, 2]), &two_of_three)
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains("cosigned by A, C"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // One cosignature, or none, does not meet the quorum.
    run(&cosigned(&[1]), &two_of_three).code(1);
    run(&cosigned(&[]), &two_of_three).code(1);
    // A policy that asks for no cosignature accepts the log's signature alone.
    run(&cosigned(&[]), &policy_file("quorum none")).success();
    // A policy naming another log key accepts nothing.
    let stranger = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [9; 32]).unwrap();
    let foreign = write(
        dir.path(),
        "foreign-policy",
        format!("log {}\nquorum none\n", stranger.verifier()).as_bytes(),
    );
    run(&cosigned(&[0, 1, 2]), &foreign).code(1);
}
