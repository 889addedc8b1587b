//! The production store: PostgreSQL, shared by any number of `bitacora serve` processes.
//!
//! - [`migrate`]: versioned migrations (`migrations/`), applied at open under an advisory
//!   lock, so servers starting together migrate once.
//! - [`partitions`]: `events` is partitioned by month of `received_at`; partitions are created
//!   ahead at open, hourly, and on demand before a write needs one.
//! - [`writer`]: one group-commit task per process batches every waiting append into one
//!   transaction; inside it, each tenant's `tenants` row is locked and its log size and
//!   Merkle frontier are read from the database, so several processes can sequence the same
//!   tenant without a gap, a duplicate `seq` or a forked tree.
//! - [`read`]: searches, lookups, aggregates and tree nodes on pooled connections.
//!
//! The semantics are the embedded store's (the same conformance suite runs on both); see
//! ARCHITECTURE.md for the schema and the scaling path.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex, RwLock};
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
    LegalHoldRecord, PartitionSummary, PurgeRecord, Scope, SearchResult, Store, StoreError,
    StoreResult, StoredCheckpoint, StoredCosignature, StoredEvent, ViewerTokenRecord,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

mod addresses;
mod check;
pub mod connect;
mod delivery;
pub mod derive;
mod drop;
mod facets;
pub mod migrate;
pub mod partitions;
mod purge;
mod read;
mod rollup;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tree;
mod window;
mod writer;

use partitions::Partitions;
use writer::{Job, Prepared};

/// Most events waiting for the writer; appends beyond it wait (backpressure), as in the
/// embedded store.
pub(crate) const MAX_QUEUED_EVENTS: usize = 50_000;

#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most events in one group commit.
    pub max_batch_events: usize,
    /// Most pooled connections (the writer takes one of them per commit).
    pub pool_size: usize,
    /// Monthly partitions kept created ahead of the current month.
    pub months_ahead: u32,
    /// How long a numbered page may spend counting its total before the rest of it is
    /// estimated ([`bitacora_store::total`]).
    pub total_budget: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_batch_events: 20_000,
            pool_size: 16,
            months_ahead: 3,
            total_budget: bitacora_store::total::DEFAULT_BUDGET,
        }
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    pool: Pool,
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
    /// The months whose partitions this process knows exist (shared with the writer).
    partitions: Arc<Partitions>,
    /// One permit per event that may wait for the writer.
    permits: Arc<Semaphore>,
    /// The commit key, shared with the writer task, which reads it at every commit.
    commit_key: Arc<RwLock<Option<CommitKey>>>,
    total_budget: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// Maps a PostgreSQL error: connection trouble and resource exhaustion are `Unavailable`
/// (the client may retry; nothing was acknowledged), corruption is `Corrupt`.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = format!("{code}: {}", db.message());
        return match &code[..2] {
            // connection exception, insufficient resources, operator intervention,
            // transaction rollback (serialization failure, deadlock)
            "08" | "53" | "57" | "40" => StoreError::Unavailable(message),
            "XX" if code != "XX000" => StoreError::Corrupt(message),
            _ => StoreError::Internal(message),
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    // The causes too: "error performing TLS handshake" alone does not say which certificate
    // check failed.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    if e.is_closed() || io {
        StoreError::Unavailable(format!("PostgreSQL connection: {message}"))
    } else {
        StoreError::Internal(format!("PostgreSQL: {message}"))
    }
}

pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}

impl PgStore {
    /// Connects, applies missing migrations, creates the partitions ahead, and starts the
    /// writer. `url` is a libpq URL (`postgres://user:pass@host:port/db?sslmode=verify-full`),
    /// TLS as [`connect`] describes.
    pub async fn open(url: &str, options: PgOptions) -> StoreResult<Self> {
        // The URL is never repeated in errors: it may hold a password.
        let connector = connect::parse(url).map_err(StoreError::Internal)?;
        let manager = Manager::from_config(
            connector.config,
            connector.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Internal(format!("PostgreSQL pool: {e}")))?;

        let mut client = pool.get().await.map_err(pool_error)?;
        migrate::run(&mut client).await?;
        let partitions = Arc::new(Partitions::default());
        partitions
            .ensure_ahead(&**client, chrono::Utc::now(), options.months_ahead)
            .await?;
        drop(client);

        let (tx, rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(MAX_QUEUED_EVENTS));
        let commit_key = Arc::new(RwLock::new(None));
        let writer = tokio::spawn(
            writer::Writer::new(
                pool.clone(),
                rx,
                permits.clone(),
                options.max_batch_events.max(1),
                partitions.clone(),
                commit_key.clone(),
            )
            .run(),
        );
        let maintenance = tokio::spawn(partitions::maintain(
            pool.clone(),
            partitions.clone(),
            options.months_ahead,
        ));
        Ok(Self {
            pool,
            partitions,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            maintenance: Mutex::new(Some(maintenance)),
            permits,
            commit_key,
            total_budget: options.total_budget,
        })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn tenant_id(
        &self,
        client: &deadpool_postgres::Object,
        tenant: &TenantName,
    ) -> StoreResult<Option<i32>> {
        Ok(read::tenant(client, tenant).await?.map(|(id, _)| id))
    }
}

#[async_trait]
impl Store for PgStore {
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
        let client = self.client().await?;
        read::event_by_id(&client, tenant, id).await
    }

    async fn event_by_seq(
        &self,
        tenant: &TenantName,
        seq: u64,
    ) -> StoreResult<Option<StoredEvent>> {
        let client = self.client().await?;
        read::event_by_seq(&client, tenant, seq).await
    }

    async fn check_leaves(
        &self,
        tenant: &TenantName,
        from: u64,
        limit: u32,
    ) -> StoreResult<Vec<LeafCheck>> {
        let client = self.client().await?;
        check::check_leaves(&client, tenant, from, limit).await
    }

    async fn check_summaries(
        &self,
        tenant: &TenantName,
    ) -> StoreResult<Option<bitacora_store::check::SummaryMismatch>> {
        let mut client = self.client().await?;
        check::check_summaries(&mut client, tenant).await
    }

    async fn search(&self, query: &EventQuery) -> StoreResult<SearchResult> {
        let mut client = self.client().await?;
        read::search(&mut client, query, self.total_budget).await
    }

