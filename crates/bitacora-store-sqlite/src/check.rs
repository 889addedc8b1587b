//! The whole-log checks behind `bitacora verify` ([`bitacora_store::Store::check_leaves`] and
//! [`bitacora_store::Store::check_summaries`]): every value the store keeps beside a body is
//! re-derived from the body and compared.
//!
//! - **Rows.** Each row's leaf is recomputed from its body in place; when the body is
//!   genuine, it is parsed and every indexed column (terms resolved through `terms`, the IP
//!   blob, `actor_search`, `occurred_at` micros, `event_id`, the fingerprint) is compared with
//!   what the writer derives from it ([`crate::writer::Prepared`]). The first column that
//!   disagrees is named.
//! - **Full text.** Every event below the indexer's watermark (`fts.fts_state`) must be found
//!   by a `MATCH` of its own action (a phrase of its document) at its `rowid`. The events of
//!   a page are grouped by action and each group is one `MATCH` bounded to the page's rowid
//!   range, so the check costs a few queries per page, not one per event.
//! - **Summaries.** `action_counts` and `actor_stats` are compared, in one snapshot, with
//!   the same aggregates computed from the (already checked) columns.
//!
//! Kept apart from `read.rs`: searches are tuned for speed, this is tuned for trust.

use std::collections::HashMap;

use bitacora_core::{Event, TenantName};
use bitacora_store::check::{FULL_TEXT, SummaryMismatch, fingerprint_matches, parse_body};
use bitacora_store::{LeafCheck, StoreResult};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::derive::{self, pos, seq_of, tenant_range};
use crate::read;
use crate::rollup::{DAY_US, Grain, HOUR_US};
use crate::schema::{TERM_ACTION, TERM_CATEGORY, TERM_SOURCE, TERM_TARGET_TYPE};
use crate::sql_error;
use crate::writer::blob32;

/// Checks events `from..` of the tenant's log, at most `limit`, in one snapshot.
pub fn check_leaves(
    conn: &mut Connection,
    t: &TenantName,
    from: u64,
    limit: u32,
) -> StoreResult<Vec<LeafCheck>> {
    let tx = conn.transaction().map_err(sql_error)?;
    let Some((tid, _)) = read::tenant(&tx, t)? else {
        return Ok(Vec::new());
    };
    let suffix = LeafCheck::tenant_suffix(t);
    let terms = terms(&tx)?;
    let fts_upto: u64 = tx
        .query_row(
            "SELECT upto FROM fts.fts_state WHERE tenant_id = ?1",
            [tid],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(sql_error)?
        .map_or(0, |u| u.max(0) as u64);
    let mut out = Vec::with_capacity(limit as usize);
    // Events whose full-text entry must be found: (index in `out`, pos), by action.
    let mut by_action: HashMap<String, Vec<(usize, i64)>> = HashMap::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT pos, leaf_hash, body, event_id, occurred_at, action, category, severity,
                    outcome, actor_id, actor_search, target_type, target_id, ip, source, fingerprint
                 FROM events WHERE pos BETWEEN ?1 AND ?2 ORDER BY pos LIMIT ?3",
            )
            .map_err(sql_error)?;
        let mut rows = stmt
            .query(params![
                pos(tid, from),
                pos(tid, u64::MAX),
                i64::from(limit)
            ])
            .map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let p: i64 = r.get(0).map_err(sql_error)?;
            let stored = r
                .get_ref(1)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(sql_error)?;
            let body = r
                .get_ref(2)
                .and_then(|v| Ok(v.as_bytes()?))
                .map_err(sql_error)?;
            let mut check = LeafCheck::of_row(seq_of(p), blob32(stored), body, &suffix);
            // A body that is not the one appended is reported as such by the walk; the
            // columns are only compared with a genuine one.
            if check.recomputed == check.stored && check.in_tenant {
                match parse_body(body) {
                    None => check.index = Some("body"),
                    Some(event) => {
                        check.index = columns(r, &event, &terms);
                        if check.index.is_none() && check.seq < fts_upto {
                            by_action
                                .entry(event.action)
                                .or_default()
                                .push((out.len(), p));
                        }
                    }
                }
            }
            out.push(check);
        }
    }
    // Purged events keep only their leaf hash (see purge.rs); they take their place in the
    // sequence so the walk can put them in the tree and account for them.
    let upto = if out.len() == limit as usize {
        out.last().map_or(u64::MAX, |c| c.seq)
    } else {
        u64::MAX >> 24
    };
    let purged = crate::purge::purged_range(&tx, tid, from, upto)?;
    if !purged.is_empty() {
        let mut merged = Vec::with_capacity(out.len() + purged.len());
        let mut purged = purged.into_iter().peekable();
        let mut moved: HashMap<usize, usize> = HashMap::new();
        for (i, check) in out.into_iter().enumerate() {
            while let Some((seq, hash)) = purged.next_if(|(seq, _)| *seq < check.seq) {
                merged.push(LeafCheck::purged(seq, hash));
            }
            moved.insert(i, merged.len());
            merged.push(check);
        }
        merged.extend(purged.map(|(seq, hash)| LeafCheck::purged(seq, hash)));
        for events in by_action.values_mut() {
            for (i, _) in events.iter_mut() {
                *i = moved[&*i];
            }
        }
        merged.truncate(limit as usize);
        out = merged;
    }
    let mut find = tx
        .prepare_cached(
            "SELECT rowid FROM fts.events_fts
             WHERE events_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3",
        )
        .map_err(sql_error)?;
    for (action, events) in by_action {
        let lo = events.first().map_or(0, |e| e.1);
        let hi = events.last().map_or(0, |e| e.1);
        // An action always has a token (it starts with a letter or digit), so the phrase
        // is never empty; quotes cannot occur in one, but stay harmless if they did.
        let phrase = format!("\"{}\"", action.replace('"', ""));
        let mut found: Vec<i64> = find
            .query_map(params![phrase, lo, hi], |r| r.get(0))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        found.sort_unstable();
        for (i, p) in events {
            if found.binary_search(&p).is_err()
                && let Some(check) = out.get_mut(i)
            {
                check.index = Some(FULL_TEXT);
            }
        }
    }
    Ok(out)
}

