//! Totals of numbered pages within a time budget: exact when counting fits in it, an estimate
//! (flagged `total_exact: false`) when it does not.
//!
//! A numbered page's total is the number of matching events. The stores answer most totals
//! without counting rows (the tenant's size, the action counters, the zone map's block counts
//! for a bare window); the rest — a filter on a column with no index of its own (`outcome`,
//! `ip`, `actor`, a full-text term…) over a large part of the log — cost a scan of every
//! candidate row, seconds at tens of millions of events, for a number the user mostly reads as
//! "how much is there". So the stores count the candidate ranges chunk by chunk, in growing
//! chunks, until the budget is spent; whatever is left is estimated from evenly spaced samples
//! of it (a stratified sample: the log is in arrival order and the rate of matches drifts over
//! time, so one sample from one end would be biased), and the page says the total is an
//! estimate. The page itself never depends on the total: it is read by skipping matches, not
//! by dividing a count.
//!
//! Only the planning is here, shared by both stores; counting a range is SQL, in the stores.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::window::Span;

/// The default budget: a numbered page's total costs about this much at most, the samples of
/// an estimate included.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(25);

/// The share of the budget spent counting (in fifths); the rest is kept for the samples when
/// counting does not finish. Counting for the whole budget and then sampling for as long
/// again made an estimated total cost twice the budget (numbered pages of 55-75 ms at 10M
/// events with the 25 ms default, against a target of 50 ms for the page).
const COUNTING_FIFTHS: u32 = 3;

/// Positions in the first chunk counted; each following chunk is twice as large, up to
/// [`MAX_CHUNK`], so that a cheap filter finishes in few statements — but never larger than
/// the rate measured so far says fits in the budget left, so an expensive filter does not
/// overshoot it by a whole chunk. A chunk that would be smaller than [`MIN_CHUNK`] is not
/// started.
const FIRST_CHUNK: i64 = 4_096;
const MAX_CHUNK: i64 = 1 << 20;
const MIN_CHUNK: i64 = 1_024;
/// Samples taken of what is left when the budget runs out, the largest sample, and the
/// smallest one the measured rate may shrink a sample to (see [`Counter::samples`]).
const SAMPLES: i64 = 16;
const SAMPLE_WIDTH: i64 = 1_024;
const MIN_SAMPLE_WIDTH: i64 = 64;

/// A total and whether it was counted (`true`) or estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub value: u64,
    pub exact: bool,
}

impl Total {
    pub fn exact(value: u64) -> Self {
        Total { value, exact: true }
    }

    /// Corrects an estimate with what the page proved: a page shorter than asked for (and
    /// not empty, or the first) is the last one, so its offset plus its length is the exact
    /// total; a full page proves at least its offset plus its length; an empty page past the
    /// first proves there are no more than its offset. A counted total is left as it is.
    pub fn with_page(self, offset: u64, got: u64, per_page: u64) -> Self {
        if self.exact {
            return self;
        }
        if got < per_page && (got > 0 || offset == 0) {
            return Total::exact(offset + got);
        }
        let value = if got == 0 {
            self.value.min(offset)
        } else {
            self.value.max(offset + got)
        };
        Total {
            value,
            exact: false,
        }
    }
}

/// Counts inclusive position ranges against a deadline. The store calls [`Counter::next`]
/// for each range to count and [`Counter::counted`] with its matches; when `next` returns
/// `None` with ranges left, it counts the [`Counter::samples`] and calls
/// [`Counter::estimate`].
#[derive(Debug)]
pub struct Counter {
    left: VecDeque<(i64, i64)>,
    chunk: i64,
    /// The whole budget, and when counting stops to leave the rest of it to the samples.
    budget: Duration,
    deadline: Instant,
    /// Whether the next chunk may start after the deadline: the first one always does
    /// (unless the budget is zero), so a stall of the machine between planning and counting
    /// cannot turn a one-statement total into an estimate.
    first: bool,
    started: Instant,
    /// Positions handed out so far (all counted by the time the next one is asked for).
    handed: i64,
    matches: u64,
    /// Matches known without counting (spans wholly inside a bare window).
    known: u64,
    /// (positions, matches) of the samples counted so far.
    sampled: (u64, u64),
}

