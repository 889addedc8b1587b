//! Reading and writing a tenant's Merkle tree nodes.
//!
//! Nodes live in three places, each node in exactly one:
//!
//! - **Below level [`STORED_LEVEL`]** nothing is stored: a node is folded on demand from the
//!   (at most 2^STORED_LEVEL) leaf hashes it covers, one contiguous `pos` range of `events`.
//! - **Tiles** (`merkle_tiles`): once the 16 nodes at a tile's base level `4·tier` under one
//!   node of level `4·tier + 4` are all complete, the writer stores them as one 512-byte row
//!   and drops the 30 `merkle_nodes` rows (levels `4·tier` to `4·tier + 3`) they replace. A
//!   node inside a tile is folded from at most 8 of its hashes.
//! - **`merkle_nodes`**: complete nodes at level 4 and above whose tile is not complete yet
//!   (the right edge of the tree).
//!
//! Why tiles: an inclusion proof needs one node per level. Stored one per row, the ~20 nodes
//! of a proof at 10M events sit on ~20 different B-tree pages, and each is a disk read when
//! the page is not cached. With tiles, all the nodes of four consecutive levels of a proof lie
//! in one row, so a proof reads about `levels / 4` rows (plus one 16-leaf block of events).
//!
//! Whether a tile exists follows from the log's size alone (it is complete when the log has
//! reached its end), read in the same snapshot as the tiles, so a reader never guesses.
//!
//! **Leaf tiles** (`tiles.leaf_tiles`) serve a different reader: the C2SP tlog-tiles hash tile
//! of level 0 lists 256 consecutive leaf hashes, which live in 256 event rows (bodies and all,
//! ~25 B-tree pages). When an append completes a run of 256 leaves (a level-8 node), the writer
//! also stores their hashes as one 8 KiB row, built from the leaves it just appended
//! ([`LeafTails`]), so a full level-0 tile is one row read ([`level_nodes`]). The rows live in
//! their own file (`bitacora-tiles.db`) with 32 KiB pages, three tiles to a page: a row never
//! spills into overflow pages, so a tile nobody asked for before is one read of one page
//! (the B-tree above it, a few pages for the whole log, stays cached). It duplicates 32 bytes
//! per event; it is never changed afterwards (a purge keeps leaf hashes, so it keeps these
//! too); being derived, a lost or stale file is refilled at the next start
//! ([`repair_leaf_tiles`]). Full tiles of higher tlog levels (tree
//! level 8·L) are 16 consecutive rows of `merkle_tiles` (tier 2·L), read as one range.

use std::collections::HashMap;

use bitacora_core::canonical::Hash;
use bitacora_core::merkle::{NodeId, root_from_leaves};
use bitacora_store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::derive::pos;
use crate::sql_error;
use crate::writer::blob32;

/// The lowest level whose nodes are stored.
pub const STORED_LEVEL: u8 = 4;
/// Levels per tile tier: a tile holds the 2^TILE_HEIGHT nodes of its base level under one
/// node `TILE_HEIGHT` levels up.
const TILE_HEIGHT: u8 = 4;
const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Leaves per `leaf_tiles` row: a full C2SP tlog-tiles tile.
pub const LEAF_TILE_WIDTH: u64 = 256;
/// The level of the node whose completion completes a leaf tile.
const LEAF_TILE_LEVEL: u8 = 8;

/// The `leaf_tiles` key of the leaf tile holding `seq` of tenant `tid`.
fn leaf_tile_key(tid: i64, seq: u64) -> i64 {
    pos(tid, seq) >> LEAF_TILE_LEVEL
}

/// Which tile holds a stored node: `(tier, tile index)`, and the node's first base-level
/// position within the tile and how many base hashes it covers.
fn tile_of(id: NodeId) -> Option<(u8, u64, usize, usize)> {
    if id.level < STORED_LEVEL {
        return None;
    }
    let tier = id.level / TILE_HEIGHT;
    let above_base = id.level % TILE_HEIGHT;
    let first_base = id.index.checked_shl(u32::from(above_base))?;
    Some((
        tier,
        first_base / TILE_WIDTH,
        (first_base % TILE_WIDTH) as usize,
        1usize << above_base,
    ))
}

