//! The log service against a real SQLite store: checkpoints, proofs, and `verify_tenant`
//! on logs tampered with by editing the database file directly.

mod common;

use std::time::Duration;

use bitacora_core::canonical::leaf_hash;
use bitacora_core::checkpoint::{open_checkpoint, tenant_origin};
use bitacora_core::merkle;
use bitacora_log::{
    InclusionState, LogError, VerifyOptions, VerifyOutcome, VerifyReport, checkpoint_tenant,
    consistency_proof, event_inclusion_status, inclusion_proof, root_at, spawn_checkpointer,
    verify_tenant,
};
use bitacora_store::Store;
use common::*;
use rusqlite::{Connection, params};

async fn leaves(store: &dyn Store, t: &str, n: u64) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for seq in 0..n {
        out.push(
            store
                .event_by_seq(&tenant(t), seq)
                .await
                .unwrap()
                .unwrap()
                .leaf_hash,
        );
    }
    out
}

#[tokio::test]
async fn checkpointer_signs_growing_logs_once_per_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = signer();
    let t = tenant("acme");
    assert!(
        checkpoint_tenant(store.as_ref(), &s, &t, 1)
            .await
            .unwrap()
            .is_none()
    );
    append(store.as_ref(), "acme", 0, 10).await;
    let cp = checkpoint_tenant(store.as_ref(), &s, &t, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.size, 10);
    assert!(
        checkpoint_tenant(store.as_ref(), &s, &t, 2)
            .await
            .unwrap()
            .is_none()
    );
    append(store.as_ref(), "acme", 10, 27).await;
    let cp2 = checkpoint_tenant(store.as_ref(), &s, &t, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp2.size, 27);
    let all = store.checkpoints(&t, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|c| c.size).collect::<Vec<_>>(), vec![10, 27]);
    let l = leaves(store.as_ref(), "acme", 27).await;
    for c in &all {
        // Signed under the origin as key name: the log's verifier key opens it by the
        // signed-note rules alone.
        let vkey = signer().verifier().with_name("bitacora/acme").unwrap();
        let (signed, _) = open_checkpoint(&c.note, "bitacora/acme", &[vkey]).unwrap();
        assert_eq!(signed.size, c.size);
        assert_eq!(signed.root, c.root);
        assert_eq!(c.root, merkle::root_from_leaves(&l[..c.size as usize]));
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn background_checkpointer_covers_every_event_and_signs_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let token = tokio_util::sync::CancellationToken::new();
    let handle = spawn_checkpointer(
        store.clone(),
        std::sync::Arc::new(signer()),
        Duration::from_millis(20),
        token.clone(),
    );
    append(store.as_ref(), "acme", 0, 50).await;
    append(store.as_ref(), "beta", 0, 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store
            .latest_checkpoint(&tenant("acme"))
            .await
            .unwrap()
            .unwrap()
            .size,
        50
    );
    append(store.as_ref(), "acme", 50, 53).await;
    token.cancel();
    handle.await.unwrap();
    assert_eq!(
        store
            .latest_checkpoint(&tenant("acme"))
            .await
            .unwrap()
            .unwrap()
            .size,
        53
    );
    assert_eq!(
        store
            .latest_checkpoint(&tenant("beta"))
            .await
            .unwrap()
            .unwrap()
            .size,
        5
    );
    let sizes: Vec<u64> = store
        .checkpoints(&tenant("acme"), 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    let mut dedup = sizes.clone();
    dedup.dedup();
    assert_eq!(sizes, dedup);
    store.close().await.unwrap();
}

#[tokio::test]
async fn proofs_verify_against_roots_for_many_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = tenant("acme");
    append(store.as_ref(), "acme", 0, 70).await;
    let l = leaves(store.as_ref(), "acme", 70).await;
    for size in 1..=70u64 {
        let root = root_at(store.as_ref(), &t, size).await.unwrap();
        assert_eq!(
            root,
            merkle::root_from_leaves(&l[..size as usize]),
            "size {size}"
        );
        for seq in (0..size).step_by(((size / 9) as usize).max(1)) {
            let p = inclusion_proof(store.as_ref(), &t, seq, size)
                .await
                .unwrap();
            assert_eq!((p.leaf_index, p.tree_size), (seq, size));
            merkle::verify_inclusion(&l[seq as usize], seq, size, &p.hashes, &root)
                .unwrap_or_else(|e| panic!("seq {seq} size {size}: {e}"));
        }
        for first in (0..=size).step_by(((size / 7) as usize).max(1)) {
            let p = consistency_proof(store.as_ref(), &t, first, size)
                .await
                .unwrap();
            let r1 = merkle::root_from_leaves(&l[..first as usize]);
            merkle::verify_consistency(first, size, &p.hashes, &r1, &root)
                .unwrap_or_else(|e| panic!("{first}->{size}: {e}"));
        }
    }
    // The JSON shape of CONTRACT §3.
    let p = inclusion_proof(store.as_ref(), &t, 3, 10).await.unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["leaf_index"], 3);
    assert_eq!(json["tree_size"], 10);
    let h = json["hashes"][0].as_str().unwrap();
    assert_eq!(h.len(), 64);
    assert_eq!(h, h.to_lowercase());
    let c =
        serde_json::to_value(consistency_proof(store.as_ref(), &t, 3, 10).await.unwrap()).unwrap();
    assert_eq!(
        (c["first"].as_u64(), c["second"].as_u64()),
        (Some(3), Some(10))
    );

    // Bad requests name their field.
    let field = |e: LogError| match e {
        LogError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        field(
            inclusion_proof(store.as_ref(), &t, 0, 71)
                .await
                .unwrap_err()
        ),
        "tree_size"
    );
    assert_eq!(
        field(
            inclusion_proof(store.as_ref(), &t, 10, 10)
                .await
                .unwrap_err()
        ),
        "seq"
    );
    assert_eq!(
        field(inclusion_proof(store.as_ref(), &t, 0, 0).await.unwrap_err()),
        "seq"
    );
    assert_eq!(
        field(
            consistency_proof(store.as_ref(), &t, 5, 71)
                .await
                .unwrap_err()
        ),
        "second"
    );
    assert_eq!(
        field(
            consistency_proof(store.as_ref(), &t, 6, 5)
                .await
                .unwrap_err()
        ),
        "first"
    );
    assert_eq!(
        field(root_at(store.as_ref(), &t, 71).await.unwrap_err()),
        "tree_size"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn event_status_is_pending_then_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = tenant("acme");
    append(store.as_ref(), "acme", 0, 20).await;
    let st = event_inclusion_status(store.as_ref(), &t, 5, &verifiers())
        .await
        .unwrap();
    assert_eq!(st.state, InclusionState::Pending);
    checkpoint_tenant(store.as_ref(), &signer(), &t, 1)
        .await
        .unwrap();
    append(store.as_ref(), "acme", 20, 25).await;
    let st = event_inclusion_status(store.as_ref(), &t, 5, &verifiers())
        .await
        .unwrap();
    assert!(st.verified, "{st:?}");
    assert_eq!(st.state, InclusionState::Verified);
    assert_eq!(st.tree_size, Some(20));
    assert!(st.checkpoint.unwrap().starts_with("bitacora/acme\n20\n"));
    let st = event_inclusion_status(store.as_ref(), &t, 22, &verifiers())
        .await
        .unwrap();
    assert_eq!(st.state, InclusionState::Pending);
    // A checkpoint signed by an unknown key does not verify.
    let other = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [1; 32]).unwrap();
    let st = event_inclusion_status(store.as_ref(), &t, 5, &[other.verifier()])
        .await
        .unwrap();
    assert_eq!(st.state, InclusionState::Failed);
    assert!(matches!(
        event_inclusion_status(store.as_ref(), &t, 99, &verifiers()).await,
        Err(LogError::NotFound(_))
    ));
    store.close().await.unwrap();
}

