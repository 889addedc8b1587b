//! What both stores' searches through the address postings walk: each block's candidates,
//! gathered into statements, and how the total's budget samples what it leaves.

/// Candidates for a search through the address postings: positions the postings name (of
/// one block or several consecutive ones), or a block's part of a span when so many of its
/// events are candidates that reading the block in order costs less than fetching them one
/// by one. Positions are each store's (the embedded store's `pos`, PostgreSQL's `seq`).
pub enum Part {
    Points(Vec<i64>),
    Range(i64, i64),
}

/// The positions of consecutive blocks are fetched together up to this many: a statement per
/// block (prepared afresh on the embedded store, whose list differs each time; a round trip
/// and a plan across the partitions on PostgreSQL) cost more than its few fetches (an address
/// in 1 event of 1,000 has about 4 per block).
pub const POINTS_PER_STATEMENT: usize = 256;

/// Pieces counted to estimate what a budget leaves of an address search's total.
pub const ADDRESS_SAMPLES: usize = 16;

/// Candidates per piece sampled for an address search's total.
pub const SAMPLE_POINTS: usize = 8;

/// What the budget left of an address search's total, in pieces of at most
/// [`SAMPLE_POINTS`] candidates (a block's range stays whole): a statement's worth of
/// positions is too coarse to sample, and [`ADDRESS_SAMPLES`] of them would be counted whole.
pub fn sample_pieces(left: Vec<(Part, u64)>) -> Vec<(Part, u64)> {
    left.into_iter()
        .flat_map(|(part, n)| match part {
            Part::Points(points) => points
                .chunks(SAMPLE_POINTS)
                .map(|c| (Part::Points(c.to_vec()), c.len() as u64))
                .collect::<Vec<_>>(),
            range => vec![(range, n)],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_cut_into_sampling_pieces() {
        let left = vec![
            (Part::Points((0..20).collect()), 20),
            (Part::Range(100, 200), 60),
        ];
        let pieces = sample_pieces(left);
        let sizes: Vec<u64> = pieces.iter().map(|(_, n)| *n).collect();
        assert_eq!(sizes, vec![8, 8, 4, 60]);
        assert!(matches!(pieces[3].0, Part::Range(100, 200)));
    }
}
