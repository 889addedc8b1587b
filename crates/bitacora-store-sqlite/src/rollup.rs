//! Rollups for `Store::stats` (`GET /v1/stats` and the dashboard).
//!
//! The writer adds, in the append transaction, each event to three per-tenant tables at two
//! grains, the UTC day (migration 0006) and the UTC hour (migration 0015) of `occurred_at`:
//! joint counts by category, severity, outcome and "has no actor id" (`stats_days`,
//! `stats_hours`), counts per actor id (`stats_day_actors`, `stats_hour_actors`) and per
//! client address (`stats_day_ips`, `stats_hour_ips`). A stats window reads the day rows of
//! the whole days it covers, the hour rows of the whole hours of its two edge days (or, when
//! an edge keeps most of its day, that day's rows minus the hours it leaves out), and counts
//! only the partial hours at its two ends from the events (through the `occurred_at`
//! index). So a 30- or 90-day dashboard reads a few hundred rows per day of distinct actors
//! and addresses instead of every event, whatever time of day it ends at, and every figure
//! equals a full scan. A group commit adds one row change per distinct key it touches, not
//! one per event.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::sql_error;
use bitacora_store::StoreResult;

pub const DAY_US: i64 = 86_400_000_000;
pub const HOUR_US: i64 = 3_600_000_000;
const HOURS_PER_DAY: i64 = DAY_US / HOUR_US;

/// The UTC day of a timestamp in microseconds (floor, also before 1970).
pub fn day_of(us: i64) -> i64 {
    us.div_euclid(DAY_US)
}

/// The UTC hour of a timestamp in microseconds, counted from 1970 (floor).
pub fn hour_of(us: i64) -> i64 {
    us.div_euclid(HOUR_US)
}

/// A rollup grain: its tables and the width of its buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grain {
    Day,
    Hour,
}

impl Grain {
    pub const ALL: [Grain; 2] = [Grain::Day, Grain::Hour];

    pub fn bucket_of(self, us: i64) -> i64 {
        match self {
            Grain::Day => day_of(us),
            Grain::Hour => hour_of(us),
        }
    }

    /// The joint counts, the per-actor and the per-address table.
    pub fn tables(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Grain::Day => ("stats_days", "stats_day_actors", "stats_day_ips"),
            Grain::Hour => ("stats_hours", "stats_hour_actors", "stats_hour_ips"),
        }
    }

    /// The bucket column.
    pub fn column(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Hour => "hour",
        }
    }

    /// The day a bucket lies in.
    fn day(self, bucket: i64) -> i64 {
        match self {
            Grain::Day => bucket,
            Grain::Hour => bucket.div_euclid(HOURS_PER_DAY),
        }
    }
}

/// The rollup keys of one grain: (tenant, bucket, ...) → events.
#[derive(Default)]
pub struct Keys<A> {
    /// (tenant, bucket, category, severity, outcome, no_actor) → events.
    pub joint: HashMap<(i64, i64, i64, i64, i64, bool), i64>,
    pub actors: HashMap<(i64, i64, A), i64>,
    pub ips: HashMap<(i64, i64, [u8; 16]), i64>,
}

impl<A: std::hash::Hash + Eq> Keys<A> {
    fn add(&mut self, grain: Grain, r: &Row<'_>, actor: Option<A>) {
        let bucket = grain.bucket_of(r.occurred_us);
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
        if let Some(a) = actor {
            *self.actors.entry((r.tenant_id, bucket, a)).or_default() += 1;
        }
        if let Some(ip) = r.ip {
            *self.ips.entry((r.tenant_id, bucket, ip)).or_default() += 1;
        }
    }
}

/// Counts rows into both grains' keys (the writer adds them, a purge subtracts them).
pub struct Deltas<A> {
    pub grains: [(Grain, Keys<A>); 2],
}

impl<A> Default for Deltas<A> {
    fn default() -> Self {
        Deltas {
            grains: Grain::ALL.map(|g| {
                (
                    g,
                    Keys {
                        joint: HashMap::new(),
                        actors: HashMap::new(),
                        ips: HashMap::new(),
                    },
                )
            }),
        }
    }
}