// ---- verify_tenant ----------------------------------------------------------------------

const N: u64 = 300;

fn opts() -> VerifyOptions {
    VerifyOptions {
        unsigned_grace: Duration::ZERO,
        ..VerifyOptions::default()
    }
}

/// A closed store with 300 events in `acme` (checkpoints at 100, 200 and 300) and 40 in
/// `other`.
async fn sample_store(dir: &std::path::Path) {
    let store = open(dir);
    let s = signer();
    for (i, end) in [100, 200, N].into_iter().enumerate() {
        let from = [0, 100, 200][i];
        append(store.as_ref(), "acme", from, end).await;
        append(store.as_ref(), "other", from / 10, end / 10 + 6).await;
        checkpoint_tenant(store.as_ref(), &s, &tenant("acme"), 1)
            .await
            .unwrap();
        checkpoint_tenant(store.as_ref(), &s, &tenant("other"), 1)
            .await
            .unwrap();
    }
    store.close().await.unwrap();
}

fn tid(c: &Connection, name: &str) -> i64 {
    c.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .unwrap()
}

fn pos(tid: i64, seq: u64) -> i64 {
    (tid << 40) | seq as i64
}

fn body(c: &Connection, p: i64) -> String {
    c.query_row("SELECT body FROM events WHERE pos = ?1", [p], |r| r.get(0))
        .unwrap()
}

