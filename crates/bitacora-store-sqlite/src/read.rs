//! Queries: searches, lookups and aggregates, on pooled read connections.
//!
//! A search is compiled to one SQL statement over `events` restricted to the tenant's `pos`
//! range. Which index SQLite picks is checked by the `EXPLAIN QUERY PLAN` tests below; the
//! shapes are chosen so that the selective filters (`actor_id`, `target`, one `action`, time)
//! are index range scans already ordered by `pos`.

use bitacora_core::api::{
    ActionSummary, ActorCount, ActorSummary, DayCount, KeyCount, SeverityCount, Stats,
};
use bitacora_core::event::timestamp;
use bitacora_core::query::{ActionPattern, EventQuery, Order, Pagination};
use bitacora_core::{Outcome, Severity, TenantName};
use bitacora_store::postings::{ADDRESS_SAMPLES, POINTS_PER_STATEMENT, Part, sample_pieces};
use bitacora_store::sketch::Wanted;
use bitacora_store::total::{Counter, Total};
use bitacora_store::{SearchResult, StoreError, StoreResult, StoredEvent};
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use std::time::{Duration, Instant};

use crate::addresses;
use crate::derive::{self, pos, seq_of, tenant_range};
use crate::facets::{Combos, FacetFilter};
use crate::rollup::{self, DAY_US};
use crate::schema::{TERM_ACTION, TERM_CATEGORY, TERM_SOURCE, TERM_TARGET_TYPE};
use crate::sql_error;
use crate::window::{self, Span};
use crate::writer::blob32;

/// The tenant's id and log size, or `None` when it has never written.
pub fn tenant(conn: &Connection, name: &TenantName) -> StoreResult<Option<(i64, u64)>> {
    conn.prepare_cached("SELECT id, size FROM tenants WHERE name = ?1")
        .map_err(sql_error)?
        .query_row([name.as_str()], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()
        .map_err(sql_error)
}

fn term(conn: &Connection, kind: i64, value: &str) -> StoreResult<Option<i64>> {
    conn.prepare_cached("SELECT id FROM terms WHERE kind = ?1 AND value = ?2")
        .map_err(sql_error)?
        .query_row(params![kind, value], |r| r.get(0))
        .optional()
        .map_err(sql_error)
}

fn terms_with_prefix(conn: &Connection, kind: i64, prefix: &str) -> StoreResult<Vec<i64>> {
    // substr comparison instead of LIKE/GLOB: no wildcard characters to escape.
    let mut stmt = conn
        .prepare_cached(
            "SELECT id FROM terms WHERE kind = ?1 AND substr(value, 1, length(?2)) = ?2",
        )
        .map_err(sql_error)?;
    stmt.query_map(params![kind, prefix], |r| r.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)
}

fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: seq_of(r.get(0)?),
        leaf_hash: blob32(r.get_ref(1)?.as_blob()?),
        body: r.get(2)?,
    })
}

pub fn event_by_id(
    conn: &Connection,
    t: &TenantName,
    id: &str,
) -> StoreResult<Option<StoredEvent>> {
    let Some((tid, _)) = tenant(conn, t)? else {
        return Ok(None);
    };
    let (lo, hi) = tenant_range(tid);
    conn.prepare_cached(
        // Pinned to the id index, whatever the statistics say (see the writer's lookup).
        "SELECT pos, leaf_hash, body FROM events INDEXED BY events_event_id
         WHERE event_id = ?1 AND pos BETWEEN ?2 AND ?3",
    )
    .map_err(sql_error)?
    .query_row(params![id, lo, hi], row_event)
    .optional()
    .map_err(sql_error)
}

pub fn event_by_seq(
    conn: &Connection,
    t: &TenantName,
    seq: u64,
) -> StoreResult<Option<StoredEvent>> {
    let Some((tid, _)) = tenant(conn, t)? else {
        return Ok(None);
    };
    conn.prepare_cached("SELECT pos, leaf_hash, body FROM events WHERE pos = ?1")
        .map_err(sql_error)?
        .query_row([pos(tid, seq)], row_event)
        .optional()
        .map_err(sql_error)
}

/// A compiled search: the WHERE clause and its parameters.
pub struct Compiled {
    /// `FROM ... WHERE ...` (without ORDER BY / LIMIT).
    pub from_where: String,
    pub params: Vec<SqlValue>,
    /// Set when no event can match (an unknown action, category, ...).
    pub empty: bool,
    /// True when no filter narrows the tenant's log (totals come from the tenant row).
    pub unfiltered: bool,
    /// The column holding the position (`e.pos`).
    pub pos_col: &'static str,
    /// `params[range_at]` and `params[range_at + 1]` are the `pos` bounds, which a windowed
    /// search replaces by each [`Span`]'s.
    pub range_at: usize,
    /// The tenant's range narrowed by the cursor.
    pub lo: i64,
    pub hi: i64,
    /// `[since, until)` in microseconds when the filter has a time window.
    pub window: Option<(i64, i64)>,
    /// The filter is only a time window (and maybe every severity): events of a block wholly
    /// inside the window all match, so the zone map's counts are totals.
    pub window_only: bool,
    /// The combinations of the faceted columns (`facets.rs`) the filter admits, when it
    /// filters on any.
    pub combos: Option<Combos>,
    /// The filter is only faceted columns and maybe a window: the facets' per-block counts
    /// are its matches.
    pub facets_only: bool,
    /// The filter is only faceted columns: the admitted combinations' counts add up to its
    /// total.
    pub facet_total: Option<u64>,
    /// The client-address range of a narrow `ip=` filter, read through the postings
    /// (`addresses.rs`) instead of in `seq` order.
    pub addresses: Option<([u8; 16], [u8; 16])>,
    /// The filter is only that address range: the postings' offsets are its total.
    pub address_only: bool,
    /// The full-text expression of `q=`, when the search is read through the postings (see
    /// [`rare_term`]).
    pub text: Option<String>,
}