    async fn actions(&self, tenant: &TenantName) -> StoreResult<Vec<ActionSummary>> {
        let client = self.client().await?;
        read::actions(&client, tenant).await
    }

    async fn actors(&self, tenant: &TenantName, limit: u32) -> StoreResult<Vec<ActorSummary>> {
        let client = self.client().await?;
        read::actors(&client, tenant, limit).await
    }

    async fn stats(
        &self,
        tenant: &TenantName,
        since: i64,
        until: i64,
        top: u32,
    ) -> StoreResult<Stats> {
        let mut client = self.client().await?;
        read::stats(&mut client, tenant, since, until, top).await
    }

    async fn log_size(&self, tenant: &TenantName) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(read::tenant(&client, tenant)
            .await?
            .map_or(0, |(_, size)| size))
    }

    async fn tree_nodes(&self, tenant: &TenantName, nodes: &[NodeId]) -> StoreResult<Vec<Hash>> {
        let client = self.client().await?;
        let Some((tid, size)) = read::tenant(&client, tenant).await? else {
            return Err(StoreError::Corrupt(format!("tenant `{tenant}` has no log")));
        };
        tree::nodes(&client, tid, size, nodes).await
    }

    async fn level_nodes(
        &self,
        tenant: &TenantName,
        level: u8,
        first: u64,
        count: u64,
    ) -> StoreResult<Vec<Hash>> {
        let client = self.client().await?;
        let Some((tid, size)) = read::tenant(&client, tenant).await? else {
            return Err(StoreError::Corrupt(format!("tenant `{tenant}` has no log")));
        };
        tree::level_nodes(&client, tid, size, level, first, count).await
    }

    async fn add_checkpoint(
        &self,
        tenant: &TenantName,
        checkpoint: &StoredCheckpoint,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        let Some(tid) = self.tenant_id(&client, tenant).await? else {
            return Err(StoreError::Internal(format!(
                "tenant `{tenant}` has no log"
            )));
        };
        let stmt = client
            .prepare_cached(
                "INSERT INTO checkpoints (tenant_id, size, root, note, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg_error)?;
        client
            .execute(
                &stmt,
                &[
                    &tid,
                    &(checkpoint.size as i64),
                    &&checkpoint.root[..],
                    &checkpoint.note,
                    &checkpoint.created_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn add_cosignature(
        &self,
        tenant: &TenantName,
        cosignature: &StoredCosignature,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        let Some(tid) = self.tenant_id(&client, tenant).await? else {
            return Err(StoreError::Internal(format!(
                "tenant `{tenant}` has no log"
            )));
        };
        let stmt = client
            .prepare_cached(
                "INSERT INTO cosignatures (tenant_id, size, witness, key_id, time, line, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg_error)?;
        let co = cosignature;
        client
            .execute(
                &stmt,
                &[
                    &tid,
                    &(co.size as i64),
                    &co.witness,
                    &i64::from(co.key_id),
                    &(co.time as i64),
                    &co.line,
                    &co.received_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn cosignatures(
        &self,
        tenant: &TenantName,
        size: u64,
    ) -> StoreResult<Vec<StoredCosignature>> {
        let client = self.client().await?;
        let Some(tid) = self.tenant_id(&client, tenant).await? else {
            return Ok(Vec::new());
        };
        let stmt = client
            .prepare_cached(
                "SELECT size, witness, key_id, time, line, received_at FROM cosignatures
                 WHERE tenant_id = $1 AND size = $2 ORDER BY witness, key_id",
            )
            .await
            .map_err(pg_error)?;
        Ok(client
            .query(&stmt, &[&tid, &(size as i64)])
            .await
            .map_err(pg_error)?
            .iter()
            .map(cosignature_row)
            .collect())
    }

    async fn log_origin(&self, tenant: &TenantName) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT origin FROM log_origins WHERE tenant = $1")
            .await
            .map_err(pg_error)?;
        Ok(client
            .query_opt(&stmt, &[&tenant.as_str()])
            .await
            .map_err(pg_error)?
            .map(|r| r.get(0)))
    }

    async fn fix_log_origin(&self, tenant: &TenantName, origin: &str) -> StoreResult<String> {
        let client = self.client().await?;
        // One statement: the row inserted, or the one another server inserted first.
        let stmt = client
            .prepare_cached(
                "WITH ins AS (
                     INSERT INTO log_origins (tenant, origin) VALUES ($1, $2)
                     ON CONFLICT (tenant) DO NOTHING RETURNING origin)
                 SELECT origin FROM ins
                 UNION ALL
                 SELECT origin FROM log_origins WHERE tenant = $1
                 LIMIT 1",
            )
            .await
            .map_err(pg_error)?;
        if let Some(row) = client
            .query_opt(&stmt, &[&tenant.as_str(), &origin])
            .await
            .map_err(pg_error)?
        {
            return Ok(row.get(0));
        }
        // Another server's insert committed after this statement's snapshot: read it now.
        drop(client);
        self.log_origin(tenant).await?.ok_or_else(|| {
            StoreError::Internal(format!("the origin of tenant `{tenant}` vanished"))
        })
    }

    async fn latest_cosignatures(
        &self,
        tenant: &TenantName,
    ) -> StoreResult<Vec<StoredCosignature>> {
        let client = self.client().await?;
        let Some(tid) = self.tenant_id(&client, tenant).await? else {
            return Ok(Vec::new());
        };
        let stmt = client
            .prepare_cached(
                "SELECT DISTINCT ON (witness, key_id)
                        size, witness, key_id, time, line, received_at
                 FROM cosignatures WHERE tenant_id = $1
                 ORDER BY witness, key_id, size DESC",
            )
            .await
            .map_err(pg_error)?;
        Ok(client
            .query(&stmt, &[&tid])
            .await
            .map_err(pg_error)?
            .iter()
            .map(cosignature_row)
            .collect())
    }

    async fn latest_checkpoint(
        &self,
        tenant: &TenantName,
    ) -> StoreResult<Option<StoredCheckpoint>> {
        let client = self.client().await?;
        let Some(tid) = self.tenant_id(&client, tenant).await? else {
            return Ok(None);
        };
        let stmt = client
            .prepare_cached(
                "SELECT size, root, note, created_at FROM checkpoints
                 WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1",
            )
            .await
            .map_err(pg_error)?;
        client
            .query_opt(&stmt, &[&tid])
            .await
            .map_err(pg_error)?
            .map(|r| checkpoint_row(&r))
            .transpose()
    }

    async fn checkpoints(
        &self,
        tenant: &TenantName,
        after_size: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        let client = self.client().await?;
        let Some(tid) = self.tenant_id(&client, tenant).await? else {
            return Ok(Vec::new());
        };
        let stmt = client
            .prepare_cached(
                "SELECT size, root, note, created_at FROM checkpoints
                 WHERE tenant_id = $1 AND size > $2 ORDER BY size LIMIT $3",
            )
            .await
            .map_err(pg_error)?;
        client
            .query(
                &stmt,
                &[
                    &tid,
                    &(after_size.min(i64::MAX as u64) as i64),
                    &i64::from(limit),
                ],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(checkpoint_row)
            .collect()
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantName>> {
        let client = self.client().await?;
        read::tenants(&client).await
    }

    async fn purge(&self, tenant: &TenantName, record: &PurgeRecord) -> StoreResult<()> {
        let mut client = self.client().await?;
        purge::purge(&mut client, tenant, record).await
    }

    async fn purges(&self, tenant: &TenantName) -> StoreResult<Vec<PurgeRecord>> {
        let client = self.client().await?;
        purge::purges(&client, tenant).await
    }

    async fn expired_partitions(&self, before: i64) -> StoreResult<Vec<PartitionSummary>> {
        let client = self.client().await?;
        drop::expired_partitions(&client, before).await
    }

    async fn begin_partition_drop(
        &self,
        name: &str,
    ) -> StoreResult<Box<dyn bitacora_store::PartitionDrop>> {
        let client = self.client().await?;
        Ok(Box::new(
            drop::PartitionDrop::begin(client, name, self.partitions.clone()).await?,
        ))
    }

    async fn purged_leaves(
        &self,
        tenant: &TenantName,
        event_seq: u64,
    ) -> StoreResult<Vec<(u64, Hash)>> {
        let client = self.client().await?;
        purge::purged_leaves(&client, tenant, event_seq).await
    }

    async fn purged_event(
        &self,
        tenant: &TenantName,
        id: &str,
    ) -> StoreResult<Option<(u64, Hash)>> {
        let client = self.client().await?;
        purge::purged_event(&client, tenant, id).await
    }

    async fn insert_legal_hold(&self, hold: &LegalHoldRecord) -> StoreResult<()> {
        let client = self.client().await?;
        purge::insert_hold(&client, hold).await
    }

    async fn legal_holds(
        &self,
        tenant: Option<&TenantName>,
        include_released: bool,
    ) -> StoreResult<Vec<LegalHoldRecord>> {
        let client = self.client().await?;
        purge::holds(&client, tenant, include_released).await
    }

    async fn release_legal_hold(
        &self,
        id: &str,
        tenant: Option<&TenantName>,
        at: i64,
        by: &str,
    ) -> StoreResult<Option<LegalHoldRecord>> {
        let client = self.client().await?;
        purge::release_hold(&client, id, tenant, at, by).await
    }

    async fn rules_first_seen(&self, fingerprint: &str, now: i64) -> StoreResult<i64> {
        let client = self.client().await?;
        purge::rules_first_seen(&client, fingerprint, now).await
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
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT s.size, s.root, s.base, s.mac FROM commit_seals s
                 JOIN tenants t ON t.id = s.tenant_id WHERE t.name = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.and_then(|r| writer::seal_of(r.get(0), r.get(1), r.get(2), r.get(3))))
    }

    async fn replace_commit_seal(
        &self,
        tenant: &TenantName,
        seal: &CommitSeal,
    ) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // The tenant's row lock is the writers' sequencer: the size checked is the size
        // the seal lands on.
        let Some(row) = tx
            .query_opt(
                "SELECT id, size FROM tenants WHERE name = $1 FOR UPDATE",
                &[&tenant.as_str()],
            )
            .await
            .map_err(pg_error)?
        else {
            return Ok(false);
        };
        let (tid, size): (i32, i64) = (row.get(0), row.get(1));
        if size as u64 != seal.size {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO commit_seals (tenant_id, size, root, base, mac)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id) DO UPDATE SET size = excluded.size, root = excluded.root,
                base = excluded.base, mac = excluded.mac",
            &[
                &tid,
                &(seal.size as i64),
                &&seal.root[..],
                &(seal.base as i64),
                &&seal.mac[..],
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn ping(&self) -> StoreResult<()> {
        if self.sender.lock().expect("sender lock").is_none() {
            return Err(StoreError::Unavailable("the store is shutting down".into()));
        }
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg_error)?;
        Ok(())
    }

    async fn close(&self) -> StoreResult<()> {
        // Dropping the sender lets the writer commit what is queued and exit.
        drop(self.sender.lock().expect("sender lock").take());
        if let Some(task) = self.maintenance.lock().expect("maintenance lock").take() {
            task.abort();
        }
        let writer = self.writer.lock().expect("writer lock").take();
        if let Some(writer) = writer {
            writer
                .await
                .map_err(|e| StoreError::Internal(format!("the writer task failed: {e}")))?;
        }
        self.pool.close();
        Ok(())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO api_keys (id, name, scope, tenant, secret_hash, created_at, revoked)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &key.id,
                    &key.name,
                    &key.scope.as_str(),
                    &key.tenant.as_ref().map(TenantName::as_str),
                    &&key.secret_hash[..],
                    &key.created_at,
                    &key.revoked,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn api_key_by_hash(&self, secret_hash: &Hash) -> StoreResult<Option<ApiKeyRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("{KEY_COLUMNS} WHERE secret_hash = $1"))
            .await
            .map_err(pg_error)?;
        client
            .query_opt(&stmt, &[&&secret_hash[..]])
            .await
            .map_err(pg_error)?
            .map(|r| key_row(&r))
            .transpose()
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let client = self.client().await?;
        client
            .query(&format!("{KEY_COLUMNS} ORDER BY created_at, id"), &[])
            .await
            .map_err(pg_error)?
            .iter()
            .map(key_row)
            .collect()
    }

    async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute("UPDATE api_keys SET revoked = true WHERE id = $1", &[&id])
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    async fn touch_api_keys(&self, used: &[(String, i64)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = used.iter().map(|(id, _)| id.as_str()).collect();
        let ats: Vec<i64> = used.iter().map(|(_, at)| *at).collect();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE api_keys k SET last_used_at = GREATEST(coalesce(k.last_used_at, 0), u.at)
                 FROM (SELECT id, max(at) AS at FROM unnest($1::text[], $2::int8[]) AS t(id, at)
                       GROUP BY id) u
                 WHERE k.id = u.id",
                &[&ids, &ats],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn insert_viewer_token(&self, token: &ViewerTokenRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO viewer_tokens
                     (id, tenant, secret_hash, created_at, expires_at, created_by, revoked)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &token.id,
                    &token.tenant.as_str(),
                    &&token.secret_hash[..],
                    &token.created_at,
                    &token.expires_at,
                    &token.created_by,
                    &token.revoked,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn viewer_token_by_hash(
        &self,
        secret_hash: &Hash,
    ) -> StoreResult<Option<ViewerTokenRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("{TOKEN_COLUMNS} WHERE secret_hash = $1"))
            .await
            .map_err(pg_error)?;
        client
            .query_opt(&stmt, &[&&secret_hash[..]])
            .await
            .map_err(pg_error)?
            .map(|r| token_row(&r))
            .transpose()
    }

    async fn viewer_tokens(
        &self,
        tenant: Option<&TenantName>,
        expiring_after: i64,
    ) -> StoreResult<Vec<ViewerTokenRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!(
                    "{TOKEN_COLUMNS} WHERE expires_at > $1 AND ($2::text IS NULL OR tenant = $2)
                     ORDER BY created_at DESC, id"
                ),
                &[&expiring_after, &tenant.map(TenantName::as_str)],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(token_row)
            .collect()
    }

    async fn revoke_viewer_token(
        &self,
        id: &str,
        tenant: Option<&TenantName>,
    ) -> StoreResult<Option<ViewerTokenRecord>> {
        // One statement: the row as it was, revoked only if it is in `tenant` (when given).
        let client = self.client().await?;
        client
            .query_opt(
                "WITH before AS (
                     SELECT id, tenant, secret_hash, created_at, expires_at, created_by, revoked
                     FROM viewer_tokens
                     WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)
                     FOR UPDATE
                 ), updated AS (
                     UPDATE viewer_tokens v SET revoked = true FROM before b WHERE v.id = b.id
                 )
                 SELECT * FROM before",
                &[&id, &tenant.map(TenantName::as_str)],
            )
            .await
            .map_err(pg_error)?
            .map(|r| token_row(&r))
            .transpose()
    }

    async fn insert_destination(&self, d: &DestinationRecord) -> StoreResult<()> {
        self.delivery_insert_destination(d).await
    }

    async fn destinations(&self) -> StoreResult<Vec<DestinationRecord>> {
        self.delivery_destinations().await
    }

    async fn delete_destination(&self, id: &str) -> StoreResult<bool> {
        self.delivery_delete_destination(id).await
    }

    async fn disable_destination(&self, id: &str, reason: &str) -> StoreResult<bool> {
        self.delivery_disable_destination(id, reason).await
    }

    async fn update_destination_spec(&self, id: &str, spec: &str) -> StoreResult<bool> {
        self.delivery_update_spec("delivery_destinations", id, spec)
            .await
    }

    async fn delivery_positions(&self, destination_id: &str) -> StoreResult<Vec<DeliveryPosition>> {
        self.delivery_positions_of(destination_id).await
    }

    async fn save_delivery_position(&self, position: &DeliveryPosition) -> StoreResult<()> {
        self.delivery_save_position(position).await
    }

    async fn insert_alert_rule(&self, rule: &AlertRuleRecord) -> StoreResult<()> {
        self.delivery_insert_rule(rule).await
    }

    async fn alert_rules(&self) -> StoreResult<Vec<AlertRuleRecord>> {
        self.delivery_rules().await
    }

    async fn delete_alert_rule(&self, id: &str) -> StoreResult<bool> {
        self.delivery_delete_rule(id).await
    }

    async fn update_alert_rule_spec(&self, id: &str, spec: &str) -> StoreResult<bool> {
        self.delivery_update_spec("alert_rules", id, spec).await
    }

    async fn alert_state(&self, rule_id: &str, tenant: &TenantName) -> StoreResult<Option<String>> {
        self.delivery_rule_state(rule_id, tenant).await
    }

    async fn save_alert_state(
        &self,
        rule_id: &str,
        tenant: &TenantName,
        state: &str,
    ) -> StoreResult<()> {
        self.delivery_save_rule_state(rule_id, tenant, state).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_micros: i64,
    ) -> StoreResult<bool> {
        self.delivery_acquire_lease(name, holder, now, ttl_micros)
            .await
    }
}

const TOKEN_COLUMNS: &str =
    "SELECT id, tenant, secret_hash, created_at, expires_at, created_by, revoked
     FROM viewer_tokens";

fn token_row(r: &tokio_postgres::Row) -> StoreResult<ViewerTokenRecord> {
    let tenant: &str = r.get(1);
    Ok(ViewerTokenRecord {
        id: r.get(0),
        tenant: TenantName::parse(tenant)
            .map_err(|e| StoreError::Corrupt(format!("viewer token tenant: {e}")))?,
        secret_hash: hash32(r.get(2))?,
        created_at: r.get(3),
        expires_at: r.get(4),
        created_by: r.get(5),
        revoked: r.get(6),
    })
}

pub(crate) fn hash32(b: &[u8]) -> StoreResult<Hash> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt(format!("a stored hash has {} bytes, not 32", b.len())))
}

fn cosignature_row(r: &tokio_postgres::Row) -> StoredCosignature {
    StoredCosignature {
        size: r.get::<_, i64>(0) as u64,
        witness: r.get(1),
        key_id: r.get::<_, i64>(2) as u32,
        time: r.get::<_, i64>(3) as u64,
        line: r.get(4),
        received_at: r.get(5),
    }
}

fn checkpoint_row(r: &tokio_postgres::Row) -> StoreResult<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: r.get::<_, i64>(0) as u64,
        root: hash32(r.get(1))?,
        note: r.get(2),
        created_at: r.get(3),
    })
}

