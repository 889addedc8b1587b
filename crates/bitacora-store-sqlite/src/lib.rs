//! The embedded store: one SQLite database (`bitacora.db`, WAL mode) in the data folder.
//!
//! Writes go to a single writer thread that commits every waiting request in one
//! transaction ([`writer`]); reads run on a small pool of connections on tokio's blocking
//! threads ([`read`]). See ARCHITECTURE.md for the schema's design.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bitacora_core::TenantName;
use bitacora_core::api::{ActionSummary, ActorSummary, Stats};
use bitacora_core::canonical::{Hash, SealedEvent};
use bitacora_core::merkle::NodeId;
use bitacora_core::query::EventQuery;
use bitacora_core::seal::{CommitKey, CommitSeal};
use bitacora_store::{
    AlertRuleRecord, ApiKeyRecord, AppendOutcome, DeliveryPosition, DestinationRecord, LeafCheck,
    LegalHoldRecord, PurgeRecord, Scope, SearchResult, Store, StoreError, StoreResult,
    StoredCheckpoint, StoredCosignature, StoredEvent, ViewerTokenRecord,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Semaphore, oneshot};

mod addresses;
mod check;
mod delivery;
mod derive;
mod facets;
mod indexer;
mod purge;
mod read;
mod rollup;
mod schema;
mod tree;
mod window;
mod writer;

use indexer::Indexer;
use writer::{Job, Prepared, Writer, WriterConfig};

/// The database file inside the data folder.
pub const DB_FILE: &str = "bitacora.db";
/// The full-text index's database file (derived data; rebuilt when missing).
pub const FTS_FILE: &str = "bitacora-fts.db";
/// The leaf tiles' database file (derived data; refilled from the events when missing), with
/// pages large enough that each tile is one contiguous read (see tree.rs).
pub const TILES_FILE: &str = "bitacora-tiles.db";

/// Most events waiting for the writer; appends beyond it wait (backpressure). An event in
/// the queue holds its parsed form, its body and its text (~2 KB), so this bounds the queue's
/// memory to about 100 MB while still letting five maximal batches wait.
pub(crate) const MAX_QUEUED_EVENTS: usize = 50_000;

/// Most read connections open at once.
const READERS: usize = 4;

/// SQLite's `synchronous` setting: what a commit waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// No fsync: fast, and a power loss may lose acknowledged events. For tests and demos.
    Off,
    /// fsync at checkpoints only: a power loss may lose the last commits (a process crash
    /// loses nothing).
    Normal,
    /// fsync on every commit: acknowledged events survive power loss. The default.
    #[default]
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Most events in one group commit.
    pub max_batch_events: usize,
    /// How long full-text indexing may trail a commit.
    pub fts_interval: Duration,
    /// How long a numbered page may spend counting its total before the rest of it is
    /// estimated ([`bitacora_store::total`]).
    pub total_budget: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_batch_events: 20_000,
            fts_interval: Duration::from_millis(250),
            total_budget: bitacora_store::total::DEFAULT_BUDGET,
        }
    }
}

/// The embedded store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    synchronous: Synchronous,
    total_budget: Duration,
    sender: Mutex<Option<Sender<Job>>>,
    /// The writer and the full-text indexer threads.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// One permit per event that may wait for the writer.
    permits: Arc<Semaphore>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    /// The commit key, shared with the writer thread, which reads it at every commit.
    commit_key: Arc<RwLock<Option<CommitKey>>>,
    /// Taken by the writer around each group commit and by a retention purge around its
    /// transaction: the two take turns in this process without SQLite's busy handler, which
    /// sleeps in steps of up to 100 ms and so left the writer idle well after a purge ended.
    write_gate: Arc<Mutex<()>>,
    /// Set by the writer when a commit waited for `write_gate`: a purge whose transaction
    /// made appends wait yields to them afterwards (`purge::YIELD_FACTOR`).
    writer_waited: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

pub(crate) fn sql_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            // Marked, so that a caller may tell a refused lock (which it can retry) from the
            // store being unusable (`purge::is_busy`).
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable(format!("{}{e}", purge::BUSY))
            }
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::OutOfMemory => StoreError::Unavailable(e.to_string()),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        },
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Makes the data folder readable by its owner alone: the folder `0700`, the database files
/// `0600`, whatever the umask (under the usual 022 they would be world-readable, and every
/// local user could read every event).
///
/// The database files are created here, empty, before SQLite opens them: SQLite gives a
/// database's `-wal` and `-shm` files the mode of the database file, so they follow. An
/// existing store made by an older version is tightened the same way.
fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tighten = |path: &Path, mode: u32| -> std::io::Result<()> {
        let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if current & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    };
    tighten(dir, 0o700)?;
    for file in [DB_FILE, FTS_FILE, TILES_FILE] {
        let path = dir.join(file);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = dir.join(format!("{file}{suffix}"));
            if path.exists() {
                tighten(&path, 0o600)?;
            }
        }
    }
    Ok(())
}

