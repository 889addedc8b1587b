//! Rollups for `Store::stats` (`GET /v1/stats` and the dashboard), migration 4.
//!
//! The writer adds, in the append transaction, each event to three per-tenant, per-UTC-day
//! tables: joint counts by category, severity, outcome and "has no actor id" (`stats_days`),
//! counts per actor id (`stats_day_actors`) and per client address (`stats_day_ips`), one
//! `unnest` upsert per table per commit. Rows are per tenant, and a commit holds the row lock
//! of every tenant it appends to, so servers sharing the database never wait on each other's
//! rollup rows for different tenants. [`crate::read::stats`] reads the rows of the whole
//! days a window covers and counts only the partial days at its ends from the events.

use std::collections::HashMap;

use bitacora_store::StoreResult;
use chrono::{DateTime, NaiveDate, Utc};

use crate::pg_error;

/// One group commit's additions to the rollups.
#[derive(Default)]
pub struct Deltas<'a> {
    /// (tenant, day, category, severity, outcome, no_actor) → events.
    days: HashMap<(i32, NaiveDate, &'a str, i16, i16, bool), i64>,
    actors: HashMap<(i32, NaiveDate, &'a str), i64>,
    ips: HashMap<(i32, NaiveDate, [u8; 16]), i64>,
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
        let day = r.occurred_at.date_naive();
        *self
            .days
            .entry((
                r.tenant_id,
                day,
                r.category,
                r.severity,
                r.outcome,
                r.actor_id.is_none(),
            ))
            .or_default() += 1;
        if let Some(a) = r.actor_id {
            *self.actors.entry((r.tenant_id, day, a)).or_default() += 1;
        }
        if let Some(ip) = r.ip {
            *self.ips.entry((r.tenant_id, day, ip)).or_default() += 1;
        }
    }

    pub async fn write(&self, tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
        if !self.days.is_empty() {
            let (mut t, mut d, mut c, mut s, mut o, mut na, mut n) = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for ((tid, day, category, severity, outcome, no_actor), count) in &self.days {
                t.push(*tid);
                d.push(*day);
                c.push(*category);
                s.push(*severity);
                o.push(*outcome);
                na.push(*no_actor);
                n.push(*count);
            }
            tx.execute(
                "INSERT INTO stats_days AS r
                    (tenant_id, day, category, severity, outcome, no_actor, count)
                 SELECT * FROM unnest($1::int4[], $2::date[], $3::text[], $4::int2[],
                                      $5::int2[], $6::bool[], $7::int8[])
                 ON CONFLICT (tenant_id, day, category, severity, outcome, no_actor)
                 DO UPDATE SET count = r.count + excluded.count",
                &[&t, &d, &c, &s, &o, &na, &n],
            )
            .await
            .map_err(pg_error)?;
        }
        if !self.actors.is_empty() {
            let (mut t, mut d, mut a, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((tid, day, actor), count) in &self.actors {
                t.push(*tid);
                d.push(*day);
                a.push(*actor);
                n.push(*count);
            }
            tx.execute(
                "INSERT INTO stats_day_actors AS r (tenant_id, day, actor_id, count)
                 SELECT * FROM unnest($1::int4[], $2::date[], $3::text[], $4::int8[])
                 ON CONFLICT (tenant_id, day, actor_id)
                 DO UPDATE SET count = r.count + excluded.count",
                &[&t, &d, &a, &n],
            )
            .await
            .map_err(pg_error)?;
        }
        if !self.ips.is_empty() {
            let (mut t, mut d, mut a, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((tid, day, ip), count) in &self.ips {
                t.push(*tid);
                d.push(*day);
                a.push(ip.to_vec());
                n.push(*count);
            }
            tx.execute(
                "INSERT INTO stats_day_ips AS r (tenant_id, day, ip, count)
                 SELECT * FROM unnest($1::int4[], $2::date[], $3::bytea[], $4::int8[])
                 ON CONFLICT (tenant_id, day, ip)
                 DO UPDATE SET count = r.count + excluded.count",
                &[&t, &d, &a, &n],
            )
            .await
            .map_err(pg_error)?;
        }
        Ok(())
    }
}
