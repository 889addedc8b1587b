//! Retention by whole partitions (CONTRACT §9, docs/LIFECYCLE.md): a month of `events` whose
//! every event has expired is archived by the lifecycle crate like any purge, then leaves the
//! store with `DETACH PARTITION` and `DROP TABLE` instead of a `DELETE` per row — no dead
//! tuples, no vacuum debt, its indexes gone with it.
//!
//! What a row purge does per event is done here per partition, in two steps: the work that
//! grows with the partition first, in bounded chunks that lock nothing an append waits for,
//! then one short transaction whose work grows only with the summaries' rows.
//!
//! 1. **Staging** ([`stage`]): the records arrive as they are announced
//!    ([`PartitionDrop`]'s `stage`, which the lifecycle calls while it archives the next
//!    batches, so the two steps overlap); the partition is read in `seq` order, about
//!    [`STAGE_CHUNK`] events at a time (whole purge records of one tenant), each chunk one
//!    autocommitted statement followed by a pause of [`STAGE_PAUSE`] of its time. Every row
//!    must be covered by one record, and each record must count exactly its rows, whose leaf
//!    hashes hash to its root; the rows' `seq`, id and leaf hash are then copied to
//!    `purged_events` under their record's announcement, and what the summaries will lose
//!    (per action, day, actor, address, facet combination and block) is added up in memory.
//!    The partition cannot change meanwhile except by an import of old events, which the
//!    transaction detects.
//! 2. **The drop**, one transaction: the `tenants` rows of the partition's tenants are locked
//!    in id order (the writer's order, so the two never deadlock; appends to those tenants
//!    wait from here, appends to others until the detach); `LOCK TABLE … IN SHARE MODE` on
//!    the partition and a count: it must hold exactly what was staged; `action_counts`,
//!    `actor_stats`, the daily rollups, the facets, the zone map and the address postings
//!    lose the staged shares — by decrement, and for what a decrement cannot lower (an
//!    actor's last event, name and email; a block's bounds and postings) read again from the
//!    other partitions (`tableoid <> partition`); the purge records are stored;
//!    `ALTER TABLE events DETACH PARTITION` and `DROP TABLE` (`events`'s `ACCESS EXCLUSIVE`
//!    lock until the `COMMIT` that follows at once; `lock_timeout` bounds every wait, after
//!    which the transaction is rolled back and the next pass tries again).
//!
//! **Staged, not yet purged.** Between the two steps (and for good, after a crash there or a
//! drop given up) a seq is in both `events` and `purged_events`. A `purged_events` row counts
//! only once its purge has a record in `purges`, which the drop's transaction stores: the
//! tree reads such a seq once (both rows carry the row's own leaf hash, `tree.rs`), `verify`
//! and the purge lookups read recorded rows only (`purge.rs`), and a later row purge or drop
//! of the same seq replaces the unrecorded copy ([`INSERT_PURGED`]). So a crash at any point
//! leaves the log exactly as provable as before, and the retried drop re-stages under its new
//! announcements. `BITACORA_STORE_CRASH_AT=staged` aborts the process between the steps,
//! `staging` after the first records handed over are staged (while the lifecycle is still
//! archiving the rest): fault injection for the crash tests; never set it in production.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bitacora_core::TenantName;
use bitacora_core::canonical::Hash;
use bitacora_core::merkle::root_from_leaves;
use bitacora_store::{
    PartitionGroup, PartitionSummary, PartitionTenant, PurgeRecord, StoreError, StoreResult,
};
use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use deadpool_postgres::{ClientWrapper, Transaction};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::partitions::Partitions;
use crate::purge::{INSERT_NEW_PURGED, INSERT_PURGED};
use crate::rollup::Removals;
use crate::{addresses, facets, hash32, pg_error, window};

/// How long the drop waits for a lock (the tenants' rows, then `events` itself) before giving
/// up; a later pass tries again.
const LOCK_TIMEOUT: &str = "10s";

/// Events staged per statement (step 1): whole purge records of one tenant, about this many.
const STAGE_CHUNK: u64 = 20_000;

