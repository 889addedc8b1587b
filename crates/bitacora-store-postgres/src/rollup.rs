//! Rollups for `Store::stats` (`GET /v1/stats` and the dashboard), migrations 4 and 11.
//!
//! The writer adds, in the append transaction, each event to three per-tenant tables at two
//! grains, the UTC day (migration 4) and the UTC hour (migration 11) of `occurred_at`:
//! joint counts by category, severity, outcome and "has no actor id" (`stats_days`),
//! counts per actor id (`stats_day_actors`) and per client address (`stats_day_ips`), one
//! `unnest` upsert per table per commit. Rows are per tenant, and a commit holds the row lock
//! of every tenant it appends to, so servers sharing the database never wait on each other's
//! rollup rows for different tenants. [`crate::read::stats`] reads the day rows of the whole
//! days a window covers, the hour rows of the whole hours of its edge days, and counts only
//! the partial hours at its two ends from the events.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use bitacora_store::StoreResult;
use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use tokio_postgres::types::ToSql;

use crate::pg_error;

/// The UTC hour an instant lies in (its start).
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// A rollup grain's tables: the joint counts, per actor, per address; the bucket column and
/// its SQL type.
pub struct Tables {
    pub joint: &'static str,
    pub actors: &'static str,
    pub ips: &'static str,
    pub column: &'static str,
    pub sql_type: &'static str,
}

pub const DAYS: Tables = Tables {
    joint: "stats_days",
    actors: "stats_day_actors",
    ips: "stats_day_ips",
    column: "day",
    sql_type: "date",
};

pub const HOURS: Tables = Tables {
    joint: "stats_hours",
    actors: "stats_hour_actors",
    ips: "stats_hour_ips",
    column: "hour",
    sql_type: "timestamptz",
};

/// One grain's keys: (tenant, bucket, ...) → events.
struct Keys<'a, B> {
    /// (tenant, bucket, category, severity, outcome, no_actor) → events.
    joint: HashMap<(i32, B, &'a str, i16, i16, bool), i64>,
    actors: HashMap<(i32, B, &'a str), i64>,
    ips: HashMap<(i32, B, [u8; 16]), i64>,
}

impl<B> Default for Keys<'_, B> {
    fn default() -> Self {
        Keys {
            joint: HashMap::new(),
            actors: HashMap::new(),
            ips: HashMap::new(),
        }
    }
}

impl<'a, B: Hash + Eq + Copy + ToSql + Sync> Keys<'a, B> {
    fn add(&mut self, bucket: B, r: &Row<'a>) {
        *self
            .joint
            .entry((
                r.tenant_id,
                bucket,
                r.category,
                r.severity,
                r.outcome,
                r.actor_id.is_none(),
            ))
            .or_default() += 1;
        if let Some(a) = r.actor_id {
            *self.actors.entry((r.tenant_id, bucket, a)).or_default() += 1;
        }
        if let Some(ip) = r.ip {
            *self.ips.entry((r.tenant_id, bucket, ip)).or_default() += 1;
        }
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tables: &Tables,
    ) -> StoreResult<()> {
        let Tables {
            joint,
            actors,
            ips,
            column: b,
            sql_type,
        } = tables;
        if !self.joint.is_empty() {
            let (mut t, mut d, mut c, mut s, mut o, mut na, mut n) = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for ((tid, bucket, category, severity, outcome, no_actor), count) in &self.joint {
                t.push(*tid);
                d.push(*bucket);
                c.push(*category);
                s.push(*severity);
                o.push(*outcome);
                na.push(*no_actor);
                n.push(*count);
            }
            tx.execute(
                &format!(
                    "INSERT INTO {joint} AS r
                        (tenant_id, {b}, category, severity, outcome, no_actor, count)
                     SELECT * FROM unnest($1::int4[], $2::{sql_type}[], $3::text[], $4::int2[],
                                          $5::int2[], $6::bool[], $7::int8[])
                     ON CONFLICT (tenant_id, {b}, category, severity, outcome, no_actor)
                     DO UPDATE SET count = r.count + excluded.count"
                ),
                &[&t, &d, &c, &s, &o, &na, &n],
            )
            .await
            .map_err(pg_error)?;
        }
        if !self.actors.is_empty() {
            let (mut t, mut d, mut a, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((tid, bucket, actor), count) in &self.actors {
                t.push(*tid);
                d.push(*bucket);
                a.push(*actor);
                n.push(*count);
            }
            tx.execute(
                &format!(
                    "INSERT INTO {actors} AS r (tenant_id, {b}, actor_id, count)
                     SELECT * FROM unnest($1::int4[], $2::{sql_type}[], $3::text[], $4::int8[])
                     ON CONFLICT (tenant_id, {b}, actor_id)
                     DO UPDATE SET count = r.count + excluded.count"
                ),
                &[&t, &d, &a, &n],
            )
            .await
            .map_err(pg_error)?;
        }
        if !self.ips.is_empty() {
            let (mut t, mut d, mut a, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((tid, bucket, ip), count) in &self.ips {
                t.push(*tid);
                d.push(*bucket);
                a.push(ip.to_vec());
                n.push(*count);
            }
            tx.execute(
                &format!(
                    "INSERT INTO {ips} AS r (tenant_id, {b}, ip, count)
                     SELECT * FROM unnest($1::int4[], $2::{sql_type}[], $3::bytea[], $4::int8[])
                     ON CONFLICT (tenant_id, {b}, ip)
                     DO UPDATE SET count = r.count + excluded.count"
                ),
                &[&t, &d, &a, &n],
            )
            .await
            .map_err(pg_error)?;
        }
        Ok(())
    }
}

/// One group commit's additions to the rollups, by day and by hour.
#[derive(Default)]
pub struct Deltas<'a> {
    days: Keys<'a, NaiveDate>,
    hours: Keys<'a, DateTime<Utc>>,
}

/// What the rollups need of one event.
pub struct Row<'a> {
    pub tenant_id: i32,
    pub occurred_at: DateTime<Utc>,
    pub category: &'a str,
    pub severity: i16,
    pub outcome: i16,
    pub actor_id: Option<&'a str>,
    pub ip: Option<[u8; 16]>,
}

