//! Opening connections and migrating the schema.
//!
//! Migrations are SQL files in `migrations/`, applied in order inside one transaction each;
//! `PRAGMA user_version` records how many have run. A database written by a newer bitacora is
//! refused rather than guessed at.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Synchronous, sql_error};
use bitacora_store::{StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_viewer_tokens.sql"),
    include_str!("../migrations/0003_merkle_tiles.sql"),
    include_str!("../migrations/0004_commit_seals.sql"),
    include_str!("../migrations/0005_event_blocks.sql"),
    include_str!("../migrations/0006_stats_rollups.sql"),
    include_str!("../migrations/0007_lifecycle.sql"),
    include_str!("../migrations/0008_delivery.sql"),
    include_str!("../migrations/0009_cosignatures.sql"),
    include_str!("../migrations/0010_event_facets.sql"),
    include_str!("../migrations/0011_leaf_tiles.sql"),
    include_str!("../migrations/0012_leaf_tiles_file.sql"),
    include_str!("../migrations/0013_fts_deletes.sql"),
    include_str!("../migrations/0014_event_addresses.sql"),
    include_str!("../migrations/0015_stats_hours.sql"),
    include_str!("../migrations/0016_facet_sketches.sql"),
    include_str!("../migrations/0017_actor_covering.sql"),
];
const FTS_SCHEMA: &str = include_str!("../migrations/fts.sql");
const TILES_SCHEMA: &str = include_str!("../migrations/tiles.sql");

/// The page size of the leaf tiles' file (`bitacora-tiles.db`): three 8 KiB tiles fit in one
/// page with their cell headers, so a tile never spills into overflow pages and reading one
/// is one read of one page. (In the main file's 4 KiB pages a tile is a slice of a leaf page
/// plus two overflow pages elsewhere in the file: three dependent reads when cold.)
const TILES_PAGE_SIZE: u32 = 32 * 1024;
/// The size the tiles' WAL is cut back to once checkpointed: migration 12 (or a refill) writes
/// the whole file through it, and SQLite otherwise keeps a WAL file at its largest.
const TILES_WAL_LIMIT: u32 = 16 * 1024 * 1024;

/// Dictionary kinds in the `terms` table.
pub const TERM_ACTION: i64 = 1;
pub const TERM_CATEGORY: i64 = 2;
pub const TERM_TARGET_TYPE: i64 = 3;
pub const TERM_SOURCE: i64 = 4;

/// A reader connection's page cache, in KiB.
pub const READER_CACHE_KIB: i64 = 4 * 1024;

/// Which connection this is: the single writer gets a larger page cache.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Indexer,
    Reader,
}

