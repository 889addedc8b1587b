//! Retention purges and legal holds (CONTRACT §9), on the embedded store.
//!
//! A purge deletes the events' rows (with them their index entries) and their share of every
//! summary (`action_counts`, `actor_stats`, the `stats_day*` rollups, the `event_blocks` zone
//! map, the facets), queues their full-text entries for the indexer thread (`fts_deletes`,
//! migration 0013: the index is another file, with its own lock, and the indexer deletes them
//! there without holding this file's write lock), and moves each one's leaf hash to
//! `purged_events`: the tree reads leaves from both tables (`tree.rs`), so every stored node,
//! checkpoint and proof stays valid. All of it is one `IMMEDIATE` transaction on a reader
//! connection, which the writer waits for like any other commit; several purges (archive
//! objects) can share one transaction ([`purge`] takes a list), which writes each index page
//! their deletes touch once instead of once per purge. SQLite reuses the freed pages for later
//! appends, so a store under retention stops growing.
//!
//! Summaries are brought back to exactly what remains: counts are decremented; an actor's
//! `last_seen`, name and email, and a zone-map block's bounds, are re-read from the remaining
//! events (through the actor and `pos` indexes), since a decrement cannot narrow a maximum.

use std::collections::{HashMap, HashSet};

use bitacora_core::TenantName;
use bitacora_core::canonical::Hash;
use bitacora_core::merkle::root_from_leaves;
use bitacora_store::check::parse_body;
use bitacora_store::{LegalHoldRecord, PurgeRecord, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::derive::{self, pos, seq_of, tenant_range};
use crate::read;
use crate::rollup;
use crate::sql_error;
use crate::window::{BLOCK_BITS, block_of};
use crate::writer::blob32;
use crate::{addresses, facets};

/// How many times [`crate::SqliteStore`] tries a purge the database lock refused, and the
/// pauses in between (doubling).
pub const BUSY_ATTEMPTS: u32 = 8;
pub const BUSY_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
pub const BUSY_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// The page cache of a connection while it runs a purge transaction, in KiB: the pages a
/// group of purges dirties (rows, five indexes, `purged_events`, the summaries) stay in it
/// until the commit instead of spilling to the WAL.
pub const CACHE_KIB: i64 = 64 * 1024;

/// After a purge transaction that made the writer wait, the purge waits this many times the
/// transaction's duration before it returns, so appends get the store (with the lifecycle's
/// own pause of a quarter of the call, a purge then holds the write lock about a third of
/// the time while appends arrive, and back to back when none do).
pub const YIELD_FACTOR: u32 = 2;

/// How `sql_error` starts the message of `SQLITE_BUSY` and `SQLITE_LOCKED`.
pub(crate) const BUSY: &str = "the database is locked: ";

/// Whether `e` is SQLite refusing the write lock (`SQLITE_BUSY` past the busy timeout, or
/// `SQLITE_LOCKED`): the transaction rolled back and may be tried again.
pub fn is_busy(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(m) if m.starts_with(BUSY))
}

/// What a deleted row contributed to the summaries.
struct Gone {
    seq: u64,
    leaf_hash: Hash,
    occurred_at: i64,
    action: i64,
    category: i64,
    severity: i64,
    outcome: i64,
    source: Option<i64>,
    actor_id: Option<String>,
    ip: Option<Vec<u8>>,
    body: String,
}

/// What [`purge`] reads before it takes the write lock: the rows, and the full-text entry of
/// each (a contentless FTS5 entry is deleted by giving its text again, which means parsing
/// the body). Stored rows never change, so what is read here is what the transaction
/// deletes; that they are all still there is checked again under the lock.
pub struct Prepared {
    gone: Vec<Gone>,
    fts_texts: Vec<String>,
}