/// Writes a consistent copy of the embedded store in `data_dir` to the folder `to` (created
/// `0700`; it must not hold a store already), usable as `--data` as is. Safe while a server
/// writes to the store: each file is one `VACUUM INTO` snapshot (a read transaction, which
/// never blocks the writer). The full-text file is copied first, so the copy's index never
/// goes further than its events; the indexer catches up on the rest at the copy's first start.
///
/// The signing key is not part of the store and is not copied: see docs/LIFECYCLE.md.
pub fn backup(data_dir: &Path, to: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};

    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(StoreError::Unavailable(format!(
            "there is no store in {}",
            data_dir.display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", to.display())))?;
    for file in [DB_FILE, FTS_FILE, TILES_FILE] {
        if to.join(file).exists() {
            return Err(StoreError::Unavailable(format!(
                "{} already holds a store: back up into an empty folder",
                to.display()
            )));
        }
    }
    let conn = schema::open(&db, schema::Role::Reader, Synchronous::Full)?;
    // The leaf tiles are derived from the events: copied before them, a copy never holds a
    // tile its events lack (the next start fills in the ones it misses).
    for (schema_name, file) in [("fts", FTS_FILE), ("tiles", TILES_FILE), ("main", DB_FILE)] {
        let target = to.join(file);
        conn.execute(
            &format!("VACUUM {schema_name} INTO ?1"),
            [target.to_string_lossy()],
        )
        .map_err(sql_error)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Internal(format!("{}: {e}", target.display())))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrates it, and starts the writer.
    pub fn open(data_dir: &Path, options: SqliteOptions) -> StoreResult<Self> {
        private_data_dir(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot prepare {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = schema::open(&path, schema::Role::Writer, options.synchronous)?;
        schema::migrate(&mut conn)?;
        {
            // Write lock first (waiting like any writer): a server may be writing beside
            // this process (`bitacora keys create`), and a deferred transaction that read a
            // snapshot cannot then write without failing at once.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            schema::migrate_tiles(&tx)?;
            tx.commit().map_err(sql_error)?;
        }
        let index_conn = schema::open(&path, schema::Role::Indexer, options.synchronous)?;
        schema::migrate_fts(&index_conn)?;

        let write_gate = Arc::new(Mutex::new(()));
        let (docs_tx, docs_rx) = mpsc::channel();
        let indexer = Indexer::new(
            index_conn,
            docs_rx,
            options.fts_interval,
            write_gate.clone(),
        );
        let (tx, rx) = mpsc::channel();
        let permits = Arc::new(Semaphore::new(MAX_QUEUED_EVENTS));
        let commit_key = Arc::new(RwLock::new(None));
        let writer_waited = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer::new(
            conn,
            rx,
            permits.clone(),
            WriterConfig {
                max_batch_events: options.max_batch_events.max(1),
            },
            docs_tx,
            commit_key.clone(),
            (write_gate.clone(), writer_waited.clone()),
        );
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::Internal(format!("cannot start {name}: {e}")))
        };
        let threads = vec![
            spawn("bitacora-indexer", Box::new(move || indexer.run()))?,
            spawn("bitacora-writer", Box::new(move || writer.run()))?,
        ];

        Ok(Self {
            path,
            synchronous: options.synchronous,
            total_budget: options.total_budget,
            sender: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            permits,
            readers: Mutex::new(Vec::new()),
            reader_slots: Semaphore::new(READERS),
            commit_key,
            write_gate,
            writer_waited,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled connection on a blocking thread.
    async fn with_conn<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let _slot = self
            .reader_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        let pooled = self.readers.lock().expect("reader pool lock").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => schema::open(&self.path, schema::Role::Reader, self.synchronous)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&mut conn);
            (conn, r)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("query task failed: {e}")))?;
        self.readers.lock().expect("reader pool lock").push(conn);
        result
    }

    /// Like [`Self::with_conn`], for a read of a few pages (a tile): run on the calling
    /// thread, inside `block_in_place` (which hands this worker's other tasks to another
    /// thread), instead of on a blocking thread. The hand-over to a blocking thread and back
    /// is two thread wake-ups, and on a busy machine each can cost more than such a read
    /// (BENCHMARKS.md, issue 18). Outside a multi-threaded runtime (tests), `with_conn`.
    async fn with_conn_inline<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let multi_thread =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if !multi_thread {
            return self.with_conn(f).await;
        }
        let _slot = self
            .reader_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        let pooled = self.readers.lock().expect("reader pool lock").pop();
        let (conn, result) = tokio::task::block_in_place(move || {
            let mut conn = match pooled {
                Some(c) => c,
                None => schema::open(&self.path, schema::Role::Reader, self.synchronous)?,
            };
            // As a panic on a blocking thread would be: an error for this request only.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn)));
            StoreResult::Ok((conn, r))
        })?;
        match result {
            Ok(r) => {
                self.readers.lock().expect("reader pool lock").push(conn);
                r
            }
            Err(_) => Err(StoreError::Internal("query task panicked".into())),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, events: Vec<SealedEvent>) -> StoreResult<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len().min(MAX_QUEUED_EVENTS) as u32;
        let permit = self
            .permits
            .acquire_many(n)
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        // The writer returns the permits after the commit.
        permit.forget();
        let events: Vec<Prepared> = events.into_iter().map(Prepared::new).collect();
        let (reply, rx) = oneshot::channel();
        let sent = {
            let sender = self.sender.lock().expect("sender lock");
            match sender.as_ref() {
                Some(s) => s.send(Job { events, reply }).is_ok(),
                None => false,
            }
        };
        if !sent {
            self.permits.add_permits(n as usize);
            return Err(StoreError::Unavailable("the store is shutting down".into()));
        }
        metrics::gauge!("bitacora_writer_queue_depth")
            .set((MAX_QUEUED_EVENTS - self.permits.available_permits()) as f64);
        rx.await
            .map_err(|_| StoreError::Internal("the writer stopped before replying".into()))?
    }

    async fn event_by_id(&self, tenant: &TenantName, id: &str) -> StoreResult<Option<StoredEvent>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.with_conn(move |c| read::event_by_id(c, &tenant, &id))
            .await
    }

    async fn event_by_seq(
        &self,
        tenant: &TenantName,
        seq: u64,
    ) -> StoreResult<Option<StoredEvent>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| read::event_by_seq(c, &tenant, seq))
            .await
    }

    async fn check_leaves(
        &self,
        tenant: &TenantName,
        from: u64,
        limit: u32,
    ) -> StoreResult<Vec<LeafCheck>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| check::check_leaves(c, &tenant, from, limit))
            .await
    }

    async fn check_summaries(
        &self,
        tenant: &TenantName,
    ) -> StoreResult<Option<bitacora_store::check::SummaryMismatch>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| check::check_summaries(c, &tenant))
            .await
    }

    async fn search(&self, query: &EventQuery) -> StoreResult<SearchResult> {
        let query = query.clone();
        let budget = self.total_budget;
        self.with_conn(move |c| read::search(c, &query, budget))
            .await
    }

    async fn actions(&self, tenant: &TenantName) -> StoreResult<Vec<ActionSummary>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| read::actions(c, &tenant)).await
    }

    async fn actors(&self, tenant: &TenantName, limit: u32) -> StoreResult<Vec<ActorSummary>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| read::actors(c, &tenant, limit))
            .await
    }

    async fn stats(
        &self,
        tenant: &TenantName,
        since: i64,
        until: i64,
        top: u32,
    ) -> StoreResult<Stats> {
        let tenant = tenant.clone();
        self.with_conn(move |c| read::stats(c, &tenant, since, until, top))
            .await
    }

    async fn log_size(&self, tenant: &TenantName) -> StoreResult<u64> {
        let tenant = tenant.clone();
        self.with_conn(move |c| Ok(read::tenant(c, &tenant)?.map_or(0, |(_, size)| size)))
            .await
    }

    async fn tree_nodes(&self, tenant: &TenantName, nodes: &[NodeId]) -> StoreResult<Vec<Hash>> {
        let (tenant, nodes) = (tenant.clone(), nodes.to_vec());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(sql_error)?;
            let Some((tid, size)) = read::tenant(&tx, &tenant)? else {
                return Err(StoreError::Corrupt(format!("tenant `{tenant}` has no log")));
            };
            tree::nodes(&tx, tid, size, &nodes)
        })
        .await
    }

    async fn level_nodes(
        &self,
        tenant: &TenantName,
        level: u8,
        first: u64,
        count: u64,
    ) -> StoreResult<Vec<Hash>> {
        let tenant = tenant.clone();
        // A tile: one row, or one range of at most 256 (BENCHMARKS.md, issue 18).
        self.with_conn_inline(move |c| {
            let tx = c.transaction().map_err(sql_error)?;
            let Some((tid, size)) = read::tenant(&tx, &tenant)? else {
                return Err(StoreError::Corrupt(format!("tenant `{tenant}` has no log")));
            };
            tree::level_nodes(&tx, tid, size, level, first, count)
        })
        .await
    }

    async fn add_checkpoint(
        &self,
        tenant: &TenantName,
        checkpoint: &StoredCheckpoint,
    ) -> StoreResult<()> {
        let (tenant, cp) = (tenant.clone(), checkpoint.clone());
        self.with_conn(move |c| {
            let Some((tid, _)) = read::tenant(c, &tenant)? else {
                return Err(StoreError::Internal(format!(
                    "tenant `{tenant}` has no log"
                )));
            };
            c.execute(
                "INSERT INTO checkpoints (tenant_id, size, root, note, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![tid, cp.size as i64, &cp.root[..], cp.note, cp.created_at],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn latest_checkpoint(
        &self,
        tenant: &TenantName,
    ) -> StoreResult<Option<StoredCheckpoint>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| {
            let Some((tid, _)) = read::tenant(c, &tenant)? else {
                return Ok(None);
            };
            c.prepare_cached(
                "SELECT size, root, note, created_at FROM checkpoints
                 WHERE tenant_id = ?1 ORDER BY size DESC LIMIT 1",
            )
            .map_err(sql_error)?
            .query_row([tid], checkpoint_row)
            .optional()
            .map_err(sql_error)
        })
        .await
    }

    async fn checkpoints(
        &self,
        tenant: &TenantName,
        after_size: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| {
            let Some((tid, _)) = read::tenant(c, &tenant)? else {
                return Ok(Vec::new());
            };
            let mut stmt = c
                .prepare_cached(
                    "SELECT size, root, note, created_at FROM checkpoints
                     WHERE tenant_id = ?1 AND size > ?2 ORDER BY size LIMIT ?3",
                )
                .map_err(sql_error)?;
            stmt.query_map(params![tid, after_size as i64, limit], checkpoint_row)
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)
        })
        .await
    }

    async fn add_cosignature(
        &self,
        tenant: &TenantName,
        cosignature: &StoredCosignature,
    ) -> StoreResult<()> {
        let (tenant, co) = (tenant.clone(), cosignature.clone());
        self.with_conn(move |c| {
            let Some((tid, _)) = read::tenant(c, &tenant)? else {
                return Err(StoreError::Internal(format!(
                    "tenant `{tenant}` has no log"
                )));
            };
            c.prepare_cached(
                "INSERT INTO cosignatures (tenant_id, size, witness, key_id, time, line, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )
            .map_err(sql_error)?
            .execute(params![
                tid,
                co.size as i64,
                co.witness,
                i64::from(co.key_id),
                co.time as i64,
                co.line,
                co.received_at
            ])
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn cosignatures(
        &self,
        tenant: &TenantName,
        size: u64,
    ) -> StoreResult<Vec<StoredCosignature>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| {
            let Some((tid, _)) = read::tenant(c, &tenant)? else {
                return Ok(Vec::new());
            };
            let mut stmt = c
                .prepare_cached(
                    "SELECT size, witness, key_id, time, line, received_at FROM cosignatures
                     WHERE tenant_id = ?1 AND size = ?2 ORDER BY witness, key_id",
                )
                .map_err(sql_error)?;
            stmt.query_map(params![tid, size as i64], cosignature_row)
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)
        })
        .await
    }

    async fn log_origin(&self, tenant: &TenantName) -> StoreResult<Option<String>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| {
            c.prepare_cached("SELECT origin FROM log_origins WHERE tenant = ?1")
                .map_err(sql_error)?
                .query_row([tenant.as_str()], |r| r.get(0))
                .optional()
                .map_err(sql_error)
        })
        .await
    }

    async fn fix_log_origin(&self, tenant: &TenantName, origin: &str) -> StoreResult<String> {
        let (tenant, origin) = (tenant.clone(), origin.to_owned());
        self.with_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO log_origins (tenant, origin) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )
            .map_err(sql_error)?
            .execute(params![tenant.as_str(), origin])
            .map_err(sql_error)?;
            c.prepare_cached("SELECT origin FROM log_origins WHERE tenant = ?1")
                .map_err(sql_error)?
                .query_row([tenant.as_str()], |r| r.get(0))
                .map_err(sql_error)
        })
        .await
    }

    async fn latest_cosignatures(
        &self,
        tenant: &TenantName,
    ) -> StoreResult<Vec<StoredCosignature>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| {
            let Some((tid, _)) = read::tenant(c, &tenant)? else {
                return Ok(Vec::new());
            };
            // SQLite's bare-column rule: with max(), the other columns come from the max row.
            let mut stmt = c
                .prepare_cached(
                    "SELECT max(size), witness, key_id, time, line, received_at FROM cosignatures
                     WHERE tenant_id = ?1 GROUP BY witness, key_id ORDER BY witness, key_id",
                )
                .map_err(sql_error)?;
            stmt.query_map(params![tid], cosignature_row)
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)
        })
        .await
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantName>> {
        self.with_conn(|c| read::tenants(c)).await
    }

    async fn purge(&self, tenant: &TenantName, record: &PurgeRecord) -> StoreResult<()> {
        self.purge_many(tenant, std::slice::from_ref(record)).await
    }

    async fn purge_many(&self, tenant: &TenantName, records: &[PurgeRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        // The purge's transaction waits for the write lock (the busy timeout); past it, the
        // writer is busy for longer than that (a long batch on a loaded machine): the whole
        // transaction rolled back, so it is tried again, after a pause, rather than failing the
        // retention pass (which would only retry at the next `check_interval`).
        let mut pause = purge::BUSY_FIRST_PAUSE;
        for attempt in 1.. {
            let (t, records) = (tenant.clone(), records.to_vec());
            let (gate, waited) = (self.write_gate.clone(), self.writer_waited.clone());
            let purged = self.with_conn(move |c| {
                // The rows and their full-text entries are read and derived first, so the
                // write lock is held only for the deletes and the summaries.
                let started = std::time::Instant::now();
                let prepared = records
                    .into_iter()
                    .map(|r| {
                        let p = purge::prepare(c, &t, &r)?;
                        Ok((r, p))
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                let prepare_ms = started.elapsed().as_secs_f64() * 1e3;
                let turn = gate.lock().unwrap_or_else(|e| e.into_inner());
                waited.store(false, std::sync::atomic::Ordering::Relaxed);
                let locked = std::time::Instant::now();
                let wait_ms = started.elapsed().as_secs_f64() * 1e3 - prepare_ms;
                // No automatic WAL checkpoint at this commit: it would copy the WAL into the
                // database file while the writer waits for its turn (the indexer's passive
                // checkpoints and the writer's backstop keep the WAL bounded).
                // A page cache that holds every page the transaction dirties (a reader's
                // 4 MiB would spill them to the WAL before the commit and read them back),
                // given back afterwards.
                c.execute_batch(&format!(
                    "PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -{};",
                    purge::CACHE_KIB
                ))
                .map_err(sql_error)?;
                let done = purge::purge(c, &t, &prepared);
                c.execute_batch(&format!(
                    "PRAGMA wal_autocheckpoint = 1000; PRAGMA cache_size = -{};",
                    schema::READER_CACHE_KIB
                ))
                .map_err(sql_error)?;
                let held = locked.elapsed();
                drop(turn);
                let contended = waited.swap(false, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(
                    purges = prepared.len(),
                    events = prepared.iter().map(|(r, _)| r.count).sum::<u64>(),
                    prepare_ms,
                    wait_ms,
                    transaction_ms = held.as_secs_f64() * 1e3,
                    contended,
                    "sqlite purge"
                );
                done.map(|()| contended.then_some(held))
            });
            let purged = match purged.await {
                Ok(Some(held)) => {
                    // Appends waited for this transaction: they get the store for a while
                    // before the caller's next purge can take it.
                    tokio::time::sleep(held * purge::YIELD_FACTOR).await;
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            match purged {
                Err(e) if purge::is_busy(&e) && attempt < purge::BUSY_ATTEMPTS => {
                    tracing::warn!(
                        tenant = %tenant,
                        attempt,
                        error = %e,
                        "retention purge: the database is locked; trying again"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(purge::BUSY_MAX_PAUSE);
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    async fn purges(&self, tenant: &TenantName) -> StoreResult<Vec<PurgeRecord>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| purge::purges(c, &tenant)).await
    }

    async fn purged_leaves(
        &self,
        tenant: &TenantName,
        event_seq: u64,
    ) -> StoreResult<Vec<(u64, Hash)>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| purge::purged_leaves(c, &tenant, event_seq))
            .await
    }

    async fn purged_event(
        &self,
        tenant: &TenantName,
        id: &str,
    ) -> StoreResult<Option<(u64, Hash)>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.with_conn(move |c| purge::purged_event(c, &tenant, &id))
            .await
    }

    async fn insert_legal_hold(&self, hold: &LegalHoldRecord) -> StoreResult<()> {
        let hold = hold.clone();
        self.with_conn(move |c| purge::insert_hold(c, &hold)).await
    }

    async fn legal_holds(
        &self,
        tenant: Option<&TenantName>,
        include_released: bool,
    ) -> StoreResult<Vec<LegalHoldRecord>> {
        let tenant = tenant.cloned();
        self.with_conn(move |c| purge::holds(c, tenant.as_ref(), include_released))
            .await
    }

    async fn release_legal_hold(
        &self,
        id: &str,
        tenant: Option<&TenantName>,
        at: i64,
        by: &str,
    ) -> StoreResult<Option<LegalHoldRecord>> {
        let (id, tenant, by) = (id.to_owned(), tenant.cloned(), by.to_owned());
        self.with_conn(move |c| purge::release_hold(c, &id, tenant.as_ref(), at, &by))
            .await
    }

    async fn rules_first_seen(&self, fingerprint: &str, now: i64) -> StoreResult<i64> {
        let fingerprint = fingerprint.to_owned();
        self.with_conn(move |c| purge::rules_first_seen(c, &fingerprint, now))
            .await
    }

    fn set_commit_key(&self, key: Option<CommitKey>) {
        *self.commit_key.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    fn commit_key(&self) -> Option<CommitKey> {
        self.commit_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn commit_seal(&self, tenant: &TenantName) -> StoreResult<Option<CommitSeal>> {
        let tenant = tenant.clone();
        self.with_conn(move |c| match read::tenant(c, &tenant)? {
            Some((tid, _)) => writer::read_seal(c, tid),
            None => Ok(None),
        })
        .await
    }

    async fn replace_commit_seal(
        &self,
        tenant: &TenantName,
        seal: &CommitSeal,
    ) -> StoreResult<bool> {
        let (tenant, seal) = (tenant.clone(), *seal);
        self.with_conn(move |c| {
            // IMMEDIATE: the size checked is the size the seal lands on, whatever the
            // writer (of this process or another) commits meanwhile.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let Some((tid, size)) = read::tenant(&tx, &tenant)? else {
                return Ok(false);
            };
            if size != seal.size {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO commit_seals (tenant_id, size, root, base, mac)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id) DO UPDATE SET size = excluded.size,
                    root = excluded.root, base = excluded.base, mac = excluded.mac",
                params![
                    tid,
                    seal.size as i64,
                    &seal.root[..],
                    seal.base as i64,
                    &seal.mac[..]
                ],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(true)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        if self.sender.lock().expect("sender lock").is_none() {
            return Err(StoreError::Unavailable("the store is shutting down".into()));
        }
        self.with_conn(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_error))
            .await
    }

    async fn close(&self) -> StoreResult<()> {
        // Dropping the sender lets the writer finish the queue and exit, which in turn lets
        // the indexer finish its last batch.
        drop(self.sender.lock().expect("sender lock").take());
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        for handle in threads {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| StoreError::Internal(format!("joining a store thread: {e}")))?
                .map_err(|_| StoreError::Internal("a store thread panicked".into()))?;
        }
        Ok(())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO api_keys (id, name, scope, tenant, secret_hash, created_at, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    key.id,
                    key.name,
                    key.scope.as_str(),
                    key.tenant.as_ref().map(TenantName::as_str),
                    &key.secret_hash[..],
                    key.created_at,
                    key.revoked,
                ],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn api_key_by_hash(&self, secret_hash: &Hash) -> StoreResult<Option<ApiKeyRecord>> {
        let hash = *secret_hash;
        self.with_conn(move |c| {
            c.prepare_cached(&format!("{KEY_COLUMNS} WHERE secret_hash = ?1"))
                .map_err(sql_error)?
                .query_row([&hash[..]], key_row)
                .optional()
                .map_err(sql_error)?
                .transpose()
        })
        .await
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare_cached(&format!("{KEY_COLUMNS} ORDER BY created_at, id"))
                .map_err(sql_error)?;
            let rows: Vec<StoreResult<ApiKeyRecord>> = stmt
                .query_map([], key_row)
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)?;
            rows.into_iter().collect()
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.with_conn(move |c| {
            let n = c
                .execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", [id])
                .map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_api_keys(&self, used: &[(String, i64)]) -> StoreResult<()> {
        let used = used.to_vec();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(sql_error)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?2)
                         WHERE id = ?1",
                    )
                    .map_err(sql_error)?;
                for (id, at) in &used {
                    stmt.execute(params![id, at]).map_err(sql_error)?;
                }
            }
            tx.commit().map_err(sql_error)
        })
        .await
    }

    async fn insert_viewer_token(&self, token: &ViewerTokenRecord) -> StoreResult<()> {
        let t = token.clone();
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO viewer_tokens
                     (id, tenant, secret_hash, created_at, expires_at, created_by, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.id,
                    t.tenant.as_str(),
                    &t.secret_hash[..],
                    t.created_at,
                    t.expires_at,
                    t.created_by,
                    t.revoked,
                ],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn viewer_token_by_hash(
        &self,
        secret_hash: &Hash,
    ) -> StoreResult<Option<ViewerTokenRecord>> {
        let hash = *secret_hash;
        self.with_conn(move |c| {
            c.prepare_cached(&format!("{TOKEN_COLUMNS} WHERE secret_hash = ?1"))
                .map_err(sql_error)?
                .query_row([&hash[..]], token_row)
                .optional()
                .map_err(sql_error)?
                .transpose()
        })
        .await
    }

    async fn viewer_tokens(
        &self,
        tenant: Option<&TenantName>,
        expiring_after: i64,
    ) -> StoreResult<Vec<ViewerTokenRecord>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "{TOKEN_COLUMNS} WHERE expires_at > ?1 AND (?2 IS NULL OR tenant = ?2)
                     ORDER BY created_at DESC, id"
                ))
                .map_err(sql_error)?;
            let rows: Vec<StoreResult<ViewerTokenRecord>> = stmt
                .query_map(params![expiring_after, tenant], token_row)
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)?;
            rows.into_iter().collect()
        })
        .await
    }

    async fn revoke_viewer_token(
        &self,
        id: &str,
        tenant: Option<&TenantName>,
    ) -> StoreResult<Option<ViewerTokenRecord>> {
        let id = id.to_owned();
        let tenant = tenant.cloned();
        self.with_conn(move |c| {
            // Immediate: this reads, then writes. A deferred transaction's read pins a
            // snapshot; a write committed by another connection before ours then makes the
            // UPDATE fail at once with SQLITE_BUSY_SNAPSHOT (the busy timeout cannot help a
            // stale snapshot). Taking the write lock first waits like any other writer.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let found = tx
                .prepare_cached(&format!("{TOKEN_COLUMNS} WHERE id = ?1"))
                .map_err(sql_error)?
                .query_row([&id], token_row)
                .optional()
                .map_err(sql_error)?
                .transpose()?
                .filter(|t| tenant.as_ref().is_none_or(|want| *want == t.tenant));
            if found.is_some() {
                tx.execute("UPDATE viewer_tokens SET revoked = 1 WHERE id = ?1", [&id])
                    .map_err(sql_error)?;
            }
            tx.commit().map_err(sql_error)?;
            Ok(found)
        })
        .await
    }

    async fn insert_destination(&self, d: &DestinationRecord) -> StoreResult<()> {
        let d = d.clone();
        self.with_conn(move |c| delivery::insert_destination(c, &d))
            .await
    }

    async fn destinations(&self) -> StoreResult<Vec<DestinationRecord>> {
        self.with_conn(delivery::destinations).await
    }

    async fn delete_destination(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.with_conn(move |c| delivery::delete_destination(c, &id))
            .await
    }

    async fn disable_destination(&self, id: &str, reason: &str) -> StoreResult<bool> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.with_conn(move |c| delivery::disable_destination(c, &id, &reason))
            .await
    }

    async fn update_destination_spec(&self, id: &str, spec: &str) -> StoreResult<bool> {
        let (id, spec) = (id.to_owned(), spec.to_owned());
        self.with_conn(move |c| delivery::update_spec(c, "delivery_destinations", &id, &spec))
            .await
    }

    async fn delivery_positions(&self, destination_id: &str) -> StoreResult<Vec<DeliveryPosition>> {
        let id = destination_id.to_owned();
        self.with_conn(move |c| delivery::delivery_positions(c, &id))
            .await
    }

    async fn save_delivery_position(&self, position: &DeliveryPosition) -> StoreResult<()> {
        let p = position.clone();
        self.with_conn(move |c| delivery::save_delivery_position(c, &p))
            .await
    }

    async fn insert_alert_rule(&self, rule: &AlertRuleRecord) -> StoreResult<()> {
        let r = rule.clone();
        self.with_conn(move |c| delivery::insert_alert_rule(c, &r))
            .await
    }

    async fn alert_rules(&self) -> StoreResult<Vec<AlertRuleRecord>> {
        self.with_conn(delivery::alert_rules).await
    }

    async fn delete_alert_rule(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.with_conn(move |c| delivery::delete_alert_rule(c, &id))
            .await
    }

    async fn update_alert_rule_spec(&self, id: &str, spec: &str) -> StoreResult<bool> {
        let (id, spec) = (id.to_owned(), spec.to_owned());
        self.with_conn(move |c| delivery::update_spec(c, "alert_rules", &id, &spec))
            .await
    }

    async fn save_alert_states(
        &self,
        tenant: &TenantName,
        states: &[(String, String)],
    ) -> StoreResult<()> {
        if states.is_empty() {
            return Ok(());
        }
        let (tenant, states) = (tenant.clone(), states.to_vec());
        self.with_conn(move |c| delivery::save_alert_states(c, &tenant, &states))
            .await
    }

    async fn alert_state(&self, rule_id: &str, tenant: &TenantName) -> StoreResult<Option<String>> {
        let (id, tenant) = (rule_id.to_owned(), tenant.clone());
        self.with_conn(move |c| delivery::alert_state(c, &id, &tenant))
            .await
    }

    async fn save_alert_state(
        &self,
        rule_id: &str,
        tenant: &TenantName,
        state: &str,
    ) -> StoreResult<()> {
        let (id, tenant, state) = (rule_id.to_owned(), tenant.clone(), state.to_owned());
        self.with_conn(move |c| delivery::save_alert_state(c, &id, &tenant, &state))
            .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_micros: i64,
    ) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.with_conn(move |c| delivery::acquire_lease(c, &name, &holder, now, ttl_micros))
            .await
    }
}

