//! The data lifecycle (CONTRACT §9): retention that keeps the log provable, archives, legal
//! holds.
//!
//! - [`config`]: `[retention]` — the default age, rules by tenant, category and action prefix
//!   (the most specific wins), the archive URL, the pacing.
//! - [`archive`]: zstd-compressed bundles written through `object_store` (a local folder or S3).
//! - [`Retention::pass`]: one purge pass over every tenant; [`spawn_retention`] runs one every
//!   `check_interval` on a server and publishes a [`StatusHandle`].
//! - [`holds`]: legal-hold filters, parsed and matched with the store's own search.
//!
//! # One purge, step by step, and what a crash at each step leaves
//!
//! For each batch of expired, unheld events of a tenant (in `seq` order, at most `batch_size`,
//! all below the tenant's latest signed checkpoint):
//!
//! 1. **archive**: the events are written as one bundle (`docs/BUNDLE.md`, the signed
//!    checkpoint and each event's inclusion proof), zstd-compressed, to the archive; the write
//!    must be confirmed. A crash before or during it: nothing was purged; the next pass
//!    writes the same object again (same name).
//! 2. **announce**: a `bitacora.retention.purge` event is appended to the tenant's log with
//!    the seq ranges, the count, the RFC 6962 root of the purged leaf hashes and the archive
//!    object. A crash here leaves an announcement no purge followed (visible, harmless): the
//!    next pass archives and announces the same events again, then purges them.
//! 3. **purge**: [`bitacora_store::Store::purge`] removes their content and records the purge
//!    under the announcement's seq, in one transaction: all or nothing.
//!
//! So no event's content leaves the store before its archive is confirmed, and every purge is
//! vouched for by a signed event (`bitacora verify` checks both).
//!
//! **Groups and overlap.** Batches are archived one by one (step 1); once the archived ones
//! hold `transaction_size` events (or the scan ends) they are announced by one append (step 2,
//! one announcement event each) and purged by one store transaction
//! ([`Store::purge_many`], step 3), which costs less per event than a transaction per batch.
//! Group N's purge runs while group N+1 is read and archived; group N+1 is announced
//! before N's purge is waited for, and purged only once it is done. Each batch keeps its own
//! order, so a crash leaves at most one more group archived and announced but not purged
//! (redone by the next pass), and never a purge without its archive. After each purge the
//! pass pauses a quarter of the transaction's time, so appends get the store between purges. A whole
//! PostgreSQL partition is archived a few batches at a time, each followed by a pause in
//! proportion to its time (`retention.partition_pause_percent`), and its batches are announced
//! several per append; each announced group is handed at once to the store, which stages it
//! while the next ones are archived, and the partition is dropped once all are.
//! Announcements are never purged themselves.
//! `BITACORA_LIFECYCLE_CRASH_AT=archived|announced|purged` aborts the process right after
//! that step (fault-injection for the crash tests; never set it in production).
//!
//! Events are picked by `received_at` (the server's clock); legal holds are matched with the
//! store's own search (the filters of CONTRACT §3), so a hold covers exactly what a search
//! with its filter would show.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitacora_core::canonical::{Hash, SealedEvent, hex_hash};
use bitacora_core::event::{IngestContext, IngestPolicy};
use bitacora_core::merkle::root_from_leaves;
use bitacora_core::query::{EventFilter, EventQuery, Order, Pagination};
use bitacora_core::{Event, EventInput, TenantName};
use bitacora_log::BundleOptions;
use bitacora_store::{
    AppendOutcome, PartitionSummary, PurgeRecord, Store, StoreError, StoredEvent,
};
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod archive;
pub mod config;
pub mod holds;

pub use archive::Archive;
pub use config::{Age, Keep, RetentionConfig, Rule};

/// The action of a purge's announcement (`bitacora verify` checks purges against it).
pub const PURGE_ACTION: &str = bitacora_log::verify::PURGE_ACTION;
/// Placing and releasing a legal hold (recorded by the server, which takes the requests).
pub const HOLD_PLACED: &str = "bitacora.legal_hold.placed";
pub const HOLD_RELEASED: &str = "bitacora.legal_hold.released";

/// The store lease whose holder is the one server that purges (`Store::acquire_lease`).
pub const LEASE: &str = "retention";

/// Batches of a partition bundled and written at the same time (the store reads, the proofs,
/// the compression and the archive write of one overlap the others'). Two, not three: the
/// partition's staging runs beside the archive walk, and with three the walk ended 4-5 s
/// before the staging did, which then set the pace; with two, 1.5 s, for the same total
/// (BENCHMARKS.md, "PostgreSQL partition drop: staging overlapped with the archive walk").
const ARCHIVES_IN_FLIGHT: usize = 2;
/// Archived batches of a partition announced by one append.
const ANNOUNCE_TOGETHER: usize = 8;

/// The pause after one batch of a partition's archive walk that took `took` (its read, bundle,
/// compression and write): `percent` of it (`retention.partition_pause_percent`).
fn walk_pause(took: Duration, percent: u32) -> Duration {
    took * percent / 100
}

/// Purge records with their tenants, in the order they were announced.
type Records = Vec<(TenantName, PurgeRecord)>;

