//! The whole-log checks behind `bitacora verify` ([`bitacora_store::Store::check_leaves`] and
//! [`bitacora_store::Store::check_summaries`]): every value stored beside a body is
//! re-derived from the body and compared, as in the embedded store.
//!
//! - **Rows.** Each row's leaf is recomputed from its body; when the body is genuine it is
//!   parsed and every indexed column (`event_id`, `occurred_at`, `received_at` — the
//!   partition key —, action, category, severity, outcome, actor, target, IP, source), the
//!   fingerprint and the full-text document `fts` are compared with what the writer derives
//!   from it ([`crate::writer`]'s `Prepared`). The GIN index is built by PostgreSQL from
//!   `bitacora_tsvector(fts)`, so a right `fts` column is a findable event; the index itself
//!   is PostgreSQL's to keep (`amcheck` checks it).
//! - **Summaries.** `action_counts` and `actor_stats` are compared, in one snapshot, with
//!   the aggregates of the (already checked) columns.
//!
//! Kept apart from `read.rs`: searches are tuned for speed, this is tuned for trust.

use bitacora_core::{Event, TenantName};
use bitacora_store::check::{FULL_TEXT, SummaryMismatch, fingerprint_matches, parse_body};
use bitacora_store::{LeafCheck, StoreResult};
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::IsolationLevel;

use crate::{derive, hash32, pg_error, read, rollup};

/// Checks events `from..` of the tenant's log, at most `limit` (one statement, one snapshot).
pub async fn check_leaves(
    client: &ClientWrapper,
    t: &TenantName,
    from: u64,
    limit: u32,
) -> StoreResult<Vec<LeafCheck>> {
    let Some((tid, _)) = read::tenant(client, t).await? else {
        return Ok(Vec::new());
    };
    let stmt = client
        .prepare_cached(
            "SELECT seq, leaf_hash, body, event_id, occurred_at, received_at, action, category,
                severity, outcome, actor_id, actor_search, target_type, target_id, ip, source,
                fingerprint, fts
             FROM events WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&tid, &(from as i64), &i64::from(limit)])
        .await
        .map_err(pg_error)?;
    let suffix = LeafCheck::tenant_suffix(t);
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let body: &str = r.get(2);
        let mut check = LeafCheck::of_row(
            r.get::<_, i64>(0) as u64,
            hash32(r.get(1))?,
            body.as_bytes(),
            &suffix,
        );
        if check.recomputed == check.stored && check.in_tenant {
            check.index = match parse_body(body.as_bytes()) {
                None => Some("body"),
                Some(event) => columns(r, &event),
            };
        }
        out.push(check);
    }
    // Purged events keep only their leaf hash (see purge.rs); they take their place in the
    // sequence so the walk can put them in the tree and account for them.
    let upto = if out.len() == limit as usize {
        out.last().map_or(i64::MAX, |c| c.seq as i64)
    } else {
        i64::MAX
    };
    let purged = crate::purge::purged_range(client, tid, from, upto, limit).await?;
    if purged.is_empty() {
        return Ok(out);
    }
    let mut merged = Vec::with_capacity(out.len() + purged.len());
    let mut purged = purged.into_iter().peekable();
    for check in out {
        while let Some((seq, hash)) = purged.next_if(|(seq, _)| *seq < check.seq) {
            merged.push(LeafCheck::purged(seq, hash));
        }
        merged.push(check);
    }
    merged.extend(purged.map(|(seq, hash)| LeafCheck::purged(seq, hash)));
    merged.truncate(limit as usize);
    Ok(merged)
}

/// The first column of `r` (in the order of [`check_leaves`]'s SELECT) that is not what the
/// writer derives from `e`.
fn columns(r: &tokio_postgres::Row, e: &Event) -> Option<&'static str> {
    let text = |i: usize| r.get::<_, Option<&str>>(i);
    let micros = |i: usize| r.get::<_, DateTime<Utc>>(i).timestamp_micros();
    let actor = e.actor.as_ref();
    let target = e.target.as_ref();
    let ip = e.context.ip_addr().map(derive::ip_blob);
    let checks: [(&'static str, bool); 15] = [
        ("event_id", text(3) == Some(e.id.as_str())),
        ("occurred_at", micros(4) == e.occurred_at.timestamp_micros()),
        ("received_at", micros(5) == e.received_at.timestamp_micros()),
        ("action", text(6) == Some(e.action.as_str())),
        ("category", text(7) == Some(e.category.as_str())),
        (
            "severity",
            r.get::<_, i16>(8) == i16::from(e.severity.rank()),
        ),
        ("outcome", r.get::<_, i16>(9) == i16::from(e.outcome.rank())),
        ("actor_id", text(10) == actor.and_then(|a| a.id.as_deref())),
        (
            "actor_search",
            text(11) == derive::actor_search(e).as_deref(),
        ),
        ("target_type", text(12) == target.map(|t| t.kind.as_str())),
        (
            "target_id",
            text(13) == target.and_then(|t| t.id.as_deref()),
        ),
        (
            "ip",
            r.get::<_, Option<&[u8]>>(14) == ip.as_ref().map(|b| &b[..]),
        ),
        ("source", text(15) == e.context.source.as_deref()),
        ("fingerprint", fingerprint_matches(e, r.get::<_, &[u8]>(16))),
        (FULL_TEXT, r.get::<_, &str>(17) == derive::fts_text(e)),
    ];
    checks.into_iter().find(|(_, ok)| !ok).map(|(name, _)| name)
}

