//! The writer: group commit and sequencing, safe with several servers on one database.
//!
//! One task per process takes the first waiting append, then every append already queued (up
//! to `max_batch_events` events), and commits them in one transaction: one WAL flush
//! acknowledges them all. Inside that transaction it locks the `tenants` row of every tenant
//! in the batch (`SELECT ... ORDER BY id FOR UPDATE`: always in id order, so two servers
//! never deadlock) and reads each log's size and Merkle frontier from those rows. Another
//! server appending to the same tenant waits for the lock and then reads what this one
//! committed, so `seq` stays gapless and the tree linear however many servers write; this
//! process keeps no log state in memory.
//!
//! **Commit seals.** When a commit key is installed, the same transaction upserts each
//! touched tenant's seal (`bitacora_core::seal`), read under the row lock with the log's
//! state: the new seal carries the stored seal's `base` only when that seal verifies and
//! describes exactly the log read under the lock (same size, same root of the frontier);
//! otherwise `base` is the size read (rows this writer did not write are not vouched for).
//! The checkpointer signs only what a seal explains.
//!
//! The rows go in with one binary `COPY` per batch; tree nodes, log state and counters with
//! one `unnest` statement each.
//!
//! **A commit whose reply is lost is resolved, never guessed.** When PostgreSQL restarts or
//! crashes, or the connection drops, while `COMMIT` is in flight, the transaction may have
//! committed or not. Answering "failed" for a committed batch would make clients resend events
//! the log already holds (new ids for events sent without one); answering "stored" for a
//! rolled-back one would lose acknowledged events. So the writer remembers the transaction's
//! id (`txid_current()`, assigned anyway by the row locks) and, when `COMMIT` fails, asks a
//! fresh connection `txid_status` until PostgreSQL answers ([`IN_DOUBT_PATIENCE`]): committed
//! → the outcomes are acknowledged; aborted → `Unavailable`, and the clients retry. Only if
//! PostgreSQL stays unreachable that long is the answer `Unavailable` with the outcome
//! unknown; a retry with the same event ids is then safe (duplicates are acknowledged with
//! their original `seq`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bitacora_core::Event;
use bitacora_core::canonical::{Fingerprint, Hash, SealedEvent};
use bitacora_core::merkle::CompactRange;
use bitacora_core::seal::{CommitKey, CommitSeal};
use bitacora_store::{AppendOutcome, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::partitions::Partitions;
use crate::tree::STORED_LEVEL;
use crate::window::BlockDeltas;
use crate::{addresses, facets, rollup};
use crate::{derive, hash32, pg_error, pool_error};

/// An event with everything the writer needs precomputed (on the caller's task).
pub struct Prepared {
    pub sealed: SealedEvent,
    pub actor_search: Option<String>,
    pub ip: Option<[u8; 16]>,
    pub fts_text: String,
}

impl Prepared {
    pub fn new(sealed: SealedEvent) -> Self {
        let e = &sealed.event;
        Self {
            actor_search: derive::actor_search(e),
            ip: e.context.ip_addr().map(derive::ip_blob),
            fts_text: derive::fts_text(e),
            sealed,
        }
    }
}

pub struct Job {
    pub events: Vec<Prepared>,
    pub reply: oneshot::Sender<StoreResult<Vec<AppendOutcome>>>,
}

/// The columns the COPY writes, in order.
const COPY_EVENTS: &str = "COPY events (tenant_id, seq, received_at, event_id, occurred_at,
    action, category, severity, outcome, actor_id, actor_search, target_type, target_id, ip,
    source, fingerprint, leaf_hash, body, fts) FROM STDIN BINARY";

const COPY_TYPES: [Type; 19] = [
    Type::INT4,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::INT2,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
];

/// How often a commit that lost a deadlock or serialization race is retried.
const RETRIES: usize = 3;

/// How long the writer keeps asking whether a commit whose reply was lost committed, before
/// answering that its outcome is unknown.
const IN_DOUBT_PATIENCE: Duration = Duration::from_secs(30);
/// The pause between two such questions while PostgreSQL is unreachable.
const IN_DOUBT_PAUSE: Duration = Duration::from_millis(200);

/// What PostgreSQL says of a transaction whose `COMMIT` got no reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    Committed,
    NotCommitted,
}