impl<'a> Deltas<'a> {
    pub fn add(&mut self, r: Row<'a>) {
        self.days.add(r.occurred_at.date_naive(), &r);
        self.hours.add(hour_of(r.occurred_at), &r);
    }

    pub async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
        self.days.write(tx, &DAYS).await?;
        self.hours.write(tx, &HOURS).await
    }
}

/// One grain's share of removed events: (bucket, ...) → events, in key order.
struct Removed<B> {
    /// (bucket, category, severity, outcome, no_actor) → events.
    joint: BTreeMap<(B, String, i16, i16, bool), i64>,
    actors: BTreeMap<(B, String), i64>,
    ips: BTreeMap<(B, Vec<u8>), i64>,
}

impl<B> Default for Removed<B> {
    fn default() -> Self {
        Removed {
            joint: BTreeMap::new(),
            actors: BTreeMap::new(),
            ips: BTreeMap::new(),
        }
    }
}

impl<B: Ord + Copy + ToSql + Sync> Removed<B> {
    fn add(
        &mut self,
        bucket: B,
        category: &str,
        (severity, outcome): (i16, i16),
        actor: Option<&str>,
        ip: Option<&[u8]>,
    ) {
        *self
            .joint
            .entry((
                bucket,
                category.to_owned(),
                severity,
                outcome,
                actor.is_none(),
            ))
            .or_default() += 1;
        if let Some(a) = actor {
            *self.actors.entry((bucket, a.to_owned())).or_default() += 1;
        }
        if let Some(ip) = ip {
            *self.ips.entry((bucket, ip.to_vec())).or_default() += 1;
        }
    }

