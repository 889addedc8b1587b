//! Reading a tenant's Merkle tree nodes, with the embedded store's scheme: complete subtree
//! hashes at level [`STORED_LEVEL`] and above live in `merkle_nodes`; a node below it is
//! folded on demand from the (at most 2^STORED_LEVEL) leaf hashes it covers, read as one
//! `seq` range of `events`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bitacora_core::canonical::Hash;
use bitacora_core::merkle::{NodeId, root_from_leaves};
use bitacora_store::{StoreError, StoreResult};
use deadpool_postgres::ClientWrapper;

use crate::{hash32, pg_error};

/// The lowest level whose nodes are stored.
pub const STORED_LEVEL: u8 = 4;

/// The stored leaf hashes of events `begin..end`, in order (fewer if rows are missing).
///
/// A seq can be in both tables: a partition drop copies its leaf hashes to `purged_events`
/// before the transaction that drops the rows (drop.rs), and a crash in between leaves both
/// until a later purge or drop. The copy is the row's own leaf hash, so it is read once; two
/// different hashes for one seq are corruption.
async fn leaf_hashes(
    client: &ClientWrapper,
    tid: i32,
    begin: u64,
    end: u64,
) -> StoreResult<Vec<Hash>> {
    let stmt = client
        .prepare_cached(
            // A purged event's leaf hash lives on in `purged_events` (see purge.rs).
            "SELECT seq, leaf_hash FROM events
             WHERE tenant_id = $1 AND seq >= $2 AND seq < $3
             UNION ALL
             SELECT seq, leaf_hash FROM purged_events
             WHERE tenant_id = $1 AND seq >= $2 AND seq < $3
             ORDER BY seq",
        )
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&tid, &(begin as i64), &(end as i64)])
        .await
        .map_err(pg_error)?;
    let mut out: Vec<Hash> = Vec::with_capacity(rows.len());
    let mut last: Option<i64> = None;
    for r in &rows {
        let (seq, hash): (i64, Hash) = (r.get(0), hash32(r.get(1))?);
        if last == Some(seq) {
            if out.last() != Some(&hash) {
                return Err(StoreError::Corrupt(format!(
                    "event {seq}: its row and its copy in purged_events differ"
                )));
            }
            continue;
        }
        last = Some(seq);
        out.push(hash);
    }
    Ok(out)
}

/// `count` consecutive complete nodes at `level` from node `first`, in a log of `size`
/// events (a tlog-tiles hash tile): at level 0 one range read of leaf hashes (rather than
/// one per block of 2^STORED_LEVEL leaves), else [`nodes`] (one query).
pub async fn level_nodes(
    client: &ClientWrapper,
    tid: i32,
    size: u64,
    level: u8,
    first: u64,
    count: u64,
) -> StoreResult<Vec<Hash>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    bitacora_store::last_of_complete_run(level, first, count, size)?;
    if level == 0 {
        let leaves = leaf_hashes(client, tid, first, first + count).await?;
        if leaves.len() as u64 != count {
            return Err(StoreError::Corrupt(format!(
                "events {first}..{} should all exist, found {}",
                first + count,
                leaves.len()
            )));
        }
        return Ok(leaves);
    }
    let ids: Vec<NodeId> = (first..first + count)
        .map(|i| NodeId::new(level, i))
        .collect();
    nodes(client, tid, size, &ids).await
}

/// The hashes of several complete nodes of a log of `size` events, in the order asked.
///
/// Stored nodes are fetched in one query; the low nodes a proof needs around one leaf all
/// lie in one block of 2^STORED_LEVEL leaves, whose leaf hashes are read once.
pub async fn nodes(
    client: &ClientWrapper,
    tid: i32,
    size: u64,
    ids: &[NodeId],
) -> StoreResult<Vec<Hash>> {
    let mut stored_levels = Vec::new();
    let mut stored_idx = Vec::new();
    for id in ids {
        if id.leaf_range().is_none_or(|(_, end)| end > size) {
            return Err(StoreError::Corrupt(format!(
                "node {id:?} is not complete in a log of {size} events"
            )));
        }
        if id.level >= STORED_LEVEL {
            stored_levels.push(i16::from(id.level));
            stored_idx.push(id.index as i64);
        }
    }
    let mut stored: HashMap<(u8, u64), Hash> = HashMap::new();
    if !stored_levels.is_empty() {
        let stmt = client
            .prepare_cached(
                "SELECT n.level, n.idx, n.hash FROM merkle_nodes n
                 JOIN unnest($2::int2[], $3::int8[]) AS w(level, idx)
                   ON n.level = w.level AND n.idx = w.idx
                 WHERE n.tenant_id = $1",
            )
            .await
            .map_err(pg_error)?;
        for r in client
            .query(&stmt, &[&tid, &stored_levels, &stored_idx])
            .await
            .map_err(pg_error)?
        {
            let level: i16 = r.get(0);
            let idx: i64 = r.get(1);
            stored.insert((level as u8, idx as u64), hash32(r.get(2))?);
        }
    }

    let block_len = 1u64 << STORED_LEVEL;
    let mut blocks: HashMap<u64, Vec<Hash>> = HashMap::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if id.level >= STORED_LEVEL {
            out.push(*stored.get(&(id.level, id.index)).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "Merkle node (level {}, index {}) is missing",
                    id.level, id.index
                ))
            })?);
            continue;
        }
        let (begin, end) = id.leaf_range().expect("checked above");
        let block = begin / block_len;
        let leaves = match blocks.entry(block) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let first = block * block_len;
                v.insert(leaf_hashes(client, tid, first, (first + block_len).min(size)).await?)
            }
        };
        let offset = (begin - block * block_len) as usize;
        let want = (end - begin) as usize;
        match leaves.get(offset..offset + want) {
            Some(slice) => out.push(root_from_leaves(slice)),
            None => {
                return Err(StoreError::Corrupt(format!(
                    "events {begin}..{end} should all exist, found {} in their block",
                    leaves.len()
                )));
            }
        }
    }
    Ok(out)
}