pub fn open(path: &Path, role: Role, synchronous: Synchronous) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sql_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_error)?;
    // Page caches: the writer's holds the hot index pages of appends; readers and the
    // indexer get less, to keep the server's RSS bounded (BENCHMARKS.md).
    let cache_kib = match role {
        Role::Writer => 16 * 1024,
        Role::Indexer => 8 * 1024,
        Role::Reader => READER_CACHE_KIB,
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {};
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache_kib};
         PRAGMA foreign_keys = OFF;",
        synchronous.pragma()
    ))
    .map_err(sql_error)?;
    // Every connection sees the full-text index as `fts`. The index is derived data, so it
    // never needs more than NORMAL durability.
    let fts_path = path.with_file_name(crate::FTS_FILE);
    conn.execute("ATTACH DATABASE ?1 AS fts", [fts_path.to_string_lossy()])
        .map_err(sql_error)?;
    conn.execute_batch(&format!(
        "PRAGMA fts.journal_mode = WAL;
         PRAGMA fts.synchronous = {};
         PRAGMA fts.cache_size = -{cache_kib};",
        match synchronous {
            Synchronous::Off => Synchronous::Off,
            _ => Synchronous::Normal,
        }
        .pragma()
    ))
    .map_err(sql_error)?;
    // The leaf tiles (tree.rs) live in their own file, with their own page size (set when the
    // file is created; a no-op afterwards). Derived data too: NORMAL durability at most.
    let tiles_path = path.with_file_name(crate::TILES_FILE);
    conn.execute(
        "ATTACH DATABASE ?1 AS tiles",
        [tiles_path.to_string_lossy()],
    )
    .map_err(sql_error)?;
    conn.execute_batch(&format!(
        "PRAGMA tiles.page_size = {TILES_PAGE_SIZE};
         PRAGMA tiles.journal_mode = WAL;
         PRAGMA tiles.synchronous = {};
         PRAGMA tiles.cache_size = -{cache_kib};
         PRAGMA tiles.journal_size_limit = {TILES_WAL_LIMIT};",
        match synchronous {
            Synchronous::Off => Synchronous::Off,
            _ => Synchronous::Normal,
        }
        .pragma()
    ))
    .map_err(sql_error)?;
    if role == Role::Writer {
        // Checkpointing the WAL into the database file should not happen on the one thread
        // every acknowledgement waits for: the indexer thread runs passive checkpoints every
        // 250 ms (`checkpoint_wal`). But only a checkpoint that catches up with the writer
        // lets the WAL restart from its beginning, and a background one never does under
        // sustained load, so the writer keeps SQLite's automatic checkpoint with a higher
        // threshold as the backstop: when it fires, the background has already copied most
        // frames, and the WAL stays bounded (~32 MB).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 8192;")
            .map_err(sql_error)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The schema version whose migration creates the zone map (`0005_event_blocks.sql`).
const EVENT_BLOCKS_VERSION: usize = 5;

/// The schema version whose migration creates the facets (`0010_event_facets.sql`).
const EVENT_FACETS_VERSION: usize = 10;

/// The schema version whose migration creates the leaf tiles (`0011_leaf_tiles.sql`).
const LEAF_TILES_VERSION: usize = 11;

/// The schema version whose migration creates the address postings (`0014_event_addresses.sql`).
const EVENT_ADDRESSES_VERSION: usize = 14;

/// The schema version whose migration adds the facets' sketches (`0016_facet_sketches.sql`).
const FACET_SKETCHES_VERSION: usize = 16;

/// Brings the schema up to date.
pub fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(sql_error)? as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "the database has schema version {version}, newer than this bitacora knows ({}); \
             upgrade bitacora",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(sql_error)?;
        tx.execute_batch(sql).map_err(sql_error)?;
        // 0005 creates the zone map empty; existing events are summarized into it here.
        if i + 1 == EVENT_BLOCKS_VERSION {
            crate::window::backfill(&tx)?;
        }
        if i + 1 == EVENT_FACETS_VERSION {
            crate::facets::backfill(&tx)?;
        }
        if i + 1 == LEAF_TILES_VERSION {
            crate::tree::backfill_leaf_tiles(&tx)?;
        }
        if i + 1 == EVENT_ADDRESSES_VERSION {
            crate::addresses::backfill(&tx)?;
        }
        if i + 1 == FACET_SKETCHES_VERSION {
            crate::facets::backfill_sketches(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql_error)?;
        tx.commit().map_err(sql_error)?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    Ok(())
}

/// Creates the full-text index's tables if they are missing.
pub fn migrate_fts(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(FTS_SCHEMA).map_err(sql_error)
}

/// Creates the leaf tiles' table if it is missing (a new or lost `bitacora-tiles.db`), and
/// brings it level with the events (`tree::repair_leaf_tiles`).
pub fn migrate_tiles(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(TILES_SCHEMA).map_err(sql_error)?;
    crate::tree::repair_leaf_tiles(conn)
}

/// Copies committed WAL frames into the database file without blocking the writer or readers
/// (a PASSIVE checkpoint). Returns the WAL's size in frames and how many were checkpointed.
pub fn checkpoint_wal(conn: &Connection) -> StoreResult<(i64, i64)> {
    // The leaf tiles' WAL too: its only writer is the events' writer, whose automatic
    // checkpoint would let it grow to 8,192 of its 32 KiB pages first.
    conn.query_row("PRAGMA tiles.wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(sql_error)?;
    conn.query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })
    .map_err(sql_error)
}