/// What the rollups need of one event.
pub struct Row<'a> {
    pub tenant_id: i64,
    pub occurred_us: i64,
    pub category: i64,
    pub severity: i64,
    pub outcome: i64,
    pub actor_id: Option<&'a str>,
    pub ip: Option<[u8; 16]>,
}

impl<A: std::hash::Hash + Eq + Clone> Deltas<A> {
    /// Counts one event; `actor` is its actor id in the form the keys hold.
    pub fn add(&mut self, r: &Row<'_>, actor: Option<A>) {
        for (grain, keys) in &mut self.grains {
            keys.add(*grain, r, actor.clone());
        }
    }
}

impl<A: rusqlite::ToSql + Ord> Deltas<A> {
    /// Adds the counts to the rollup tables (the append transaction), in key order.
    pub fn write(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        for (grain, keys) in &self.grains {
            let (joint, actors, ips) = grain.tables();
            let b = grain.column();
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO {joint} (tenant_id, {b}, category, severity, outcome, no_actor, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT DO UPDATE SET count = count + excluded.count"
                ))
                .map_err(sql_error)?;
            for ((tid, bucket, category, severity, outcome, no_actor), n) in sorted(&keys.joint) {
                stmt.execute(params![
                    tid, bucket, category, severity, outcome, no_actor, n
                ])
                .map_err(sql_error)?;
            }
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO {actors} (tenant_id, {b}, actor_id, count) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET count = count + excluded.count"
                ))
                .map_err(sql_error)?;
            for ((tid, bucket, actor), n) in sorted(&keys.actors) {
                stmt.execute(params![tid, bucket, actor, n])
                    .map_err(sql_error)?;
            }
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO {ips} (tenant_id, {b}, ip, count) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET count = count + excluded.count"
                ))
                .map_err(sql_error)?;
            for ((tid, bucket, ip), n) in sorted(&keys.ips) {
                stmt.execute(params![tid, bucket, &ip[..], n])
                    .map_err(sql_error)?;
            }
        }
        Ok(())
    }

    /// Subtracts the counts from the rollup tables (a purge), deleting each row that reaches
    /// zero ([`decrement`]), in key order.
    pub fn subtract(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        for (grain, keys) in &self.grains {
            let (joint, actors, ips) = grain.tables();
            let b = grain.column();
            let run = |table: &str,
                       key: &str,
                       rows: &mut dyn Iterator<Item = Vec<&dyn rusqlite::ToSql>>|
             -> StoreResult<()> {
                decrement(
                    tx,
                    &format!(
                        "UPDATE {table} SET count = count - ?{n}
                         WHERE tenant_id = ?1 AND {b} = ?2 AND {key} RETURNING count",
                        n = key.matches('?').count() + 3,
                    ),
                    &format!("DELETE FROM {table} WHERE tenant_id = ?1 AND {b} = ?2 AND {key}"),
                    rows,
                )
            };
            run(
                joint,
                "category = ?3 AND severity = ?4 AND outcome = ?5 AND no_actor = ?6",
                &mut sorted(&keys.joint)
                    .into_iter()
                    .map(|((tid, bucket, c, s, o, na), n)| {
                        vec![
                            tid as _,
                            bucket as _,
                            c as _,
                            s as _,
                            o as _,
                            na as _,
                            n as _,
                        ]
                    }),
            )?;
            run(
                actors,
                "actor_id = ?3",
                &mut sorted(&keys.actors)
                    .into_iter()
                    .map(|((tid, bucket, a), n)| vec![tid as _, bucket as _, a as _, n as _]),
            )?;
            run(
                ips,
                "ip = ?3",
                &mut sorted(&keys.ips).into_iter().map(|((tid, bucket, ip), n)| {
                    vec![tid as _, bucket as _, ip as &dyn rusqlite::ToSql, n as _]
                }),
            )?;
        }
        Ok(())
    }
}

