//! Reading and writing a tenant's Merkle tree nodes.
//!
//! Complete subtree hashes at level [`STORED_LEVEL`] and above live in `merkle_nodes`; a node
//! below it is folded on demand from the (at most 2^STORED_LEVEL) leaf hashes it covers, read
//! as one contiguous `pos` range of `events`. Both the writer (to load a tenant's compact
//! range) and the readers (for proofs and roots) go through [`node`].

use bitacora_core::canonical::Hash;
use bitacora_core::merkle::{NodeId, root_from_leaves};
use bitacora_store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::derive::pos;
use crate::sql_error;
use crate::writer::blob32;

/// The lowest level whose nodes are stored.
pub const STORED_LEVEL: u8 = 4;

/// The hash of a complete node of tenant `tid`'s tree.
pub fn node(conn: &Connection, tid: i64, id: NodeId) -> StoreResult<Hash> {
    if id.level >= STORED_LEVEL {
        return conn
            .prepare_cached(
                "SELECT hash FROM merkle_nodes WHERE tenant_id = ?1 AND level = ?2 AND idx = ?3",
            )
            .map_err(sql_error)?
            .query_row(params![tid, id.level, id.index as i64], |r| {
                Ok(blob32(r.get_ref(0)?.as_blob()?))
            })
            .optional()
            .map_err(sql_error)?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "Merkle node (level {}, index {}) is missing",
                    id.level, id.index
                ))
            });
    }
    let (begin, end) = id
        .leaf_range()
        .ok_or_else(|| StoreError::Internal(format!("node {id:?} is out of range")))?;
    let leaves = leaf_hashes(conn, tid, begin, end)?;
    if leaves.len() as u64 != end - begin {
        return Err(StoreError::Corrupt(format!(
            "events {begin}..{end} should all exist, found {}",
            leaves.len()
        )));
    }
    Ok(root_from_leaves(&leaves))
}

/// The stored leaf hashes of events `begin..end`, in order (fewer if rows are missing).
fn leaf_hashes(conn: &Connection, tid: i64, begin: u64, end: u64) -> StoreResult<Vec<Hash>> {
    let mut stmt = conn
        .prepare_cached("SELECT leaf_hash FROM events WHERE pos >= ?1 AND pos < ?2 ORDER BY pos")
        .map_err(sql_error)?;
    stmt.query_map(params![pos(tid, begin), pos(tid, end)], |r| {
        Ok(blob32(r.get_ref(0)?.as_blob()?))
    })
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

/// The hashes of several complete nodes of a log of `size` events, in the order asked.
///
/// A proof asks for up to four nodes below [`STORED_LEVEL`] around one leaf, and they all lie
/// in the same block of 2^STORED_LEVEL leaves: each block's leaf hashes are read once (one
/// range read) and every low node is folded from that slice.
pub fn nodes(conn: &Connection, tid: i64, size: u64, ids: &[NodeId]) -> StoreResult<Vec<Hash>> {
    let block_len = 1u64 << STORED_LEVEL;
    let mut blocks: std::collections::HashMap<u64, Vec<Hash>> = std::collections::HashMap::new();
    ids.iter()
        .map(|id| {
            let Some((begin, end)) = id.leaf_range().filter(|&(_, end)| end <= size) else {
                return Err(StoreError::Corrupt(format!(
                    "node {id:?} is not complete in a log of {size} events"
                )));
            };
            if id.level >= STORED_LEVEL {
                return node(conn, tid, *id);
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

/// Persists newly completed nodes (those below [`STORED_LEVEL`] are skipped).
pub fn insert_nodes(conn: &Connection, nodes: &[(i64, NodeId, Hash)]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO merkle_nodes (tenant_id, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql_error)?;
    for (tid, id, hash) in nodes {
        stmt.execute(params![tid, id.level, id.index as i64, &hash[..]])
            .map_err(sql_error)?;
    }
    Ok(())
}
