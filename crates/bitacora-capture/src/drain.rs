//! The drain: one task per capture source, moving outbox rows into the store.
//!
//! Each pass reads up to `batch_size` rows in id order, seals one event per row
//! ([`crate::convert`]), appends them to the store, waits until they are durable, and only
//! then deletes those rows. The event id is `capture:<install id>:<outbox id>`, so a pass cut
//! short after the append (a crash of bitacora, a lost connection) is re-sent on the next
//! pass and acknowledged by the store as duplicates: exactly one event per row.
//!
//! Waking: `LISTEN bitacora_capture`. The triggers notify once per committing transaction, but
//! only while the drain has said it is waiting (`drain_state.listening`): a NOTIFY takes a
//! cluster-wide lock at commit, and sending one per transaction halved a busy application's
//! throughput (BENCHMARKS.md). Polling every `poll_interval` is the fallback. Only one drain
//! works an outbox at a time (a session advisory lock); others wait as standbys, so several
//! bitacora servers may name the same source. A source that is down, or not installed, is
//! retried with exponential backoff; the server keeps serving and reports the source in
//! `/readyz` and `/metrics`.
//!
//! A row that cannot be converted (only the installing role can write the outbox since
//! schema version 3, so this means a bug or a hand-made row) is quarantined, never retried:
//! it becomes a `bitacora.capture.rejected` event under its own id, is deleted with its batch,
//! and is counted (`rows_rejected`, `bitacora_capture_rows_rejected_total`). Depth and lag are
//! counted from the outbox itself (at least once a second while rows flow, and after every
//! failed pass), and a source's error and failure count stay until a pass succeeds, so a drain
//! that is stuck shows its error and its growing backlog, not the last good numbers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitacora_core::{IngestPolicy, TenantName};
use bitacora_store::{AppendOutcome, Store, StoreError};
use chrono::{SubsecRound as _, Utc};
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};
use tokio_util::sync::CancellationToken;

use crate::convert;
use crate::{CaptureError, pg_message};

/// Metric names (all labelled `source`).
pub const EVENTS_DRAINED: &str = "bitacora_capture_events_drained_total";
pub const ERRORS: &str = "bitacora_capture_errors_total";
pub const LAG: &str = "bitacora_capture_lag_seconds";
pub const DEPTH: &str = "bitacora_capture_outbox_depth";
pub const UP: &str = "bitacora_capture_up";
pub const REJECTED: &str = "bitacora_capture_rows_rejected_total";

/// `pg_try_advisory_lock` key held by the one active drain of an outbox ("bitdrn").
const DRAIN_LOCK: i64 = 0x6269_7464_726e;
/// Any single statement taking longer than this means the connection is gone.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often depth and lag are measured while rows keep coming.
const MEASURE_EVERY: Duration = Duration::from_secs(1);

/// The next rows of the outbox, each as its id and its JSON text. Nothing in this query
/// depends on what a row holds, so no row can make it fail; [`convert::parse_row`] reads
/// (and checks) the columns of every schema version, and quarantines what it cannot read.
/// As text, not `jsonb`: a value `serde_json` cannot hold (`1e400`) fails one row's parse,
/// not the whole batch's decoding.
const OUTBOX_QUERY: &str = "\
    SELECT o.id, to_jsonb(o)::text FROM bitacora_capture.outbox o ORDER BY o.id LIMIT $1";

