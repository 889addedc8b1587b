-- Facets (see src/facets.rs, and the embedded store's facets.rs for the same design): which
-- combinations of the low-cardinality columns (action, category, severity, outcome, source)
-- occur in each block of the zone map, and how often in the whole log. A search filtering on
-- those columns reads `facet_counts` first: no matching combination answers at once, a sum of
-- counts is an exact total, and sparse matches are read only in the blocks that hold them.
-- Kept by the writer in the append transaction, and by purges and partition drops.
CREATE TABLE event_facets (
    tenant_id integer NOT NULL,
    action    text COLLATE "C" NOT NULL,
    category  text COLLATE "C" NOT NULL,
    severity  smallint NOT NULL,
    outcome   smallint NOT NULL,
    source    text COLLATE "C" NOT NULL,  -- '' when the event names none
    block     bigint NOT NULL,            -- seq >> 12, as in event_blocks
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, action, category, severity, outcome, source, block)
);

CREATE TABLE facet_counts (
    tenant_id integer NOT NULL,
    action    text COLLATE "C" NOT NULL,
    category  text COLLATE "C" NOT NULL,
    severity  smallint NOT NULL,
    outcome   smallint NOT NULL,
    source    text COLLATE "C" NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, action, category, severity, outcome, source)
);

-- Databases written before these tables existed.
INSERT INTO event_facets (tenant_id, action, category, severity, outcome, source, block, count)
SELECT tenant_id, action, category, severity, outcome, coalesce(source, ''), seq >> 12, count(*)
FROM events GROUP BY 1, 2, 3, 4, 5, 6, 7;

INSERT INTO facet_counts (tenant_id, action, category, severity, outcome, source, count)
SELECT tenant_id, action, category, severity, outcome, source, sum(count)
FROM event_facets GROUP BY 1, 2, 3, 4, 5, 6;