impl Counter {
    /// `ranges`: the inclusive position ranges whose matches make the total, in any order.
    pub fn new(ranges: impl IntoIterator<Item = (i64, i64)>, budget: Duration) -> Self {
        let now = Instant::now();
        Counter {
            left: ranges.into_iter().filter(|(lo, hi)| lo <= hi).collect(),
            chunk: FIRST_CHUNK,
            budget,
            deadline: now + budget * COUNTING_FIFTHS / 5,
            first: !budget.is_zero(),
            started: now,
            handed: 0,
            matches: 0,
            known: 0,
            sampled: (0, 0),
        }
    }

    /// A counter for a search's spans: a span wholly inside a bare window (`window_only`)
    /// gives its zone-map count for free; the others are ranges to count, cut at `last`, the
    /// last position that holds an event (positions past it are never sampled).
    pub fn over_spans(spans: &[Span], window_only: bool, last: i64, budget: Duration) -> Self {
        let mut known = 0;
        let mut ranges = Vec::with_capacity(spans.len());
        for s in spans {
            if s.inside && window_only {
                known += s.count;
            } else {
                ranges.push((s.lo, s.hi.min(last)));
            }
        }
        Counter {
            known,
            ..Counter::new(ranges, budget)
        }
    }

    /// Everything left to count, handed out whole whatever the budget (for a store that can
    /// only count a range in one statement); each is then [`Counter::counted`].
    pub fn take_rest(&mut self) -> Vec<(i64, i64)> {
        self.left.drain(..).collect()
    }

