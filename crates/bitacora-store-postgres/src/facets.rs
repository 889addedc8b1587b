//! Facets: which combinations of the low-cardinality columns occur where in the log
//! (migration 8). The embedded store's `facets.rs` explains the design; this is the same on
//! PostgreSQL.
//!
//! Filters on `category`, `severity`, `outcome`, `source` (and a prefix of actions) have no
//! index that yields rows in `seq` order, so a page is read through the partitions'
//! `(tenant_id, seq)` index with the filter checked row by row: fast when it matches often,
//! a read of the whole log when it matches little or nothing (`severity=critical&
//! outcome=failure` where they never meet: 0.5–0.8 s at 1M events). The writer keeps, in the
//! append transaction, `facet_counts` (each distinct combination per tenant, with its count)
//! and `event_facets` (the same per zone-map block, keyed by combination first). A search
//! reads the combinations its filter admits: none answers at once; their counts add up to an
//! exact total when nothing else filters; sparse matches are read only in their blocks.
//! Both also keep the [`Sketch`]es of their events' address areas and actor ids (migration
//! 12, `bitacora_store::sketch`), so an `ip=` or `actor_id=` filter drops the combinations
//! and blocks its bits never meet.

use std::collections::{BTreeMap, HashMap};

use bitacora_store::StoreResult;
use bitacora_store::sketch::{COLUMNS, Sketch, Sketches, Wanted, bits};
use bitacora_store::window::{Block, Layout, Span};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use crate::pg_error;
use crate::window::{self, BLOCK_BITS, block_of};

/// One combination of the faceted columns (`source` empty when the event has none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Combo {
    pub action: String,
    pub category: String,
    pub severity: i16,
    pub outcome: i16,
    pub source: String,
}

/// Fewer matches than one event in this many make a filter sparse (see the embedded
/// store's `facets.rs`); tests take the facets' path for anything rarer than one in two.
#[cfg(not(test))]
const DENSE_RATIO: u64 = 64;
#[cfg(test)]
const DENSE_RATIO: u64 = 2;

/// Facet spans beyond this many are coalesced (each is read only until the page is full).
#[cfg(not(test))]
const MAX_SPANS: usize = 1024;
#[cfg(test)]
const MAX_SPANS: usize = 6;

/// The combinations a filter admits in one tenant's log, with their counts.
#[derive(Debug, Clone)]
pub struct Combos {
    pub combos: Vec<(Combo, u64)>,
    /// Events matching the faceted part of the filter, in the whole log (with an `ip=`
    /// filter, at most: the events of the combinations whose sketches meet it).
    pub matches: u64,
    /// The sketch bits the blocks read by [`Combos::spans`] must meet too.
    pub wanted: Wanted,
}

/// The sketch columns of a row, from column `at` ([`COLUMNS`]).
fn sketches_at(r: &tokio_postgres::Row, at: usize) -> Sketches {
    Sketches::from_columns(std::array::from_fn(|i| r.get::<_, i64>(at + i)))
}

impl Combos {
    /// Reads the combinations of tenant `tid` that `where_clause` (over the faceted
    /// columns, with `params`) admits, and whose sketches meet `wanted`.
    pub async fn find(
        tx: &Transaction<'_>,
        where_clause: &str,
        params: &[&(dyn ToSql + Sync)],
        wanted: Wanted,
    ) -> StoreResult<Self> {
        let sql = format!(
            "SELECT action, category, severity, outcome, source, count, {COLUMNS}
             FROM facet_counts WHERE {where_clause}"
        );
        let stmt = tx.prepare_cached(&sql).await.map_err(pg_error)?;
        let rows = tx.query(&stmt, params).await.map_err(pg_error)?;
        let combos: Vec<(Combo, u64)> = rows
            .iter()
            .filter(|r| sketches_at(r, 6).admitted_by(&wanted))
            .map(|r| {
                (
                    Combo {
                        action: r.get(0),
                        category: r.get(1),
                        severity: r.get(2),
                        outcome: r.get(3),
                        source: r.get(4),
                    },
                    r.get::<_, i64>(5).max(0) as u64,
                )
            })
            .collect();
        let matches = combos.iter().map(|(_, n)| n).sum();
        Ok(Self {
            combos,
            matches,
            wanted,
        })
    }

    /// True when the matches are rare enough in a log of `size` events that reading their
    /// blocks beats reading the log.
    pub fn sparse(&self, size: u64) -> bool {
        self.matches.saturating_mul(DENSE_RATIO) < size
    }

