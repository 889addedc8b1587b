//! The single writer: group commit, sequencing, and the trailing full-text indexer.
//!
//! One OS thread owns the only connection that writes events. It blocks for the first job,
//! then takes every job already waiting (up to `max_batch_events` events) into one
//! transaction: one fsync acknowledges them all, so throughput grows with concurrency instead
//! of being bound by one fsync per request. Assigning `seq` here, and only here, is what keeps
//! every tenant's log gapless and ordered.
//!
//! Full-text indexing is deliberately not in that transaction: after each commit the writer
//! hands the text of the new events to the indexer thread ([`crate::indexer`]).
//!
//! **Commit seals.** When a commit key is installed ([`bitacora_store::Store::set_commit_key`]),
//! the same transaction upserts each touched tenant's seal (`bitacora_core::seal`): size, root
//! and `base`, the size from which this writer can vouch that every row was written by a key
//! holder. A tenant loaded from the database starts with `base` = its size (rows it did not
//! write are not vouched for); at each commit, a stored seal that verifies and describes
//! exactly the log about to be extended lowers it to the seal's own `base` (the chain of seals
//! is unbroken). Whatever drops the tenant caches (a failed commit, another connection's
//! commit) makes the writer reload and re-derive `base` the same way.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bitacora_core::Event;
use bitacora_core::canonical::{Fingerprint, Hash, SealedEvent};
use bitacora_core::merkle::{CompactRange, NodeId};
use bitacora_core::seal::{CommitKey, CommitSeal};
use bitacora_store::{AppendOutcome, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Semaphore, oneshot};

use crate::derive::{self, pos, tenant_range};
use crate::indexer::Doc;
use crate::schema::{TERM_ACTION, TERM_CATEGORY, TERM_SOURCE, TERM_TARGET_TYPE};
use crate::sql_error;
use crate::tree::{self, STORED_LEVEL};
use crate::{addresses, facets, rollup, window};

/// The duplicate check of every append with a client-given id. Pinned to the id index: with
/// statistics taken while the log was tiny (`PRAGMA optimize` at a shutdown soon after install)
/// the planner chose to scan the tenant's whole range instead, once per appended event, and
/// ingest slowed to a crawl as the log grew.
pub(crate) const FIND_BY_ID: &str = "SELECT pos, leaf_hash, fingerprint FROM events
     INDEXED BY events_event_id WHERE event_id = ?1 AND pos BETWEEN ?2 AND ?3";

/// An event with everything the writer needs precomputed.
pub struct Prepared {
    pub sealed: SealedEvent,
    pub occurred_us: i64,
    pub actor_search: Option<String>,
    pub ip: Option<[u8; 16]>,
    pub fts_text: String,
}

