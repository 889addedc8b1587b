//! Retention by whole partitions (CONTRACT §9, docs/LIFECYCLE.md): a month of `events` whose
//! every event has expired is archived by the lifecycle crate like any purge, then leaves the
//! store with `DETACH PARTITION` and `DROP TABLE` instead of a `DELETE` per row — no dead
//! tuples, no vacuum debt, its indexes gone with it.
//!
//! What a row purge does per event is done here per partition, in set-based statements, in
//! one transaction:
//!
//! 1. the `tenants` rows of every tenant in the partition are locked, in id order — the order
//!    the writer locks them in, so the two never deadlock; appends to those tenants wait
//!    (appends to others go on until step 5);
//! 2. every event of the partition is copied to `purged_events` (seq, id, leaf hash) under the
//!    record whose ranges cover it; the statement must copy the partition's every row, and
//!    every record's count must be what it copied for it, else nothing happens;
//! 3. `action_counts`, `actor_stats`, the daily rollups and the zone map lose the partition's
//!    share, computed from the partition by `GROUP BY` and, for what a decrement cannot
//!    lower (an actor's last event, a block's bounds), recomputed from the other partitions
//!    (`tableoid <> partition`);
//! 4. the purge records are stored;
//! 5. `ALTER TABLE events DETACH PARTITION` and `DROP TABLE` (this takes `events`'s
//!    `ACCESS EXCLUSIVE` lock for the moment until `COMMIT`; `lock_timeout` bounds the wait
//!    for it, after which the whole transaction is rolled back and retried at the next pass).

use std::collections::BTreeMap;

use bitacora_core::TenantName;
use bitacora_store::{
    PartitionGroup, PartitionSummary, PartitionTenant, PurgeRecord, StoreError, StoreResult,
};
use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use deadpool_postgres::ClientWrapper;

use crate::{addresses, facets, pg_error, window};

/// How long the drop waits for a lock (the tenants' rows, then `events` itself) before giving
/// up; a later pass tries again.
const LOCK_TIMEOUT: &str = "10s";

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