/// One capture source.
#[derive(Clone)]
pub struct DrainConfig {
    /// The source's name in logs, metrics and `/readyz` (never the URL, which may hold a
    /// password); see [`crate::describe_url`].
    pub name: String,
    pub database_url: String,
    /// The tenant its events are written to.
    pub tenant: TenantName,
    /// The longest wait between passes when no notification arrives.
    pub poll_interval: Duration,
    /// Outbox rows per pass (and per store append).
    pub batch_size: usize,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl std::fmt::Debug for DrainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainConfig")
            .field("name", &self.name)
            .field("database_url", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("poll_interval", &self.poll_interval)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl DrainConfig {
    /// A source with the default timings: poll every second, 500 rows a pass, back off up to
    /// 30 s.
    pub fn new(database_url: impl Into<String>, tenant: TenantName) -> Self {
        let database_url = database_url.into();
        Self {
            name: crate::describe_url(&database_url),
            database_url,
            tenant,
            poll_interval: Duration::from_secs(1),
            batch_size: 500,
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Where a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Not connected yet.
    Starting,
    /// Connected and draining (or waiting for changes).
    Running,
    /// Connected, but another bitacora server drains this outbox.
    Standby,
    /// Unreachable, not installed, or failing; retried with backoff (`last_error` says why).
    Down,
}

/// A source's state, for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub tenant: String,
    pub state: SourceState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// Captured changes waiting (last measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_depth: Option<u64>,
    /// Age of the oldest waiting change, seconds (0 when none waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Events appended by this process since it started (quarantined rows included).
    pub events_drained: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drained_at: Option<String>,
    /// Outbox rows this process quarantined as `bitacora.capture.rejected` events.
    pub rows_rejected: u64,
    /// The last of them: `outbox row <id>: <reason>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rejection: Option<String>,
}

/// A shared view of one source's [`SourceStatus`].
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<Mutex<SourceStatus>>);

impl StatusHandle {
    pub fn snapshot(&self) -> SourceStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Registers the capture metrics' descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(EVENTS_DRAINED, "Captured row changes appended to the log");
    metrics::describe_counter!(ERRORS, "Capture failures (connection, store), by source");
    metrics::describe_gauge!(
        LAG,
        metrics::Unit::Seconds,
        "Age of the oldest captured change not yet drained (0 when none waits)"
    );
    metrics::describe_gauge!(DEPTH, "Captured changes waiting in the outbox");
    metrics::describe_gauge!(
        UP,
        "1 while the capture source is connected and drained here"
    );
    metrics::describe_counter!(
        REJECTED,
        "Outbox rows that could not be converted, quarantined as bitacora.capture.rejected events"
    );
}

/// Starts draining `config`'s outbox into `store` until `cancel` fires. The task finishes
/// the pass in progress before returning, so cancelling never leaves an append half-done.
pub fn spawn_drain(
    config: DrainConfig,
    store: Arc<dyn Store>,
    policy: Arc<IngestPolicy>,
    cancel: CancellationToken,
) -> (JoinHandle<()>, StatusHandle) {
    let status = StatusHandle(Arc::new(Mutex::new(SourceStatus {
        source: config.name.clone(),
        tenant: config.tenant.to_string(),
        state: SourceState::Starting,
        last_error: None,
        failures: 0,
        outbox_depth: None,
        lag_seconds: None,
        events_drained: 0,
        last_drained_at: None,
        rows_rejected: 0,
        last_rejection: None,
    })));
    let drain = Drain {
        config,
        store,
        policy,
        cancel,
        status: status.clone(),
    };
    (tokio::spawn(drain.run()), status)
}

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("the store refused the events: {0}")]
    Store(#[from] StoreError),
    #[error("the connection to the application database was lost")]
    Closed,
    #[error("{0} timed out after {STATEMENT_TIMEOUT:?}")]
    Timeout(&'static str),
}

struct Drain {
    config: DrainConfig,
    store: Arc<dyn Store>,
    policy: Arc<IngestPolicy>,
    cancel: CancellationToken,
    status: StatusHandle,
}

/// Aborts the connection task when the session ends, however it ends.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drain {
    fn source(&self) -> String {
        self.config.name.clone()
    }

    async fn run(self) {
        let mut backoff = Duration::from_millis(250);
        while !self.cancel.is_cancelled() {
            let started = Instant::now();
            match self.session().await {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!(ERRORS, "source" => self.source()).increment(1);
                    metrics::gauge!(UP, "source" => self.source()).set(0.0);
                    let message = e.to_string();
                    let failures = {
                        let mut n = 0;
                        self.status.update(|s| {
                            s.state = SourceState::Down;
                            s.failures += 1;
                            n = s.failures;
                            s.last_error = Some(message.clone());
                        });
                        n
                    };
                    // Log the first failure loudly, the retries quietly: one outage, one line.
                    if failures == 1 {
                        tracing::warn!(source = %self.config.name, error = %message, "capture source failed; retrying with backoff");
                    } else {
                        tracing::debug!(source = %self.config.name, error = %message, failures, "capture source still failing");
                    }
                    // A session that ran a while was healthy: start the backoff over.
                    if started.elapsed() > self.config.max_backoff {
                        backoff = Duration::from_millis(250);
                    }
                    tokio::select! {
                        () = self.cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        metrics::gauge!(UP, "source" => self.source()).set(0.0);
    }

    /// One connection's life: connect, take the drain lock, drain until cancelled or failed.
    async fn session(&self) -> Result<(), DrainError> {
        let connector = bitacora_store_postgres::connect::parse(&self.config.database_url)
            .map_err(|e| CaptureError::Invalid(format!("capture database URL: {e}")))?;
        let mut pg_config = connector.config;
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(Duration::from_secs(10));
        }
        pg_config.keepalives_idle(Duration::from_secs(30));
        pg_config.application_name("bitacora capture drain");
        let (client, mut connection) = pg_config
            .connect(connector.tls)
            .await
            .map_err(|e| CaptureError::pg("cannot connect", &e))?;
        let (wake_tx, mut wake) = mpsc::unbounded_channel::<()>();
        let driver = tokio::spawn(async move {
            let mut messages = std::pin::pin!(futures::stream::poll_fn(
                move |cx| connection.poll_message(cx)
            ));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        let _ = wake_tx.send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %pg_message(&e), "capture connection failed");
                        break;
                    }
                }
            }
        });
        let _driver = AbortOnDrop(driver.abort_handle());

