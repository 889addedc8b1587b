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
//!
//! # Signing only what a writer sealed
//!
//! **Invariant:** when the store has a commit key installed (the server always installs
//! one), the checkpointer signs only what a holder of that key sealed (`bitacora_core::seal`):
//! a size `n` is signed only if the tenant's seal verifies, its `base` is at or below the
//! latest signed size (every event past the signature was written by a key holder), and the
//! root recomputed from the stored nodes at the seal's size is the sealed root. It then
//! signs the seal's size. A tail no seal explains (a row appended to the database by hand, or
//! by a writer without the key) is never signed: it is recorded in [`TailStatus`] (shown by
//! `/readyz` and the viewer), counted in `bitacora_log_unexplained_events{tenant}` and logged
//! once, until an operator vouches for it (`bitacora verify --accept-tail`) or it goes away.
//! A store without a commit key (bare stores in tests and benchmarks) is signed as it is.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitacora_core::TenantName;
use bitacora_core::canonical::Hash;
use bitacora_core::checkpoint::{
    Checkpoint, NoteError, NoteSigner, SignedNote, sign_note, tenant_origin,
};
use bitacora_core::merkle::{self, root_from_nodes};
use bitacora_store::{Store, StoreError, StoreResult, StoredCheckpoint};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the checkpointer looks for grown logs.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The origin prefix of logs created without another one configured (CONTRACT §11): origins
/// are then `bitacora/<tenant>`, as every log had before the prefix was configurable.
pub const DEFAULT_ORIGIN_PREFIX: &str = "bitacora";

/// The origin line of the tenant's log: the one recorded when its first checkpoint was
/// signed, else (a log older than that record, or one not signed yet) `bitacora/<tenant>`.
pub async fn log_origin(store: &dyn Store, tenant: &TenantName) -> StoreResult<String> {
    Ok(match store.log_origin(tenant).await? {
        Some(origin) => origin,
        None => tenant_origin(tenant.as_str()),
    })
}

/// The origin to sign the tenant's checkpoints with, recording it when the log has none
/// recorded: a log that already has checkpoints keeps the origin they carry (logs signed
/// before origins were recorded); a new log gets `<prefix>/<tenant>`. So changing the
/// prefix never changes an existing log's origin.
pub async fn signing_origin(
    store: &dyn Store,
    tenant: &TenantName,
    prefix: &str,
    latest: Option<&StoredCheckpoint>,
) -> StoreResult<String> {
    if let Some(origin) = store.log_origin(tenant).await? {
        return Ok(origin);
    }
    let origin = match latest {
        Some(cp) => SignedNote::parse(cp.note.as_bytes())
            .ok()
            .and_then(|n| Checkpoint::parse_body(&n.text).ok())
            .map(|c| c.origin)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the checkpoint of tenant `{tenant}` at size {} is not a checkpoint note",
                    cp.size
                ))
            })?,
        None => format!("{prefix}/{tenant}"),
    };
    store.fix_log_origin(tenant, &origin).await
}

/// A tail of a tenant's log that no commit seal explains, which the checkpointer refuses to
/// sign.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnexplainedTail {
    pub tenant: String,
    /// The first `seq` no seal vouches for (the latest signed size, or the end of the sealed
    /// part).
    pub first_seq: u64,
    /// The log's size when it was last looked at: events `first_seq..log_size` are unexplained.
    pub log_size: u64,
    /// The latest signed checkpoint's size (0 when none).
    pub signed_size: u64,
    /// Why, in a sentence.
    pub reason: String,
}

/// The tenants whose tails the checkpointer refuses to sign, as it last saw them. Cheap to
/// clone; the server shows it in `/readyz` and the viewer.
#[derive(Debug, Clone, Default)]
pub struct TailStatus {
    inner: Arc<Mutex<BTreeMap<String, UnexplainedTail>>>,
}

impl TailStatus {
    /// Every unexplained tail, by tenant name.
    pub fn snapshot(&self) -> Vec<UnexplainedTail> {
        self.lock().values().cloned().collect()
    }

