-- A zone map of `occurred_at` over each tenant's log (see src/window.rs): for every block of
-- 4,096 consecutive seqs, the earliest and latest `occurred_at` in it and how many events it
-- holds. A search with `since`/`until` reads these rows first and scans only the blocks whose
-- [min_at, max_at] overlaps the window, so its cost follows the window, not the number of
-- events newer than it. Kept by the writer in the same transaction as the events; a block's
-- bounds only ever widen, so events whose `occurred_at` is far from their neighbours' (imported
-- history) make their block overlap more windows — slower, never wrong.
CREATE TABLE event_blocks (
    tenant_id INTEGER NOT NULL,
    block     INTEGER NOT NULL,           -- seq >> 12
    min_at    INTEGER NOT NULL,           -- microseconds since the Unix epoch, UTC
    max_at    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, block)
) WITHOUT ROWID;

-- Stores written before the zone map existed are summarized by `window::backfill`, which runs
-- in the same transaction (the block size is a constant of the code).
