//! Client addresses: where in the log each address occurs, block by block.
//!
//! `ip=ADDRESS` is what an investigator asks after an incident ("what else came from
//! there?"), and nothing else narrows it: read in `seq` order, one address among thousands
//! costs a scan of most of the log (an address in one event of 1,000: 70 ms for a first page
//! and 300 ms for a total at 1M; an address with a faceted filter they never meet, 1.6-3.5 s).
//! An index keyed by address answers it, but costs durable ingest 0.80x (measured,
//! BENCHMARKS.md): every group commit dirties one leaf page per distinct address, all over
//! the index. So the writer keeps `event_addresses` keyed **block first**: for each block of
//! the zone map ([`window::BLOCK_BITS`]) and each address seen in it, the offsets of its
//! events in the block. A commit's rows land at the tail of the tenant's range, on a few
//! pages; a search reads one short range per block (a single seek for one address), then
//! fetches exactly the events at those positions.
//!
//! The postings are exact — the writer adds each event's offset in the append transaction
//! and a purge removes its events' offsets in the purge transaction — so the sum of the
//! offsets of an address is its number of events, and `verify` rebuilds them from the events
//! to check ([`check`]).

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, params};

use crate::derive::{SEQ_BITS, SEQ_MASK, pos};
use crate::sql_error;
use crate::window::{BLOCK_BITS, BLOCK_EVENTS, block_of};
use bitacora_store::{StoreError, StoreResult};

/// The offset of `seq` in its block.
fn offset_of(seq: u64) -> u16 {
    (seq & (BLOCK_EVENTS - 1)) as u16
}

/// Column `i` of `r` as a blob.
fn blob<'a>(r: &'a rusqlite::Row<'_>, i: usize) -> StoreResult<&'a [u8]> {
    r.get_ref(i)
        .map_err(sql_error)?
        .as_blob()
        .map_err(|e| StoreError::Corrupt(format!("a stored address or posting: {e}")))
}

fn encode(offsets: &[u16]) -> Vec<u8> {
    offsets.iter().flat_map(|o| o.to_le_bytes()).collect()
}

fn decode(blob: &[u8], out: &mut Vec<u16>) {
    out.extend(
        blob.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]])),
    );
}

/// One group commit's (or one purge's) postings, per (tenant, block, address), offsets
/// ascending.
#[derive(Default)]
pub struct Deltas {
    rows: BTreeMap<(i64, i64, [u8; 16]), Vec<u16>>,
}

impl Deltas {
    /// Records the event at `seq` of tenant `tid` from address `ip`. Events of a tenant
    /// arrive in `seq` order, so each list stays ascending.
    pub fn add(&mut self, tid: i64, seq: u64, ip: [u8; 16]) {
        self.rows
            .entry((tid, block_of(seq), ip))
            .or_default()
            .push(offset_of(seq));
    }

    /// Inserts the rows: each one's offsets are past every earlier row's of its address and
    /// block (the log only grows), so its key is new.
    pub fn write(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO event_addresses (tenant_id, block, ip, first, offsets)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql_error)?;
        for ((tid, block, ip), offsets) in &self.rows {
            insert
                .execute(params![tid, block, &ip[..], offsets[0], encode(offsets)])
                .map_err(sql_error)?;
        }
        Ok(())
    }
}

/// Removes the offsets of purged events (`gone`: seq and address) from the postings, in the
/// purge's transaction: each touched block's rows are read once, deleted, and what remains
/// (the block's held or unpurged events) written back as one row per address.
pub fn remove(
    tx: &Transaction<'_>,
    tid: i64,
    gone: impl IntoIterator<Item = (u64, [u8; 16])>,
) -> StoreResult<()> {
    let mut by_block: BTreeMap<i64, BTreeMap<[u8; 16], Vec<u16>>> = BTreeMap::new();
    for (seq, ip) in gone {
        by_block
            .entry(block_of(seq))
            .or_default()
            .entry(ip)
            .or_default()
            .push(offset_of(seq));
    }
    let mut read = tx
        .prepare_cached(
            "SELECT ip, offsets FROM event_addresses WHERE tenant_id = ?1 AND block = ?2",
        )
        .map_err(sql_error)?;
    let mut delete = tx
        .prepare_cached("DELETE FROM event_addresses WHERE tenant_id = ?1 AND block = ?2")
        .map_err(sql_error)?;
    let mut keep = Deltas::default();
    for (block, mut purged) in by_block {
        let mut stored: BTreeMap<[u8; 16], Vec<u16>> = BTreeMap::new();
        let mut rows = read.query(params![tid, block]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let ip: [u8; 16] = blob(r, 0)?
                .try_into()
                .map_err(|_| StoreError::Corrupt("a stored address is not 16 bytes".into()))?;
            let blob = blob(r, 1)?;
            decode(blob, stored.entry(ip).or_default());
        }
        drop(rows);
        delete.execute(params![tid, block]).map_err(sql_error)?;
        for (ip, mut offsets) in stored {
            offsets.sort_unstable();
            if let Some(out) = purged.get_mut(&ip) {
                out.sort_unstable();
                offsets.retain(|o| out.binary_search(o).is_err());
            }
            if !offsets.is_empty() {
                keep.rows.insert((tid, block, ip), offsets);
            }
        }
        purged.clear();
    }
    keep.write(tx)
}