    /// The tenant's unexplained tail, if any.
    pub fn tenant(&self, tenant: &TenantName) -> Option<UnexplainedTail> {
        self.lock().get(tenant.as_str()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, UnexplainedTail>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what one pass found for `tenant`; returns true when the tail is newly
    /// unexplained (so the caller logs it once).
    fn update(&self, tenant: &TenantName, found: Option<UnexplainedTail>) -> bool {
        let mut map = self.lock();
        let gauge =
            metrics::gauge!("bitacora_log_unexplained_events", "tenant" => tenant.to_string());
        match found {
            Some(tail) => {
                gauge.set(tail.log_size.saturating_sub(tail.first_seq) as f64);
                map.insert(tenant.to_string(), tail).is_none()
            }
            None => {
                if map.remove(tenant.as_str()).is_some() {
                    gauge.set(0.0);
                }
                false
            }
        }
    }
}

/// What one look at a tenant's log did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// A new checkpoint was signed and stored.
    Signed(StoredCheckpoint),
    /// Nothing new to sign.
    UpToDate,
    /// Events no commit seal explains: nothing beyond the explained part was signed.
    Unexplained(UnexplainedTail),
}

/// Signs the tenant's current log size if it is bigger than its latest checkpoint, stores
/// the checkpoint and returns it; `None` when there is nothing new to sign (or nothing a
/// commit seal explains: see the module docs, and [`checkpoint_tenant_checked`] to know).
pub async fn checkpoint_tenant(
    store: &dyn Store,
    signer: &NoteSigner,
    tenant: &TenantName,
    now_micros: i64,
) -> StoreResult<Option<StoredCheckpoint>> {
    Ok(
        match checkpoint_tenant_checked(store, signer, tenant, now_micros).await? {
            Signing::Signed(cp) => Some(cp),
            Signing::Unexplained(_) | Signing::UpToDate => None,
        },
    )
}

/// [`checkpoint_tenant`], saying whether an unexplained tail was refused.
pub async fn checkpoint_tenant_checked(
    store: &dyn Store,
    signer: &NoteSigner,
    tenant: &TenantName,
    now_micros: i64,
) -> StoreResult<Signing> {
    checkpoint_tenant_with_prefix(store, signer, tenant, now_micros, DEFAULT_ORIGIN_PREFIX).await
}

/// [`checkpoint_tenant_checked`] for a server whose new logs get the origin
/// `<origin_prefix>/<tenant>` ([`signing_origin`]).
pub async fn checkpoint_tenant_with_prefix(
    store: &dyn Store,
    signer: &NoteSigner,
    tenant: &TenantName,
    now_micros: i64,
    origin_prefix: &str,
) -> StoreResult<Signing> {
    let naming = Naming {
        origin_prefix: origin_prefix.to_owned(),
        ..Naming::default()
    };
    checkpoint_tenant_named(store, signer, tenant, now_micros, &naming).await
}

/// How logs and their checkpoint keys are named (CONTRACT §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// New logs get the origin `<origin_prefix>/<tenant>` (`integrity.origin_prefix`).
    pub origin_prefix: String,
    /// Whether a log whose latest checkpoint carries a signature under the signing key's own
    /// name (a log signed before key names followed origins) keeps getting that signature
    /// line beside the origin-named one (`integrity.legacy_key_name_signatures`): verifiers
    /// and witnesses configured with the old key then keep working while they move over.
    pub legacy_key_name: bool,
}

impl Default for Naming {
    fn default() -> Self {
        Self {
            origin_prefix: DEFAULT_ORIGIN_PREFIX.to_owned(),
            legacy_key_name: true,
        }
    }
}