const KEY_COLUMNS: &str =
    "SELECT id, name, scope, tenant, secret_hash, created_at, last_used_at, revoked FROM api_keys";

fn key_row(r: &tokio_postgres::Row) -> StoreResult<ApiKeyRecord> {
    let scope: &str = r.get(2);
    let tenant: Option<&str> = r.get(3);
    let scope =
        Scope::parse(scope).ok_or_else(|| StoreError::Corrupt(format!("key scope `{scope}`")))?;
    let tenant = tenant
        .map(TenantName::parse)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("key tenant: {e}")))?;
    Ok(ApiKeyRecord {
        id: r.get(0),
        name: r.get(1),
        scope,
        tenant,
        secret_hash: hash32(r.get(4))?,
        created_at: r.get(5),
        last_used_at: r.get(6),
        revoked: r.get(7),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitacora_store::conformance;
    use bitacora_store::sketch::{actors, areas};
    use chrono::Datelike as _;
    use testing::TestDatabase;
    use tokio_postgres::NoTls;

    /// A store on a fresh database, or `None` (skip) when PostgreSQL is unreachable outside CI.
    /// A store of 20,000 events, two weeks a minute apart (`conformance::timed_events`),
    /// with statistics (`ANALYZE`), for the tests that hold query plans.
    async fn analyzed() -> Option<(PgStore, TestDatabase)> {
        let (store, db) = open().await?;
        let events = conformance::timed_events("default", 20_000, "2026-01-01T00:00:00Z", 60);
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            store
                .append(events.by_ref().take(2_000).collect())
                .await
                .unwrap();
        }
        let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute("ANALYZE").await.unwrap();
        Some((store, db))
    }

    async fn open() -> Option<(PgStore, TestDatabase)> {
        let db = TestDatabase::create().await?;
        let options = PgOptions {
            // The conformance suite checks exact totals: never estimate them here.
            total_budget: Duration::from_secs(600),
            ..PgOptions::default()
        };
        let store = PgStore::open(db.url(), options)
            .await
            .expect("open the store");
        Some((store, db))
    }

    #[tokio::test]
    async fn totals_past_the_budget_are_estimated() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let options = PgOptions {
            total_budget: Duration::ZERO,
            ..PgOptions::default()
        };
        let store = PgStore::open(db.url(), options).await.unwrap();
        conformance::totals_past_the_budget_are_estimated(&store).await;
        store.close().await.unwrap();
    }

    conformance::suite!({
        let Some((store, db)) = open().await else {
            return;
        };
        (std::sync::Arc::new(store) as std::sync::Arc<dyn Store>, db)
    });

    async fn partitions(db: &TestDatabase) -> Vec<String> {
        let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .query(
                "SELECT c.relname::text FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'events'::regclass ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    #[tokio::test]
    async fn partitions_are_created_ahead_and_on_demand() {
        let Some((store, db)) = open().await else {
            return;
        };
        let now = chrono::Utc::now();
        let names = partitions(&db).await;
        for months in 0..=3 {
            let month = now
                .date_naive()
                .with_day(1)
                .unwrap()
                .checked_add_months(chrono::Months::new(months))
                .unwrap();
            let name = format!("events_{}", month.format("%Y_%m"));
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        // An event received in a month nobody created (a skewed clock, an import) gets one.
        let mut events = conformance::sample_events(&["far"]);
        events[0].event.received_at = "2031-07-04T00:00:00Z".parse().unwrap();
        store.append(events).await.unwrap();
        assert!(partitions(&db).await.contains(&"events_2031_07".to_owned()));
        let found = store
            .event_by_id(&TenantName::default_tenant(), "far")
            .await
            .unwrap();
        assert_eq!(found.unwrap().seq, 0);
        store.close().await.unwrap();
    }

    /// PostgreSQL restarted (fast, then crashed with `immediate`) under appends from several
    /// tasks: every append either is acknowledged and stays stored as acknowledged, or fails
    /// with `Unavailable` having stored nothing (resending it stores it, never finds it
    /// there); the store recovers by itself; the log stays gapless with one tree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_under_appends_acknowledges_exactly_what_committed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use testing::{PrivateCluster, Shutdown};

        let Some(cluster) = PrivateCluster::create().await else {
            return;
        };
        let url = cluster.create_database("restart").await;
        let store = Arc::new(PgStore::open(&url, PgOptions::default()).await.unwrap());
        let tenant = TenantName::default_tenant();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> = (0..5).map(|i| format!("w{w}-{n}-{i}")).collect();
                    n += 1;
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    match store.append(conformance::sample_events(&refs)).await {
                        Ok(outcomes) => acked.extend(outcomes),
                        Err(StoreError::Unavailable(_)) => {
                            failed.push(ids);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(other) => panic!("an append failed with {other:?}, not Unavailable"),
                    }
                }
                (acked, failed)
            }));
        }
        for how in [Shutdown::Fast, Shutdown::Immediate] {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.restart(how).await;
            // Recovered without reopening the store.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while store.ping().await.is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no recovery after {how:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        let mut failed = Vec::new();
        for t in tasks {
            let (a, f) = t.await.unwrap();
            acked.extend(a);
            failed.extend(f);
        }
        assert!(
            !failed.is_empty(),
            "the restarts failed no append: not a test of them"
        );
        // Read the log once (before the resends below): what was acknowledged is there.
        let acked_size = store.log_size(&tenant).await.unwrap();
        let mut stored = Vec::new();
        for seq in 0..acked_size {
            let e = store.event_by_seq(&tenant, seq).await.unwrap();
            stored.push(e.unwrap_or_else(|| panic!("seq {seq} missing")).leaf_hash);
        }
        for outcome in &acked {
            let AppendOutcome::Stored { id, seq, leaf_hash } = outcome else {
                panic!("fresh ids acknowledged as {outcome:?}");
            };
            // The leaf hash covers the whole event, its id included.
            assert_eq!(
                stored.get(*seq as usize),
                Some(leaf_hash),
                "acknowledged {id} lost"
            );
        }
        // A failed append stored nothing: resending it stores it now.
        for ids in &failed {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            for outcome in store
                .append(conformance::sample_events(&refs))
                .await
                .unwrap()
            {
                assert!(
                    matches!(outcome, AppendOutcome::Stored { .. }),
                    "an append answered Unavailable had been committed: {outcome:?}"
                );
            }
        }
        let size = store.log_size(&tenant).await.unwrap();
        assert_eq!(size as usize, acked.len() + failed.len() * 5);
        let mut leaves = stored;
        for seq in acked_size..size {
            let e = store.event_by_seq(&tenant, seq).await.unwrap();
            leaves.push(e.unwrap_or_else(|| panic!("seq {seq} missing")).leaf_hash);
        }
        let ids = bitacora_core::merkle::root_nodes(size);
        let hashes = store.tree_nodes(&tenant, &ids).await.unwrap();
        let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
        let root =
            bitacora_core::merkle::root_from_nodes(size, |id| Ok::<_, ()>(map[&id])).unwrap();
        assert_eq!(root, bitacora_core::merkle::root_from_leaves(&leaves));
        store.close().await.unwrap();
    }

    /// The question the writer asks when a COMMIT's reply is lost, answered across a real
    /// crash: a transaction committed just before it is `Committed`, one cut off before its
    /// COMMIT is `NotCommitted`, and one still open is neither (asked again later).
    #[tokio::test]
    async fn a_lost_commit_is_resolved_by_its_transaction_status_across_a_crash() {
        use testing::{PrivateCluster, Shutdown};
        use writer::{Resolution, transaction_status};

        let Some(cluster) = PrivateCluster::create().await else {
            return;
        };
        let url = cluster.create_database("doubt").await;
        let store = PgStore::open(&url, PgOptions::default()).await.unwrap();
        let connect = async || {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        };
        let xid_of = async |client: &tokio_postgres::Client| -> i64 {
            client
                .query_one("SELECT txid_current()", &[])
                .await
                .unwrap()
                .get(0)
        };
        let app = connect().await;
        app.batch_execute("CREATE TABLE t (v int)").await.unwrap();

        app.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let committed = xid_of(&app).await;
        app.batch_execute("COMMIT").await.unwrap();
        let open = connect().await;
        open.batch_execute("BEGIN; INSERT INTO t VALUES (2)")
            .await
            .unwrap();
        let cut_off = xid_of(&open).await;
        assert_eq!(
            transaction_status(&store.pool, cut_off).await.unwrap(),
            None,
            "an open transaction is in progress"
        );

        cluster.restart(Shutdown::Immediate).await;
        // Asked until PostgreSQL answers, as the writer does.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ask = async |xid| loop {
            match transaction_status(&store.pool, xid).await {
                Ok(answer) => return answer,
                Err(e) => {
                    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
                    assert!(std::time::Instant::now() < deadline, "no answer: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(ask(committed).await, Some(Resolution::Committed));
        assert_eq!(ask(cut_off).await, Some(Resolution::NotCommitted));
        // An id beyond anything the recovered server assigned never committed either.
        assert_eq!(
            ask(cut_off + 1_000_000).await,
            Some(Resolution::NotCommitted)
        );
        let rows: i64 = connect()
            .await
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 1);
        store.close().await.unwrap();
    }

    /// Two stores (as two servers would) appending to the same tenants at once: one gapless
    /// log per tenant, one tree, every id stored once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_on_one_database_sequence_the_same_tenants() {
        let Some((first, db)) = open().await else {
            return;
        };
        let second = PgStore::open(db.url(), PgOptions::default()).await.unwrap();
        let stores = [Arc::new(first), Arc::new(second)];
        let mut tasks = Vec::new();
        for w in 0..8usize {
            let store = stores[w % 2].clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..10 {
                    let ids: Vec<String> = (0..25)
                        .map(|i| {
                            // A shared id series reaches both stores at about the same time.
                            if i % 5 == 0 {
                                format!("s-{n}-{i}")
                            } else {
                                format!("w{w}-{n}-{i}")
                            }
                        })
                        .collect();
                    let mut events = Vec::new();
                    for (i, id) in ids.iter().enumerate() {
                        let tenant = if i % 5 != 0 && i % 2 == 1 {
                            "other"
                        } else {
                            "default"
                        };
                        events.extend(conformance::sample_events_in(tenant, &[id.as_str()]));
                    }
                    store.append(events).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let shared = 10 * 5;
        let own = 8 * 10 * 20;
        let mut total = 0;
        for tenant in [
            TenantName::default_tenant(),
            TenantName::parse("other").unwrap(),
        ] {
            let size = stores[0].log_size(&tenant).await.unwrap();
            total += size;
            let mut leaves = Vec::new();
            for seq in 0..size {
                let e = stores[1].event_by_seq(&tenant, seq).await.unwrap();
                leaves.push(
                    e.unwrap_or_else(|| panic!("{tenant}: seq {seq} missing"))
                        .leaf_hash,
                );
            }
            let ids = bitacora_core::merkle::root_nodes(size);
            let hashes = stores[0].tree_nodes(&tenant, &ids).await.unwrap();
            let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
            let root =
                bitacora_core::merkle::root_from_nodes(size, |id| Ok::<_, ()>(map[&id])).unwrap();
            assert_eq!(
                root,
                bitacora_core::merkle::root_from_leaves(&leaves),
                "{tenant}"
            );
        }
        assert_eq!(total as usize, shared + own);
        for s in stores {
            s.close().await.unwrap();
        }
    }

    /// Whether each session named `application` is encrypted.
    async fn sessions_encrypted(db: &TestDatabase, application: &str) -> Vec<bool> {
        let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.datname = current_database() AND a.application_name = $1",
                &[&application],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// `db.url()` with `params` added to its query.
    fn with_params(db: &TestDatabase, params: &str) -> String {
        let sep = if db.url().contains('?') { '&' } else { '?' };
        format!("{}{sep}{params}", db.url())
    }

    #[tokio::test]
    async fn sslmode_is_honoured_as_libpq_does() {
        let Some((plain, db)) = open().await else {
            return;
        };
        plain.close().await.unwrap();
        let (admin, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        if ssl != "on" {
            // A server setting, not reachability: the test cannot run, and says so.
            eprintln!("skipped: this PostgreSQL server has ssl = off");
            return;
        }
        let cert_file: String = admin
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .unwrap()
            .get(0);

        // require: encrypted, whatever certificate the server shows.
        let store = PgStore::open(
            &with_params(&db, "sslmode=require&application_name=tls-require"),
            PgOptions::default(),
        )
        .await
        .unwrap();
        store
            .append(conformance::sample_events_in("default", &["tls-1"]))
            .await
            .unwrap();
        let encrypted = sessions_encrypted(&db, "tls-require").await;
        assert!(
            !encrypted.is_empty() && encrypted.iter().all(|e| *e),
            "{encrypted:?}"
        );
        store.close().await.unwrap();

        // disable: plain.
        let store = PgStore::open(
            &with_params(&db, "sslmode=disable&application_name=tls-disable"),
            PgOptions::default(),
        )
        .await
        .unwrap();
        let encrypted = sessions_encrypted(&db, "tls-disable").await;
        assert!(
            !encrypted.is_empty() && encrypted.iter().all(|e| !*e),
            "{encrypted:?}"
        );
        store.close().await.unwrap();

        // verify-ca with the server's own (self-signed) certificate as the root: the chain
        // checks out, the name (127.0.0.1 is not in the certificate) is not compared.
        let root = format!("sslrootcert={}", cert_file.replace('/', "%2F"));
        let store = PgStore::open(
            &with_params(&db, &format!("sslmode=verify-ca&{root}")),
            PgOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            store.log_size(&TenantName::default_tenant()).await.unwrap(),
            1
        );
        store.close().await.unwrap();

        // verify-full: the same certificate does not name 127.0.0.1, so no connection.
        let err = PgStore::open(
            &with_params(&db, &format!("sslmode=verify-full&{root}")),
            PgOptions::default(),
        )
        .await
        .expect_err("verify-full must refuse a certificate for another name");
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Internal(_)),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains("certificate"), "{message}");

        // verify-ca against a root that did not sign the server's certificate.
        let other = rcgen::generate_simple_self_signed(vec!["elsewhere".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let other_root = dir.path().join("other.pem");
        std::fs::write(&other_root, other.cert.pem()).unwrap();
        let err = PgStore::open(
            &with_params(
                &db,
                &format!(
                    "sslmode=verify-ca&sslrootcert={}",
                    other_root.display().to_string().replace('/', "%2F")
                ),
            ),
            PgOptions::default(),
        )
        .await
        .expect_err("verify-ca must refuse a certificate from another authority");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    /// The query of a search's URL parameters (`a=1&b=2`), for the plan tests.
    fn query(params: &str) -> EventQuery {
        let pairs: Vec<(&str, &str)> = params
            .split('&')
            .map(|p| p.split_once('=').unwrap())
            .collect();
        EventQuery::parse(pairs, &TenantName::default_tenant()).unwrap()
    }

    /// The plans of time-window searches, held: the first page of a window (alone and with
    /// each kind of filter, both orders) reads one zone-map span through an index that ends
    /// with `seq`, already in page order, and never sorts the window's events nor drives the
    /// scan from the `occurred_at` index (which would read every event of the window to
    /// return the first 50). On 20,000 analyzed events, two weeks a minute apart; the blocks
    /// of the tests' build are 64 events.
    #[tokio::test]
    async fn window_plans_read_one_span_in_seq_order() {
        let Some((store, _db)) = analyzed().await else {
            return;
        };

        let mut pooled = store.client().await.unwrap();
        let window = "since=2026-01-07T00:00:00Z&until=2026-01-08T00:00:00Z";
        for filter in [
            "",
            "&action=user.login",
            "&action=user.*",
            "&category=user",
            "&actor_id=u3",
            "&target_type=device&target_id=d3",
            "&outcome=failure",
            "&severity=low",
            "&ip=10.0.1.0/24",
            "&ip=10.0.1.7",
            "&source=web",
            "&actor=user 7",
        ] {
            for order in ["", "&order=asc"] {
                let params = format!("{window}{filter}{order}");
                let plan = read::explain_page(&mut pooled, &query(&params))
                    .await
                    .unwrap();
                // (`Merge Append` names its sort key: merging sorted inputs is not sorting.)
                let sorts = plan.lines().any(|l| {
                    let node = l.trim_start().trim_start_matches("->").trim_start();
                    node.starts_with("Sort  (") || node.starts_with("Incremental Sort")
                });
                assert!(!sorts, "{params}: sorts\n{plan}");
                assert!(
                    !plan.contains("events_occurred") && !plan.contains("occurred_at_idx"),
                    "{params}: driven by occurred_at\n{plan}"
                );
                assert!(
                    plan.contains("Index Scan") || plan.contains("Index Only Scan"),
                    "{params}: no index scan\n{plan}"
                );
                // (The partitions created ahead are empty: scanning them costs nothing.)
                assert!(
                    !plan.contains("Seq Scan on events_2026_01"),
                    "{params}: scans\n{plan}"
                );
            }
        }
        store.close().await.unwrap();
    }

    /// An actor's severity and outcome are checked on its index entries (migration 13):
    /// index conditions, not a filter on fetched rows, so an actor with thousands of events
    /// and none critical reads none of them from the table to say so. A set of severities is
    /// compared as its range (PostgreSQL checks `= ANY` on a later key column only after the
    /// fetch).
    #[tokio::test]
    async fn an_actors_severity_and_outcome_are_index_conditions() {
        let Some((store, _db)) = analyzed().await else {
            return;
        };
        let mut pooled = store.client().await.unwrap();
        for params in [
            "actor_id=u3&severity=critical",
            "actor_id=u3&min_severity=high",
            "actor_id=u3&outcome=failure",
            "actor_id=u3&severity=low,critical&outcome=success",
            "actor_id=u3&min_severity=medium&order=asc",
        ] {
            let plan = read::explain_page(&mut pooled, &query(params))
                .await
                .unwrap();
            let conds: Vec<&str> = plan
                .lines()
                .filter(|l| l.contains("Index Cond") && l.contains("actor_id"))
                .collect();
            assert!(!conds.is_empty(), "{params}: not read by actor\n{plan}");
            for column in ["severity", "outcome"] {
                if params.contains(column) {
                    assert!(
                        conds.iter().all(|l| l.contains(column)),
                        "{params}: {column} is not an index condition\n{plan}"
                    );
                }
            }
        }
        store.close().await.unwrap();
    }

    /// The plans that count full-text matches, held: row by row, a range's count reads the
    /// range through a B-tree index and checks the stored document on each row, never the
    /// GIN index (which has no seq order: it would read the term's every match in the log);
    /// from the posting list, the GIN index alone is read, never intersected with another
    /// index (the rest of the filter is checked on the term's rows). On 20,000 analyzed
    /// events, one term in every event and one in a single event.
    #[tokio::test]
    async fn full_text_counts_read_the_range_row_by_row() {
        let Some((store, _db)) = analyzed().await else {
            return;
        };

        let mut pooled = store.client().await.unwrap();
        for params in [
            "q=evento&page=2",
            "q=evento&source=web&page=2",
            "q=evento&since=2026-01-07&until=2026-01-08&page=2",
        ] {
            let plan = read::explain_count(&mut pooled, &query(params), (4_096, 8_191), true)
                .await
                .unwrap();
            assert!(
                !plan.contains("fts_doc_idx"),
                "{params}: counted through the full-text index\n{plan}"
            );
            assert!(plan.contains("Index Scan"), "{params}: no index\n{plan}");
        }
        for params in ["q=12345&page=2", "q=12345&action=user.login&page=2"] {
            let plan = read::explain_count(&mut pooled, &query(params), (0, 19_999), false)
                .await
                .unwrap();
            assert!(
                plan.contains("Bitmap Index Scan") && plan.contains("fts_doc_idx"),
                "{params}: not counted from the full-text index\n{plan}"
            );
            assert!(
                !plan.contains("BitmapAnd"),
                "{params}: intersected with another index\n{plan}"
            );
        }
        store.close().await.unwrap();
    }

    /// The SQL functions the migration and `verify` use for an address's area bit and an
    /// actor's bit are the Rust ones the writer and searches use (`bitacora_store::sketch`).
    #[tokio::test]
    async fn sketch_bits_agree_in_sql_and_rust() {
        let Some((store, db)) = open().await else {
            return;
        };
        let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut addresses: Vec<std::net::IpAddr> = [
            "10.1.2.3",
            "0.0.0.0",
            "255.255.255.255",
            "192.168.1.100",
            "::1",
            "::",
            "2001:db8::1",
            "ffff:ffff::1",
            "::fffe:1.2.3.4",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        addresses.extend((0..200u32).map(|i| {
            std::net::IpAddr::from(std::net::Ipv4Addr::from(i.wrapping_mul(0x9E37_79B9)))
        }));
        for ip in addresses {
            let blob = bitacora_store::derive::ip_blob(ip);
            let sql: i32 = client
                .query_one("SELECT bitacora_area_bit($1)", &[&&blob[..]])
                .await
                .unwrap()
                .get(0);
            assert_eq!(sql, i32::from(areas::bit(&blob)), "{ip}");
        }
        for actor in ["42", "", "u1", "Usuario Ñandú", "🦀", "a\u{0}b"] {
            let sql: i32 = client
                .query_one("SELECT bitacora_actor_bit($1)", &[&actor])
                .await
                .map(|r| r.get(0))
                // PostgreSQL text cannot hold NUL; neither can an actor id stored there.
                .unwrap_or(i32::from(actors::bit(actor)));
            assert_eq!(sql, i32::from(actors::bit(actor)), "{actor:?}");
        }
        store.close().await.unwrap();
    }

    /// Migration 12 sets what the writer sets, `verify` holds the sketches to the events, and
    /// a network no event came from, or an actor with an action they never did, is empty.
    #[tokio::test]
    async fn facet_sketches_are_backfilled_and_checked() {
        let Some((store, db)) = open().await else {
            return;
        };
        let t = TenantName::default_tenant();
        let events = conformance::timed_events("default", 6_000, "2026-01-01T00:00:00Z", 60);
        for chunk in events.chunks(1_500) {
            store.append(chunk.to_vec()).await.unwrap();
        }
        let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        tokio::spawn(connection);
        let sketches = "SELECT string_agg(concat_ws(',', areas_0, areas_1, areas_2, areas_3,
                                                    actors_0, actors_1, actors_2, actors_3), ' '
                                          ORDER BY action, category, severity, outcome, source,
                                                   block)
                        FROM event_facets";
        let written: String = client.query_one(sketches, &[]).await.unwrap().get(0);
        assert!(written.split([' ', ',']).any(|w| w != "0"), "{written}");
        store.close().await.unwrap();
        client
            .batch_execute(
                "ALTER TABLE event_facets DROP COLUMN areas_0, DROP COLUMN areas_1,
                     DROP COLUMN areas_2, DROP COLUMN areas_3, DROP COLUMN actors_0,
                     DROP COLUMN actors_1, DROP COLUMN actors_2, DROP COLUMN actors_3;
                 ALTER TABLE facet_counts DROP COLUMN areas_0, DROP COLUMN areas_1,
                     DROP COLUMN areas_2, DROP COLUMN areas_3, DROP COLUMN actors_0,
                     DROP COLUMN actors_1, DROP COLUMN actors_2, DROP COLUMN actors_3;
                 DROP FUNCTION bitacora_sketch_word(integer, integer);
                 DROP FUNCTION bitacora_area_bit(bytea);
                 DROP FUNCTION bitacora_actor_bit(text);
                 DELETE FROM bitacora_migrations WHERE version = 12;",
            )
            .await
            .unwrap();
        let store = PgStore::open(db.url(), PgOptions::default()).await.unwrap();
        let backfilled: String = client.query_one(sketches, &[]).await.unwrap().get(0);
        assert_eq!(backfilled, written);
        assert_eq!(store.check_summaries(&t).await.unwrap(), None);
        let q = |params: &str| {
            let pairs: Vec<(&str, &str)> = params
                .split('&')
                .map(|p| p.split_once('=').unwrap())
                .collect();
            EventQuery::parse(pairs, &t).unwrap()
        };
        for (params, empty) in [
            ("ip=203.0.113.0/24", true),
            ("ip=203.0.113.0/24&severity=high", true),
            ("ip=10.0.0.0/8&outcome=failure", false),
            ("actor_id=nobody", true),
            // u1 is an odd event's actor; user.login is every fourth event's action, from 0.
            ("actor_id=u1&action=user.login", true),
            ("actor_id=u1&action=user.logout", false),
        ] {
            let found = store.search(&q(params)).await.unwrap();
            assert_eq!(found.events.is_empty(), empty, "{params}");
        }
        client
            .batch_execute(
                "UPDATE event_facets SET areas_0 = 0, areas_1 = 0, areas_2 = 0, areas_3 = 0
                 WHERE block = 1",
            )
            .await
            .unwrap();
        let m = store
            .check_summaries(&t)
            .await
            .unwrap()
            .expect("a mismatch");
        assert_eq!(m.summary, "event_facets", "{m:?}");
        assert!(m.reason.contains("sketches"), "{m:?}");
        store.close().await.unwrap();
    }
}