async fn verify_after(tamper: impl FnOnce(&Connection, i64)) -> VerifyOutcome {
    let (acme, other) = verify_both(tamper).await;
    // The other tenant is untouched by every tamper.
    assert!(other.is_intact(), "{}", other.summary());
    acme.outcome
}

/// Tampers with the stopped store, then verifies both tenants.
async fn verify_both(tamper: impl FnOnce(&Connection, i64)) -> (VerifyReport, VerifyReport) {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path()).await;
    {
        let c = Connection::open(db_path(dir.path())).unwrap();
        let t = tid(&c, "acme");
        tamper(&c, t);
    }
    let store = open(dir.path());
    let report = verify_tenant(
        store.as_ref(),
        &tenant("acme"),
        &verifiers(),
        &opts(),
        |_, _| {},
    )
    .await
    .unwrap();
    let other = verify_tenant(
        store.as_ref(),
        &tenant("other"),
        &verifiers(),
        &opts(),
        |_, _| {},
    )
    .await
    .unwrap();
    store.close().await.unwrap();
    println!("{}", report.summary());
    (report, other)
}

fn tampered(outcome: &VerifyOutcome) -> (u64, &str) {
    match outcome {
        VerifyOutcome::Tampered { seq, reason } => (*seq, reason.as_str()),
        other => panic!("expected Tampered, got {other:?}"),
    }
}

