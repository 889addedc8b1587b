//! Queries: searches, lookups and aggregates, on pooled connections.
//!
//! A search is compiled to one statement over `events` for one tenant, ordered by `seq`.
//! The indexes all lead with `tenant_id` and end with `seq`, so a selective filter is an
//! index range scan in log order on each partition, merged (`Merge Append`) and cut at the
//! page size; `q=` goes through the GIN index on the unaccented text.

use std::collections::HashMap;
use std::time::Duration;

use bitacora_core::api::{
    ActionSummary, ActorCount, ActorSummary, DayCount, KeyCount, SeverityCount, Stats,
};
use bitacora_core::event::timestamp;
use bitacora_core::query::{ActionPattern, EventFilter, EventQuery, Order, Pagination};
use bitacora_core::{Outcome, Severity, TenantName};
use bitacora_store::postings::{ADDRESS_SAMPLES, POINTS_PER_STATEMENT, Part, sample_pieces};
use bitacora_store::sketch::Wanted;
use bitacora_store::total::{Counter, Total};
use bitacora_store::{SearchResult, StoreError, StoreResult, StoredEvent};
use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::{ClientWrapper, Transaction};
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::addresses;
use crate::facets::Combos;
use crate::rollup;
use crate::window;
use crate::{derive, hash32, pg_error};
use bitacora_store::window::Span;

type Param = Box<dyn ToSql + Sync + Send>;

const TENANT: &str = "SELECT id, size FROM tenants WHERE name = $1";