const PURGED_TOTAL: &str = "bitacora_retention_purged_events_total";
const PASSES: &str = "bitacora_retention_passes_total";
const ERRORS: &str = "bitacora_retention_errors_total";

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archive: {0}")]
    Archive(String),
    #[error("{0}")]
    Log(String),
}

impl From<bitacora_log::LogError> for LifecycleError {
    fn from(e: bitacora_log::LogError) -> Self {
        LifecycleError::Log(e.to_string())
    }
}

/// What one purge removed.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeSummary {
    pub tenant: String,
    /// `"3-7,9-9"`.
    pub ranges: String,
    pub count: u64,
    /// Hex RFC 6962 root over the purged leaf hashes, in seq order.
    pub root: String,
    /// The archive object's URL (empty in a dry run).
    pub archive: String,
    /// The seq of the `bitacora.retention.purge` event (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<u64>,
}

/// What one pass did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub dry_run: bool,
    pub purges: Vec<PurgeSummary>,
    /// Expired events kept because a legal hold covers them.
    pub held: u64,
    /// Partitions (PostgreSQL months) archived and dropped whole (in a dry run: that would
    /// be).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_partitions: Vec<String>,
    /// In a dry run, the events of `dropped_partitions` (they are not in `purges`, which the
    /// row-by-row purge would take): per partition, in the same order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partition_events: Vec<u64>,
    /// Tenants whose rule set is still within `min_delay` of its change: `(tenant, RFC 3339
    /// time purges start)`.
    pub delayed: Vec<(String, String)>,
}

impl PassReport {
    pub fn purged(&self) -> u64 {
        self.purges.iter().map(|p| p.count).sum()
    }
}

/// What `/readyz`, `/metrics`, `GET /v1/retention` and the viewer show of the retention task.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionStatus {
    /// Whether any rule ever purges.
    pub enabled: bool,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pass_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_pass_at: Option<String>,
    /// Events purged by this server since it started.
    pub purged_events: u64,
    pub purges: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set while the current rule set waits out `min_delay`: when purging starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purging_from: Option<String>,
    /// Another server sharing the store holds the retention lease, so this one does not
    /// purge (one purger per store; it takes over if the other stops renewing).
    pub standby: bool,
}

/// A shared view of the retention task's [`RetentionStatus`].
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<RetentionStatus>>);

impl StatusHandle {
    pub fn snapshot(&self) -> RetentionStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut RetentionStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Registers the retention metrics' descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        PURGED_TOTAL,
        "Events whose content retention purged (archived first)"
    );
    metrics::describe_counter!(PASSES, "Retention passes run");
    metrics::describe_counter!(
        ERRORS,
        "Retention passes that failed (nothing is purged without its archive)"
    );
}

/// Aborts the process right after `step` when `BITACORA_LIFECYCLE_CRASH_AT` names it: how the
/// crash tests kill the purge between its steps, as `kill -9` would.
fn crash_point(step: &str) {
    if std::env::var("BITACORA_LIFECYCLE_CRASH_AT").is_ok_and(|s| s == step) {
        eprintln!("BITACORA_LIFECYCLE_CRASH_AT={step}: aborting");
        std::process::abort();
    }
}

/// The retention engine: rules, archive, store.
#[derive(Clone)]
pub struct Retention {
    pub store: Arc<dyn Store>,
    pub config: RetentionConfig,
    pub archive: Archive,
    pub bundle: BundleOptions,
    pub policy: Arc<IngestPolicy>,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("archive", &self.archive)
            .finish_non_exhaustive()
    }
}

/// An expired event.
struct Candidate {
    event: StoredEvent,
}

/// What the rule match reads of a stored body (not the whole [`Event`]: a purge pass reads
/// every expired body, and a full parse was a large share of its cost).
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    category: std::borrow::Cow<'a, str>,
    received_at: DateTime<Utc>,
}

/// A purge whose store transaction (step 3) runs while the next batch is archived.
type PendingPurge = JoinHandle<Result<Vec<PurgeSummary>, LifecycleError>>;

/// Waits for `pending` and records what it purged.
async fn finish(
    pending: &mut Option<PendingPurge>,
    report: &mut PassReport,
) -> Result<(), LifecycleError> {
    if let Some(task) = pending.take() {
        let summaries = task
            .await
            .map_err(|e| LifecycleError::Log(format!("the purge task failed: {e}")))??;
        report.purges.extend(summaries);
    }
    Ok(())
}