#[tokio::test]
async fn an_intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path()).await;
    let store = open(dir.path());
    let mut calls = Vec::new();
    let report = verify_tenant(
        store.as_ref(),
        &tenant("acme"),
        &verifiers(),
        &opts(),
        |d, t| calls.push((d, t)),
    )
    .await
    .unwrap();
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!(
        (report.events, report.checkpoints, report.signed_size),
        (N, 3, N)
    );
    assert_eq!(calls.last(), Some(&(N, N)));
    assert!(report.summary().contains("intact"));
    // Signed by an unknown key: the checkpoints are refused.
    let other = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [1; 32]).unwrap();
    let report = verify_tenant(
        store.as_ref(),
        &tenant("acme"),
        &[other.verifier()],
        &opts(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(matches!(
        report.outcome,
        VerifyOutcome::BadCheckpoint { size: 100, .. }
    ));
    // An empty tenant is intact.
    let report = verify_tenant(
        store.as_ref(),
        &tenant("nobody"),
        &verifiers(),
        &opts(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(report.is_intact());
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_changed_field_is_named() {
    let outcome = verify_after(|c, t| {
        let b = body(c, pos(t, 41)).replace("evento número 41", "evento número 14");
        c.execute(
            "UPDATE events SET body = ?1 WHERE pos = ?2",
            params![b, pos(t, 41)],
        )
        .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 41);
    assert_eq!(reason, "seq 41: stored leaf hash does not match the event");
}

/// Runs `sql` (with `{pos}` and `{tid}` filled in for seq 41 of `acme`) on the stopped store.
fn run_sql(c: &Connection, t: i64, sql: &str) {
    let sql = sql
        .replace("{pos}", &pos(t, 41).to_string())
        .replace("{tid}", &t.to_string());
    c.execute_batch(&sql).unwrap();
}

/// Issue 14, finding 2: a changed index column leaves every hash intact but hides the event
/// from filtered searches and exports; verify re-derives each column from the body.
#[tokio::test]
async fn a_changed_index_column_is_named() {
    // Seq 41 is a `user.role_change` by actor 6 on user 41, with no IP and no source.
    let cases = [
        (
            "action",
            "UPDATE events SET action = (SELECT id FROM terms WHERE kind = 1 AND value = 'user.login')
             WHERE pos = {pos}",
        ),
        (
            "category",
            "INSERT OR IGNORE INTO terms (kind, value) VALUES (2, 'evil');
             UPDATE events SET category = (SELECT id FROM terms WHERE kind = 2 AND value = 'evil')
             WHERE pos = {pos}",
        ),
        (
            "severity",
            "UPDATE events SET severity = (severity + 1) % 4 WHERE pos = {pos}",
        ),
        (
            "outcome",
            "UPDATE events SET outcome = 1 - outcome WHERE pos = {pos}",
        ),
        (
            "actor_id",
            "UPDATE events SET actor_id = 'nobody' WHERE pos = {pos}",
        ),
        (
            "actor_search",
            "UPDATE events SET actor_search = 'nobody' WHERE pos = {pos}",
        ),
        (
            "target_type",
            "INSERT OR IGNORE INTO terms (kind, value) VALUES (3, 'evil');
             UPDATE events SET target_type = (SELECT id FROM terms WHERE kind = 3 AND value = 'evil')
             WHERE pos = {pos}",
        ),
        (
            "target_id",
            "UPDATE events SET target_id = '14' WHERE pos = {pos}",
        ),
        (
            "ip",
            "UPDATE events SET ip = X'00000000000000000000ffff08080808' WHERE pos = {pos}",
        ),
        (
            "source",
            "INSERT OR IGNORE INTO terms (kind, value) VALUES (4, 'evil');
             UPDATE events SET source = (SELECT id FROM terms WHERE kind = 4 AND value = 'evil')
             WHERE pos = {pos}",
        ),
        (
            "occurred_at",
            "UPDATE events SET occurred_at = occurred_at - 86400000000 WHERE pos = {pos}",
        ),
        (
            "event_id",
            "UPDATE events SET event_id = 'forged' WHERE pos = {pos}",
        ),
    ];
    for (column, sql) in cases {
        let outcome = verify_after(|c, t| run_sql(c, t, sql)).await;
        let (seq, reason) = tampered(&outcome);
        assert_eq!(seq, 41, "{column}: {reason}");
        assert!(
            reason.contains(&format!("indexed column `{column}`")),
            "{column}: {reason}"
        );
    }
}

#[tokio::test]
async fn a_changed_fingerprint_is_named() {
    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "UPDATE events SET fingerprint = zeroblob(16) WHERE pos = {pos}",
        )
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 41, "{reason}");
    assert!(reason.contains("fingerprint"), "{reason}");
}

/// Renaming a dictionary term moves every event of it, in every tenant (the dictionary is
/// shared): the first one is named.
#[tokio::test]
async fn a_changed_term_is_named() {
    let (acme, other) = verify_both(|c, _| {
        c.execute(
            "UPDATE terms SET value = 'user.renamed' WHERE kind = 1 AND value = 'user.role_change'",
            [],
        )
        .unwrap();
    })
    .await;
    for report in [acme, other] {
        let (seq, reason) = tampered(&report.outcome);
        assert_eq!(seq, 1, "{reason}");
        assert!(reason.contains("indexed column `action`"), "{reason}");
    }
}

#[tokio::test]
async fn a_deleted_full_text_entry_is_named() {
    let outcome = verify_after(|c, t| {
        let fts = c.path().unwrap().replace("bitacora.db", "bitacora-fts.db");
        c.execute("ATTACH DATABASE ?1 AS fts", [fts]).unwrap();
        let event: bitacora_core::Event = serde_json::from_str(&body(c, pos(t, 41))).unwrap();
        let text = bitacora_store::derive::fts_text(&event);
        // A contentless FTS5 table forgets a document given its rowid and exact text.
        c.execute(
            "INSERT INTO fts.events_fts (events_fts, rowid, text) VALUES ('delete', ?1, ?2)",
            params![pos(t, 41), text],
        )
        .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 41, "{reason}");
    assert!(reason.contains("full-text index"), "{reason}");
}

fn bad_summary(outcome: &VerifyOutcome) -> (&str, &str, &str) {
    match outcome {
        VerifyOutcome::BadSummary {
            summary,
            key,
            reason,
        } => (summary, key, reason),
        other => panic!("expected BadSummary, got {other:?}"),
    }
}

#[tokio::test]
async fn a_changed_summary_is_named() {
    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "UPDATE action_counts SET count = count - 1 WHERE tenant_id = {tid}
               AND action = (SELECT id FROM terms WHERE kind = 1 AND value = 'user.role_change')",
        )
    })
    .await;
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!(summary, "action_counts");
    assert!(key.contains("action=user.role_change"), "{key}");
    assert_eq!(reason, "count is 199, the events give 200");

    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "UPDATE actor_stats SET count = count - 1 WHERE tenant_id = {tid} AND actor_id = '3'",
        )
    })
    .await;
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("actor_stats", "actor_id=3"));
    assert!(reason.starts_with("count is"), "{reason}");

    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "UPDATE actor_stats SET last_seen = last_seen + 1 WHERE tenant_id = {tid} AND actor_id = '5'",
        )
    })
    .await;
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("actor_stats", "actor_id=5"));
    assert!(reason.starts_with("last_seen is"), "{reason}");

    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "UPDATE actor_stats SET name = 'Mallory' WHERE tenant_id = {tid} AND actor_id = '2'",
        )
    })
    .await;
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("actor_stats", "actor_id=2"));
    assert!(reason.starts_with("name is not"), "{reason}");

    // A summary row for an action no event has.
    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "INSERT INTO action_counts (tenant_id, action, category, count)
             SELECT {tid}, (SELECT id FROM terms WHERE kind = 1 AND value = 'user.login'), id, 5
             FROM terms WHERE kind = 1 AND value = 'user.role_change'",
        )
    })
    .await;
    let (summary, _, reason) = bad_summary(&outcome);
    assert_eq!(summary, "action_counts");
    assert_eq!(reason, "count is 5, the events give 0");
}