pub struct Writer {
    pool: Pool,
    rx: mpsc::UnboundedReceiver<Job>,
    permits: Arc<Semaphore>,
    max_batch_events: usize,
    partitions: Arc<Partitions>,
    /// Tenant ids by name. An id never changes once assigned, so this cache cannot go stale
    /// (unlike a log's size, which is always read under the lock).
    tenant_ids: HashMap<String, i32>,
    /// The key commits are sealed with, installed at run time (none: no seals).
    commit_key: Arc<RwLock<Option<CommitKey>>>,
}

impl Writer {
    pub fn new(
        pool: Pool,
        rx: mpsc::UnboundedReceiver<Job>,
        permits: Arc<Semaphore>,
        max_batch_events: usize,
        partitions: Arc<Partitions>,
        commit_key: Arc<RwLock<Option<CommitKey>>>,
    ) -> Self {
        Self {
            pool,
            rx,
            permits,
            max_batch_events,
            partitions,
            tenant_ids: HashMap::new(),
            commit_key,
        }
    }

    /// Runs until every sender is gone, committing what is queued, then returns.
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut n = first.events.len();
            let mut jobs = vec![first];
            while n < self.max_batch_events {
                match self.rx.try_recv() {
                    Ok(job) => {
                        n += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_jobs(jobs, n).await;
        }
        tracing::debug!("PostgreSQL store writer stopped");
    }

    async fn commit_jobs(&mut self, jobs: Vec<Job>, n: usize) {
        let started = Instant::now();
        let mut result = self.commit(&jobs).await;
        for _ in 0..RETRIES {
            // A deadlock or serialization failure rolled everything back: safe to redo.
            match &result {
                Err(StoreError::Unavailable(m)) if m.starts_with("40") => {
                    result = self.commit(&jobs).await;
                }
                _ => break,
            }
        }
        metrics::histogram!("bitacora_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("bitacora_commit_events").record(n as f64);
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for job in jobs {
                    let k = job.events.len();
                    let mine: Vec<AppendOutcome> = outcomes.by_ref().take(k).collect();
                    self.permits.add_permits(k);
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = n, "group commit failed");
                for job in jobs {
                    self.permits.add_permits(job.events.len());
                    let err = match &e {
                        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
                        StoreError::Internal(m) => StoreError::Internal(m.clone()),
                    };
                    let _ = job.reply.send(Err(err));
                }
            }
        }
        metrics::gauge!("bitacora_writer_queue_depth")
            .set(crate::MAX_QUEUED_EVENTS.saturating_sub(self.permits.available_permits()) as f64);
    }

    /// Tenant ids for these names, creating the missing tenants (outside the append
    /// transaction, so that creating one never holds a lock another server waits on).
    async fn tenant_ids(
        &mut self,
        client: &tokio_postgres::Client,
        names: &BTreeSet<&str>,
    ) -> StoreResult<()> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.tenant_ids.contains_key(*n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        client
            .execute(
                "INSERT INTO tenants (name) SELECT unnest($1::text[]) ORDER BY 1
                 ON CONFLICT (name) DO NOTHING",
                &[&missing],
            )
            .await
            .map_err(pg_error)?;
        for r in client
            .query(
                "SELECT name, id FROM tenants WHERE name = ANY($1)",
                &[&missing],
            )
            .await
            .map_err(pg_error)?
        {
            self.tenant_ids.insert(r.get(0), r.get(1));
        }
        Ok(())
    }

    /// One transaction for every event of `jobs`; one outcome per event, in order.
    async fn commit(&mut self, jobs: &[Job]) -> StoreResult<Vec<AppendOutcome>> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let events: Vec<&Prepared> = jobs.iter().flat_map(|j| &j.events).collect();

        let names: BTreeSet<&str> = events
            .iter()
            .map(|p| p.sealed.event.tenant.as_str())
            .collect();
        self.tenant_ids(&client, &names).await?;
        self.partitions
            .ensure(&**client, events.iter().map(|p| p.sealed.event.received_at))
            .await?;