/// The tenant's id and log size, or `None` when it has never written.
pub async fn tenant(client: &ClientWrapper, name: &TenantName) -> StoreResult<Option<(i32, u64)>> {
    let stmt = client.prepare_cached(TENANT).await.map_err(pg_error)?;
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
    /// With `q=`: the full-text condition, and `where_clause` without it (`where_clause`
    /// is the two joined), for counting a range row by row (see [`count_range`]).
    text: Option<(String, String)>,
    params: Vec<Param>,
    /// Set when no event can match (a value no stored event can hold).
    empty: bool,
    /// True when no filter narrows the tenant's log (totals come from the tenant row).
    unfiltered: bool,
    /// `since`/`until` (open ends as the extremes): the search is read span by span.
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The window is the whole filter: spans wholly inside it give their counts for free.
    window_only: bool,
    /// The filter on the faceted columns (`facets.rs`), over `facet_counts`: its clause and
    /// parameters, when the search filters on any of them (or has sketch bits to match).
    facets: Option<(String, Vec<Param>)>,
    /// The sketch bits of the filter's `ip=` and `actor_id=` (`bitacora_store::sketch`).
    wanted: Wanted,
    /// The filter is only faceted columns and maybe a window: the facets' counts are its
    /// matches.
    facets_only: bool,
    /// `where_clause` has `seq` bounds placeholders (with a window or facets), at
    /// `params[range_at]` and `params[range_at + 1]`, filled per span.
    ranged: bool,
    range_at: usize,
    /// The seqs the search may read, from the cursor and the log's size.
    lo: i64,
    hi: i64,
    /// The client-address range of a narrow `ip=` filter, read through the address
    /// postings (`addresses.rs`) instead of in `seq` order.
    addresses: Option<([u8; 16], [u8; 16])>,
    /// The filter is only that address range: the postings' offsets are its total.
    address_only: bool,
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

    /// The parameters, with `span`'s bounds in place of the window's placeholders.
    fn span_refs<'a>(&'a self, span: &'a (i64, i64)) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut refs = self.refs();
        if self.ranged {
            refs[self.range_at] = &span.0;
            refs[self.range_at + 1] = &span.1;
        }
        refs
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

fn compile(tid: i32, size: u64, q: &EventQuery) -> Compiled {
    let f = &q.filter;
    let mut c = Compiled {
        where_clause: String::new(),
        text: None,
        params: Vec::new(),
        empty: false,
        unfiltered: false,
        window: None,
        window_only: false,
        facets: None,
        wanted: Wanted::default(),
        facets_only: false,
        ranged: false,
        range_at: 0,
        lo: 0,
        hi: size as i64 - 1,
        addresses: None,
        address_only: false,
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
        match q.order {
            Order::Desc => c.hi = c.hi.min(after - 1),
            Order::Asc => c.lo = c.lo.max(after.saturating_add(1)),
        }
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
        let clause = actions_clause(&f.actions, &mut |p| {
            c.params.push(p);
            format!("${}", c.params.len())
        });
        clauses.push(clause);
    }
    if let [category] = f.categories.as_slice() {
        let p = c.push(category.clone());
        clauses.push(format!("category = {p}"));
    } else if !f.categories.is_empty() {
        let p = c.push(f.categories.clone());
        clauses.push(format!("category = ANY({p})"));
    }
    if !f.severities.is_empty() && f.severities.len() < Severity::ALL.len() {
        // As a range (plus the set when it has holes): a range on `severity` is checked on
        // the actor index's entries, `= ANY` only on the fetched rows (migration 13).
        let mut ranks: Vec<i16> = f.severities.iter().map(|s| i16::from(s.rank())).collect();
        ranks.sort_unstable();
        ranks.dedup();
        let (least, most) = (ranks[0], ranks[ranks.len() - 1]);
        let (a, b) = (c.push(least), c.push(most));
        clauses.push(format!("severity BETWEEN {a} AND {b}"));
        if i32::from(most - least) + 1 != ranks.len() as i32 {
            let p = c.push(ranks);
            clauses.push(format!("severity = ANY({p})"));
        }
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
    c.wanted = Wanted::new(f.ip.as_ref(), f.actor_id.as_deref());
    c.facets = facet_filter(tid, f, &c.wanted);
    // A window is read through the zone map (`window.rs`), and sparse faceted filters through
    // the facets' blocks, one seq span at a time; the span's bounds are parameters filled in
    // per statement. An open end is an instant before (after) any event can be, inside what
    // PostgreSQL's timestamptz holds.
    if f.since.is_some() || f.until.is_some() {
        c.window = Some((
            f.since.unwrap_or_else(window::beginning),
            f.until.unwrap_or_else(window::end),
        ));
    }
    if c.window.is_some() || c.facets.is_some() {
        c.ranged = true;
        let lo = c.push(0i64);
        c.range_at = c.params.len() - 1;
        let hi = c.push(0i64);
        clauses.push(format!("seq BETWEEN {lo} AND {hi}"));
    }
    if let Some(since) = f.since {
        let p = c.push(since);
        clauses.push(format!("occurred_at >= {p}"));
    }
    if let Some(until) = f.until {
        let p = c.push(until);
        clauses.push(format!("occurred_at < {p}"));
    }
    let text_clause = (!f.text.is_empty()).then(|| {
        // Every term is plain text (plainto_tsquery ANDs the words and reads no operator),
        // folded exactly like the indexed document.
        let text = f.text.join(" ").replace('\0', " ");
        let p = c.push(text);
        format!(
            "fts_doc @@ plainto_tsquery('pg_catalog.simple'::regconfig, \
             bitacora_unaccent({p}))"
        )
    });
    // The filter without its severities when they are all of them (no narrowing).
    let mut rest = f.clone();
    if rest.severities.len() == Severity::ALL.len() {
        rest.severities.clear();
    }
    c.unfiltered = rest.is_empty();
    c.window_only = c.window.is_some() && {
        let mut g = rest.clone();
        g.since = None;
        g.until = None;
        g.is_empty()
    };
    rest.since = None;
    rest.until = None;
    rest.actions.clear();
    rest.categories.clear();
    rest.severities.clear();
    rest.outcome = None;
    rest.source = None;
    c.facets_only = c.facets.is_some() && rest.is_empty();
    // A narrow `ip=` without a target (whose index is narrower still) is read through the
    // address postings.
    c.addresses =
        f.ip.as_ref()
            .filter(|net| f.target_id.is_none() && derive::narrow_network(net))
            .map(derive::ip_range);
    c.address_only = c.addresses.is_some() && {
        let mut g = f.clone();
        if g.severities.len() == Severity::ALL.len() {
            g.severities.clear();
        }
        g.ip = None;
        g.is_empty()
    };
    c.where_clause = clauses.join(" AND ");
    if let Some(text) = text_clause {
        let rest = std::mem::take(&mut c.where_clause);
        c.where_clause = format!("{rest} AND {text}");
        c.text = Some((text, rest));
    }
    c
}

/// The clause for `actions` (exact names and prefixes), over `events` or `facet_counts`,
/// its parameters added with `push` (which returns the placeholder). One name is an equality,
/// not `= ANY`: only then does the `(tenant_id, action, seq)` index return the action's
/// events already in seq order (an array scan does not).
fn actions_clause(actions: &[ActionPattern], push: &mut dyn FnMut(Param) -> String) -> String {
    let mut exact = Vec::new();
    let mut any = Vec::new();
    for a in actions {
        match a {
            ActionPattern::Exact(name) => exact.push(name.clone()),
            ActionPattern::Prefix(p) => {
                any.push(format!("action LIKE {}", push(Box::new(like_prefix(p)))))
            }
        }
    }
    if exact.len() == 1 {
        any.push(format!("action = {}", push(Box::new(exact.remove(0)))));
    } else if !exact.is_empty() {
        any.push(format!("action = ANY({})", push(Box::new(exact))));
    }
    format!("({})", any.join(" OR "))
}

/// The faceted part of `f` as a clause over `facet_counts` (`$1` the tenant), or `None` when
/// it filters on none of those columns and has neither `actor_id=` nor an `ip=` network
/// narrow enough for the facets' sketches.
fn facet_filter(tid: i32, f: &EventFilter, wanted: &Wanted) -> Option<(String, Vec<Param>)> {
    let severities = f.severities.len() < Severity::ALL.len() && !f.severities.is_empty();
    if f.actions.is_empty()
        && f.categories.is_empty()
        && !severities
        && f.outcome.is_none()
        && f.source.is_none()
        && wanted.is_none()
    {
        return None;
    }
    let mut params: Vec<Param> = vec![Box::new(tid)];
    let mut push = |p: Param| {
        params.push(p);
        format!("${}", params.len())
    };
    let mut clauses = vec!["tenant_id = $1".to_owned()];
    if !f.actions.is_empty() {
        clauses.push(actions_clause(&f.actions, &mut push));
    }
    if !f.categories.is_empty() {
        clauses.push(format!(
            "category = ANY({})",
            push(Box::new(f.categories.clone()))
        ));
    }
    if severities {
        let ranks: Vec<i16> = f.severities.iter().map(|s| i16::from(s.rank())).collect();
        clauses.push(format!("severity = ANY({})", push(Box::new(ranks))));
    }
    if let Some(o) = f.outcome {
        clauses.push(format!("outcome = {}", push(Box::new(i16::from(o.rank())))));
    }
    if let Some(src) = &f.source {
        clauses.push(format!("source = {}", push(Box::new(src.clone()))));
    }
    Some((clauses.join(" AND "), params))
}

/// Answers a search in one read-only snapshot (the zone map, the counts and the pages of
/// several spans agree), with sorting disabled unless the search has `q=`.
///
/// Why no sort: every page is read in `seq` order, and without full text every filter has a
/// plan that yields rows in that order (the partitions' `(tenant_id, seq)` index, or an index
/// that ends with `seq` under equalities), merged across partitions and cut at the page. The
/// planner, though, multiplies the selectivities of a span's `seq` range and of the window's
/// `occurred_at` range as if they were independent — they are nearly the same condition — so
/// it underestimates a window's rows by orders of magnitude and would sort all of them to
/// return 50. `q=` keeps sorting: there the GIN index finds rare terms without reading the
/// log, and its matches must be sorted.
///
/// `budget`: how long a numbered page may spend counting its total ([`crate::PgOptions`]).
pub async fn search(
    client: &mut ClientWrapper,
    q: &EventQuery,
    budget: Duration,
) -> StoreResult<SearchResult> {
    let tx = snapshot(client, q).await?;
    let result = search_in(&tx, q, budget).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(result)
}

/// A read-only transaction that sees one snapshot for all its statements.
async fn read_only_snapshot(
    client: &mut ClientWrapper,
) -> StoreResult<deadpool_postgres::Transaction<'_>> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)
}

async fn snapshot<'a>(
    client: &'a mut ClientWrapper,
    q: &EventQuery,
) -> StoreResult<deadpool_postgres::Transaction<'a>> {
    let tx = read_only_snapshot(client).await?;
    // No JIT: a search's statements are short, and `enable_sort = off` prices any plan that
    // keeps a sort at 10^10, far past `jit_above_cost`, so PostgreSQL's default would compile
    // such a statement (100-200 ms of LLVM) to run it in a millisecond (measured: it was most
    // of the conformance suite's random searches on this store).
    // Custom plans only: a search runs one cached statement many times with different seq
    // bounds (each span, each counted chunk, each sample of a total), and after five runs
    // PostgreSQL may switch to a generic plan, blind to the bounds — for a window, a walk
    // of the whole window's `occurred_at` range for a 300-event sample (20 ms each, 16
    // samples a total; measured on the 1M matrix). Planning each run costs well under that.
    let settings = if q.filter.text.is_empty() {
        "SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan;
         SET LOCAL enable_sort = off"
    } else {
        "SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan"
    };
    tx.batch_execute(settings).await.map_err(pg_error)?;
    Ok(tx)
}

