//! Client addresses, block by block (migration 9): the embedded store's `addresses.rs`
//! explains the design; this is the same on PostgreSQL.
//!
//! `ip=ADDRESS` has no index (one keyed by address costs ingest: every commit touches a leaf
//! per distinct address all over it), so the writer keeps `event_addresses` keyed block
//! first: per zone-map block and address, the offsets of its events in the block, one row per
//! (block, address, commit), landing at the tail of the index. A search reads the postings of
//! a run of blocks in one statement (`block = ANY(…)`, an index seek per block) and fetches
//! the events at the named seqs. The postings are exact: the append, a purge and a partition
//! drop change them in their own transactions, and `verify` rebuilds them from the events.

use std::collections::BTreeMap;

use bitacora_store::StoreResult;
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use crate::pg_error;
use crate::window::{BLOCK_BITS, block_of};

/// Events per block.
pub const BLOCK_EVENTS: u64 = 1 << BLOCK_BITS;

fn offset_of(seq: u64) -> i16 {
    (seq & (BLOCK_EVENTS - 1)) as i16
}

/// One group commit's postings: an event per entry, grouped into rows by the statement.
#[derive(Default)]
pub struct Deltas {
    tenant: Vec<i32>,
    block: Vec<i64>,
    ip: Vec<Vec<u8>>,
    offset: Vec<i16>,
}

impl Deltas {
    /// Records the event at `seq` of tenant `tid` from address `ip` (16 bytes).
    pub fn add(&mut self, tid: i32, seq: u64, ip: &[u8]) {
        self.tenant.push(tid);
        self.block.push(block_of(seq));
        self.ip.push(ip.to_vec());
        self.offset.push(offset_of(seq));
    }

