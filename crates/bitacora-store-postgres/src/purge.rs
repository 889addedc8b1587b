//! Retention purges and legal holds (CONTRACT §9), on PostgreSQL.
//!
//! A purge deletes the events' rows (with them their index and full-text entries: the `fts`
//! column and the GIN index over it) and their share of `action_counts`, `actor_stats`, the
//! daily stats rollups and the zone map (its touched blocks are recounted), and
//! moves each one's leaf hash to `purged_events`, which the tree reads beside `events`
//! (`tree.rs`). One transaction, under the tenant's row lock — the lock every appender takes —
//! so the counters are never updated by a purge and an append in different orders; the
//! lifecycle crate keeps purges small so appends wait only briefly.

use std::collections::{BTreeMap, BTreeSet};

use bitacora_core::TenantName;
use bitacora_core::canonical::Hash;
use bitacora_core::merkle::root_from_leaves;
use bitacora_store::{LegalHoldRecord, PurgeRecord, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;

use crate::rollup::Removals;
use crate::{addresses, facets, hash32, pg_error, read, window};

pub async fn purge(
    client: &mut ClientWrapper,
    t: &TenantName,
    record: &PurgeRecord,
) -> StoreResult<()> {
    let seqs: Vec<i64> = record.seqs().map(|s| s as i64).collect();
    if seqs.len() as u64 != record.count || seqs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(StoreError::Internal(
            "a purge's ranges must be ascending and add up to its count".into(),
        ));
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    let Some(row) = tx
        .query_opt(
            "SELECT id, size FROM tenants WHERE name = $1 FOR UPDATE",
            &[&t.as_str()],
        )
        .await
        .map_err(pg_error)?
    else {
        return Err(StoreError::Internal(format!("tenant `{t}` has no log")));
    };
    let (tid, size): (i32, i64) = (row.get(0), row.get(1));
    if seqs.last().is_some_and(|&s| s >= size) || record.event_seq as i64 >= size {
        return Err(StoreError::Internal(
            "a purge names a seq past the end of the log".into(),
        ));
    }
    let rows = tx
        .query(
            "DELETE FROM events WHERE tenant_id = $1 AND seq = ANY($2)
             RETURNING seq, event_id, leaf_hash, action, category, actor_id, occurred_at,
                       severity, outcome, ip, source",
            &[&tid, &seqs],
        )
        .await
        .map_err(pg_error)?;
    if rows.len() != seqs.len() {
        // Dropping the transaction rolls the delete back.
        return Err(StoreError::Internal(format!(
            "{} of the {} events to purge have no content (already purged?)",
            seqs.len() - rows.len(),
            seqs.len()
        )));
    }
    let mut gone: Vec<(i64, String, Hash)> = Vec::with_capacity(rows.len());
    let mut actions: BTreeMap<(String, String), i64> = BTreeMap::new();
    // Per actor: purged events, and the newest `occurred_at` (µs) among them.
    let mut actors: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut rollups = Removals::default();
    let mut blocks: BTreeSet<i64> = BTreeSet::new();
    let mut facet_deltas = facets::Deltas::default();
    for r in &rows {
        gone.push((r.get(0), r.get(1), hash32(r.get(2))?));
        facet_deltas.add(
            tid,
            facets::FacetRef {
                action: r.get(3),
                category: r.get(4),
                severity: r.get(7),
                outcome: r.get(8),
                source: r.get::<_, Option<&str>>(10).unwrap_or(""),
            },
            r.get::<_, i64>(0) as u64,
            -1,
            (None, None),
        );
        *actions.entry((r.get(3), r.get(4))).or_default() += 1;
        let actor: Option<String> = r.get(5);
        let occurred = r.get::<_, DateTime<Utc>>(6);
        rollups.add(
            occurred,
            r.get(4),
            (r.get(7), r.get(8)),
            actor.as_deref(),
            r.get(9),
        );
        blocks.insert(window::block_of(r.get::<_, i64>(0) as u64));
        if let Some(a) = actor {
            let e = actors.entry(a).or_insert((0, i64::MIN));
            e.0 += 1;
            e.1 = e.1.max(occurred.timestamp_micros());
        }
    }
    gone.sort_unstable_by_key(|g| g.0);
    let leaves: Vec<Hash> = gone.iter().map(|g| g.2).collect();
    if root_from_leaves(&leaves) != record.root {
        return Err(StoreError::Internal(
            "the purge's root is not the root of the events it names".into(),
        ));
    }
    let g_seq: Vec<i64> = gone.iter().map(|g| g.0).collect();
    let g_id: Vec<&str> = gone.iter().map(|g| g.1.as_str()).collect();
    let g_hash: Vec<&[u8]> = gone.iter().map(|g| &g.2[..]).collect();
    let event_seq = record.event_seq as i64;
    let g_purge = vec![event_seq; g_seq.len()];
    let kept = tx
        .execute(INSERT_PURGED, &[&tid, &g_seq, &g_id, &g_hash, &g_purge])
        .await
        .map_err(pg_error)?;
    if kept != g_seq.len() as u64 {
        return Err(StoreError::Internal(format!(
            "{} of the {} events to purge are already recorded as purged",
            g_seq.len() as u64 - kept,
            g_seq.len()
        )));
    }
    let a_action: Vec<&str> = actions.keys().map(|k| k.0.as_str()).collect();
    let a_category: Vec<&str> = actions.keys().map(|k| k.1.as_str()).collect();
    let a_n: Vec<i64> = actions.values().copied().collect();
    tx.execute(
        "UPDATE action_counts c SET count = c.count - d.n
         FROM unnest($2::text[], $3::text[], $4::int8[]) AS d(action, category, n)
         WHERE c.tenant_id = $1 AND c.action = d.action AND c.category = d.category",
        &[&tid, &a_action, &a_category, &a_n],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "DELETE FROM action_counts WHERE tenant_id = $1 AND count <= 0",
        &[&tid],
    )
    .await
    .map_err(pg_error)?;
    facet_deltas.write(&tx).await?;
    addresses::remove(
        &tx,
        tid,
        rows.iter().filter_map(|r| {
            let ip: Option<&[u8]> = r.get(9);
            Some((r.get::<_, i64>(0) as u64, ip?))
        }),
    )
    .await?;
    // Actors: the count loses what was purged; `last_seen` is read again from what remains
    // only when the newest event was among the purged — rarely, as purges take the oldest
    // events (a decrement cannot lower a maximum; reading every touched actor's events made
    // each purge cost O(events per actor)). Then the name and email stay ones a remaining
    // event carries (see `KEEP_CARRIED`).
    for (actor, (purged_n, newest_purged)) in &actors {
        let Some(stored) = tx
            .query_opt(STORED_ACTOR, &[&tid, actor])
            .await
            .map_err(pg_error)?
        else {
            continue;
        };
        let (name_carried, email_carried): (bool, bool) = (stored.get(2), stored.get(3));
        if stored.get::<_, i64>(0) > *purged_n && *newest_purged < stored.get::<_, i64>(1) {
            tx.execute(
                "UPDATE actor_stats SET count = count - $3 WHERE tenant_id = $1 AND actor_id = $2",
                &[&tid, actor, purged_n],
            )
            .await
            .map_err(pg_error)?;
        } else {
            let left = tx
                .query_one(
                    "SELECT count(*), max((extract(epoch FROM occurred_at) * 1000000)::int8)
                     FROM events WHERE tenant_id = $1 AND actor_id = $2",
                    &[&tid, actor],
                )
                .await
                .map_err(pg_error)?;
            let n: i64 = left.get(0);
            if n == 0 {
                tx.execute(
                    "DELETE FROM actor_stats WHERE tenant_id = $1 AND actor_id = $2",
                    &[&tid, actor],
                )
                .await
                .map_err(pg_error)?;
                continue;
            }
            let last: i64 = left.get(1);
            tx.execute(
                "UPDATE actor_stats SET count = $3, last_seen = $4
                 WHERE tenant_id = $1 AND actor_id = $2",
                &[&tid, actor, &n, &last],
            )
            .await
            .map_err(pg_error)?;
        }
        if !(name_carried && email_carried) {
            tx.execute(NEWEST_NAMES, &[&tid, actor, &name_carried, &email_carried])
                .await
                .map_err(pg_error)?;
        }
    }
    rollups.subtract(&tx, tid).await?;
    refresh_blocks(&tx, tid, &blocks).await?;
    tx.execute(
        "INSERT INTO purges (tenant_id, event_seq, ranges, count, root, archive, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &tid,
            &event_seq,
            &record.ranges_text(),
            &(record.count as i64),
            &&record.root[..],
            &record.archive,
            &record.created_at,
        ],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

/// Keeps purged events' leaf hashes (`$1` the tenant; `$2..$5` seqs, ids, leaf hashes and
/// the seq of the purge each belongs to). A row already there for a seq is one a partition
/// drop staged and never committed — its purge has no record (`purges`): a crash between the
/// staging and the drop, or a drop given up — and is replaced. A row of a committed purge is
/// not, and is missing from the statement's count, which the caller compares.
pub(crate) const INSERT_PURGED: &str =
    "INSERT INTO purged_events AS p (tenant_id, seq, event_id, leaf_hash, purge)
     SELECT $1, s, i, h, pu FROM unnest($2::int8[], $3::text[], $4::bytea[], $5::int8[])
                                 AS u(s, i, h, pu)
     ON CONFLICT (tenant_id, seq) DO UPDATE
       SET event_id = excluded.event_id, leaf_hash = excluded.leaf_hash, purge = excluded.purge
       WHERE NOT EXISTS (SELECT 1 FROM purges r
                         WHERE r.tenant_id = p.tenant_id AND r.event_seq = p.purge)";

/// [`INSERT_PURGED`] for seqs known to have no row yet: a plain insert.
pub(crate) const INSERT_NEW_PURGED: &str =
    "INSERT INTO purged_events (tenant_id, seq, event_id, leaf_hash, purge)
     SELECT $1, s, i, h, pu FROM unnest($2::int8[], $3::text[], $4::bytea[], $5::int8[])
                                 AS u(s, i, h, pu)";

/// Recounts the zone-map blocks a purge touched from what remains of them: their counts, and
/// bounds narrowed to the remaining events (a block left empty goes), so time-window totals
/// taken from the zone map stay exact.
async fn refresh_blocks(
    tx: &deadpool_postgres::Transaction<'_>,
    tid: i32,
    blocks: &BTreeSet<i64>,
) -> StoreResult<()> {
    let blocks: Vec<i64> = blocks.iter().copied().collect();
    tx.execute(
        &format!(
            "UPDATE event_blocks b SET count = f.n, min_at = coalesce(f.lo, b.min_at),
                                       max_at = coalesce(f.hi, b.max_at)
             FROM (SELECT t.block, count(e.seq) AS n, min(e.occurred_at) AS lo,
                          max(e.occurred_at) AS hi
                   FROM unnest($2::int8[]) AS t(block)
                   LEFT JOIN events e ON e.tenant_id = $1
                        AND e.seq BETWEEN t.block << {bits} AND ((t.block + 1) << {bits}) - 1
                   GROUP BY t.block) AS f
             WHERE b.tenant_id = $1 AND b.block = f.block",
            bits = window::BLOCK_BITS
        ),
        &[&tid, &blocks],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "DELETE FROM event_blocks WHERE tenant_id = $1 AND count <= 0",
        &[&tid],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

pub async fn purges(client: &ClientWrapper, t: &TenantName) -> StoreResult<Vec<PurgeRecord>> {
    let Some((tid, _)) = read::tenant(client, t).await? else {
        return Ok(Vec::new());
    };
    let rows = client
        .query(
            "SELECT event_seq, ranges, count, root, archive, created_at FROM purges
             WHERE tenant_id = $1 ORDER BY event_seq",
            &[&tid],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|r| {
            Ok(PurgeRecord {
                event_seq: r.get::<_, i64>(0).max(0) as u64,
                ranges: PurgeRecord::parse_ranges(r.get(1))?,
                count: r.get::<_, i64>(2).max(0) as u64,
                root: hash32(r.get(3))?,
                archive: r.get(4),
                created_at: r.get(5),
            })
        })
        .collect()
}

pub async fn purged_leaves(
    client: &ClientWrapper,
    t: &TenantName,
    event_seq: u64,
) -> StoreResult<Vec<(u64, Hash)>> {
    let Some((tid, _)) = read::tenant(client, t).await? else {
        return Ok(Vec::new());
    };
    client
        .query(
            "SELECT seq, leaf_hash FROM purged_events p
             WHERE tenant_id = $1 AND purge = $2
               AND EXISTS (SELECT 1 FROM purges r
                           WHERE r.tenant_id = p.tenant_id AND r.event_seq = p.purge)
             ORDER BY seq",
            &[&tid, &(event_seq as i64)],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| Ok((r.get::<_, i64>(0) as u64, hash32(r.get(1))?)))
        .collect()
}

/// Purged leaves with `from <= seq <= upto`, at most `limit`, for the verify walk.
pub async fn purged_range(
    client: &ClientWrapper,
    tid: i32,
    from: u64,
    upto: i64,
    limit: u32,
) -> StoreResult<Vec<(u64, Hash)>> {
    let stmt = client
        .prepare_cached(
            // Only rows of recorded purges: a partition drop stages its rows before its
            // transaction stores the records (drop.rs), and a crash can leave them behind.
            "SELECT seq, leaf_hash FROM purged_events p
             WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3
               AND EXISTS (SELECT 1 FROM purges r
                           WHERE r.tenant_id = p.tenant_id AND r.event_seq = p.purge)
             ORDER BY seq LIMIT $4",
        )
        .await
        .map_err(pg_error)?;
    client
        .query(&stmt, &[&tid, &(from as i64), &upto, &i64::from(limit)])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| Ok((r.get::<_, i64>(0) as u64, hash32(r.get(1))?)))
        .collect()
}

pub async fn purged_event(
    client: &ClientWrapper,
    t: &TenantName,
    id: &str,
) -> StoreResult<Option<(u64, Hash)>> {
    let Some((tid, _)) = read::tenant(client, t).await? else {
        return Ok(None);
    };
    client
        .query_opt(
            "SELECT seq, leaf_hash FROM purged_events p WHERE tenant_id = $1 AND event_id = $2
               AND EXISTS (SELECT 1 FROM purges r
                           WHERE r.tenant_id = p.tenant_id AND r.event_seq = p.purge)",
            &[&tid, &id],
        )
        .await
        .map_err(pg_error)?
        .map(|r| Ok((r.get::<_, i64>(0) as u64, hash32(r.get(1))?)))
        .transpose()
}

pub async fn insert_hold(client: &ClientWrapper, h: &LegalHoldRecord) -> StoreResult<()> {
    client
        .execute(
            "INSERT INTO legal_holds (id, tenant, name, reason, filter, created_at, created_by,
                                      released_at, released_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &h.id,
                &h.tenant.as_str(),
                &h.name,
                &h.reason,
                &h.filter,
                &h.created_at,
                &h.created_by,
                &h.released_at,
                &h.released_by,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

const HOLD_COLUMNS: &str =
    "id, tenant, name, reason, filter, created_at, created_by, released_at, released_by";

fn hold_row(r: &tokio_postgres::Row) -> StoreResult<LegalHoldRecord> {
    let id: String = r.get(0);
    Ok(LegalHoldRecord {
        tenant: TenantName::parse(r.get::<_, &str>(1))
            .map_err(|_| StoreError::Corrupt(format!("legal hold {id}: bad tenant")))?,
        id,
        name: r.get(2),
        reason: r.get(3),
        filter: r.get(4),
        created_at: r.get(5),
        created_by: r.get(6),
        released_at: r.get(7),
        released_by: r.get(8),
    })
}

pub async fn holds(
    client: &ClientWrapper,
    tenant: Option<&TenantName>,
    include_released: bool,
) -> StoreResult<Vec<LegalHoldRecord>> {
    client
        .query(
            &format!(
                "SELECT {HOLD_COLUMNS} FROM legal_holds
                 WHERE ($1::text IS NULL OR tenant = $1) AND ($2 OR released_at IS NULL)
                 ORDER BY created_at, id"
            ),
            &[&tenant.map(|t| t.as_str()), &include_released],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(hold_row)
        .collect()
}

pub async fn release_hold(
    client: &ClientWrapper,
    id: &str,
    tenant: Option<&TenantName>,
    at: i64,
    by: &str,
) -> StoreResult<Option<LegalHoldRecord>> {
    client
        .query_opt(
            &format!(
                "UPDATE legal_holds SET released_at = $3, released_by = $4
                 WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) AND released_at IS NULL
                 RETURNING {HOLD_COLUMNS}"
            ),
            &[&id, &tenant.map(|t| t.as_str()), &at, &by],
        )
        .await
        .map_err(pg_error)?
        .as_ref()
        .map(hold_row)
        .transpose()
}

pub async fn rules_first_seen(
    client: &ClientWrapper,
    fingerprint: &str,
    now: i64,
) -> StoreResult<i64> {
    client
        .execute(
            "INSERT INTO retention_rule_sets (fingerprint, first_seen) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&fingerprint, &now],
        )
        .await
        .map_err(pg_error)?;
    Ok(client
        .query_one(
            "SELECT first_seen FROM retention_rule_sets WHERE fingerprint = $1",
            &[&fingerprint],
        )
        .await
        .map_err(pg_error)?
        .get(0))
}

/// An actor's stored count and `last_seen` (`$1` tenant, `$2` actor), and whether its stored
/// name and email are still carried by one of its remaining events (or are none):
/// `check_summaries` holds the store to that, and the actor's latest event may carry neither
/// (the stored ones came from older events, perhaps all purged). The probes walk the actor's
/// index from its newest event, where the stored value almost always is.
const STORED_ACTOR: &str = "SELECT s.count, s.last_seen,
        s.name IS NULL OR (SELECT 1 FROM events e WHERE e.tenant_id = $1 AND e.actor_id = $2
                             AND e.body::jsonb -> 'actor' ->> 'name' = s.name
                           ORDER BY e.seq DESC LIMIT 1) IS NOT NULL,
        s.email IS NULL OR (SELECT 1 FROM events e WHERE e.tenant_id = $1 AND e.actor_id = $2
                              AND e.body::jsonb -> 'actor' ->> 'email' = s.email
                            ORDER BY e.seq DESC LIMIT 1) IS NOT NULL
    FROM actor_stats s WHERE s.tenant_id = $1 AND s.actor_id = $2";

/// Replaces an actor's name unless `$3` (it is still carried) and its email unless `$4` with
/// the newest ones its remaining events carry, or none.
const NEWEST_NAMES: &str = "UPDATE actor_stats s SET
        name = CASE WHEN $3 THEN s.name
               ELSE (SELECT e.body::jsonb -> 'actor' ->> 'name' FROM events e
                     WHERE e.tenant_id = $1 AND e.actor_id = $2
                       AND e.body::jsonb -> 'actor' ->> 'name' IS NOT NULL
                     ORDER BY e.seq DESC LIMIT 1) END,
        email = CASE WHEN $4 THEN s.email
                ELSE (SELECT e.body::jsonb -> 'actor' ->> 'email' FROM events e
                      WHERE e.tenant_id = $1 AND e.actor_id = $2
                        AND e.body::jsonb -> 'actor' ->> 'email' IS NOT NULL
                      ORDER BY e.seq DESC LIMIT 1) END
    WHERE s.tenant_id = $1 AND s.actor_id = $2";