/// Whether tile `(tier, idx)` is complete (and so stored) in a log of `size` leaves.
fn tile_complete(tier: u8, idx: u64, size: u64) -> bool {
    let shift = u32::from(tier) * u32::from(TILE_HEIGHT) + u32::from(TILE_HEIGHT);
    let end = (u128::from(idx) + 1) << shift;
    end <= u128::from(size)
}

/// Reads tiles once per call: the nodes of a proof often share them.
struct TileReader<'c> {
    conn: &'c Connection,
    tid: i64,
    tiles: HashMap<(u8, u64), Vec<Hash>>,
}

impl<'c> TileReader<'c> {
    fn new(conn: &'c Connection, tid: i64) -> Self {
        Self {
            conn,
            tid,
            tiles: HashMap::new(),
        }
    }

    fn tile(&mut self, tier: u8, idx: u64) -> StoreResult<&[Hash]> {
        if !self.tiles.contains_key(&(tier, idx)) {
            let blob: Option<Vec<u8>> = self
                .conn
                .prepare_cached(
                    "SELECT hashes FROM merkle_tiles WHERE tenant_id = ?1 AND tier = ?2 AND idx = ?3",
                )
                .map_err(sql_error)?
                .query_row(params![self.tid, tier, idx as i64], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            let hashes = match blob {
                Some(b) if b.len() == 32 * TILE_WIDTH as usize => {
                    b.chunks_exact(32).map(blob32).collect()
                }
                Some(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "Merkle tile (tier {tier}, index {idx}) has the wrong length"
                    )));
                }
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "Merkle tile (tier {tier}, index {idx}) is missing"
                    )));
                }
            };
            self.tiles.insert((tier, idx), hashes);
        }
        Ok(&self.tiles[&(tier, idx)])
    }

    /// A complete node at level >= [`STORED_LEVEL`] of a log of `size` leaves.
    fn stored_node(&mut self, id: NodeId, size: u64) -> StoreResult<Hash> {
        if let Some((tier, idx, offset, len)) = tile_of(id)
            && tile_complete(tier, idx, size)
        {
            let hashes = self.tile(tier, idx)?;
            return Ok(root_from_leaves(&hashes[offset..offset + len]));
        }
        self.conn
            .prepare_cached(
                "SELECT hash FROM merkle_nodes WHERE tenant_id = ?1 AND level = ?2 AND idx = ?3",
            )
            .map_err(sql_error)?
            .query_row(params![self.tid, id.level, id.index as i64], |r| {
                Ok(blob32(r.get_ref(0)?.as_blob()?))
            })
            .optional()
            .map_err(sql_error)?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "Merkle node (level {}, index {}) is missing",
                    id.level, id.index
                ))
            })
    }
}

/// The hash of a complete node of tenant `tid`'s tree, whose log has `size` leaves.
pub fn node(conn: &Connection, tid: i64, size: u64, id: NodeId) -> StoreResult<Hash> {
    nodes(conn, tid, size, &[id]).map(|mut v| v.remove(0))
}