/// The dictionary: id → (kind, value).
fn terms(conn: &Connection) -> StoreResult<HashMap<i64, (i64, String)>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, kind, value FROM terms")
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .map_err(sql_error)?;
    rows.collect::<Result<_, _>>().map_err(sql_error)
}

/// The first column of `r` (in the order of [`check_leaves`]'s SELECT) that is not what the
/// writer derives from `e`.
fn columns(r: &Row<'_>, e: &Event, terms: &HashMap<i64, (i64, String)>) -> Option<&'static str> {
    let text = |i: usize| -> Option<&str> {
        match r.get_ref(i) {
            Ok(ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
            _ => None,
        }
    };
    let int = |i: usize| -> Option<i64> {
        match r.get_ref(i) {
            Ok(ValueRef::Integer(n)) => Some(n),
            _ => None,
        }
    };
    let blob = |i: usize| -> Option<&[u8]> {
        match r.get_ref(i) {
            Ok(ValueRef::Blob(b)) => Some(b),
            _ => None,
        }
    };
    let term = |i: usize, kind: i64, want: Option<&str>| -> bool {
        match (int(i), want) {
            (None, None) => matches!(r.get_ref(i), Ok(ValueRef::Null)),
            (Some(id), Some(want)) => terms.get(&id).is_some_and(|(k, v)| *k == kind && v == want),
            _ => false,
        }
    };
    let actor = e.actor.as_ref();
    let target = e.target.as_ref();
    let ip = e.context.ip_addr().map(derive::ip_blob);
    let checks: [(&'static str, bool); 13] = [
        ("event_id", text(3) == Some(e.id.as_str())),
        (
            "occurred_at",
            int(4) == Some(e.occurred_at.timestamp_micros()),
        ),
        ("action", term(5, TERM_ACTION, Some(&e.action))),
        ("category", term(6, TERM_CATEGORY, Some(&e.category))),
        ("severity", int(7) == Some(i64::from(e.severity.rank()))),
        ("outcome", int(8) == Some(i64::from(e.outcome.rank()))),
        ("actor_id", text(9) == actor.and_then(|a| a.id.as_deref())),
        (
            "actor_search",
            text(10) == derive::actor_search(e).as_deref(),
        ),
        (
            "target_type",
            term(11, TERM_TARGET_TYPE, target.map(|t| t.kind.as_str())),
        ),
        (
            "target_id",
            text(12) == target.and_then(|t| t.id.as_deref()),
        ),
        ("ip", blob(13) == ip.as_ref().map(|b| &b[..])),
        ("source", term(14, TERM_SOURCE, e.context.source.as_deref())),
        (
            "fingerprint",
            blob(15).is_some_and(|fp| fingerprint_matches(e, fp)),
        ),
    ];
    checks.into_iter().find(|(_, ok)| !ok).map(|(name, _)| name)
}

/// Compares the tenant's counters with the events' columns, in one snapshot.
pub fn check_summaries(
    conn: &mut Connection,
    t: &TenantName,
) -> StoreResult<Option<SummaryMismatch>> {
    let tx = conn.transaction().map_err(sql_error)?;
    let Some((tid, size)) = read::tenant(&tx, t)? else {
        return Ok(None);
    };
    let (lo, hi) = tenant_range(tid);
    let terms = terms(&tx)?;
    let name = |id: i64| {
        terms
            .get(&id)
            .map_or_else(|| format!("#{id}"), |t| t.1.clone())
    };

    // action_counts: (action, category) → count, both ways.
    let found: Option<(i64, i64, Option<i64>, Option<i64>)> = tx
        .query_row(
            "WITH derived AS (
                 SELECT action, category, count(*) AS n FROM events
                 WHERE pos BETWEEN ?2 AND ?3 GROUP BY action, category
             ), stored AS (
                 SELECT action, category, count AS n FROM action_counts WHERE tenant_id = ?1
             )
             SELECT d.action, d.category, s.n, d.n FROM derived d
                 LEFT JOIN stored s USING (action, category)
             WHERE s.n IS NOT d.n
             UNION ALL
             SELECT s.action, s.category, s.n, NULL FROM stored s
             WHERE NOT EXISTS (SELECT 1 FROM derived d
                               WHERE d.action = s.action AND d.category = s.category)
             LIMIT 1",
            params![tid, lo, hi],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(sql_error)?;
    if let Some((action, category, stored, derived)) = found {
        return Ok(Some(SummaryMismatch {
            summary: "action_counts",
            key: format!("action={} category={}", name(action), name(category)),
            reason: count_reason(stored, derived),
        }));
    }

    // actor_stats: actor_id → (count, last_seen); the name and email must be ones the
    // actor's events carry (see `actor_name_reason`).
    // (actor_id, stored count, derived count, stored last_seen, derived last_seen)
    type ActorRow = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let found: Option<ActorRow> = tx
        .query_row(
            "WITH derived AS (
                 SELECT actor_id, count(*) AS n, max(occurred_at) AS last FROM events
                 WHERE pos BETWEEN ?2 AND ?3 AND actor_id IS NOT NULL GROUP BY actor_id
             ), stored AS (
                 SELECT actor_id, count AS n, last_seen AS last FROM actor_stats
                 WHERE tenant_id = ?1
             )
             SELECT d.actor_id, s.n, d.n, s.last, d.last FROM derived d
                 LEFT JOIN stored s USING (actor_id)
             WHERE s.n IS NOT d.n OR s.last IS NOT d.last
             UNION ALL
             SELECT s.actor_id, s.n, NULL, s.last, NULL FROM stored s
             WHERE NOT EXISTS (SELECT 1 FROM derived d WHERE d.actor_id = s.actor_id)
             LIMIT 1",
            params![tid, lo, hi],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(sql_error)?;
    if let Some((actor, s_n, d_n, s_last, d_last)) = found {
        let reason = if s_n != d_n {
            count_reason(s_n, d_n)
        } else {
            format!(
                "last_seen is {}, the events give {}",
                s_last.map_or("missing".into(), |v| v.to_string()),
                d_last.map_or("none".into(), |v| v.to_string())
            )
        };
        return Ok(Some(SummaryMismatch {
            summary: "actor_stats",
            key: format!("actor_id={actor}"),
            reason,
        }));
    }
    let found: Option<(String, &'static str)> = {
        let mut stmt = tx
            .prepare(
                "SELECT s.actor_id,
                    s.name IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM events e WHERE e.actor_id = s.actor_id
                          AND e.pos BETWEEN ?2 AND ?3
                          AND json_extract(e.body, '$.actor.name') = s.name),
                    s.email IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM events e WHERE e.actor_id = s.actor_id
                          AND e.pos BETWEEN ?2 AND ?3
                          AND json_extract(e.body, '$.actor.email') = s.email)
                 FROM actor_stats s WHERE s.tenant_id = ?1",
            )
            .map_err(sql_error)?;
        let mut rows = stmt.query(params![tid, lo, hi]).map_err(sql_error)?;
        let mut found = None;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let (bad_name, bad_email): (bool, bool) =
                (r.get(1).map_err(sql_error)?, r.get(2).map_err(sql_error)?);
            if bad_name || bad_email {
                found = Some((
                    r.get(0).map_err(sql_error)?,
                    if bad_name { "name" } else { "email" },
                ));
                break;
            }
        }
        found
    };
    if let Some((actor, field)) = found {
        return Ok(Some(SummaryMismatch {
            summary: "actor_stats",
            key: format!("actor_id={actor}"),
            reason: format!("{field} is not one any event of this actor carries"),
        }));
    }
    if let Some(m) = check_zone_map(&tx, tid, lo, hi)? {
        return Ok(Some(m));
    }
    if let Some(m) = check_facets(&tx, tid, lo, hi)? {
        return Ok(Some(m));
    }
    if let Some((summary, key)) = crate::facets::check_sketches(&tx, tid, lo, hi)? {
        return Ok(Some(SummaryMismatch {
            summary,
            key,
            reason: "its sketches miss an address area or an actor of its events".into(),
        }));
    }
    if let Some(m) = check_leaf_tiles(&tx, tid, size)? {
        return Ok(Some(m));
    }
    // The address postings: a missing offset would hide an event from `ip=` searches.
    if let Some(m) = crate::addresses::check(&tx, tid)? {
        return Ok(Some(SummaryMismatch::addresses(
            m.block, &m.ip, m.stored, m.derived,
        )));
    }
    check_rollups(&tx, tid, lo, hi)
}