    /// The seq spans of tenant `tid`'s seqs `lo..=hi` that hold a match, ascending,
    /// intersected with the zone map's blocks for `window` when there is one; a span's
    /// `count` (when `inside`) is its events matching the faceted filter and the window.
    pub async fn spans(
        &self,
        tx: &Transaction<'_>,
        tid: i32,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
        (lo, hi): (i64, i64),
        split_inside: bool,
    ) -> StoreResult<Vec<Span>> {
        if lo > hi || self.combos.is_empty() || window.is_some_and(|(s, u)| s >= u) {
            return Ok(Vec::new());
        }
        let (mut first, mut last) = (block_of(lo.max(0) as u64), block_of(hi.max(0) as u64));
        // The window's blocks first: the combinations are read over those only (a day of a
        // long log is a few blocks, not all of them).
        let window_blocks = match window {
            Some(w) => {
                let blocks = window::blocks(tx, tid, w, (first, last)).await?;
                let (Some(a), Some(b)) = (blocks.first(), blocks.last()) else {
                    return Ok(Vec::new());
                };
                (first, last) = (a.block, b.block);
                Some(blocks)
            }
            None => None,
        };
        let mut c = Columns::default();
        for (combo, _) in &self.combos {
            c.push(0, combo.as_ref(), 0, 0, Sketches::default());
        }
        // One statement for every combination: each is an index range of the primary key.
        // The LATERAL subquery (kept whole by `OFFSET 0`) pins that plan: with a plain join
        // and no statistics yet (a new tenant, before autovacuum's first ANALYZE) the planner
        // walked every facet row of the blocks once per combination instead (0.13 s for 113
        // combinations over 141 blocks, measured in the conformance suite).
        let stmt = tx
            .prepare_cached(
                "SELECT f.block, sum(f.count)::int8 FROM
                     unnest($2::text[], $3::text[], $4::int2[], $5::int2[], $6::text[])
                         AS c(action, category, severity, outcome, source)
                     CROSS JOIN LATERAL (
                         SELECT f.block, f.count FROM event_facets f
                         WHERE f.tenant_id = $1 AND f.action = c.action
                           AND f.category = c.category AND f.severity = c.severity
                           AND f.outcome = c.outcome AND f.source = c.source
                           AND f.block BETWEEN $7 AND $8
                           AND ($9::int8 IS NULL OR f.areas_0 & $9 <> 0
                                OR f.areas_1 & $10 <> 0 OR f.areas_2 & $11 <> 0
                                OR f.areas_3 & $12 <> 0)
                           AND ($13::int8 IS NULL OR f.actors_0 & $13 <> 0
                                OR f.actors_1 & $14 <> 0 OR f.actors_2 & $15 <> 0
                                OR f.actors_3 & $16 <> 0)
                         OFFSET 0) AS f
                 GROUP BY f.block",
            )
            .await
            .map_err(pg_error)?;
        // NULL: no such filter.
        let words = |s: Option<Sketch>| s.map(|s| s.columns().map(Some)).unwrap_or_default();
        let ([a0, a1, a2, a3], [p0, p1, p2, p3]) =
            (words(self.wanted.areas), words(self.wanted.actors));
        let rows = tx
            .query(
                &stmt,
                &[
                    &tid,
                    &c.action,
                    &c.category,
                    &c.severity,
                    &c.outcome,
                    &c.source,
                    &first,
                    &last,
                    &a0,
                    &a1,
                    &a2,
                    &a3,
                    &p0,
                    &p1,
                    &p2,
                    &p3,
                ],
            )
            .await
            .map_err(pg_error)?;
        let per_block: BTreeMap<i64, u64> = rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1).max(0) as u64))
            .collect();
        let blocks: Vec<Block> = match window_blocks {
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
            bounds: |block: i64| (block << BLOCK_BITS, ((block + 1) << BLOCK_BITS) - 1),
            max_spans: MAX_SPANS,
        };
        Ok(bitacora_store::window::plan(
            blocks,
            &layout,
            window.map_or((i64::MIN, i64::MAX), |(s, u)| {
                (s.timestamp_micros(), u.timestamp_micros())
            }),
            (lo, hi),
            split_inside,
        ))
    }
}

impl Combo {
    fn as_ref(&self) -> FacetRef<'_> {
        FacetRef {
            action: &self.action,
            category: &self.category,
            severity: self.severity,
            outcome: self.outcome,
            source: &self.source,
        }
    }
}