/// Compiles the filter of `q` for tenant `tid`.
pub fn compile(conn: &Connection, tid: i64, q: &EventQuery) -> StoreResult<Compiled> {
    let f = &q.filter;
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    let mut empty = false;
    // The tenant's range narrowed by the cursor, as ONE pair of bounds: given a second upper
    // (or lower) bound, SQLite seeks on only one of them and scans the rest of the range.
    let (mut lo, mut hi) = tenant_range(tid);
    if let Pagination::Cursor {
        after: Some(after), ..
    } = q.page
    {
        let p = pos(tid, after.min(derive::SEQ_MASK as u64));
        match q.order {
            Order::Desc => hi = hi.min(p - 1),
            Order::Asc => lo = lo.max(p + 1),
        }
    }

    // Every term is quoted, so no input is read as FTS5 syntax.
    let text_expr = (!f.text.is_empty()).then(|| {
        f.text
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "")))
            .collect::<Vec<_>>()
            .join(" ")
    });
    // A target is one record's history: a few events, found through its index, each checked
    // against the full-text index by rowid. Driving from the full-text index instead reads
    // every event a common term is in (the whole log for "auditoria": 1.1-1.4 s at 1M).
    // A narrow `ip=` is read through the address postings (`addresses.rs`): the events at
    // the positions they name, each checked against the rest of the filter — the full text
    // by rowid, as for a target. A target's index is narrower still.
    let by_address =
        f.ip.as_ref()
            .filter(|net| f.target_id.is_none() && derive::narrow_network(net))
            .map(derive::ip_range);
    // An actor is read through its index when it has fewer events than the term has matches
    // (`actor_id=42&q=auditoria`, a term in every event: driven from the full text, the
    // actor's 1 in 200 took 10,000 matches to find a page's 50); a rare term drives.
    let actor_driven = match (&text_expr, &f.actor_id) {
        (Some(expr), Some(actor)) if f.target_id.is_none() && by_address.is_none() => {
            actor_events(conn, tid, actor)? < text_matches(conn, expr, lo, hi)?
        }
        _ => false,
    };
    let text_driven =
        text_expr.is_some() && f.target_id.is_none() && by_address.is_none() && !actor_driven;
    let range_at = usize::from(text_driven);
    let from = match &text_expr {
        Some(expr) if text_driven => {
            // Drive from the full-text index, which yields rowids in order and honours a
            // rowid range. CROSS JOIN pins that order: otherwise the planner may start from an
            // index on `events` and evaluate MATCH once per candidate row, which is ruinous
            // for common terms.
            clauses.push("events_fts MATCH ?".into());
            params.push(expr.clone().into());
            clauses.push("events_fts.rowid BETWEEN ? AND ?".into());
            params.push(lo.into());
            params.push(hi.into());
            "fts.events_fts CROSS JOIN events e ON e.pos = events_fts.rowid"
        }
        _ => {
            clauses.push("e.pos BETWEEN ? AND ?".into());
            params.push(lo.into());
            params.push(hi.into());
            if let Some(expr) = &text_expr {
                clauses.push(
                    "EXISTS (SELECT 1 FROM fts.events_fts t \
                     WHERE t.events_fts MATCH ? AND t.rowid = e.pos)"
                        .into(),
                );
                params.push(expr.clone().into());
            }
            "events e"
        }
    };

    let in_list = |column: &str, ids: &[i64], clauses: &mut Vec<String>| {
        if ids.is_empty() {
            return true;
        }
        if ids.len() == 1 {
            clauses.push(format!("{column} = {}", ids[0]));
        } else {
            let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            clauses.push(format!("{column} IN ({list})"));
        }
        false
    };

    let mut action_ids = Vec::new();
    let mut category_ids = Vec::new();
    if !f.actions.is_empty() {
        for a in &f.actions {
            match a {
                ActionPattern::Exact(name) => action_ids.extend(term(conn, TERM_ACTION, name)?),
                ActionPattern::Prefix(p) => {
                    action_ids.extend(terms_with_prefix(conn, TERM_ACTION, p)?)
                }
            }
        }
        action_ids.sort_unstable();
        action_ids.dedup();
    }
    if !f.categories.is_empty() {
        for c in &f.categories {
            category_ids.extend(term(conn, TERM_CATEGORY, c)?);
        }
        category_ids.sort_unstable();
        category_ids.dedup();
    }
    let severities: Vec<i64> = if f.severities.len() < Severity::ALL.len() {
        f.severities.iter().map(|s| i64::from(s.rank())).collect()
    } else {
        Vec::new()
    };
    let outcome = f.outcome.map(|o| i64::from(o.rank()));
    let source = match &f.source {
        Some(s) => {
            let id = term(conn, TERM_SOURCE, s)?;
            empty |= id.is_none();
            id
        }
        None => None,
    };
    empty |= !f.actions.is_empty() && action_ids.is_empty();
    empty |= !f.categories.is_empty() && category_ids.is_empty();
    // The combinations of faceted columns the filter admits (`facets.rs`): none means no
    // event can match (`action=user.*&category=device`, `severity=critical&outcome=failure`
    // where they never met), known here instead of after reading the whole log; and only
    // the actions of admitted combinations need reading.
    // With `ip=` or `actor_id=`, the combinations whose events never came from the
    // network's areas, or never had that actor, are dropped too (`bitacora_store::sketch`):
    // an address or actor that never meets the rest of the filter, or never occurs, is
    // known empty here.
    let facet_filter = FacetFilter {
        actions: action_ids.clone(),
        categories: category_ids.clone(),
        severities: severities.clone(),
        outcome,
        source,
        wanted: Wanted::new(f.ip.as_ref(), f.actor_id.as_deref()),
    };
    let combos = if empty || facet_filter.is_empty() {
        None
    } else {
        let found = Combos::find(conn, tid, &facet_filter)?;
        empty |= found.combos.is_empty();
        if !f.actions.is_empty() {
            action_ids = found.actions();
        }
        Some(found)
    };
    if !f.actions.is_empty() {
        match action_ids.as_slice() {
            [] => empty = true,
            // One action: its index yields the action's events in `pos` order — unless a
            // target's (a record's history: few events, and no counter to say so) or a
            // smaller actor's index does, which the planner cannot tell without statistics
            // (`action=user.role_change&actor_id=42` read the action's 125,000 events at 1M
            // to find none). `+` keeps the planner off the action index.
            [one] => {
                let other_index = f.target_id.is_some()
                    || match &f.actor_id {
                        Some(actor) => {
                            actor_events(conn, tid, actor)? < action_events(conn, tid, *one)?
                        }
                        None => false,
                    };
                let plus = if other_index { "+" } else { "" };
                clauses.push(format!("{plus}e.action = {one}"));
            }
            // Several: the index would yield them action by action, to be sorted whole
            // before the first row of the page (0.6-1.9 s at 1M events for `user.*` with
            // another filter). Read in `pos` order instead — the facets have already
            // restricted the scan to the blocks that hold matches when they are sparse.
            many => clauses.push(format!(
                "+e.action IN ({})",
                many.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        }
    }
    if !f.categories.is_empty() {
        empty |= in_list("e.category", &category_ids, &mut clauses);
    }
    in_list("e.severity", &severities, &mut clauses);
    if let Some(o) = outcome {
        clauses.push(format!("e.outcome = {o}"));
    }
    if let Some(a) = &f.actor_id {
        // With a target, its index (one record's history); left to choose, the planner
        // read the actor's: `actor_id=42&target_type=user&target_id=4242`, a pair that
        // never met, fetched actor 42's 50,000 events at 10M (150-180 ms).
        let plus = if f.target_id.is_some() { "+" } else { "" };
        clauses.push(format!("{plus}e.actor_id = ?"));
        params.push(a.clone().into());
    }
    if let Some(a) = &f.actor {
        clauses.push("instr(e.actor_search, ?) > 0".into());
        params.push(a.to_lowercase().into());
    }
    if let Some(tt) = &f.target_type {
        match term(conn, TERM_TARGET_TYPE, tt)? {
            Some(id) => clauses.push(format!("e.target_type = {id}")),
            None => empty = true,
        }
    }
    if let Some(t) = &f.target_id {
        clauses.push("e.target_id = ?".into());
        params.push(t.clone().into());
    }
    if let Some(net) = &f.ip {
        let (a, b) = derive::ip_range(net);
        clauses.push("e.ip BETWEEN ? AND ?".into());
        params.push(a.to_vec().into());
        params.push(b.to_vec().into());
    }
    if let Some(id) = source {
        clauses.push(format!("e.source = {id}"));
    }
    // A window is answered through the zone map (`window.rs`), span by span in `pos` order;
    // the unary `+` keeps SQLite from driving the scan from the `occurred_at` index instead,
    // which would have to sort every event of the window to return the first page.
    if let Some(since) = f.since {
        clauses.push("+e.occurred_at >= ?".into());
        params.push(since.timestamp_micros().into());
    }
    if let Some(until) = f.until {
        clauses.push("+e.occurred_at < ?".into());
        params.push(until.timestamp_micros().into());
    }
    let window = (f.since.is_some() || f.until.is_some()).then(|| {
        (
            f.since.map_or(i64::MIN, |t| t.timestamp_micros()),
            f.until.map_or(i64::MAX, |t| t.timestamp_micros()),
        )
    });

    // The filter without its severities when they are all of them (no narrowing).
    let rest = {
        let mut g = f.clone();
        if g.severities.len() == Severity::ALL.len() {
            g.severities.clear();
        }
        g
    };
    let unfiltered = rest.is_empty();
    let window_only = window.is_some() && {
        let mut g = rest.clone();
        g.since = None;
        g.until = None;
        g.is_empty()
    };
    // Only faceted columns (and maybe a window): facet counts are the matches.
    let facets_only = combos.is_some() && {
        let mut g = rest.clone();
        g.since = None;
        g.until = None;
        g.actions.clear();
        g.categories.clear();
        g.severities.clear();
        g.outcome = None;
        g.source = None;
        g.is_empty()
    };
    let facet_total =
        (facets_only && window.is_none()).then(|| combos.as_ref().map_or(0, |c| c.matches));
    let address_only = by_address.is_some() && {
        let mut g = rest.clone();
        g.ip = None;
        g.is_empty()
    };
    Ok(Compiled {
        from_where: format!("FROM {from} WHERE {}", clauses.join(" AND ")),
        params,
        empty,
        unfiltered,
        pos_col: if text_driven {
            "events_fts.rowid"
        } else {
            "e.pos"
        },
        range_at,
        lo,
        hi,
        window,
        window_only,
        combos,
        facets_only,
        facet_total,
        text: text_expr.filter(|_| by_address.is_some()),
        addresses: by_address,
        address_only,
    })
}

/// Answers a search in one read transaction, so a windowed search (several statements: the
/// zone map, one count and one page per span) sees one snapshot of the log.
/// `budget`: how long a numbered page may spend counting its total ([`SqliteOptions`]).
///
/// [`SqliteOptions`]: crate::SqliteOptions
pub fn search(conn: &Connection, q: &EventQuery, budget: Duration) -> StoreResult<SearchResult> {
    let tx = conn.unchecked_transaction().map_err(sql_error)?;
    let result = search_in(&tx, q, budget)?;
    tx.commit().map_err(sql_error)?;
    Ok(result)
}

fn search_in(conn: &Connection, q: &EventQuery, budget: Duration) -> StoreResult<SearchResult> {
    let Some((tid, size)) = tenant(conn, &q.tenant)? else {
        return Ok(SearchResult {
            total: matches!(q.page, Pagination::Numbered { .. }).then_some(0),
            ..SearchResult::default()
        });
    };
    let c = compile(conn, tid, q)?;
    let dir = match q.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let select = format!(
        "SELECT e.pos, e.leaf_hash, e.body {} ORDER BY {} {dir}",
        c.from_where, c.pos_col
    );
    // The ranges of `pos` to read, in ascending order: the whole (cursor-narrowed) tenant
    // range; the zone map's spans that overlap the window; or, when the faceted columns match
    // sparsely, the blocks holding their combinations (within the window's blocks). With
    // `exact_counts`, a span wholly inside counts its matches.
    // A numbered page of a window and faceted columns only also reads the facets' blocks,
    // dense or not: their per-block counts make the total exact without counting rows.
    let numbered = matches!(q.page, Pagination::Numbered { .. });
    let sparse = c
        .combos
        .as_ref()
        .filter(|f| f.sparse(size) || (numbered && c.facets_only && c.window.is_some()));
    let (mut spans, exact_counts) = match (c.window, sparse) {
        _ if c.empty => (Vec::new(), true),
        (window, Some(f)) => (
            f.spans(conn, tid, window, c.lo, c.hi, c.facets_only)?,
            c.facets_only,
        ),
        (None, None) => (
            vec![Span {
                lo: c.lo,
                hi: c.hi,
                inside: false,
                count: 0,
            }],
            false,
        ),
        (Some((since, until)), None) => (
            window::spans(conn, tid, since, until, c.lo, c.hi, c.window_only)?,
            c.window_only,
        ),
    };
    if q.order == Order::Desc {
        spans.reverse();
    }
    if let (Some(range), false) = (c.addresses, c.empty) {
        return by_address(conn, &c, q, &spans, (tid, size), range, budget);
    }
    match q.page {
        Pagination::Cursor { limit, .. } => {
            let want = u64::from(limit) + 1;
            let mut events = Vec::new();
            for s in &spans {
                let need = want - events.len() as u64;
                if need == 0 {
                    break;
                }
                events.extend(run_span(conn, &c, &select, s, need, 0)?);
            }
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
                estimated: false,
            })
        }
        Pagination::Numbered { page, per_page } => {
            let offset = u64::from(page - 1) * u64::from(per_page);
            let per_page = u64::from(per_page);
            // The page first, by skipping `offset` matches: a span whose matches (counted
            // up to what is still to skip) fall short of it is passed over whole.
            let mut events = Vec::new();
            let mut skip = offset;
            for s in &spans {
                let need = per_page - events.len() as u64;
                if need == 0 {
                    break;
                }
                if skip > 0 && spans.len() > 1 {
                    let n = if s.inside && exact_counts {
                        s.count
                    } else {
                        count_range(conn, &c, (s.lo, s.hi), Some(skip))?
                    };
                    if n < skip {
                        skip -= n;
                        continue;
                    }
                }
                events.extend(run_span(conn, &c, &select, s, need, skip)?);
                skip = 0;
            }
            let total = if c.empty {
                Total::exact(0)
            } else if c.unfiltered {
                Total::exact(size)
            } else if let Some(n) = c.facet_total {
                Total::exact(n)
            } else {
                counted(conn, &c, &spans, exact_counts, tid, size, budget)?
            }
            .with_page(offset, events.len() as u64, per_page);
            Ok(SearchResult {
                events,
                next_after: None,
                total: Some(total.value),
                estimated: !total.exact,
            })
        }
    }
}