        let install_id = self.install_id(&client).await?;
        // One drain per outbox: the others wait here as standbys.
        loop {
            let locked: bool = timed(
                "taking the drain lock",
                client.query_one("SELECT pg_try_advisory_lock($1)", &[&DRAIN_LOCK]),
            )
            .await?
            .map_err(|e| CaptureError::pg("cannot take the drain lock", &e))?
            .get(0);
            if locked {
                break;
            }
            self.status.update(|s| {
                s.state = SourceState::Standby;
                s.last_error = None;
                s.failures = 0;
            });
            tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        timed("LISTEN", client.batch_execute("LISTEN bitacora_capture"))
            .await?
            .map_err(|e| CaptureError::pg("cannot LISTEN", &e))?;
        // The error and the failure count stay until a pass succeeds: a source that connects
        // and then fails every pass is still failing.
        self.status.update(|s| s.state = SourceState::Running);
        metrics::gauge!(UP, "source" => self.source()).set(1.0);
        tracing::info!(source = %self.config.name, tenant = %self.config.tenant, "capture source connected; draining");

        let mut measured: Option<Instant> = None;
        let mut failing = self.status.snapshot().failures > 0;
        // Whether the triggers are asked to NOTIFY (bitacora_capture.drain_state): only while
        // this drain waits, since each NOTIFY serializes the application's commits.
        let mut listening = None;
        loop {
            let drained = match self.pass(&client, &install_id).await {
                Ok(drained) => drained,
                Err(e) => {
                    // Show the backlog this failure leaves, if the connection still answers.
                    let _ = self.measure(&client).await;
                    return Err(e);
                }
            };
            if failing {
                failing = false;
                self.status.update(|s| {
                    s.last_error = None;
                    s.failures = 0;
                });
            }
            if measured.is_none_or(|t| t.elapsed() >= MEASURE_EVERY) || drained == 0 {
                self.measure(&client).await?;
                measured = Some(Instant::now());
            }
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            if drained > 0 && listening != Some(false) {
                set_listening(&client, false).await?;
                listening = Some(false);
            }
            if drained >= self.config.batch_size {
                continue;
            }
            if listening != Some(true) {
                set_listening(&client, true).await?;
                listening = Some(true);
                // A change committed before the flag was visible sent no NOTIFY: look again.
                continue;
            }
            tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                woke = wake.recv() => if woke.is_none() { return Err(DrainError::Closed) },
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
            // Many commits, one pass.
            while wake.try_recv().is_ok() {}
        }
    }