impl Prepared {
    pub fn new(sealed: SealedEvent) -> Self {
        let e = &sealed.event;
        Self {
            occurred_us: e.occurred_at.timestamp_micros(),
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

pub struct WriterConfig {
    pub max_batch_events: usize,
}

/// Per-tenant state the writer keeps in memory (the database is the truth; this is a cache
/// dropped whenever a transaction fails).
#[derive(Clone, Copy)]
struct TenantState {
    id: i64,
    size: u64,
    /// Every row from `base` on was written by a commit-key holder (see the module docs):
    /// the loaded size, lowered by a stored seal that explains the log.
    base: u64,
}

#[derive(Default)]
struct Caches {
    tenants: HashMap<String, TenantState>,
    /// Each tenant's Merkle frontier, loaded on first append.
    ranges: HashMap<i64, CompactRange>,
    /// Dictionary ids by kind (index = kind) and value.
    terms: [HashMap<String, i64>; 5],
    /// Each tenant's leaf tile being filled (see `tree::LeafTails`).
    leaf_tails: tree::LeafTails,
}

pub struct Writer {
    conn: Connection,
    rx: Receiver<Job>,
    permits: Arc<Semaphore>,
    config: WriterConfig,
    caches: Caches,
    /// Where the text of committed events goes to be indexed.
    indexer: Sender<Vec<Doc>>,
    /// `PRAGMA data_version` when the caches were last known to match the database: it
    /// changes when *another* connection commits (this process's readers record checkpoints;
    /// another process — `bitacora keys create` beside a running server — may append events).
    data_version: Option<i64>,
    /// The key commits are sealed with, installed at run time (none: no seals).
    commit_key: Arc<RwLock<Option<CommitKey>>>,
    /// Held around each commit; a retention purge holds it around its transaction
    /// (`SqliteStore::write_gate`).
    gate: Arc<std::sync::Mutex<()>>,
    /// Set when a commit had to wait for the gate (a purge held it): the purge then yields
    /// (`SqliteStore::writer_waited`).
    waited: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    pub fn new(
        conn: Connection,
        rx: Receiver<Job>,
        permits: Arc<Semaphore>,
        config: WriterConfig,
        indexer: Sender<Vec<Doc>>,
        commit_key: Arc<RwLock<Option<CommitKey>>>,
        // The write gate, and the flag set when a commit waited for it.
        (gate, waited): (
            Arc<std::sync::Mutex<()>>,
            Arc<std::sync::atomic::AtomicBool>,
        ),
    ) -> Self {
        Self {
            conn,
            rx,
            permits,
            config,
            caches: Caches::default(),
            indexer,
            data_version: None,
            commit_key,
            gate,
            waited,
        }
    }

    /// Runs until every sender is gone, committing what is queued, then returns (which
    /// lets the indexer finish too).
    pub fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut jobs = vec![first];
            let mut n = jobs[0].events.len();
            while n < self.config.max_batch_events {
                match self.rx.try_recv() {
                    Ok(job) => {
                        n += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_jobs(jobs, n);
        }
        if let Err(e) = self.conn.execute_batch("PRAGMA optimize;") {
            tracing::warn!(error = %e, "PRAGMA optimize failed at shutdown");
        }
        tracing::debug!("store writer stopped");
    }

    fn commit_jobs(&mut self, jobs: Vec<Job>, n: usize) {
        let started = Instant::now();
        let result = {
            let gate = self.gate.clone();
            let _turn = match gate.try_lock() {
                Ok(turn) => turn,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    self.waited
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    gate.lock().unwrap_or_else(|e| e.into_inner())
                }
            };
            self.commit(&jobs)
        };
        let elapsed = started.elapsed();
        metrics::histogram!("bitacora_commit_duration_seconds").record(elapsed.as_secs_f64());
        metrics::histogram!("bitacora_commit_events").record(n as f64);

        match result {
            Ok((outcomes, docs)) => {
                // The indexer only stops after the writer, so this cannot fail.
                let _ = self.indexer.send(docs);
                let mut outcomes = outcomes.into_iter();
                for job in jobs {
                    let k = job.events.len();
                    let mine: Vec<AppendOutcome> = outcomes.by_ref().take(k).collect();
                    self.permits.add_permits(k);
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                // Nothing of this transaction is durable; the caches may describe rows that
                // were rolled back.
                self.caches = Caches::default();
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
        metrics::gauge!("bitacora_writer_queue_depth").set(self.queued_events() as f64);
    }

    fn queued_events(&self) -> usize {
        crate::MAX_QUEUED_EVENTS.saturating_sub(self.permits.available_permits())
    }

    /// One transaction for every event of `jobs`. Returns one outcome per event, in order,
    /// and the full-text documents of the newly stored ones.
    #[allow(clippy::type_complexity)]
    fn commit(&mut self, jobs: &[Job]) -> StoreResult<(Vec<AppendOutcome>, Vec<Doc>)> {
        let commit_key = self
            .commit_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        // Under the write lock (IMMEDIATE), nobody else can commit until this transaction
        // ends: if someone did since our last look, re-read what the caches hold.
        let version: i64 = tx
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(sql_error)?;
        if self.data_version != Some(version) {
            revalidate(&tx, &mut self.caches)?;
            self.data_version = Some(version);
        }
        let caches = &mut self.caches;
        let mut outcomes = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
        let mut fts = Vec::with_capacity(outcomes.capacity());
        // Ids stored by this transaction, for duplicates inside one group commit.
        let mut fresh: HashMap<(i64, &str), (u64, Hash, Fingerprint)> = HashMap::new();
        let mut touched: HashMap<i64, u64> = HashMap::new();
        // The names of the touched tenants (their seals' MACs cover the name).
        let mut touched_names: HashMap<i64, &str> = HashMap::new();
        let mut action_counts: HashMap<(i64, i64, i64), i64> = HashMap::new();
        let mut actors: HashMap<(i64, &str), ActorDelta<'_>> = HashMap::new();
        let mut nodes: Vec<(i64, NodeId, Hash)> = Vec::new();
        let mut leaf_tiles: HashMap<(i64, u64), Vec<u8>> = HashMap::new();
        let mut blocks: HashMap<(i64, i64), window::BlockDelta> = HashMap::new();
        let mut rollups = rollup::Deltas::default();
        let mut facets = facets::Deltas::default();
        let mut postings = addresses::Deltas::default();

        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (pos, event_id, occurred_at, action, category, severity,
                        outcome, actor_id, actor_search, target_type, target_id, ip, source,
                        fingerprint, leaf_hash, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )
                .map_err(sql_error)?;
            let mut find = tx.prepare_cached(FIND_BY_ID).map_err(sql_error)?;

            for p in jobs.iter().flat_map(|j| &j.events) {
                let e: &Event = &p.sealed.event;
                let tenant = tenant_state(&tx, caches, e.tenant.as_str())?;
                let tid = tenant.id;

                if !p.sealed.id_generated {
                    let existing = match fresh.get(&(tid, e.id.as_str())) {
                        Some(found) => Some(*found),
                        None => {
                            let (lo, hi) = tenant_range(tid);
                            find.query_row(params![e.id, lo, hi], |r| {
                                Ok((
                                    derive::seq_of(r.get(0)?),
                                    blob32(r.get_ref(1)?.as_blob()?),
                                    blob16(r.get_ref(2)?.as_blob()?),
                                ))
                            })
                            .optional()
                            .map_err(sql_error)?
                        }
                    };
                    if let Some((seq, leaf_hash, fingerprint)) = existing {
                        outcomes.push(if fingerprint == p.sealed.fingerprint {
                            AppendOutcome::Duplicate {
                                id: e.id.clone(),
                                seq,
                                leaf_hash,
                            }
                        } else {
                            AppendOutcome::Conflict { id: e.id.clone() }
                        });
                        continue;
                    }
                }

                let seq = tenant.size;
                let position = pos(tid, seq);
                let action = term_id(&tx, caches, TERM_ACTION, &e.action)?;
                let category = term_id(&tx, caches, TERM_CATEGORY, &e.category)?;
                let target_type = e
                    .target
                    .as_ref()
                    .map(|t| term_id(&tx, caches, TERM_TARGET_TYPE, &t.kind))
                    .transpose()?;
                let source = e
                    .context
                    .source
                    .as_deref()
                    .map(|s| term_id(&tx, caches, TERM_SOURCE, s))
                    .transpose()?;
                let actor_id = e.actor.as_ref().and_then(|a| a.id.as_deref());

                insert
                    .execute(params![
                        position,
                        e.id,
                        p.occurred_us,
                        action,
                        category,
                        e.severity.rank(),
                        e.outcome.rank(),
                        actor_id,
                        p.actor_search,
                        target_type,
                        e.target.as_ref().and_then(|t| t.id.as_deref()),
                        p.ip.as_ref().map(|b| &b[..]),
                        source,
                        &p.sealed.fingerprint[..],
                        &p.sealed.leaf_hash[..],
                        p.sealed.body,
                    ])
                    .map_err(sql_error)?;

                let range = match caches.ranges.entry(tid) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        v.insert(CompactRange::load(seq, |id| tree::node(&tx, tid, seq, id))?)
                    }
                };
                if let Some(key) = &commit_key
                    && !touched.contains_key(&tid)
                {
                    // The first append to this tenant in this commit: does the stored seal
                    // explain the log as this writer is about to extend it?
                    let stored = read_seal(&tx, tid)?;
                    let carried =
                        key.carried_base(e.tenant.as_str(), stored.as_ref(), seq, &range.root());
                    let state = caches
                        .tenants
                        .get_mut(e.tenant.as_str())
                        .expect("tenant_state cached it");
                    state.base = state.base.min(carried);
                }
                range
                    .append_with(p.sealed.leaf_hash, |id, hash| {
                        if id.level >= STORED_LEVEL {
                            nodes.push((tid, id, *hash));
                        }
                    })
                    .map_err(|e| StoreError::Internal(format!("Merkle append: {e}")))?;
                if let Some(tile) = caches.leaf_tails.push(tid, seq, &p.sealed.leaf_hash) {
                    leaf_tiles.insert((tid, seq + 1 - tree::LEAF_TILE_WIDTH), tile);
                }
                caches
                    .tenants
                    .get_mut(e.tenant.as_str())
                    .expect("tenant_state cached it")
                    .size = seq + 1;
                touched.insert(tid, seq + 1);
                touched_names.insert(tid, e.tenant.as_str());
                fresh.insert(
                    (tid, e.id.as_str()),
                    (seq, p.sealed.leaf_hash, p.sealed.fingerprint),
                );
                *action_counts.entry((tid, action, category)).or_default() += 1;
                facets.add(
                    tid,
                    facets::Combo {
                        action,
                        category,
                        severity: i64::from(e.severity.rank()),
                        outcome: i64::from(e.outcome.rank()),
                        source: source.unwrap_or(0),
                    },
                    seq,
                    1,
                    (p.ip.as_ref(), actor_id),
                );
                if let Some(ip) = p.ip {
                    postings.add(tid, seq, ip);
                }
                rollups.add(
                    &rollup::Row {
                        tenant_id: tid,
                        occurred_us: p.occurred_us,
                        category,
                        severity: i64::from(e.severity.rank()),
                        outcome: i64::from(e.outcome.rank()),
                        actor_id,
                        ip: p.ip,
                    },
                    actor_id,
                );
                blocks
                    .entry((tid, window::block_of(seq)))
                    .or_insert_with(|| window::BlockDelta::new(p.occurred_us))
                    .add(p.occurred_us);
                if let (Some(id), Some(actor)) = (actor_id, &e.actor) {
                    let d = actors.entry((tid, id)).or_insert(ActorDelta {
                        name: None,
                        email: None,
                        count: 0,
                        last_seen: i64::MIN,
                    });
                    d.count += 1;
                    if p.occurred_us >= d.last_seen {
                        d.last_seen = p.occurred_us;
                        d.name = actor.name.as_deref().or(d.name);
                        d.email = actor.email.as_deref().or(d.email);
                    }
                }
                fts.push(Doc {
                    tenant_id: tid,
                    pos: position,
                    text: p.fts_text.clone(),
                });
                outcomes.push(AppendOutcome::Stored {
                    id: e.id.clone(),
                    seq,
                    leaf_hash: p.sealed.leaf_hash,
                });
            }
        }

        tree::insert_nodes(&tx, &nodes, &mut leaf_tiles)?;
        window::record_blocks(&tx, &blocks)?;
        facets.write(&tx)?;
        postings.write(&tx)?;
        rollups.write(&tx)?;
        if let Some(key) = &commit_key {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO commit_seals (tenant_id, size, root, base, mac)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id) DO UPDATE SET size = excluded.size,
                        root = excluded.root, base = excluded.base, mac = excluded.mac",
                )
                .map_err(sql_error)?;
            for (tid, &size) in &touched {
                let missing = || StoreError::Internal("a touched tenant has no state".into());
                let name = touched_names.get(tid).ok_or_else(missing)?;
                let base = caches.tenants.get(*name).ok_or_else(missing)?.base;
                let root = caches.ranges.get(tid).ok_or_else(missing)?.root();
                let seal = key.seal(name, size, root, base);
                upsert
                    .execute(params![
                        tid,
                        seal.size as i64,
                        &seal.root[..],
                        seal.base as i64,
                        &seal.mac[..],
                    ])
                    .map_err(sql_error)?;
            }
        }
        {
            let mut size = tx
                .prepare_cached("UPDATE tenants SET size = ?2 WHERE id = ?1")
                .map_err(sql_error)?;
            for (tid, s) in &touched {
                size.execute(params![tid, *s as i64]).map_err(sql_error)?;
            }
            let mut count = tx
                .prepare_cached(
                    "INSERT INTO action_counts (tenant_id, action, category, count)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET count = count + excluded.count",
                )
                .map_err(sql_error)?;
            for ((tid, action, category), n) in &action_counts {
                count
                    .execute(params![tid, action, category, n])
                    .map_err(sql_error)?;
            }
            let mut actor = tx
                .prepare_cached(
                    "INSERT INTO actor_stats (tenant_id, actor_id, name, email, count, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT DO UPDATE SET
                        count = count + excluded.count,
                        name = CASE WHEN excluded.last_seen >= last_seen
                                    THEN coalesce(excluded.name, name) ELSE name END,
                        email = CASE WHEN excluded.last_seen >= last_seen
                                     THEN coalesce(excluded.email, email) ELSE email END,
                        last_seen = max(last_seen, excluded.last_seen)",
                )
                .map_err(sql_error)?;
            for ((tid, id), d) in &actors {
                actor
                    .execute(params![tid, id, d.name, d.email, d.count, d.last_seen])
                    .map_err(sql_error)?;
            }
        }
        tx.commit().map_err(sql_error)?;
        let stored = fts.len();
        metrics::counter!("bitacora_store_events_appended_total").increment(stored as u64);
        Ok((outcomes, fts))
    }
}

struct ActorDelta<'a> {
    name: Option<&'a str>,
    email: Option<&'a str>,
    count: i64,
    last_seen: i64,
}

