//! Queries: searches, lookups and aggregates, on pooled connections.
//!
//! A search is compiled to one statement over `events` for one tenant, ordered by `seq`.
//! The indexes all lead with `tenant_id` and end with `seq`, so a selective filter is an
//! index range scan in log order on each partition, merged (`Merge Append`) and cut at the
//! page size; `q=` goes through the GIN index on the unaccented text.

use std::collections::HashMap;

use bitacora_core::api::{
    ActionSummary, ActorCount, ActorSummary, DayCount, KeyCount, SeverityCount, Stats,
};
use bitacora_core::event::timestamp;
use bitacora_core::query::{ActionPattern, EventQuery, Order, Pagination};
use bitacora_core::{Outcome, Severity, TenantName};
use bitacora_store::{SearchResult, StoreError, StoreResult, StoredEvent};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;

use crate::{derive, hash32, pg_error};

type Param = Box<dyn ToSql + Sync + Send>;

/// The tenant's id and log size, or `None` when it has never written.
pub async fn tenant(client: &ClientWrapper, name: &TenantName) -> StoreResult<Option<(i32, u64)>> {
    let stmt = client
        .prepare_cached("SELECT id, size FROM tenants WHERE name = $1")
        .await
        .map_err(pg_error)?;
    Ok(client
        .query_opt(&stmt, &[&name.as_str()])
        .await
        .map_err(pg_error)?
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64)))
}

fn row_event(r: &tokio_postgres::Row) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        seq: r.get::<_, i64>(0) as u64,
        leaf_hash: hash32(r.get(1))?,
        body: r.get(2),
    })
}

/// Text a stored value can never contain: PostgreSQL refuses NUL in text, and validated
/// event fields never hold one.
fn storable(s: &str) -> bool {
    !s.contains('\0')
}

pub async fn event_by_id(
    client: &ClientWrapper,
    t: &TenantName,
    id: &str,
) -> StoreResult<Option<StoredEvent>> {
    if !storable(id) {
        return Ok(None);
    }
    let Some((tid, _)) = tenant(client, t).await? else {
        return Ok(None);
    };
    let stmt = client
        .prepare_cached(
            "SELECT seq, leaf_hash, body FROM events WHERE tenant_id = $1 AND event_id = $2",
        )
        .await
        .map_err(pg_error)?;
    client
        .query_opt(&stmt, &[&tid, &id])
        .await
        .map_err(pg_error)?
        .map(|r| row_event(&r))
        .transpose()
}

pub async fn event_by_seq(
    client: &ClientWrapper,
    t: &TenantName,
    seq: u64,
) -> StoreResult<Option<StoredEvent>> {
    let Some((tid, size)) = tenant(client, t).await? else {
        return Ok(None);
    };
    if seq >= size {
        return Ok(None);
    }
    let stmt = client
        .prepare_cached("SELECT seq, leaf_hash, body FROM events WHERE tenant_id = $1 AND seq = $2")
        .await
        .map_err(pg_error)?;
    client
        .query_opt(&stmt, &[&tid, &(seq as i64)])
        .await
        .map_err(pg_error)?
        .map(|r| row_event(&r))
        .transpose()
}

/// A compiled search: the WHERE clause and its parameters.
struct Compiled {
    where_clause: String,
    params: Vec<Param>,
    /// Set when no event can match (a value no stored event can hold).
    empty: bool,
    /// True when no filter narrows the tenant's log (totals come from the tenant row).
    unfiltered: bool,
    /// True when the filter is only actions and/or categories: `where_clause` then reads the
    /// same on `action_counts`, whose sum is the total.
    counted: bool,
}