/// Positions are fetched one by one up to this share of a block (1 in 4): past it, a
/// sequential read of the block is cheaper.
const POINTS_PER_BLOCK: usize = (window::BLOCK_EVENTS / 4) as usize;

/// A `q=` term read through the postings is probed for this many matches: fewer, and its
/// positions are intersected with the address's before any event is read (`q=4242` from one
/// address: no event of the address read to find none); more, and each candidate is checked
/// against the full-text index by rowid as before.
const RARE_TERM: usize = 4_096;

/// The positions (ascending) of the events matching the full-text expression `expr` in
/// `lo..=hi`, when there are at most [`RARE_TERM`].
fn rare_term(conn: &Connection, expr: &str, lo: i64, hi: i64) -> StoreResult<Option<Vec<i64>>> {
    let found = first_matches(conn, expr, lo, hi)?;
    Ok((found.len() <= RARE_TERM).then_some(found))
}

/// About how many events in `lo..=hi` match the full-text expression `expr`: exact up to
/// [`RARE_TERM`]; past it, extrapolated from the share of the range the first [`RARE_TERM`]
/// matches cover (reading them costs about a millisecond; counting a term in every event
/// of a large log would cost seconds). Only for choosing which index drives a search.
fn text_matches(conn: &Connection, expr: &str, lo: i64, hi: i64) -> StoreResult<u64> {
    let found = first_matches(conn, expr, lo, hi)?;
    match found.last() {
        Some(&last) if found.len() > RARE_TERM => {
            let covered = (last - lo + 1) as f64;
            Ok((found.len() as f64 / covered * (hi - lo + 1) as f64) as u64)
        }
        _ => Ok(found.len() as u64),
    }
}