impl Retention {
    /// One pass over every tenant (or `only`): purges what has expired, batch by batch.
    /// `now` is in microseconds since the epoch. A dry run archives and changes nothing.
    pub async fn pass(
        &self,
        now: i64,
        dry_run: bool,
        only: Option<&TenantName>,
        cancel: &CancellationToken,
    ) -> Result<PassReport, LifecycleError> {
        let mut report = PassReport {
            dry_run,
            ..PassReport::default()
        };
        if !self.config.enabled() {
            return Ok(report);
        }
        let first_seen = self
            .store
            .rules_first_seen(&self.config.fingerprint(), now)
            .await?;
        let start = first_seen.saturating_add(self.config.min_delay.as_micros());
        let waiting = now < start;
        if !waiting && !dry_run {
            self.partition_pass(now, only, &mut report, cancel).await?;
        }
        // A dry run names the partitions the pass would drop whole, and leaves their seqs out
        // of the row-by-row preview (the real pass drops them before it looks at rows).
        let mut whole: Vec<(TenantName, u64, u64)> = Vec::new();
        if !waiting && dry_run {
            whole = self.partition_preview(now, only, &mut report).await?;
        }
        let tenants = match only {
            Some(t) => vec![t.clone()],
            None => self.store.tenants().await?,
        };
        for tenant in tenants {
            if cancel.is_cancelled() {
                break;
            }
            if waiting {
                // Say what this rule set will remove and when, without removing it.
                let mut preview = PassReport::default();
                self.tenant_pass(&tenant, now, true, &mut preview, cancel)
                    .await?;
                let when = rfc3339(start);
                if preview.purged() > 0 {
                    tracing::warn!(
                        tenant = %tenant,
                        events = preview.purged(),
                        purging_from = %when,
                        "the retention rules changed: these events will be purged (archived first) \
                         once retention.min_delay has passed since the change"
                    );
                }
                report.delayed.push((tenant.to_string(), when));
                if dry_run {
                    report.purges.extend(preview.purges);
                    report.held += preview.held;
                }
                continue;
            }
            let skip: Vec<(u64, u64)> = whole
                .iter()
                .filter(|(t, _, _)| *t == tenant)
                .map(|&(_, first, last)| (first, last))
                .collect();
            self.tenant_pass_skipping(&tenant, now, dry_run, &skip, &mut report, cancel)
                .await?;
        }
        Ok(report)
    }

    /// What [`Retention::partition_pass`] would drop: each partition it would drop whole is
    /// named in the report with its event count; returns the seq ranges, per tenant, they
    /// hold.
    async fn partition_preview(
        &self,
        now: i64,
        only: Option<&TenantName>,
        report: &mut PassReport,
    ) -> Result<Vec<(TenantName, u64, u64)>, LifecycleError> {
        let Some(shortest) = self.config.shortest() else {
            return Ok(Vec::new());
        };
        let before = now.saturating_sub(shortest.as_micros());
        let mut ranges = Vec::new();
        for partition in self.store.expired_partitions(before).await? {
            if only.is_some_and(|t| partition.tenants.iter().any(|p| &p.tenant != t)) {
                continue;
            }
            if let Some(why) = self.partition_kept(&partition, now).await? {
                tracing::debug!(partition = %partition.name, why, "retention: partition not dropped whole");
                continue;
            }
            report.dropped_partitions.push(partition.name.clone());
            report
                .partition_events
                .push(partition.tenants.iter().map(|t| t.count).sum());
            ranges.extend(
                partition
                    .tenants
                    .iter()
                    .map(|t| (t.tenant.clone(), t.first_seq, t.last_seq)),
            );
        }
        Ok(ranges)
    }