    async fn install_id(&self, client: &Client) -> Result<String, DrainError> {
        let row = timed(
            "reading the install id",
            client.query_opt(
                "SELECT value FROM bitacora_capture.meta WHERE key = 'install_id'",
                &[],
            ),
        )
        .await?;
        match row {
            Ok(Some(row)) => Ok(row.get(0)),
            Ok(None) => Err(CaptureError::NotInstalled.into()),
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME) =>
            {
                Err(CaptureError::NotInstalled.into())
            }
            Err(e) => Err(CaptureError::pg("cannot read bitacora_capture.meta", &e).into()),
        }
    }

    /// One batch: read, seal, append (durable), delete. Returns the rows drained.
    async fn pass(&self, client: &Client, install_id: &str) -> Result<usize, DrainError> {
        let limit = self.config.batch_size.max(1) as i64;
        let rows = timed("reading the outbox", client.query(OUTBOX_QUERY, &[&limit]))
            .await?
            .map_err(|e| CaptureError::pg("cannot read the outbox", &e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let outbox: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let ids: Vec<i64> = outbox.iter().map(|(id, _)| *id).collect();
        let received_at = Utc::now().trunc_subsecs(6);
        let tenant = self.config.tenant.clone();
        let policy = self.policy.clone();
        let install = install_id.to_owned();
        // Canonicalizing a batch of up to 64 KiB events is CPU work: off the runtime.
        let (sealed, rejected) = tokio::task::spawn_blocking(move || {
            let mut rejected = Vec::new();
            let sealed = outbox
                .iter()
                .map(|(id, raw)| {
                    let converted = convert::parse_row(*id, raw).and_then(|row| {
                        convert::seal(&row, &install, &tenant, &policy, received_at).or_else(|err| {
                            tracing::error!(outbox.id = id, error = %err.message, "a captured change failed validation; recording it without its values");
                            convert::seal_fallback(&row, &install, &tenant, &policy, received_at, &err.message)
                                .map_err(|e| format!("the event was refused: {}", e.message))
                        })
                    });
                    converted.unwrap_or_else(|reason| {
                        tracing::error!(outbox.id = id, error = %reason, "an outbox row cannot be converted; quarantined as a bitacora.capture.rejected event");
                        rejected.push(format!("outbox row {id}: {reason}"));
                        convert::seal_rejected(*id, raw, &reason, &install, &tenant, &policy, received_at)
                    })
                })
                .collect::<Vec<_>>();
            (sealed, rejected)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("sealing captured events panicked: {e}")))?;
        let outcomes = self.store.append(sealed).await?;
        let mut stored = 0u64;
        for outcome in &outcomes {
            match outcome {
                AppendOutcome::Stored { .. } => stored += 1,
                // Appended by a pass that died before its DELETE.
                AppendOutcome::Duplicate { .. } => {}
                AppendOutcome::Conflict { id } => {
                    // Only possible if this row was drained before by a bitacora that shaped
                    // events differently; the stored event stands.
                    tracing::error!(event.id = %id, "a captured change's id is already stored with other content; keeping the stored event");
                    metrics::counter!(ERRORS, "source" => self.source()).increment(1);
                }
            }
        }
        timed(
            "deleting drained rows",
            client.execute(
                "DELETE FROM bitacora_capture.outbox WHERE id = ANY($1)",
                &[&ids],
            ),
        )
        .await?
        .map_err(|e| CaptureError::pg("cannot delete drained rows", &e))?;
        metrics::counter!(EVENTS_DRAINED, "source" => self.source()).increment(stored);
        metrics::counter!(REJECTED, "source" => self.source()).increment(rejected.len() as u64);
        let now = bitacora_core::event::timestamp::format(&Utc::now().trunc_subsecs(6));
        self.status.update(|s| {
            s.events_drained += stored;
            s.last_drained_at = Some(now);
            s.rows_rejected += rejected.len() as u64;
            if let Some(last) = rejected.last() {
                s.last_rejection = Some(last.clone());
            }
        });
        tracing::debug!(source = %self.config.name, rows = ids.len(), stored, "capture pass");
        Ok(ids.len())
    }

    async fn measure(&self, client: &Client) -> Result<(), DrainError> {
        let (depth, oldest) =
            timed("measuring the outbox", crate::install::outbox_depth(client)).await??;
        let lag = oldest.unwrap_or(0.0);
        metrics::gauge!(DEPTH, "source" => self.source()).set(depth as f64);
        metrics::gauge!(LAG, "source" => self.source()).set(lag);
        self.status.update(|s| {
            s.outbox_depth = Some(depth);
            s.lag_seconds = Some(lag);
        });
        Ok(())
    }
}

async fn set_listening(client: &Client, on: bool) -> Result<(), DrainError> {
    timed(
        "updating the drain state",
        client.execute(
            "UPDATE bitacora_capture.drain_state SET listening = $1",
            &[&on],
        ),
    )
    .await?
    .map_err(|e| CaptureError::pg("cannot update bitacora_capture.drain_state", &e))?;
    Ok(())
}

async fn timed<T>(what: &'static str, f: impl Future<Output = T>) -> Result<T, DrainError> {
    tokio::time::timeout(STATEMENT_TIMEOUT, f)
        .await
        .map_err(|_| DrainError::Timeout(what))
}