/// The positions of the first [`RARE_TERM`] + 1 events in `lo..=hi` matching the full-text
/// expression `expr`, ascending.
fn first_matches(conn: &Connection, expr: &str, lo: i64, hi: i64) -> StoreResult<Vec<i64>> {
    conn.prepare_cached(
        "SELECT rowid FROM fts.events_fts
         WHERE events_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3 ORDER BY rowid LIMIT ?4",
    )
    .map_err(sql_error)?
    .query_map(params![expr, lo, hi, RARE_TERM as i64 + 1], |r| r.get(0))
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

/// What a search through the postings looks for: the address range (16-byte blobs), and
/// the positions of its rare `q=` term when it has one ([`rare_term`], read once a search).
type Address<'a> = (([u8; 16], [u8; 16]), Option<&'a [i64]>);

/// Walks the blocks of `spans` (already in the search's order) and yields the candidates of
/// the blocks holding events from the address range — the positions of several blocks
/// together, or one block's part of the span — with how many candidates each has.
struct Parts<'a> {
    conn: &'a Connection,
    tid: i64,
    range: ([u8; 16], [u8; 16]),
    spans: &'a [Span],
    desc: bool,
    /// The positions of a rare `q=` term ([`rare_term`]): no other position can match.
    term: Option<&'a [i64]>,
    /// The last block that holds events.
    last_block: i64,
    /// The span being walked and its next block.
    at: usize,
    next: Option<i64>,
    /// A block's range met while gathering positions, yielded next.
    held: Option<(Part, u64)>,
}

impl<'a> Parts<'a> {
    fn new(
        conn: &'a Connection,
        (tid, size): (i64, u64),
        (range, term): Address<'a>,
        spans: &'a [Span],
        desc: bool,
    ) -> Self {
        Parts {
            conn,
            tid,
            range,
            spans,
            desc,
            term,
            last_block: if size == 0 {
                -1
            } else {
                window::block_of(size - 1)
            },
            at: 0,
            next: None,
            held: None,
        }
    }

    /// The next candidates, in the walk's order: the positions of consecutive blocks up to
    /// [`POINTS_PER_STATEMENT`], or a block's range.
    fn next(&mut self) -> StoreResult<Option<(Part, u64)>> {
        if let Some(held) = self.held.take() {
            return Ok(Some(held));
        }
        let mut points: Vec<i64> = Vec::new();
        while points.len() < POINTS_PER_STATEMENT {
            match self.next_block()? {
                None => break,
                Some((Part::Points(p), _)) => points.extend(p),
                Some(range) if points.is_empty() => return Ok(Some(range)),
                Some(range) => {
                    self.held = Some(range);
                    break;
                }
            }
        }
        let n = points.len() as u64;
        Ok((n > 0).then_some((Part::Points(points), n)))
    }

    fn next_block(&mut self) -> StoreResult<Option<(Part, u64)>> {
        while let Some(s) = self.spans.get(self.at) {
            let first = window::block_of(seq_of(s.lo));
            let last = window::block_of(seq_of(s.hi)).min(self.last_block);
            let block = match self.next {
                Some(b) => b,
                None if self.desc => last,
                None => first,
            };
            if block < first || block > last {
                self.at += 1;
                self.next = None;
                continue;
            }
            self.next = Some(if self.desc { block - 1 } else { block + 1 });
            let mut points =
                addresses::positions(self.conn, self.tid, block, (&self.range.0, &self.range.1))?;
            points.retain(|p| (s.lo..=s.hi).contains(p));
            if let Some(term) = self.term {
                points.retain(|p| term.binary_search(p).is_ok());
            }
            if points.is_empty() {
                continue;
            }
            let n = points.len() as u64;
            if points.len() > POINTS_PER_BLOCK {
                let (b_lo, b_hi) = window::block_bounds(self.tid, block);
                return Ok(Some((Part::Range(b_lo.max(s.lo), b_hi.min(s.hi)), n)));
            }
            if self.desc {
                points.reverse();
            }
            return Ok(Some((Part::Points(points), n)));
        }
        Ok(None)
    }
}

/// `AND e.pos IN (...)`: positions are integers the store computed, so they are written
/// into the statement (one statement per list: [`POINTS_PER_STATEMENT`] and at most a
/// quarter block more).
fn in_list(points: &[i64]) -> String {
    let mut s = String::with_capacity(points.len() * 12 + 16);
    s.push_str(" AND e.pos IN (");
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&p.to_string());
    }
    s.push(')');
    s
}

/// The compiled parameters with the `pos` bounds of a part.
fn part_params(c: &Compiled, part: &Part) -> Vec<SqlValue> {
    let (lo, hi) = match part {
        Part::Points(p) => (*p.iter().min().unwrap_or(&0), *p.iter().max().unwrap_or(&0)),
        Part::Range(lo, hi) => (*lo, *hi),
    };
    let mut params = c.params.clone();
    params[c.range_at] = lo.into();
    params[c.range_at + 1] = hi.into();
    params
}