fn cosignature_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCosignature> {
    Ok(StoredCosignature {
        size: r.get::<_, i64>(0)? as u64,
        witness: r.get(1)?,
        key_id: r.get::<_, i64>(2)? as u32,
        time: r.get::<_, i64>(3)? as u64,
        line: r.get(4)?,
        received_at: r.get(5)?,
    })
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: r.get::<_, i64>(0)? as u64,
        root: writer::blob32(r.get_ref(1)?.as_blob()?),
        note: r.get(2)?,
        created_at: r.get(3)?,
    })
}

const TOKEN_COLUMNS: &str =
    "SELECT id, tenant, secret_hash, created_at, expires_at, created_by, revoked
     FROM viewer_tokens";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<ViewerTokenRecord>> {
    let tenant: String = r.get(1)?;
    let tenant = match TenantName::parse(&tenant) {
        Ok(t) => t,
        Err(e) => {
            return Ok(Err(StoreError::Corrupt(format!(
                "viewer token tenant: {e}"
            ))));
        }
    };
    Ok(Ok(ViewerTokenRecord {
        id: r.get(0)?,
        tenant,
        secret_hash: writer::blob32(r.get_ref(2)?.as_blob()?),
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        created_by: r.get(5)?,
        revoked: r.get(6)?,
    }))
}