/// Reads what a purge of `record` removes, without the write lock (see [`Prepared`]).
pub fn prepare(
    conn: &mut Connection,
    t: &TenantName,
    record: &PurgeRecord,
) -> StoreResult<Prepared> {
    let tx = conn.transaction().map_err(sql_error)?;
    let Some((tid, _)) = read::tenant(&tx, t)? else {
        return Err(StoreError::Internal(format!("tenant `{t}` has no log")));
    };
    // The rows, one range scan per range (purges take runs of consecutive seqs).
    let mut gone = Vec::with_capacity(record.count as usize);
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT pos, leaf_hash, occurred_at, action, category, severity, outcome,
                        actor_id, ip, body, source
                 FROM events WHERE pos BETWEEN ?1 AND ?2 ORDER BY pos",
            )
            .map_err(sql_error)?;
        for &(a, b) in &record.ranges {
            if a > b {
                break;
            }
            let rows = stmt
                .query_map([pos(tid, a), pos(tid, b)], |r| {
                    Ok(Gone {
                        seq: seq_of(r.get(0)?),
                        leaf_hash: blob32(r.get_ref(1)?.as_blob()?),
                        occurred_at: r.get(2)?,
                        action: r.get(3)?,
                        category: r.get(4)?,
                        severity: r.get(5)?,
                        outcome: r.get(6)?,
                        actor_id: r.get(7)?,
                        ip: r.get(8)?,
                        body: r.get(9)?,
                        source: r.get(10)?,
                    })
                })
                .map_err(sql_error)?;
            let mut expected = a;
            for row in rows {
                let g = row.map_err(sql_error)?;
                if g.seq != expected {
                    break;
                }
                gone.push(g);
                expected += 1;
            }
            if expected != b + 1 {
                return Err(StoreError::Internal(format!(
                    "seq {expected} has no content to purge (already purged?)"
                )));
            }
        }
    }
    let fts_texts = gone
        .iter()
        .map(|g| match parse_body(g.body.as_bytes()) {
            Some(event) => Ok(derive::fts_text(&event)),
            None => Err(StoreError::Corrupt(format!(
                "seq {}: the stored body is not an event",
                g.seq
            ))),
        })
        .collect::<StoreResult<Vec<String>>>()?;
    Ok(Prepared { gone, fts_texts })
}

