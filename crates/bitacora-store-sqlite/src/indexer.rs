//! The full-text indexer: its own thread, its own database file.
//!
//! FTS5 inserts cost several times a row insert. Kept in the event writer's transaction they
//! would cut ingest by a third or more; kept in the same database file they would still take
//! turns with it for the one write lock. So the index lives in `bitacora-fts.db` (attached as
//! `fts` by every connection) and this thread fills it from the text of events the writer has
//! already committed, every `interval`. Searches with `q` may therefore trail acknowledgements
//! by up to about a second; nothing else does.
//!
//! The same thread also checkpoints the events database's write-ahead log, so the writer never
//! has to.
//!
//! `fts.fts_state` records, per tenant, how far the index goes, in the same transaction as
//! the index rows. At start the thread indexes whatever committed events it is missing (after
//! a crash, or when the file was deleted), reading their stored bodies.
//!
//! It also deletes the entries of purged events: a retention purge queues them in
//! `main.fts_deletes` (migration 0013) inside its own transaction instead of writing this file
//! while it holds the events database's write lock; this thread applies the queue after each
//! flush, recording how far it went (`fts.fts_deleted`) in the same transaction as the
//! deletes, then removes the applied rows from the queue.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitacora_core::Event;
use bitacora_store::{StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::derive::{self, pos};
use crate::sql_error;

/// One committed event's searchable text.
pub struct Doc {
    pub tenant_id: i64,
    pub pos: i64,
    pub text: String,
}

pub struct Indexer {
    conn: Connection,
    rx: Receiver<Vec<Doc>>,
    interval: Duration,
    pending: Vec<Doc>,
    /// The events database's in-process write turn (`SqliteStore::write_gate`), taken to
    /// remove applied rows from `main.fts_deletes`.
    write_gate: Arc<Mutex<()>>,
}

/// Flush early once this many documents wait, to bound memory under sustained ingest.
const MAX_PENDING: usize = 50_000;

impl Indexer {
    pub fn new(
        conn: Connection,
        rx: Receiver<Vec<Doc>>,
        interval: Duration,
        write_gate: Arc<Mutex<()>>,
    ) -> Self {
        Self {
            conn,
            rx,
            interval,
            pending: Vec::new(),
            write_gate,
        }
    }

    /// Runs until the writer is gone, then indexes what is pending and returns.
    pub fn run(mut self) {
        if let Err(e) = self.catch_up() {
            tracing::error!(error = %e, "could not index the full-text backlog");
        }
        self.apply_deletes();
        let mut last_flush = Instant::now();
        loop {
            let wait = (last_flush + self.interval).saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(docs) => self.pending.extend(docs),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.pending.len() >= MAX_PENDING || last_flush.elapsed() >= self.interval {
                self.flush();
                self.apply_deletes();
                self.checkpoint();
                last_flush = Instant::now();
            }
        }
        while let Ok(docs) = self.rx.try_recv() {
            self.pending.extend(docs);
        }
        self.flush();
        self.apply_deletes();
        self.checkpoint();
        tracing::debug!("full-text indexer stopped");
    }

    /// Checkpoints the events database's WAL, which the writer never does itself (see
    /// `schema::open`): this thread wakes every `interval` anyway, and a passive checkpoint
    /// blocks neither the writer nor readers.
    fn checkpoint(&self) {
        if let Err(e) = crate::schema::checkpoint_wal(&self.conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let indexed = index(&mut self.conn, &self.pending);
        match indexed {
            Ok(()) => self.pending.clear(),
            // The events are durable; only their text index is late. Keep them and retry.
            Err(e) => {
                tracing::error!(error = %e, docs = self.pending.len(), "full-text indexing failed")
            }
        }
    }

    /// Deletes the queued entries of purged events (`main.fts_deletes`) from the index, then
    /// the applied rows from the queue. A failure is logged and retried at the next turn:
    /// until then the entries only take space (searches join the index with `events`).
    fn apply_deletes(&mut self) {
        loop {
            match apply_deletes(&mut self.conn, &self.write_gate) {
                Ok(0) => return,
                Ok(n) => tracing::debug!(entries = n, "full-text entries of purged events deleted"),
                Err(e) => {
                    tracing::error!(error = %e, "deleting full-text entries of purged events failed");
                    return;
                }
            }
        }
    }

    /// Indexes committed events whose text never reached the index.
    fn catch_up(&mut self) -> StoreResult<()> {
        let gaps: Vec<(i64, i64, i64)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT t.id, t.size, coalesce(s.upto, 0) FROM main.tenants t
                     LEFT JOIN fts.fts_state s ON s.tenant_id = t.id
                     WHERE coalesce(s.upto, 0) < t.size",
                )
                .map_err(sql_error)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)?
        };
        for (tid, size, upto) in gaps {
            tracing::info!(
                tenant_id = tid,
                events = size - upto,
                "indexing full-text backlog"
            );
            let mut next = upto as u64;
            let size = size as u64;
            while next < size {
                let docs = self.backlog(tid, next, size)?;
                let Some(last) = docs.last() else { break };
                next = derive::seq_of(last.pos) + 1;
                index(&mut self.conn, &docs)?;
            }
        }
        Ok(())
    }

    fn backlog(&self, tid: i64, from: u64, to: u64) -> StoreResult<Vec<Doc>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT pos, body FROM main.events WHERE pos >= ?1 AND pos < ?2
                 ORDER BY pos LIMIT 5000",
            )
            .map_err(sql_error)?;
        let rows = stmt
            .query_map(params![pos(tid, from), pos(tid, to)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(sql_error)?;
        let mut docs = Vec::new();
        for row in rows {
            let (p, body) = row.map_err(sql_error)?;
            let event: Event = serde_json::from_str(&body).map_err(|e| {
                StoreError::Corrupt(format!("event at pos {p} is not an event: {e}"))
            })?;
            docs.push(Doc {
                tenant_id: tid,
                pos: p,
                text: derive::fts_text(&event),
            });
        }
        Ok(docs)
    }
}