async fn search_in(
    tx: &Transaction<'_>,
    q: &EventQuery,
    budget: Duration,
) -> StoreResult<SearchResult> {
    let client = tx;
    let Some((tid, size)) = tenant_in(tx, &q.tenant).await? else {
        return Ok(SearchResult {
            total: matches!(q.page, Pagination::Numbered { .. }).then_some(0),
            ..SearchResult::default()
        });
    };
    let mut c = compile(tid, size, q);
    // The combinations of the faceted columns the filter admits (`facets.rs`): none means no
    // event matches, known without reading the log.
    let combos = match &c.facets {
        Some((clause, params)) if !c.empty => {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            // With `ip=` or `actor_id=`, the combinations whose events never came from the
            // network's areas, or never had the actor, are dropped too (`bitacora_store::sketch`).
            let found = Combos::find(tx, clause, &refs, c.wanted).await?;
            c.empty |= found.combos.is_empty();
            Some(found)
        }
        _ => None,
    };
    let dir = match q.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let select = format!(
        "SELECT seq, leaf_hash, body FROM events WHERE {} ORDER BY seq {dir}",
        c.where_clause
    );
    // The seq ranges to read, ascending: one span standing for the whole (cursor-narrowed)
    // log; the zone map's spans that overlap the window; or, when the faceted columns match
    // sparsely, the blocks holding their combinations (within the window's blocks). With
    // `exact_counts`, a span wholly inside counts its matches.
    // A numbered page of a window and faceted columns only also reads the facets' blocks,
    // dense or not: their per-block counts make the total exact without counting rows (a
    // window's day of `outcome=failure` counted and sampled its blocks: 0.34-0.52 s at 1M).
    let numbered = matches!(q.page, Pagination::Numbered { .. });
    let sparse = combos
        .as_ref()
        .filter(|f| f.sparse(size) || (numbered && c.facets_only && c.window.is_some()));
    let (mut spans, exact_counts) = match (c.window, sparse) {
        _ if c.empty => (Vec::new(), true),
        (w, Some(f)) => (
            f.spans(tx, tid, w, (c.lo, c.hi), c.facets_only).await?,
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
        (Some(w), None) => (
            window::spans(client, tid, w, (c.lo, c.hi), c.window_only).await?,
            c.window_only,
        ),
    };
    if q.order == Order::Desc {
        spans.reverse();
    }
    if let (Some(range), false) = (c.addresses, c.empty) {
        return by_address(tx, &c, q, &spans, (tid, size), range, budget).await;
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
                events.extend(run_span(client, &c, &select, s, need, 0).await?);
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
                        count_range(client, &c, (s.lo, s.hi), Some(skip), Through::Plan).await?
                    };
                    if n < skip {
                        skip -= n;
                        continue;
                    }
                }
                events.extend(run_span(client, &c, &select, s, need, skip).await?);
                skip = 0;
            }
            let total = if c.empty {
                Total::exact(0)
            } else if c.unfiltered {
                Total::exact(size)
            } else if let (Some(f), true, None) = (&combos, c.facets_only, c.window) {
                // Counters kept in the append transaction: no need to count the rows (an
                // action of 1.25M events took ~3 s at 10M).
                Total::exact(f.matches)
            } else {
                counted(client, &c, &spans, exact_counts, budget).await?
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

/// Seqs are fetched one by one up to this share of a block (1 in 4).
const POINTS_PER_BLOCK: usize = (addresses::BLOCK_EVENTS / 4) as usize;

/// Blocks whose postings one statement reads: few for the first (a cursor page is usually
/// full after a handful), doubling up to this many.
const MAX_BLOCKS_PER_READ: usize = 512;

/// Walks the blocks of `spans` (already in the search's order) and yields, for each block
/// holding events from the address range, its [`Part`] and how many candidates it has.
struct Parts<'a> {
    tid: i32,
    range: ([u8; 16], [u8; 16]),
    spans: &'a [Span],
    desc: bool,
    last_block: i64,
    at: usize,
    next: Option<i64>,
    chunk: usize,
    ready: std::collections::VecDeque<(Part, u64)>,
}

impl<'a> Parts<'a> {
    fn new(
        (tid, size): (i32, u64),
        range: ([u8; 16], [u8; 16]),
        spans: &'a [Span],
        desc: bool,
    ) -> Self {
        Parts {
            tid,
            range,
            spans,
            desc,
            last_block: if size == 0 {
                -1
            } else {
                window::block_of(size - 1)
            },
            at: 0,
            next: None,
            chunk: 4,
            ready: Default::default(),
        }
    }

