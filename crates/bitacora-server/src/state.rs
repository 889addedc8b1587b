//! [`AppState`]: what every handler shares. Cloning it is cheap (a few `Arc`s).

use std::sync::Arc;

use bitacora_core::IngestPolicy;
use bitacora_core::checkpoint::NoteSigner;
use bitacora_log::LogKeys;
use bitacora_store::Store;

use crate::auth::Auth;
use crate::auth::jwt::JwtVerifier;
use crate::config::Config;

/// Handlers hold the store as a trait object: they never know which store they have.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// Built once from `[ingest.severity]`.
    pub policy: Arc<IngestPolicy>,
    pub auth: Arc<Auth>,
    /// The checkpoint signing key and the retired keys still trusted.
    pub keys: Arc<LogKeys>,
    /// The signing key alone, shared with bundle exports (which sign a first checkpoint
    /// when a log has none yet).
    pub signer: Arc<NoteSigner>,
    /// The capture sources this server drains (`[[capture]]`), for `/readyz`.
    pub capture: Arc<Vec<bitacora_capture::StatusHandle>>,
    /// The log tails the checkpointer refuses to sign (no commit seal explains them), for
    /// `/readyz`, the metrics and the viewer's integrity page.
    pub tails: bitacora_log::TailStatus,
    /// Full tlog-tiles hash tiles already served (`/logs/<tenant>/tile/...`).
    pub tiles: Arc<crate::api::tlog::TileCache>,
    /// Destination workers and alert rules of this process (`bitacora-delivery`).
    pub delivery: bitacora_delivery::StatusHandle,
    /// The retention task's status (`GET /v1/retention`); idle when none runs.
    pub retention: bitacora_lifecycle::StatusHandle,
    /// The witnesses of `integrity.witness_policy_file` as this process last saw them (empty
    /// without a policy).
    pub witnesses: bitacora_witness::StatusHandle,
}

impl AppState {
    /// Builds the state; fails when an `[[auth.jwt]]` entry cannot be loaded (a missing or
    /// malformed key file, a short secret), naming it.
    pub fn try_new(store: Arc<dyn Store>, config: Config, keys: LogKeys) -> anyhow::Result<Self> {
        let verifiers = config
            .auth
            .jwt
            .iter()
            .map(JwtVerifier::load)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let auth = Auth::new(
            store.clone(),
            config.server.trusted_proxies.clone(),
            config.server.auth_failures_per_minute,
        )
        .with_jwt(verifiers);
        Ok(Self::assemble(store, config, keys, auth))
    }

    /// [`AppState::try_new`] for configurations known to be loadable (tests, tools).
    ///
    /// # Panics
    /// When an `[[auth.jwt]]` entry cannot be loaded; `serve` uses `try_new`.
    pub fn new(store: Arc<dyn Store>, config: Config, keys: LogKeys) -> Self {
        Self::try_new(store, config, keys).expect("the [[auth.jwt]] configuration is invalid")
    }

    fn assemble(store: Arc<dyn Store>, config: Config, keys: LogKeys, auth: Auth) -> Self {
        // Every append this process makes from now on is sealed with the signing key's
        // commit key, and the checkpointer signs only what such seals explain.
        store.set_commit_key(Some(keys.commit_key()));
        let tiles = Arc::new(crate::api::tlog::TileCache::new(
            config.integrity.tile_cache_tiles,
        ));
        Self {
            policy: Arc::new(config.ingest.policy()),
            config: Arc::new(config),
            auth: Arc::new(auth),
            signer: Arc::new(keys.signer().clone()),
            keys: Arc::new(keys),
            store,
            capture: Arc::new(Vec::new()),
            tails: bitacora_log::TailStatus::default(),
            tiles,
            delivery: bitacora_delivery::StatusHandle::default(),
            retention: bitacora_lifecycle::StatusHandle::default(),
            witnesses: bitacora_witness::StatusHandle::default(),
        }
    }
}