/// Purges `records` (each read beforehand by [`prepare`]) in one `IMMEDIATE` transaction:
/// all of them or none. Several archive objects' purges share one transaction so that the
/// pages their deletes touch (the secondary indexes' leaves above all) are written once.
pub fn purge(
    conn: &mut Connection,
    t: &TenantName,
    records: &[(PurgeRecord, Prepared)],
) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    let Some((tid, size)) = read::tenant(&tx, t)? else {
        return Err(StoreError::Internal(format!("tenant `{t}` has no log")));
    };
    for (record, prepared) in records {
        let seqs: Vec<u64> = record.seqs().collect();
        if seqs.len() as u64 != record.count || seqs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(StoreError::Internal(
                "a purge's ranges must be ascending and add up to its count".into(),
            ));
        }
        if seqs.last().is_some_and(|&s| s >= size) || record.event_seq >= size {
            return Err(StoreError::Internal(
                "a purge names a seq past the end of the log".into(),
            ));
        }
        let gone = &prepared.gone;
        if gone.len() != seqs.len() || gone.iter().zip(&seqs).any(|(g, s)| g.seq != *s) {
            return Err(StoreError::Internal(
                "the rows read for a purge are not the ones it names".into(),
            ));
        }
        let leaves: Vec<Hash> = gone.iter().map(|g| g.leaf_hash).collect();
        if root_from_leaves(&leaves) != record.root {
            return Err(StoreError::Internal(
                "the purge's root is not the root of the events it names".into(),
            ));
        }
    }

    let mut actions: HashMap<(i64, i64), i64> = HashMap::new();
    // Per actor: purged events, and the newest `occurred_at` among them.
    let mut actors: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut rollups: rollup::Deltas<&str> = rollup::Deltas::default();
    let mut blocks: HashSet<i64> = HashSet::new();
    let mut facet_deltas = facets::Deltas::default();
    let mut stages = Stages::default();
    {
        // What the tree needs of them moves to `purged_events`; the rows go (with their
        // index entries), one statement per range.
        let mut keep = tx
            .prepare_cached(
                "INSERT INTO purged_events (pos, event_id, leaf_hash, purge)
                 SELECT pos, event_id, leaf_hash, ?3 FROM events WHERE pos BETWEEN ?1 AND ?2",
            )
            .map_err(sql_error)?;
        let mut delete = tx
            .prepare_cached("DELETE FROM events WHERE pos BETWEEN ?1 AND ?2")
            .map_err(sql_error)?;
        // Their full-text entries are queued for the indexer thread, which deletes them from
        // the full-text file under that file's own lock (migration 0013): not here, where
        // every append waits.
        let mut unindex = tx
            .prepare_cached("INSERT INTO fts_deletes (pos, text) VALUES (?1, ?2)")
            .map_err(sql_error)?;
        let started = std::time::Instant::now();
        for (record, _) in records {
            for &(a, b) in &record.ranges {
                let (first, last) = (pos(tid, a), pos(tid, b));
                let t0 = std::time::Instant::now();
                let kept = keep
                    .execute(params![first, last, record.event_seq as i64])
                    .map_err(sql_error)?;
                stages.keep += t0.elapsed();
                let deleted = delete.execute([first, last]).map_err(sql_error)?;
                // Read before the lock; still all there (nothing else deletes rows).
                if kept as u64 != b - a + 1 || deleted != kept {
                    return Err(StoreError::Internal(format!(
                        "seqs {a}-{b} changed while the purge took the write lock (already purged?)"
                    )));
                }
            }
        }
        stages.rows = started.elapsed();
        let started = std::time::Instant::now();
        for (_, prepared) in records {
            for (g, text) in prepared.gone.iter().zip(&prepared.fts_texts) {
                unindex
                    .execute(params![pos(tid, g.seq), text])
                    .map_err(sql_error)?;
                *actions.entry((g.action, g.category)).or_default() += 1;
                facet_deltas.add(
                    tid,
                    facets::Combo {
                        action: g.action,
                        category: g.category,
                        severity: g.severity,
                        outcome: g.outcome,
                        source: g.source.unwrap_or(0),
                    },
                    g.seq,
                    -1,
                    (None, None),
                );
                if let Some(a) = &g.actor_id {
                    let e = actors.entry(a).or_insert((0, i64::MIN));
                    e.0 += 1;
                    e.1 = e.1.max(g.occurred_at);
                }
                rollups.add(
                    &rollup::Row {
                        tenant_id: tid,
                        occurred_us: g.occurred_at,
                        category: g.category,
                        severity: g.severity,
                        outcome: g.outcome,
                        actor_id: g.actor_id.as_deref(),
                        ip: g.ip.as_deref().and_then(|ip| ip.try_into().ok()),
                    },
                    g.actor_id.as_deref(),
                );
                blocks.insert(block_of(g.seq));
            }
        }
        stages.queue = started.elapsed();
    }
    let started = std::time::Instant::now();
    let exec = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> StoreResult<()> {
        tx.prepare_cached(sql)
            .map_err(sql_error)?
            .execute(p)
            .map_err(sql_error)?;
        Ok(())
    };
    // Each touched counter is decremented, and deleted when nothing is left of it.
    rollup::decrement(
        &tx,
        "UPDATE action_counts SET count = count - ?4
         WHERE tenant_id = ?1 AND action = ?2 AND category = ?3 RETURNING count",
        "DELETE FROM action_counts WHERE tenant_id = ?1 AND action = ?2 AND category = ?3",
        &mut actions
            .iter()
            .map(|((action, category), n)| vec![&tid as _, action as _, category as _, n as _]),
    )?;
    facet_deltas.write(&tx)?;
    addresses::remove(
        &tx,
        tid,
        records.iter().flat_map(|(_, p)| &p.gone).filter_map(|g| {
            let ip: [u8; 16] = g.ip.as_deref()?.try_into().ok()?;
            Some((g.seq, ip))
        }),
    )?;
    rollups.subtract(&tx)?;
    stages.counters = started.elapsed();
    let started = std::time::Instant::now();
    // Actors: the count loses what was purged; `last_seen` is read again from what remains
    // only when the newest event was among the purged — rarely, as purges take the oldest
    // events. (Reading every touched actor's remaining events made each batch cost
    // O(events per actor).) Then the name and email: each must stay one that a remaining event
    // carries (`check_summaries` holds the store to it), so one the purged events alone carried
    // — the actor's latest event may have had none — becomes the newest remaining one, or none.
    let (lo, hi) = tenant_range(tid);
    for (actor, (n, newest_purged)) in &actors {
        let stored: Option<(i64, i64, bool, bool)> = tx
            .prepare_cached(STORED_ACTOR)
            .map_err(sql_error)?
            .query_row(params![tid, actor, lo, hi], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(sql_error)?;
        let Some((count, last_seen, name_carried, email_carried)) = stored else {
            continue;
        };
        if count > *n && *newest_purged < last_seen {
            exec(
                "UPDATE actor_stats SET count = count - ?3 WHERE tenant_id = ?1 AND actor_id = ?2",
                &[&tid, actor, n],
            )?;
        } else {
            let remaining: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT count(*), max(occurred_at) FROM events INDEXED BY events_actor
                     WHERE actor_id = ?1 AND pos BETWEEN ?2 AND ?3
                     HAVING count(*) > 0",
                )
                .map_err(sql_error)?
                .query_row(params![actor, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(sql_error)?;
            let Some((count, last)) = remaining else {
                exec(
                    "DELETE FROM actor_stats WHERE tenant_id = ?1 AND actor_id = ?2",
                    &[&tid, actor],
                )?;
                continue;
            };
            exec(
                "UPDATE actor_stats SET count = ?3, last_seen = ?4
                 WHERE tenant_id = ?1 AND actor_id = ?2",
                &[&tid, actor, &count, &last],
            )?;
        }
        if !(name_carried && email_carried) {
            exec(
                NEWEST_NAMES,
                &[&tid, actor, &lo, &hi, &name_carried, &email_carried],
            )?;
        }
    }
    stages.actors = started.elapsed();
    let started = std::time::Instant::now();
    // Zone-map blocks: exact counts and bounds of what remains.
    for block in &blocks {
        let first = pos(tid, (*block as u64) << BLOCK_BITS);
        let last = pos(tid, (((*block as u64) + 1) << BLOCK_BITS) - 1);
        let (n, min, max): (i64, Option<i64>, Option<i64>) = tx
            .prepare_cached(
                "SELECT count(*), min(occurred_at), max(occurred_at) FROM events
                 WHERE pos BETWEEN ?1 AND ?2",
            )
            .map_err(sql_error)?
            .query_row(params![first, last], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(sql_error)?;
        match (min, max) {
            (Some(min), Some(max)) if n > 0 => exec(
                "UPDATE event_blocks SET count = ?3, min_at = ?4, max_at = ?5
                 WHERE tenant_id = ?1 AND block = ?2",
                &[&tid, block, &n, &min, &max],
            )?,
            _ => exec(
                "DELETE FROM event_blocks WHERE tenant_id = ?1 AND block = ?2",
                &[&tid, block],
            )?,
        }
    }
    stages.blocks = started.elapsed();
    for (record, _) in records {
        exec(
            "INSERT INTO purges (tenant_id, event_seq, ranges, count, root, archive, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[
                &tid,
                &(record.event_seq as i64),
                &record.ranges_text(),
                &(record.count as i64),
                &&record.root[..],
                &record.archive,
                &record.created_at,
            ],
        )?;
    }
    let started = std::time::Instant::now();
    tx.commit().map_err(sql_error)?;
    stages.commit = started.elapsed();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        keep_ms = ms(stages.keep),
        delete_ms = ms(stages.rows - stages.keep),
        text_queue_ms = ms(stages.queue),
        counters_ms = ms(stages.counters),
        actors_ms = ms(stages.actors),
        blocks_ms = ms(stages.blocks),
        commit_ms = ms(stages.commit),
        "sqlite purge transaction"
    );
    Ok(())
}