/// Compares the tenant's counters with the events' columns, in one snapshot.
pub async fn check_summaries(
    client: &mut ClientWrapper,
    t: &TenantName,
) -> StoreResult<Option<SummaryMismatch>> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    let Some(tid) = tx
        .query_opt("SELECT id FROM tenants WHERE name = $1", &[&t.as_str()])
        .await
        .map_err(pg_error)?
        .map(|r| r.get::<_, i32>(0))
    else {
        return Ok(None);
    };
    let row = tx
        .query_opt(
            "WITH derived AS (
                 SELECT action, category, count(*) AS n FROM events
                 WHERE tenant_id = $1 GROUP BY action, category
             ), stored AS (
                 SELECT action, category, count AS n FROM action_counts WHERE tenant_id = $1
             )
             SELECT coalesce(d.action, s.action), coalesce(d.category, s.category), s.n, d.n
             FROM derived d FULL JOIN stored s
                 ON s.action = d.action AND s.category = d.category
             WHERE s.n IS DISTINCT FROM d.n
             ORDER BY 1, 2 LIMIT 1",
            &[&tid],
        )
        .await
        .map_err(pg_error)?;
    if let Some(r) = row {
        let (action, category): (String, String) = (r.get(0), r.get(1));
        return Ok(Some(SummaryMismatch {
            summary: "action_counts",
            key: format!("action={action} category={category}"),
            reason: count_reason(r.get(2), r.get(3)),
        }));
    }
    let row = tx
        .query_opt(
            "WITH derived AS (
                 SELECT actor_id, count(*) AS n,
                     max((extract(epoch FROM occurred_at) * 1000000)::int8) AS last
                 FROM events
                 WHERE tenant_id = $1 AND actor_id IS NOT NULL GROUP BY actor_id
             ), stored AS (
                 SELECT actor_id, count AS n, last_seen AS last FROM actor_stats
                 WHERE tenant_id = $1
             )
             SELECT coalesce(d.actor_id, s.actor_id), s.n, d.n, s.last, d.last
             FROM derived d FULL JOIN stored s ON s.actor_id = d.actor_id
             WHERE s.n IS DISTINCT FROM d.n OR s.last IS DISTINCT FROM d.last
             ORDER BY 1 LIMIT 1",
            &[&tid],
        )
        .await
        .map_err(pg_error)?;
    if let Some(r) = row {
        let actor: String = r.get(0);
        let (s_n, d_n): (Option<i64>, Option<i64>) = (r.get(1), r.get(2));
        let reason = if s_n != d_n {
            count_reason(s_n, d_n)
        } else {
            let (s_last, d_last): (Option<i64>, Option<i64>) = (r.get(3), r.get(4));
            format!(
                "last_seen is {}, the events give {}",
                s_last.map_or("missing".into(), |v| v.to_string()),
                d_last.map_or("none".into(), |v| v.to_string())
            )
        };
        return Ok(Some(SummaryMismatch {
            summary: "actor_stats",
            key: format!("actor_id={actor}"),
            reason,
        }));
    }
    // The name and email the writer keeps are those of the actor's latest event that carries
    // one, folded per group commit: they must at least be ones the actor's events carry.
    let row = tx
        .query_opt(
            "SELECT s.actor_id,
                 s.name IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM events e WHERE e.tenant_id = $1 AND e.actor_id = s.actor_id
                       AND e.body::jsonb -> 'actor' ->> 'name' = s.name) AS bad_name
             FROM actor_stats s
             WHERE s.tenant_id = $1 AND (
                 (s.name IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM events e WHERE e.tenant_id = $1 AND e.actor_id = s.actor_id
                       AND e.body::jsonb -> 'actor' ->> 'name' = s.name))
              OR (s.email IS NOT NULL AND NOT EXISTS (
                     SELECT 1 FROM events e WHERE e.tenant_id = $1 AND e.actor_id = s.actor_id
                       AND e.body::jsonb -> 'actor' ->> 'email' = s.email)))
             ORDER BY 1 LIMIT 1",
            &[&tid],
        )
        .await
        .map_err(pg_error)?;
    if let Some(r) = row {
        let actor: String = r.get(0);
        let field = if r.get::<_, bool>(1) { "name" } else { "email" };
        return Ok(Some(SummaryMismatch {
            summary: "actor_stats",
            key: format!("actor_id={actor}"),
            reason: format!("{field} is not one any event of this actor carries"),
        }));
    }
    if let Some(m) = check_zone_map(&tx, tid).await? {
        return Ok(Some(m));
    }
    if let Some(m) = check_facets(&tx, tid).await? {
        return Ok(Some(m));
    }
    // The address postings: a missing offset would hide an event from `ip=`.
    if let Some((block, ip, stored, derived)) = crate::addresses::check(&tx, tid).await? {
        return Ok(Some(SummaryMismatch::addresses(
            block,
            &ip,
            stored as usize,
            derived as usize,
        )));
    }
    check_rollups(&tx, tid).await
}