/// The stored leaf hashes of events `begin..end`, in order (fewer if rows are missing).
fn leaf_hashes(conn: &Connection, tid: i64, begin: u64, end: u64) -> StoreResult<Vec<Hash>> {
    let mut stmt = conn
        // A purged event's leaf hash lives on in `purged_events` (see purge.rs).
        .prepare_cached(
            "SELECT pos, leaf_hash FROM events WHERE pos >= ?1 AND pos < ?2
             UNION ALL
             SELECT pos, leaf_hash FROM purged_events WHERE pos >= ?1 AND pos < ?2
             ORDER BY pos",
        )
        .map_err(sql_error)?;
    stmt.query_map(params![pos(tid, begin), pos(tid, end)], |r| {
        Ok(blob32(r.get_ref(1)?.as_blob()?))
    })
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

/// `count` consecutive complete nodes at `level` from node `first`, in a log of `size`
/// events: a full level-0 tlog tile is one `leaf_tiles` row, other level-0 runs one range
/// read of leaf hashes, and an aligned run at a tile base level (a full tlog tile of level
/// ≥ 1) one range read of `merkle_tiles`. Anything else is [`nodes`].
pub fn level_nodes(
    conn: &Connection,
    tid: i64,
    size: u64,
    level: u8,
    first: u64,
    count: u64,
) -> StoreResult<Vec<Hash>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let last = bitacora_store::last_of_complete_run(level, first, count, size)?;
    if level == 0 {
        if count == LEAF_TILE_WIDTH && first.is_multiple_of(LEAF_TILE_WIDTH) {
            return leaf_tile(conn, tid, first);
        }
        let leaves = leaf_hashes(conn, tid, first, first + count)?;
        if leaves.len() as u64 != count {
            return Err(StoreError::Corrupt(format!(
                "events {first}..{} should all exist, found {}",
                first + count,
                leaves.len()
            )));
        }
        return Ok(leaves);
    }
    if level >= STORED_LEVEL
        && level.is_multiple_of(TILE_HEIGHT)
        && first.is_multiple_of(TILE_WIDTH)
        && count.is_multiple_of(TILE_WIDTH)
    {
        // Every tile of the run is complete, since its last node is.
        debug_assert!(tile_complete(
            level / TILE_HEIGHT,
            last.index / TILE_WIDTH,
            size
        ));
        return tile_run(
            conn,
            tid,
            level / TILE_HEIGHT,
            first / TILE_WIDTH,
            count / TILE_WIDTH,
        );
    }
    let ids: Vec<NodeId> = (first..first + count)
        .map(|i| NodeId::new(level, i))
        .collect();
    nodes(conn, tid, size, &ids)
}

/// The stored full leaf tile that starts at `first` (a multiple of [`LEAF_TILE_WIDTH`]).
fn leaf_tile(conn: &Connection, tid: i64, first: u64) -> StoreResult<Vec<Hash>> {
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hashes FROM tiles.leaf_tiles WHERE tile = ?1")
        .map_err(sql_error)?
        .query_row([leaf_tile_key(tid, first)], |r| r.get(0))
        .optional()
        .map_err(sql_error)?;
    match blob {
        Some(b) if b.len() == 32 * LEAF_TILE_WIDTH as usize => {
            Ok(b.chunks_exact(32).map(blob32).collect())
        }
        Some(_) => Err(StoreError::Corrupt(format!(
            "leaf tile of events {first}.. has the wrong length"
        ))),
        None => Err(StoreError::Corrupt(format!(
            "leaf tile of events {first}.. is missing"
        ))),
    }
}

/// The base-level hashes of `tiles` consecutive complete tiles of `tier` from `idx`.
fn tile_run(conn: &Connection, tid: i64, tier: u8, idx: u64, tiles: u64) -> StoreResult<Vec<Hash>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, hashes FROM merkle_tiles
             WHERE tenant_id = ?1 AND tier = ?2 AND idx >= ?3 AND idx < ?4 ORDER BY idx",
        )
        .map_err(sql_error)?;
    let mut rows = stmt
        .query(params![tid, tier, idx as i64, (idx + tiles) as i64])
        .map_err(sql_error)?;
    let mut out = Vec::with_capacity((tiles * TILE_WIDTH) as usize);
    let mut expected = idx as i64;
    while let Some(row) = rows.next().map_err(sql_error)? {
        let got: i64 = row.get(0).map_err(sql_error)?;
        let blob: Vec<u8> = row.get(1).map_err(sql_error)?;
        if got != expected || blob.len() != 32 * TILE_WIDTH as usize {
            return Err(StoreError::Corrupt(format!(
                "Merkle tile (tier {tier}, index {expected}) is missing or has the wrong length"
            )));
        }
        out.extend(blob.chunks_exact(32).map(blob32));
        expected += 1;
    }
    if expected != (idx + tiles) as i64 {
        return Err(StoreError::Corrupt(format!(
            "Merkle tile (tier {tier}, index {expected}) is missing"
        )));
    }
    Ok(out)
}