/// Drops what another connection's commits may have made stale: a tenant whose size in the
/// database is not the cached one (another process appended to its log) is forgotten with
/// its Merkle frontier, and both are read again on its next append. Terms are only ever
/// added, and a term missing from the cache is looked up before it is inserted, so that cache
/// stays. Cheap: one indexed read per cached tenant, and only after someone else committed.
fn revalidate(tx: &rusqlite::Transaction<'_>, caches: &mut Caches) -> StoreResult<()> {
    let mut size = tx
        .prepare_cached("SELECT size FROM tenants WHERE id = ?1")
        .map_err(sql_error)?;
    let mut stale = Vec::new();
    for (name, state) in &caches.tenants {
        let now: Option<i64> = size
            .query_row([state.id], |r| r.get(0))
            .optional()
            .map_err(sql_error)?;
        if now != Some(state.size as i64) {
            stale.push((name.clone(), state.id));
        }
    }
    for (name, id) in stale {
        tracing::debug!(tenant = %name, "another process appended to this log; reloading it");
        caches.tenants.remove(&name);
        caches.ranges.remove(&id);
        caches.leaf_tails.forget(id);
    }
    Ok(())
}

fn tenant_state(
    tx: &rusqlite::Transaction<'_>,
    caches: &mut Caches,
    name: &str,
) -> StoreResult<TenantState> {
    if let Some(t) = caches.tenants.get(name) {
        return Ok(*t);
    }
    let found: Option<(i64, i64)> = tx
        .query_row(
            "SELECT id, size FROM tenants WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql_error)?;
    let state = match found {
        // Rows this writer did not write are not vouched for until a seal explains them.
        Some((id, size)) => TenantState {
            id,
            size: size as u64,
            base: size as u64,
        },
        None => {
            tx.execute("INSERT INTO tenants (name) VALUES (?1)", [name])
                .map_err(sql_error)?;
            let id = tx.last_insert_rowid();
            if id >= 1 << (63 - derive::SEQ_BITS) {
                return Err(StoreError::Internal("too many tenants".into()));
            }
            TenantState {
                id,
                size: 0,
                base: 0,
            }
        }
    };
    caches.tenants.insert(name.to_owned(), state);
    Ok(state)
}

/// The stored commit seal of tenant `tid`, if any (a malformed row is as good as none).
pub fn read_seal(conn: &Connection, tid: i64) -> StoreResult<Option<CommitSeal>> {
    conn.prepare_cached("SELECT size, root, base, mac FROM commit_seals WHERE tenant_id = ?1")
        .map_err(sql_error)?
        .query_row([tid], |r| {
            let root = r.get_ref(1)?.as_blob()?;
            let mac = r.get_ref(3)?.as_blob()?;
            Ok((root.len() == 32 && mac.len() == 32).then(|| CommitSeal {
                size: r.get::<_, i64>(0).map(|s| s.max(0) as u64).unwrap_or(0),
                root: blob32(root),
                base: r.get::<_, i64>(2).map(|s| s.max(0) as u64).unwrap_or(0),
                mac: blob32(mac),
            }))
        })
        .optional()
        .map_err(sql_error)
        .map(Option::flatten)
}

fn term_id(
    tx: &rusqlite::Transaction<'_>,
    caches: &mut Caches,
    kind: i64,
    value: &str,
) -> StoreResult<i64> {
    if let Some(id) = caches.terms[kind as usize].get(value) {
        return Ok(*id);
    }
    let id: i64 = match tx
        .query_row(
            "SELECT id FROM terms WHERE kind = ?1 AND value = ?2",
            params![kind, value],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_error)?
    {
        Some(id) => id,
        None => {
            tx.execute(
                "INSERT INTO terms (kind, value) VALUES (?1, ?2)",
                params![kind, value],
            )
            .map_err(sql_error)?;
            tx.last_insert_rowid()
        }
    };
    caches.terms[kind as usize].insert(value.to_owned(), id);
    Ok(id)
}

pub fn blob32(b: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    if b.len() == 32 {
        out.copy_from_slice(b);
    }
    out
}

fn blob16(b: &[u8]) -> Fingerprint {
    let mut out = [0u8; 16];
    if b.len() == 16 {
        out.copy_from_slice(b);
    }
    out
}