/// Decrements counters by key and deletes each one that reaches zero: by its key, never by
/// scanning the tenant's rows for empty ones (the rollups grow with buckets × actors and
/// buckets × addresses: a scan per purge cost O(table)). `update` takes a key's parameters and
/// then the amount, and returns the count left; `delete` takes the key's parameters.
pub(crate) fn decrement(
    tx: &Transaction<'_>,
    update: &str,
    delete: &str,
    keys: &mut dyn Iterator<Item = Vec<&dyn rusqlite::ToSql>>,
) -> StoreResult<()> {
    let mut update = tx.prepare_cached(update).map_err(sql_error)?;
    let mut delete = tx.prepare_cached(delete).map_err(sql_error)?;
    for p in keys {
        let left: Option<i64> = update
            .query_row(&p[..], |r| r.get(0))
            .optional()
            .map_err(sql_error)?;
        if left.is_some_and(|n| n <= 0) {
            delete.execute(&p[..p.len() - 1]).map_err(sql_error)?;
        }
    }
    Ok(())
}

/// A map's entries in key order: the rollups' primary keys, so that consecutive upserts or
/// updates touch the same pages.
fn sorted<K: Ord, V>(map: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

/// Counts over a window, before they are named and sorted. Signed while it is added up (an
/// edge day may be read as the day minus the hours outside the window); [`tally`] returns
/// it without the keys that came to zero.
#[derive(Default)]
pub struct Tally {
    pub total: i64,
    pub without_actor: i64,
    pub days: HashMap<i64, i64>,
    /// By category term id.
    pub categories: HashMap<i64, i64>,
    pub severities: [i64; 4],
    pub outcomes: [i64; 2],
    pub actors: HashMap<String, i64>,
    pub ips: HashMap<Vec<u8>, i64>,
}

/// Tallies tenant `tid`'s events with `since <= occurred_at < until`: whole days from the day
/// rollups, whole hours of the edge days from the hour rollups, the rest from the events.
pub fn tally(
    conn: &Connection,
    tid: i64,
    range: (i64, i64),
    since: i64,
    until: i64,
) -> StoreResult<Tally> {
    let mut t = Tally::default();
    if since >= until {
        return Ok(t);
    }
    // Whole days: [first, last).
    let first = day_of(since) + i64::from(since.rem_euclid(DAY_US) != 0);
    let last = day_of(until);
    if first <= last {
        read(conn, &mut t, tid, Grain::Day, first, last, 1)?;
        edge(conn, &mut t, tid, range, since, first * DAY_US)?;
        edge(conn, &mut t, tid, range, last * DAY_US, until)?;
    } else {
        // Within one day.
        edge(conn, &mut t, tid, range, since, until)?;
    }
    t.days.retain(|_, n| *n != 0);
    t.categories.retain(|_, n| *n != 0);
    t.actors.retain(|_, n| *n != 0);
    t.ips.retain(|_, n| *n != 0);
    Ok(t)
}

/// Adds `[from, to)`, which lies within one UTC day: its whole hours from the hour rollups
/// (or the day's rollups minus the hours outside, when that reads fewer buckets), the partial
/// hours at its ends from the events.
fn edge(
    conn: &Connection,
    t: &mut Tally,
    tid: i64,
    range: (i64, i64),
    from: i64,
    to: i64,
) -> StoreResult<()> {
    if from >= to {
        return Ok(());
    }
    let first = hour_of(from) + i64::from(from.rem_euclid(HOUR_US) != 0);
    let last = hour_of(to);
    if first >= last {
        return scan(conn, t, range, from, to);
    }
    let whole = last - first;
    let day = day_of(from);
    let (day_first, day_last) = (day * HOURS_PER_DAY, (day + 1) * HOURS_PER_DAY);
    // The day and the hours it has outside the window, or the window's hours.
    if 1 + HOURS_PER_DAY - whole < whole {
        read(conn, t, tid, Grain::Day, day, day + 1, 1)?;
        read(conn, t, tid, Grain::Hour, day_first, first, -1)?;
        read(conn, t, tid, Grain::Hour, last, day_last, -1)?;
    } else {
        read(conn, t, tid, Grain::Hour, first, last, 1)?;
    }
    scan(conn, t, range, from, first * HOUR_US)?;
    scan(conn, t, range, last * HOUR_US, to)
}

/// Adds `sign` times the rollup rows of `grain` with buckets in `[first, last)`. The rows are
/// added up here rather than with `GROUP BY`, which sorts them first.
fn read(
    conn: &Connection,
    t: &mut Tally,
    tid: i64,
    grain: Grain,
    first: i64,
    last: i64,
    sign: i64,
) -> StoreResult<()> {
    if first >= last {
        return Ok(());
    }
    let (joint, actors, ips) = grain.tables();
    let b = grain.column();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {b}, category, severity, outcome, no_actor, count FROM {joint}
             WHERE tenant_id = ?1 AND {b} >= ?2 AND {b} < ?3"
        ))
        .map_err(sql_error)?;
    let mut rows = stmt.query(params![tid, first, last]).map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let n = sign * r.get::<_, i64>(5).map_err(sql_error)?;
        t.total += n;
        *t.days
            .entry(grain.day(r.get(0).map_err(sql_error)?))
            .or_default() += n;
        *t.categories
            .entry(r.get(1).map_err(sql_error)?)
            .or_default() += n;
        let sev: i64 = r.get(2).map_err(sql_error)?;
        t.severities[sev.clamp(0, 3) as usize] += n;
        let out: i64 = r.get(3).map_err(sql_error)?;
        t.outcomes[out.clamp(0, 1) as usize] += n;
        if r.get::<_, bool>(4).map_err(sql_error)? {
            t.without_actor += n;
        }
    }
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT actor_id, count FROM {actors} WHERE tenant_id = ?1 AND {b} >= ?2 AND {b} < ?3"
        ))
        .map_err(sql_error)?;
    let mut rows = stmt.query(params![tid, first, last]).map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let n = sign * r.get::<_, i64>(1).map_err(sql_error)?;
        let actor = r
            .get_ref(0)
            .map_err(sql_error)?
            .as_str()
            .map_err(|e| sql_error(e.into()))?;
        match t.actors.get_mut(actor) {
            Some(c) => *c += n,
            None => {
                t.actors.insert(actor.to_owned(), n);
            }
        }
    }
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT ip, count FROM {ips} WHERE tenant_id = ?1 AND {b} >= ?2 AND {b} < ?3"
        ))
        .map_err(sql_error)?;
    let mut rows = stmt.query(params![tid, first, last]).map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let n = sign * r.get::<_, i64>(1).map_err(sql_error)?;
        let ip = r
            .get_ref(0)
            .map_err(sql_error)?
            .as_blob()
            .map_err(|e| sql_error(e.into()))?;
        match t.ips.get_mut(ip) {
            Some(c) => *c += n,
            None => {
                t.ips.insert(ip.to_vec(), n);
            }
        }
    }
    Ok(())
}