/// The hashes of several complete nodes of a log of `size` events, in the order asked.
///
/// A proof asks for up to four nodes below [`STORED_LEVEL`] around one leaf, and they all lie
/// in the same block of 2^STORED_LEVEL leaves: each block's leaf hashes are read once (one
/// range read) and every low node is folded from that slice. Likewise each tile is read once.
pub fn nodes(conn: &Connection, tid: i64, size: u64, ids: &[NodeId]) -> StoreResult<Vec<Hash>> {
    let block_len = 1u64 << STORED_LEVEL;
    let mut blocks: HashMap<u64, Vec<Hash>> = HashMap::new();
    let mut tiles = TileReader::new(conn, tid);
    ids.iter()
        .map(|id| {
            let Some((begin, end)) = id.leaf_range().filter(|&(_, end)| end <= size) else {
                return Err(StoreError::Corrupt(format!(
                    "node {id:?} is not complete in a log of {size} events"
                )));
            };
            if id.level >= STORED_LEVEL {
                return tiles.stored_node(*id, size);
            }
            let block = begin / block_len;
            let leaves = match blocks.entry(block) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let first = block * block_len;
                    v.insert(leaf_hashes(
                        conn,
                        tid,
                        first,
                        (first + block_len).min(size),
                    )?)
                }
            };
            let offset = (begin - block * block_len) as usize;
            let want = (end - begin) as usize;
            match leaves.get(offset..offset + want) {
                Some(slice) => Ok(root_from_leaves(slice)),
                None => Err(StoreError::Corrupt(format!(
                    "events {begin}..{end} should all exist, found {} in their block",
                    leaves.len()
                ))),
            }
        })
        .collect()
}

/// The leaf hashes of each tenant's leaf tile being filled, as the writer appended them, so
/// that the append completing a tile writes its `leaf_tiles` row from memory instead of
/// reading its 256 leaves back from `events`. A cache like the writer's others: dropped when
/// a transaction fails or another process appended, and refilled from the next tile on (a
/// tile whose first leaves it never saw is read back once, as before).
#[derive(Default)]
pub struct LeafTails {
    /// By tenant id: the tile's first seq, and its leaf hashes so far (`None` when leaves
    /// before the ones seen are not known).
    tails: HashMap<i64, (u64, Option<Vec<u8>>)>,
}

impl LeafTails {
    /// Records the leaf hash of event `seq` of tenant `tid`; returns the tile's 256 hashes
    /// (8 KiB, the row) when this leaf completes it.
    pub fn push(&mut self, tid: i64, seq: u64, leaf: &Hash) -> Option<Vec<u8>> {
        let first = seq - seq % LEAF_TILE_WIDTH;
        let tail = self.tails.entry(tid).or_insert((first, None));
        if tail.0 != first {
            *tail = (first, None);
        }
        if seq == first {
            tail.1 = Some(Vec::with_capacity(32 * LEAF_TILE_WIDTH as usize));
        }
        match &mut tail.1 {
            Some(hashes) if hashes.len() as u64 == 32 * (seq - first) => {
                hashes.extend_from_slice(leaf);
            }
            // A gap: the next tile starts afresh.
            _ => tail.1 = None,
        }
        if seq - first == LEAF_TILE_WIDTH - 1 {
            return tail.1.take();
        }
        None
    }

    /// Forgets tenant `tid` (its log changed behind the writer's back).
    pub fn forget(&mut self, tid: i64) {
        self.tails.remove(&tid);
    }
}

/// Persists newly completed nodes (those below [`STORED_LEVEL`] are skipped), in completion
/// order, and folds every tile they complete into one `merkle_tiles` row. Each leaf tile they
/// complete (a level-8 node) is written from `leaf_tiles` (`(tenant id, first seq)` → its 256
/// hashes, as [`LeafTails::push`] returned them) or, for one the writer did not see whole,
/// read back from `events`.
pub fn insert_nodes(
    conn: &Connection,
    nodes: &[(i64, NodeId, Hash)],
    leaf_tiles: &mut HashMap<(i64, u64), Vec<u8>>,
) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO merkle_nodes (tenant_id, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql_error)?;
    for (tid, id, hash) in nodes {
        insert
            .execute(params![tid, id.level, id.index as i64, &hash[..]])
            .map_err(sql_error)?;
    }
    // A tile completes with the last node of its base level (its 16th base node); the
    // levels above it within the tile complete in the same append, so they are all stored
    // by now.
    for (tid, id, _) in nodes {
        if id.level >= STORED_LEVEL
            && id.level % TILE_HEIGHT == 0
            && id.index % TILE_WIDTH == TILE_WIDTH - 1
        {
            write_tile(conn, *tid, id.level / TILE_HEIGHT, id.index / TILE_WIDTH)?;
        }
        // A level-8 node completes the 256 leaves under it: this append inserted the last of
        // them, so they are all in `events` now.
        if id.level == LEAF_TILE_LEVEL {
            let first = id.index * LEAF_TILE_WIDTH;
            let hashes = match leaf_tiles.remove(&(*tid, first)) {
                Some(hashes) => hashes,
                None => read_leaf_tile(conn, *tid, first)?,
            };
            conn.prepare_cached("INSERT INTO tiles.leaf_tiles (tile, hashes) VALUES (?1, ?2)")
                .map_err(sql_error)?
                .execute(params![leaf_tile_key(*tid, first), hashes])
                .map_err(sql_error)?;
        }
    }
    Ok(())
}

