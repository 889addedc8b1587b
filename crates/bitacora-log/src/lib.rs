//! bitacora's transparency-log service: everything that turns the Merkle tree a [`Store`]
//! keeps into evidence someone else can check (CONTRACT §4).
//!
//! The math (RFC 6962 trees, C2SP checkpoints, signed notes) lives in
//! `bitacora_core::{merkle, checkpoint}` with no I/O; the stores keep each tenant's tree
//! nodes in their write path. This crate is the layer in between, written against
//! `&dyn Store` only, so it works the same on every store:
//!
//! - [`signing`]: the checkpoint signing key, kept in a file *outside* the store, and the
//!   retired keys that still vouch for old checkpoints (key rotation);
//! - [`checkpointer`]: signs each growing log at least once a second;
//! - [`proofs`]: inclusion and consistency proofs, roots of past sizes, and the per-event
//!   status the viewer shows;
//! - [`verify`]: re-checks a whole stored log (every leaf, every stored node, every
//!   checkpoint) and names the first bad `seq`;
//! - [`bundle`]: the self-verifying NDJSON export and its offline verifier.
//!
//! **API boundary:** no HTTP here. Errors are [`LogError`]; `Invalid` names the request
//! field at fault so the server can answer 4xx with it.
//!
//! # Key rotation
//!
//! A checkpoint is a signed note; a verifier accepts a note as soon as one *known* key's
//! signature verifies and ignores signatures from unknown keys. So rotating the signing key
//! is additive:
//!
//! 1. Keep the old key's verifier key (the line `GET /v1/log/public-key` serves, e.g.
//!    `bitacora+1a2b3c4d+AXu...`), for instance in a file `retired-keys.txt`.
//! 2. Move the old key file away and start the server: it generates a new key file (0600)
//!    and signs new checkpoints with it.
//! 3. List the old verifier key as trusted ([`signing::LogKeys::load`] with
//!    `retired = ["retired-keys.txt"]` or the key string itself). `bitacora verify`, bundles
//!    (which embed every trusted verifier key) and the viewer then accept checkpoints signed
//!    by either key. Auditors add the new verifier key to their trusted list.
//!
//! Old checkpoints are never re-signed: they stay exactly as they were published.
//!
//! [`Store`]: bitacora_store::Store
#![forbid(unsafe_code)]

pub mod bundle;
pub mod checkpointer;
pub mod proofs;
pub mod signing;
pub mod verify;

use bitacora_store::StoreError;

pub use bundle::{
    BundleError, BundleHeader, BundleOptions, BundleReport, KeySource, bundle_stream, verify_bundle,
};
pub use checkpointer::{
    DEFAULT_INTERVAL, DEFAULT_ORIGIN_PREFIX, Naming, Signing, TailStatus, UnexplainedTail,
    checkpoint_tenant, checkpoint_tenant_checked, checkpoint_tenant_named,
    checkpoint_tenant_with_prefix, log_origin, sign_log_checkpoint, signing_origin,
    spawn_checkpointer, spawn_checkpointer_named, spawn_checkpointer_with_prefix,
    spawn_checkpointer_with_status,
};
pub use proofs::{
    ConsistencyProof, InclusionProof, InclusionState, InclusionStatus, consistency_proof,
    event_inclusion_status, inclusion_proof, root_at,
};
pub use signing::{DEFAULT_KEY_NAME, KeyError, LogKeys, SigningKeyFile};
pub use verify::{VerifyOptions, VerifyOutcome, VerifyReport, verify_tenant};

/// What can go wrong in a log operation.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A request value is unacceptable (e.g. a tree size beyond the log); `field` names the
    /// query parameter, so the server answers 400/422 with it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The thing asked for does not exist (an event `seq`, a tenant without a log).
    #[error("{0}")]
    NotFound(String),
    /// The log has no signed checkpoint yet where one is required.
    #[error("the log of tenant `{0}` has no signed checkpoint yet")]
    NoCheckpoint(String),
    /// A checkpoint could not be signed (a bad key name or origin: a configuration error).
    #[error("cannot sign a checkpoint: {0}")]
    Signing(#[from] bitacora_core::checkpoint::NoteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LogError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        LogError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Microseconds since the Unix epoch, as the store keeps times.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
