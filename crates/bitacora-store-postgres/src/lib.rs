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

use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bitacora_core::TenantName;
use bitacora_core::api::{ActionSummary, ActorSummary, Stats};
use bitacora_core::canonical::{Hash, SealedEvent};
use bitacora_core::merkle::NodeId;
use bitacora_core::query::EventQuery;
use bitacora_store::{
    ApiKeyRecord, AppendOutcome, Scope, SearchResult, Store, StoreError, StoreResult,
    StoredCheckpoint, StoredEvent,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

mod derive;
pub mod migrate;
pub mod partitions;
mod read;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tree;
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
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_batch_events: 20_000,
            pool_size: 16,
            months_ahead: 3,
        }
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    pool: Pool,
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
    /// One permit per event that may wait for the writer.
    permits: Arc<Semaphore>,
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
    if e.is_closed() || io {
        StoreError::Unavailable(format!("PostgreSQL connection: {e}"))
    } else {
        StoreError::Internal(format!("PostgreSQL: {e}"))
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
    /// writer. `url` is a libpq-style URL (`postgres://user:pass@host:port/db`); TLS is not
    /// supported yet (`sslmode=require` fails to connect).
    pub async fn open(url: &str, options: PgOptions) -> StoreResult<Self> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The URL is not repeated: it may hold a password.
            StoreError::Internal(format!("invalid PostgreSQL URL: {e}"))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
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
        let writer = tokio::spawn(
            writer::Writer::new(
                pool.clone(),
                rx,
                permits.clone(),
                options.max_batch_events.max(1),
                partitions.clone(),
            )
            .run(),
        );
        let maintenance = tokio::spawn(partitions::maintain(
            pool.clone(),
            partitions,
            options.months_ahead,
        ));
        Ok(Self {
            pool,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            maintenance: Mutex::new(Some(maintenance)),
            permits,
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

    async fn search(&self, query: &EventQuery) -> StoreResult<SearchResult> {
        let client = self.client().await?;
        read::search(&client, query).await
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
        let client = self.client().await?;
        read::stats(&client, tenant, since, until, top).await
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
}

pub(crate) fn hash32(b: &[u8]) -> StoreResult<Hash> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt(format!("a stored hash has {} bytes, not 32", b.len())))
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
    use testing::TestDatabase;

    /// A store on a fresh database, or `None` (skip) when PostgreSQL is unreachable outside CI.
    async fn open() -> Option<(PgStore, TestDatabase)> {
        let db = TestDatabase::create().await?;
        let store = PgStore::open(db.url(), PgOptions::default())
            .await
            .expect("open the store");
        Some((store, db))
    }

    conformance::suite!({
        let Some((store, db)) = open().await else {
            return;
        };
        (std::sync::Arc::new(store) as std::sync::Arc<dyn Store>, db)
    });
}