    /// Whole partitions (PostgreSQL months) whose every event has expired, is below its
    /// tenant's signed checkpoint and is under no legal hold: archived and announced batch
    /// by batch like any purge, then dropped at once by the store
    /// ([`Store::drop_partition`]) instead of deleted row by row. A partition that holds
    /// anything else (an event a longer rule keeps, a held one, a purge announcement) is
    /// left to the row-by-row purge.
    async fn partition_pass(
        &self,
        now: i64,
        only: Option<&TenantName>,
        report: &mut PassReport,
        cancel: &CancellationToken,
    ) -> Result<(), LifecycleError> {
        let Some(shortest) = self.config.shortest() else {
            return Ok(());
        };
        let before = now.saturating_sub(shortest.as_micros());
        'partitions: for partition in self.store.expired_partitions(before).await? {
            if cancel.is_cancelled() {
                return Ok(());
            }
            if only.is_some_and(|t| partition.tenants.iter().any(|p| &p.tenant != t)) {
                continue;
            }
            if let Some(why) = self.partition_kept(&partition, now).await? {
                tracing::debug!(partition = %partition.name, why, "retention: partition not dropped whole");
                continue;
            }
            let started = std::time::Instant::now();
            // The store stages each announced group of records (copies their leaf hashes,
            // outside any lock) in a task of its own while the next batches are archived.
            let dropping = self.store.begin_partition_drop(&partition.name).await?;
            let (to_stage, mut staging) = tokio::sync::mpsc::unbounded_channel::<Records>();
            let stager = tokio::spawn(async move {
                let mut dropping = dropping;
                while let Some(records) = staging.recv().await {
                    dropping.stage(&records).await?;
                }
                Ok::<_, StoreError>(dropping)
            });
            let walked = self
                .archive_partition(&partition, now, cancel, &to_stage)
                .await;
            let archived_ms = started.elapsed().as_millis() as u64;
            drop(to_stage);
            let dropping = stager
                .await
                .map_err(|e| LifecycleError::Archive(format!("staging task failed: {e}")))??;
            // `None`: cancelled, or not droppable whole after all; what was staged counts for
            // nothing until a drop records its purges.
            let Some((records, summaries)) = walked? else {
                continue 'partitions;
            };
            let staged_ms = started.elapsed().as_millis() as u64;
            dropping.finish().await?;
            crash_point("purged");
            let count: u64 = records.iter().map(|(_, r)| r.count).sum();
            for (tenant, record) in &records {
                metrics::counter!(PURGED_TOTAL, "tenant" => tenant.to_string())
                    .increment(record.count);
            }
            tracing::info!(
                partition = %partition.name,
                events = count,
                purges = records.len(),
                archived_ms,
                staged_ms,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "retention archived a whole partition and dropped it"
            );
            report.purges.extend(summaries);
            report.dropped_partitions.push(partition.name.clone());
        }
        Ok(())
    }

    /// Archives and announces the events of `partition`, tenant by tenant, a few batches at a
    /// time, and hands each announced group of records to `to_stage`. `None` when cancelled,
    /// when the staging stopped (its error is the stager's), or when a tenant's seq range in
    /// the partition holds other events (then it goes row by row).
    async fn archive_partition(
        &self,
        partition: &PartitionSummary,
        now: i64,
        cancel: &CancellationToken,
        to_stage: &tokio::sync::mpsc::UnboundedSender<Records>,
    ) -> Result<Option<(Records, Vec<PurgeSummary>)>, LifecycleError> {
        let mut records = Vec::new();
        let mut summaries = Vec::new();
        for t in &partition.tenants {
            // Its events, read back in seq order and archived batch by batch: a few
            // batches are bundled and written at once, and they are announced together.
            let mut after = t.first_seq.checked_sub(1);
            let mut seen = 0u64;
            let mut archiving: std::collections::VecDeque<
                JoinHandle<Result<(PurgeSummary, Archived), LifecycleError>>,
            > = std::collections::VecDeque::new();
            let mut archived: Vec<(PurgeSummary, Archived)> = Vec::new();
            let mut last_page = false;
            loop {
                if cancel.is_cancelled() || to_stage.is_closed() {
                    for task in archiving {
                        let _ = task.await;
                    }
                    return Ok(None);
                }
                if !last_page && archiving.len() < ARCHIVES_IN_FLIGHT {
                    let read = std::time::Instant::now();
                    let page = self
                        .store
                        .search(&EventQuery {
                            tenant: t.tenant.clone(),
                            filter: EventFilter::default(),
                            order: Order::Asc,
                            page: Pagination::Cursor {
                                limit: self.config.batch_size,
                                after,
                            },
                        })
                        .await?;
                    let events: Vec<StoredEvent> = page
                        .events
                        .into_iter()
                        .take_while(|e| e.seq <= t.last_seq)
                        .collect();
                    if !events.is_empty() {
                        seen += events.len() as u64;
                        let this = self.clone();
                        let tenant = t.tenant.clone();
                        let percent = self.config.partition_pause_percent;
                        archiving.push_back(tokio::spawn(async move {
                            let mut summary = summary_of(&tenant, &events);
                            let done = this.archive_step(&tenant, &events, &mut summary).await?;
                            // Pacing: the batch's slot stays taken for a pause in proportion
                            // to its read and archive, so the walk uses at most about
                            // 100 / (100 + percent) of what it could.
                            tokio::time::sleep(walk_pause(read.elapsed(), percent)).await;
                            Ok((summary, done))
                        }));
                    }
                    match page.next_after {
                        Some(a) if a < t.last_seq => after = Some(a),
                        _ => last_page = true,
                    }
                    continue;
                }
                let Some(task) = archiving.pop_front() else {
                    break;
                };
                let done = task
                    .await
                    .map_err(|e| LifecycleError::Archive(format!("archive task failed: {e}")));
                match done {
                    Ok(Ok(batch)) => archived.push(batch),
                    Ok(Err(e)) | Err(e) => {
                        for task in archiving {
                            let _ = task.await;
                        }
                        return Err(e);
                    }
                }
                if archived.len() >= ANNOUNCE_TOGETHER || (last_page && archiving.is_empty()) {
                    self.announce_archived(
                        &t.tenant,
                        &mut archived,
                        now,
                        &mut records,
                        &mut summaries,
                        to_stage,
                    )
                    .await?;
                }
            }
            self.announce_archived(
                &t.tenant,
                &mut archived,
                now,
                &mut records,
                &mut summaries,
                to_stage,
            )
            .await?;
            if seen != t.count {
                // Its seqs are shared with another partition (an import of old events):
                // the announcements stay, harmless; the rows go one by one instead.
                tracing::warn!(
                    partition = %partition.name, tenant = %t.tenant, seen, holds = t.count,
                    "retention: a partition's seq range holds other events; not dropped whole"
                );
                return Ok(None);
            }
        }
        Ok(Some((records, summaries)))
    }

    /// Announces the `archived` batches in one append (step 2), moves them to `records` and
    /// `summaries`, and hands their records to the partition's staging.
    async fn announce_archived(
        &self,
        tenant: &TenantName,
        archived: &mut Vec<(PurgeSummary, Archived)>,
        now: i64,
        records: &mut Records,
        summaries: &mut Vec<PurgeSummary>,
        to_stage: &tokio::sync::mpsc::UnboundedSender<Records>,
    ) -> Result<(), LifecycleError> {
        if archived.is_empty() {
            return Ok(());
        }
        let list: Vec<PurgeSummary> = archived.iter().map(|(s, _)| s.clone()).collect();
        let seqs = self.announce_many(tenant, &list).await?;
        crash_point("announced");
        let from = records.len();
        for ((mut summary, done), seq) in archived.drain(..).zip(seqs) {
            summary.event_seq = Some(seq);
            records.push((tenant.clone(), done.record(seq, now)));
            summaries.push(summary);
        }
        // A closed channel is a stopped staging: the walk sees it and stops.
        let _ = to_stage.send(records[from..].to_vec());
        Ok(())
    }

    /// Why `partition` cannot be dropped whole now, if it cannot.
    async fn partition_kept(
        &self,
        partition: &PartitionSummary,
        now: i64,
    ) -> Result<Option<String>, LifecycleError> {
        for g in &partition.groups {
            if g.action == PURGE_ACTION {
                return Ok(Some(format!(
                    "it holds purge announcements of `{}`",
                    g.tenant
                )));
            }
            match self.config.keep_for(&g.tenant, &g.category, &g.action) {
                Keep::Forever => {
                    return Ok(Some(format!(
                        "a rule keeps `{}` events of `{}` forever",
                        g.action, g.tenant
                    )));
                }
                Keep::For(age) if g.newest_received_at.saturating_add(age.as_micros()) > now => {
                    return Ok(Some(format!(
                        "`{}` events of `{}` are kept {age}",
                        g.action, g.tenant
                    )));
                }
                Keep::For(_) => {}
            }
        }
        for t in &partition.tenants {
            let signed = self
                .store
                .latest_checkpoint(&t.tenant)
                .await?
                .map_or(0, |cp| cp.size);
            if t.last_seq >= signed {
                return Ok(Some(format!(
                    "`{}` has events no signed checkpoint covers yet",
                    t.tenant
                )));
            }
            let holds = holds::active(self.store.as_ref(), &t.tenant).await?;
            if holds::any_held(
                self.store.as_ref(),
                &t.tenant,
                &holds,
                t.first_seq,
                t.last_seq,
            )
            .await?
            {
                return Ok(Some(format!(
                    "a legal hold of `{}` covers some of it",
                    t.tenant
                )));
            }
        }
        Ok(None)
    }

    async fn tenant_pass(
        &self,
        tenant: &TenantName,
        now: i64,
        dry_run: bool,
        report: &mut PassReport,
        cancel: &CancellationToken,
    ) -> Result<(), LifecycleError> {
        self.tenant_pass_skipping(tenant, now, dry_run, &[], report, cancel)
            .await
    }

    /// [`Retention::tenant_pass`], leaving out the seqs in `skip` (inclusive ranges).
    async fn tenant_pass_skipping(
        &self,
        tenant: &TenantName,
        now: i64,
        dry_run: bool,
        skip: &[(u64, u64)],
        report: &mut PassReport,
        cancel: &CancellationToken,
    ) -> Result<(), LifecycleError> {
        let Some(shortest) = self.config.shortest_for(tenant) else {
            return Ok(());
        };
        // Nothing received after this can have expired under any rule of the tenant.
        let newest_expired = now.saturating_sub(shortest.as_micros());
        let signed = self
            .store
            .latest_checkpoint(tenant)
            .await?
            .map_or(0, |cp| cp.size);
        let holds = holds::active(self.store.as_ref(), tenant).await?;
        let batch = self.config.batch_size;
        let mut after: Option<u64> = None;
        // Group N's store transaction runs while group N+1 is read and archived; each batch
        // still goes archive, announce, purge in that order.
        let mut pending: Option<PendingPurge> = None;
        let result = self
            .tenant_batches(
                tenant,
                now,
                dry_run,
                skip,
                report,
                cancel,
                &mut after,
                &mut pending,
                (batch, newest_expired, signed, &holds),
            )
            .await;
        // Whatever happened, the purge in flight is waited for (and reported).
        let last = finish(&mut pending, report).await;
        result.and(last)
    }

    #[allow(clippy::too_many_arguments)]
    async fn tenant_batches(
        &self,
        tenant: &TenantName,
        now: i64,
        dry_run: bool,
        skip: &[(u64, u64)],
        report: &mut PassReport,
        cancel: &CancellationToken,
        after: &mut Option<u64>,
        pending: &mut Option<PendingPurge>,
        (batch, newest_expired, signed, holds): (
            u32,
            i64,
            u64,
            &[(bitacora_store::LegalHoldRecord, EventQuery)],
        ),
    ) -> Result<(), LifecycleError> {
        // Archived batches not yet announced: announced together and purged in one store
        // transaction once they hold `transaction_size` events (or the scan ends).
        let mut group: Vec<(PurgeSummary, Archived)> = Vec::new();
        let transaction_size = self.config.transaction_size.max(batch);
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let page = self
                .store
                .search(&EventQuery {
                    tenant: tenant.clone(),
                    filter: EventFilter::default(),
                    order: Order::Asc,
                    page: Pagination::Cursor {
                        limit: batch,
                        after: *after,
                    },
                })
                .await?;
            let mut candidates = Vec::new();
            let mut done = page.next_after.is_none();
            for e in page.events {
                // Only what a signed checkpoint covers can be archived with its proof.
                if e.seq >= signed {
                    done = true;
                    break;
                }
                let Ok(head) = serde_json::from_str::<Head<'_>>(&e.body) else {
                    return Err(StoreError::Corrupt(format!(
                        "seq {}: the stored body is not an event",
                        e.seq
                    ))
                    .into());
                };
                let received = head.received_at.timestamp_micros();
                // `received_at` follows `seq` (both are taken as the server receives the
                // event), so the first event too new for the shortest rule ends the scan.
                if received > newest_expired {
                    done = true;
                    break;
                }
                if head.action == PURGE_ACTION
                    || skip.iter().any(|&(a, b)| (a..=b).contains(&e.seq))
                {
                    continue;
                }
                match self.config.keep_for(tenant, &head.category, &head.action) {
                    Keep::Forever => continue,
                    Keep::For(age) if received.saturating_add(age.as_micros()) > now => continue,
                    Keep::For(_) => candidates.push(Candidate { event: e }),
                }
            }
            *after = page.next_after;
            if !candidates.is_empty() && !holds.is_empty() {
                let held = holds::held_seqs(
                    self.store.as_ref(),
                    tenant,
                    holds,
                    candidates.first().map_or(0, |c| c.event.seq),
                    candidates.last().map_or(0, |c| c.event.seq),
                )
                .await?;
                let before = candidates.len();
                candidates.retain(|c| !held.contains(&c.event.seq));
                report.held += (before - candidates.len()) as u64;
            }
            if !candidates.is_empty() {
                let events: Vec<StoredEvent> = candidates.into_iter().map(|c| c.event).collect();
                let mut summary = summary_of(tenant, &events);
                if dry_run {
                    report.purges.push(summary);
                } else {
                    // 1., while the previous group's purge runs.
                    let archived = self.archive_step(tenant, &events, &mut summary).await?;
                    group.push((summary, archived));
                }
            }
            let grouped: u64 = group.iter().map(|(s, _)| s.count).sum();
            if !group.is_empty() && (done || grouped >= u64::from(transaction_size)) {
                self.purge_group(tenant, now, &mut group, pending, report)
                    .await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Steps 2 and 3 for a group of archived batches: one append announces them all, then —
    /// once the previous group's purge is done — one store transaction purges them all, in
    /// the background, while the pass archives the next group.
    async fn purge_group(
        &self,
        tenant: &TenantName,
        now: i64,
        group: &mut Vec<(PurgeSummary, Archived)>,
        pending: &mut Option<PendingPurge>,
        report: &mut PassReport,
    ) -> Result<(), LifecycleError> {
        let announced = std::time::Instant::now();
        let list: Vec<PurgeSummary> = group.iter().map(|(s, _)| s.clone()).collect();
        let seqs = self.announce_many(tenant, &list).await;
        let announce_ms = announced.elapsed().as_secs_f64() * 1e3;
        // The previous group's purge is waited for even when the announcement failed.
        let waited = std::time::Instant::now();
        finish(pending, report).await?;
        let seqs = seqs?;
        crash_point("announced");
        tracing::debug!(
            batches = group.len(),
            announce_ms,
            wait_ms = waited.elapsed().as_secs_f64() * 1e3,
            "retention: group announced; waited for the previous purge"
        );
        let mut summaries = Vec::with_capacity(group.len());
        let mut records = Vec::with_capacity(group.len());
        for ((mut summary, archived), seq) in group.drain(..).zip(seqs) {
            summary.event_seq = Some(seq);
            records.push(archived.record(seq, now));
            summaries.push(summary);
        }
        // 3., in the background.
        let store = self.store.clone();
        let tenant = tenant.clone();
        *pending = Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            store.purge_many(&tenant, &records).await?;
            let took = started.elapsed();
            tracing::debug!(
                purge_ms = took.as_secs_f64() * 1e3,
                events = records.iter().map(|r| r.count).sum::<u64>(),
                "retention: purge committed"
            );
            crash_point("purged");
            for (summary, record) in summaries.iter().zip(&records) {
                metrics::counter!(PURGED_TOTAL, "tenant" => tenant.to_string())
                    .increment(record.count);
                tracing::info!(
                    tenant = %tenant,
                    events = record.count,
                    ranges = %summary.ranges,
                    archive = %summary.archive,
                    "retention purged events (archived first)"
                );
            }
            // Pacing: the writer (and so ingest) gets a turn at least as long as a quarter
            // of this transaction before the next one.
            tokio::time::sleep(took / 4).await;
            Ok(summaries)
        }));
        Ok(())
    }

    /// Step 1 of a purge: the events written to the archive as one bundle, the write
    /// confirmed; `summary.archive` gets the object's URL.
    async fn archive_step(
        &self,
        tenant: &TenantName,
        events: &[StoredEvent],
        summary: &mut PurgeSummary,
    ) -> Result<Archived, LifecycleError> {
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let leaves: Vec<Hash> = events.iter().map(|e| e.leaf_hash).collect();
        let root = root_from_leaves(&leaves);
        let mut options = self.bundle.clone();
        options.filter = json!({"retention_purge": summary.ranges});
        let started = std::time::Instant::now();
        let bundle =
            bitacora_log::bundle::bundle_of_events(self.store.clone(), tenant, events, options)
                .await?;
        let bundle_ms = started.elapsed().as_secs_f64() * 1e3;
        let compressed = tokio::task::spawn_blocking(move || archive::compress(&bundle))
            .await
            .map_err(|e| LifecycleError::Archive(format!("compression failed: {e}")))??;
        let zstd_ms = started.elapsed().as_secs_f64() * 1e3 - bundle_ms;
        let name = Archive::object_name(
            tenant.as_str(),
            seqs[0],
            *seqs.last().unwrap_or(&seqs[0]),
            &root,
        );
        let bytes = compressed.len();
        let url = self.archive.put(&name, compressed.into()).await?;
        tracing::debug!(
            bundle_ms,
            zstd_ms,
            put_ms = started.elapsed().as_secs_f64() * 1e3 - bundle_ms - zstd_ms,
            bytes,
            "retention: archive written"
        );
        summary.archive = url.clone();
        crash_point("archived");
        Ok(Archived {
            ranges: PurgeRecord::ranges_of(&seqs),
            count: seqs.len() as u64,
            root,
            url,
        })
    }

    /// Step 2 for several archived batches at once: one append (one commit, one turn of the
    /// tenant's lock on PostgreSQL) announces them all, in order; returns their seqs.
    async fn announce_many(
        &self,
        tenant: &TenantName,
        summaries: &[PurgeSummary],
    ) -> Result<Vec<u64>, LifecycleError> {
        let sealed = summaries
            .iter()
            .map(|s| self.announcement(tenant, s))
            .collect::<Result<Vec<_>, _>>()?;
        let outcomes = self.store.append(sealed).await?;
        if outcomes.len() != summaries.len() {
            return Err(LifecycleError::Store(StoreError::Internal(
                "the purge events were not all stored".into(),
            )));
        }
        outcomes
            .into_iter()
            .map(|o| match o {
                AppendOutcome::Stored { seq, .. } | AppendOutcome::Duplicate { seq, .. } => Ok(seq),
                other => Err(LifecycleError::Store(StoreError::Internal(format!(
                    "the purge event was not stored: {other:?}"
                )))),
            })
            .collect()
    }

    /// The `bitacora.retention.purge` event of `summary`, sealed.
    fn announcement(
        &self,
        tenant: &TenantName,
        summary: &PurgeSummary,
    ) -> Result<SealedEvent, LifecycleError> {
        let body = json!({
            "tenant": tenant.as_str(),
            "action": PURGE_ACTION,
            "category": "bitacora",
            "severity": "medium",
            "outcome": "success",
            "actor": {"id": "retention", "name": "bitacora retention", "type": "system"},
            "description": "Events purged by retention (archived first)",
            "context": {"source": "bitacora"},
            "metadata": {
                "ranges": summary.ranges,
                "count": summary.count,
                "root": summary.root,
                "archive": summary.archive,
            },
        });
        let internal = |m: String| LifecycleError::Store(StoreError::Internal(m));
        let input = EventInput::from_json(body.to_string().as_bytes())
            .map_err(|e| internal(format!("invalid purge event: {}", e.message)))?;
        SealedEvent::prepare(
            input,
            &self.policy,
            &IngestContext {
                pinned_tenant: None,
                received_at: Utc::now().trunc_subsecs(6),
                client_ip: None,
                allow_reserved: true,
            },
        )
        .map_err(|e| internal(format!("invalid purge event: {}", e.message)))
    }
}