    /// One row per (tenant, block, address) of the commit: its offsets are past every
    /// earlier row's of that block and address (the log only grows), so its key is new.
    pub async fn write(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self.tenant.is_empty() {
            return Ok(());
        }
        let params: [&(dyn ToSql + Sync); 4] = [&self.tenant, &self.block, &self.ip, &self.offset];
        tx.execute(
            "INSERT INTO event_addresses (tenant_id, block, ip, first, offsets)
             SELECT t, b, ip, min(o), array_agg(o ORDER BY o)
             FROM unnest($1::int4[], $2::int8[], $3::bytea[], $4::int2[]) AS u(t, b, ip, o)
             GROUP BY 1, 2, 3",
            &params,
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }
}

/// Removes the offsets of purged events (`gone`: seq and address) from tenant `tid`'s
/// postings, in the purge's transaction: the touched blocks' rows are read, deleted, and
/// what remains of them (held or unpurged events) written back.
pub async fn remove(
    tx: &Transaction<'_>,
    tid: i32,
    gone: impl IntoIterator<Item = (u64, &[u8])>,
) -> StoreResult<()> {
    let mut purged: BTreeMap<i64, BTreeMap<Vec<u8>, Vec<i16>>> = BTreeMap::new();
    for (seq, ip) in gone {
        purged
            .entry(block_of(seq))
            .or_default()
            .entry(ip.to_vec())
            .or_default()
            .push(offset_of(seq));
    }
    if purged.is_empty() {
        return Ok(());
    }
    let blocks: Vec<i64> = purged.keys().copied().collect();
    let rows = tx
        .query(
            "DELETE FROM event_addresses WHERE tenant_id = $1 AND block = ANY($2)
             RETURNING block, ip, offsets",
            &[&tid, &blocks],
        )
        .await
        .map_err(pg_error)?;
    let mut keep = Deltas::default();
    let mut stored: BTreeMap<(i64, Vec<u8>), Vec<i16>> = BTreeMap::new();
    for r in rows {
        let offsets: Vec<i16> = r.get(2);
        stored
            .entry((r.get(0), r.get(1)))
            .or_default()
            .extend(offsets);
    }
    for ((block, ip), mut offsets) in stored {
        offsets.sort_unstable();
        if let Some(out) = purged.get_mut(&block).and_then(|b| b.get_mut(&ip)) {
            out.sort_unstable();
            offsets.retain(|o| out.binary_search(o).is_err());
        }
        for o in offsets {
            keep.add(tid, ((block as u64) << BLOCK_BITS) + o as u64, &ip);
        }
    }
    keep.write(tx).await
}

/// The statements that take a partition's events out of the postings, in the transaction
/// that drops it: the blocks it touched (the temporary table `bitacora_drop_blocks`, those
/// `with_ip`) are rebuilt from the events of the other partitions (`elsewhere`: the
/// condition on `events e` of an event outside it).
pub fn rebuild(elsewhere: &str) -> [String; 2] {
    let bits = BLOCK_BITS;
    let mask = BLOCK_EVENTS - 1;
    [
        "DELETE FROM event_addresses a USING bitacora_drop_blocks d
         WHERE d.with_ip AND a.tenant_id = d.tenant_id AND a.block = d.block"
            .to_owned(),
        // One range read per block (`OFFSET 0` keeps the planner from turning it back into
        // a join: as a join, the 74 blocks of a 300k-event month took 1 s, this way 54 ms).
        format!(
            "INSERT INTO event_addresses (tenant_id, block, ip, first, offsets)
             SELECT d.tenant_id, d.block, e.ip, min(e.seq & {mask})::int2,
                    array_agg((e.seq & {mask})::int2 ORDER BY e.seq)
             FROM bitacora_drop_blocks d,
                  LATERAL (SELECT e.seq, e.ip FROM events e
                           WHERE e.tenant_id = d.tenant_id
                             AND e.seq BETWEEN d.block << {bits} AND ((d.block + 1) << {bits}) - 1
                             AND {elsewhere} AND e.ip IS NOT NULL
                           OFFSET 0) AS e
             WHERE d.with_ip
             GROUP BY 1, 2, 3"
        ),
    ]
}

/// For each of `blocks` (any order), the seqs of tenant `tid`'s events from addresses in
/// `lo..=hi`, ascending. Blocks without any are absent.
pub async fn positions(
    tx: &Transaction<'_>,
    tid: i32,
    blocks: &[i64],
    (lo, hi): (&[u8], &[u8]),
) -> StoreResult<BTreeMap<i64, Vec<i64>>> {
    let stmt = tx
        .prepare_cached(
            "SELECT block, offsets FROM event_addresses
             WHERE tenant_id = $1 AND block = ANY($2) AND ip BETWEEN $3 AND $4",
        )
        .await
        .map_err(pg_error)?;
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in tx
        .query(&stmt, &[&tid, &blocks, &lo, &hi])
        .await
        .map_err(pg_error)?
    {
        let block: i64 = r.get(0);
        let offsets: Vec<i16> = r.get(1);
        out.entry(block).or_default().extend(
            offsets
                .into_iter()
                .map(|o| (block << BLOCK_BITS) + i64::from(o)),
        );
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    Ok(out)
}

/// The first block and address of tenant `tid` whose stored postings differ from what the
/// events say, with the stored and derived offset counts; `None` when they all agree.
pub async fn check(
    tx: &Transaction<'_>,
    tid: i32,
) -> StoreResult<Option<(i64, Vec<u8>, i64, i64)>> {
    let bits = BLOCK_BITS;
    let mask = BLOCK_EVENTS - 1;
    let row = tx
        .query_opt(
            &format!(
                "WITH derived AS (
                     SELECT seq >> {bits} AS block, ip,
                            array_agg((seq & {mask})::int2 ORDER BY seq) AS o
                     FROM events WHERE tenant_id = $1 AND ip IS NOT NULL GROUP BY 1, 2
                 ), stored AS (
                     SELECT block, ip, array_agg(x ORDER BY x) AS o
                     FROM event_addresses, unnest(offsets) AS x
                     WHERE tenant_id = $1 GROUP BY 1, 2
                 )
                 SELECT coalesce(d.block, s.block), coalesce(d.ip, s.ip),
                        coalesce(cardinality(s.o), 0)::int8, coalesce(cardinality(d.o), 0)::int8
                 FROM derived d FULL JOIN stored s ON d.block = s.block AND d.ip = s.ip
                 WHERE d.o IS DISTINCT FROM s.o
                 ORDER BY 1, 2 LIMIT 1"
            ),
            &[&tid],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
}