/// The zone map and the stats rollups (issue 15) are summaries too: narrowing a block's
/// bounds would make time-window searches skip events, and a changed rollup would make
/// `/v1/stats` and the dashboard lie.
#[tokio::test]
async fn a_changed_zone_map_or_rollup_is_named() {
    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "UPDATE event_blocks SET max_at = min_at - 1 WHERE tenant_id = {tid} AND block = 0",
        )
    })
    .await;
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("event_blocks", "block=0"), "{reason}");
    assert!(reason.contains("bounds"), "{reason}");

    let outcome = verify_after(|c, t| {
        run_sql(
            c,
            t,
            "UPDATE event_blocks SET count = count + 1 WHERE tenant_id = {tid} AND block = 0",
        )
    })
    .await;
    let (summary, _, reason) = bad_summary(&outcome);
    assert_eq!(summary, "event_blocks", "{reason}");

    // A rollup row no event gives (1970-01-01, long before the sample), in each rollup.
    for (table, row) in [
        ("stats_days", "({tid}, 0, 1, 0, 0, 0, 3)"),
        ("stats_day_actors", "({tid}, 0, 'ghost', 3)"),
        ("stats_day_ips", "({tid}, 0, zeroblob(16), 3)"),
        ("stats_hours", "({tid}, 0, 1, 0, 0, 0, 3)"),
        ("stats_hour_actors", "({tid}, 0, 'ghost', 3)"),
        ("stats_hour_ips", "({tid}, 0, zeroblob(16), 3)"),
    ] {
        let outcome =
            verify_after(|c, t| run_sql(c, t, &format!("INSERT INTO {table} VALUES {row}"))).await;
        let (summary, key, reason) = bad_summary(&outcome);
        assert_eq!(summary, table, "{key}: {reason}");
        assert_eq!(reason, "count is 3, the events give 0", "{key}");
    }
}

/// The leaf tiles (issue 18) are what `/logs/<tenant>/tile/0/<N>` serves to mirrors and
/// monitors: a row that no longer lists its events' leaf hashes is named. (A missing row, or
/// one past the log's end, is put right when the store opens: see the store's tests.)
#[tokio::test]
async fn a_changed_leaf_tile_is_named() {
    // Acme has 300 events: one full leaf tile, events 0..256.
    let outcome = verify_after(|c, t| {
        let tiles = c
            .path()
            .unwrap()
            .replace("bitacora.db", "bitacora-tiles.db");
        c.execute("ATTACH DATABASE ?1 AS tiles", [tiles]).unwrap();
        let key = pos(t, 0) >> 8;
        let mut hashes: Vec<u8> = c
            .query_row(
                "SELECT hashes FROM tiles.leaf_tiles WHERE tile = ?1",
                [key],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hashes.len(), 256 * 32);
        hashes[41 * 32 + 7] ^= 1;
        c.execute(
            "UPDATE tiles.leaf_tiles SET hashes = ?1 WHERE tile = ?2",
            params![hashes, key],
        )
        .unwrap();
    })
    .await;
    let (summary, key, reason) = bad_summary(&outcome);
    assert_eq!((summary, key), ("leaf_tiles", "tile=0 (events 0..256)"));
    assert_eq!(reason, "hash 41 is not the leaf hash of event 41");
}

