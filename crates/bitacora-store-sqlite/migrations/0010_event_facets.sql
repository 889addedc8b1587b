-- Facets: which combinations of the log's low-cardinality columns (action, category,
-- severity, outcome, source) occur in each block of the zone map (src/facets.rs), and how
-- often in the whole log. A search filtering on those columns reads `facet_counts` first (a
-- few rows per distinct combination): no matching combination answers at once, and a sum
-- of counts is an exact total; when the matches are sparse it reads, per matching
-- combination, the blocks that hold it from `event_facets` and scans only those. Correlated
-- filters (`severity=critical&outcome=failure` on a log where they never meet) no longer
-- read the whole log to find nothing. Both tables change in the append transaction (and in
-- a purge's), so they always equal what the events say.
CREATE TABLE event_facets (
    tenant_id INTEGER NOT NULL,
    action    INTEGER NOT NULL,           -- terms.id
    category  INTEGER NOT NULL,           -- terms.id
    severity  INTEGER NOT NULL,
    outcome   INTEGER NOT NULL,
    source    INTEGER NOT NULL,           -- terms.id, 0 when the event names none
    block     INTEGER NOT NULL,           -- seq >> window::BLOCK_BITS, as in event_blocks
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, action, category, severity, outcome, source, block)
) WITHOUT ROWID;

CREATE TABLE facet_counts (
    tenant_id INTEGER NOT NULL,
    action    INTEGER NOT NULL,
    category  INTEGER NOT NULL,
    severity  INTEGER NOT NULL,
    outcome   INTEGER NOT NULL,
    source    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, action, category, severity, outcome, source)
) WITHOUT ROWID;

-- Stores written before the facets existed are summarized by `facets::backfill`, in the
-- same transaction (the block size is a constant of the code).
