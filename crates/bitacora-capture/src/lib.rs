//! Database change capture (CONTRACT §5): every committed row change in an application's
//! PostgreSQL tables becomes exactly one bitacora event.
//!
//! Two halves, both speaking SQL to the *application's* database (never to bitacora's store):
//!
//! - [`install`], [`status`], [`uninstall`] (`bitacora capture ...`): a schema
//!   `bitacora_capture` with an outbox table and trigger functions, row-level AFTER
//!   INSERT/UPDATE/DELETE triggers and a statement-level TRUNCATE trigger on each named table.
//!   The trigger writes the outbox row in the application's own transaction, so a committed
//!   change always has its record and a rolled-back one never does. Versioned and idempotent:
//!   installing twice changes nothing; installing a newer version upgrades the functions.
//!   The trigger functions run as the installing role (`SECURITY DEFINER`, fixed
//!   `search_path`), which owns the schema; no other role has any privilege in it, so only
//!   the triggers (and that role) write the outbox or use the masking key.
//! - [`drain`] (run by `bitacora serve`): reads the outbox in id order, turns each row into an
//!   event ([`convert`]) whose `id` is derived from the install's identity and the outbox id,
//!   appends the events to the store, and only then deletes the rows. A crash between the two
//!   re-sends events the store already holds, which it acknowledges as duplicates: each outbox
//!   row becomes exactly one event.
//!
//! **Architecture invariant:** events from capture pass the same validation as events sent
//! over HTTP (`SealedEvent::prepare`); [`convert`] only shapes and bounds them. A row it cannot
//! read is quarantined as a `bitacora.capture.rejected` event under the same id, never retried.
//!
//! The full user-facing description is `docs/CAPTURE.md`.

pub mod convert;
pub mod drain;
pub mod install;

pub use drain::{DrainConfig, SourceState, SourceStatus, StatusHandle, spawn_drain};
pub use install::{
    InstallOptions, InstallReport, Status, TableStatus, UninstallReport, install, status, uninstall,
};

/// The PostgreSQL schema everything of capture lives in.
pub const SCHEMA: &str = "bitacora_capture";
/// The NOTIFY channel the triggers signal once per transaction.
pub const CHANNEL: &str = "bitacora_capture";
/// `context.source` of every captured event.
pub const SOURCE: &str = "db_trigger";
/// The category of every captured event.
pub const CATEGORY: &str = "db";

/// What went wrong talking to an application's database.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The request cannot be done as asked (unknown table, a key column excluded, ...).
    #[error("{0}")]
    Invalid(String),
    /// Capture is not installed in this database.
    #[error("bitacora capture is not installed in this database (run `bitacora capture install`)")]
    NotInstalled,
    /// The database answered with an error, or could not be reached.
    #[error("{context}: {message}")]
    Postgres { context: String, message: String },
}

impl CaptureError {
    pub(crate) fn pg(context: impl Into<String>, err: &tokio_postgres::Error) -> Self {
        Self::Postgres {
            context: context.into(),
            message: pg_message(err),
        }
    }
}

/// A PostgreSQL error as a person can act on it: the server's message (and detail) when
/// there is one, else the client's description (connection refused, closed, ...).
pub fn pg_message(err: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    if let Some(db) = err.as_db_error() {
        let mut m = db.message().to_owned();
        if let Some(detail) = db.detail() {
            m.push_str(" (");
            m.push_str(detail);
            m.push(')');
        }
        return m;
    }
    match err.source() {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// Opens one connection, driving it on a task of its own; TLS as the URL's `sslmode` asks
/// (`bitacora_store_postgres::connect`).
pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, CaptureError> {
    let connector = bitacora_store_postgres::connect::parse(url)
        .map_err(|e| CaptureError::Invalid(format!("application database URL: {e}")))?;
    let (client, connection) = connector
        .config
        .connect(connector.tls)
        .await
        .map_err(|e| CaptureError::pg("cannot connect to the application database", &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %pg_message(&e), "capture connection closed");
        }
    });
    Ok(client)
}

/// A database URL without its password, fit for logs, metrics labels and `/readyz`:
/// `dbname@host:port`.
pub fn describe_url(url: &str) -> String {
    match bitacora_store_postgres::connect::parse(url).map(|c| c.config) {
        Ok(config) => {
            let host = config
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".to_owned());
            let port = config.get_ports().first().copied().unwrap_or(5432);
            let db = config
                .get_dbname()
                .or(config.get_user())
                .unwrap_or("postgres");
            format!("{db}@{host}:{port}")
        }
        Err(_) => "invalid-url".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_urls_never_show_the_password() {
        let d = describe_url("postgres://app:hunter2@db.internal:6543/shop");
        assert_eq!(d, "shop@db.internal:6543");
        assert_eq!(
            describe_url("postgres://postgres@127.0.0.1/x"),
            "x@127.0.0.1:5432"
        );
        assert_eq!(describe_url("not a url at all ::"), "invalid-url");
    }
}
