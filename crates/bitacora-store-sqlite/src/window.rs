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

/// log2 of the events per block. 4,096 keeps the map at ~2,500 rows per 10M events (read in
/// well under a millisecond) while a block scanned in vain costs a couple of milliseconds.
/// Tests use blocks of 64, so that their few thousand events span many blocks.
#[cfg(not(test))]
pub const BLOCK_BITS: u32 = 12;
#[cfg(test)]
pub const BLOCK_BITS: u32 = 6;
#[cfg(test)]
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

/// A run of consecutive blocks to scan, as an inclusive `pos` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub lo: i64,
    pub hi: i64,
    /// Every event of the span is inside the window (and the span is whole blocks), so
    /// `count` is the number of events in it that match the window.
    pub inside: bool,
    pub count: u64,
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
    let mut stmt = conn
        .prepare_cached(
            "SELECT block, min_at, max_at, count FROM event_blocks
             WHERE tenant_id = ?1 AND block BETWEEN ?2 AND ?3 AND max_at >= ?4 AND min_at < ?5
             ORDER BY block",
        )
        .map_err(sql_error)?;
    let mut rows = stmt
        .query(params![tid, first, last, since, until])
        .map_err(sql_error)?;
    let mut out: Vec<Span> = Vec::new();
    let mut prev_block = i64::MIN;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let block: i64 = r.get(0).map_err(sql_error)?;
        let (min_at, max_at): (i64, i64) =
            (r.get(1).map_err(sql_error)?, r.get(2).map_err(sql_error)?);
        let count: i64 = r.get(3).map_err(sql_error)?;
        let b_lo = pos(tid, (block as u64) << BLOCK_BITS);
        let b_hi = pos(tid, (((block as u64) + 1) << BLOCK_BITS) - 1);
        let (s_lo, s_hi) = (b_lo.max(lo), b_hi.min(hi));
        // A block cut by the cursor no longer holds `count` of its events.
        let inside = min_at >= since && max_at < until && s_lo == b_lo && s_hi == b_hi;
        let span = Span {
            lo: s_lo,
            hi: s_hi,
            inside,
            count: if inside { count as u64 } else { 0 },
        };
        match out.last_mut() {
            Some(last) if block == prev_block + 1 && (!split_inside || last.inside == inside) => {
                last.hi = span.hi;
                last.inside &= inside;
                last.count += span.count;
            }
            _ => out.push(span),
        }
        prev_block = block;
    }
    Ok(coalesce(out, MAX_SPANS))
}

/// Merges spans across their smallest gaps until at most `max` remain. A merged span scans
/// the blocks in its gaps too (the window's condition still excludes their events), so it is
/// no longer `inside`.
fn coalesce(spans: Vec<Span>, max: usize) -> Vec<Span> {
    if spans.len() <= max {
        return spans;
    }
    let mut gaps: Vec<(i64, usize)> = spans
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1].lo - w[0].hi, i))
        .collect();
    gaps.sort_unstable();
    let mut merge_after = vec![false; spans.len()];
    for (_, i) in gaps.iter().take(spans.len() - max) {
        merge_after[*i] = true;
    }
    let mut out: Vec<Span> = Vec::with_capacity(max);
    let mut join = false;
    for (i, s) in spans.into_iter().enumerate() {
        match out.last_mut() {
            Some(last) if join => {
                last.hi = s.hi;
                last.inside = false;
                last.count = 0;
            }
            _ => out.push(s),
        }
        join = merge_after[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(lo: i64, hi: i64) -> Span {
        Span {
            lo,
            hi,
            inside: true,
            count: 1,
        }
    }

    #[test]
    fn coalescing_merges_the_smallest_gaps_first() {
        let spans = vec![span(0, 1), span(3, 4), span(100, 101), span(103, 104)];
        let out = coalesce(spans.clone(), 4);
        assert_eq!(out, spans);
        let out = coalesce(spans, 2);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].lo, out[0].hi, out[0].inside), (0, 4, false));
        assert_eq!((out[1].lo, out[1].hi, out[1].inside), (100, 104, false));
    }

    #[test]
    fn blocks_cover_whole_seq_ranges() {
        assert_eq!(block_of(0), 0);
        assert_eq!(block_of(BLOCK_EVENTS - 1), 0);
        assert_eq!(block_of(BLOCK_EVENTS), 1);
    }
}
