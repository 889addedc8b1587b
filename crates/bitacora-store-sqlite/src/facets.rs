//! Facets: which combinations of the low-cardinality columns occur where in the log.
//!
//! Filters on `action`, `category`, `severity`, `outcome` and `source` have no index of their
//! own (one action has; a prefix, a category or a severity would need one per column and
//! would still read every match of a dense value). They are checked row by row while the log
//! is read in `seq` order, which is fast when they match often and ruinous when they match
//! little: `severity=critical&outcome=failure` on a log where the two never meet read all of
//! it to return nothing (0.7-1.9 s at 1M events). So the writer keeps, in the append
//! transaction:
//! - `facet_counts`: per tenant, every distinct combination (action, category, severity,
//!   outcome, source) with its count — tens to hundreds of rows;
//! - `event_facets`: the same per block of the zone map ([`window::BLOCK_BITS`]), keyed by
//!   combination first, so the blocks holding one combination are one ordered range.
//!
//! A search reads the combinations its filter admits ([`Combos::find`]): none answers empty at
//! once; the sum of their counts is an exact total when nothing else filters; and when the
//! matches are sparse ([`Combos::sparse`]) it reads the blocks holding them and scans only
//! those, as [`Span`]s planned by the zone map's planner. A dense filter reads the log as
//! before: its first page is near the head anyway, and reading every combination's blocks
//! would cost more than the page.
//!
//! Both tables also keep two sketches of their events: the client addresses' areas and
//! the actor ids (four integer columns each, OR-ed in by the append's upsert; see
//! `bitacora_store::sketch`). With an `ip=` or `actor_id=` filter, the combinations and blocks
//! whose bits miss the filter's are dropped too, so an address or actor that never meets the
//! rest of the filter (or never occurs at all) answers without reading its events.

use std::collections::{BTreeMap, HashMap};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Transaction, params, params_from_iter};

use crate::derive::{SEQ_BITS, SEQ_MASK};
use crate::sql_error;
use crate::window::{self, BLOCK_BITS, block_of};
use bitacora_store::StoreResult;
use bitacora_store::sketch::{COLUMNS, Sketches, Wanted, bits};
use bitacora_store::window::{Block, Layout, Span};

/// One combination of the faceted columns (`source` 0 when the event has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Combo {
    pub action: i64,
    pub category: i64,
    pub severity: i64,
    pub outcome: i64,
    pub source: i64,
}

impl Combo {
    /// The combination in columns `at..at + 5` of a row (action, category, severity,
    /// outcome, source).
    fn at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Combo> {
        Ok(Combo {
            action: r.get(at)?,
            category: r.get(at + 1)?,
            severity: r.get(at + 2)?,
            outcome: r.get(at + 3)?,
            source: r.get(at + 4)?,
        })
    }
}

/// A filter is sparse when fewer than one event in this many matches it: a page of 50 read in
/// `seq` order then costs about 3,000 rows at most, while reading the blocks of the
/// combinations costs at most one row per match and block. Tests (the conformance suite's
/// random searches among them) take the facets' path for any filter rarer than one in two.
#[cfg(not(test))]
const DENSE_RATIO: u64 = 64;
#[cfg(test)]
const DENSE_RATIO: u64 = 2;

/// Facet spans beyond this many are coalesced. Much more than the zone map's limit: sparse
/// matches scatter, each span is read only until the page is full, and a coalesced span
/// reads its gaps again.
#[cfg(not(test))]
const MAX_SPANS: usize = 1024;
#[cfg(test)]
const MAX_SPANS: usize = 6;

/// What a search asks of the faceted columns; an empty list admits every value.
#[derive(Debug, Default, Clone)]
pub struct FacetFilter {
    pub actions: Vec<i64>,
    pub categories: Vec<i64>,
    pub severities: Vec<i64>,
    pub outcome: Option<i64>,
    pub source: Option<i64>,
    /// The sketch bits of its `ip=` and `actor_id=`, when it has them.
    pub wanted: Wanted,
}

impl FacetFilter {
    /// True when the filter narrows nothing.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
            && self.categories.is_empty()
            && self.severities.is_empty()
            && self.outcome.is_none()
            && self.source.is_none()
            && self.wanted.is_none()
    }
}

/// The sketch columns of a row, from column `at` ([`COLUMNS`]).
fn sketches_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Sketches> {
    let mut c = [0i64; 8];
    for (i, v) in c.iter_mut().enumerate() {
        *v = r.get(at + i)?;
    }
    Ok(Sketches::from_columns(c))
}

