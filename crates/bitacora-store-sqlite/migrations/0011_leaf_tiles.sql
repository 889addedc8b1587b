-- Full level-0 tlog-tiles hash tiles (see src/tree.rs): the leaf hashes of 256 consecutive
-- events of one tenant's log, as one 8 KiB row, written by the writer in the append that
-- completes them. A tile is served to monitors and mirrors at `/logs/<tenant>/tile/0/<N>`;
-- read from `events` it is 256 event rows (bodies and all) on ~25 pages, here one row on 3.
-- The leaf hashes stay in `events` (and `purged_events`) too: 32 bytes more per event.
CREATE TABLE leaf_tiles (
    tile   INTEGER PRIMARY KEY,   -- pos >> 8, that is (tenant_id << 32) | (seq >> 8)
    hashes BLOB NOT NULL          -- 256 leaf hashes of 32 bytes, in seq order
);

-- Stores written before this table existed are filled by `tree::backfill_leaf_tiles`, which
-- runs in the same transaction.