/// The leaf tiles (`tiles.leaf_tiles`: what `/logs/<tenant>/tile/0/<N>` serves, see tree.rs)
/// against the leaf hashes they list: one row for each complete run of 256 events, none
/// for another, each the 256 stored leaf hashes of its events (or of their purged rows) in
/// order. The walk has checked those against the bodies and the signed tree, so a row that
/// differs is the row's fault. One merge of two ordered scans.
fn check_leaf_tiles(
    tx: &rusqlite::Transaction<'_>,
    tid: i64,
    size: u64,
) -> StoreResult<Option<SummaryMismatch>> {
    const WIDTH: u64 = crate::tree::LEAF_TILE_WIDTH;
    let key = |n: u64| pos(tid, n * WIDTH) >> 8;
    let mismatch = |n: u64, reason: String| {
        Some(SummaryMismatch {
            summary: "leaf_tiles",
            key: format!("tile={n} (events {}..{})", n * WIDTH, (n + 1) * WIDTH),
            reason,
        })
    };
    let full = size / WIDTH;
    let mut tiles = tx
        .prepare(
            "SELECT tile, hashes FROM tiles.leaf_tiles WHERE tile BETWEEN ?1 AND ?2 ORDER BY tile",
        )
        .map_err(sql_error)?;
    let (lo, hi) = tenant_range(tid);
    let mut tiles = tiles.query(params![lo >> 8, hi >> 8]).map_err(sql_error)?;
    let mut leaves = tx
        .prepare(
            "SELECT pos, leaf_hash FROM events WHERE pos BETWEEN ?1 AND ?2
             UNION ALL
             SELECT pos, leaf_hash FROM purged_events WHERE pos BETWEEN ?1 AND ?2
             ORDER BY pos",
        )
        .map_err(sql_error)?;
    let mut leaves = leaves
        .query(params![
            pos(tid, 0),
            pos(tid, (full * WIDTH).saturating_sub(1))
        ])
        .map_err(sql_error)?;
    let mut want: Vec<u8> = Vec::with_capacity(32 * WIDTH as usize);
    let mut row = tiles.next().map_err(sql_error)?;
    for n in 0..full {
        want.clear();
        for seq in n * WIDTH..(n + 1) * WIDTH {
            let Some(leaf) = leaves.next().map_err(sql_error)? else {
                return Ok(mismatch(n, format!("event {seq} is missing")));
            };
            let at: i64 = leaf.get(0).map_err(sql_error)?;
            if at != pos(tid, seq) {
                return Ok(mismatch(n, format!("event {seq} is missing")));
            }
            want.extend_from_slice(
                leaf.get_ref(1)
                    .and_then(|v| Ok(v.as_blob()?))
                    .map_err(sql_error)?,
            );
        }
        let Some(r) = row else {
            return Ok(mismatch(n, "the row is missing".into()));
        };
        let got_key: i64 = r.get(0).map_err(sql_error)?;
        if got_key != key(n) {
            return Ok(mismatch(n, "the row is missing".into()));
        }
        let hashes = r
            .get_ref(1)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(sql_error)?;
        if hashes != want.as_slice() {
            let reason = if hashes.len() == want.len() {
                let i = hashes
                    .chunks_exact(32)
                    .zip(want.chunks_exact(32))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0) as u64;
                format!("hash {i} is not the leaf hash of event {}", n * WIDTH + i)
            } else {
                format!("the row holds {} bytes, not {}", hashes.len(), want.len())
            };
            return Ok(mismatch(n, reason));
        }
        row = tiles.next().map_err(sql_error)?;
    }
    if let Some(r) = row {
        let got_key: i64 = r.get(0).map_err(sql_error)?;
        let n = (got_key - key(0)) as u64;
        return Ok(mismatch(
            n,
            format!("a row for a tile the log of {size} events has not completed"),
        ));
    }
    Ok(None)
}