/// Where a purge transaction's time went (logged at debug level).
#[derive(Default)]
struct Stages {
    /// Rows to `purged_events`, and deleted with their index entries.
    rows: std::time::Duration,
    /// Of which: to `purged_events`.
    keep: std::time::Duration,
    /// Full-text entries queued, and the summaries' deltas summed.
    queue: std::time::Duration,
    /// Counters, rollups and facets decremented.
    counters: std::time::Duration,
    actors: std::time::Duration,
    /// The zone map's touched blocks recounted.
    blocks: std::time::Duration,
    commit: std::time::Duration,
}

pub fn purges(conn: &Connection, t: &TenantName) -> StoreResult<Vec<PurgeRecord>> {
    let Some((tid, _)) = read::tenant(conn, t)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT event_seq, ranges, count, root, archive, created_at FROM purges
             WHERE tenant_id = ?1 ORDER BY event_seq",
        )
        .map_err(sql_error)?;
    let rows: Vec<(i64, String, i64, Vec<u8>, String, i64)> = stmt
        .query_map([tid], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    rows.into_iter()
        .map(|(event_seq, ranges, count, root, archive, created_at)| {
            Ok(PurgeRecord {
                event_seq: event_seq.max(0) as u64,
                ranges: PurgeRecord::parse_ranges(&ranges)?,
                count: count.max(0) as u64,
                root: root
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a purge's root is not 32 bytes".into()))?,
                archive,
                created_at,
            })
        })
        .collect()
}