/// A batch written to the archive (step 1), not yet announced.
struct Archived {
    ranges: Vec<(u64, u64)>,
    count: u64,
    root: Hash,
    url: String,
}

impl Archived {
    fn record(self, event_seq: u64, created_at: i64) -> PurgeRecord {
        PurgeRecord {
            event_seq,
            ranges: self.ranges,
            count: self.count,
            root: self.root,
            archive: self.url,
            created_at,
        }
    }
}

/// The summary of a purge of `events` (not yet archived nor announced).
fn summary_of(tenant: &TenantName, events: &[StoredEvent]) -> PurgeSummary {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let leaves: Vec<Hash> = events.iter().map(|e| e.leaf_hash).collect();
    let root = root_from_leaves(&leaves);
    PurgeSummary {
        tenant: tenant.to_string(),
        ranges: PurgeRecord {
            event_seq: 0,
            ranges: PurgeRecord::ranges_of(&seqs),
            count: 0,
            root,
            archive: String::new(),
            created_at: 0,
        }
        .ranges_text(),
        count: seqs.len() as u64,
        root: hex_hash(&root),
        archive: String::new(),
        event_seq: None,
    }
}

/// What `GET /v1/retention` shows of one tenant.
pub async fn describe_tenant(
    store: &dyn Store,
    config: &RetentionConfig,
    tenant: &TenantName,
) -> Result<TenantRetention, LifecycleError> {
    let oldest = store
        .search(&EventQuery {
            tenant: tenant.clone(),
            filter: EventFilter::default(),
            order: Order::Asc,
            page: Pagination::Cursor {
                limit: 1,
                after: None,
            },
        })
        .await?
        .events
        .into_iter()
        .next();
    let horizon = oldest.and_then(|e| {
        let event: Event = serde_json::from_str(&e.body).ok()?;
        Some(Horizon {
            seq: e.seq,
            id: event.id,
            received_at: event
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            occurred_at: event
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
    });
    let purges = store.purges(tenant).await?;
    Ok(TenantRetention {
        tenant: tenant.to_string(),
        default: config.default,
        rules: config.rules_for(tenant).into_iter().cloned().collect(),
        horizon,
        purged_events: purges.iter().map(|p| p.count).sum(),
        purges: purges.len() as u64,
        last_purge_archive: purges.last().map(|p| p.archive.clone()),
    })
}

/// The oldest event a tenant still holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Horizon {
    pub seq: u64,
    pub id: String,
    pub received_at: String,
    pub occurred_at: String,
}

/// One tenant's retention, as `GET /v1/retention` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRetention {
    pub tenant: String,
    /// The age of an event no rule covers (`null`: kept forever).
    pub default: Option<Keep>,
    /// The rules that can apply to this tenant, most specific first.
    pub rules: Vec<Rule>,
    /// The oldest event still held (`null`: none). An empty search older than this is not
    /// evidence that nothing happened.
    pub horizon: Option<Horizon>,
    pub purged_events: u64,
    pub purges: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_purge_archive: Option<String>,
}

