//! Time windows: a zone map of `occurred_at` per block of the log.
//!
//! `since`/`until` filter on `occurred_at`, the client's clock, while a tenant's log is
//! clustered by `seq`, the order of arrival. The two are almost the same order (events are
//! sent soon after they happen), so the table `event_blocks` keeps, for every block of
//! 2^[`BLOCK_BITS`] (4,096) consecutive seqs, the earliest and latest `occurred_at` in it and its event
//! count. A window is answered by reading those rows (a few thousand at 10M events), keeping the
//! blocks whose `[min_at, max_at]` overlaps it, and scanning only those, as `pos` ranges
//! ([`Span`]s), with the same index plans as any other search. The cost follows the window,
//! not the number of events newer than it.
//!
//! Correctness never depends on the near-ordering: the window's own condition stays in every
//! statement, and a block's bounds always cover all of its events (the writer widens them in
//! the transaction that appends to the block). An event imported with an `occurred_at` years
//! away from its neighbours widens its block, which then overlaps more windows: slower, not
//! wrong.
//!
//! Blocks that lie wholly inside a window also give exact counts for free, which is how a
//! numbered page over a window with no other filter gets its total without counting rows.

use std::collections::HashMap;

use rusqlite::{Connection, Transaction, params};

use crate::derive::{SEQ_MASK, pos};
use crate::sql_error;
use bitacora_store::StoreResult;
use bitacora_store::window::{self, Block, Layout};

/// log2 of the events per block. 4,096 keeps the map at ~2,500 rows per 10M events (read in
/// well under a millisecond) while a block scanned in vain costs a couple of milliseconds.
/// Tests use blocks of 64, so that their few thousand events span many blocks.
#[cfg(not(test))]
pub const BLOCK_BITS: u32 = 12;
#[cfg(test)]
pub const BLOCK_BITS: u32 = 6;
pub const BLOCK_EVENTS: u64 = 1 << BLOCK_BITS;

/// More spans than this are coalesced across their smallest gaps: each span is one statement,
/// and a log whose times are scattered (much imported history) would otherwise produce
/// thousands of tiny ones. Tests coalesce early, to exercise it.
#[cfg(not(test))]
pub const MAX_SPANS: usize = 64;
#[cfg(test)]
pub const MAX_SPANS: usize = 4;

pub fn block_of(seq: u64) -> i64 {
    (seq >> BLOCK_BITS) as i64
}

/// What one group commit adds to one block.
pub struct BlockDelta {
    min: i64,
    max: i64,
    count: i64,
}

impl BlockDelta {
    pub fn new(at: i64) -> Self {
        Self {
            min: at,
            max: at,
            count: 0,
        }
    }

    pub fn add(&mut self, at: i64) {
        self.min = self.min.min(at);
        self.max = self.max.max(at);
        self.count += 1;
    }
}

/// Builds the zone map of a store written before it existed (migration 5).
pub fn backfill(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO event_blocks (tenant_id, block, min_at, max_at, count)
         SELECT pos >> ?1, (pos & ?2) >> ?3, min(occurred_at), max(occurred_at), count(*)
         FROM events GROUP BY pos >> ?3",
        params![crate::derive::SEQ_BITS, SEQ_MASK, BLOCK_BITS],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// Widens the touched blocks, in the append transaction.
pub fn record_blocks(
    tx: &Transaction<'_>,
    blocks: &HashMap<(i64, i64), BlockDelta>,
) -> StoreResult<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO event_blocks (tenant_id, block, min_at, max_at, count)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO UPDATE SET
                min_at = min(min_at, excluded.min_at),
                max_at = max(max_at, excluded.max_at),
                count = count + excluded.count",
        )
        .map_err(sql_error)?;
    for ((tid, block), d) in blocks {
        stmt.execute(params![tid, block, d.min, d.max, d.count])
            .map_err(sql_error)?;
    }
    Ok(())
}

pub use bitacora_store::window::Span;

/// The inclusive `pos` range of tenant `tid`'s block `block`.
pub fn block_bounds(tid: i64, block: i64) -> (i64, i64) {
    (
        pos(tid, (block as u64) << BLOCK_BITS),
        pos(tid, (((block as u64) + 1) << BLOCK_BITS) - 1),
    )
}

/// The zone-map rows of tenant `tid`'s blocks `first..=last` that overlap
/// `since <= occurred_at < until`, ascending.
pub fn blocks(
    conn: &Connection,
    tid: i64,
    since: i64,
    until: i64,
    first: i64,
    last: i64,
) -> StoreResult<Vec<Block>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT block, min_at, max_at, count FROM event_blocks
             WHERE tenant_id = ?1 AND block BETWEEN ?2 AND ?3 AND max_at >= ?4 AND min_at < ?5
             ORDER BY block",
        )
        .map_err(sql_error)?;
    stmt.query_map(params![tid, first, last, since, until], |r| {
        Ok(Block {
            block: r.get(0)?,
            min_at: r.get(1)?,
            max_at: r.get(2)?,
            count: r.get::<_, i64>(3)? as u64,
        })
    })
    .map_err(sql_error)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(sql_error)
}

/// The spans of tenant `tid`'s positions `lo..=hi` that can hold events with
/// `since <= occurred_at < until`, in ascending order. With `split_inside`, spans wholly inside
/// the window are kept apart from the others so their counts can be used.
pub fn spans(
    conn: &Connection,
    tid: i64,
    since: i64,
    until: i64,
    lo: i64,
    hi: i64,
    split_inside: bool,
) -> StoreResult<Vec<Span>> {
    if lo > hi || since >= until {
        return Ok(Vec::new());
    }
    let (first, last) = (
        block_of((lo & SEQ_MASK) as u64),
        block_of((hi & SEQ_MASK) as u64),
    );
    let layout = Layout {
        bounds: |block: i64| block_bounds(tid, block),
        max_spans: MAX_SPANS,
    };
    Ok(window::plan(
        blocks(conn, tid, since, until, first, last)?,
        &layout,
        (since, until),
        (lo, hi),
        split_inside,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_whole_seq_ranges() {
        assert_eq!(block_of(0), 0);
        assert_eq!(block_of(BLOCK_EVENTS - 1), 0);
        assert_eq!(block_of(BLOCK_EVENTS), 1);
    }
}
