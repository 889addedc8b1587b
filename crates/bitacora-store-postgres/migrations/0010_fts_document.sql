-- The full-text document, stored (see src/read.rs, `counted`). Until now `q=` went through an
-- expression index on `bitacora_tsvector(fts)`, and any row read without that index had to
-- derive its document again: unaccent and the parser, ~70 µs per row — a range of 4,096
-- events counted for a numbered page's total cost 300 ms, and a search checking the text of
-- the events it reads through another index (an address, an actor) paid it on each. Stored,
-- the check is a comparison (~0.3 µs per row), so a full-text total is counted and sampled
-- by seq range within the page's budget like any other filter's. The document is derived
-- once, at insert, as the index derived it before; rows grow by its size (~320 bytes for a
-- typical event).
--
-- Rewrites `events` (every partition) once: minutes per ten million events.
DROP INDEX events_fts;
ALTER TABLE events
    ADD COLUMN fts_doc tsvector GENERATED ALWAYS AS (bitacora_tsvector(fts)) STORED;
CREATE INDEX events_fts ON events USING gin (fts_doc);
-- The rewrite leaves the new column without statistics; without them the planner takes 0.5 %
-- of events to match any term and reads a rare term's page in seq order through the whole
-- log (measured: 0.8 s at 1M) instead of from its posting list.
ANALYZE events;