impl Compiled {
    fn push(&mut self, p: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(p));
        format!("${}", self.params.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Escapes LIKE's wildcards (`_` is common in action names).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn compile(tid: i32, q: &EventQuery) -> Compiled {
    let f = &q.filter;
    let mut c = Compiled {
        where_clause: String::new(),
        params: Vec::new(),
        empty: false,
        unfiltered: false,
        counted: false,
    };
    let mut clauses: Vec<String> = Vec::new();
    let t = c.push(tid);
    clauses.push(format!("tenant_id = {t}"));
    if let Pagination::Cursor {
        after: Some(after), ..
    } = q.page
    {
        let after = after.min(i64::MAX as u64) as i64;
        let p = c.push(after);
        clauses.push(match q.order {
            Order::Desc => format!("seq < {p}"),
            Order::Asc => format!("seq > {p}"),
        });
    }
    let mut check = |s: &str| {
        if !storable(s) {
            c.empty = true;
        }
    };
    for v in f
        .categories
        .iter()
        .chain(&f.actor_id)
        .chain(&f.actor)
        .chain(&f.target_type)
        .chain(&f.target_id)
        .chain(&f.source)
    {
        check(v);
    }
    if c.empty {
        return c;
    }

    if !f.actions.is_empty() {
        let mut exact = Vec::new();
        let mut any = Vec::new();
        for a in &f.actions {
            match a {
                ActionPattern::Exact(name) => exact.push(name.clone()),
                ActionPattern::Prefix(p) => {
                    let p = c.push(like_prefix(p));
                    any.push(format!("action LIKE {p}"));
                }
            }
        }
        if !exact.is_empty() {
            let p = c.push(exact);
            any.push(format!("action = ANY({p})"));
        }
        clauses.push(format!("({})", any.join(" OR ")));
    }
    if !f.categories.is_empty() {
        let p = c.push(f.categories.clone());
        clauses.push(format!("category = ANY({p})"));
    }
    if !f.severities.is_empty() && f.severities.len() < Severity::ALL.len() {
        let ranks: Vec<i16> = f.severities.iter().map(|s| i16::from(s.rank())).collect();
        let p = c.push(ranks);
        clauses.push(format!("severity = ANY({p})"));
    }
    if let Some(o) = f.outcome {
        let p = c.push(i16::from(o.rank()));
        clauses.push(format!("outcome = {p}"));
    }
    if let Some(a) = &f.actor_id {
        let p = c.push(a.clone());
        clauses.push(format!("actor_id = {p}"));
    }
    if let Some(a) = &f.actor {
        let p = c.push(a.to_lowercase());
        clauses.push(format!("strpos(actor_search, {p}) > 0"));
    }
    if let Some(tt) = &f.target_type {
        let p = c.push(tt.clone());
        clauses.push(format!("target_type = {p}"));
    }
    if let Some(t) = &f.target_id {
        let p = c.push(t.clone());
        clauses.push(format!("target_id = {p}"));
    }
    if let Some(net) = &f.ip {
        let (a, b) = derive::ip_range(net);
        let (a, b) = (c.push(a.to_vec()), c.push(b.to_vec()));
        clauses.push(format!("ip BETWEEN {a} AND {b}"));
    }
    if let Some(s) = &f.source {
        let p = c.push(s.clone());
        clauses.push(format!("source = {p}"));
    }
    if let Some(since) = f.since {
        let p = c.push(since);
        clauses.push(format!("occurred_at >= {p}"));
    }
    if let Some(until) = f.until {
        let p = c.push(until);
        clauses.push(format!("occurred_at < {p}"));
    }
    if !f.text.is_empty() {
        // Every term is plain text (plainto_tsquery ANDs the words and reads no operator),
        // folded exactly like the indexed document.
        let text = f.text.join(" ").replace('\0', " ");
        let p = c.push(text);
        clauses.push(format!(
            "bitacora_tsvector(fts) @@ plainto_tsquery('pg_catalog.simple'::regconfig, \
             bitacora_unaccent({p}))"
        ));
    }
    // The filter without its severities when they are all of them (no narrowing).
    let mut rest = f.clone();
    if rest.severities.len() == Severity::ALL.len() {
        rest.severities.clear();
    }
    c.unfiltered = rest.is_empty();
    rest.actions.clear();
    rest.categories.clear();
    c.counted = !c.unfiltered && rest.is_empty() && matches!(q.page, Pagination::Numbered { .. });
    c.where_clause = clauses.join(" AND ");
    c
}

pub async fn search(client: &ClientWrapper, q: &EventQuery) -> StoreResult<SearchResult> {
    let Some((tid, size)) = tenant(client, &q.tenant).await? else {
        return Ok(SearchResult {
            total: matches!(q.page, Pagination::Numbered { .. }).then_some(0),
            ..SearchResult::default()
        });
    };
    let c = compile(tid, q);
    let dir = match q.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let select = format!(
        "SELECT seq, leaf_hash, body FROM events WHERE {} ORDER BY seq {dir}",
        c.where_clause
    );
    match q.page {
        Pagination::Cursor { limit, .. } => {
            if c.empty {
                return Ok(SearchResult::default());
            }
            let sql = format!("{select} LIMIT {}", u64::from(limit) + 1);
            let mut events = run(client, &sql, &c).await?;
            let next_after = if events.len() > limit as usize {
                events.truncate(limit as usize);
                events.last().map(|e| e.seq)
            } else {
                None
            };
            Ok(SearchResult {
                events,
                next_after,
                total: None,
            })
        }
        Pagination::Numbered { page, per_page } => {
            if c.empty {
                return Ok(SearchResult {
                    total: Some(0),
                    ..SearchResult::default()
                });
            }
            let total = if c.unfiltered {
                size
            } else if c.counted {
                // Counters kept in the append transaction: no need to count the rows (an
                // action of 1.25M events took ~3 s at 10M).
                let sql = format!(
                    "SELECT coalesce(sum(count), 0)::int8 FROM action_counts WHERE {}",
                    c.where_clause
                );
                let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
                client
                    .query_one(&stmt, &c.refs())
                    .await
                    .map_err(pg_error)?
                    .get::<_, i64>(0) as u64
            } else {
                let sql = format!("SELECT count(*) FROM events WHERE {}", c.where_clause);
                let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
                client
                    .query_one(&stmt, &c.refs())
                    .await
                    .map_err(pg_error)?
                    .get::<_, i64>(0) as u64
            };
            let offset = u64::from(page - 1) * u64::from(per_page);
            let events = if offset >= total {
                Vec::new()
            } else {
                run(
                    client,
                    &format!("{select} LIMIT {per_page} OFFSET {offset}"),
                    &c,
                )
                .await?
            };
            Ok(SearchResult {
                events,
                next_after: None,
                total: Some(total),
            })
        }
    }
}

async fn run(client: &ClientWrapper, sql: &str, c: &Compiled) -> StoreResult<Vec<StoredEvent>> {
    let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
    client
        .query(&stmt, &c.refs())
        .await
        .map_err(pg_error)?
        .iter()
        .map(row_event)
        .collect()
}

pub async fn actions(client: &ClientWrapper, t: &TenantName) -> StoreResult<Vec<ActionSummary>> {
    let Some((tid, _)) = tenant(client, t).await? else {
        return Ok(Vec::new());
    };
    let stmt = client
        .prepare_cached(
            "SELECT action, category, sum(count)::int8 AS total FROM action_counts
             WHERE tenant_id = $1
             GROUP BY action, category
             ORDER BY total DESC, action",
        )
        .await
        .map_err(pg_error)?;
    Ok(client
        .query(&stmt, &[&tid])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| ActionSummary {
            action: r.get(0),
            category: r.get(1),
            count: r.get::<_, i64>(2) as u64,
        })
        .collect())
}