/// The combinations a filter admits in one tenant's log, with their counts.
#[derive(Debug, Clone)]
pub struct Combos {
    pub combos: Vec<(Combo, u64)>,
    /// Events matching the faceted part of the filter, in the whole log (with an `ip=` or
    /// `actor_id=` filter, at most: the events of the combinations whose sketches meet it).
    pub matches: u64,
    /// The sketch bits the blocks read by [`Combos::spans`] must meet too.
    pub wanted: Wanted,
}

impl Combos {
    /// Reads the combinations of tenant `tid` that `f` admits.
    pub fn find(conn: &Connection, tid: i64, f: &FacetFilter) -> StoreResult<Self> {
        let mut sql = format!(
            "SELECT action, category, severity, outcome, source, count, {COLUMNS}
             FROM facet_counts WHERE tenant_id = ?",
        );
        let mut args: Vec<SqlValue> = vec![tid.into()];
        let mut narrow = |column: &str, ids: &[i64]| {
            match ids.len() {
                0 => return,
                1 => sql.push_str(&format!(" AND {column} = ?")),
                n => sql.push_str(&format!(" AND {column} IN ({})", vec!["?"; n].join(","))),
            }
            args.extend(ids.iter().map(|&i| SqlValue::from(i)));
        };
        narrow("action", &f.actions);
        narrow("category", &f.categories);
        narrow("severity", &f.severities);
        narrow("outcome", f.outcome.as_slice());
        narrow("source", f.source.as_slice());
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
        let mut combos = Vec::new();
        let mut rows = stmt.query(params_from_iter(args)).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            if !sketches_at(r, 6).map_err(sql_error)?.admitted_by(&f.wanted) {
                continue;
            }
            combos.push((
                Combo::at(r, 0).map_err(sql_error)?,
                r.get::<_, i64>(5).map_err(sql_error)?.max(0) as u64,
            ));
        }
        let matches = combos.iter().map(|(_, n)| n).sum();
        Ok(Self {
            combos,
            matches,
            wanted: f.wanted,
        })
    }

    /// The actions among the admitted combinations, ascending.
    pub fn actions(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.combos.iter().map(|(c, _)| c.action).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// True when the matches are rare enough in a log of `size` events that reading their
    /// blocks beats reading the log.
    pub fn sparse(&self, size: u64) -> bool {
        self.matches.saturating_mul(DENSE_RATIO) < size
    }

    /// The spans of tenant `tid`'s positions `lo..=hi` that hold a match, in ascending order,
    /// intersected with the zone map's blocks for `window` when there is one. A span's
    /// `count` (when `inside`) is the number of its events matching the faceted filter and
    /// the window: the search's total when nothing else filters.
    pub fn spans(
        &self,
        conn: &Connection,
        tid: i64,
        window: Option<(i64, i64)>,
        lo: i64,
        hi: i64,
        split_inside: bool,
    ) -> StoreResult<Vec<Span>> {
        if lo > hi || self.combos.is_empty() || window.is_some_and(|(s, u)| s >= u) {
            return Ok(Vec::new());
        }
        let (mut first, mut last) = (
            block_of((lo & SEQ_MASK) as u64),
            block_of((hi & SEQ_MASK) as u64),
        );
        // The window's blocks first: the combinations are read over those only (a day of a
        // long log is a few blocks, not all of them).
        let window_blocks = match window {
            Some((since, until)) => {
                let blocks = window::blocks(conn, tid, since, until, first, last)?;
                let (Some(a), Some(b)) = (blocks.first(), blocks.last()) else {
                    return Ok(Vec::new());
                };
                (first, last) = (a.block, b.block);
                Some(blocks)
            }
            None => None,
        };
        let mut per_block: BTreeMap<i64, u64> = BTreeMap::new();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT block, count, {COLUMNS} FROM event_facets
                 WHERE tenant_id = ?1 AND action = ?2 AND category = ?3 AND severity = ?4
                   AND outcome = ?5 AND source = ?6 AND block BETWEEN ?7 AND ?8",
            ))
            .map_err(sql_error)?;
        for (c, _) in &self.combos {
            let mut rows = stmt
                .query(params![
                    tid, c.action, c.category, c.severity, c.outcome, c.source, first, last
                ])
                .map_err(sql_error)?;
            while let Some(r) = rows.next().map_err(sql_error)? {
                if !sketches_at(r, 2)
                    .map_err(sql_error)?
                    .admitted_by(&self.wanted)
                {
                    continue;
                }
                *per_block.entry(r.get(0).map_err(sql_error)?).or_default() +=
                    r.get::<_, i64>(1).map_err(sql_error)?.max(0) as u64;
            }
        }
        let blocks: Vec<Block> = match window_blocks {
            // Blocks without a window are wholly "inside" an unbounded one.
            None => per_block
                .into_iter()
                .map(|(block, count)| Block {
                    block,
                    min_at: 0,
                    max_at: 0,
                    count,
                })
                .collect(),
            Some(blocks) => blocks
                .into_iter()
                .filter_map(|b| per_block.get(&b.block).map(|&count| Block { count, ..b }))
                .collect(),
        };
        let layout = Layout {
            bounds: |block: i64| window::block_bounds(tid, block),
            max_spans: MAX_SPANS,
        };
        Ok(bitacora_store::window::plan(
            blocks,
            &layout,
            window.unwrap_or((i64::MIN, i64::MAX)),
            (lo, hi),
            split_inside,
        ))
    }
}