    /// The next block of the walk with its span's bounds, or `None` at the end.
    fn next_block(&mut self) -> Option<(i64, i64, i64)> {
        while let Some(s) = self.spans.get(self.at) {
            let first = window::block_of(s.lo.max(0) as u64);
            let last = window::block_of(s.hi.max(0) as u64).min(self.last_block);
            let block = match self.next {
                Some(b) => b,
                None if self.desc => last,
                None => first,
            };
            if s.hi < 0 || block < first || block > last {
                self.at += 1;
                self.next = None;
                continue;
            }
            self.next = Some(if self.desc { block - 1 } else { block + 1 });
            return Some((block, s.lo, s.hi));
        }
        None
    }

    /// The next candidates, in the walk's order: the seqs of consecutive blocks read by one
    /// statement, up to [`POINTS_PER_STATEMENT`], or a block's range.
    async fn next(&mut self, tx: &Transaction<'_>) -> StoreResult<Option<(Part, u64)>> {
        loop {
            if let Some((part, n)) = self.ready.pop_front() {
                let Part::Points(mut points) = part else {
                    return Ok(Some((part, n)));
                };
                while points.len() < POINTS_PER_STATEMENT
                    && matches!(self.ready.front(), Some((Part::Points(_), _)))
                {
                    if let Some((Part::Points(more), _)) = self.ready.pop_front() {
                        points.extend(more);
                    }
                }
                let n = points.len() as u64;
                return Ok(Some((Part::Points(points), n)));
            }
            let mut blocks = Vec::with_capacity(self.chunk);
            while blocks.len() < self.chunk {
                match self.next_block() {
                    Some(b) => blocks.push(b),
                    None => break,
                }
            }
            if blocks.is_empty() {
                return Ok(None);
            }
            self.chunk = (self.chunk * 2).min(MAX_BLOCKS_PER_READ);
            let ids: Vec<i64> = blocks.iter().map(|b| b.0).collect();
            let found =
                addresses::positions(tx, self.tid, &ids, (&self.range.0, &self.range.1)).await?;
            for (block, lo, hi) in blocks {
                let Some(all) = found.get(&block) else {
                    continue;
                };
                let mut points: Vec<i64> = all
                    .iter()
                    .copied()
                    .filter(|p| (lo..=hi).contains(p))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let n = points.len() as u64;
                let part = if points.len() > POINTS_PER_BLOCK {
                    let b_lo = block << window::BLOCK_BITS;
                    let b_hi = ((block + 1) << window::BLOCK_BITS) - 1;
                    Part::Range(b_lo.max(lo), b_hi.min(hi))
                } else {
                    if self.desc {
                        points.reverse();
                    }
                    Part::Points(points)
                };
                self.ready.push_back((part, n));
            }
        }
    }
}

/// The rows of a part that the compiled filter admits: for seqs, the named events first
/// (a point lookup each, `MATERIALIZED` so the planner cannot start from another index —
/// the full-text one would read every event of a common term), then the filter over them.
/// Returns the statement and its parameters.
fn part_query<'a>(
    c: &'a Compiled,
    part: &'a Part,
    bounds: &'a (i64, i64),
    select: &str,
) -> (String, Vec<&'a (dyn ToSql + Sync)>) {
    let mut refs = c.span_refs(bounds);
    match part {
        Part::Points(points) => {
            refs.push(points);
            (
                format!(
                    "WITH c AS MATERIALIZED (SELECT * FROM events WHERE tenant_id = $1 \
                     AND seq = ANY(${})) SELECT {select} FROM c AS events WHERE {}",
                    refs.len(),
                    c.where_clause
                ),
                refs,
            )
        }
        Part::Range(..) if c.ranged => (
            format!("SELECT {select} FROM events WHERE {}", c.where_clause),
            refs,
        ),
        Part::Range(..) => {
            refs.push(&bounds.0);
            refs.push(&bounds.1);
            (
                format!(
                    "SELECT {select} FROM events WHERE {} AND seq BETWEEN ${} AND ${}",
                    c.where_clause,
                    refs.len() - 1,
                    refs.len()
                ),
                refs,
            )
        }
    }
}

fn part_bounds(part: &Part) -> (i64, i64) {
    match part {
        Part::Points(p) => (*p.iter().min().unwrap_or(&0), *p.iter().max().unwrap_or(&0)),
        Part::Range(lo, hi) => (*lo, *hi),
    }
}

async fn part_events(
    tx: &Transaction<'_>,
    c: &Compiled,
    dir: &str,
    part: &Part,
    limit: u64,
    offset: u64,
) -> StoreResult<Vec<StoredEvent>> {
    let bounds = part_bounds(part);
    let (sql, refs) = part_query(c, part, &bounds, "seq, leaf_hash, body");
    let sql = format!("{sql} ORDER BY seq {dir} LIMIT {limit} OFFSET {offset}");
    let stmt = tx.prepare_cached(&sql).await.map_err(pg_error)?;
    tx.query(&stmt, &refs)
        .await
        .map_err(pg_error)?
        .iter()
        .map(row_event)
        .collect()
}

async fn part_count(
    tx: &Transaction<'_>,
    c: &Compiled,
    part: &Part,
    cap: Option<u64>,
) -> StoreResult<u64> {
    let bounds = part_bounds(part);
    let (sql, refs) = part_query(c, part, &bounds, "1");
    let sql = match cap {
        None => format!("SELECT count(*) FROM ({sql}) s"),
        Some(n) => format!("SELECT count(*) FROM ({sql} LIMIT {n}) s"),
    };
    count_one(tx, &sql, &refs).await
}

/// Runs a `SELECT count(*)` statement (cached).
async fn count_one(
    tx: &Transaction<'_>,
    sql: &str,
    refs: &[&(dyn ToSql + Sync)],
) -> StoreResult<u64> {
    let stmt = tx.prepare_cached(sql).await.map_err(pg_error)?;
    Ok(tx
        .query_one(&stmt, refs)
        .await
        .map_err(pg_error)?
        .get::<_, i64>(0) as u64)
}

