//! Versioned schema migrations, applied when the store opens.
//!
//! The migrations are the numbered files in `migrations/`, compiled into the binary. Every
//! command that opens the store applies the missing ones, each in its own transaction,
//! recorded in `bitacora_migrations`. A session-level advisory lock serializes this, so
//! several servers starting together against one database migrate it exactly once; the
//! others wait, then find nothing left to do.

use bitacora_store::{StoreError, StoreResult};
use tokio_postgres::Client;

use crate::pg_error;

/// `(version, name, sql)`, in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "viewer_tokens",
        include_str!("../migrations/0002_viewer_tokens.sql"),
    ),
    (
        3,
        "commit_seals",
        include_str!("../migrations/0003_commit_seals.sql"),
    ),
    (4, "windows", include_str!("../migrations/0004_windows.sql")),
    (
        5,
        "lifecycle",
        include_str!("../migrations/0005_lifecycle.sql"),
    ),
    (
        6,
        "delivery",
        include_str!("../migrations/0006_delivery.sql"),
    ),
    (
        7,
        "cosignatures",
        include_str!("../migrations/0007_cosignatures.sql"),
    ),
    (
        8,
        "event_facets",
        include_str!("../migrations/0008_event_facets.sql"),
    ),
    (
        9,
        "event_addresses",
        include_str!("../migrations/0009_event_addresses.sql"),
    ),
    (
        10,
        "fts_document",
        include_str!("../migrations/0010_fts_document.sql"),
    ),
    (
        11,
        "stats_hours",
        include_str!("../migrations/0011_stats_hours.sql"),
    ),
    (
        12,
        "facet_sketches",
        include_str!("../migrations/0012_facet_sketches.sql"),
    ),
    (
        13,
        "actor_facets",
        include_str!("../migrations/0013_actor_facets.sql"),
    ),
];

/// The migration that adds the facets' sketches (`0012_facet_sketches.sql`).
const FACET_SKETCHES_VERSION: i32 = 12;

/// The advisory lock key (any constant unique to bitacora: "bitacora" in ASCII).
const LOCK_KEY: i64 = 0x6269_7461_636f_7261;

/// The newest schema version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Applies every migration the database lacks. Fails when the database was migrated by a
/// newer bitacora, rather than run against a schema it does not know.
pub async fn run(client: &mut Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(pg_error)?;
    let result = apply(client).await;
    // Released explicitly; it would also go with the session.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(pg_error);
    result.and(unlocked.map(|_| ()))
}

async fn apply(client: &mut Client) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bitacora_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(pg_error)?;
    let applied: Vec<i32> = client
        .query(
            "SELECT version FROM bitacora_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(&newest) = applied.last()
        && newest > latest()
    {
        return Err(StoreError::Internal(format!(
            "the database schema is version {newest}, newer than this bitacora knows \
             ({}): upgrade bitacora",
            latest()
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Internal(format!("migration {version} ({name}) failed: {e:?}"))
        })?;
        // What SQL alone cannot do: 12 summarizes existing events by the code's block size.
        if *version == FACET_SKETCHES_VERSION {
            crate::facets::backfill_sketches(&tx).await?;
        }
        tx.execute(
            "INSERT INTO bitacora_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        tracing::info!(version, name, "applied a PostgreSQL migration");
    }
    Ok(())
}