pub fn purged_leaves(
    conn: &Connection,
    t: &TenantName,
    event_seq: u64,
) -> StoreResult<Vec<(u64, Hash)>> {
    let Some((tid, _)) = read::tenant(conn, t)? else {
        return Ok(Vec::new());
    };
    let (lo, hi) = tenant_range(tid);
    conn.prepare_cached(
        "SELECT pos, leaf_hash FROM purged_events
         WHERE pos BETWEEN ?1 AND ?2 AND purge = ?3 ORDER BY pos",
    )
    .map_err(sql_error)?
    .query_map(params![lo, hi, event_seq as i64], |r| {
        Ok((seq_of(r.get(0)?), blob32(r.get_ref(1)?.as_blob()?)))
    })
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

/// Purged leaves `from..` of the tenant's log, at most `limit`, for the verify walk.
pub fn purged_range(
    conn: &Connection,
    tid: i64,
    from: u64,
    to: u64,
) -> StoreResult<Vec<(u64, Hash)>> {
    conn.prepare_cached(
        "SELECT pos, leaf_hash FROM purged_events WHERE pos BETWEEN ?1 AND ?2 ORDER BY pos",
    )
    .map_err(sql_error)?
    .query_map(params![pos(tid, from), pos(tid, to)], |r| {
        Ok((seq_of(r.get(0)?), blob32(r.get_ref(1)?.as_blob()?)))
    })
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

pub fn purged_event(
    conn: &Connection,
    t: &TenantName,
    id: &str,
) -> StoreResult<Option<(u64, Hash)>> {
    let Some((tid, _)) = read::tenant(conn, t)? else {
        return Ok(None);
    };
    let (lo, hi) = tenant_range(tid);
    conn.prepare_cached(
        "SELECT pos, leaf_hash FROM purged_events INDEXED BY purged_events_event_id
         WHERE event_id = ?1 AND pos BETWEEN ?2 AND ?3",
    )
    .map_err(sql_error)?
    .query_row(params![id, lo, hi], |r| {
        Ok((seq_of(r.get(0)?), blob32(r.get_ref(1)?.as_blob()?)))
    })
    .optional()
    .map_err(sql_error)
}

pub fn insert_hold(conn: &Connection, h: &LegalHoldRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO legal_holds (id, tenant, name, reason, filter, created_at, created_by,
                                  released_at, released_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            h.id,
            h.tenant.as_str(),
            h.name,
            h.reason,
            h.filter,
            h.created_at,
            h.created_by,
            h.released_at,
            h.released_by
        ],
    )
    .map_err(sql_error)?;
    Ok(())
}

fn hold_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(LegalHoldRecord, String)> {
    let tenant: String = r.get(1)?;
    Ok((
        LegalHoldRecord {
            id: r.get(0)?,
            tenant: TenantName::default_tenant(),
            name: r.get(2)?,
            reason: r.get(3)?,
            filter: r.get(4)?,
            created_at: r.get(5)?,
            created_by: r.get(6)?,
            released_at: r.get(7)?,
            released_by: r.get(8)?,
        },
        tenant,
    ))
}

fn with_tenant((mut h, tenant): (LegalHoldRecord, String)) -> StoreResult<LegalHoldRecord> {
    h.tenant = TenantName::parse(&tenant)
        .map_err(|_| StoreError::Corrupt(format!("legal hold {}: bad tenant", h.id)))?;
    Ok(h)
}

const HOLD_COLUMNS: &str =
    "id, tenant, name, reason, filter, created_at, created_by, released_at, released_by";

pub fn holds(
    conn: &Connection,
    tenant: Option<&TenantName>,
    include_released: bool,
) -> StoreResult<Vec<LegalHoldRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {HOLD_COLUMNS} FROM legal_holds
             WHERE (?1 IS NULL OR tenant = ?1) AND (?2 OR released_at IS NULL)
             ORDER BY created_at, id"
        ))
        .map_err(sql_error)?;
    let rows: Vec<(LegalHoldRecord, String)> = stmt
        .query_map(
            params![tenant.map(|t| t.as_str()), include_released],
            hold_row,
        )
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    rows.into_iter().map(with_tenant).collect()
}