/// The facets (`event_facets` per block, `facet_counts` per log) against the events, both
/// ways: a combination missing from a block would make a search skip events that are there.
/// Their sketches must hold every address area and actor of their events (more is allowed:
/// purges leave theirs); a missing bit would hide events from `ip=` or `actor_id=` searches.
async fn check_facets(
    tx: &deadpool_postgres::Transaction<'_>,
    tid: i32,
) -> StoreResult<Option<SummaryMismatch>> {
    const COMBO: &str = "action, category, severity, outcome, source";
    for (table, block_expr, block_col) in [
        (
            "event_facets",
            format!("seq >> {}", crate::window::BLOCK_BITS),
            "block",
        ),
        ("facet_counts", "0::int8".to_owned(), "0::int8"),
    ] {
        let sql = format!(
            "WITH bits AS (
                 SELECT action, category, severity, outcome, coalesce(source, '') AS source,
                        {block_expr} AS block, bitacora_area_bit(ip) AS a,
                        bitacora_actor_bit(actor_id) AS p
                 FROM events WHERE tenant_id = $1
             ), derived AS (
                 SELECT {COMBO}, block, count(*) AS n, {words}
                 FROM bits GROUP BY 1, 2, 3, 4, 5, 6
             ), stored AS (
                 SELECT {COMBO}, {block_col} AS block, count AS n, areas_0 AS a0,
                        areas_1 AS a1, areas_2 AS a2, areas_3 AS a3, actors_0 AS p0,
                        actors_1 AS p1, actors_2 AS p2, actors_3 AS p3
                 FROM {table} WHERE tenant_id = $1
             )
             SELECT concat_ws('/', action, category, severity, outcome, source) || ' block '
                        || block, s.n, d.n
             FROM derived d FULL JOIN stored s USING ({COMBO}, block)
             WHERE s.n IS DISTINCT FROM d.n
                OR s.a0 & d.a0 <> d.a0 OR s.a1 & d.a1 <> d.a1 OR s.a2 & d.a2 <> d.a2
                OR s.a3 & d.a3 <> d.a3 OR s.p0 & d.p0 <> d.p0 OR s.p1 & d.p1 <> d.p1
                OR s.p2 & d.p2 <> d.p2 OR s.p3 & d.p3 <> d.p3
             ORDER BY 1 LIMIT 1",
            words = crate::facets::DERIVED_WORDS,
        );
        if let Some(r) = tx.query_opt(&sql, &[&tid]).await.map_err(pg_error)? {
            return Ok(Some(SummaryMismatch {
                summary: table,
                key: format!(
                    "action/category/severity/outcome/source {}",
                    r.get::<_, String>(0)
                ),
                reason: match (r.get::<_, Option<i64>>(1), r.get::<_, Option<i64>>(2)) {
                    (Some(stored), Some(derived)) if stored == derived => {
                        "its sketches miss an address area or an actor of its events".to_owned()
                    }
                    (stored, derived) => count_reason(stored, derived),
                },
            }));
        }
    }
    Ok(None)
}