/// The stored leaf hashes of events `first..first + 256`, all of which exist, as one row.
fn read_leaf_tile(conn: &Connection, tid: i64, first: u64) -> StoreResult<Vec<u8>> {
    let leaves = leaf_hashes(conn, tid, first, first + LEAF_TILE_WIDTH)?;
    if leaves.len() as u64 != LEAF_TILE_WIDTH {
        return Err(StoreError::Corrupt(format!(
            "leaf tile of events {first}..: {} of its {LEAF_TILE_WIDTH} leaves are stored",
            leaves.len()
        )));
    }
    Ok(leaves.concat())
}

/// Fills `main.leaf_tiles` for a store written before it existed (migration 0011; 0012 then
/// moves the rows to their own file): one pass over every leaf hash in `pos` order.
pub fn backfill_leaf_tiles(conn: &Connection) -> StoreResult<()> {
    fill_leaf_tiles(conn, "main.leaf_tiles", 0, i64::MAX)
}

/// Writes a `table` row for each complete run of 256 leaves with `pos` in `from..=to`
/// (replacing any there): one pass over their leaf hashes in `pos` order.
fn fill_leaf_tiles(conn: &Connection, table: &str, from: i64, to: i64) -> StoreResult<()> {
    let mut insert = conn
        .prepare(&format!(
            "INSERT OR REPLACE INTO {table} (tile, hashes) VALUES (?1, ?2)"
        ))
        .map_err(sql_error)?;
    let mut stmt = conn
        .prepare(
            "SELECT pos, leaf_hash FROM events WHERE pos BETWEEN ?1 AND ?2
             UNION ALL
             SELECT pos, leaf_hash FROM purged_events WHERE pos BETWEEN ?1 AND ?2
             ORDER BY pos",
        )
        .map_err(sql_error)?;
    let mut rows = stmt.query(params![from, to]).map_err(sql_error)?;
    let mut tile = -1i64;
    let mut hashes: Vec<u8> = Vec::with_capacity(32 * LEAF_TILE_WIDTH as usize);
    while let Some(row) = rows.next().map_err(sql_error)? {
        let at: i64 = row.get(0).map_err(sql_error)?;
        if at >> LEAF_TILE_LEVEL != tile {
            tile = at >> LEAF_TILE_LEVEL;
            hashes.clear();
        }
        let leaf: Vec<u8> = row.get(1).map_err(sql_error)?;
        hashes.extend_from_slice(&blob32(&leaf));
        if hashes.len() == 32 * LEAF_TILE_WIDTH as usize {
            insert.execute(params![tile, &hashes]).map_err(sql_error)?;
        }
    }
    Ok(())
}