/// Facet rows as the columns of an `unnest` (one array per column).
#[derive(Default)]
struct Columns<'a> {
    tenant: Vec<i32>,
    action: Vec<&'a str>,
    category: Vec<&'a str>,
    severity: Vec<i16>,
    outcome: Vec<i16>,
    source: Vec<&'a str>,
    block: Vec<i64>,
    n: Vec<i64>,
    sketches: [Vec<i64>; 8],
}

impl<'a> Columns<'a> {
    fn push(&mut self, tenant: i32, c: FacetRef<'a>, block: i64, n: i64, sketches: Sketches) {
        self.tenant.push(tenant);
        self.action.push(c.action);
        self.category.push(c.category);
        self.severity.push(c.severity);
        self.outcome.push(c.outcome);
        self.source.push(c.source);
        self.block.push(block);
        self.n.push(n);
        for (column, word) in self.sketches.iter_mut().zip(sketches.columns()) {
            column.push(word);
        }
    }
}

/// Summarizes the sketches of the events of a database written before they were kept
/// (migration 12), in the migration's transaction.
pub async fn backfill_sketches(tx: &tokio_postgres::Transaction<'_>) -> StoreResult<()> {
    tx.batch_execute(&format!(
        "WITH bits AS (
             SELECT tenant_id, action, category, severity, outcome,
                    coalesce(source, '') AS source, seq >> {BLOCK_BITS} AS block,
                    bitacora_area_bit(ip) AS a, bitacora_actor_bit(actor_id) AS p
             FROM events WHERE ip IS NOT NULL OR actor_id IS NOT NULL
         ), derived AS (
             SELECT tenant_id, action, category, severity, outcome, source, block,
                    {words}
             FROM bits GROUP BY 1, 2, 3, 4, 5, 6, 7
         )
         UPDATE event_facets f SET {set}
         FROM derived d
         WHERE f.tenant_id = d.tenant_id AND f.action = d.action AND f.category = d.category
           AND f.severity = d.severity AND f.outcome = d.outcome AND f.source = d.source
           AND f.block = d.block;

         UPDATE facet_counts f SET {set}
         FROM (SELECT tenant_id, action, category, severity, outcome, source,
                      bit_or(areas_0) AS a0, bit_or(areas_1) AS a1, bit_or(areas_2) AS a2,
                      bit_or(areas_3) AS a3, bit_or(actors_0) AS p0, bit_or(actors_1) AS p1,
                      bit_or(actors_2) AS p2, bit_or(actors_3) AS p3
               FROM event_facets GROUP BY 1, 2, 3, 4, 5, 6) d
         WHERE f.tenant_id = d.tenant_id AND f.action = d.action AND f.category = d.category
           AND f.severity = d.severity AND f.outcome = d.outcome AND f.source = d.source;",
        words = DERIVED_WORDS,
        set = "areas_0 = d.a0, areas_1 = d.a1, areas_2 = d.a2, areas_3 = d.a3,
               actors_0 = d.p0, actors_1 = d.p1, actors_2 = d.p2, actors_3 = d.p3",
    ))
    .await
    .map_err(pg_error)
}

/// The eight sketch words of a group of rows with an area bit `a` and an actor bit `p`
/// (NULL when the event has no address or actor), as `a0`-`a3` and `p0`-`p3`: shared by the
/// backfill and `verify`.
pub const DERIVED_WORDS: &str = "
    coalesce(bit_or(bitacora_sketch_word(a, 0)), 0) AS a0,
    coalesce(bit_or(bitacora_sketch_word(a, 1)), 0) AS a1,
    coalesce(bit_or(bitacora_sketch_word(a, 2)), 0) AS a2,
    coalesce(bit_or(bitacora_sketch_word(a, 3)), 0) AS a3,
    coalesce(bit_or(bitacora_sketch_word(p, 0)), 0) AS p0,
    coalesce(bit_or(bitacora_sketch_word(p, 1)), 0) AS p1,
    coalesce(bit_or(bitacora_sketch_word(p, 2)), 0) AS p2,
    coalesce(bit_or(bitacora_sketch_word(p, 3)), 0) AS p3";

/// What one group commit adds to the facets (a purge subtracts its own), with the sketches
/// of the added events (a purge adds none: bits are never cleared).
#[derive(Default)]
pub struct Deltas<'a> {
    blocks: HashMap<(i32, FacetRef<'a>, i64), (i64, Sketches)>,
}

/// A combination borrowed from the events of a commit.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FacetRef<'a> {
    pub action: &'a str,
    pub category: &'a str,
    pub severity: i16,
    pub outcome: i16,
    pub source: &'a str,
}