const KEY_COLUMNS: &str =
    "SELECT id, name, scope, tenant, secret_hash, created_at, last_used_at, revoked FROM api_keys";

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<ApiKeyRecord>> {
    let scope: String = r.get(2)?;
    let tenant: Option<String> = r.get(3)?;
    let Some(scope) = Scope::parse(&scope) else {
        return Ok(Err(StoreError::Corrupt(format!("key scope `{scope}`"))));
    };
    let tenant = match tenant.map(|t| TenantName::parse(&t)).transpose() {
        Ok(t) => t,
        Err(e) => return Ok(Err(StoreError::Corrupt(format!("key tenant: {e}")))),
    };
    Ok(Ok(ApiKeyRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        scope,
        tenant,
        secret_hash: writer::blob32(r.get_ref(4)?.as_blob()?),
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
        revoked: r.get(7)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitacora_store::conformance;

    fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(
            dir,
            SqliteOptions {
                synchronous: Synchronous::Normal,
                fts_interval: Duration::from_millis(20),
                // The conformance suite checks exact totals: never estimate them here.
                total_budget: Duration::from_secs(600),
                ..SqliteOptions::default()
            },
        )
        .unwrap()
    }

    /// Statistics taken on a tiny log (a restart soon after install runs `PRAGMA optimize`)
    /// once made the planner scan a tenant's whole log for every client-given id; the lookup
    /// must use the id index whatever the statistics say.
    #[tokio::test]
    async fn the_id_lookup_uses_its_index_whatever_the_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .append(conformance::sample_events(&["a"]))
            .await
            .unwrap();
        store.close().await.unwrap();
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute_batch("ANALYZE;").unwrap();
        let stats: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(stats > 0, "the tiny log has statistics");
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", writer::FIND_BY_ID))
            .unwrap()
            .query_map(params!["x", 0_i64, 1_i64 << 40], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter()
                .any(|p| p.contains("USING INDEX events_event_id")),
            "{plan:?}"
        );
    }

    /// Appends `ids` (all `user.login`) and returns their leaf hashes.
    async fn leaves_of_new(store: &SqliteStore, ids: &[&str]) -> Vec<Hash> {
        store
            .append(conformance::sample_events(ids))
            .await
            .unwrap()
            .into_iter()
            .map(|o| match o {
                AppendOutcome::Stored { leaf_hash, .. } => leaf_hash,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn record_of(leaves: &[Hash], seqs: &[u64], event_seq: u64) -> PurgeRecord {
        let mine: Vec<Hash> = seqs.iter().map(|&s| leaves[s as usize]).collect();
        PurgeRecord {
            event_seq,
            ranges: PurgeRecord::ranges_of(seqs),
            count: seqs.len() as u64,
            root: bitacora_core::merkle::root_from_leaves(&mine),
            archive: format!("file:///archive/default/{event_seq}.bundle.zst"),
            created_at: 1,
        }
    }

    /// The seqs the full-text file itself (not joined with `events`) finds for `user.login`.
    fn fts_seqs(dir: &Path) -> Vec<u64> {
        let c = Connection::open(dir.join(FTS_FILE)).unwrap();
        let mut seqs: Vec<u64> = c
            .prepare("SELECT rowid FROM events_fts WHERE events_fts MATCH '\"user.login\"'")
            .unwrap()
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|p| derive::seq_of(p.unwrap()))
            .collect();
        seqs.sort_unstable();
        seqs
    }

    async fn queue_drained(dir: &Path) {
        for _ in 0..500 {
            if count(dir, "SELECT count(*) FROM fts_deletes") == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the full-text delete queue was never applied");
    }

    /// Several purges in one transaction; their full-text entries are queued with it and
    /// leave the index through the indexer thread, and the queue empties.
    #[tokio::test]
    async fn purged_text_leaves_the_index_through_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let t = TenantName::default_tenant();
        let leaves = leaves_of_new(&store, &["a", "b", "c", "d", "e", "f"]).await;
        // Indexed before the purge (the indexer runs every 20 ms here).
        for _ in 0..500 {
            if fts_seqs(dir.path()).len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fts_seqs(dir.path()), vec![0, 1, 2, 3, 4, 5]);
        let records = [record_of(&leaves, &[0, 1], 4), record_of(&leaves, &[3], 5)];
        store.purge_many(&t, &records).await.unwrap();
        assert_eq!(store.purges(&t).await.unwrap().len(), 2);
        queue_drained(dir.path()).await;
        assert_eq!(fts_seqs(dir.path()), vec![2, 4, 5]);
        // One of the purges names a row already purged: neither happens.
        let again = [record_of(&leaves, &[2], 4), record_of(&leaves, &[3], 5)];
        assert!(store.purge_many(&t, &again).await.is_err());
        assert!(store.event_by_seq(&t, 2).await.unwrap().is_some());
        store.close().await.unwrap();
    }

    /// A crash between the index's deletes and the queue's cleanup leaves applied rows in the
    /// queue: they are never applied twice (a contentless index would be corrupted by a
    /// second delete). A new index file (deleted, rebuilt from the events) skips what was
    /// queued before it.
    #[tokio::test]
    async fn queued_text_is_applied_once_and_skipped_by_a_rebuilt_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let t = TenantName::default_tenant();
        let leaves = leaves_of_new(&store, &["a", "b", "c", "d", "e", "f"]).await;
        for _ in 0..500 {
            if fts_seqs(dir.path()).len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.purge(&t, &record_of(&leaves, &[0], 4)).await.unwrap();
        queue_drained(dir.path()).await;
        store.close().await.unwrap();
        // The cleanup "did not happen": the applied row is back in the queue.
        // Never applied, so its text does not matter (applying it would fail the checks).
        let text = "user.login a";
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let tid: i64 = c
            .query_row("SELECT id FROM tenants WHERE name = 'default'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let upto: i64 = Connection::open(dir.path().join(FTS_FILE))
            .unwrap()
            .query_row("SELECT upto FROM fts_deleted", [], |r| r.get(0))
            .unwrap();
        c.execute(
            "INSERT INTO fts_deletes (id, pos, text) VALUES (?1, ?2, ?3)",
            params![upto, derive::pos(tid, 0), text],
        )
        .unwrap();
        drop(c);
        let store = open(dir.path());
        queue_drained(dir.path()).await;
        assert_eq!(fts_seqs(dir.path()), vec![1, 2, 3, 4, 5]);
        // Another purge queues past it and is applied.
        store.purge(&t, &record_of(&leaves, &[1], 5)).await.unwrap();
        queue_drained(dir.path()).await;
        assert_eq!(fts_seqs(dir.path()), vec![2, 3, 4, 5]);
        store.close().await.unwrap();
        // A queued row, then the index file deleted: the rebuilt index never held seq 1 and
        // must not be asked to delete it.
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute(
            "INSERT INTO fts_deletes (pos, text) VALUES (?1, ?2)",
            params![derive::pos(tid, 1), text],
        )
        .unwrap();
        drop(c);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("{FTS_FILE}{suffix}")));
        }
        let store = open(dir.path());
        queue_drained(dir.path()).await;
        for _ in 0..500 {
            if fts_seqs(dir.path()).len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fts_seqs(dir.path()), vec![2, 3, 4, 5]);
        let found = store
            .search(&bitacora_core::query::EventQuery {
                tenant: t.clone(),
                filter: bitacora_core::query::EventFilter {
                    text: vec!["auditoría".into()],
                    ..Default::default()
                },
                order: bitacora_core::query::Order::Asc,
                page: bitacora_core::query::Pagination::Cursor {
                    limit: 10,
                    after: None,
                },
            })
            .await
            .unwrap();
        assert_eq!(
            found.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        store.close().await.unwrap();
    }

    /// A purge that meets the write lock held past the busy timeout (10 s) by another
    /// connection waits it out and purges, instead of failing the retention pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_retries_a_locked_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let t = TenantName::default_tenant();
        let leaves: Vec<Hash> = store
            .append(conformance::sample_events(&["a", "b", "c", "d"]))
            .await
            .unwrap()
            .into_iter()
            .map(|o| match o {
                AppendOutcome::Stored { leaf_hash, .. } => leaf_hash,
                other => panic!("{other:?}"),
            })
            .collect();
        let record = PurgeRecord {
            event_seq: 3,
            ranges: PurgeRecord::ranges_of(&[0, 1]),
            count: 2,
            root: bitacora_core::merkle::root_from_leaves(&leaves[..2]),
            archive: "file:///archive/default/test.bundle.zst".into(),
            created_at: 1,
        };
        // Another process takes the write lock and keeps it past the busy timeout.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let db = dir.path().join(DB_FILE);
        let holder = std::thread::spawn(move || {
            let c = Connection::open(db).unwrap();
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(10_600));
            c.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        let started = std::time::Instant::now();
        store.purge(&t, &record).await.unwrap();
        assert!(started.elapsed() > Duration::from_secs(10), "it waited");
        holder.join().unwrap();
        assert!(store.event_by_seq(&t, 0).await.unwrap().is_none());
        assert!(store.event_by_seq(&t, 2).await.unwrap().is_some());
        // Anything else than a refused lock still fails at once: the same purge again.
        let err = store.purge(&t, &record).await.unwrap_err();
        assert!(!purge::is_busy(&err), "{err}");
        store.close().await.unwrap();
    }

    /// Revoking a viewer token reads it, then marks it. When another connection commits a
    /// write while the revoke waits for the lock, the revoke still succeeds: it used to read
    /// a snapshot first and fail with "database is locked" (a 503 found by schemathesis).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_waits_for_a_concurrent_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let t = TenantName::default_tenant();
        let token = |id: &str, hash: u8| ViewerTokenRecord {
            id: id.into(),
            tenant: t.clone(),
            secret_hash: [hash; 32],
            created_at: 1,
            expires_at: i64::MAX,
            created_by: "test".into(),
            revoked: false,
        };
        store.insert_viewer_token(&token("vt_a", 1)).await.unwrap();
        // Another connection holds the write lock with a change it commits shortly.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let db = dir.path().join(DB_FILE);
        let holder = std::thread::spawn(move || {
            let c = Connection::open(db).unwrap();
            c.execute_batch("BEGIN IMMEDIATE; UPDATE viewer_tokens SET created_at = 2;")
                .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            c.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        let revoked = store.revoke_viewer_token("vt_a", Some(&t)).await.unwrap();
        holder.join().unwrap();
        assert_eq!(revoked.map(|r| r.id), Some("vt_a".to_owned()));
        let stored = store.viewer_token_by_hash(&[1; 32]).await.unwrap().unwrap();
        assert!(stored.revoked);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_data_folder_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // An older store, made world-readable (as a 022 umask did).
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = open(&data);
        store
            .append(conformance::sample_events(&["a", "b"]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(mode(&data), 0o700);
        let mut files = 0;
        for entry in std::fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            files += 1;
        }
        assert!(files >= 4, "the database, the index and their WAL files");
        store.close().await.unwrap();

        // Reopening tightens files an older version left readable.
        std::fs::set_permissions(data.join(DB_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let store = open(&data);
        assert_eq!(mode(&data.join(DB_FILE)), 0o600);
        store.close().await.unwrap();
    }

    conformance::suite!({
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        (std::sync::Arc::new(store) as std::sync::Arc<dyn Store>, dir)
    });

    #[tokio::test]
    async fn totals_past_the_budget_are_estimated() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            synchronous: Synchronous::Off,
            total_budget: Duration::ZERO,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(dir.path(), options).unwrap();
        conformance::totals_past_the_budget_are_estimated(&store).await;
    }

    #[tokio::test]
    async fn acknowledged_events_survive_reopening_and_text_is_indexed_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let events = conformance::sample_events(&["a", "b", "c"]);
        let acks = store.append(events).await.unwrap();
        assert_eq!(acks.len(), 3);
        // Simulate a crash before the text was indexed: forget the index watermark.
        store.close().await.unwrap();
        {
            let c = Connection::open(dir.path().join(FTS_FILE)).unwrap();
            c.execute_batch(
                "INSERT INTO events_fts (events_fts) VALUES ('delete-all');
                 DELETE FROM fts_state;",
            )
            .unwrap();
        }
        let store = open(dir.path());
        assert_eq!(
            store.log_size(&TenantName::default_tenant()).await.unwrap(),
            3
        );
        conformance::eventually_found(&store, "auditoría", 3).await;
        store.close().await.unwrap();
    }

    /// Every complete node at level >= 4 of a log of `size` leaves, with its hash recomputed
    /// from the leaves.
    fn expected_nodes(leaves: &[Hash]) -> Vec<(NodeId, Hash)> {
        let mut range = bitacora_core::merkle::CompactRange::new();
        let mut out = Vec::new();
        for leaf in leaves {
            for (id, h) in range.append(*leaf).unwrap() {
                if id.level >= tree::STORED_LEVEL {
                    out.push((id, h));
                }
            }
        }
        out
    }

    async fn leaves_of(store: &SqliteStore, n: u64) -> Vec<Hash> {
        let t = TenantName::default_tenant();
        let mut leaves = Vec::new();
        for seq in 0..n {
            leaves.push(
                store
                    .event_by_seq(&t, seq)
                    .await
                    .unwrap()
                    .unwrap()
                    .leaf_hash,
            );
        }
        leaves
    }

    async fn assert_tree(store: &SqliteStore, leaves: &[Hash]) {
        let t = TenantName::default_tenant();
        let expected = expected_nodes(leaves);
        let ids: Vec<NodeId> = expected.iter().map(|(id, _)| *id).collect();
        let got = store.tree_nodes(&t, &ids).await.unwrap();
        for ((id, want), got) in expected.iter().zip(got) {
            assert_eq!(*want, got, "node {id:?}");
        }
        // Proofs across tile boundaries and ragged right edges.
        let n = leaves.len() as u64;
        // Runs of one level, as tlog tiles list them: a full leaf tile is one `leaf_tiles`
        // row, an aligned level-4 run a range of `merkle_tiles`, the rest node by node.
        for first in (0..n / 256).map(|i| i * 256) {
            let run = store.level_nodes(&t, 0, first, 256).await.unwrap();
            let at = first as usize;
            assert_eq!(run, leaves[at..at + 256], "leaf tile at {first}");
        }
        for (first, count) in [(0u64, 256u64), (16, 32), (3, 100), (0, n / 16)] {
            if (first + count) * 16 > n {
                continue;
            }
            let run = store.level_nodes(&t, 4, first, count).await.unwrap();
            let want: Vec<Hash> = (first..first + count)
                .map(|i| {
                    let at = (i * 16) as usize;
                    bitacora_core::merkle::root_from_leaves(&leaves[at..at + 16])
                })
                .collect();
            assert_eq!(run, want, "{count} level-4 nodes from {first}");
        }
        for size in [256, 257, 4095, 4096, n - 1, n] {
            let root = bitacora_core::merkle::root_from_leaves(&leaves[..size as usize]);
            for index in [0, 255, 256, size / 3, size - 1]
                .into_iter()
                .filter(|&i| i < size)
            {
                let refs = bitacora_core::merkle::inclusion_proof_nodes(index, size).unwrap();
                let ids = bitacora_core::merkle::required_nodes(&refs);
                let hashes = store.tree_nodes(&t, &ids).await.unwrap();
                let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
                let proof = bitacora_core::merkle::resolve_proof(&refs, |id| Ok::<_, ()>(map[&id]))
                    .unwrap();
                bitacora_core::merkle::verify_inclusion(
                    &leaves[index as usize],
                    index,
                    size,
                    &proof,
                    &root,
                )
                .unwrap_or_else(|e| panic!("inclusion of {index} in {size}: {e}"));
            }
        }
    }

    fn count(dir: &Path, sql: &str) -> i64 {
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    fn count_tiles(dir: &Path, sql: &str) -> i64 {
        Connection::open(dir.join(TILES_FILE))
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    /// The leaf tiles' file is derived data: lost, cut short (a crash between the commits of
    /// its WAL and the events'), or ahead of the events (the reverse), it is brought level
    /// with the log at the next start. Its pages hold whole tiles (no overflow pages).
    #[tokio::test]
    async fn leaf_tiles_are_refilled_and_trimmed_at_start() {
        const N: u64 = 4_200;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let names: Vec<String> = (0..N).map(|i| format!("r{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        store
            .append(conformance::sample_events(&refs))
            .await
            .unwrap();
        let leaves = leaves_of(&store, N).await;
        store.close().await.unwrap();
        assert_eq!(count_tiles(dir.path(), "PRAGMA page_size"), 32 * 1024);
        assert_eq!(
            count_tiles(dir.path(), "SELECT count(*) FROM leaf_tiles"),
            16
        );
        // No tile spills into overflow pages.
        assert_eq!(
            count_tiles(
                dir.path(),
                "SELECT count(*) FROM dbstat WHERE name = 'leaf_tiles' AND pagetype = 'overflow'"
            ),
            0
        );

        // Cut short: the last two tiles lost, one of the others changed (which only
        // `verify` finds: the start checks each log's end).
        {
            let c = Connection::open(dir.path().join(TILES_FILE)).unwrap();
            c.execute_batch(
                "DELETE FROM leaf_tiles WHERE tile IN (SELECT tile FROM leaf_tiles ORDER BY tile DESC LIMIT 2)",
            )
            .unwrap();
        }
        let store = open(dir.path());
        assert_tree(&store, &leaves).await;
        store.close().await.unwrap();

        // Lost altogether.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("{TILES_FILE}{suffix}")));
        }
        let store = open(dir.path());
        assert_tree(&store, &leaves).await;
        store.close().await.unwrap();
        assert_eq!(count_tiles(dir.path(), "PRAGMA page_size"), 32 * 1024);

        // Ahead of the log: a row for the incomplete 17th tile (events 4096..4200).
        {
            let c = Connection::open(dir.path().join(TILES_FILE)).unwrap();
            c.execute_batch(
                "INSERT INTO leaf_tiles SELECT tile + 1, hashes FROM leaf_tiles
                 WHERE tile = (SELECT max(tile) FROM leaf_tiles)",
            )
            .unwrap();
        }
        let store = open(dir.path());
        assert_eq!(
            store
                .check_summaries(&TenantName::default_tenant())
                .await
                .unwrap(),
            None
        );
        store.close().await.unwrap();
        assert_eq!(
            count_tiles(dir.path(), "SELECT count(*) FROM leaf_tiles"),
            16
        );
    }

    #[tokio::test]
    async fn complete_tiles_replace_their_node_rows_and_serve_every_node() {
        const N: u64 = 4_500;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let names: Vec<String> = (0..N).map(|i| format!("t{i}")).collect();
        // Uneven batches, so tiles complete mid-batch and across batches.
        for chunk in names.chunks(731) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            store
                .append(conformance::sample_events(&refs))
                .await
                .unwrap();
        }
        let leaves = leaves_of(&store, N).await;
        assert_tree(&store, &leaves).await;
        store.close().await.unwrap();
        // 4,500 leaves: 17 tier-1 tiles (level-4 nodes 0..272) and one tier-2 tile (leaves
        // 0..4096); node rows remain only outside complete tiles.
        assert_eq!(
            count(
                dir.path(),
                "SELECT count(*) FROM merkle_tiles WHERE tier = 1"
            ),
            17
        );
        assert_eq!(
            count(
                dir.path(),
                "SELECT count(*) FROM merkle_tiles WHERE tier = 2"
            ),
            1
        );
        assert_eq!(
            count(
                dir.path(),
                "SELECT count(*) FROM merkle_nodes WHERE level = 4"
            ),
            281 - 17 * 16
        );
        assert_eq!(
            count(
                dir.path(),
                "SELECT count(*) FROM merkle_nodes WHERE level BETWEEN 8 AND 11"
            ),
            1,
            "only level-8 node 16 (leaves 4096..4352) lies outside a complete tier-2 tile"
        );
        // The writer reloads its frontier from tiles after a restart and keeps appending.
        let store = open(dir.path());
        let more: Vec<String> = (N..N + 300).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = more.iter().map(String::as_str).collect();
        store
            .append(conformance::sample_events(&refs))
            .await
            .unwrap();
        let leaves = leaves_of(&store, N + 300).await;
        assert_tree(&store, &leaves).await;
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_tiles_migration_folds_a_store_written_before_tiles() {
        const N: u64 = 4_200;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let names: Vec<String> = (0..N).map(|i| format!("u{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        store
            .append(conformance::sample_events(&refs))
            .await
            .unwrap();
        let leaves = leaves_of(&store, N).await;
        store.close().await.unwrap();
        // Rewrite the store into the layout of schema version 2: every node in its own row,
        // no tiles table (and none of the later ones).
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(
                "DELETE FROM merkle_nodes; DROP TABLE merkle_tiles; DROP TABLE commit_seals;
                 DROP TABLE event_blocks; DROP TABLE stats_days; DROP TABLE stats_day_actors;
                 DROP TABLE stats_day_ips; DROP TABLE purged_events; DROP TABLE purges;
                 DROP TABLE legal_holds; DROP TABLE retention_rule_sets;
                 DROP TABLE delivery_destinations; DROP TABLE delivery_positions;
                 DROP TABLE alert_rules; DROP TABLE alert_states; DROP TABLE delivery_leases;
                 DROP TABLE cosignatures; DROP TABLE log_origins;
                 DROP TABLE event_facets; DROP TABLE facet_counts; DROP TABLE fts_deletes;
                 DROP TABLE event_addresses; DROP TABLE stats_hours;
                 DROP TABLE stats_hour_actors; DROP TABLE stats_hour_ips;",
            )
            .unwrap();
            for (id, h) in expected_nodes(&leaves) {
                c.execute(
                    "INSERT INTO merkle_nodes (tenant_id, level, idx, hash) 
                     VALUES ((SELECT id FROM tenants WHERE name = 'default'), ?1, ?2, ?3)",
                    rusqlite::params![id.level, id.index as i64, &h[..]],
                )
                .unwrap();
            }
            c.pragma_update(None, "user_version", 2).unwrap();
        }
        // Nor the leaf tiles' file (migration 12).
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("{TILES_FILE}{suffix}")));
        }
        let store = open(dir.path());
        assert_tree(&store, &leaves).await;
        store.close().await.unwrap();
        assert_eq!(
            count(dir.path(), "SELECT count(*) FROM merkle_tiles"),
            16 + 1
        );
        assert_eq!(
            count(
                dir.path(),
                "SELECT count(*) FROM merkle_nodes WHERE level < 12"
            ),
            262 - 256 + 131 - 128 + 65 - 64 + 32 - 32
        );
        // The zone map (migration 5) is rebuilt from the events.
        assert_eq!(
            count(dir.path(), "SELECT count(*) FROM event_blocks"),
            N.div_ceil(crate::window::BLOCK_EVENTS) as i64
        );
        assert_eq!(
            count(dir.path(), "SELECT sum(count) FROM event_blocks"),
            N as i64
        );
        // So are the leaf tiles (migrations 11 and 12): one for each complete run of 256
        // events, in their own file.
        assert_eq!(
            count_tiles(dir.path(), "SELECT count(*) FROM leaf_tiles"),
            (N / 256) as i64
        );
        assert_eq!(
            count(
                dir.path(),
                "SELECT count(*) FROM sqlite_schema WHERE name = 'leaf_tiles'"
            ),
            0
        );
        // So are the stats rollups (migrations 6 and 15) and the facets (migration 10).
        for table in ["stats_days", "stats_hours"] {
            assert_eq!(
                count(dir.path(), &format!("SELECT sum(count) FROM {table}")),
                N as i64,
                "{table}"
            );
        }
        for table in ["event_facets", "facet_counts"] {
            assert_eq!(
                count(dir.path(), &format!("SELECT sum(count) FROM {table}")),
                N as i64,
                "{table}"
            );
        }
        let store = open(dir.path());
        assert_eq!(
            store
                .check_summaries(&TenantName::default_tenant())
                .await
                .unwrap(),
            None
        );
        store.close().await.unwrap();
    }

    /// A store written before the address postings gets them from its events when it is
    /// opened (migration 14), and a posting that went missing is named by the summaries'
    /// check (it would hide an event from `ip=`). Searches through them are checked on both
    /// stores by the conformance suite.
    #[tokio::test]
    async fn address_postings_are_backfilled_and_checked() {
        const N: u64 = 3_000;
        let dir = timed_store(N).await;
        let t = TenantName::default_tenant();
        let postings = |dir: &Path| count(dir, "SELECT count(*) FROM event_addresses");
        let written = postings(dir.path());
        assert!(written > 0);
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            // Back to schema version 13 (migrations 14 to 16 run again).
            c.execute_batch(&format!(
                "DROP TABLE event_addresses; DROP TABLE stats_hours;
                 DROP TABLE stats_hour_actors; DROP TABLE stats_hour_ips; {UNDO_16}
                 PRAGMA user_version = 13;",
            ))
            .unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.check_summaries(&t).await.unwrap(), None);
        store.close().await.unwrap();
        // One row per block and address: fewer than the writer's (a row per commit).
        assert!(postings(dir.path()) <= written);
        assert_eq!(
            count(
                dir.path(),
                "SELECT sum(length(offsets)) / 2 FROM event_addresses"
            ),
            N as i64
        );
        let m = mismatch_after(
            dir.path(),
            "DELETE FROM event_addresses WHERE (tenant_id, block, ip, first) IN
               (SELECT tenant_id, block, ip, first FROM event_addresses LIMIT 1)",
        )
        .await;
        assert_eq!(m.summary, "event_addresses", "{m:?}");
    }

    /// The summary `verify` names once `sql` has changed the store in `dir` behind its back.
    async fn mismatch_after(dir: &Path, sql: &str) -> bitacora_store::check::SummaryMismatch {
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        let store = open(dir);
        let m = store
            .check_summaries(&TenantName::default_tenant())
            .await
            .unwrap()
            .expect("a mismatch");
        store.close().await.unwrap();
        m
    }

    /// A closed store of `n` timed events (`conformance::timed_events`), appended 700 at a
    /// time.
    async fn timed_store(n: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for chunk in conformance::timed_events("default", n, "2026-01-01T00:00:00Z", 60).chunks(700)
        {
            store.append(chunk.to_vec()).await.unwrap();
        }
        store.close().await.unwrap();
        dir
    }

    /// Takes migration 16 (the facets' sketches) back.
    const UNDO_16: &str = "
        ALTER TABLE event_facets DROP COLUMN areas_0; ALTER TABLE event_facets DROP COLUMN areas_1;
        ALTER TABLE event_facets DROP COLUMN areas_2; ALTER TABLE event_facets DROP COLUMN areas_3;
        ALTER TABLE event_facets DROP COLUMN actors_0; ALTER TABLE event_facets DROP COLUMN actors_1;
        ALTER TABLE event_facets DROP COLUMN actors_2; ALTER TABLE event_facets DROP COLUMN actors_3;
        ALTER TABLE facet_counts DROP COLUMN areas_0; ALTER TABLE facet_counts DROP COLUMN areas_1;
        ALTER TABLE facet_counts DROP COLUMN areas_2; ALTER TABLE facet_counts DROP COLUMN areas_3;
        ALTER TABLE facet_counts DROP COLUMN actors_0; ALTER TABLE facet_counts DROP COLUMN actors_1;
        ALTER TABLE facet_counts DROP COLUMN actors_2; ALTER TABLE facet_counts DROP COLUMN actors_3;";

    #[tokio::test]
    async fn facet_sketches_are_backfilled_checked_and_narrow_searches() {
        const N: u64 = 2_000;
        let dir = timed_store(N).await;
        let t = TenantName::default_tenant();
        let sketches = |dir: &Path| {
            count(
                dir,
                "SELECT count(*) FROM event_facets
                 WHERE areas_0 <> 0 OR areas_1 <> 0 OR areas_2 <> 0 OR areas_3 <> 0",
            ) + 1_000_000
                * count(
                    dir,
                    "SELECT count(*) FROM event_facets
                     WHERE actors_0 <> 0 OR actors_1 <> 0 OR actors_2 <> 0 OR actors_3 <> 0",
                )
        };
        let written = sketches(dir.path());
        assert!(written > 1_000_000 && written % 1_000_000 > 0, "{written}");
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(&format!("{UNDO_16} PRAGMA user_version = 15;"))
                .unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.check_summaries(&t).await.unwrap(), None);
        store.close().await.unwrap();
        assert_eq!(
            sketches(dir.path()),
            written,
            "the backfill sets what the writer set"
        );
        // A network none of the events came from, or an actor who never did an action, is
        // empty without reading the log: its bits meet no combination's.
        let compiled = |query: &str| {
            let c = schema::open(
                &dir.path().join(DB_FILE),
                schema::Role::Reader,
                Synchronous::Full,
            )
            .unwrap();
            let pairs: Vec<(&str, &str)> = query
                .split('&')
                .map(|p| p.split_once('=').unwrap())
                .collect();
            let q = bitacora_core::query::EventQuery::parse(pairs, &t).unwrap();
            crate::read::compile(&c, 1, &q).unwrap()
        };
        assert!(compiled("ip=203.0.113.0/24").empty);
        assert!(compiled("ip=203.0.113.0/24&severity=high").empty);
        assert!(!compiled("ip=10.0.0.0/8").empty);
        assert!(compiled("actor_id=nobody").empty);
        // u1 is an odd event's actor; user.login is every fourth event's action, from 0.
        assert!(compiled("actor_id=u1&action=user.login").empty);
        assert!(!compiled("actor_id=u1&action=user.logout").empty);
        // A row whose bits miss an area of its events would hide them from `ip=`: caught (the
        // actors' bits are checked by the same code).
        let m = mismatch_after(
            dir.path(),
            "UPDATE event_facets SET areas_0 = 0, areas_1 = 0, areas_2 = 0, areas_3 = 0
             WHERE (tenant_id, action, category, severity, outcome, source, block) IN
               (SELECT tenant_id, action, category, severity, outcome, source, block
                FROM event_facets LIMIT 1)",
        )
        .await;
        assert_eq!(m.summary, "event_facets", "{m:?}");
    }
}