/// The facets (`event_facets` per block, `facet_counts` per log) against the events, both
/// ways: a combination missing from a block would make a search skip events that are there.
fn check_facets(
    tx: &rusqlite::Transaction<'_>,
    tid: i64,
    lo: i64,
    hi: i64,
) -> StoreResult<Option<SummaryMismatch>> {
    const COMBO: &str = "action, category, severity, outcome, source";
    for (table, block_expr, block_col) in [
        (
            "event_facets",
            format!("(pos - ?2) >> {}", crate::window::BLOCK_BITS),
            "block",
        ),
        ("facet_counts", "0".to_owned(), "0"),
    ] {
        let found: Option<(String, Option<i64>, Option<i64>)> = tx
            .query_row(
                &format!(
                    "WITH derived AS (
                         SELECT action, category, severity, outcome, coalesce(source, 0) AS source,
                                {block_expr} AS block, count(*) AS n
                         FROM events WHERE pos BETWEEN ?2 AND ?3 GROUP BY 1, 2, 3, 4, 5, 6
                     ), stored AS (
                         SELECT {COMBO}, {block_col} AS block, count AS n FROM {table}
                         WHERE tenant_id = ?1
                     )
                     SELECT printf('%d/%d/%d/%d/%d block %d', d.action, d.category, d.severity,
                                   d.outcome, d.source, d.block), s.n, d.n
                     FROM derived d LEFT JOIN stored s USING ({COMBO}, block)
                     WHERE s.n IS NOT d.n
                     UNION ALL
                     SELECT printf('%d/%d/%d/%d/%d block %d', s.action, s.category, s.severity,
                                   s.outcome, s.source, s.block), s.n, NULL
                     FROM stored s
                     WHERE NOT EXISTS (
                         SELECT 1 FROM derived d
                         WHERE d.action = s.action AND d.category = s.category
                           AND d.severity = s.severity AND d.outcome = s.outcome
                           AND d.source = s.source AND d.block = s.block)
                     LIMIT 1"
                ),
                params![tid, lo, hi],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql_error)?;
        if let Some((key, stored, derived)) = found {
            return Ok(Some(SummaryMismatch {
                summary: table,
                key: format!("action/category/severity/outcome/source {key}"),
                reason: count_reason(stored, derived),
            }));
        }
    }
    Ok(None)
}