/// The statement reading up to `limit` matches of a part, past `offset` of them.
fn part_sql(c: &Compiled, dir: &str, part: &Part, limit: u64, offset: u64) -> String {
    let list = match part {
        Part::Points(p) => in_list(p),
        Part::Range(..) => String::new(),
    };
    format!(
        "SELECT e.pos, e.leaf_hash, e.body {}{list} ORDER BY e.pos {dir} LIMIT {limit} OFFSET {offset}",
        c.from_where
    )
}

fn part_events(
    conn: &Connection,
    c: &Compiled,
    dir: &str,
    part: &Part,
    limit: u64,
    offset: u64,
) -> StoreResult<Vec<StoredEvent>> {
    // Lists differ from block to block: caching their statements would only evict others.
    let mut stmt = conn
        .prepare(&part_sql(c, dir, part, limit, offset))
        .map_err(sql_error)?;
    stmt.query_map(params_from_iter(part_params(c, part)), row_event)
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)
}

fn part_count(conn: &Connection, c: &Compiled, part: &Part, cap: Option<u64>) -> StoreResult<u64> {
    let list = match part {
        Part::Points(p) => in_list(p),
        Part::Range(..) => String::new(),
    };
    let sql = match cap {
        None => format!("SELECT count(*) {}{list}", c.from_where),
        Some(n) => format!(
            "SELECT count(*) FROM (SELECT 1 {}{list} LIMIT {n})",
            c.from_where
        ),
    };
    conn.prepare(&sql)
        .map_err(sql_error)?
        .query_row(params_from_iter(part_params(c, part)), |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(sql_error)
}

/// A search with a narrow `ip=` filter, through the address postings: block by block in the
/// search's order (within the window's or the facets' spans), the events at the positions
/// the postings name, checked against the rest of the filter.
fn by_address(
    conn: &Connection,
    c: &Compiled,
    q: &EventQuery,
    spans: &[Span],
    tenant: (i64, u64),
    range: ([u8; 16], [u8; 16]),
    budget: Duration,
) -> StoreResult<SearchResult> {
    let desc = q.order == Order::Desc;
    let dir = if desc { "DESC" } else { "ASC" };
    // Read once for the page and its total.
    let term = match &c.text {
        Some(expr) => rare_term(conn, expr, c.lo, c.hi)?,
        None => None,
    };
    let address = (range, term.as_deref());
    match q.page {
        Pagination::Cursor { limit, .. } => {
            let want = u64::from(limit) + 1;
            let mut events = Vec::new();
            let mut parts = Parts::new(conn, tenant, address, spans, desc);
            while (events.len() as u64) < want {
                let Some((part, _)) = parts.next()? else {
                    break;
                };
                let need = want - events.len() as u64;
                events.extend(part_events(conn, c, dir, &part, need, 0)?);
            }
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
                estimated: false,
            })
        }
        Pagination::Numbered { page, per_page } => {
            let offset = u64::from(page - 1) * u64::from(per_page);
            let per_page = u64::from(per_page);
            let mut events = Vec::new();
            let mut skip = offset;
            let mut parts = Parts::new(conn, tenant, address, spans, desc);
            while (events.len() as u64) < per_page {
                let Some((part, _)) = parts.next()? else {
                    break;
                };
                if skip > 0 {
                    let n = part_count(conn, c, &part, Some(skip))?;
                    if n < skip {
                        skip -= n;
                        continue;
                    }
                }
                let need = per_page - events.len() as u64;
                events.extend(part_events(conn, c, dir, &part, need, skip)?);
                skip = 0;
            }
            let total = address_total(conn, c, spans, tenant, address, budget)?.with_page(
                offset,
                events.len() as u64,
                per_page,
            );
            Ok(SearchResult {
                events,
                next_after: None,
                total: Some(total.value),
                estimated: !total.exact,
            })
        }
    }
}

/// The total of a search through the address postings: their offsets when the address is
/// the whole filter; otherwise the candidates checked until `budget` is spent, and the rest
/// estimated from [`ADDRESS_SAMPLES`] of its pieces ([`sample_pieces`]), evenly spaced, at
/// the rate of matches among their candidates (the postings give every block's number of
/// candidates).
fn address_total(
    conn: &Connection,
    c: &Compiled,
    spans: &[Span],
    tenant: (i64, u64),
    address: Address<'_>,
    budget: Duration,
) -> StoreResult<Total> {
    let started = Instant::now();
    let mut parts = Parts::new(conn, tenant, address, spans, false);
    let mut matched = 0u64;
    let mut left: Vec<(Part, u64)> = Vec::new();
    while let Some((part, candidates)) = parts.next()? {
        if c.address_only {
            matched += candidates;
        } else if left.is_empty() && started.elapsed() < budget {
            matched += part_count(conn, c, &part, None)?;
        } else {
            left.push((part, candidates));
        }
    }
    let left = sample_pieces(left);
    if left.len() <= ADDRESS_SAMPLES {
        for (part, _) in &left {
            matched += part_count(conn, c, part, None)?;
        }
        return Ok(Total::exact(matched));
    }
    let unchecked: u64 = left.iter().map(|(_, n)| n).sum();
    let (mut sampled, mut sampled_matches) = (0u64, 0u64);
    for i in 0..ADDRESS_SAMPLES {
        let (part, n) = &left[i * left.len() / ADDRESS_SAMPLES];
        sampled += n;
        sampled_matches += part_count(conn, c, part, None)?;
    }
    let rest = (sampled_matches as f64 / sampled.max(1) as f64 * unchecked as f64).round() as u64;
    Ok(Total {
        value: matched + rest,
        exact: false,
    })
}

/// The total of a filter no counter answers, within `budget` ([`bitacora_store::total`]):
/// spans wholly inside from their counts (`exact_counts`), the others counted in chunks, and
/// what the budget leaves estimated from samples. Ranges stop at the tenant's last event, so
/// positions that hold no event yet are never sampled.
fn counted(
    conn: &Connection,
    c: &Compiled,
    spans: &[Span],
    exact_counts: bool,
    tid: i64,
    size: u64,
    budget: Duration,
) -> StoreResult<Total> {
    if size == 0 {
        return Ok(Total::exact(0));
    }
    let last = pos(tid, size - 1);
    let mut counter = Counter::over_spans(spans, exact_counts, last, budget);
    while let Some(r) = counter.next() {
        counter.counted(count_range(conn, c, r, None)?);
    }
    if !counter.done() {
        for r in counter.samples() {
            counter.sampled(r, count_range(conn, c, r, None)?);
        }
    }
    Ok(counter.finish())
}

/// The compiled parameters with the `pos` bounds of `span`.
fn span_params(c: &Compiled, span: &Span) -> Vec<SqlValue> {
    let mut params = c.params.clone();
    params[c.range_at] = span.lo.into();
    params[c.range_at + 1] = span.hi.into();
    params
}

fn run_span(
    conn: &Connection,
    c: &Compiled,
    select: &str,
    span: &Span,
    limit: u64,
    offset: u64,
) -> StoreResult<Vec<StoredEvent>> {
    let sql = if offset == 0 {
        format!("{select} LIMIT {limit}")
    } else {
        format!("{select} LIMIT {limit} OFFSET {offset}")
    };
    run(conn, &sql, &span_params(c, span))
}