/// RFC 3339 of microseconds since the epoch.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Runs a retention pass every `check_interval` until `cancel`; the first soon after start.
/// Only what has expired is touched; a failing pass (archive unreachable, store busy) is
/// logged, counted, shown in the status, and retried at the next interval.
pub fn spawn_retention(
    retention: Retention,
    cancel: CancellationToken,
) -> (JoinHandle<()>, StatusHandle) {
    let status = StatusHandle::default();
    status.update(|s| s.enabled = retention.config.enabled());
    let handle = status.clone();
    let task = tokio::spawn(async move {
        if !retention.config.enabled() {
            return;
        }
        let interval = retention.config.check_interval.as_duration();
        // One purger per store: servers sharing a PostgreSQL database take a lease, renewed
        // at every pass and long enough to outlive one missed pass, so a dead holder's place
        // is taken within about two intervals. (Two purgers would not lose anything — the
        // second purge of a batch is refused — but both would archive and announce it.)
        let holder = uuid::Uuid::now_v7().to_string();
        let lease_micros = (interval * 2 + Duration::from_secs(60)).as_micros() as i64;
        // A short delay first, so a server's start (and its tests) is not slowed by a pass.
        let mut wait = Duration::from_secs(1).min(interval);
        loop {
            status.update(|s| {
                s.next_pass_at = Some(rfc3339(
                    now_micros().saturating_add(wait.as_micros() as i64),
                ));
            });
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = interval;
            let now = now_micros();
            match retention
                .store
                .acquire_lease(LEASE, &holder, now, lease_micros)
                .await
            {
                Ok(true) => status.update(|s| s.standby = false),
                Ok(false) => {
                    status.update(|s| s.standby = true);
                    continue;
                }
                Err(e) => {
                    metrics::counter!(ERRORS).increment(1);
                    tracing::error!(error = %e, "retention: cannot take the purger lease; no pass");
                    status.update(|s| s.last_error = Some(e.to_string()));
                    continue;
                }
            }
            metrics::counter!(PASSES).increment(1);
            match retention.pass(now, false, None, &cancel).await {
                Ok(report) => status.update(|s| {
                    s.last_pass_at = Some(rfc3339(now));
                    s.purged_events += report.purged();
                    s.purges += report.purges.len() as u64;
                    s.last_error = None;
                    s.purging_from = report.delayed.first().map(|d| d.1.clone());
                }),
                Err(e) => {
                    metrics::counter!(ERRORS).increment(1);
                    tracing::error!(error = %e, "retention pass failed (nothing was purged without its archive)");
                    status.update(|s| {
                        s.last_pass_at = Some(rfc3339(now));
                        s.last_error = Some(e.to_string());
                    });
                }
            }
        }
    });
    (task, handle)
}

/// The seqs of `candidates` that are held, deduplicated (used by [`holds`]).
pub(crate) type SeqSet = BTreeSet<u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_pauses_its_setting_of_each_batch() {
        let batch = Duration::from_millis(240);
        // 0: no pause at all, the walk as fast as it can go (as before the setting).
        assert_eq!(walk_pause(batch, 0), Duration::ZERO);
        assert_eq!(walk_pause(batch, 50), Duration::from_millis(120));
        assert_eq!(walk_pause(batch, 100), batch);
        assert_eq!(walk_pause(batch, 250), Duration::from_millis(600));
        // The setting the pass reads is the configuration's.
        let config: RetentionConfig = toml::from_str("partition_pause_percent = 0").unwrap();
        assert_eq!(
            walk_pause(batch, config.partition_pause_percent),
            Duration::ZERO
        );
        assert_eq!(
            RetentionConfig::default().partition_pause_percent,
            config::DEFAULT_PARTITION_PAUSE_PERCENT
        );
    }
}
