//! Inclusion and consistency proofs, roots of past sizes, and the per-event inclusion status
//! the viewer shows (CONTRACT §3 `GET /v1/log/proof/*`).
//!
//! # Why one store call per proof
//!
//! `bitacora_core::merkle` says which stored complete subtrees a proof is made of; this
//! module fetches all of them with a single [`Store::tree_nodes`] call and folds them
//! ([`merkle::resolve_proof`]). A proof is then O(log n) node reads in one round trip, which
//! is what keeps it under 2 ms at ten million events.
//!
//! Sizes and indexes come from requests: every bound is checked here and reported as
//! [`LogError::Invalid`] naming the query parameter, never passed on to the store.

use bitacora_core::TenantName;
use bitacora_core::canonical::{Hash, hex_hash, leaf_hash};
use bitacora_core::checkpoint::{NoteVerifier, open_log_checkpoint};
use bitacora_core::merkle::{self, NodeId, NodeRef};
use bitacora_store::{Store, StoreError};

use crate::LogError;

pub use bitacora_core::api::{ConsistencyProof, InclusionProof, InclusionState, InclusionStatus};

/// Reads the nodes `refs` need in one store call and folds them into proof hashes.
pub(crate) async fn resolve(
    store: &dyn Store,
    tenant: &TenantName,
    refs: &[NodeRef],
) -> Result<Vec<Hash>, LogError> {
    let ids = merkle::required_nodes(refs);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = store.tree_nodes(tenant, &ids).await?;
    if hashes.len() != ids.len() {
        return Err(StoreError::Corrupt(format!(
            "asked for {} tree nodes, got {}",
            ids.len(),
            hashes.len()
        ))
        .into());
    }
    // resolve_proof reads the nodes in exactly the order required_nodes lists them.
    let mut it = hashes.into_iter();
    merkle::resolve_proof(refs, |_: NodeId| it.next().ok_or(()))
        .map_err(|()| StoreError::Internal("tree node count changed".into()).into())
}

/// Checks `size <= log size` for the request parameter `field`.
async fn check_size(
    store: &dyn Store,
    tenant: &TenantName,
    field: &'static str,
    size: u64,
) -> Result<u64, LogError> {
    let log_size = store.log_size(tenant).await?;
    if size > log_size {
        return Err(LogError::invalid(
            field,
            format!("tree size {size} is bigger than the log ({log_size} events)"),
        ));
    }
    Ok(log_size)
}

/// The inclusion proof of the event at `seq` in the tree of `tree_size` leaves.
pub async fn inclusion_proof(
    store: &dyn Store,
    tenant: &TenantName,
    seq: u64,
    tree_size: u64,
) -> Result<InclusionProof, LogError> {
    check_size(store, tenant, "tree_size", tree_size).await?;
    if seq >= tree_size {
        return Err(LogError::invalid(
            "seq",
            format!("seq {seq} is not in a tree of {tree_size} events"),
        ));
    }
    let refs = merkle::inclusion_proof_nodes(seq, tree_size)
        .map_err(|e| LogError::invalid("seq", e.to_string()))?;
    Ok(InclusionProof {
        leaf_index: seq,
        tree_size,
        hashes: resolve(store, tenant, &refs).await?,
    })
}

/// The consistency proof between the trees of `first` and `second` leaves.
pub async fn consistency_proof(
    store: &dyn Store,
    tenant: &TenantName,
    first: u64,
    second: u64,
) -> Result<ConsistencyProof, LogError> {
    check_size(store, tenant, "second", second).await?;
    if first > second {
        return Err(LogError::invalid(
            "first",
            format!("first ({first}) must not be bigger than second ({second})"),
        ));
    }
    let refs = merkle::consistency_proof_nodes(first, second)
        .map_err(|e| LogError::invalid("first", e.to_string()))?;
    Ok(ConsistencyProof {
        first,
        second,
        hashes: resolve(store, tenant, &refs).await?,
    })
}

/// The root hash of the tenant's tree at `size` (folded from at most 64 stored nodes).
pub async fn root_at(store: &dyn Store, tenant: &TenantName, size: u64) -> Result<Hash, LogError> {
    check_size(store, tenant, "tree_size", size).await?;
    let refs: Vec<NodeRef> = merkle::root_nodes(size)
        .into_iter()
        .map(NodeRef::Complete)
        .collect();
    let hashes = resolve(store, tenant, &refs).await?;
    let mut it = hashes.into_iter();
    merkle::root_from_nodes(size, |_| it.next().ok_or(()))
        .map_err(|()| StoreError::Internal("tree node count changed".into()).into())
}

/// Checks the event at `seq` against the tenant's latest checkpoint: the checkpoint's
/// signature (with `verifiers`), the event's leaf hash recomputed from its stored body, and
/// its inclusion proof to the signed root. `NotFound` when there is no such event.
pub async fn event_inclusion_status(
    store: &dyn Store,
    tenant: &TenantName,
    seq: u64,
    verifiers: &[NoteVerifier],
) -> Result<InclusionStatus, LogError> {
    let Some(event) = store.event_by_seq(tenant, seq).await? else {
        return Err(LogError::NotFound(format!(
            "tenant `{tenant}` has no event at seq {seq}"
        )));
    };
    let leaf = leaf_hash(event.body.as_bytes());
    let mut status = InclusionStatus {
        seq,
        leaf_hash: hex_hash(&leaf),
        checkpoint: None,
        tree_size: None,
        proof: None,
        state: InclusionState::Failed,
        verified: false,
        detail: String::new(),
    };
    if leaf != event.leaf_hash {
        status.detail = "the stored leaf hash does not match the event".into();
        return Ok(status);
    }
    let Some(cp) = store.latest_checkpoint(tenant).await? else {
        status.state = InclusionState::Pending;
        status.detail = "the log has no signed checkpoint yet".into();
        return Ok(status);
    };
    status.checkpoint = Some(cp.note.clone());
    status.tree_size = Some(cp.size);
    if seq >= cp.size {
        status.state = InclusionState::Pending;
        status.detail = format!(
            "the event is newer than the latest checkpoint (size {}); it will be covered by the next one",
            cp.size
        );
        return Ok(status);
    }
    let origin = crate::log_origin(store, tenant).await?;
    let signed = match open_log_checkpoint(&cp.note, &origin, verifiers) {
        Ok((signed, _)) => signed,
        Err(e) => {
            status.detail = format!("the latest checkpoint does not verify: {e}");
            return Ok(status);
        }
    };
    if signed.size != cp.size || signed.root != cp.root {
        status.detail = "the signed checkpoint does not match its stored size and root".into();
        return Ok(status);
    }
    let proof = inclusion_proof(store, tenant, seq, cp.size).await?;
    let result = merkle::verify_inclusion(&leaf, seq, cp.size, &proof.hashes, &signed.root);
    status.proof = Some(proof);
    match result {
        Ok(()) => {
            status.state = InclusionState::Verified;
            status.verified = true;
            status.detail = format!(
                "included in the checkpoint signed at tree size {} (inclusion proof verified)",
                cp.size
            );
        }
        Err(e) => status.detail = format!("the inclusion proof does not verify: {e}"),
    }
    Ok(status)
}