    /// The next range to count exactly, or `None` when everything is counted or the budget
    /// is spent (always `None` for a zero budget).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(i64, i64)> {
        let mut chunk = self.chunk;
        if !std::mem::take(&mut self.first) {
            let now = Instant::now();
            if now >= self.deadline {
                return None;
            }
            // Positions per second so far, times the time left.
            let spent = now.duration_since(self.started).as_secs_f64();
            if spent > 0.0 && self.handed > 0 {
                let fits = self.handed as f64 / spent * (self.deadline - now).as_secs_f64();
                chunk = chunk.min(fits as i64);
            }
            if chunk < MIN_CHUNK {
                return None;
            }
        }
        let (lo, hi) = self.left.pop_front()?;
        let end = lo.saturating_add(chunk - 1).min(hi);
        self.handed += end - lo + 1;
        if end < hi {
            self.left.push_front((end + 1, hi));
        }
        self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        Some((lo, end))
    }

    /// Records the matches of the range [`Counter::next`] returned last.
    pub fn counted(&mut self, matches: u64) {
        self.matches += matches;
    }

    /// True when every range has been counted: [`Counter::total`] is exact.
    pub fn done(&self) -> bool {
        self.left.is_empty()
    }

    /// The exact total, once [`Counter::done`].
    pub fn total(&self) -> Total {
        Total::exact(self.known + self.matches)
    }

    /// Records the matches of one of the [`Counter::samples`].
    pub fn sampled(&mut self, (lo, hi): (i64, i64), matches: u64) {
        self.sampled.0 += (hi - lo + 1) as u64;
        self.sampled.1 += matches;
    }

    /// The total: exact when everything was counted, else estimated from the samples
    /// recorded with [`Counter::sampled`].
    pub fn finish(&self) -> Total {
        if self.done() {
            self.total()
        } else {
            self.estimate(self.sampled)
        }
    }

    /// Up to [`SAMPLES`] ranges evenly spaced over what is left to count (by position,
    /// across its ranges) — or all of it when it is no larger than the samples would be:
    /// then the estimate is exact. Each is [`SAMPLE_WIDTH`] positions wide, or narrower when
    /// the rate counting measured says sixteen full samples would cost more than what is
    /// left of the budget (an expensive filter would otherwise spend several budgets
    /// estimating what one budget did not count), down to [`MIN_SAMPLE_WIDTH`].
    pub fn samples(&self) -> Vec<(i64, i64)> {
        let left: i64 = self.left.iter().map(|(lo, hi)| hi - lo + 1).sum();
        if left == 0 {
            return Vec::new();
        }
        let width = self.sample_width();
        if left <= SAMPLES * width {
            return self.left.iter().copied().collect();
        }
        let n = SAMPLES.min(left);
        let width = width.min(left / n).max(1);
        let stride = left / n;
        let mut out = Vec::with_capacity(n as usize);
        let mut ranges = self.left.iter().copied();
        let (mut lo, mut hi) = ranges.next().expect("left is not empty");
        // `skipped`: positions of the ranges before the current one.
        let mut skipped = 0;
        for i in 0..n {
            let at = i * stride;
            while at - skipped > hi - lo {
                skipped += hi - lo + 1;
                (lo, hi) = ranges
                    .next()
                    .expect("sample offsets stay inside what is left");
            }
            let start = lo + (at - skipped);
            out.push((start, (start + width - 1).min(hi)));
        }
        out
    }

    /// The widest sample for all [`SAMPLES`] to cost about what is left of the budget after
    /// counting (at least its share for the samples) at the rate measured so far (positions
    /// handed out per second since the counter started); [`SAMPLE_WIDTH`] when nothing was
    /// counted (a zero budget).
    fn sample_width(&self) -> i64 {
        let spent = self.started.elapsed();
        if self.handed == 0 || spent.is_zero() {
            return SAMPLE_WIDTH;
        }
        let share = self.budget - self.budget * COUNTING_FIFTHS / 5;
        let left = self.budget.saturating_sub(spent).max(share);
        let fits = self.handed as f64 / spent.as_secs_f64() * left.as_secs_f64() / SAMPLES as f64;
        (fits as i64).clamp(MIN_SAMPLE_WIDTH, SAMPLE_WIDTH)
    }

    /// The total: what was counted plus, for what was left, the sampled rate of matches
    /// per position times the positions left. `sampled` is (positions, matches) summed over
    /// the [`Counter::samples`].
    pub fn estimate(&self, (positions, matches): (u64, u64)) -> Total {
        let left: i64 = self.left.iter().map(|(lo, hi)| hi - lo + 1).sum();
        if left == 0 {
            return self.total();
        }
        if positions >= left as u64 {
            // The samples covered everything that was left: nothing is extrapolated.
            return Total::exact(self.known + self.matches + matches);
        }
        let rest = if positions == 0 {
            0
        } else {
            (matches as f64 / positions as f64 * left as f64).round() as u64
        };
        Total {
            value: self.known + self.matches + rest,
            exact: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generous_budget_counts_everything_in_growing_chunks() {
        let mut c = Counter::new([(0, 99_999), (200_000, 200_009)], Duration::from_secs(60));
        let mut seen = Vec::new();
        while let Some(r) = c.next() {
            seen.push(r);
            c.counted((r.1 - r.0 + 1) as u64);
        }
        assert!(c.done());
        assert_eq!(c.total(), Total::exact(100_010));
        assert_eq!(seen[0], (0, FIRST_CHUNK - 1));
        assert_eq!(seen[1], (FIRST_CHUNK, 3 * FIRST_CHUNK - 1));
        assert_eq!(*seen.last().unwrap(), (200_000, 200_009));
        // Contiguous, non-overlapping, covering both ranges.
        let covered: i64 = seen.iter().map(|(lo, hi)| hi - lo + 1).sum();
        assert_eq!(covered, 100_010);
    }

    #[test]
    fn no_budget_samples_evenly_and_extrapolates() {
        let c = Counter::new([(0, 999_999), (5_000_000, 5_999_999)], Duration::ZERO);
        let mut c = c;
        assert_eq!(c.next(), None);
        let samples = c.samples();
        assert_eq!(samples.len() as i64, SAMPLES);
        // Half of the samples in each range, each SAMPLE_WIDTH wide.
        assert_eq!(samples.iter().filter(|s| s.0 < 1_000_000).count(), 8);
        assert!(samples.iter().all(|(lo, hi)| hi - lo + 1 == SAMPLE_WIDTH));
        // One match in ten positions.
        let positions: u64 = samples.iter().map(|(lo, hi)| (hi - lo + 1) as u64).sum();
        let t = c.estimate((positions, positions / 10));
        assert!(!t.exact);
        assert!((199_000..=201_000).contains(&t.value), "{t:?}");
    }

    #[test]
    fn a_slow_count_takes_narrower_samples() {
        // 4,096 positions counted in no less than 20 ms: ~200 positions a millisecond, so
        // sixteen samples fit the samples' share of a 10 ms budget (4 ms) at about 50
        // positions each: the narrowest.
        let mut c = Counter::new([(0, 999_999)], Duration::from_millis(10));
        let (lo, hi) = c.next().expect("the first chunk always runs");
        std::thread::sleep(Duration::from_millis(20));
        c.counted((hi - lo + 1) as u64 / 2);
        assert_eq!(c.next(), None, "the budget is spent");
        let samples = c.samples();
        assert_eq!(samples.len() as i64, SAMPLES);
        for (lo, hi) in samples {
            let width = hi - lo + 1;
            assert!(
                (MIN_SAMPLE_WIDTH..=SAMPLE_WIDTH / 4).contains(&width),
                "{width}"
            );
        }
    }

    /// Counting stops with the samples' share of the budget left, so that an estimated
    /// total costs about the budget, not the budget and then the samples.
    #[test]
    fn counting_leaves_the_samples_their_share_of_the_budget() {
        let budget = Duration::from_millis(200);
        let mut c = Counter::new([(0, 9_999_999)], budget);
        let (lo, hi) = c.next().expect("the first chunk always runs");
        c.counted((hi - lo + 1) as u64);
        // Past three fifths of the budget (120 ms), though not past the budget.
        std::thread::sleep(Duration::from_millis(130));
        assert_eq!(c.next(), None, "counting stops at its share");
        // The samples are sized for what is left (~70 ms) at the rate measured (4,096
        // positions in ~130 ms): ~138 positions for each of the sixteen.
        let width = c.samples()[0];
        let width = width.1 - width.0 + 1;
        assert!((MIN_SAMPLE_WIDTH..=200).contains(&width), "{width}");
    }

    #[test]
    fn small_remainders_are_counted_whole() {
        let c = Counter::new([(10, 12), (20, 20)], Duration::ZERO);
        assert_eq!(c.samples(), vec![(10, 12), (20, 20)]);
        assert_eq!(c.estimate((4, 2)), Total::exact(2));
    }

    #[test]
    fn samples_of_several_ranges_stay_inside_them() {
        let c = Counter::new([(0, 9_999), (50_000, 59_999)], Duration::ZERO);
        let samples = c.samples();
        assert_eq!(samples.len() as i64, SAMPLES);
        for (lo, hi) in samples {
            assert!(lo <= hi);
            assert!(
                (0..10_000).contains(&lo) && hi < 10_000
                    || (50_000..60_000).contains(&lo) && hi < 60_000
            );
        }
    }

    #[test]
    fn the_page_corrects_the_estimate() {
        let guess = Total {
            value: 40,
            exact: false,
        };
        // A short page is the last: exact.
        assert_eq!(guess.with_page(100, 7, 50), Total::exact(107));
        // A full page proves at least offset + per_page.
        assert_eq!(
            guess.with_page(100, 50, 50),
            Total {
                value: 150,
                exact: false
            }
        );
        // An empty page past the end: no more than its offset.
        assert_eq!(guess.with_page(20, 0, 50).value, 20);
        assert_eq!(guess.with_page(100, 0, 50), guess);
        // An empty first page: nothing matches.
        assert_eq!(guess.with_page(0, 0, 50), Total::exact(0));
        // A counted total stands.
        assert_eq!(Total::exact(9).with_page(0, 3, 50), Total::exact(9));
    }
}