/// The matches among positions `lo..=hi`, or `min(matches, cap)` with a cap.
fn count_range(
    conn: &Connection,
    c: &Compiled,
    (lo, hi): (i64, i64),
    cap: Option<u64>,
) -> StoreResult<u64> {
    let sql = match cap {
        None => format!("SELECT count(*) {}", c.from_where),
        Some(n) => format!("SELECT count(*) FROM (SELECT 1 {} LIMIT {n})", c.from_where),
    };
    let mut params = c.params.clone();
    params[c.range_at] = lo.into();
    params[c.range_at + 1] = hi.into();
    conn.prepare_cached(&sql)
        .map_err(sql_error)?
        .query_row(params_from_iter(params), |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(sql_error)
}

/// Events of tenant `tid` with action `action`, from the counters.
fn action_events(conn: &Connection, tid: i64, action: i64) -> StoreResult<u64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(count), 0) FROM action_counts WHERE tenant_id = ?1 AND action = ?2",
    )
    .map_err(sql_error)?
    .query_row(params![tid, action], |r| r.get::<_, i64>(0))
    .map(|n| n.max(0) as u64)
    .map_err(sql_error)
}

/// Events of tenant `tid` with actor id `actor`, from the counters.
fn actor_events(conn: &Connection, tid: i64, actor: &str) -> StoreResult<u64> {
    conn.prepare_cached("SELECT count FROM actor_stats WHERE tenant_id = ?1 AND actor_id = ?2")
        .map_err(sql_error)?
        .query_row(params![tid, actor], |r| r.get::<_, i64>(0))
        .optional()
        .map(|n| n.unwrap_or(0).max(0) as u64)
        .map_err(sql_error)
}

fn run(conn: &Connection, sql: &str, params: &[SqlValue]) -> StoreResult<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    stmt.query_map(params_from_iter(params), row_event)
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)
}

pub fn actions(conn: &Connection, t: &TenantName) -> StoreResult<Vec<ActionSummary>> {
    let Some((tid, _)) = tenant(conn, t)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT a.value, c.value, sum(n.count) AS total
             FROM action_counts n
             JOIN terms a ON a.id = n.action
             JOIN terms c ON c.id = n.category
             WHERE n.tenant_id = ?1
             GROUP BY a.value, c.value
             ORDER BY total DESC, a.value",
        )
        .map_err(sql_error)?;
    stmt.query_map([tid], |r| {
        Ok(ActionSummary {
            action: r.get(0)?,
            category: r.get(1)?,
            count: r.get::<_, i64>(2)? as u64,
        })
    })
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

pub fn actors(conn: &Connection, t: &TenantName, limit: u32) -> StoreResult<Vec<ActorSummary>> {
    let Some((tid, _)) = tenant(conn, t)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT actor_id, name, email, count, last_seen FROM actor_stats
             WHERE tenant_id = ?1 ORDER BY last_seen DESC, actor_id LIMIT ?2",
        )
        .map_err(sql_error)?;
    stmt.query_map(params![tid, limit], |r| {
        Ok(ActorSummary {
            id: r.get(0)?,
            name: r.get(1)?,
            email: r.get(2)?,
            count: r.get::<_, i64>(3)? as u64,
            last_seen: format_micros(r.get(4)?),
        })
    })
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

fn format_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| timestamp::format(&t))
        .unwrap_or_default()
}

/// From the daily rollups for the window's whole days, and the events of its partial days at
/// either end (`rollup.rs`).
pub fn stats(
    conn: &Connection,
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
    let Some((tid, _)) = tenant(conn, t)? else {
        return Ok(stats);
    };
    // One snapshot for the rollups and the events at the window's edges.
    let tx = conn.unchecked_transaction().map_err(sql_error)?;
    let rollup::Tally {
        total,
        without_actor,
        days,
        categories,
        severities,
        outcomes,
        actors,
        ips,
    } = rollup::tally(&tx, tid, tenant_range(tid), since, until)?;
    tx.commit().map_err(sql_error)?;
    // The tally's counts are signed while added up; none is negative.
    let n = |count: i64| u64::try_from(count).unwrap_or(0);
    stats.total = n(total);
    stats.without_actor = n(without_actor);
    let mut per_day: Vec<(i64, u64)> = days.into_iter().map(|(d, c)| (d, n(c))).collect();
    per_day.sort_unstable();
    stats.per_day = per_day
        .into_iter()
        .map(|(d, count)| DayCount {
            day: DateTime::<Utc>::from_timestamp_micros(d * DAY_US)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            count,
        })
        .collect();
    let mut per_category = Vec::new();
    for (id, count) in categories {
        let key: String = conn
            .prepare_cached("SELECT value FROM terms WHERE id = ?1")
            .map_err(sql_error)?
            .query_row([id], |r| r.get(0))
            .map_err(sql_error)?;
        per_category.push(KeyCount {
            key,
            count: n(count),
        });
    }
    sort_counts(&mut per_category);
    stats.per_category = per_category;
    stats.per_severity = Severity::ALL
        .iter()
        .map(|s| SeverityCount {
            severity: *s,
            count: n(severities[s.rank() as usize]),
        })
        .collect();
    stats.per_outcome = Outcome::ALL
        .iter()
        .map(|o| KeyCount {
            key: o.to_string(),
            count: n(outcomes[o.rank() as usize]),
        })
        .collect();
    let mut top_actors: Vec<(String, u64)> = actors.into_iter().map(|(a, c)| (a, n(c))).collect();
    top_actors.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top_actors.truncate(top as usize);
    for (id, count) in top_actors {
        let name: Option<String> = conn
            .prepare_cached("SELECT name FROM actor_stats WHERE tenant_id = ?1 AND actor_id = ?2")
            .map_err(sql_error)?
            .query_row(params![tid, id], |r| r.get(0))
            .optional()
            .map_err(sql_error)?
            .flatten();
        stats.top_actors.push(ActorCount { id, name, count });
    }
    let mut top_ips: Vec<KeyCount> = ips
        .into_iter()
        .filter_map(|(blob, count)| {
            Some(KeyCount {
                key: derive::ip_from_blob(&blob)?.to_string(),
                count: n(count),
            })
        })
        .collect();
    sort_counts(&mut top_ips);
    top_ips.truncate(top as usize);
    stats.top_ips = top_ips;
    Ok(stats)
}

fn sort_counts(v: &mut [KeyCount]) {
    v.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
}