/// Signs a checkpoint of the log `checkpoint.origin` with `signer`'s key under the origin as
/// key name (what C2SP witnesses and `tlog-policy` files expect: a log's verifier key is
/// named by its origin); with `legacy`, under the signer's own name too, after it.
pub fn sign_log_checkpoint(
    signer: &NoteSigner,
    checkpoint: &Checkpoint,
    legacy: bool,
) -> Result<String, NoteError> {
    checkpoint.validate()?;
    let named = signer.with_name(checkpoint.origin.as_str())?;
    let body = checkpoint.to_body();
    if legacy && named.name() != signer.name() {
        sign_note(&body, &[&named, signer])
    } else {
        sign_note(&body, &[&named])
    }
}

/// Whether a stored checkpoint note carries a signature under the key name `name`.
fn signed_under(note: &str, name: &str) -> bool {
    SignedNote::parse(note.as_bytes()).is_ok_and(|n| n.signatures.iter().any(|s| s.name == name))
}

/// [`checkpoint_tenant_with_prefix`] with every naming choice ([`Naming`]).
pub async fn checkpoint_tenant_named(
    store: &dyn Store,
    signer: &NoteSigner,
    tenant: &TenantName,
    now_micros: i64,
    naming: &Naming,
) -> StoreResult<Signing> {
    let origin_prefix = naming.origin_prefix.as_str();
    // The size first, then the seal: a seal is written in the same transaction as the rows
    // it covers, so a seal read later covers at least this size unless some rows were never
    // sealed.
    let log_size = store.log_size(tenant).await?;
    let latest = store.latest_checkpoint(tenant).await?;
    let signed = latest.as_ref().map_or(0, |c| c.size);
    if log_size == 0 || latest.as_ref().is_some_and(|c| c.size >= log_size) {
        return Ok(Signing::UpToDate);
    }
    let mut size = log_size;
    let mut unexplained = None;
    if let Some(key) = store.commit_key() {
        let tail = |first_seq: u64, reason: String| UnexplainedTail {
            tenant: tenant.to_string(),
            first_seq,
            log_size,
            signed_size: signed,
            reason,
        };
        let seal = store.commit_seal(tenant).await?;
        let verdict = match seal {
            None => Err(tail(
                signed,
                "no commit seal: the events were not written by a writer holding the key".into(),
            )),
            Some(seal) if !key.verifies(tenant.as_str(), &seal) => Err(tail(
                signed,
                "the commit seal does not verify with this server's key".into(),
            )),
            Some(seal) if seal.base > signed => Err(tail(
                signed,
                format!(
                    "the sealed chain starts at seq {}: events {signed}..{} were not sealed by \
                     a writer holding the key",
                    seal.base, seal.base
                ),
            )),
            Some(seal) if seal.size <= signed => Err(tail(
                signed,
                format!(
                    "the commit seal covers {} events: events {signed}..{log_size} were never sealed",
                    seal.size
                ),
            )),
            Some(seal) => {
                let stored = root_of(store, tenant, seal.size).await?;
                if stored != seal.root {
                    Err(tail(
                        signed,
                        format!(
                            "the stored tree at size {} differs from the sealed one",
                            seal.size
                        ),
                    ))
                } else {
                    if seal.size < log_size {
                        unexplained = Some(tail(
                            seal.size,
                            format!(
                                "events {}..{log_size} were appended after the last seal without it",
                                seal.size
                            ),
                        ));
                    }
                    Ok(seal.size)
                }
            }
        };
        match verdict {
            Ok(sealed) => size = sealed,
            Err(tail) => return Ok(Signing::Unexplained(tail)),
        }
    }
    let root = root_of(store, tenant, size).await?;
    let origin = signing_origin(store, tenant, origin_prefix, latest.as_ref()).await?;
    // A log from before key names followed origins keeps its legacy line while the
    // transition lasts; a new log never gets one.
    let legacy = naming.legacy_key_name
        && latest
            .as_ref()
            .is_some_and(|cp| signed_under(&cp.note, signer.name()));
    let note = sign_log_checkpoint(signer, &Checkpoint::new(origin, size, root), legacy)
        .map_err(|e| StoreError::Internal(format!("cannot sign a checkpoint: {e}")))?;
    let checkpoint = StoredCheckpoint {
        size,
        root,
        note,
        created_at: now_micros,
    };
    store.add_checkpoint(tenant, &checkpoint).await?;
    Ok(match unexplained {
        // The sealed prefix is signed; the rest stays unexplained.
        Some(tail) => Signing::Unexplained(UnexplainedTail {
            signed_size: size,
            ..tail
        }),
        None => Signing::Signed(checkpoint),
    })
}