/// The zone map of `occurred_at` (`event_blocks`) against the events: a block's bounds too
/// narrow would make a time-window search skip events that are there, so each block must
/// hold exactly its events' count and bounds that contain every one of them.
fn check_zone_map(
    tx: &rusqlite::Transaction<'_>,
    tid: i64,
    lo: i64,
    hi: i64,
) -> StoreResult<Option<SummaryMismatch>> {
    let found: Option<(i64, Option<i64>, Option<i64>)> = tx
        .query_row(
            &format!(
                "WITH derived AS (
                     SELECT (pos - ?2) >> {bits} AS block, min(occurred_at) AS lo,
                            max(occurred_at) AS hi, count(*) AS n
                     FROM events WHERE pos BETWEEN ?2 AND ?3 GROUP BY 1
                 ), stored AS (
                     SELECT block, min_at AS lo, max_at AS hi, count AS n FROM event_blocks
                     WHERE tenant_id = ?1
                 )
                 SELECT d.block, s.n, d.n FROM derived d LEFT JOIN stored s USING (block)
                 WHERE s.n IS NOT d.n OR s.lo > d.lo OR s.hi < d.hi
                 UNION ALL
                 SELECT s.block, s.n, NULL FROM stored s
                 WHERE NOT EXISTS (SELECT 1 FROM derived d WHERE d.block = s.block)
                 LIMIT 1",
                bits = crate::window::BLOCK_BITS
            ),
            params![tid, lo, hi],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql_error)?;
    Ok(found.map(|(block, stored, derived)| SummaryMismatch {
        summary: "event_blocks",
        key: format!("block={block}"),
        reason: if stored == derived {
            "its occurred_at bounds do not contain its events' (time-window searches would skip them)"
                .to_owned()
        } else {
            count_reason(stored, derived)
        },
    }))
}