pub fn tenants(conn: &Connection) -> StoreResult<Vec<TenantName>> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM tenants ORDER BY name")
        .map_err(sql_error)?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    names
        .into_iter()
        .map(|n| {
            TenantName::parse(&n)
                .map_err(|e| StoreError::Corrupt(format!("stored tenant name `{n}`: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The query plans the schema was designed for. A plan regression here is a performance
    //! regression at 10M events, long before any benchmark would notice.
    use super::*;
    use crate::schema::{self, Role};

    fn compiled(conn: &Connection, query: &str) -> Compiled {
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap())
            .collect();
        let q = EventQuery::parse(pairs, &TenantName::default_tenant()).unwrap();
        compile(conn, 1, &q).unwrap()
    }

    fn plan(conn: &Connection, query: &str) -> String {
        let c = compiled(conn, query);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT e.pos, e.leaf_hash, e.body {} ORDER BY {} DESC LIMIT 51",
            c.from_where, c.pos_col
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows: Vec<String> = stmt
            .query_map(params_from_iter(&c.params), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.join(" | ")
    }

    /// The facets drop what never occurred together: a pair of values the log never held
    /// matches nothing without reading an event, and a prefix keeps only the actions that
    /// came with the other faceted filters.
    #[test]
    fn filters_are_pruned_by_the_combinations_the_log_holds() {
        let (_dir, conn) = db();
        for never in [
            "severity=medium",
            "severity=critical&outcome=failure&action=user.logout",
            "action=user.logout&source=admin_panel",
            "action=user.*&category=device",
        ] {
            let c = compiled(&conn, never);
            assert!(c.empty, "{never}: no combination of the log admits it");
        }
        let c = compiled(&conn, "action=user.*&severity=critical");
        assert!(!c.empty);
        assert!(c.from_where.contains("e.action = 1 "), "{}", c.from_where);
        assert_eq!(c.facet_total, Some(20));
        let c = compiled(&conn, "action=user.*&outcome=failure");
        assert!(
            c.from_where.contains("e.action IN (1,2)"),
            "{}",
            c.from_where
        );
        assert_eq!(c.facet_total, Some(17));
        // Another filter: the facets narrow the scan but do not count the matches.
        let c = compiled(&conn, "action=user.*&actor_id=42");
        assert!(!c.empty);
        assert_eq!(c.facet_total, None);
    }

    /// A narrow `ip=` reads the events the address postings name, by position: one lookup
    /// each, whatever else the filter says — never a scan of the span around them.
    #[test]
    fn an_address_search_fetches_its_positions_one_by_one() {
        let (_dir, conn) = db();
        for query in [
            "ip=10.1.64.7",
            "ip=10.1.64.0/24",
            "ip=10.1.64.7&action=user.login",
            "ip=10.1.64.7&actor_id=7",
            "ip=10.1.64.7&q=auditoria",
            "ip=10.1.64.7&since=2026-01-01T00:00:00Z",
        ] {
            let c = compiled(&conn, query);
            assert!(c.addresses.is_some(), "{query}");
            assert_eq!(c.pos_col, "e.pos", "{query}: not driven from the full text");
            let part = Part::Points(vec![5, 9, 700]);
            let sql = format!("EXPLAIN QUERY PLAN {}", part_sql(&c, "DESC", &part, 51, 0));
            let plan: Vec<String> = conn
                .prepare(&sql)
                .unwrap()
                .query_map(params_from_iter(part_params(&c, &part)), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join(" | ");
            assert!(
                plan.contains("USING INTEGER PRIMARY KEY (rowid=?)")
                    || plan.contains("(action=? AND rowid=?)")
                    || plan.contains("(actor_id=? AND rowid=?)"),
                "{query}: {plan}"
            );
        }
        // Only the address: its postings are the total. A wide network or a target is read
        // as before.
        assert!(compiled(&conn, "ip=10.1.64.7").address_only);
        assert!(!compiled(&conn, "ip=10.1.64.7&outcome=failure").address_only);
        assert!(compiled(&conn, "ip=10.1.0.0/16").addresses.is_none());
        assert!(
            compiled(&conn, "ip=10.1.64.7&target_type=user&target_id=4")
                .addresses
                .is_none()
        );
    }

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = schema::open(
            &dir.path().join("t.db"),
            Role::Reader,
            crate::Synchronous::Normal,
        )
        .unwrap();
        schema::migrate(&mut conn).unwrap();
        schema::migrate_fts(&conn).unwrap();
        conn.execute_batch(
            "INSERT INTO terms (id, kind, value) VALUES (1, 1, 'user.login'), (2, 1, 'user.logout'),
                    (3, 3, 'user'), (4, 4, 'admin_panel'), (5, 2, 'user');
             -- user.login, critical, from the admin panel (success 10, failure 10); user.logout,
             -- low, failure, without a source (7). Any address and any actor (every bit of
             -- the sketches set).
             INSERT INTO facet_counts (tenant_id, action, category, severity, outcome, source, count)
             VALUES (1, 1, 5, 3, 0, 4, 10), (1, 1, 5, 3, 1, 4, 10), (1, 2, 5, 0, 1, 0, 7);
             UPDATE facet_counts SET areas_0 = -1, areas_1 = -1, areas_2 = -1, areas_3 = -1,
                 actors_0 = -1, actors_1 = -1, actors_2 = -1, actors_3 = -1;
             INSERT INTO action_counts (tenant_id, action, category, count)
             VALUES (1, 1, 5, 20), (1, 2, 5, 7);
             -- Actor 42 did 3 things, actor 7 thirty.
             INSERT INTO actor_stats (tenant_id, actor_id, count, last_seen)
             VALUES (1, '42', 3, 0), (1, '7', 30, 0);",
        )
        .unwrap();
        (dir, conn)
    }

    #[test]
    fn each_selective_filter_uses_its_index_without_sorting() {
        let (_dir, conn) = db();
        let cases = [
            ("", "USING INTEGER PRIMARY KEY"),
            (
                "cursor=djFkMTAwMDA",
                "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
            ),
            ("actor_id=42", "USING INDEX events_actor"),
            (
                "target_type=user&target_id=456",
                "USING INDEX events_target",
            ),
            ("action=user.login", "USING INDEX events_action"),
            // An action and an actor: the index of the one with fewer events.
            ("action=user.login&actor_id=42", "USING INDEX events_actor"),
            ("action=user.login&actor_id=7", "USING INDEX events_action"),
            // An action and a target: the target's.
            (
                "action=user.login&target_type=user&target_id=456",
                "USING INDEX events_target",
            ),
            // An actor and a target: the target's.
            (
                "actor_id=7&target_type=user&target_id=456",
                "USING INDEX events_target",
            ),
            // Several actions: read in log order (their index would sort every match).
            ("action=user.*&ip=10.1.0.0/16", "USING INTEGER PRIMARY KEY"),
            // A prefix the facets narrow to one action uses that action's index.
            (
                "action=user.*&severity=critical",
                "USING INDEX events_action",
            ),
            // A target's few events, each checked against the full-text index by rowid.
            (
                "target_type=user&target_id=456&q=auditoria",
                "USING INDEX events_target",
            ),
            ("q=auditoria", "VIRTUAL TABLE INDEX"),
            ("q=auditoria&action=user.login", "VIRTUAL TABLE INDEX"),
            (
                "q=auditoria&actor_id=42&target_type=user",
                "VIRTUAL TABLE INDEX",
            ),
        ];
        for (query, expected) in cases {
            let p = plan(&conn, query);
            assert!(p.contains(expected), "{query}: {p}");
            if query.contains("q=") && !query.contains("target_id=") {
                assert!(
                    p.starts_with("SCAN fts.events_fts") || p.starts_with("SCAN events_fts"),
                    "{query} must be driven by the full-text index: {p}"
                );
            }
            assert!(!p.contains("TEMP B-TREE"), "{query} sorts: {p}");
        }
    }

    /// An actor's faceted filters are checked on its index entries: the page fetches only
    /// the events that match (the table seek is deferred past the checks), and a total
    /// reads the index alone — an actor with 50,000 events, none of them critical, no longer
    /// fetches all 50,000 to say so.
    #[test]
    fn an_actors_faceted_filters_are_checked_on_its_index() {
        let (_dir, conn) = db();
        for query in [
            "actor_id=42&severity=critical",
            "actor_id=42&min_severity=high",
            "actor_id=42&outcome=failure",
            "actor_id=42&action=user.*",
            "actor_id=42&action=user.login&severity=critical&source=admin_panel",
            "actor_id=42&category=user",
            "actor_id=42&actor=usuario 17",
        ] {
            let c = compiled(&conn, query);
            assert!(!c.empty, "{query}");
            let p = plan(&conn, query);
            assert!(
                p.contains("USING INDEX events_actor (actor_id=? AND pos>? AND pos<?)"),
                "{query}: {p}"
            );
            assert!(!p.contains("TEMP B-TREE"), "{query} sorts: {p}");
            // The bytecode: the index cursor's columns are compared before the deferred
            // seek into the table is made good (by the first column only the table has).
            let sql = format!(
                "EXPLAIN SELECT e.pos, e.leaf_hash, e.body {} ORDER BY e.pos DESC LIMIT 51",
                c.from_where
            );
            let ops: Vec<(String, i64)> = conn
                .prepare(&sql)
                .unwrap()
                .query_map(params_from_iter(&c.params), |r| Ok((r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let deferred = ops
                .iter()
                .position(|(op, _)| op == "DeferredSeek")
                .unwrap_or_else(|| panic!("{query}: no deferred seek in {ops:?}"));
            let index_cursor = ops[deferred].1;
            let checks = ops[deferred..]
                .iter()
                .take_while(|(op, _)| op != "ResultRow")
                .filter(|(op, cursor)| op == "Column" && *cursor == index_cursor)
                .count();
            assert!(
                checks >= 1,
                "{query}: no column read from the index: {ops:?}"
            );
            let count = format!("EXPLAIN QUERY PLAN SELECT count(*) {}", c.from_where);
            let p: Vec<String> = conn
                .prepare(&count)
                .unwrap()
                .query_map(params_from_iter(&c.params), |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let p = p.join(" | ");
            assert!(
                p.contains("USING COVERING INDEX events_actor"),
                "{query}: the total reads the table: {p}"
            );
        }
    }

    /// `q=` with `actor_id=`: the smaller of the two drives — the actor's index, each event
    /// checked in the full-text index by rowid, when the term matches more events than the
    /// actor has (estimated from where its first 4,096 matches end); the full text when the
    /// term is the rarer.
    #[test]
    fn an_actor_or_a_term_drives_whichever_is_smaller() {
        let (_dir, conn) = db();
        let (lo, _) = tenant_range(1);
        // A common term in 5,000 events, a rare one in 2.
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..5_000 {
            let text = if i % 2_500 == 0 {
                "auditoria raro"
            } else {
                "auditoria"
            };
            tx.execute(
                "INSERT INTO fts.events_fts (rowid, text) VALUES (?1, ?2)",
                params![lo + i, text],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        for (query, by_actor) in [
            ("q=auditoria&actor_id=42", true),
            ("q=auditoria&actor_id=7", true),
            ("q=raro&actor_id=7", false),
            (
                "q=auditoria&actor_id=42&target_type=user&target_id=4",
                false,
            ),
        ] {
            let c = compiled(&conn, query);
            let p = plan(&conn, query);
            assert!(!p.contains("TEMP B-TREE"), "{query} sorts: {p}");
            if by_actor {
                assert_eq!(c.pos_col, "e.pos", "{query}");
                assert!(p.contains("USING INDEX events_actor"), "{query}: {p}");
            } else if query.contains("target_id") {
                assert!(p.contains("USING INDEX events_target"), "{query}: {p}");
            } else {
                assert!(p.starts_with("SCAN fts.events_fts"), "{query}: {p}");
            }
        }
        assert_eq!(text_matches(&conn, "\"raro\"", lo, lo + 9_999).unwrap(), 2);
        // 4,097 matches in the first 4,097 positions of 10,000: about 10,000.
        let n = text_matches(&conn, "\"auditoria\"", lo, lo + 9_999).unwrap();
        assert!((9_000..=10_000).contains(&n), "{n}");
    }

    /// A window is read span by span in `pos` order (`window.rs`): never from the
    /// `occurred_at` index, which would sort the whole window to find its first page.
    #[test]
    fn time_windows_scan_in_log_order() {
        let (_dir, conn) = db();
        let cases = [
            (
                "since=2026-01-13&until=2026-01-13",
                "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
            ),
            ("since=2026-01-13", "USING INTEGER PRIMARY KEY"),
            ("until=2026-01-13", "USING INTEGER PRIMARY KEY"),
            (
                "severity=critical&outcome=failure&since=2026-01-13&until=2026-01-14",
                "USING INTEGER PRIMARY KEY",
            ),
            (
                "action=user.login&since=2026-01-13&until=2026-01-14",
                "USING INDEX events_action",
            ),
            (
                "actor_id=42&since=2026-01-13&until=2026-01-14",
                "USING INDEX events_actor",
            ),
            (
                "target_type=user&target_id=456&until=2026-01-14",
                "USING INDEX events_target",
            ),
            ("q=auditoria&since=2026-01-13", "VIRTUAL TABLE INDEX"),
        ];
        for (query, expected) in cases {
            let p = plan(&conn, query);
            assert!(p.contains(expected), "{query}: {p}");
            assert!(!p.contains("events_occurred"), "{query}: {p}");
            assert!(!p.contains("TEMP B-TREE"), "{query} sorts: {p}");
        }
    }

    #[test]
    fn id_lookup_uses_the_id_index() {
        let (_dir, conn) = db();
        let p: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT pos FROM events WHERE event_id = 'x' AND pos BETWEEN 1 AND 2",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(p.contains("events_event_id"), "{p}");
    }

    #[test]
    fn stats_window_uses_the_time_index() {
        let (_dir, conn) = db();
        let p: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT occurred_at FROM events INDEXED BY events_occurred
                 WHERE occurred_at >= 1 AND occurred_at < 2 AND pos BETWEEN 1 AND 2",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            p.contains("events_occurred (occurred_at>? AND occurred_at<?)"),
            "{p}"
        );
    }
}