/// The root of the tenant's tree at `size`, from the stored complete subtrees.
async fn root_of(store: &dyn Store, tenant: &TenantName, size: u64) -> StoreResult<Hash> {
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
    root_from_nodes(size, |_| it.next().ok_or(()))
        .map_err(|()| StoreError::Internal("tree node count changed".into()))
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
    spawn_checkpointer_with_status(store, signer, interval, shutdown, TailStatus::default())
}

/// [`spawn_checkpointer`], recording the tails it refuses to sign in `status`.
pub fn spawn_checkpointer_with_status(
    store: Arc<dyn Store>,
    signer: Arc<NoteSigner>,
    interval: Duration,
    shutdown: CancellationToken,
    status: TailStatus,
) -> JoinHandle<()> {
    spawn_checkpointer_with_prefix(
        store,
        signer,
        interval,
        shutdown,
        status,
        DEFAULT_ORIGIN_PREFIX.to_owned(),
    )
}

/// [`spawn_checkpointer_with_status`], giving new logs the origin `<origin_prefix>/<tenant>`.
pub fn spawn_checkpointer_with_prefix(
    store: Arc<dyn Store>,
    signer: Arc<NoteSigner>,
    interval: Duration,
    shutdown: CancellationToken,
    status: TailStatus,
    origin_prefix: String,
) -> JoinHandle<()> {
    let naming = Naming {
        origin_prefix,
        ..Naming::default()
    };
    spawn_checkpointer_named(store, signer, interval, shutdown, status, naming)
}

/// [`spawn_checkpointer_with_status`] with every naming choice ([`Naming`]).
pub fn spawn_checkpointer_named(
    store: Arc<dyn Store>,
    signer: Arc<NoteSigner>,
    interval: Duration,
    shutdown: CancellationToken,
    status: TailStatus,
    naming: Naming,
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
            pass(store.as_ref(), &signer, &naming, &status, &mut failing).await;
        }
        pass(store.as_ref(), &signer, &naming, &status, &mut failing).await;
    })
}

/// One round over every tenant.
async fn pass(
    store: &dyn Store,
    signer: &NoteSigner,
    naming: &Naming,
    status: &TailStatus,
    failing: &mut HashMap<TenantName, String>,
) {
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
        match checkpoint_tenant_named(store, signer, &tenant, crate::now_micros(), naming).await {
            Ok(signing) => {
                if failing.remove(&tenant).is_some() {
                    tracing::info!(tenant = %tenant, "checkpointer recovered");
                }
                match signing {
                    Signing::Signed(cp) => {
                        tracing::debug!(tenant = %tenant, checkpoint.size = cp.size, "signed a checkpoint");
                        status.update(&tenant, None);
                    }
                    Signing::UpToDate => {
                        status.update(&tenant, None);
                    }
                    Signing::Unexplained(tail) => {
                        let (first, size, reason) =
                            (tail.first_seq, tail.log_size, tail.reason.clone());
                        if status.update(&tenant, Some(tail)) {
                            // Once per tenant until it is resolved, not every second.
                            tracing::error!(
                                tenant = %tenant,
                                first_seq = first,
                                log_size = size,
                                reason = %reason,
                                "INTEGRITY: refusing to sign events {first}..{size} of tenant `{tenant}`: \
                                 no commit seal explains them (written outside bitacora?). Investigate, \
                                 then run `bitacora verify --tenant {tenant} --accept-tail` to vouch for them"
                            );
                        }
                    }
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