/// The positions of tenant `tid`'s events from addresses in `lo..=hi` (16-byte blobs) in
/// block `block`, ascending. An address block of events never seen answers empty.
pub fn positions(
    conn: &Connection,
    tid: i64,
    block: i64,
    (lo, hi): (&[u8; 16], &[u8; 16]),
) -> StoreResult<Vec<i64>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT offsets FROM event_addresses
             WHERE tenant_id = ?1 AND block = ?2 AND ip BETWEEN ?3 AND ?4",
        )
        .map_err(sql_error)?;
    let mut rows = stmt
        .query(params![tid, block, &lo[..], &hi[..]])
        .map_err(sql_error)?;
    let mut offsets = Vec::new();
    while let Some(r) = rows.next().map_err(sql_error)? {
        decode(blob(r, 0)?, &mut offsets);
    }
    offsets.sort_unstable();
    let base = (block as u64) << BLOCK_BITS;
    Ok(offsets
        .into_iter()
        .map(|o| pos(tid, base + u64::from(o)))
        .collect())
}

/// Builds the postings of a store written before they existed (migration 14), streaming the
/// events in `pos` order and writing one block's rows at a time.
pub fn backfill(tx: &Transaction<'_>) -> StoreResult<()> {
    let mut stmt = tx
        .prepare("SELECT pos, ip FROM events WHERE ip IS NOT NULL ORDER BY pos")
        .map_err(sql_error)?;
    let mut rows = stmt.query([]).map_err(sql_error)?;
    let mut deltas = Deltas::default();
    let mut current: Option<(i64, i64)> = None;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let p: i64 = r.get(0).map_err(sql_error)?;
        let Ok(ip) = <[u8; 16]>::try_from(blob(r, 1)?) else {
            continue;
        };
        let (tid, seq) = (p >> SEQ_BITS, (p & SEQ_MASK) as u64);
        let key = (tid, block_of(seq));
        if current.is_some_and(|c| c != key) && deltas.rows.len() >= 10_000 {
            deltas.write(tx)?;
            deltas = Deltas::default();
        }
        current = Some(key);
        deltas.add(tid, seq, ip);
    }
    deltas.write(tx)
}

/// A block and address whose stored postings are not what the events say, with how many
/// offsets each gives.
pub struct Mismatch {
    pub block: i64,
    pub ip: [u8; 16],
    pub stored: usize,
    pub derived: usize,
}

/// The first (tenant, block, address) whose stored postings differ from what the events
/// say, with the stored and derived offset counts, or `None` when they all agree.
pub fn check(conn: &Connection, tid: i64) -> StoreResult<Option<Mismatch>> {
    let (lo, hi) = crate::derive::tenant_range(tid);
    let mut derived: BTreeMap<(i64, [u8; 16]), Vec<u16>> = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT pos, ip FROM events WHERE pos BETWEEN ?1 AND ?2 AND ip IS NOT NULL")
            .map_err(sql_error)?;
        let mut rows = stmt.query(params![lo, hi]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let p: i64 = r.get(0).map_err(sql_error)?;
            let Ok(ip) = <[u8; 16]>::try_from(blob(r, 1)?) else {
                continue;
            };
            let seq = (p & SEQ_MASK) as u64;
            derived
                .entry((block_of(seq), ip))
                .or_default()
                .push(offset_of(seq));
        }
    }
    let mut stored: BTreeMap<(i64, [u8; 16]), Vec<u16>> = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT block, ip, offsets FROM event_addresses WHERE tenant_id = ?1")
            .map_err(sql_error)?;
        let mut rows = stmt.query([tid]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let block: i64 = r.get(0).map_err(sql_error)?;
            // Not 16 bytes: never written by bitacora, so it can only mismatch.
            let ip = <[u8; 16]>::try_from(blob(r, 1)?).unwrap_or([0xff; 16]);
            decode(blob(r, 2)?, stored.entry((block, ip)).or_default());
        }
    }
    for v in stored.values_mut() {
        v.sort_unstable();
    }
    let keys: std::collections::BTreeSet<_> = derived.keys().chain(stored.keys()).collect();
    for key in keys {
        let d = derived.get(key).map_or(&[][..], Vec::as_slice);
        let s = stored.get(key).map_or(&[][..], Vec::as_slice);
        if d != s {
            return Ok(Some(Mismatch {
                block: key.0,
                ip: key.1,
                stored: s.len(),
                derived: d.len(),
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_stay_per_block() {
        let ip = [7u8; 16];
        let mut d = Deltas::default();
        d.add(1, 3, ip);
        d.add(1, 5, ip);
        d.add(1, BLOCK_EVENTS + 2, ip);
        assert_eq!(d.rows[&(1, 0, ip)], vec![3, 5]);
        assert_eq!(d.rows[&(1, 1, ip)], vec![2]);
        let mut back = Vec::new();
        decode(&encode(&[3, 5, 4095]), &mut back);
        assert_eq!(back, vec![3, 5, 4095]);
    }
}