/// Adds the events with `since <= occurred_at < until` one by one.
fn scan(
    conn: &Connection,
    t: &mut Tally,
    (lo, hi): (i64, i64),
    since: i64,
    until: i64,
) -> StoreResult<()> {
    if since >= until {
        return Ok(());
    }
    let mut stmt = conn
        .prepare_cached(
            // Pinned to the time index: the planner, seeing the tenant's `pos` range, may
            // otherwise scan the whole log for what is at most two partial days.
            "SELECT occurred_at, category, severity, outcome, actor_id, ip
             FROM events INDEXED BY events_occurred
             WHERE occurred_at >= ?1 AND occurred_at < ?2 AND pos BETWEEN ?3 AND ?4",
        )
        .map_err(sql_error)?;
    let mut rows = stmt
        .query(params![since, until, lo, hi])
        .map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        t.total += 1;
        let at: i64 = r.get(0).map_err(sql_error)?;
        *t.days.entry(day_of(at)).or_default() += 1;
        *t.categories
            .entry(r.get(1).map_err(sql_error)?)
            .or_default() += 1;
        let sev: i64 = r.get(2).map_err(sql_error)?;
        t.severities[sev.clamp(0, 3) as usize] += 1;
        let out: i64 = r.get(3).map_err(sql_error)?;
        t.outcomes[out.clamp(0, 1) as usize] += 1;
        match r
            .get_ref(4)
            .map_err(sql_error)?
            .as_str_or_null()
            .ok()
            .flatten()
        {
            Some(a) => *t.actors.entry(a.to_owned()).or_default() += 1,
            None => t.without_actor += 1,
        }
        if let Some(ip) = r
            .get_ref(5)
            .map_err(sql_error)?
            .as_blob_or_null()
            .ok()
            .flatten()
        {
            *t.ips.entry(ip.to_vec()).or_default() += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_floored_before_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_US - 1), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(-DAY_US), -1);
        assert_eq!(day_of(-DAY_US - 1), -2);
    }
}