/// After each staged chunk the drop pauses this fraction of the chunk's own time, so that
/// appends (which the staging does not block) keep their share of a small machine.
const STAGE_PAUSE: f64 = 0.5;

/// `events_YYYY_MM` → the month's bounds, in microseconds.
pub(crate) fn month_bounds(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("events_")?;
    let (y, m) = rest.split_once('_')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let from = NaiveDate::from_ymd_opt(y, m, 1)?;
    let to = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)?
    };
    let micros = |d: NaiveDate| {
        Some(
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
                .timestamp_micros(),
        )
    };
    Some((micros(from)?, micros(to)?))
}

/// The month partitions of `events` (by the names `bitacora_ensure_partition` gives them).
async fn partitions(client: &ClientWrapper) -> StoreResult<Vec<(String, i64, i64)>> {
    let mut out: Vec<(String, i64, i64)> = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass",
            &[],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            let (from, to) = month_bounds(&name)?;
            Some((name, from, to))
        })
        .collect();
    out.sort_by_key(|p| p.1);
    Ok(out)
}

pub async fn expired_partitions(
    client: &ClientWrapper,
    before: i64,
) -> StoreResult<Vec<PartitionSummary>> {
    let mut out = Vec::new();
    let names: BTreeMap<i32, TenantName> = client
        .query("SELECT id, name FROM tenants", &[])
        .await
        .map_err(pg_error)?
        .iter()
        .filter_map(|r| Some((r.get(0), TenantName::parse(r.get::<_, &str>(1)).ok()?)))
        .collect();
    for (name, from, to) in partitions(client).await? {
        if to > before {
            continue;
        }
        // The name comes from the catalog and matched `events_YYYY_MM`: safe to quote.
        let rows = client
            .query(
                &format!(
                    "SELECT tenant_id, category::text, action::text, count(*),
                            (extract(epoch FROM max(received_at)) * 1000000)::int8,
                            min(seq), max(seq)
                     FROM \"{name}\" GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
                ),
                &[],
            )
            .await
            .map_err(pg_error)?;
        if rows.is_empty() {
            continue;
        }
        let mut groups = Vec::new();
        let mut tenants: BTreeMap<i32, (u64, u64, u64)> = BTreeMap::new();
        for r in &rows {
            let tid: i32 = r.get(0);
            let tenant = names.get(&tid).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("{name}: tenant id {tid} has no name"))
            })?;
            let count = r.get::<_, i64>(3) as u64;
            groups.push(PartitionGroup {
                tenant,
                category: r.get(1),
                action: r.get(2),
                count,
                newest_received_at: r.get(4),
            });
            let (lo, hi) = (r.get::<_, i64>(5) as u64, r.get::<_, i64>(6) as u64);
            let t = tenants.entry(tid).or_insert((lo, hi, 0));
            t.0 = t.0.min(lo);
            t.1 = t.1.max(hi);
            t.2 += count;
        }
        out.push(PartitionSummary {
            name,
            from,
            to,
            groups,
            tenants: tenants
                .into_iter()
                .map(|(tid, (first_seq, last_seq, count))| PartitionTenant {
                    tenant: names[&tid].clone(),
                    first_seq,
                    last_seq,
                    count,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// A drop of the month partition `name` in progress ([`Store::begin_partition_drop`]): its
/// own pooled connection, the records staged so far, and what the summaries will lose.
///
/// [`Store::begin_partition_drop`]: bitacora_store::Store::begin_partition_drop
pub struct PartitionDrop {
    client: deadpool_postgres::Object,
    name: String,
    /// `name`, quoted for SQL.
    part: String,
    /// Tenant name → id, for the tenants of the records staged so far.
    ids: BTreeMap<String, i32>,
    records: Vec<(TenantName, PurgeRecord)>,
    shares: Shares,
    /// Reading, adding up and checking / writing / pausing, for the debug log.
    times: [std::time::Duration; 3],
    /// The months whose partitions the store knows (the dropped one is forgotten).
    partitions: std::sync::Arc<Partitions>,
}

impl PartitionDrop {
    /// Checks that `name` is a month partition of `events`; nothing is staged yet.
    pub(crate) async fn begin(
        client: deadpool_postgres::Object,
        name: &str,
        partitions: std::sync::Arc<Partitions>,
    ) -> StoreResult<Self> {
        if month_bounds(name).is_none() {
            return Err(StoreError::Internal(format!(
                "`{name}` is not a month partition of events"
            )));
        }
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'events'::regclass AND c.relname = $1)",
                &[&name],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if !exists {
            return Err(StoreError::Internal(format!(
                "`{name}` is not a partition of events"
            )));
        }
        Ok(PartitionDrop {
            client,
            name: name.to_owned(),
            // The name comes from the catalog and matched `events_YYYY_MM`: safe to quote.
            part: format!("\"{name}\""),
            ids: BTreeMap::new(),
            records: Vec::new(),
            shares: Shares::default(),
            times: [std::time::Duration::ZERO; 3],
            partitions,
        })
    }

    /// The ids of `records`' tenants, looked up once each.
    async fn tenant_ids(&mut self, records: &[(TenantName, PurgeRecord)]) -> StoreResult<()> {
        let mut wanted: Vec<&str> = records
            .iter()
            .map(|(t, _)| t.as_str())
            .filter(|t| !self.ids.contains_key(*t))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        wanted.sort_unstable();
        wanted.dedup();
        for r in self
            .client
            .query(
                "SELECT id, name FROM tenants WHERE name = ANY($1)",
                &[&wanted],
            )
            .await
            .map_err(pg_error)?
        {
            self.ids.insert(r.get(1), r.get(0));
        }
        if let Some(t) = wanted.iter().find(|t| !self.ids.contains_key(**t)) {
            return Err(StoreError::Internal(format!("tenant `{t}` has no log")));
        }
        Ok(())
    }

    /// Step 1 for `records`: see [`stage`].
    async fn stage_records(&mut self, records: &[(TenantName, PurgeRecord)]) -> StoreResult<()> {
        self.tenant_ids(records).await?;
        stage(
            &self.client,
            &self.part,
            records,
            &self.ids,
            &mut self.shares,
            &mut self.times,
        )
        .await?;
        self.records.extend_from_slice(records);
        crash_point("staging");
        Ok(())
    }

    /// Step 2: the drop's transaction.
    async fn drop_staged(mut self) -> StoreResult<()> {
        let (name, part) = (self.name.as_str(), self.part.as_str());
        tracing::debug!(
            partition = part,
            read_ms = self.times[0].as_millis() as u64,
            write_ms = self.times[1].as_millis() as u64,
            pause_ms = self.times[2].as_millis() as u64,
            "partition drop: staged"
        );
        crash_point("staged");
        let mut lap = Lap::new(name);
        let tx = self.client.transaction().await.map_err(pg_error)?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .await
            .map_err(pg_error)?;
        // The tenants' rows, in id order (the writer's order); appends to them wait from here.
        let locked: Vec<i32> = self.ids.values().copied().collect();
        tx.query(
            "SELECT id FROM tenants WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&locked],
        )
        .await
        .map_err(pg_error)?;
        // No row can enter the partition now (an import of old events, any tenant's); it must
        // hold exactly what was staged.
        tx.batch_execute(&format!("LOCK TABLE {part} IN SHARE MODE"))
            .await
            .map_err(pg_error)?;
        let total: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {part}"), &[])
            .await
            .map_err(pg_error)?
            .get(0);
        if total as u64 != self.shares.events {
            return Err(StoreError::Internal(format!(
                "{name}: the purge records cover {} of its {total} events; nothing dropped",
                self.shares.events
            )));
        }
        lap.done("lock+count");
        self.shares.subtract(&tx, name, &locked).await?;
        lap.done("summaries");
        // One statement for all of them (500 for a month of 1M in batches of 2,000: one
        // round trip each took ~1 s of the transaction).
        let n = self.records.len();
        let (mut t, mut seq, mut ranges, mut count, mut root, mut archive, mut at) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (tenant, record) in &self.records {
            t.push(self.ids[tenant.as_str()]);
            seq.push(record.event_seq as i64);
            ranges.push(record.ranges_text());
            count.push(record.count as i64);
            root.push(&record.root[..]);
            archive.push(record.archive.as_str());
            at.push(record.created_at);
        }
        tx.execute(
            "INSERT INTO purges (tenant_id, event_seq, ranges, count, root, archive, created_at)
             SELECT * FROM unnest($1::int4[], $2::int8[], $3::text[], $4::int8[], $5::bytea[],
                                  $6::text[], $7::int8[])",
            &[&t, &seq, &ranges, &count, &root, &archive, &at],
        )
        .await
        .map_err(pg_error)?;
        lap.done("records");
        tx.batch_execute(&format!(
            "ALTER TABLE events DETACH PARTITION {part}; DROP TABLE {part}"
        ))
        .await
        .map_err(pg_error)?;
        lap.done("detach+drop");
        tx.commit().await.map_err(pg_error)?;
        lap.done("commit");
        if let Some(month) = month_start(name) {
            self.partitions.forget(month);
        }
        tracing::info!(partition = name, "dropped an events partition (retention)");
        Ok(())
    }
}

#[async_trait::async_trait]
impl bitacora_store::PartitionDrop for PartitionDrop {
    async fn stage(&mut self, records: &[(TenantName, PurgeRecord)]) -> StoreResult<()> {
        self.stage_records(records).await
    }

    async fn finish(self: Box<Self>) -> StoreResult<()> {
        (*self).drop_staged().await
    }
}

/// Step 1: copies the leaf hashes of the partition `part` to `purged_events`, each under the
/// record whose ranges cover it, and adds up what the summaries will lose — in chunks of
/// about [`STAGE_CHUNK`] events (whole records, one tenant), one autocommitted statement
/// each, with a pause after each so appends keep their share of the machine. Each chunk is
/// checked before it is written: every row of its seq span is covered by one of its records,
/// and each record counts exactly its rows, whose leaf hashes hash to its root.
async fn stage(
    client: &ClientWrapper,
    part: &str,
    records: &[(TenantName, PurgeRecord)],
    ids: &BTreeMap<String, i32>,
    shares: &mut Shares,
    times: &mut [std::time::Duration; 3],
) -> StoreResult<()> {
    for chunk in chunks(records, STAGE_CHUNK) {
        let started = std::time::Instant::now();
        let tid = ids[records[chunk.start].0.as_str()];
        stage_chunk(client, part, tid, &records[chunk], shares, times).await?;
        let pause = started.elapsed().mul_f64(STAGE_PAUSE);
        tokio::time::sleep(pause).await;
        times[2] += pause;
    }
    Ok(())
}

/// `records` cut into runs of one tenant's consecutive records holding at most `limit`
/// events together (or one record, if it alone holds more).
fn chunks(records: &[(TenantName, PurgeRecord)], limit: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let (mut j, mut n) = (i, 0u64);
        while j < records.len()
            && records[j].0 == records[i].0
            && (j == i || n + records[j].1.count <= limit)
        {
            n += records[j].1.count;
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

async fn stage_chunk(
    client: &ClientWrapper,
    part: &str,
    tid: i32,
    chunk: &[(TenantName, PurgeRecord)],
    shares: &mut Shares,
    times: &mut [std::time::Duration; 3],
) -> StoreResult<()> {
    let started = std::time::Instant::now();
    // The chunk's ranges, in seq order, each with its record's index.
    let mut ranges: Vec<(u64, u64, usize)> = chunk
        .iter()
        .enumerate()
        .flat_map(|(k, (_, r))| r.ranges.iter().map(move |&(lo, hi)| (lo, hi, k)))
        .collect();
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[0].1 >= w[1].0) || ranges.iter().any(|r| r.0 > r.1) {
        return Err(StoreError::Internal(
            "a partition's purge records overlap; nothing dropped".into(),
        ));
    }
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Ok(());
    };
    let rows = client
        .query(
            &format!(
                "SELECT seq, event_id, leaf_hash, action, category, actor_id, occurred_at,
                        severity, outcome, ip, source
                 FROM {part} WHERE tenant_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq"
            ),
            &[&tid, &(first.0 as i64), &(last.1 as i64)],
        )
        .await
        .map_err(pg_error)?;
    let mut leaves: Vec<Vec<Hash>> = vec![Vec::new(); chunk.len()];
    let (mut seqs, mut ids, mut hashes, mut purges) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    let mut at = 0;
    for r in &rows {
        let seq = r.get::<_, i64>(0) as u64;
        while at < ranges.len() && ranges[at].1 < seq {
            at += 1;
        }
        let Some(&(_, _, k)) = ranges.get(at).filter(|g| g.0 <= seq) else {
            return Err(StoreError::Internal(format!(
                "the partition holds event {seq} of its tenant, which no purge record \
                 covers; nothing dropped"
            )));
        };
        let hash = hash32(r.get(2))?;
        leaves[k].push(hash);
        seqs.push(seq as i64);
        ids.push(r.get::<_, &str>(1));
        hashes.push(r.get::<_, &[u8]>(2));
        purges.push(chunk[k].1.event_seq as i64);
        shares.add(tid, r);
    }
    for ((tenant, record), leaves) in chunk.iter().zip(&leaves) {
        if leaves.len() as u64 != record.count {
            return Err(StoreError::Internal(format!(
                "the purge announced at seq {} of `{tenant}` counts {} events, the partition \
                 holds {} of them; nothing dropped",
                record.event_seq,
                record.count,
                leaves.len()
            )));
        }
        if root_from_leaves(leaves) != record.root {
            return Err(StoreError::Internal(format!(
                "the purge announced at seq {} of `{tenant}`: its root is not the root of \
                 the events it names; nothing dropped",
                record.event_seq
            )));
        }
    }
    let read = started.elapsed();
    times[0] += read;
    // A plain insert first: `ON CONFLICT` costs every row a speculative insertion (~40% more
    // here), and a conflict only happens when an earlier drop of the month was cut short.
    let params: [&(dyn ToSql + Sync); 5] = [&tid, &seqs, &ids, &hashes, &purges];
    let kept = match client.execute(INSERT_NEW_PURGED, &params).await {
        Ok(n) => n,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => client
            .execute(INSERT_PURGED, &params)
            .await
            .map_err(pg_error)?,
        Err(e) => return Err(pg_error(e)),
    };
    times[1] += started.elapsed() - read;
    if kept != seqs.len() as u64 {
        return Err(StoreError::Internal(format!(
            "{} of the partition's events are already recorded as purged; nothing dropped",
            seqs.len() as u64 - kept
        )));
    }
    Ok(())
}

/// (tenant, action, category, severity, outcome, source, block): a row of `event_facets`.
type FacetBlock = (i32, String, String, i16, i16, String, i64);

/// What the summaries lose with a partition, added up from its rows while they are staged
/// (the partition does not change meanwhile: its every event has expired, and the drop's
/// transaction checks that it still holds exactly what was staged).
#[derive(Default)]
struct Shares {
    events: u64,
    /// (tenant, action, category) → events.
    actions: HashMap<(i32, String, String), i64>,
    rollups: BTreeMap<i32, Removals>,
    /// (tenant, actor) → (events, newest `occurred_at` in µs).
    actors: HashMap<(i32, String), (i64, i64)>,
    facets: HashMap<FacetBlock, i64>,
    /// The zone-map blocks the partition's events are in, and those holding an address.
    blocks: BTreeSet<(i32, i64)>,
    address_blocks: BTreeSet<(i32, i64)>,
}

impl Shares {
    /// Counts one row of [`stage_chunk`]'s statement.
    fn add(&mut self, tid: i32, r: &tokio_postgres::Row) {
        let seq = r.get::<_, i64>(0) as u64;
        let (action, category): (&str, &str) = (r.get(3), r.get(4));
        let actor: Option<&str> = r.get(5);
        let occurred: DateTime<Utc> = r.get(6);
        let (severity, outcome): (i16, i16) = (r.get(7), r.get(8));
        let ip: Option<&[u8]> = r.get(9);
        let source: &str = r.get::<_, Option<&str>>(10).unwrap_or("");
        let block = window::block_of(seq);
        self.events += 1;
        *self
            .actions
            .entry((tid, action.to_owned(), category.to_owned()))
            .or_default() += 1;
        self.rollups.entry(tid).or_default().add(
            occurred,
            category,
            (severity, outcome),
            actor,
            ip,
        );
        if let Some(a) = actor {
            let e = self
                .actors
                .entry((tid, a.to_owned()))
                .or_insert((0, i64::MIN));
            e.0 += 1;
            e.1 = e.1.max(occurred.timestamp_micros());
        }
        *self
            .facets
            .entry((
                tid,
                action.to_owned(),
                category.to_owned(),
                severity,
                outcome,
                source.to_owned(),
                block,
            ))
            .or_default() += 1;
        self.blocks.insert((tid, block));
        if ip.is_some() {
            self.address_blocks.insert((tid, block));
        }
    }

    /// Takes the shares out of the summaries, in the drop's transaction, under the tenants'
    /// locks. What a decrement cannot lower (an actor's last event, its name and email, a
    /// block's bounds and postings) is read again from the other partitions
    /// (`tableoid <> partition`).
    async fn subtract(&self, tx: &Transaction<'_>, name: &str, tenants: &[i32]) -> StoreResult<()> {
        let elsewhere = elsewhere(name)?;
        let mut lap = Lap::new(name);
        let (mut t, mut a, mut c, mut n) = (vec![], vec![], vec![], vec![]);
        for ((tid, action, category), count) in &self.actions {
            t.push(*tid);
            a.push(action.as_str());
            c.push(category.as_str());
            n.push(*count);
        }
        tx.execute(
            "UPDATE action_counts s SET count = s.count - d.n
             FROM unnest($1::int4[], $2::text[], $3::text[], $4::int8[])
                  AS d(tenant_id, action, category, n)
             WHERE s.tenant_id = d.tenant_id AND s.action = d.action
               AND s.category = d.category",
            &[&t, &a, &c, &n],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "DELETE FROM action_counts WHERE tenant_id = ANY($1) AND count <= 0",
            &[&tenants],
        )
        .await
        .map_err(pg_error)?;
        lap.done("summaries: action counts");
        for (tid, rollups) in &self.rollups {
            rollups.subtract(tx, *tid).await?;
        }
        lap.done("summaries: rollups");
        let mut facet_deltas = facets::Deltas::default();
        for ((tid, action, category, severity, outcome, source, block), count) in &self.facets {
            facet_deltas.add(
                *tid,
                facets::FacetRef {
                    action,
                    category,
                    severity: *severity,
                    outcome: *outcome,
                    source,
                },
                (*block as u64) << window::BLOCK_BITS,
                -count,
                (None, None),
            );
        }
        facet_deltas.write(tx).await?;
        lap.done("summaries: facets");
        // Actors: their counts lose the partition's events; those whose last event was in it
        // get their last event (time, name, email) again from what remains.
        let (mut t, mut a, mut n, mut newest) = (vec![], vec![], vec![], vec![]);
        for ((tid, actor), (count, at)) in &self.actors {
            t.push(*tid);
            a.push(actor.as_str());
            n.push(*count);
            newest.push(*at);
        }
        tx.batch_execute(
            "CREATE TEMP TABLE bitacora_drop_actors
                 (tenant_id int4, actor_id text, n int8, newest int8) ON COMMIT DROP",
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "INSERT INTO bitacora_drop_actors
             SELECT * FROM unnest($1::int4[], $2::text[], $3::int8[], $4::int8[])",
            &[&t, &a, &n, &newest],
        )
        .await
        .map_err(pg_error)?;
        // A temporary table has no statistics until analyzed (the planner would guess its
        // size); a few milliseconds for the two of them.
        tx.batch_execute("ANALYZE bitacora_drop_actors")
            .await
            .map_err(pg_error)?;
        let (mut t, mut b, mut with_ip) = (vec![], vec![], vec![]);
        for (tid, block) in &self.blocks {
            t.push(*tid);
            b.push(*block);
            with_ip.push(self.address_blocks.contains(&(*tid, *block)));
        }
        tx.batch_execute(
            "CREATE TEMP TABLE bitacora_drop_blocks (tenant_id int4, block int8, with_ip bool)
             ON COMMIT DROP",
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "INSERT INTO bitacora_drop_blocks
             SELECT * FROM unnest($1::int4[], $2::int8[], $3::bool[])",
            &[&t, &b, &with_ip],
        )
        .await
        .map_err(pg_error)?;
        tx.batch_execute("ANALYZE bitacora_drop_blocks")
            .await
            .map_err(pg_error)?;
        let steps = [
            "UPDATE actor_stats s SET count = s.count - d.n FROM bitacora_drop_actors d
             WHERE s.tenant_id = d.tenant_id AND s.actor_id = d.actor_id"
                .to_owned(),
            "DELETE FROM actor_stats WHERE count <= 0".to_owned(),
            format!(
                "UPDATE actor_stats s SET last_seen = l.at, name = l.name, email = l.email
                 FROM bitacora_drop_actors d,
                      LATERAL (SELECT (extract(epoch FROM e.occurred_at) * 1000000)::int8 AS at,
                                      e.body::jsonb -> 'actor' ->> 'name' AS name,
                                      e.body::jsonb -> 'actor' ->> 'email' AS email
                               FROM events e
                               WHERE e.tenant_id = d.tenant_id AND e.actor_id = d.actor_id
                                 AND {elsewhere}
                               ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1) AS l
                 WHERE s.tenant_id = d.tenant_id AND s.actor_id = d.actor_id
                   AND d.newest >= s.last_seen"
            ),
            // ...and a name or email only the partition's events carried becomes the newest
            // remaining one, or none.
            carried_or_newest(&elsewhere, "name"),
            carried_or_newest(&elsewhere, "email"),
            // Zone map: the blocks the partition touched, recounted from the other partitions
            // (one range read per block: as a join, the 74 blocks of a 300k-event month took
            // 1.6 s, this way 7 ms).
            format!(
                "UPDATE event_blocks b SET count = f.n, min_at = coalesce(f.lo, b.min_at),
                                           max_at = coalesce(f.hi, b.max_at)
                 FROM bitacora_drop_blocks t,
                      LATERAL (SELECT count(*) AS n, min(e.occurred_at) AS lo,
                                      max(e.occurred_at) AS hi
                               FROM events e
                               WHERE e.tenant_id = t.tenant_id
                                 AND e.seq BETWEEN t.block << {bits}
                                               AND ((t.block + 1) << {bits}) - 1
                                 AND {elsewhere}) AS f
                 WHERE b.tenant_id = t.tenant_id AND b.block = t.block",
                bits = window::BLOCK_BITS
            ),
            "DELETE FROM event_blocks WHERE count <= 0".to_owned(),
        ];
        lap.done("summaries: temporary tables");
        for sql in steps.iter().chain(&addresses::rebuild(&elsewhere)) {
            tx.batch_execute(sql).await.map_err(pg_error)?;
            lap.done(&sql.split_whitespace().take(4).collect::<Vec<_>>().join(" "));
        }
        Ok(())
    }
}

/// Aborts the process right after `step` when `BITACORA_STORE_CRASH_AT` names it: how the
/// crash tests stop a drop between its staging and its transaction, as `kill -9` would.
/// Fault injection for the tests only; never set it in production.
fn crash_point(step: &str) {
    if std::env::var("BITACORA_STORE_CRASH_AT").is_ok_and(|s| s == step) {
        eprintln!("BITACORA_STORE_CRASH_AT={step}: aborting");
        std::process::abort();
    }
}

/// Each step's time, logged at debug level (the benchmark's breakdown).
struct Lap<'a> {
    partition: &'a str,
    at: std::time::Instant,
}

impl<'a> Lap<'a> {
    fn new(partition: &'a str) -> Self {
        Lap {
            partition,
            at: std::time::Instant::now(),
        }
    }

    fn done(&mut self, step: &str) {
        let now = std::time::Instant::now();
        tracing::debug!(
            partition = self.partition,
            step,
            ms = now.duration_since(self.at).as_millis() as u64,
            "partition drop step"
        );
        self.at = now;
    }
}

/// The first instant of the month a partition holds (for the writer's cache of partitions).
pub(crate) fn month_start(name: &str) -> Option<DateTime<Utc>> {
    let (from, _) = month_bounds(name)?;
    DateTime::from_timestamp_micros(from)
}

/// The condition (on `events e`) of an event in another partition than `name`: by its
/// bounds, so that the planner leaves the partition out of the scan (partition pruning),
/// rather than reading its rows to discard them (`tableoid <>` alone: every recount over a
/// block or an actor of a 1M-event month read the month's rows again).
fn elsewhere(name: &str) -> StoreResult<String> {
    let (from, to) = month_bounds(name)
        .ok_or_else(|| StoreError::Internal(format!("`{name}` is not a month partition")))?;
    let at = |us: i64| {
        DateTime::from_timestamp_micros(us)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S+00").to_string())
            .ok_or_else(|| StoreError::Internal(format!("`{name}`: bounds out of range")))
    };
    Ok(format!(
        "(e.received_at < '{}'::timestamptz OR e.received_at >= '{}'::timestamptz)
         AND e.tableoid <> '\"{name}\"'::regclass",
        at(from)?,
        at(to)?
    ))
}

/// Sets the `field` (`name` or `email`) of the actors the dropped partition held to
/// the newest one their remaining events carry, where no remaining event carries the stored
/// one (the actor's latest event may carry none, the stored value coming from older events):
/// `check_summaries` holds the store to values some event carries.
fn carried_or_newest(elsewhere: &str, field: &str) -> String {
    format!(
        "UPDATE actor_stats s SET {field} = (
             SELECT e.body::jsonb -> 'actor' ->> '{field}' FROM events e
             WHERE e.tenant_id = s.tenant_id AND e.actor_id = s.actor_id
               AND {elsewhere}
               AND e.body::jsonb -> 'actor' ->> '{field}' IS NOT NULL
             ORDER BY e.seq DESC LIMIT 1)
         FROM bitacora_drop_actors d
         WHERE s.tenant_id = d.tenant_id AND s.actor_id = d.actor_id AND s.{field} IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM events e
                           WHERE e.tenant_id = s.tenant_id AND e.actor_id = s.actor_id
                             AND {elsewhere}
                             AND e.body::jsonb -> 'actor' ->> '{field}' = s.{field})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_names_give_their_bounds() {
        let (from, to) = month_bounds("events_2025_12").unwrap();
        assert_eq!(
            DateTime::from_timestamp_micros(from).unwrap().to_rfc3339(),
            "2025-12-01T00:00:00+00:00"
        );
        assert_eq!(
            DateTime::from_timestamp_micros(to).unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        for bad in [
            "events",
            "events_2025",
            "events_2025_13",
            "events_25_01",
            "x_2025_01",
        ] {
            assert_eq!(month_bounds(bad), None, "{bad}");
        }
    }

    #[test]
    fn staging_chunks_are_whole_records_of_one_tenant_within_the_limit() {
        let record = |tenant: &str, count: u64| {
            (
                TenantName::parse(tenant).unwrap(),
                PurgeRecord {
                    event_seq: 0,
                    ranges: vec![(0, count - 1)],
                    count,
                    root: [0; 32],
                    archive: String::new(),
                    created_at: 0,
                },
            )
        };
        let records = [
            record("a", 4),
            record("a", 4),
            record("a", 4),
            record("b", 2),
            record("b", 9),
            record("b", 1),
        ];
        // Two of `a` fit in 8; `b`'s 9 alone is over the limit and goes by itself.
        assert_eq!(chunks(&records, 8), [0..2, 2..3, 3..4, 4..5, 5..6]);
        assert_eq!(chunks(&records, 100), [0..3, 3..6]);
        assert!(chunks(&records[..0], 8).is_empty());
    }
}