        let tx = client.transaction().await.map_err(pg_error)?;
        let mut tids: Vec<i32> = names.iter().map(|n| self.tenant_ids[*n]).collect();
        tids.sort_unstable();
        // The sequencer lock, and the truth about each log, in one statement.
        // The transaction id comes along: the row locks assign one anyway, and it is what
        // tells, after a lost COMMIT reply, whether the transaction committed.
        let mut logs: HashMap<i32, CompactRange> = HashMap::new();
        // Each log's stored seal and the base a new seal may carry (see the module docs).
        let commit_key = self
            .commit_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut bases: HashMap<i32, u64> = HashMap::new();
        let mut xid: Option<i64> = None;
        for r in tx
            .query(
                "SELECT id, size, frontier, txid_current() FROM tenants WHERE id = ANY($1)
                 ORDER BY id FOR UPDATE",
                &[&tids],
            )
            .await
            .map_err(pg_error)?
        {
            xid = Some(r.get(3));
            let id: i32 = r.get(0);
            let size: i64 = r.get(1);
            let frontier: &[u8] = r.get(2);
            let hashes = frontier
                .chunks(32)
                .map(hash32)
                .collect::<StoreResult<Vec<Hash>>>()?;
            let range = CompactRange::from_parts(size as u64, hashes).map_err(|e| {
                StoreError::Corrupt(format!("tenant {id}'s stored Merkle frontier: {e}"))
            })?;
            logs.insert(id, range);
        }
        if let Some(key) = &commit_key {
            // Read in a statement of its own, after the locks are held: in READ COMMITTED a
            // row joined to a locked row is not refreshed when the lock was waited for, so a
            // join would see the seal from before the other server's commit.
            let mut stored: HashMap<i32, CommitSeal> = HashMap::new();
            for r in tx
                .query(
                    "SELECT tenant_id, size, root, base, mac FROM commit_seals
                     WHERE tenant_id = ANY($1)",
                    &[&tids],
                )
                .await
                .map_err(pg_error)?
            {
                if let Some(seal) = seal_of(r.get(1), r.get(2), r.get(3), r.get(4)) {
                    stored.insert(r.get(0), seal);
                }
            }
            for name in &names {
                let id = self.tenant_ids[*name];
                if let Some(range) = logs.get(&id) {
                    bases.insert(
                        id,
                        key.carried_base(name, stored.get(&id), range.size(), &range.root()),
                    );
                }
            }
        }

        // Ids already stored (duplicates or conflicts), looked up under the lock so that an
        // event committed by another server a moment ago is seen.
        let mut lookup_t = Vec::new();
        let mut lookup_id = Vec::new();
        for p in &events {
            if !p.sealed.id_generated {
                lookup_t.push(self.tenant_ids[p.sealed.event.tenant.as_str()]);
                lookup_id.push(p.sealed.event.id.as_str());
            }
        }
        let mut known: HashMap<(i32, String), (u64, Hash, Fingerprint)> = HashMap::new();
        if !lookup_id.is_empty() {
            for r in tx
                .query(
                    "SELECT e.tenant_id, e.event_id, e.seq, e.leaf_hash, e.fingerprint
                     FROM events e
                     JOIN (SELECT DISTINCT * FROM unnest($1::int4[], $2::text[])) AS k(t, id)
                       ON e.tenant_id = k.t AND e.event_id = k.id",
                    &[&lookup_t, &lookup_id],
                )
                .await
                .map_err(pg_error)?
            {
                let fp: &[u8] = r.get(4);
                let fingerprint: Fingerprint = fp.try_into().map_err(|_| {
                    StoreError::Corrupt("a stored fingerprint is not 16 bytes".into())
                })?;
                known.insert(
                    (r.get(0), r.get(1)),
                    (r.get::<_, i64>(2) as u64, hash32(r.get(3))?, fingerprint),
                );
            }
        }