fn index(conn: &mut Connection, docs: &[Doc]) -> StoreResult<()> {
    let tx = conn.transaction().map_err(sql_error)?;
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO fts.events_fts (rowid, text) VALUES (?1, ?2)")
            .map_err(sql_error)?;
        let mut upto: HashMap<i64, u64> = HashMap::new();
        for d in docs {
            insert.execute(params![d.pos, d.text]).map_err(sql_error)?;
            let next = derive::seq_of(d.pos) + 1;
            let e = upto.entry(d.tenant_id).or_default();
            *e = (*e).max(next);
        }
        let mut mark = tx
            .prepare_cached(
                "INSERT INTO fts.fts_state (tenant_id, upto) VALUES (?1, ?2)
                 ON CONFLICT DO UPDATE SET upto = max(upto, excluded.upto)",
            )
            .map_err(sql_error)?;
        for (tid, next) in upto {
            mark.execute(params![tid, next as i64]).map_err(sql_error)?;
        }
    }
    tx.commit().map_err(sql_error)
}

/// Queued rows applied by one full-text transaction at most.
const DELETES_PER_TURN: i64 = 20_000;

/// One turn of [`Indexer::apply_deletes`]: applies up to [`DELETES_PER_TURN`] queued rows in
/// one transaction of the full-text file, then removes every applied row from the queue.
/// Returns the rows applied.
pub(crate) fn apply_deletes(conn: &mut Connection, write_gate: &Mutex<()>) -> StoreResult<usize> {
    let tx = conn.transaction().map_err(sql_error)?;
    // A new index file starts past everything queued so far (see `fts.sql`).
    tx.execute(
        "INSERT INTO fts.fts_deleted (id, upto)
         SELECT 1, coalesce(max(id), 0) FROM main.fts_deletes WHERE true
         ON CONFLICT DO NOTHING",
        [],
    )
    .map_err(sql_error)?;
    let done: i64 = tx
        .query_row("SELECT upto FROM fts.fts_deleted WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map_err(sql_error)?;
    let queued: Vec<(i64, i64, String)> = tx
        .prepare_cached(
            "SELECT id, pos, text FROM main.fts_deletes WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(sql_error)?
        .query_map(params![done, DELETES_PER_TURN], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let applied = queued.len();
    let upto = queued.last().map_or(done, |q| q.0);
    if applied > 0 {
        // How far each tenant is indexed: an entry past it was never written (the indexer
        // reads rows to catch up, and the purged rows are gone), and deleting an entry a
        // contentless index does not hold would corrupt it.
        let indexed: HashMap<i64, i64> = tx
            .prepare_cached("SELECT tenant_id, upto FROM fts.fts_state")
            .map_err(sql_error)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        let mut delete = tx
            .prepare_cached(
                "INSERT INTO fts.events_fts (events_fts, rowid, text) VALUES ('delete', ?1, ?2)",
            )
            .map_err(sql_error)?;
        for (_, p, text) in &queued {
            let (tid, seq) = (p >> derive::SEQ_BITS, derive::seq_of(*p));
            if indexed.get(&tid).is_some_and(|&u| seq < u.max(0) as u64) {
                delete.execute(params![p, text]).map_err(sql_error)?;
            }
        }
        drop(delete);
        tx.execute("UPDATE fts.fts_deleted SET upto = ?1 WHERE id = 1", [upto])
            .map_err(sql_error)?;
    }
    tx.commit().map_err(sql_error)?;
    // Then the applied rows leave the queue (their text with them): a short write of the
    // events database, in turn with the writer.
    let _turn = write_gate.lock().unwrap_or_else(|e| e.into_inner());
    let stale: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM main.fts_deletes WHERE id <= ?1)",
            [upto],
            |r| r.get(0),
        )
        .map_err(sql_error)?;
    if stale {
        conn.execute("DELETE FROM main.fts_deletes WHERE id <= ?1", [upto])
            .map_err(sql_error)?;
    }
    Ok(applied)
}
