//! Time windows: the zone map `event_blocks` (migration 4) and the spans a windowed search reads.
//!
//! The writer widens, in the append transaction, one row per touched block of 2^[`BLOCK_BITS`]
//! seqs with the block's earliest and latest `occurred_at` and its event count. A search with
//! `since`/`until` reads the tenant's rows that overlap the window (an index range scan of a
//! few thousand narrow rows at 10M events) and [`bitacora_store::window::plan`] turns them into
//! seq ranges; each range is then read through the partitions' `(tenant_id, seq)` indexes with
//! the window's own condition still applied, so the first page costs what the window's first
//! blocks cost. See the embedded store's `window.rs` for the same design.

use std::collections::HashMap;

use bitacora_store::StoreResult;
use bitacora_store::window::{self, Block, Layout, Span};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use crate::pg_error;

/// log2 of the events per block (the migration's backfill uses the same 12). Tests use blocks
/// of 64, so that their few thousand events span many blocks.
#[cfg(not(test))]
pub const BLOCK_BITS: u32 = 12;
#[cfg(test)]
pub const BLOCK_BITS: u32 = 6;

/// More spans than this are merged across their smallest gaps (one statement per span).
#[cfg(not(test))]
const MAX_SPANS: usize = 64;
#[cfg(test)]
const MAX_SPANS: usize = 4;

pub fn block_of(seq: u64) -> i64 {
    (seq >> BLOCK_BITS) as i64
}

/// What one group commit adds to the zone map, per (tenant, block).
#[derive(Default)]
pub struct BlockDeltas {
    blocks: HashMap<(i32, i64), (i64, i64, i64)>,
}

impl BlockDeltas {
    pub fn add(&mut self, tenant_id: i32, seq: u64, occurred_us: i64) {
        let d =
            self.blocks
                .entry((tenant_id, block_of(seq)))
                .or_insert((occurred_us, occurred_us, 0));
        d.0 = d.0.min(occurred_us);
        d.1 = d.1.max(occurred_us);
        d.2 += 1;
    }

    /// Widens the touched blocks: one statement for the whole commit.
    pub async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        let (mut t, mut b, mut lo, mut hi, mut n) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((tid, block), (min, max, count)) in &self.blocks {
            t.push(*tid);
            b.push(*block);
            lo.push(micros(*min));
            hi.push(micros(*max));
            n.push(*count);
        }
        tx.execute(
            "INSERT INTO event_blocks AS e (tenant_id, block, min_at, max_at, count)
             SELECT * FROM unnest($1::int4[], $2::int8[], $3::timestamptz[], $4::timestamptz[],
                                  $5::int8[])
             ON CONFLICT (tenant_id, block) DO UPDATE SET
                min_at = LEAST(e.min_at, excluded.min_at),
                max_at = GREATEST(e.max_at, excluded.max_at),
                count = e.count + excluded.count",
            &[&t, &b, &lo, &hi, &n],
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }
}

/// A timestamp in microseconds, clamped into what PostgreSQL stores (validated events are
/// always well inside it).
pub fn micros(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_else(end)
}

/// An instant before any event's `occurred_at` (validated events are within years 0–9999),
/// which PostgreSQL's timestamptz still holds (`DateTime::MIN_UTC` it does not).
pub fn beginning() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(-100_000_000_000, 0).expect("year -1200 is a valid instant")
}

/// An instant after any event's `occurred_at`.
pub fn end() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(400_000_000_000, 0).expect("year 14645 is a valid instant")
}

/// The zone-map rows of tenant `tid`'s blocks `first..=last` that overlap
/// `since <= occurred_at < until`, ascending.
pub async fn blocks(
    client: &Transaction<'_>,
    tid: i32,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    (first, last): (i64, i64),
) -> StoreResult<Vec<Block>> {
    let stmt = client
        .prepare_cached(
            "SELECT block, min_at, max_at, count FROM event_blocks
             WHERE tenant_id = $1 AND block BETWEEN $2 AND $3 AND max_at >= $4 AND min_at < $5
             ORDER BY block",
        )
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&tid, &first, &last, &since, &until])
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| Block {
            block: r.get(0),
            min_at: r.get::<_, DateTime<Utc>>(1).timestamp_micros(),
            max_at: r.get::<_, DateTime<Utc>>(2).timestamp_micros(),
            count: r.get::<_, i64>(3) as u64,
        })
        .collect())
}

/// The seq spans of tenant `tid`'s seqs `lo..=hi` that can hold events with
/// `since <= occurred_at < until`, ascending.
pub async fn spans(
    client: &Transaction<'_>,
    tid: i32,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    (lo, hi): (i64, i64),
    split_inside: bool,
) -> StoreResult<Vec<Span>> {
    if lo > hi || since >= until {
        return Ok(Vec::new());
    }
    let first_last = (block_of(lo.max(0) as u64), block_of(hi.max(0) as u64));
    let blocks = blocks(client, tid, (since, until), first_last).await?;
    let layout = Layout {
        bounds: |block: i64| (block << BLOCK_BITS, ((block + 1) << BLOCK_BITS) - 1),
        max_spans: MAX_SPANS,
    };
    Ok(window::plan(
        blocks,
        &layout,
        (since.timestamp_micros(), until.timestamp_micros()),
        (lo, hi),
        split_inside,
    ))
}
