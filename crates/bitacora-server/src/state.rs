//! [`AppState`]: what every handler shares. Cloning it is cheap (a few `Arc`s).

use std::sync::Arc;

use bitacora_core::IngestPolicy;
use bitacora_store::Store;

use crate::auth::Auth;
use crate::config::Config;

/// Handlers hold the store as a trait object: they never know which store they have.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// Built once from `[ingest.severity]`.
    pub policy: Arc<IngestPolicy>,
    pub auth: Arc<Auth>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let auth = Auth::new(
            store.clone(),
            config.server.trusted_proxies.clone(),
            config.server.auth_failures_per_minute,
        );
        Self {
            policy: Arc::new(config.ingest.policy()),
            config: Arc::new(config),
            auth: Arc::new(auth),
            store,
        }
    }
}