impl<'a> Deltas<'a> {
    /// Counts `n` events (negative for a purge's) of `combo` at `seq`, from `ip` and by
    /// `actor_id` (both `None` for a purge's).
    pub fn add(
        &mut self,
        tid: i32,
        combo: FacetRef<'a>,
        seq: u64,
        n: i64,
        (ip, actor_id): (Option<&[u8]>, Option<&str>),
    ) {
        let (count, sketches) = self.blocks.entry((tid, combo, block_of(seq))).or_default();
        *count += n;
        sketches.set(bits(
            ip.and_then(|ip| <&[u8; 16]>::try_from(ip).ok()),
            actor_id,
        ));
    }

    /// Applies the deltas: one statement per table, and rows brought to zero deleted.
    pub async fn write(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        let mut c = Columns::default();
        for ((tid, combo, block), (n, sketches)) in &self.blocks {
            c.push(*tid, *combo, *block, *n, *sketches);
        }
        let [a0, a1, a2, a3, p0, p1, p2, p3] = &c.sketches;
        let params: [&(dyn ToSql + Sync); 16] = [
            &c.tenant,
            &c.action,
            &c.category,
            &c.severity,
            &c.outcome,
            &c.source,
            &c.block,
            &c.n,
            a0,
            a1,
            a2,
            a3,
            p0,
            p1,
            p2,
            p3,
        ];
        // OR-ed in by the upserts: no read before the write.
        let or_in =
            "areas_0 = f.areas_0 | excluded.areas_0, areas_1 = f.areas_1 | excluded.areas_1,
             areas_2 = f.areas_2 | excluded.areas_2, areas_3 = f.areas_3 | excluded.areas_3,
             actors_0 = f.actors_0 | excluded.actors_0, actors_1 = f.actors_1 | excluded.actors_1,
             actors_2 = f.actors_2 | excluded.actors_2, actors_3 = f.actors_3 | excluded.actors_3";
        tx.execute(
            &format!(
                "INSERT INTO event_facets AS f
                     (tenant_id, action, category, severity, outcome, source, block, count,
                      {COLUMNS})
                 SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::int2[],
                                      $5::int2[], $6::text[], $7::int8[], $8::int8[],
                                      $9::int8[], $10::int8[], $11::int8[], $12::int8[],
                                      $13::int8[], $14::int8[], $15::int8[], $16::int8[])
                 ON CONFLICT (tenant_id, action, category, severity, outcome, source, block)
                 DO UPDATE SET count = f.count + excluded.count, {or_in}"
            ),
            &params,
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            &format!(
                "INSERT INTO facet_counts AS f
                     (tenant_id, action, category, severity, outcome, source, count,
                      {COLUMNS})
                 SELECT t, a, c, s, o, src, sum(n), bit_or(a0), bit_or(a1), bit_or(a2),
                        bit_or(a3), bit_or(p0), bit_or(p1), bit_or(p2), bit_or(p3)
                 FROM unnest($1::int4[], $2::text[], $3::text[], $4::int2[], $5::int2[],
                             $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                             $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[],
                             $16::int8[])
                      AS u(t, a, c, s, o, src, b, n, a0, a1, a2, a3, p0, p1, p2, p3)
                 GROUP BY 1, 2, 3, 4, 5, 6
                 ON CONFLICT (tenant_id, action, category, severity, outcome, source)
                 DO UPDATE SET count = f.count + excluded.count, {or_in}"
            ),
            &params,
        )
        .await
        .map_err(pg_error)?;
        if c.n.iter().any(|n| *n < 0) {
            tx.execute(
                "DELETE FROM event_facets f
                 USING unnest($1::int4[], $2::text[], $3::text[], $4::int2[], $5::int2[],
                              $6::text[], $7::int8[], $8::int8[]) AS d(t, a, c, s, o, src, b, n)
                 WHERE f.tenant_id = d.t AND f.action = d.a AND f.category = d.c
                   AND f.severity = d.s AND f.outcome = d.o AND f.source = d.src
                   AND f.block = d.b AND f.count <= 0",
                &params[..8],
            )
            .await
            .map_err(pg_error)?;
            tx.execute(
                "DELETE FROM facet_counts f
                 USING unnest($1::int4[], $2::text[], $3::text[], $4::int2[], $5::int2[],
                              $6::text[], $7::int8[], $8::int8[]) AS d(t, a, c, s, o, src, b, n)
                 WHERE f.tenant_id = d.t AND f.action = d.a AND f.category = d.c
                   AND f.severity = d.s AND f.outcome = d.o AND f.source = d.src
                   AND f.count <= 0",
                &params[..8],
            )
            .await
            .map_err(pg_error)?;
        }
        Ok(())
    }
}