/// A search with a narrow `ip=` filter, through the address postings: block by block in the
/// search's order (within the window's or the facets' spans), the events at the seqs the
/// postings name, checked against the rest of the filter.
async fn by_address(
    tx: &Transaction<'_>,
    c: &Compiled,
    q: &EventQuery,
    spans: &[Span],
    tenant: (i32, u64),
    range: ([u8; 16], [u8; 16]),
    budget: Duration,
) -> StoreResult<SearchResult> {
    let desc = q.order == Order::Desc;
    let dir = if desc { "DESC" } else { "ASC" };
    match q.page {
        Pagination::Cursor { limit, .. } => {
            let want = u64::from(limit) + 1;
            let mut events = Vec::new();
            let mut parts = Parts::new(tenant, range, spans, desc);
            while (events.len() as u64) < want {
                let Some((part, _)) = parts.next(tx).await? else {
                    break;
                };
                let need = want - events.len() as u64;
                events.extend(part_events(tx, c, dir, &part, need, 0).await?);
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
            let mut parts = Parts::new(tenant, range, spans, desc);
            while (events.len() as u64) < per_page {
                let Some((part, _)) = parts.next(tx).await? else {
                    break;
                };
                if skip > 0 {
                    let n = part_count(tx, c, &part, Some(skip)).await?;
                    if n < skip {
                        skip -= n;
                        continue;
                    }
                }
                let need = per_page - events.len() as u64;
                events.extend(part_events(tx, c, dir, &part, need, skip).await?);
                skip = 0;
            }
            let total = address_total(tx, c, spans, tenant, range, budget)
                .await?
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

/// The total of a search through the address postings: their offsets when the address is
/// the whole filter; otherwise the candidates checked until `budget` is spent, and the rest
/// estimated from [`ADDRESS_SAMPLES`] of its pieces ([`sample_pieces`]), evenly spaced, at
/// the rate of matches among their candidates.
async fn address_total(
    tx: &Transaction<'_>,
    c: &Compiled,
    spans: &[Span],
    tenant: (i32, u64),
    range: ([u8; 16], [u8; 16]),
    budget: Duration,
) -> StoreResult<Total> {
    let started = std::time::Instant::now();
    let mut parts = Parts::new(tenant, range, spans, false);
    let mut matched = 0u64;
    let mut left: Vec<(Part, u64)> = Vec::new();
    while let Some((part, candidates)) = parts.next(tx).await? {
        if c.address_only {
            matched += candidates;
        } else if left.is_empty() && started.elapsed() < budget {
            matched += part_count(tx, c, &part, None).await?;
        } else {
            left.push((part, candidates));
        }
    }
    let left = sample_pieces(left);
    if left.len() <= ADDRESS_SAMPLES {
        for (part, _) in &left {
            matched += part_count(tx, c, part, None).await?;
        }
        return Ok(Total::exact(matched));
    }
    let unchecked: u64 = left.iter().map(|(_, n)| n).sum();
    let (mut sampled, mut sampled_matches) = (0u64, 0u64);
    for i in 0..ADDRESS_SAMPLES {
        let (part, n) = &left[i * left.len() / ADDRESS_SAMPLES];
        sampled += n;
        sampled_matches += part_count(tx, c, part, None).await?;
    }
    let rest = (sampled_matches as f64 / sampled.max(1) as f64 * unchecked as f64).round() as u64;
    Ok(Total {
        value: matched + rest,
        exact: false,
    })
}

/// The total of a filter no counter answers, within `budget` ([`bitacora_store::total`]):
/// spans wholly inside a bare window from the zone map, the others counted in chunks of
/// seqs, and what the budget leaves estimated from samples.
///
/// With full text, half the budget goes to counting the term's matches from the GIN index
/// first, the rest of the filter checked on them ([`Through::Text`]), in one statement that
/// PostgreSQL stops when its time is up ([`count_within`]): a rare term is counted exactly
/// from its posting list in a few milliseconds, however large the log. A common one cannot
/// be counted that way within any budget (the index has no seq order: any range's count
/// reads the term's every match in the log and visits their rows — seconds at 1M events),
/// so the other half counts and samples by seq range, the stored document checked on each
/// row ([`Through::Rows`]), like every filter without an index of its own.
async fn counted(
    tx: &Transaction<'_>,
    c: &Compiled,
    spans: &[Span],
    exact_counts: bool,
    budget: Duration,
) -> StoreResult<Total> {
    let mut through = Through::Plan;
    let mut budget = budget;
    if c.text.is_some() {
        budget /= 2;
        let lo = spans.iter().map(|s| s.lo).min();
        let hi = spans.iter().map(|s| s.hi.min(c.hi)).max();
        // Spans only ever leave out blocks where nothing can match, so the count over
        // their hull is theirs.
        if let (Some(lo), Some(hi)) = (lo, hi)
            && let Some(n) = count_within(tx, c, (lo, hi), budget).await?
        {
            return Ok(Total::exact(n));
        }
        through = Through::Rows;
    }
    // Spans never reach past the log's last seq (`Compiled::hi`).
    let mut counter = Counter::over_spans(spans, exact_counts, c.hi, budget);
    while let Some(r) = counter.next() {
        counter.counted(count_range(tx, c, r, None, through).await?);
    }
    if !counter.done() {
        for r in counter.samples() {
            counter.sampled(r, count_range(tx, c, r, None, through).await?);
        }
    }
    Ok(counter.finish())
}

/// The full-text matches among seqs `lo..=hi`, counted from the term's posting list
/// ([`Through::Text`]), if that takes less than `limit`; `None` when it did not (a `statement_timeout` set for that statement
/// only, inside a savepoint that is rolled back either way, so the setting and the cancelled
/// statement leave no trace in the search's transaction).
async fn count_within(
    tx: &Transaction<'_>,
    c: &Compiled,
    range: (i64, i64),
    limit: Duration,
) -> StoreResult<Option<u64>> {
    // A zero `statement_timeout` would mean no limit at all.
    let ms = limit.as_millis();
    if ms == 0 {
        return Ok(None);
    }
    tx.batch_execute("SAVEPOINT bounded_count")
        .await
        .map_err(pg_error)?;
    tx.execute(
        "SELECT set_config('statement_timeout', $1, true)",
        &[&ms.to_string()],
    )
    .await
    .map_err(pg_error)?;
    let (sql, refs) = count_statement(c, &range, None, Through::Text);
    let counted = match tx.prepare_cached(&sql).await {
        Ok(stmt) => tx.query_one(&stmt, &refs).await,
        Err(e) => Err(e),
    };
    tx.batch_execute("ROLLBACK TO SAVEPOINT bounded_count; RELEASE SAVEPOINT bounded_count")
        .await
        .map_err(pg_error)?;
    match counted {
        Ok(row) => Ok(Some(row.get::<_, i64>(0) as u64)),
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => Ok(None),
        Err(e) => Err(pg_error(e)),
    }
}

async fn tenant_in(tx: &Transaction<'_>, name: &TenantName) -> StoreResult<Option<(i32, u64)>> {
    let stmt = tx.prepare_cached(TENANT).await.map_err(pg_error)?;
    Ok(tx
        .query_opt(&stmt, &[&name.as_str()])
        .await
        .map_err(pg_error)?
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64)))
}

async fn run_span(
    client: &Transaction<'_>,
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
    let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
    let bounds = (span.lo, span.hi);
    client
        .query(&stmt, &c.span_refs(&bounds))
        .await
        .map_err(pg_error)?
        .iter()
        .map(row_event)
        .collect()
}

/// How [`count_range`] reads a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Through {
    /// Whatever plan PostgreSQL picks for the whole filter.
    Plan,
    /// The term's matches from the GIN index, then the rest of the filter on them (`OFFSET 0`
    /// keeps the planner from also reading another index and intersecting the two: for
    /// `action=…` with a rare term it read the action's 125,000 entries to drop 21 rows to
    /// none). Costs in proportion to the term's matches in the whole log.
    Text,
    /// The range's rows that pass the rest of the filter, in seq order, with the full-text
    /// condition checked on each of them (`OFFSET 0` keeps the planner from pushing it into
    /// a GIN scan of the whole log). Costs in proportion to the range, not to the term.
    Rows,
}

/// The matches among seqs `lo..=hi`, or `min(matches, cap)` with a cap.
async fn count_range(
    tx: &Transaction<'_>,
    c: &Compiled,
    range: (i64, i64),
    cap: Option<u64>,
    through: Through,
) -> StoreResult<u64> {
    let (sql, refs) = count_statement(c, &range, cap, through);
    count_one(tx, &sql, &refs).await
}

/// The statement [`count_range`] runs, and its parameters. Without a window or facets the
/// compiled filter has no seq bounds of its own, so they are added.
fn count_statement<'a>(
    c: &'a Compiled,
    range: &'a (i64, i64),
    cap: Option<u64>,
    through: Through,
) -> (String, Vec<&'a (dyn ToSql + Sync)>) {
    let mut refs = c.span_refs(range);
    let (text, rest) = match (&c.text, through) {
        (Some((text, rest)), Through::Rows | Through::Text) => (Some(text), rest),
        _ => (None, &c.where_clause),
    };
    let mut where_clause = rest.clone();
    if !c.ranged {
        refs.push(&range.0);
        refs.push(&range.1);
        where_clause = format!(
            "{where_clause} AND seq BETWEEN ${} AND ${}",
            refs.len() - 1,
            refs.len()
        );
    }
    let rows = match text {
        None => format!("SELECT 1 FROM events WHERE {where_clause}"),
        // (`$1` is the tenant.)
        Some(text) if through == Through::Text => format!(
            "SELECT 1 FROM (SELECT * FROM events WHERE tenant_id = $1 AND {text} OFFSET 0) r \
             WHERE {where_clause}"
        ),
        Some(text) => format!(
            "SELECT 1 FROM (SELECT fts_doc FROM events WHERE {where_clause} OFFSET 0) r \
             WHERE {text}"
        ),
    };
    let sql = match cap {
        None => format!("SELECT count(*) FROM ({rows}) s"),
        Some(n) => format!("SELECT count(*) FROM ({rows} LIMIT {n}) s"),
    };
    (sql, refs)
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

/// Counts over a window, before they are named and sorted.
#[derive(Default)]
struct Tally {
    total: u64,
    without_actor: u64,
    days: HashMap<String, u64>,
    categories: HashMap<String, u64>,
    severities: [u64; 4],
    outcomes: [u64; 2],
    actors: HashMap<String, u64>,
    ips: HashMap<Vec<u8>, u64>,
}

/// GROUPING(...) tells which set a row belongs to: a set bit means "not grouped by this
/// column". Both statements below put their columns in this order.
const BY_DAY: i32 = 0b100000;
const BY_CATEGORY: i32 = 0b010000;
const BY_SEVERITY: i32 = 0b001000;
const BY_OUTCOME: i32 = 0b000100;
const BY_ACTOR: i32 = 0b000010;
const BY_IP: i32 = 0b000001;

impl Tally {
    /// Adds one row of a `GROUPING SETS` aggregate: (grouping, day, category, severity,
    /// outcome, actor id or "has no actor", ip, count).
    fn add_grouped(&mut self, r: &tokio_postgres::Row, actor_is_flag: bool) {
        let grouping: i32 = r.get(0);
        let count = r.get::<_, i64>(7) as u64;
        match 0b111111 & !grouping {
            BY_DAY => *self.days.entry(r.get(1)).or_default() += count,
            BY_CATEGORY => *self.categories.entry(r.get(2)).or_default() += count,
            BY_SEVERITY => self.severities[r.get::<_, i16>(3).clamp(0, 3) as usize] += count,
            BY_OUTCOME => self.outcomes[r.get::<_, i16>(4).clamp(0, 1) as usize] += count,
            BY_ACTOR if actor_is_flag && r.get::<_, bool>(5) => self.without_actor += count,
            BY_ACTOR if actor_is_flag => {}
            BY_ACTOR => match r.get::<_, Option<String>>(5) {
                Some(id) => *self.actors.entry(id).or_default() += count,
                None => self.without_actor += count,
            },
            BY_IP => {
                if let Some(ip) = r.get::<_, Option<Vec<u8>>>(6) {
                    *self.ips.entry(ip).or_default() += count;
                }
            }
            0 => self.total += count,
            _ => {}
        }
    }
}

/// Every count of a window: the whole UTC days it covers from the day rollups the writer
/// keeps (`rollup.rs`), the whole hours of its two edge days from the hour rollups, the
/// partial hours at its two ends from the events themselves (through the
/// `(tenant_id, occurred_at)` index), so a 90-day dashboard reads the rollup rows of 90
/// days and up to 46 hours, not every event, and every figure equals a scan of the window.
pub async fn stats(
    client: &mut ClientWrapper,
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
    // One snapshot for the rollups and the events at the window's edges, so that an append
    // between two of the statements cannot be counted in one figure and not in another.
    let tx = read_only_snapshot(client).await?;
    let client = &tx;
    let Some((tid, _)) = tenant_in(client, t).await? else {
        return Ok(stats);
    };
    let (Some(since_t), Some(until_t)) = (
        DateTime::<Utc>::from_timestamp_micros(since),
        DateTime::<Utc>::from_timestamp_micros(until),
    ) else {
        return Err(StoreError::Internal("stats window out of range".into()));
    };
    let mut tally = Tally::default();
    if since_t < until_t {
        // Whole days [first, last); the window's ends outside them are its edges.
        let midnight = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let first = if midnight(since_t.date_naive()) == Some(since_t) {
            Some(since_t.date_naive())
        } else {
            since_t.date_naive().succ_opt()
        };
        let last = until_t.date_naive();
        match first.filter(|f| *f <= last) {
            Some(first) => {
                let (Some(first_t), Some(last_t)) = (midnight(first), midnight(last)) else {
                    return Err(StoreError::Internal("stats window out of range".into()));
                };
                if first < last {
                    rollups(client, &mut tally, tid, &rollup::DAYS, (first_t, last_t)).await?;
                }
                edges(
                    client,
                    &mut tally,
                    tid,
                    [(since_t, first_t), (last_t, until_t)],
                )
                .await?;
            }
            // Within one day.
            None => {
                edges(
                    client,
                    &mut tally,
                    tid,
                    [(since_t, until_t), (until_t, until_t)],
                )
                .await?
            }
        }
    }
    stats.total = tally.total;
    stats.without_actor = tally.without_actor;
    stats.per_day = tally
        .days
        .into_iter()
        .map(|(day, count)| DayCount { day, count })
        .collect();
    stats.per_day.sort_by(|a, b| a.day.cmp(&b.day));
    stats.per_category = tally
        .categories
        .into_iter()
        .map(|(key, count)| KeyCount { key, count })
        .collect();
    sort_counts(&mut stats.per_category);
    stats.per_severity = Severity::ALL
        .iter()
        .map(|s| SeverityCount {
            severity: *s,
            count: tally.severities[s.rank() as usize],
        })
        .collect();
    stats.per_outcome = Outcome::ALL
        .iter()
        .map(|o| KeyCount {
            key: o.to_string(),
            count: tally.outcomes[o.rank() as usize],
        })
        .collect();
    let mut actors: Vec<(String, u64)> = tally.actors.into_iter().collect();
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
    let mut per_ip: Vec<KeyCount> = tally
        .ips
        .into_iter()
        .filter_map(|(ip, count)| {
            derive::ip_from_blob(&ip).map(|ip| KeyCount {
                key: ip.to_string(),
                count,
            })
        })
        .collect();
    sort_counts(&mut per_ip);
    per_ip.truncate(top as usize);
    stats.top_ips = per_ip;
    tx.commit().await.map_err(pg_error)?;
    Ok(stats)
}

/// Adds the two edges of a window, each within one UTC day: their whole hours from the hour
/// rollups, the partial hours at their ends from the events.
async fn edges(
    client: &Transaction<'_>,
    tally: &mut Tally,
    tid: i32,
    edges: [(DateTime<Utc>, DateTime<Utc>); 2],
) -> StoreResult<()> {
    let mut partial = [(edges[0].0, edges[0].0); 4];
    for (i, (from, to)) in edges.into_iter().enumerate() {
        if from >= to {
            continue;
        }
        let first = rollup::hour_of(from);
        let first = if first == from {
            first
        } else {
            first + TimeDelta::hours(1)
        };
        let last = rollup::hour_of(to);
        if first < last {
            rollups(client, tally, tid, &rollup::HOURS, (first, last)).await?;
            partial[2 * i] = (from, first);
            partial[2 * i + 1] = (last, to);
        } else {
            partial[2 * i] = (from, to);
        }
    }
    scan(client, tally, tid, partial).await
}

/// Counts the events of up to four time ranges (the partial hours at a window's ends) one by
/// one, in one `GROUPING SETS` aggregate.
async fn scan(
    client: &Transaction<'_>,
    tally: &mut Tally,
    tid: i32,
    ranges: [(DateTime<Utc>, DateTime<Utc>); 4],
) -> StoreResult<()> {
    if ranges.iter().all(|(a, b)| a >= b) {
        return Ok(());
    }
    let stmt = client
        .prepare_cached(
            "SELECT GROUPING(day, category, severity, outcome, actor_id, ip)::int4,
                    to_char(day, 'YYYY-MM-DD'), category, severity, outcome, actor_id, ip,
                    count(*)::int8
             FROM (SELECT date_trunc('day', occurred_at AT TIME ZONE 'UTC') AS day,
                          category, severity, outcome, actor_id, ip
                   FROM events
                   WHERE tenant_id = $1
                     AND ((occurred_at >= $2 AND occurred_at < $3)
                          OR (occurred_at >= $4 AND occurred_at < $5)
                          OR (occurred_at >= $6 AND occurred_at < $7)
                          OR (occurred_at >= $8 AND occurred_at < $9))) w
             GROUP BY GROUPING SETS ((day), (category), (severity), (outcome), (actor_id),
                                     (ip), ())",
        )
        .await
        .map_err(pg_error)?;
    let [(a0, a1), (b0, b1), (c0, c1), (d0, d1)] = ranges;
    for r in client
        .query(&stmt, &[&tid, &a0, &a1, &b0, &b1, &c0, &c1, &d0, &d1])
        .await
        .map_err(pg_error)?
    {
        tally.add_grouped(&r, false);
    }
    Ok(())
}

/// Adds the rollup rows of one grain whose buckets lie in `[from, to)` (bucket starts).
async fn rollups(
    client: &Transaction<'_>,
    tally: &mut Tally,
    tid: i32,
    tables: &rollup::Tables,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> StoreResult<()> {
    let rollup::Tables {
        joint,
        actors,
        ips,
        column: b,
        ..
    } = tables;
    // The bucket's day as text, and the bounds in the bucket column's type.
    let (day, lo, hi) = if *b == "day" {
        (
            "to_char(day, 'YYYY-MM-DD')",
            "($2::timestamptz AT TIME ZONE 'UTC')::date",
            "($3::timestamptz AT TIME ZONE 'UTC')::date",
        )
    } else {
        (
            "to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            "$2::timestamptz",
            "$3::timestamptz",
        )
    };
    // GROUPING() names only grouped columns: `no_actor` stands in the actor's place and the
    // address's bit is always set (the rollup of addresses is its own table).
    let stmt = client
        .prepare_cached(&format!(
            "SELECT (GROUPING(d, category, severity, outcome, no_actor) * 2 + 1)::int4,
                    d, category, severity, outcome, no_actor, NULL::bytea,
                    coalesce(sum(count), 0)::int8
             FROM (SELECT {day} AS d, category, severity, outcome, no_actor, count
                   FROM {joint} WHERE tenant_id = $1 AND {b} >= {lo} AND {b} < {hi}) r
             GROUP BY GROUPING SETS ((d), (category), (severity), (outcome), (no_actor), ())"
        ))
        .await
        .map_err(pg_error)?;
    for r in client
        .query(&stmt, &[&tid, &from, &to])
        .await
        .map_err(pg_error)?
    {
        tally.add_grouped(&r, true);
    }
    let stmt = client
        .prepare_cached(&format!(
            "SELECT actor_id, sum(count)::int8 FROM {actors}
             WHERE tenant_id = $1 AND {b} >= {lo} AND {b} < {hi} GROUP BY actor_id"
        ))
        .await
        .map_err(pg_error)?;
    for r in client
        .query(&stmt, &[&tid, &from, &to])
        .await
        .map_err(pg_error)?
    {
        *tally.actors.entry(r.get(0)).or_default() += r.get::<_, i64>(1) as u64;
    }
    let stmt = client
        .prepare_cached(&format!(
            "SELECT ip, sum(count)::int8 FROM {ips}
             WHERE tenant_id = $1 AND {b} >= {lo} AND {b} < {hi} GROUP BY ip"
        ))
        .await
        .map_err(pg_error)?;
    for r in client
        .query(&stmt, &[&tid, &from, &to])
        .await
        .map_err(pg_error)?
    {
        *tally.ips.entry(r.get(0)).or_default() += r.get::<_, i64>(1) as u64;
    }
    Ok(())
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

/// The plan of the first statement that reads a page of `q` (the newest span for `desc`),
/// for the tests that hold the plans of the window shapes.
#[cfg(test)]
pub(crate) async fn explain_page(
    client: &mut ClientWrapper,
    q: &EventQuery,
) -> StoreResult<String> {
    let tx = snapshot(client, q).await?;
    let client = &tx;
    let (tid, size) = tenant_in(client, &q.tenant)
        .await?
        .ok_or_else(|| StoreError::Internal("no such tenant".into()))?;
    let c = compile(tid, size, q);
    let dir = match q.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let mut spans = match c.window {
        None => vec![(c.lo, c.hi)],
        Some(w) => window::spans(client, tid, w, (c.lo, c.hi), false)
            .await?
            .iter()
            .map(|s| (s.lo, s.hi))
            .collect(),
    };
    if q.order == Order::Desc {
        spans.reverse();
    }
    let span = spans
        .first()
        .copied()
        .ok_or_else(|| StoreError::Internal("the window holds no block".into()))?;
    let sql = format!(
        "EXPLAIN SELECT seq, leaf_hash, body FROM events WHERE {} ORDER BY seq {dir} LIMIT 51",
        c.where_clause
    );
    explain(client, &sql, &c.span_refs(&span)).await
}

/// The plan of the statement that counts `q`'s matches among seqs `range`, from the term's
/// posting list or row by row (`rows`), for the test that holds full-text totals to
/// costs in proportion to the range.
#[cfg(test)]
pub(crate) async fn explain_count(
    client: &mut ClientWrapper,
    q: &EventQuery,
    range: (i64, i64),
    rows: bool,
) -> StoreResult<String> {
    let tx = snapshot(client, q).await?;
    let (tid, size) = tenant_in(&tx, &q.tenant)
        .await?
        .ok_or_else(|| StoreError::Internal("no such tenant".into()))?;
    let c = compile(tid, size, q);
    let through = if rows { Through::Rows } else { Through::Text };
    let (sql, refs) = count_statement(&c, &range, None, through);
    explain(&tx, &format!("EXPLAIN {sql}"), &refs).await
}

/// The lines of an `EXPLAIN` statement's output, joined.
#[cfg(test)]
async fn explain(
    tx: &Transaction<'_>,
    sql: &str,
    refs: &[&(dyn ToSql + Sync)],
) -> StoreResult<String> {
    let rows = tx.query(sql, refs).await.map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}