pub async fn drop_partition(
    client: &mut ClientWrapper,
    name: &str,
    records: &[(TenantName, PurgeRecord)],
) -> StoreResult<()> {
    if month_bounds(name).is_none() {
        return Err(StoreError::Internal(format!(
            "`{name}` is not a month partition of events"
        )));
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(pg_error)?;
    let exists: bool = tx
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
    // 1. The tenants' ids (their rows are locked only at step 3: the copy below touches
    // nothing an append writes, so appends go on while it runs).
    let wanted: Vec<&str> = {
        let mut v: Vec<&str> = records.iter().map(|(t, _)| t.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut ids: BTreeMap<String, i32> = BTreeMap::new();
    for r in tx
        .query(
            "SELECT id, name FROM tenants WHERE name = ANY($1) ORDER BY id",
            &[&wanted],
        )
        .await
        .map_err(pg_error)?
    {
        ids.insert(r.get(1), r.get(0));
    }
    // 2. Every row of the partition to `purged_events`, under the record covering it.
    let (mut r_tid, mut r_lo, mut r_hi, mut r_purge) = (vec![], vec![], vec![], vec![]);
    for (tenant, record) in records {
        let tid = *ids
            .get(tenant.as_str())
            .ok_or_else(|| StoreError::Internal(format!("tenant `{tenant}` has no log")))?;
        for &(lo, hi) in &record.ranges {
            r_tid.push(tid);
            r_lo.push(lo as i64);
            r_hi.push(hi as i64);
            r_purge.push(record.event_seq as i64);
        }
    }
    let copied: BTreeMap<(i32, i64), i64> = tx
        .query(
            &format!(
                "WITH copied AS (
                   INSERT INTO purged_events (tenant_id, seq, event_id, leaf_hash, purge)
                   SELECT p.tenant_id, p.seq, p.event_id, p.leaf_hash, r.purge
                   FROM \"{name}\" p
                   JOIN unnest($1::int4[], $2::int8[], $3::int8[], $4::int8[])
                        AS r(tenant_id, lo, hi, purge)
                     ON p.tenant_id = r.tenant_id AND p.seq BETWEEN r.lo AND r.hi
                   RETURNING tenant_id, purge)
                 SELECT tenant_id, purge, count(*) FROM copied GROUP BY 1, 2"
            ),
            &[&r_tid, &r_lo, &r_hi, &r_purge],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let total: i64 = tx
        .query_one(&format!("SELECT count(*) FROM \"{name}\""), &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let copied_total: i64 = copied.values().sum();
    if copied_total != total {
        return Err(StoreError::Internal(format!(
            "{name}: the purge records cover {copied_total} of its {total} events; nothing dropped"
        )));
    }
    for (tenant, record) in records {
        let key = (ids[tenant.as_str()], record.event_seq as i64);
        let n = copied.get(&key).copied().unwrap_or(0) as u64;
        if n != record.count {
            return Err(StoreError::Internal(format!(
                "{name}: the purge announced at seq {} of `{tenant}` counts {} events, the \
                 partition holds {n} of them; nothing dropped",
                record.event_seq, record.count
            )));
        }
    }
    // 3. The summaries lose the partition's share, under the tenants' row locks (taken in id
    // order, the writer's order), which the appends of those tenants wait for from here on.
    let locked: Vec<i32> = ids.values().copied().collect();
    tx.query(
        "SELECT id FROM tenants WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&locked],
    )
    .await
    .map_err(pg_error)?;
    let part = format!("\"{name}\"");
    let steps = [
        format!(
            "UPDATE action_counts c SET count = c.count - d.n
             FROM (SELECT tenant_id, action, category, count(*) AS n FROM {part}
                   GROUP BY 1, 2, 3) AS d
             WHERE c.tenant_id = d.tenant_id AND c.action = d.action AND c.category = d.category"
        ),
        "DELETE FROM action_counts WHERE count <= 0".to_owned(),
        format!(
            "UPDATE stats_days r SET count = r.count - d.n
             FROM (SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, category,
                          severity, outcome, actor_id IS NULL AS no_actor, count(*) AS n
                   FROM {part} GROUP BY 1, 2, 3, 4, 5, 6) AS d
             WHERE r.tenant_id = d.tenant_id AND r.day = d.day AND r.category = d.category
               AND r.severity = d.severity AND r.outcome = d.outcome
               AND r.no_actor = d.no_actor"
        ),
        format!(
            "UPDATE stats_day_actors r SET count = r.count - d.n
             FROM (SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, actor_id,
                          count(*) AS n
                   FROM {part} WHERE actor_id IS NOT NULL GROUP BY 1, 2, 3) AS d
             WHERE r.tenant_id = d.tenant_id AND r.day = d.day AND r.actor_id = d.actor_id"
        ),
        format!(
            "UPDATE stats_day_ips r SET count = r.count - d.n
             FROM (SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, ip,
                          count(*) AS n
                   FROM {part} WHERE ip IS NOT NULL GROUP BY 1, 2, 3) AS d
             WHERE r.tenant_id = d.tenant_id AND r.day = d.day AND r.ip = d.ip"
        ),
        "DELETE FROM stats_days WHERE count <= 0".to_owned(),
        "DELETE FROM stats_day_actors WHERE count <= 0".to_owned(),
        "DELETE FROM stats_day_ips WHERE count <= 0".to_owned(),
        // Actors: their counts lose the partition's events; those whose last event was in it
        // get their last event (time, name, email) again from what remains.
        format!(
            "CREATE TEMP TABLE bitacora_drop_actors ON COMMIT DROP AS
             SELECT tenant_id, actor_id, count(*) AS n,
                    (extract(epoch FROM max(occurred_at)) * 1000000)::int8 AS newest
             FROM {part} WHERE actor_id IS NOT NULL GROUP BY 1, 2"
        ),
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
                             AND e.tableoid <> '{part}'::regclass
                           ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1) AS l
             WHERE s.tenant_id = d.tenant_id AND s.actor_id = d.actor_id
               AND d.newest >= s.last_seen"
        ),
        // ...and a name or email only the partition's events carried becomes the newest
        // remaining one, or none.
        carried_or_newest(&part, "name"),
        carried_or_newest(&part, "email"),
        // Zone map: the blocks the partition touched, recounted from the other partitions.
        format!(
            "UPDATE event_blocks b SET count = f.n, min_at = coalesce(f.lo, b.min_at),
                                       max_at = coalesce(f.hi, b.max_at)
             FROM (SELECT t.tenant_id, t.block, count(e.seq) AS n, min(e.occurred_at) AS lo,
                          max(e.occurred_at) AS hi
                   FROM (SELECT DISTINCT tenant_id, seq >> {bits} AS block FROM {part}) AS t
                   LEFT JOIN events e ON e.tenant_id = t.tenant_id
                        AND e.seq BETWEEN t.block << {bits} AND ((t.block + 1) << {bits}) - 1
                        AND e.tableoid <> '{part}'::regclass
                   GROUP BY 1, 2) AS f
             WHERE b.tenant_id = f.tenant_id AND b.block = f.block",
            bits = window::BLOCK_BITS
        ),
        "DELETE FROM event_blocks WHERE count <= 0".to_owned(),
    ];
    for sql in steps
        .iter()
        .chain(&facets::subtract(&part))
        .chain(&addresses::subtract(&part))
    {
        tx.batch_execute(sql).await.map_err(pg_error)?;
    }
    // 4. The records.
    for (tenant, record) in records {
        tx.execute(
            "INSERT INTO purges (tenant_id, event_seq, ranges, count, root, archive, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &ids[tenant.as_str()],
                &(record.event_seq as i64),
                &record.ranges_text(),
                &(record.count as i64),
                &&record.root[..],
                &record.archive,
                &record.created_at,
            ],
        )
        .await
        .map_err(pg_error)?;
    }
    // 5. Out of the table, and gone.
    tx.batch_execute(&format!(
        "ALTER TABLE events DETACH PARTITION {part}; DROP TABLE {part}"
    ))
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

/// The first instant of the month a partition holds (for the writer's cache of partitions).
pub(crate) fn month_start(name: &str) -> Option<DateTime<Utc>> {
    let (from, _) = month_bounds(name)?;
    DateTime::from_timestamp_micros(from)
}

/// Sets the `field` (`name` or `email`) of the actors the dropped partition `part` held to
/// the newest one their remaining events carry, where no remaining event carries the stored
/// one (the actor's latest event may carry none, the stored value coming from older events):
/// `check_summaries` holds the store to values some event carries.
fn carried_or_newest(part: &str, field: &str) -> String {
    format!(
        "UPDATE actor_stats s SET {field} = (
             SELECT e.body::jsonb -> 'actor' ->> '{field}' FROM events e
             WHERE e.tenant_id = s.tenant_id AND e.actor_id = s.actor_id
               AND e.tableoid <> '{part}'::regclass
               AND e.body::jsonb -> 'actor' ->> '{field}' IS NOT NULL
             ORDER BY e.seq DESC LIMIT 1)
         FROM bitacora_drop_actors d
         WHERE s.tenant_id = d.tenant_id AND s.actor_id = d.actor_id AND s.{field} IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM events e
                           WHERE e.tenant_id = s.tenant_id AND e.actor_id = s.actor_id
                             AND e.tableoid <> '{part}'::regclass
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
}
