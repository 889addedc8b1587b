//! Signs each tenant's log as it grows (CONTRACT §4: "at least once a second while the log
//! grows").
//!
//! # Why a background loop, not the write path
//!
//! An Ed25519 signature costs tens of microseconds and a checkpoint is a row: signing on
//! every commit would tie ingest throughput to signing, and thousands of checkpoints a second
//! would bloat the store. Instead a task wakes every [`DEFAULT_INTERVAL`], and for every
//! tenant whose log grew since its latest checkpoint, signs the current size. The root comes
//! from the stored complete subtrees (at most `log2(n)` node reads), never from rehashing
//! the log.
//!
//! Checkpoints are never inconsistent with each other: each commits to a prefix of the same
//! append-only tree, and a size is never signed twice ([`checkpoint_tenant`] only signs a
//! size bigger than the latest).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bitacora_core::TenantName;
use bitacora_core::checkpoint::{Checkpoint, NoteSigner, tenant_origin};
use bitacora_core::merkle::{self, root_from_nodes};
use bitacora_store::{Store, StoreError, StoreResult, StoredCheckpoint};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the checkpointer looks for grown logs.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Signs the tenant's current log size if it is bigger than its latest checkpoint, stores
/// the checkpoint and returns it; `None` when there is nothing new to sign.
pub async fn checkpoint_tenant(
    store: &dyn Store,
    signer: &NoteSigner,
    tenant: &TenantName,
    now_micros: i64,
) -> StoreResult<Option<StoredCheckpoint>> {
    let size = store.log_size(tenant).await?;
    let latest = store.latest_checkpoint(tenant).await?;
    if size == 0 || latest.is_some_and(|c| c.size >= size) {
        return Ok(None);
    }
    let nodes = merkle::root_nodes(size);
    let hashes = store.tree_nodes(tenant, &nodes).await?;
    if hashes.len() != nodes.len() {
        return Err(StoreError::Corrupt(format!(
            "asked for {} tree nodes, got {}",
            nodes.len(),
            hashes.len()
        )));
    }
    let mut it = hashes.into_iter();
    let root = root_from_nodes(size, |_| it.next().ok_or(()))
        .map_err(|()| StoreError::Internal("tree node count changed".into()))?;
    let note = signer
        .sign_checkpoint(&Checkpoint::new(tenant_origin(tenant.as_str()), size, root))
        .map_err(|e| StoreError::Internal(format!("cannot sign a checkpoint: {e}")))?;
    let checkpoint = StoredCheckpoint {
        size,
        root,
        note,
        created_at: now_micros,
    };
    store.add_checkpoint(tenant, &checkpoint).await?;
    Ok(Some(checkpoint))
}

/// Runs the checkpointer until `shutdown` is cancelled, then signs once more so that every
/// acknowledged event is covered by a checkpoint, and returns.
///
/// Stop it (cancel, then await the handle) **before** closing the store, so that the final
/// pass can still read and write. Errors are logged once per tenant until that tenant
/// succeeds again; the loop never panics and never stops on an error.
pub fn spawn_checkpointer(
    store: Arc<dyn Store>,
    signer: Arc<NoteSigner>,
    interval: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing: HashMap<TenantName, String> = HashMap::new();
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            pass(store.as_ref(), &signer, &mut failing).await;
        }
        pass(store.as_ref(), &signer, &mut failing).await;
    })
}

/// One round over every tenant.
async fn pass(store: &dyn Store, signer: &NoteSigner, failing: &mut HashMap<TenantName, String>) {
    let tenants = match store.tenants().await {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string();
            let key = TenantName::default_tenant();
            if failing.get(&key) != Some(&msg) {
                tracing::error!(error = %msg, "checkpointer cannot list tenants");
                failing.insert(key, msg);
            }
            return;
        }
    };
    for tenant in tenants {
        match checkpoint_tenant(store, signer, &tenant, crate::now_micros()).await {
            Ok(signed) => {
                if failing.remove(&tenant).is_some() {
                    tracing::info!(tenant = %tenant, "checkpointer recovered");
                }
                if let Some(cp) = signed {
                    tracing::debug!(tenant = %tenant, checkpoint.size = cp.size, "signed a checkpoint");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if failing.get(&tenant) != Some(&msg) {
                    tracing::error!(tenant = %tenant, error = %msg, "cannot sign a checkpoint");
                    failing.insert(tenant, msg);
                }
            }
        }
    }
}