/// Brings `tiles.leaf_tiles` level with the events at startup. The file is written in the
/// same transaction as the events, but SQLite commits each file of a transaction on its own
/// in WAL mode, so a crash can leave it a few tiles short, or holding tiles of a log the
/// crash rolled back; a file lost or restored apart from `bitacora.db` can be anything. Rows
/// are only ever added at a log's end, so each tenant's end is what is checked here (two
/// indexed reads per tenant): rows past the log's complete tiles are dropped, and the tiles
/// after the last row are filled from the events. `bitacora verify` checks every row.
pub fn repair_leaf_tiles(conn: &Connection) -> StoreResult<()> {
    let tenants: Vec<(i64, u64)> = {
        let mut stmt = conn
            .prepare("SELECT id, size FROM tenants")
            .map_err(sql_error)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?
    };
    for (tid, size) in tenants {
        let full = size / LEAF_TILE_WIDTH;
        let first_key = leaf_tile_key(tid, 0);
        let end_key = leaf_tile_key(tid, full * LEAF_TILE_WIDTH);
        let (_, hi) = crate::derive::tenant_range(tid);
        let dropped = conn
            .execute(
                "DELETE FROM tiles.leaf_tiles WHERE tile >= ?1 AND tile <= ?2",
                params![end_key, hi >> LEAF_TILE_LEVEL],
            )
            .map_err(sql_error)?;
        let last: Option<i64> = conn
            .query_row(
                "SELECT max(tile) FROM tiles.leaf_tiles WHERE tile >= ?1 AND tile < ?2",
                params![first_key, end_key],
                |r| r.get(0),
            )
            .map_err(sql_error)?;
        let have = last.map_or(0, |k| (k - first_key + 1) as u64);
        if dropped > 0 || have < full {
            tracing::info!(
                tenant_id = tid,
                dropped,
                missing = full - have,
                "bringing the leaf tiles level with the log"
            );
        }
        if have < full {
            fill_leaf_tiles(
                conn,
                "tiles.leaf_tiles",
                pos(tid, have * LEAF_TILE_WIDTH),
                pos(tid, full * LEAF_TILE_WIDTH) - 1,
            )?;
        }
    }
    Ok(())
}

/// Moves the 30 node rows of a complete tile into its one tile row.
fn write_tile(conn: &Connection, tid: i64, tier: u8, idx: u64) -> StoreResult<()> {
    let base = tier * TILE_HEIGHT;
    let first = (idx * TILE_WIDTH) as i64;
    let hashes: Vec<u8> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT hash FROM merkle_nodes
                 WHERE tenant_id = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4 ORDER BY idx",
            )
            .map_err(sql_error)?;
        let rows = stmt
            .query_map(
                params![tid, base, first, first + TILE_WIDTH as i64 - 1],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .map_err(sql_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_error)?;
        if rows.len() != TILE_WIDTH as usize || rows.iter().any(|h| h.len() != 32) {
            return Err(StoreError::Corrupt(format!(
                "Merkle tile (tier {tier}, index {idx}): {} of its {TILE_WIDTH} nodes are stored",
                rows.len()
            )));
        }
        rows.concat()
    };
    conn.prepare_cached(
        "INSERT INTO merkle_tiles (tenant_id, tier, idx, hashes) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(sql_error)?
    .execute(params![tid, tier, idx as i64, hashes])
    .map_err(sql_error)?;
    let mut delete = conn
        .prepare_cached(
            "DELETE FROM merkle_nodes WHERE tenant_id = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4",
        )
        .map_err(sql_error)?;
    for above in 0..TILE_HEIGHT {
        let width = (TILE_WIDTH >> above) as i64;
        let start = (idx as i64) * width;
        delete
            .execute(params![tid, base + above, start, start + width - 1])
            .map_err(sql_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_arithmetic() {
        // Level 4 nodes 0..16 form tile (1, 0); level 7 node 1 covers base nodes 8..16.
        assert_eq!(tile_of(NodeId::new(4, 0)), Some((1, 0, 0, 1)));
        assert_eq!(tile_of(NodeId::new(4, 17)), Some((1, 1, 1, 1)));
        assert_eq!(tile_of(NodeId::new(7, 1)), Some((1, 0, 8, 8)));
        assert_eq!(tile_of(NodeId::new(8, 3)), Some((2, 0, 3, 1)));
        assert_eq!(tile_of(NodeId::new(3, 3)), None);
        // Tile (1, 0) covers leaves 0..256; tile (2, 1) leaves 4096..8192.
        assert!(!tile_complete(1, 0, 255));
        assert!(tile_complete(1, 0, 256));
        assert!(!tile_complete(2, 1, 8191));
        assert!(tile_complete(2, 1, 8192));
        assert!(!tile_complete(15, u64::MAX >> 4, u64::MAX));
    }
}