    async fn subtract(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tid: i32,
        tables: &Tables,
    ) -> StoreResult<()> {
        let Tables {
            joint,
            actors,
            ips,
            column: b,
            sql_type,
        } = tables;
        let (mut d, mut c, mut s, mut o, mut na, mut n) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for ((bucket, category, severity, outcome, no_actor), count) in &self.joint {
            d.push(*bucket);
            c.push(category.as_str());
            s.push(*severity);
            o.push(*outcome);
            na.push(*no_actor);
            n.push(*count);
        }
        tx.execute(
            &format!(
                "UPDATE {joint} r SET count = r.count - x.n
                 FROM unnest($2::{sql_type}[], $3::text[], $4::int2[], $5::int2[], $6::bool[],
                             $7::int8[]) AS x(b, category, severity, outcome, no_actor, n)
                 WHERE r.tenant_id = $1 AND r.{b} = x.b AND r.category = x.category
                   AND r.severity = x.severity AND r.outcome = x.outcome
                   AND r.no_actor = x.no_actor"
            ),
            &[&tid, &d, &c, &s, &o, &na, &n],
        )
        .await
        .map_err(pg_error)?;
        subtract_per_key(
            tx,
            tid,
            (actors, b, sql_type),
            ("actor_id", "text"),
            self.actors
                .iter()
                .map(|((bucket, actor), n)| (*bucket, actor.as_str(), *n))
                .collect(),
        )
        .await?;
        subtract_per_key(
            tx,
            tid,
            (ips, b, sql_type),
            ("ip", "bytea"),
            self.ips
                .iter()
                .map(|((bucket, ip), n)| (*bucket, ip.as_slice(), *n))
                .collect(),
        )
        .await?;
        // What reached zero goes, by key: the touched buckets only, never a scan of the
        // tenant's rows (the rollups grow with buckets × actors and buckets × addresses).
        let touched: Vec<B> = {
            let mut v: Vec<B> = self.joint.keys().map(|k| k.0).collect();
            v.dedup();
            v
        };
        for table in [joint, actors, ips] {
            tx.execute(
                &format!(
                    "DELETE FROM {table}
                     WHERE tenant_id = $1 AND {b} = ANY($2::{sql_type}[]) AND count <= 0"
                ),
                &[&tid, &touched],
            )
            .await
            .map_err(pg_error)?;
        }
        Ok(())
    }
}

/// Subtracts counts from a per-actor or per-address rollup `table`: rows of (bucket, key,
/// amount), the bucket in column `b` of SQL type `sql_type`, the key in column `key`.
async fn subtract_per_key<B: ToSql + Sync, K: ToSql + Sync>(
    tx: &deadpool_postgres::Transaction<'_>,
    tid: i32,
    (table, b, sql_type): (&str, &str, &str),
    (key, key_type): (&str, &str),
    rows: Vec<(B, K, i64)>,
) -> StoreResult<()> {
    let (mut d, mut k, mut n) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for (bucket, key, count) in rows {
        d.push(bucket);
        k.push(key);
        n.push(count);
    }
    tx.execute(
        &format!(
            "UPDATE {table} r SET count = r.count - x.n
             FROM unnest($2::{sql_type}[], $3::{key_type}[], $4::int8[]) AS x(b, k, n)
             WHERE r.tenant_id = $1 AND r.{b} = x.b AND r.{key} = x.k"
        ),
        &[&tid, &d, &k, &n],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// What a purge (or a partition drop, per tenant) takes out of the stats rollups, by day and
/// by hour.
#[derive(Default)]
pub(crate) struct Removals {
    days: Removed<NaiveDate>,
    hours: Removed<DateTime<Utc>>,
}

impl Removals {
    /// Counts one removed event.
    pub(crate) fn add(
        &mut self,
        occurred_at: DateTime<Utc>,
        category: &str,
        severity_outcome: (i16, i16),
        actor: Option<&str>,
        ip: Option<&[u8]>,
    ) {
        let day = occurred_at.date_naive();
        self.days.add(day, category, severity_outcome, actor, ip);
        self.hours
            .add(hour_of(occurred_at), category, severity_outcome, actor, ip);
    }

    pub(crate) async fn subtract(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tid: i32,
    ) -> StoreResult<()> {
        self.days.subtract(tx, tid, &DAYS).await?;
        self.hours.subtract(tx, tid, &HOURS).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_floored_also_before_the_epoch() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            hour_of(at("2026-01-28T13:37:11.5Z")),
            at("2026-01-28T13:00:00Z")
        );
        assert_eq!(
            hour_of(at("2026-01-28T13:00:00Z")),
            at("2026-01-28T13:00:00Z")
        );
        // The same hour as PostgreSQL's `date_trunc('hour', t, 'UTC')`, not toward zero.
        assert_eq!(
            hour_of(at("1936-03-01T10:59:59.999999Z")),
            at("1936-03-01T10:00:00Z")
        );
        assert_eq!(
            hour_of(at("1969-12-31T23:30:00Z")),
            at("1969-12-31T23:00:00Z")
        );
    }
}