#[tokio::test]
async fn a_row_copied_from_another_tenant_is_named() {
    // Another tenant's event, with its own (self-consistent) leaf hash, put in place of
    // acme's event 57: its leaf matches its body, only its tenant gives it away.
    let outcome = verify_after(|c, t| {
        let other = tid(c, "other");
        let (b, leaf): (String, Vec<u8>) = c
            .query_row(
                "SELECT body, leaf_hash FROM events WHERE pos = ?1",
                [pos(other, 5)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        c.execute(
            "UPDATE events SET body = ?1, leaf_hash = ?2 WHERE pos = ?3",
            params![b, leaf, pos(t, 57)],
        )
        .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 57, "{reason}");
    assert_eq!(
        reason,
        "seq 57: the event belongs to tenant `other`, not `acme`"
    );
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let outcome = verify_after(|c, t| {
        c.execute("DELETE FROM events WHERE pos = ?1", [pos(t, 41)])
            .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 41);
    assert_eq!(reason, "seq 41: missing (log jumps from 40 to 42)");
}

#[tokio::test]
async fn removed_rows_at_the_end_are_named() {
    let outcome = verify_after(|c, t| {
        c.execute(
            "DELETE FROM events WHERE pos >= ?1 AND pos <= ?2",
            [pos(t, 290), pos(t, 299)],
        )
        .unwrap();
        c.execute("UPDATE tenants SET size = 290 WHERE id = ?1", [t])
            .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 290, "{reason}");
}

fn swap(c: &Connection, t: i64, a: u64, b: u64) {
    let row = |seq| -> (Vec<u8>, String) {
        c.query_row(
            "SELECT leaf_hash, body FROM events WHERE pos = ?1",
            [pos(t, seq)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (ra, rb) = (row(a), row(b));
    for (seq, (leaf, body)) in [(a, rb), (b, ra)] {
        c.execute(
            "UPDATE events SET leaf_hash = ?1, body = ?2 WHERE pos = ?3",
            params![leaf, body, pos(t, seq)],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn swapped_rows_are_named() {
    let outcome = verify_after(|c, t| swap(c, t, 37, 120)).await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 37, "{reason}");
    assert!(
        reason.contains("seq 37 and seq 120 were swapped"),
        "{reason}"
    );

    let outcome = verify_after(|c, t| swap(c, t, 37, 41)).await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 37, "{reason}");
    assert!(
        reason.contains("seq 37 and seq 41 were swapped"),
        "{reason}"
    );
}

fn forge_row(c: &Connection, t: i64, seq: u64) {
    let b = body(c, pos(t, seq - 1)).replace(&format!("acme-{}", seq - 1), "acme-forged");
    let leaf = leaf_hash(b.as_bytes());
    c.execute(
        "INSERT INTO events (pos, event_id, occurred_at, action, category, severity, outcome,
                             fingerprint, leaf_hash, body)
         SELECT ?1, 'acme-forged', occurred_at, action, category, severity, outcome, fingerprint, ?2, ?3
         FROM events WHERE pos = ?4",
        params![pos(t, seq), &leaf[..], b, pos(t, seq - 1)],
    )
    .unwrap();
}

#[tokio::test]
async fn a_forged_row_at_the_end_is_named() {
    let outcome = verify_after(|c, t| {
        forge_row(c, t, N);
        c.execute("UPDATE tenants SET size = size + 1 WHERE id = ?1", [t])
            .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, N, "{reason}");
    assert!(
        reason.contains("not covered by any signed checkpoint"),
        "{reason}"
    );

    // Without bumping the recorded size.
    let outcome = verify_after(|c, t| forge_row(c, t, N)).await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, N, "{reason}");
    assert!(
        reason.contains("beyond the log's recorded size"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_consistent_rewrite_is_located_to_its_block() {
    let outcome = verify_after(|c, t| {
        for seq in [41u64, 150] {
            let b = body(c, pos(t, seq)).replace("Juan Pérez", "Someone Else");
            let leaf = leaf_hash(b.as_bytes());
            c.execute(
                "UPDATE events SET body = ?1, leaf_hash = ?2 WHERE pos = ?3",
                params![b, &leaf[..], pos(t, seq)],
            )
            .unwrap();
        }
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 32, "{reason}");
    assert!(
        reason.contains("checkpoint at size 100 does not match the events"),
        "{reason}"
    );
    assert!(
        reason.contains("first differing stored subtree covers seq 32..48"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_rewrite_of_events_and_tree_is_bounded_by_checkpoints() {
    // Rewrite event 150 consistently *and* every stored node it affects: only the signed
    // checkpoint at 200 can tell, and the change lies after the one at 100.
    let outcome = verify_after(|c, t| {
        let b = body(c, pos(t, 150)).replace("Juan Pérez", "Someone Else");
        let leaf = leaf_hash(b.as_bytes());
        c.execute(
            "UPDATE events SET body = ?1, leaf_hash = ?2 WHERE pos = ?3",
            params![b, &leaf[..], pos(t, 150)],
        )
        .unwrap();
        let mut stmt = c.prepare("SELECT leaf_hash FROM events WHERE pos BETWEEN ?1 AND ?2 ORDER BY pos").unwrap();
        let leaves: Vec<[u8; 32]> = stmt
            .query_map([pos(t, 0), pos(t, N - 1)], |r| {
                Ok(<[u8; 32]>::try_from(r.get::<_, Vec<u8>>(0)?.as_slice()).unwrap())
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut range = merkle::CompactRange::new();
        let mut nodes = std::collections::HashMap::new();
        for l in leaves {
            for (id, h) in range.append(l).unwrap() {
                c.execute(
                    "UPDATE merkle_nodes SET hash = ?1 WHERE tenant_id = ?2 AND level = ?3 AND idx = ?4",
                    params![&h[..], t, id.level, id.index as i64],
                )
                .unwrap();
                nodes.insert((id.level, id.index), h);
            }
        }
        // Complete tiles hold their 16 base-level nodes in one row: rewrite those too.
        let tiles: Vec<(u8, u64)> = c
            .prepare("SELECT tier, idx FROM merkle_tiles WHERE tenant_id = ?1")
            .unwrap()
            .query_map([t], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (tier, idx) in tiles {
            let blob: Vec<u8> = (0..16)
                .flat_map(|j| nodes[&(tier * 4, idx * 16 + j)])
                .collect();
            c.execute(
                "UPDATE merkle_tiles SET hashes = ?1 WHERE tenant_id = ?2 AND tier = ?3 AND idx = ?4",
                params![blob, t, tier, idx as i64],
            )
            .unwrap();
        }
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 100, "{reason}");
    assert!(
        reason.contains("checkpoint at size 200 does not match"),
        "{reason}"
    );
    assert!(reason.contains("100..200"), "{reason}");
}

#[tokio::test]
async fn an_altered_node_or_checkpoint_is_named() {
    // Level-4 node 3 (seq 48..64) lies in the complete tile of level-4 nodes 0..16 (one row
    // for seq 0..256); node 17 (seq 272..288) is past it, in a row of its own.
    let outcome = verify_after(|c, t| {
        let mut tile: Vec<u8> = c
            .query_row(
                "SELECT hashes FROM merkle_tiles WHERE tenant_id = ?1 AND tier = 1 AND idx = 0",
                [t],
                |r| r.get(0),
            )
            .unwrap();
        tile[3 * 32..4 * 32].fill(0);
        c.execute(
            "UPDATE merkle_tiles SET hashes = ?1 WHERE tenant_id = ?2 AND tier = 1 AND idx = 0",
            params![tile, t],
        )
        .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 48, "{reason}");
    assert!(
        reason.contains("Merkle node (level 4, index 3) was altered"),
        "{reason}"
    );
    let outcome = verify_after(|c, t| {
        let changed = c
            .execute(
                "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE tenant_id = ?1 AND level = 4 AND idx = 17",
                [t],
            )
            .unwrap();
        assert_eq!(changed, 1);
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 272, "{reason}");
    assert!(
        reason.contains("Merkle node (level 4, index 17) was altered"),
        "{reason}"
    );
    let outcome = verify_after(|c, t| {
        c.execute(
            "DELETE FROM merkle_tiles WHERE tenant_id = ?1 AND tier = 1 AND idx = 0",
            [t],
        )
        .unwrap();
    })
    .await;
    let (seq, reason) = tampered(&outcome);
    assert_eq!(seq, 0, "{reason}");
    assert!(reason.contains("missing or unreadable"), "{reason}");

    let outcome = verify_after(|c, t| {
        let note: String = c
            .query_row(
                "SELECT note FROM checkpoints WHERE tenant_id = ?1 AND size = 200",
                [t],
                |r| r.get(0),
            )
            .unwrap();
        let forged = note.replacen("\n200\n", "\n201\n", 1);
        c.execute(
            "UPDATE checkpoints SET note = ?1 WHERE tenant_id = ?2 AND size = 200",
            params![forged, t],
        )
        .unwrap();
    })
    .await;
    assert!(
        matches!(&outcome, VerifyOutcome::BadCheckpoint { size: 200, reason } if reason.contains("does not verify")),
        "{outcome:?}"
    );
    let _ = tenant_origin("x");
}

/// The names of a stored note's signature lines.
fn signers(note: &str) -> Vec<String> {
    bitacora_core::checkpoint::SignedNote::parse(note.as_bytes())
        .unwrap()
        .signatures
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[tokio::test]
async fn logs_signed_under_the_old_key_name_move_to_their_origin_and_keep_verifying() {
    use bitacora_core::checkpoint::Checkpoint;
    use bitacora_log::{Naming, Signing, checkpoint_tenant_named};

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = signer();
    let (old, new) = (tenant("old"), tenant("new"));
    let naming = Naming::default();
    // A checkpoint as the previous release stored it: under the key file's name alone.
    append(store.as_ref(), "old", 0, 6).await;
    let root = root_at(store.as_ref(), &old, 6).await.unwrap();
    let legacy = s
        .sign_checkpoint(&Checkpoint::new("bitacora/old", 6, root))
        .unwrap();
    store
        .add_checkpoint(
            &old,
            &bitacora_store::StoredCheckpoint {
                size: 6,
                root,
                note: legacy,
                created_at: 1,
            },
        )
        .await
        .unwrap();

    // The old log's next checkpoint: origin-named first, the legacy line after it.
    append(store.as_ref(), "old", 6, 9).await;
    let Signing::Signed(cp) = checkpoint_tenant_named(store.as_ref(), &s, &old, 2, &naming)
        .await
        .unwrap()
    else {
        panic!("not signed");
    };
    assert_eq!(signers(&cp.note), ["bitacora/old", "bitacora"]);
    // A new log: the origin-named line alone.
    append(store.as_ref(), "new", 0, 4).await;
    let Signing::Signed(fresh) = checkpoint_tenant_named(store.as_ref(), &s, &new, 2, &naming)
        .await
        .unwrap()
    else {
        panic!("not signed");
    };
    assert_eq!(signers(&fresh.note), ["bitacora/new"]);
    // The log's verifier key opens the new checkpoints by the signed-note rules; the old key
    // opens the old one and the transition's.
    let vkey = s.verifier().with_name("bitacora/old").unwrap();
    assert!(open_checkpoint(&cp.note, "bitacora/old", std::slice::from_ref(&vkey)).is_ok());
    assert!(open_checkpoint(&cp.note, "bitacora/old", &verifiers()).is_ok());
    assert!(open_checkpoint(&fresh.note, "bitacora/new", &verifiers()).is_err());

    // The transition ends: no legacy line any more, even after one was signed.
    append(store.as_ref(), "old", 9, 11).await;
    let off = Naming {
        legacy_key_name: false,
        ..Naming::default()
    };
    let Signing::Signed(last) = checkpoint_tenant_named(store.as_ref(), &s, &old, 3, &off)
        .await
        .unwrap()
    else {
        panic!("not signed");
    };
    assert_eq!(signers(&last.note), ["bitacora/old"]);
    // And once off, a log does not go back to the legacy line when it is turned on again:
    // its latest checkpoint no longer carries one.
    append(store.as_ref(), "old", 11, 12).await;
    let Signing::Signed(again) = checkpoint_tenant_named(store.as_ref(), &s, &old, 4, &naming)
        .await
        .unwrap()
    else {
        panic!("not signed");
    };
    assert_eq!(signers(&again.note), ["bitacora/old"]);

    // `verify_tenant` with the key under its own name checks all four (legacy, both,
    // origin-named), and with the log's key alone fails on the legacy one.
    for t in [&old, &new] {
        let report = verify_tenant(store.as_ref(), t, &verifiers(), &opts(), |_, _| {})
            .await
            .unwrap();
        assert!(report.is_intact(), "{t}: {report:?}");
    }
    let report = verify_tenant(store.as_ref(), &old, &[vkey], &opts(), |_, _| {})
        .await
        .unwrap();
    assert!(
        matches!(report.outcome, VerifyOutcome::BadCheckpoint { size: 6, .. }),
        "{report:?}"
    );
    store.close().await.unwrap();
}
