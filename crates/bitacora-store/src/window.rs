//! Time windows over a log clustered by `seq`: planning which parts of a log to read.
//!
//! `since`/`until` filter on `occurred_at`, the client's clock, while each store keeps a
//! tenant's log in `seq` order, the order of arrival. The two orders almost agree, so every
//! store keeps a zone map: for each block of consecutive seqs, the earliest and latest
//! `occurred_at` in it and its event count, widened in the append transaction. A windowed
//! search reads the tenant's block rows, keeps those that overlap the window and turns them
//! into [`Span`]s of positions to scan, newest first for `desc`, until the page is full.
//!
//! Only the planning is here, shared by both stores; reading the block rows and scanning a
//! span are SQL, so they stay in the store crates. Correctness never depends on the
//! near-ordering: the window's own condition stays in every statement, and a block's bounds
//! always cover all of its events, so an event imported with an `occurred_at` far from its
//! neighbours' only makes its block overlap more windows.

/// One zone-map row: a block of the log and the `occurred_at` bounds of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The block's number (`seq >> block_bits`).
    pub block: i64,
    /// Earliest and latest `occurred_at` in the block, microseconds since the epoch.
    pub min_at: i64,
    pub max_at: i64,
    /// Events in the block.
    pub count: u64,
}

/// A run of consecutive blocks to scan, as an inclusive range of the store's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub lo: i64,
    pub hi: i64,
    /// Every event of the span is inside the window and the span is whole blocks, so
    /// `count` is the number of its events that match the window.
    pub inside: bool,
    pub count: u64,
}

/// What a store tells [`plan`] about its positions.
pub struct Layout<F: Fn(i64) -> (i64, i64)> {
    /// The inclusive position range of a block.
    pub bounds: F,
    /// Spans beyond this many are merged across their smallest gaps: each span is one
    /// statement, and a log whose times are scattered (much imported history) would
    /// otherwise produce thousands of tiny ones.
    pub max_spans: usize,
}

/// The spans of positions `lo..=hi` that can hold events with `since <= occurred_at < until`,
/// in ascending order, from the zone-map rows that overlap the window (`blocks`, ascending
/// by block). With `split_inside`, spans wholly inside the window are kept apart from the
/// others so that their counts can be used as totals.
pub fn plan<F: Fn(i64) -> (i64, i64)>(
    blocks: impl IntoIterator<Item = Block>,
    layout: &Layout<F>,
    (since, until): (i64, i64),
    (lo, hi): (i64, i64),
    split_inside: bool,
) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut prev_block = i64::MIN;
    for b in blocks {
        if b.max_at < since || b.min_at >= until {
            continue;
        }
        let (b_lo, b_hi) = (layout.bounds)(b.block);
        let (s_lo, s_hi) = (b_lo.max(lo), b_hi.min(hi));
        if s_lo > s_hi {
            continue;
        }
        // A block cut by the cursor no longer holds `count` of its events.
        let inside = b.min_at >= since && b.max_at < until && s_lo == b_lo && s_hi == b_hi;
        let span = Span {
            lo: s_lo,
            hi: s_hi,
            inside,
            count: if inside { b.count } else { 0 },
        };
        match out.last_mut() {
            Some(last)
                if b.block == prev_block.saturating_add(1)
                    && (!split_inside || last.inside == inside) =>
            {
                last.hi = span.hi;
                last.inside &= inside;
                last.count += span.count;
            }
            _ => out.push(span),
        }
        prev_block = b.block;
    }
    coalesce(out, layout.max_spans)
}

/// Merges spans across their smallest gaps until at most `max` remain. A merged span scans
/// the blocks in its gaps too (the window's condition still excludes their events), so it is
/// no longer `inside`.
pub fn coalesce(spans: Vec<Span>, max: usize) -> Vec<Span> {
    let max = max.max(1);
    if spans.len() <= max {
        return spans;
    }
    let mut gaps: Vec<(i64, usize)> = spans
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1].lo - w[0].hi, i))
        .collect();
    gaps.sort_unstable();
    let mut merge_after = vec![false; spans.len()];
    for (_, i) in gaps.iter().take(spans.len() - max) {
        merge_after[*i] = true;
    }
    let mut out: Vec<Span> = Vec::with_capacity(max);
    let mut join = false;
    for (i, s) in spans.into_iter().enumerate() {
        match out.last_mut() {
            Some(last) if join => {
                last.hi = s.hi;
                last.inside = false;
                last.count = 0;
            }
            _ => out.push(s),
        }
        join = merge_after[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(lo: i64, hi: i64) -> Span {
        Span {
            lo,
            hi,
            inside: true,
            count: 1,
        }
    }

    fn layout() -> Layout<impl Fn(i64) -> (i64, i64)> {
        Layout {
            bounds: |b: i64| (b * 10, b * 10 + 9),
            max_spans: 8,
        }
    }

    fn block(block: i64, min_at: i64, max_at: i64) -> Block {
        Block {
            block,
            min_at,
            max_at,
            count: 10,
        }
    }

    #[test]
    fn coalescing_merges_the_smallest_gaps_first() {
        let spans = vec![span(0, 1), span(3, 4), span(100, 101), span(103, 104)];
        let out = coalesce(spans.clone(), 4);
        assert_eq!(out, spans);
        let out = coalesce(spans, 2);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].lo, out[0].hi, out[0].inside), (0, 4, false));
        assert_eq!((out[1].lo, out[1].hi, out[1].inside), (100, 104, false));
    }

    #[test]
    fn only_overlapping_blocks_are_planned_and_neighbours_merge() {
        let blocks = [
            block(0, 0, 99),
            block(1, 100, 199),
            block(2, 200, 299),
            // Imported history: far in the past, inside a later block.
            block(3, -5_000, 399),
            block(4, 400, 499),
        ];
        // [150, 250): blocks 1 and 2 overlap; 3 also does (its range covers everything
        // before 399), so 1..=3 is one span; none is wholly inside.
        let out = plan(blocks, &layout(), (150, 250), (0, 49), false);
        assert_eq!(
            out,
            vec![Span {
                lo: 10,
                hi: 39,
                inside: false,
                count: 0
            }]
        );
        // [100, 300): blocks 1 and 2 are inside, 3 overlaps: split when asked.
        let out = plan(blocks, &layout(), (100, 300), (0, 49), true);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].lo, out[0].hi, out[0].inside, out[0].count),
            (10, 29, true, 20)
        );
        assert_eq!((out[1].lo, out[1].hi, out[1].inside), (30, 39, false));
    }

    #[test]
    fn a_cursor_cuts_blocks_and_their_counts() {
        let blocks = [block(0, 0, 99), block(1, 100, 199)];
        let out = plan(blocks, &layout(), (0, 1_000), (0, 14), true);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].lo, out[0].hi, out[0].inside, out[0].count),
            (0, 9, true, 10)
        );
        assert_eq!(
            (out[1].lo, out[1].hi, out[1].inside, out[1].count),
            (10, 14, false, 0)
        );
    }
}