        let mut outcomes = Vec::with_capacity(events.len());
        let mut rows: Vec<(i32, u64, &Prepared)> = Vec::with_capacity(events.len());
        let mut nodes = Nodes::default();
        let mut action_counts: HashMap<(i32, &str, &str), i64> = HashMap::new();
        let mut actors: HashMap<(i32, &str), ActorDelta<'_>> = HashMap::new();
        let mut blocks = BlockDeltas::default();
        let mut rollups = rollup::Deltas::default();
        let mut facets = facets::Deltas::default();
        let mut postings = addresses::Deltas::default();
        for p in &events {
            let e: &Event = &p.sealed.event;
            let tid = self.tenant_ids[e.tenant.as_str()];
            if !p.sealed.id_generated
                && let Some((seq, leaf_hash, fingerprint)) = known.get(&(tid, e.id.clone()))
            {
                outcomes.push(if *fingerprint == p.sealed.fingerprint {
                    AppendOutcome::Duplicate {
                        id: e.id.clone(),
                        seq: *seq,
                        leaf_hash: *leaf_hash,
                    }
                } else {
                    AppendOutcome::Conflict { id: e.id.clone() }
                });
                continue;
            }
            let range = logs
                .get_mut(&tid)
                .ok_or_else(|| StoreError::Internal(format!("tenant {tid} was not locked")))?;
            let seq = range.size();
            range
                .append_with(p.sealed.leaf_hash, |id, hash| {
                    if id.level >= STORED_LEVEL {
                        nodes.tenant.push(tid);
                        nodes.level.push(i16::from(id.level));
                        nodes.index.push(id.index as i64);
                        nodes.hash.push(*hash);
                    }
                })
                .map_err(|e| StoreError::Internal(format!("Merkle append: {e}")))?;
            if !p.sealed.id_generated {
                known.insert(
                    (tid, e.id.clone()),
                    (seq, p.sealed.leaf_hash, p.sealed.fingerprint),
                );
            }
            *action_counts
                .entry((tid, e.action.as_str(), e.category.as_str()))
                .or_default() += 1;
            facets.add(
                tid,
                facets::FacetRef {
                    action: &e.action,
                    category: &e.category,
                    severity: i16::from(e.severity.rank()),
                    outcome: i16::from(e.outcome.rank()),
                    source: e.context.source.as_deref().unwrap_or(""),
                },
                seq,
                1,
                (
                    p.ip.as_ref().map(|ip| &ip[..]),
                    e.actor.as_ref().and_then(|a| a.id.as_deref()),
                ),
            );
            if let Some(ip) = &p.ip {
                postings.add(tid, seq, &ip[..]);
            }
            let occurred_us = e.occurred_at.timestamp_micros();
            blocks.add(tid, seq, occurred_us);
            rollups.add(rollup::Row {
                tenant_id: tid,
                occurred_at: e.occurred_at,
                category: &e.category,
                severity: i16::from(e.severity.rank()),
                outcome: i16::from(e.outcome.rank()),
                actor_id: e.actor.as_ref().and_then(|a| a.id.as_deref()),
                ip: p.ip,
            });
            if let Some(actor) = &e.actor
                && let Some(id) = actor.id.as_deref()
            {
                let d = actors.entry((tid, id)).or_insert(ActorDelta {
                    name: None,
                    email: None,
                    count: 0,
                    last_seen: i64::MIN,
                });
                d.count += 1;
                if occurred_us >= d.last_seen {
                    d.last_seen = occurred_us;
                    d.name = actor.name.as_deref().or(d.name);
                    d.email = actor.email.as_deref().or(d.email);
                }
            }
            rows.push((tid, seq, p));
            outcomes.push(AppendOutcome::Stored {
                id: e.id.clone(),
                seq,
                leaf_hash: p.sealed.leaf_hash,
            });
        }