pub fn release_hold(
    conn: &mut Connection,
    id: &str,
    tenant: Option<&TenantName>,
    at: i64,
    by: &str,
) -> StoreResult<Option<LegalHoldRecord>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    let changed = tx
        .execute(
            "UPDATE legal_holds SET released_at = ?3, released_by = ?4
             WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2) AND released_at IS NULL",
            params![id, tenant.map(|t| t.as_str()), at, by],
        )
        .map_err(sql_error)?;
    if changed == 0 {
        return Ok(None);
    }
    let row = tx
        .query_row(
            &format!("SELECT {HOLD_COLUMNS} FROM legal_holds WHERE id = ?1"),
            [id],
            hold_row,
        )
        .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    with_tenant(row).map(Some)
}

pub fn rules_first_seen(conn: &Connection, fingerprint: &str, now: i64) -> StoreResult<i64> {
    conn.execute(
        "INSERT INTO retention_rule_sets (fingerprint, first_seen) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
        params![fingerprint, now],
    )
    .map_err(sql_error)?;
    conn.query_row(
        "SELECT first_seen FROM retention_rule_sets WHERE fingerprint = ?1",
        [fingerprint],
        |r| r.get(0),
    )
    .map_err(sql_error)
}

/// An actor's stored count and `last_seen` (`?1` tenant, `?2` actor, `?3`..`?4` the tenant's
/// positions), and whether its stored name and email are still carried by one of its
/// remaining events (or are none). The probes walk the actor's index from its newest event,
/// where the stored value almost always is: a row read or two for an actor whose name and
/// email do not change.
const STORED_ACTOR: &str = "SELECT count, last_seen,
        name IS NULL OR (SELECT 1 FROM events INDEXED BY events_actor
                         WHERE actor_id = ?2 AND pos BETWEEN ?3 AND ?4
                           AND json_extract(body, '$.actor.name') = actor_stats.name
                         ORDER BY pos DESC LIMIT 1) IS NOT NULL,
        email IS NULL OR (SELECT 1 FROM events INDEXED BY events_actor
                          WHERE actor_id = ?2 AND pos BETWEEN ?3 AND ?4
                            AND json_extract(body, '$.actor.email') = actor_stats.email
                          ORDER BY pos DESC LIMIT 1) IS NOT NULL
    FROM actor_stats WHERE tenant_id = ?1 AND actor_id = ?2";

/// Replaces an actor's name unless `?5` (it is still carried) and its email unless `?6`
/// (other parameters as [`STORED_ACTOR`]) with the newest ones its remaining events carry,
/// or none.
const NEWEST_NAMES: &str = "UPDATE actor_stats SET
        name = CASE WHEN ?5 THEN name
               ELSE (SELECT json_extract(body, '$.actor.name') FROM events INDEXED BY events_actor
                     WHERE actor_id = ?2 AND pos BETWEEN ?3 AND ?4
                       AND json_extract(body, '$.actor.name') IS NOT NULL
                     ORDER BY pos DESC LIMIT 1) END,
        email = CASE WHEN ?6 THEN email
                ELSE (SELECT json_extract(body, '$.actor.email') FROM events INDEXED BY events_actor
                      WHERE actor_id = ?2 AND pos BETWEEN ?3 AND ?4
                        AND json_extract(body, '$.actor.email') IS NOT NULL
                      ORDER BY pos DESC LIMIT 1) END
    WHERE tenant_id = ?1 AND actor_id = ?2";