pub async fn actors(
    client: &ClientWrapper,
    t: &TenantName,
    limit: u32,
) -> StoreResult<Vec<ActorSummary>> {
    let Some((tid, _)) = tenant(client, t).await? else {
        return Ok(Vec::new());
    };
    let stmt = client
        .prepare_cached(
            "SELECT actor_id, name, email, count, last_seen FROM actor_stats
             WHERE tenant_id = $1 ORDER BY last_seen DESC, actor_id LIMIT $2",
        )
        .await
        .map_err(pg_error)?;
    Ok(client
        .query(&stmt, &[&tid, &i64::from(limit)])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| ActorSummary {
            id: r.get(0),
            name: r.get(1),
            email: r.get(2),
            count: r.get::<_, i64>(3) as u64,
            last_seen: format_micros(r.get(4)),
        })
        .collect())
}

fn format_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| timestamp::format(&t))
        .unwrap_or_default()
}

/// Every count of the window in one pass: one `GROUPING SETS` aggregate over the window's
/// rows (found through the `(tenant_id, occurred_at)` index).
pub async fn stats(
    client: &ClientWrapper,
    t: &TenantName,
    since: i64,
    until: i64,
    top: u32,
) -> StoreResult<Stats> {
    let mut stats = Stats {
        tenant: t.to_string(),
        since: format_micros(since),
        until: format_micros(until),
        total: 0,
        per_day: Vec::new(),
        per_category: Vec::new(),
        per_severity: Vec::new(),
        per_outcome: Vec::new(),
        top_actors: Vec::new(),
        top_ips: Vec::new(),
        without_actor: 0,
    };
    let Some((tid, _)) = tenant(client, t).await? else {
        return Ok(stats);
    };
    let (Some(since_t), Some(until_t)) = (
        DateTime::<Utc>::from_timestamp_micros(since),
        DateTime::<Utc>::from_timestamp_micros(until),
    ) else {
        return Err(StoreError::Internal("stats window out of range".into()));
    };
    // GROUPING(...) tells which set a row belongs to: bit 5 day, 4 category, 3 severity,
    // 2 outcome, 1 actor_id, 0 ip (a set bit means "not grouped by this column").
    let stmt = client
        .prepare_cached(
            "SELECT GROUPING(day, category, severity, outcome, actor_id, ip)::int4,
                    to_char(day, 'YYYY-MM-DD'), category, severity, outcome, actor_id, ip,
                    count(*)::int8
             FROM (SELECT date_trunc('day', occurred_at AT TIME ZONE 'UTC') AS day,
                          category, severity, outcome, actor_id, ip
                   FROM events
                   WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3) w
             GROUP BY GROUPING SETS ((day), (category), (severity), (outcome), (actor_id),
                                     (ip), ())",
        )
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&tid, &since_t, &until_t])
        .await
        .map_err(pg_error)?;
    let mut severities = [0u64; 4];
    let mut outcomes = [0u64; 2];
    let mut actors: Vec<(String, u64)> = Vec::new();
    let mut per_ip: Vec<KeyCount> = Vec::new();
    for r in &rows {
        let grouping: i32 = r.get(0);
        let count = r.get::<_, i64>(7) as u64;
        match 0b111111 & !grouping {
            0b100000 => stats.per_day.push(DayCount {
                day: r.get(1),
                count,
            }),
            0b010000 => stats.per_category.push(KeyCount {
                key: r.get(2),
                count,
            }),
            0b001000 => severities[r.get::<_, i16>(3).clamp(0, 3) as usize] += count,
            0b000100 => outcomes[r.get::<_, i16>(4).clamp(0, 1) as usize] += count,
            0b000010 => match r.get::<_, Option<String>>(5) {
                Some(id) => actors.push((id, count)),
                None => stats.without_actor = count,
            },
            0b000001 => {
                if let Some(ip) = r.get::<_, Option<&[u8]>>(6).and_then(derive::ip_from_blob) {
                    per_ip.push(KeyCount {
                        key: ip.to_string(),
                        count,
                    });
                }
            }
            0 => stats.total = count,
            _ => {}
        }
    }
    stats.per_day.sort_by(|a, b| a.day.cmp(&b.day));
    sort_counts(&mut stats.per_category);
    stats.per_severity = Severity::ALL
        .iter()
        .map(|s| SeverityCount {
            severity: *s,
            count: severities[s.rank() as usize],
        })
        .collect();
    stats.per_outcome = Outcome::ALL
        .iter()
        .map(|o| KeyCount {
            key: o.to_string(),
            count: outcomes[o.rank() as usize],
        })
        .collect();
    actors.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    actors.truncate(top as usize);
    let names: HashMap<String, Option<String>> = if actors.is_empty() {
        HashMap::new()
    } else {
        let ids: Vec<&str> = actors.iter().map(|(id, _)| id.as_str()).collect();
        client
            .query(
                "SELECT actor_id, name FROM actor_stats WHERE tenant_id = $1 AND actor_id = ANY($2)",
                &[&tid, &ids],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    stats.top_actors = actors
        .into_iter()
        .map(|(id, count)| ActorCount {
            name: names.get(&id).cloned().flatten(),
            id,
            count,
        })
        .collect();
    sort_counts(&mut per_ip);
    per_ip.truncate(top as usize);
    stats.top_ips = per_ip;
    Ok(stats)
}

fn sort_counts(v: &mut [KeyCount]) {
    v.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
}

pub async fn tenants(client: &ClientWrapper) -> StoreResult<Vec<TenantName>> {
    let rows = client
        .query(
            "SELECT name FROM tenants WHERE size > 0 ORDER BY name COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|r| {
            let n: &str = r.get(0);
            TenantName::parse(n)
                .map_err(|e| StoreError::Corrupt(format!("stored tenant name `{n}`: {e}")))
        })
        .collect()
}