        if !rows.is_empty() {
            copy_events(&tx, &rows).await?;
            nodes.insert(&tx).await?;
            let mut ids = Vec::new();
            let mut sizes = Vec::new();
            let mut frontiers = Vec::new();
            for (id, range) in &logs {
                ids.push(*id);
                sizes.push(range.size() as i64);
                frontiers.push(range.hashes().concat());
            }
            tx.execute(
                "UPDATE tenants t SET size = u.size, frontier = u.frontier
                 FROM unnest($1::int4[], $2::int8[], $3::bytea[]) AS u(id, size, frontier)
                 WHERE t.id = u.id",
                &[&ids, &sizes, &frontiers],
            )
            .await
            .map_err(pg_error)?;
            upsert_counters(&tx, &action_counts, &actors).await?;
            blocks.write(&tx).await?;
            facets.write(&tx).await?;
            postings.write(&tx).await?;
            rollups.write(&tx).await?;
            if let Some(key) = &commit_key {
                let touched: BTreeSet<i32> = rows.iter().map(|(tid, _, _)| *tid).collect();
                let (mut t, mut size, mut root, mut base, mut mac) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for name in &names {
                    let tid = self.tenant_ids[*name];
                    let (Some(range), true) = (logs.get(&tid), touched.contains(&tid)) else {
                        continue;
                    };
                    // No base derived: vouch for nothing this commit did not write.
                    let b = bases.get(&tid).copied().unwrap_or_else(|| range.size());
                    let seal = key.seal(name, range.size(), range.root(), b);
                    t.push(tid);
                    size.push(seal.size as i64);
                    root.push(seal.root.to_vec());
                    base.push(seal.base as i64);
                    mac.push(seal.mac.to_vec());
                }
                tx.execute(
                    "INSERT INTO commit_seals (tenant_id, size, root, base, mac)
                     SELECT * FROM unnest($1::int4[], $2::int8[], $3::bytea[], $4::int8[],
                                          $5::bytea[])
                     ON CONFLICT (tenant_id) DO UPDATE SET size = excluded.size,
                        root = excluded.root, base = excluded.base, mac = excluded.mac",
                    &[&t, &size, &root, &base, &mac],
                )
                .await
                .map_err(pg_error)?;
            }
        }
        if let Err(e) = tx.commit().await {
            let e = pg_error(e);
            // The connection is suspect: it goes back to the pool only to be discarded.
            drop(client);
            if rows.is_empty() {
                // Nothing was written: every outcome (duplicate, conflict) is a fact about
                // rows committed earlier, whatever became of this transaction.
                return Ok(outcomes);
            }
            let Some(xid) = xid else {
                return Err(e);
            };
            tracing::warn!(error = %e, xid, events = rows.len(), "COMMIT got no reply; asking PostgreSQL whether it committed");
            match resolve(&self.pool, xid).await {
                Ok(Resolution::Committed) => {
                    metrics::counter!("bitacora_store_commits_in_doubt_total", "outcome" => "committed")
                        .increment(1);
                    tracing::warn!(xid, "the commit in doubt had committed; acknowledging it");
                }
                Ok(Resolution::NotCommitted) => {
                    metrics::counter!("bitacora_store_commits_in_doubt_total", "outcome" => "aborted")
                        .increment(1);
                    tracing::warn!(xid, "the commit in doubt had not committed");
                    return Err(match e {
                        StoreError::Unavailable(m) => StoreError::Unavailable(m),
                        other => StoreError::Unavailable(format!("the commit failed: {other}")),
                    });
                }
                Err(unknown) => {
                    metrics::counter!("bitacora_store_commits_in_doubt_total", "outcome" => "unknown")
                        .increment(1);
                    return Err(unknown);
                }
            }
        }
        metrics::counter!("bitacora_store_events_appended_total").increment(rows.len() as u64);
        Ok(outcomes)
    }
}

/// A stored seal from its columns (all `None` when the tenant has none); a malformed one is
/// as good as none.
pub(crate) fn seal_of(
    size: Option<i64>,
    root: Option<&[u8]>,
    base: Option<i64>,
    mac: Option<&[u8]>,
) -> Option<CommitSeal> {
    Some(CommitSeal {
        size: u64::try_from(size?).ok()?,
        root: root?.try_into().ok()?,
        base: u64::try_from(base?).ok()?,
        mac: mac?.try_into().ok()?,
    })
}

/// Whether transaction `xid` committed, asked on fresh connections until PostgreSQL answers
/// or [`IN_DOUBT_PATIENCE`] runs out (then `Unavailable`, the outcome unknown).
async fn resolve(pool: &Pool, xid: i64) -> StoreResult<Resolution> {
    let deadline = Instant::now() + IN_DOUBT_PATIENCE;
    loop {
        let last = match transaction_status(pool, xid).await {
            Ok(Some(resolution)) => return Ok(resolution),
            // Still in progress: the old session has not finished its COMMIT yet.
            Ok(None) => "the transaction is still in progress".to_owned(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            tracing::error!(xid, error = %last, "the outcome of a commit is unknown: PostgreSQL did not answer in time");
            return Err(StoreError::Unavailable(format!(
                "the outcome of a commit is unknown (PostgreSQL did not answer within \
                 {IN_DOUBT_PATIENCE:?}: {last}); resending the same event ids is safe"
            )));
        }
        tokio::time::sleep(IN_DOUBT_PAUSE).await;
    }
}

/// One `txid_status` question: `None` while the transaction is still in progress.
pub(crate) async fn transaction_status(pool: &Pool, xid: i64) -> StoreResult<Option<Resolution>> {
    let client = pool.get().await.map_err(pool_error)?;
    let status: Option<String> = match client.query_one("SELECT txid_status($1)", &[&xid]).await {
        Ok(row) => row.get(0),
        // "transaction ID ... is in the future": PostgreSQL crashed before any WAL of the
        // transaction reached the disk, so its COMMIT record cannot have either.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE) => {
            return Ok(Some(Resolution::NotCommitted));
        }
        Err(e) => return Err(pg_error(e)),
    };
    Ok(match status.as_deref() {
        Some("committed") => Some(Resolution::Committed),
        Some("in progress") => None,
        // "aborted", or NULL: too old to be known, which a transaction of a moment ago
        // cannot be.
        _ => Some(Resolution::NotCommitted),
    })
}

