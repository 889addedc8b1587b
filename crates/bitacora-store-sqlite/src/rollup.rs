//! Rollups for `Store::stats` (`GET /v1/stats` and the dashboard).
//!
//! The writer adds, in the append transaction, each event to three per-tenant, per-UTC-day
//! tables (migration 0006): joint counts by category, severity, outcome and "has no actor id"
//! (`stats_days`), counts per actor id (`stats_day_actors`) and per client address
//! (`stats_day_ips`). A stats window reads the rollup rows of the whole days it covers and
//! counts the partial days at its two ends from the events (through the `occurred_at`
//! index), so a 30- or 90-day dashboard reads a few hundred rows per day of distinct
//! actors and addresses instead of every event, and every figure equals a full scan.
//! A group commit adds one row change per distinct key it touches, not one per event.

use std::collections::HashMap;

use rusqlite::{Connection, Transaction, params};

use crate::sql_error;
use bitacora_store::StoreResult;

pub const DAY_US: i64 = 86_400_000_000;

/// The UTC day of a timestamp in microseconds (floor, also before 1970).
pub fn day_of(us: i64) -> i64 {
    us.div_euclid(DAY_US)
}

/// One group commit's additions to the rollups.
#[derive(Default)]
pub struct Deltas<'a> {
    /// (tenant, day, category, severity, outcome, no_actor) → events.
    days: HashMap<(i64, i64, i64, i64, i64, bool), i64>,
    actors: HashMap<(i64, i64, &'a str), i64>,
    ips: HashMap<(i64, i64, [u8; 16]), i64>,
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

impl<'a> Deltas<'a> {
    pub fn add(&mut self, r: Row<'a>) {
        let day = day_of(r.occurred_us);
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

    pub fn write(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        let mut days = tx
            .prepare_cached(
                "INSERT INTO stats_days (tenant_id, day, category, severity, outcome, no_actor, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT DO UPDATE SET count = count + excluded.count",
            )
            .map_err(sql_error)?;
        for ((tid, day, category, severity, outcome, no_actor), n) in &self.days {
            days.execute(params![tid, day, category, severity, outcome, no_actor, n])
                .map_err(sql_error)?;
        }
        let mut actors = tx
            .prepare_cached(
                "INSERT INTO stats_day_actors (tenant_id, day, actor_id, count)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET count = count + excluded.count",
            )
            .map_err(sql_error)?;
        for ((tid, day, actor), n) in &self.actors {
            actors
                .execute(params![tid, day, actor, n])
                .map_err(sql_error)?;
        }
        let mut ips = tx
            .prepare_cached(
                "INSERT INTO stats_day_ips (tenant_id, day, ip, count)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET count = count + excluded.count",
            )
            .map_err(sql_error)?;
        for ((tid, day, ip), n) in &self.ips {
            ips.execute(params![tid, day, &ip[..], n])
                .map_err(sql_error)?;
        }
        Ok(())
    }
}

/// Counts over a window, before they are named and sorted.
#[derive(Default)]
pub struct Tally {
    pub total: u64,
    pub without_actor: u64,
    pub days: HashMap<i64, u64>,
    /// By category term id.
    pub categories: HashMap<i64, u64>,
    pub severities: [u64; 4],
    pub outcomes: [u64; 2],
    pub actors: HashMap<String, u64>,
    pub ips: HashMap<Vec<u8>, u64>,
}

/// Tallies tenant `tid`'s events with `since <= occurred_at < until`: whole days from the
/// rollups, the rest from the events.
pub fn tally(
    conn: &Connection,
    tid: i64,
    (lo, hi): (i64, i64),
    since: i64,
    until: i64,
) -> StoreResult<Tally> {
    let mut t = Tally::default();
    if since >= until {
        return Ok(t);
    }
    // Whole days: [first, last) in days; the window's ends outside them are scanned.
    let first = day_of(since) + i64::from(since.rem_euclid(DAY_US) != 0);
    let last = day_of(until);
    if first >= last {
        scan(conn, &mut t, (lo, hi), since, until)?;
        return Ok(t);
    }
    scan(conn, &mut t, (lo, hi), since, first * DAY_US)?;
    scan(conn, &mut t, (lo, hi), last * DAY_US, until)?;
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT day, category, severity, outcome, no_actor, count FROM stats_days
                 WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3",
            )
            .map_err(sql_error)?;
        let mut rows = stmt.query(params![tid, first, last]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let n = r.get::<_, i64>(5).map_err(sql_error)? as u64;
            t.total += n;
            *t.days.entry(r.get(0).map_err(sql_error)?).or_default() += n;
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
    }
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT actor_id, sum(count) FROM stats_day_actors
                 WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3 GROUP BY actor_id",
            )
            .map_err(sql_error)?;
        let mut rows = stmt.query(params![tid, first, last]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            *t.actors.entry(r.get(0).map_err(sql_error)?).or_default() +=
                r.get::<_, i64>(1).map_err(sql_error)? as u64;
        }
    }
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT ip, sum(count) FROM stats_day_ips
                 WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3 GROUP BY ip",
            )
            .map_err(sql_error)?;
        let mut rows = stmt.query(params![tid, first, last]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            *t.ips.entry(r.get(0).map_err(sql_error)?).or_default() +=
                r.get::<_, i64>(1).map_err(sql_error)? as u64;
        }
    }
    Ok(t)
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