/// The zone map of `occurred_at` (`event_blocks`) against the events: a block's bounds too
/// narrow would make a time-window search skip events that are there, so each block must
/// hold exactly its events' count and bounds that contain every one of them.
async fn check_zone_map(
    tx: &deadpool_postgres::Transaction<'_>,
    tid: i32,
) -> StoreResult<Option<SummaryMismatch>> {
    let sql = format!(
        "WITH derived AS (
             SELECT seq >> {bits} AS block, min(occurred_at) AS lo, max(occurred_at) AS hi,
                    count(*) AS n
             FROM events WHERE tenant_id = $1 GROUP BY 1
         ), stored AS (
             SELECT block, min_at AS lo, max_at AS hi, count AS n FROM event_blocks
             WHERE tenant_id = $1
         )
         SELECT coalesce(d.block, s.block), s.n, d.n
         FROM derived d FULL JOIN stored s USING (block)
         WHERE s.n IS DISTINCT FROM d.n OR s.lo > d.lo OR s.hi < d.hi
         ORDER BY 1 LIMIT 1",
        bits = crate::window::BLOCK_BITS
    );
    let row = tx.query_opt(&sql, &[&tid]).await.map_err(pg_error)?;
    Ok(row.map(|r| {
        let (stored, derived): (Option<i64>, Option<i64>) = (r.get(1), r.get(2));
        SummaryMismatch {
            summary: "event_blocks",
            key: format!("block={}", r.get::<_, i64>(0)),
            reason: if stored == derived {
                "its occurred_at bounds do not contain its events' (time-window searches would \
                 skip them)"
                    .to_owned()
            } else {
                count_reason(stored, derived)
            },
        }
    }))
}

/// The daily and hourly rollups behind `/v1/stats` and the dashboard against the events, both
/// ways.
async fn check_rollups(
    tx: &deadpool_postgres::Transaction<'_>,
    tid: i32,
) -> StoreResult<Option<SummaryMismatch>> {
    // (rollup, its key columns, the same from the events, which events it counts)
    let mut rollups: Vec<(&'static str, String, String, &str)> = Vec::new();
    for (tables, bucket) in [
        (&rollup::DAYS, "(occurred_at AT TIME ZONE 'UTC')::date"),
        (&rollup::HOURS, "date_trunc('hour', occurred_at, 'UTC')"),
    ] {
        let b = tables.column;
        rollups.extend([
            (
                tables.joint,
                format!("{b}, category, severity, outcome, no_actor"),
                format!("{bucket}, category, severity, outcome, actor_id IS NULL"),
                "",
            ),
            (
                tables.actors,
                format!("{b}, actor_id"),
                format!("{bucket}, actor_id"),
                "AND actor_id IS NOT NULL",
            ),
            (
                tables.ips,
                format!("{b}, ip"),
                format!("{bucket}, ip"),
                "AND ip IS NOT NULL",
            ),
        ]);
    }
    for (table, keys, derived_keys, filter) in rollups {
        let key_list: Vec<&str> = keys.split(", ").collect();
        let join = key_list
            .iter()
            .map(|k| format!("d.{k} = s.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let (b, last) = (key_list[0], key_list.last().expect("keys"));
        // The bucket as the API writes days and instants.
        let (utc, format) = if b == "day" {
            ("", "YYYY-MM-DD")
        } else {
            (" AT TIME ZONE 'UTC'", r#"YYYY-MM-DD"T"HH24":00Z""#)
        };
        let sql = format!(
            "WITH derived ({keys}, n) AS (
                 SELECT {derived_keys}, count(*) FROM events
                 WHERE tenant_id = $1 {filter} GROUP BY {derived_keys}
             ), stored AS (
                 SELECT {keys}, count AS n FROM {table} WHERE tenant_id = $1
             )
             SELECT to_char(coalesce(d.{b}, s.{b}){utc}, '{format}'),
                    coalesce(d.{last}, s.{last})::text, s.n, d.n
             FROM derived d FULL JOIN stored s ON {join}
             WHERE s.n IS DISTINCT FROM d.n
             ORDER BY 1, 2 LIMIT 1",
        );
        if let Some(r) = tx.query_opt(&sql, &[&tid]).await.map_err(pg_error)? {
            let (bucket, key): (String, String) = (r.get(0), r.get(1));
            return Ok(Some(SummaryMismatch {
                summary: table,
                key: format!("{b}={bucket} {last}={key}"),
                reason: count_reason(r.get(2), r.get(3)),
            }));
        }
    }
    Ok(None)
}

/// "count is 3, the events give 4".
fn count_reason(stored: Option<i64>, derived: Option<i64>) -> String {
    format!(
        "count is {}, the events give {}",
        stored.map_or("missing".into(), |n| n.to_string()),
        derived.unwrap_or(0)
    )
}