/// The daily and hourly rollups behind `/v1/stats` and the dashboard against the events, both
/// ways.
fn check_rollups(
    tx: &rusqlite::Transaction<'_>,
    tid: i64,
    lo: i64,
    hi: i64,
) -> StoreResult<Option<SummaryMismatch>> {
    let mut rollups: Vec<(&'static str, String, String)> = Vec::new();
    for grain in Grain::ALL {
        let us = match grain {
            Grain::Day => DAY_US,
            Grain::Hour => HOUR_US,
        };
        let b = grain.column();
        let bucket = format!("occurred_at / {us} - (occurred_at % {us} < 0)");
        let (joint, actors, ips) = grain.tables();
        // (rollup, its key columns, the same from the events)
        rollups.extend([
            (
                joint,
                format!("{b}, category, severity, outcome, no_actor"),
                format!("{bucket}, category, severity, outcome, actor_id IS NULL"),
            ),
            (
                actors,
                format!("{b}, actor_id"),
                format!("{bucket}, actor_id"),
            ),
            (ips, format!("{b}, ip"), format!("{bucket}, ip")),
        ]);
    }
    for (table, keys, derived_keys) in rollups {
        let filter = if keys.ends_with("actor_id") {
            "AND actor_id IS NOT NULL"
        } else if keys.ends_with("ip") {
            "AND ip IS NOT NULL"
        } else {
            ""
        };
        let key_list: Vec<&str> = keys.split(", ").collect();
        let aliases = key_list.join(", ");
        let join = key_list
            .iter()
            .map(|k| format!("d.{k} IS s.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let sql = format!(
            "WITH derived ({aliases}, n) AS (
                 SELECT {derived_keys}, count(*) FROM events
                 WHERE pos BETWEEN ?2 AND ?3 {filter} GROUP BY {derived_keys}
             ), stored AS (
                 SELECT {keys}, count AS n FROM {table} WHERE tenant_id = ?1
             )
             SELECT d.{bucket}, quote(d.{last}), s.n, d.n FROM derived d
                 LEFT JOIN stored s ON {join}
             WHERE s.n IS NOT d.n
             UNION ALL
             SELECT s.{bucket}, quote(s.{last}), s.n, NULL FROM stored s
             WHERE NOT EXISTS (SELECT 1 FROM derived d WHERE {join})
             LIMIT 1",
            bucket = key_list[0],
            last = key_list.last().expect("keys"),
        );
        let found: Option<(i64, String, Option<i64>, Option<i64>)> = tx
            .query_row(&sql, params![tid, lo, hi], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(sql_error)?;
        if let Some((bucket, last, stored, derived)) = found {
            let name = key_list.last().expect("keys");
            return Ok(Some(SummaryMismatch {
                summary: table,
                key: format!("{}={bucket} {name}={last}", key_list[0]),
                reason: count_reason(stored, derived),
            }));
        }
    }
    Ok(None)
}

/// "count is 3, the events give 4".
pub fn count_reason(stored: Option<i64>, derived: Option<i64>) -> String {
    format!(
        "count is {}, the events give {}",
        stored.map_or("missing".into(), |n| n.to_string()),
        derived.unwrap_or(0)
    )
}