/// What one group commit (or one purge, negated) adds to the facets: counts, and the
/// sketches of the added events (a purge adds none: bits are never cleared).
#[derive(Default)]
pub struct Deltas {
    blocks: HashMap<(i64, Combo, i64), (i64, Sketches)>,
    totals: HashMap<(i64, Combo), (i64, Sketches)>,
}

impl Deltas {
    /// Counts `n` events (negative for a purge's) of `combo` at `seq`, from `ip` and by
    /// `actor_id` (both `None` for a purge's).
    pub fn add(
        &mut self,
        tid: i64,
        combo: Combo,
        seq: u64,
        n: i64,
        (ip, actor_id): (Option<&[u8; 16]>, Option<&str>),
    ) {
        let bits = bits(ip, actor_id);
        for (count, sketches) in [
            self.blocks.entry((tid, combo, block_of(seq))).or_default(),
            self.totals.entry((tid, combo)).or_default(),
        ] {
            *count += n;
            sketches.set(bits);
        }
    }

    /// Applies the deltas in `tx`; rows whose count falls to zero are deleted.
    pub fn write(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        // OR-ed in by the upsert: no read before the write.
        let or_in = "areas_0 = areas_0 | excluded.areas_0, areas_1 = areas_1 | excluded.areas_1,
             areas_2 = areas_2 | excluded.areas_2, areas_3 = areas_3 | excluded.areas_3,
             actors_0 = actors_0 | excluded.actors_0, actors_1 = actors_1 | excluded.actors_1,
             actors_2 = actors_2 | excluded.actors_2, actors_3 = actors_3 | excluded.actors_3";
        let mut block = tx
            .prepare_cached(&format!(
                "INSERT INTO event_facets
                    (tenant_id, action, category, severity, outcome, source, block, count,
                     {COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT DO UPDATE SET count = count + excluded.count, {or_in}"
            ))
            .map_err(sql_error)?;
        let mut total = tx
            .prepare_cached(&format!(
                "INSERT INTO facet_counts
                    (tenant_id, action, category, severity, outcome, source, count,
                     {COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT DO UPDATE SET count = count + excluded.count, {or_in}"
            ))
            .map_err(sql_error)?;
        let mut any_negative = false;
        for ((tid, c, b), (n, sketches)) in &self.blocks {
            any_negative |= *n < 0;
            let [a0, a1, a2, a3, p0, p1, p2, p3] = sketches.columns();
            block
                .execute(params![
                    tid, c.action, c.category, c.severity, c.outcome, c.source, b, n, a0, a1, a2,
                    a3, p0, p1, p2, p3
                ])
                .map_err(sql_error)?;
        }
        for ((tid, c), (n, sketches)) in &self.totals {
            let [a0, a1, a2, a3, p0, p1, p2, p3] = sketches.columns();
            total
                .execute(params![
                    tid, c.action, c.category, c.severity, c.outcome, c.source, n, a0, a1, a2, a3,
                    p0, p1, p2, p3
                ])
                .map_err(sql_error)?;
        }
        if any_negative {
            let mut gone_block = tx
                .prepare_cached(
                    "DELETE FROM event_facets WHERE tenant_id = ?1 AND action = ?2
                       AND category = ?3 AND severity = ?4 AND outcome = ?5 AND source = ?6
                       AND block = ?7 AND count <= 0",
                )
                .map_err(sql_error)?;
            for (tid, c, b) in self.blocks.keys() {
                gone_block
                    .execute(params![
                        tid, c.action, c.category, c.severity, c.outcome, c.source, b
                    ])
                    .map_err(sql_error)?;
            }
            let mut gone_total = tx
                .prepare_cached(
                    "DELETE FROM facet_counts WHERE tenant_id = ?1 AND action = ?2
                       AND category = ?3 AND severity = ?4 AND outcome = ?5 AND source = ?6
                       AND count <= 0",
                )
                .map_err(sql_error)?;
            for (tid, c) in self.totals.keys() {
                gone_total
                    .execute(params![
                        tid, c.action, c.category, c.severity, c.outcome, c.source
                    ])
                    .map_err(sql_error)?;
            }
        }
        Ok(())
    }
}

/// Builds the facets of a store written before they existed (migration 10).
pub fn backfill(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO event_facets
            (tenant_id, action, category, severity, outcome, source, block, count)
         SELECT pos >> ?1, action, category, severity, outcome, coalesce(source, 0),
                (pos & ?2) >> ?3, count(*)
         FROM events GROUP BY 1, 2, 3, 4, 5, 6, 7",
        params![SEQ_BITS, SEQ_MASK, BLOCK_BITS],
    )
    .map_err(sql_error)?;
    tx.execute(
        "INSERT INTO facet_counts (tenant_id, action, category, severity, outcome, source, count)
         SELECT tenant_id, action, category, severity, outcome, source, sum(count)
         FROM event_facets GROUP BY 1, 2, 3, 4, 5, 6",
        [],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// The sketches of the events at positions `lo..=hi`, per (tenant, combination, block) and
/// per (tenant, combination), derived from the events.
type Derived = (
    HashMap<(i64, Combo, i64), Sketches>,
    HashMap<(i64, Combo), Sketches>,
);

fn derived_sketches(conn: &Connection, lo: i64, hi: i64) -> StoreResult<Derived> {
    let (mut blocks, mut totals) = (HashMap::new(), HashMap::new());
    let mut stmt = conn
        .prepare(
            "SELECT pos, action, category, severity, outcome, coalesce(source, 0), ip, actor_id
             FROM events WHERE pos BETWEEN ?1 AND ?2
               AND (ip IS NOT NULL OR actor_id IS NOT NULL)",
        )
        .map_err(sql_error)?;
    let mut rows = stmt.query([lo, hi]).map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let stored = r.get_ref(6).map_err(sql_error)?;
        let ip = stored
            .as_blob()
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok());
        let actor_id: Option<String> = r.get(7).map_err(sql_error)?;
        let p: i64 = r.get(0).map_err(sql_error)?;
        let combo = Combo::at(r, 1).map_err(sql_error)?;
        let (tid, seq) = (p >> SEQ_BITS, (p & SEQ_MASK) as u64);
        let bits = bits(ip.as_ref(), actor_id.as_deref());
        for sketches in [
            blocks
                .entry((tid, combo, block_of(seq)))
                .or_insert_with(Sketches::default),
            totals.entry((tid, combo)).or_insert_with(Sketches::default),
        ] {
            sketches.set(bits);
        }
    }
    Ok((blocks, totals))
}

/// Summarizes the sketches of the events of a store written before they were kept
/// (migration 16).
pub fn backfill_sketches(tx: &Transaction<'_>) -> StoreResult<()> {
    let (blocks, totals) = derived_sketches(tx, i64::MIN, i64::MAX)?;
    const SET: &str = "areas_0 = ?1, areas_1 = ?2, areas_2 = ?3, areas_3 = ?4, actors_0 = ?5,
                       actors_1 = ?6, actors_2 = ?7, actors_3 = ?8";
    const COMBO: &str = "tenant_id = ?9 AND action = ?10 AND category = ?11 AND severity = ?12
                         AND outcome = ?13 AND source = ?14";
    let mut block = tx
        .prepare(&format!(
            "UPDATE event_facets SET {SET} WHERE {COMBO} AND block = ?15"
        ))
        .map_err(sql_error)?;
    for ((tid, c, b), sketches) in blocks {
        let [a0, a1, a2, a3, p0, p1, p2, p3] = sketches.columns();
        block
            .execute(params![
                a0, a1, a2, a3, p0, p1, p2, p3, tid, c.action, c.category, c.severity, c.outcome,
                c.source, b
            ])
            .map_err(sql_error)?;
    }
    let mut total = tx
        .prepare(&format!("UPDATE facet_counts SET {SET} WHERE {COMBO}"))
        .map_err(sql_error)?;
    for ((tid, c), sketches) in totals {
        let [a0, a1, a2, a3, p0, p1, p2, p3] = sketches.columns();
        total
            .execute(params![
                a0, a1, a2, a3, p0, p1, p2, p3, tid, c.action, c.category, c.severity, c.outcome,
                c.source
            ])
            .map_err(sql_error)?;
    }
    Ok(())
}

/// The first facet row of tenant `tid` (positions `lo..=hi`) whose sketches miss a bit of
/// its events: `(table, key)`. Extra bits are allowed (purges leave theirs); a missing one
/// would make an `ip=` or `actor_id=` search skip events that are there. Run after the counts
/// are checked, so every derived row exists.
pub fn check_sketches(
    conn: &Connection,
    tid: i64,
    lo: i64,
    hi: i64,
) -> StoreResult<Option<(&'static str, String)>> {
    let (blocks, totals) = derived_sketches(conn, lo, hi)?;
    let key = |c: &Combo| {
        format!(
            "action/category/severity/outcome/source {}/{}/{}/{}/{}",
            c.action, c.category, c.severity, c.outcome, c.source
        )
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT action, category, severity, outcome, source, block, {COLUMNS}
             FROM event_facets WHERE tenant_id = ?1
             UNION ALL
             SELECT action, category, severity, outcome, source, NULL, {COLUMNS}
             FROM facet_counts WHERE tenant_id = ?1"
        ))
        .map_err(sql_error)?;
    let mut stored_blocks = HashMap::new();
    let mut stored_totals = HashMap::new();
    let mut rows = stmt.query([tid]).map_err(sql_error)?;
    while let Some(r) = rows.next().map_err(sql_error)? {
        let c = Combo::at(r, 0).map_err(sql_error)?;
        let sketches = sketches_at(r, 6).map_err(sql_error)?;
        match r.get::<_, Option<i64>>(5).map_err(sql_error)? {
            Some(block) => stored_blocks.insert((tid, c, block), sketches),
            None => stored_totals.insert((tid, c), sketches),
        };
    }
    let mut missing: Vec<(&'static str, String)> = blocks
        .iter()
        .filter(|(k, d)| {
            !stored_blocks
                .get(*k)
                .is_some_and(|s: &Sketches| s.contains(d))
        })
        .map(|((_, c, b), _)| ("event_facets", format!("{} block {b}", key(c))))
        .chain(
            totals
                .iter()
                .filter(|(k, d)| {
                    !stored_totals
                        .get(*k)
                        .is_some_and(|s: &Sketches| s.contains(d))
                })
                .map(|((_, c), _)| ("facet_counts", key(c))),
        )
        .collect();
    missing.sort();
    Ok(missing.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitacora_store::sketch::{actors, areas};

    #[test]
    fn sparse_means_rarer_than_the_dense_ratio() {
        let c = |matches| Combos {
            combos: Vec::new(),
            matches,
            wanted: Wanted::default(),
        };
        let size = 1000 * DENSE_RATIO;
        assert!(c(0).sparse(1));
        assert!(c(999).sparse(size));
        assert!(!c(1000).sparse(size));
        assert!(!c(1).sparse(0));
    }

    #[test]
    fn deltas_add_up_per_block_and_per_log() {
        let combo = Combo {
            action: 1,
            category: 2,
            severity: 3,
            outcome: 0,
            source: 0,
        };
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let mut d = Deltas::default();
        d.add(1, combo, 0, 1, (Some(&a), Some("u1")));
        d.add(1, combo, 1, 1, (None, None));
        d.add(1, combo, 1 << BLOCK_BITS, 1, (Some(&b), None));
        let first = Sketches {
            areas: areas::of(&a),
            actors: actors::of("u1"),
        };
        assert_eq!(d.blocks[&(1, combo, 0)], (2, first));
        assert_eq!(d.blocks[&(1, combo, 1)].1.areas, areas::of(&b));
        assert_eq!(
            d.totals[&(1, combo)],
            (
                3,
                Sketches {
                    areas: first.areas.union(areas::of(&b)),
                    actors: first.actors,
                }
            )
        );
    }
}
