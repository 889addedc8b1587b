//! Opening the configured store: the embedded SQLite store in `store.data`, or PostgreSQL at
//! `store.database_url`. The rest of the server only sees `Arc<dyn Store>`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bitacora_store::Store;
use bitacora_store_postgres::{PgOptions, PgStore};
use bitacora_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};

use crate::config::{Config, SyncMode};

/// Opens (creating and migrating if needed) the store the configuration names. Blocking:
/// call it from a blocking context (e.g. `spawn_blocking`). The PostgreSQL store also needs
/// to be inside a tokio runtime: its connections and writer run as tasks on it.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &config.store.database_url {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if scheme == "postgres" || scheme == "postgresql" {
            let runtime = tokio::runtime::Handle::try_current()
                .context("the PostgreSQL store must be opened inside a tokio runtime")?;
            let mut options = PgOptions {
                total_budget: Duration::from_millis(config.store.total_budget_ms),
                ..PgOptions::default()
            };
            if let Some(n) = config.store.max_batch_events {
                options.max_batch_events = n.max(1);
            }
            // The URL is never echoed: it may hold a password.
            let store = runtime
                .block_on(PgStore::open(url, options))
                .context("cannot open the PostgreSQL store (set with --database-url or BITACORA_DATABASE_URL)")?;
            return Ok(Arc::new(store));
        }
        bail!(
            "unsupported database URL scheme `{scheme}` (set with --database-url or \
             BITACORA_DATABASE_URL): expected postgres://..."
        );
    }
    let mut options = SqliteOptions {
        synchronous: match config.store.synchronous {
            SyncMode::Off => Synchronous::Off,
            SyncMode::Normal => Synchronous::Normal,
            SyncMode::Full => Synchronous::Full,
        },
        total_budget: Duration::from_millis(config.store.total_budget_ms),
        ..SqliteOptions::default()
    };
    if let Some(n) = config.store.max_batch_events {
        options.max_batch_events = n.max(1);
    }
    let data = &config.store.data;
    let store = SqliteStore::open(data, options).with_context(|| {
        format!(
            "cannot open the store in `{}` (set the folder with --data or BITACORA_DATA)",
            data.display()
        )
    })?;
    Ok(Arc::new(store))
}

/// Whether the configured store keeps its files in `store.data` (where the initial admin key
/// file goes).
pub fn is_embedded(config: &Config) -> bool {
    config.store.database_url.is_none()
}

/// Where retention archives purged events: `retention.archive_url`, else, for the embedded
/// store, a folder beside the data folder (`<data>.archive`, like the signing key beside it:
/// not inside the store, so a copy of the store is not a copy of its archive). `None` for
/// PostgreSQL without one.
pub fn archive_url(config: &Config) -> Option<String> {
    if let Some(url) = &config.retention.archive_url {
        return Some(url.clone());
    }
    if !is_embedded(config) {
        return None;
    }
    let data = std::path::absolute(&config.store.data).ok()?;
    let mut name = data.file_name()?.to_os_string();
    name.push(".archive");
    Some(format!("file://{}", data.with_file_name(name).display()))
}