#[derive(Default)]
struct Nodes {
    tenant: Vec<i32>,
    level: Vec<i16>,
    index: Vec<i64>,
    hash: Vec<Hash>,
}

impl Nodes {
    async fn insert(&self, tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
        if self.tenant.is_empty() {
            return Ok(());
        }
        let hashes: Vec<&[u8]> = self.hash.iter().map(|h| &h[..]).collect();
        tx.execute(
            "INSERT INTO merkle_nodes (tenant_id, level, idx, hash)
             SELECT * FROM unnest($1::int4[], $2::int2[], $3::int8[], $4::bytea[])",
            &[&self.tenant, &self.level, &self.index, &hashes],
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }
}

struct ActorDelta<'a> {
    name: Option<&'a str>,
    email: Option<&'a str>,
    count: i64,
    last_seen: i64,
}

/// Writes the new rows with one binary COPY (the fastest way into PostgreSQL; the
/// partitioned table routes each row to its month).
async fn copy_events(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[(i32, u64, &Prepared)],
) -> StoreResult<()> {
    let sink = tx.copy_in(COPY_EVENTS).await.map_err(pg_error)?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    let mut writer = std::pin::pin!(writer);
    for (tid, seq, p) in rows {
        let e = &p.sealed.event;
        let seq = *seq as i64;
        let received: DateTime<Utc> = e.received_at;
        let severity = i16::from(e.severity.rank());
        let outcome = i16::from(e.outcome.rank());
        let actor_id = e.actor.as_ref().and_then(|a| a.id.as_deref());
        let target_type = e.target.as_ref().map(|t| t.kind.as_str());
        let target_id = e.target.as_ref().and_then(|t| t.id.as_deref());
        let ip = p.ip.as_ref().map(|b| &b[..]);
        let source = e.context.source.as_deref();
        let fingerprint = &p.sealed.fingerprint[..];
        let leaf_hash = &p.sealed.leaf_hash[..];
        let row: [&(dyn ToSql + Sync); 19] = [
            tid,
            &seq,
            &received,
            &e.id,
            &e.occurred_at,
            &e.action,
            &e.category,
            &severity,
            &outcome,
            &actor_id,
            &p.actor_search,
            &target_type,
            &target_id,
            &ip,
            &source,
            &fingerprint,
            &leaf_hash,
            &p.sealed.body,
            &p.fts_text,
        ];
        writer.as_mut().write(&row).await.map_err(pg_error)?;
    }
    writer.finish().await.map_err(pg_error)?;
    Ok(())
}

async fn upsert_counters(
    tx: &deadpool_postgres::Transaction<'_>,
    action_counts: &HashMap<(i32, &str, &str), i64>,
    actors: &HashMap<(i32, &str), ActorDelta<'_>>,
) -> StoreResult<()> {
    let (mut t, mut a, mut c, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((tid, action, category), count) in action_counts {
        t.push(*tid);
        a.push(*action);
        c.push(*category);
        n.push(*count);
    }
    tx.execute(
        "INSERT INTO action_counts (tenant_id, action, category, count)
         SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::int8[])
         ON CONFLICT (tenant_id, action, category)
         DO UPDATE SET count = action_counts.count + excluded.count",
        &[&t, &a, &c, &n],
    )
    .await
    .map_err(pg_error)?;
    if actors.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut name, mut email, mut n, mut seen) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for ((tid, actor), d) in actors {
        t.push(*tid);
        id.push(*actor);
        name.push(d.name);
        email.push(d.email);
        n.push(d.count);
        seen.push(d.last_seen);
    }
    tx.execute(
        "INSERT INTO actor_stats AS s (tenant_id, actor_id, name, email, count, last_seen)
         SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::int8[],
                              $6::int8[])
         ON CONFLICT (tenant_id, actor_id) DO UPDATE SET
            count = s.count + excluded.count,
            name = CASE WHEN excluded.last_seen >= s.last_seen
                        THEN coalesce(excluded.name, s.name) ELSE s.name END,
            email = CASE WHEN excluded.last_seen >= s.last_seen
                         THEN coalesce(excluded.email, s.email) ELSE s.email END,
            last_seen = GREATEST(s.last_seen, excluded.last_seen)",
        &[&t, &id, &name, &email, &n, &seen],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}
