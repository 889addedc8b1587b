-- Client addresses, block by block (see src/addresses.rs, and the embedded store's
-- addresses.rs for the design): for each block of the zone map (`seq >> 12`) and each address
-- seen in it, the offsets within the block of the events from that address. `ip=ADDRESS` (or
-- a narrow network) reads one short index range per block instead of every event of the
-- log. Keyed block first, so a commit's rows land at the tail of the index; one row per
-- (block, address, commit), inserted and never updated; a purge or a partition drop rewrites
-- the rows of the blocks it touched.
CREATE TABLE event_addresses (
    tenant_id integer NOT NULL,
    block     bigint NOT NULL,
    ip        bytea NOT NULL,              -- 16 bytes, as events.ip
    first     smallint NOT NULL,           -- offsets[1]
    offsets   smallint[] NOT NULL,         -- ascending offsets of the events in the block
    PRIMARY KEY (tenant_id, block, ip, first)
);

-- Databases written before this table existed.
INSERT INTO event_addresses (tenant_id, block, ip, first, offsets)
SELECT tenant_id, seq >> 12, ip, min(seq & 4095)::smallint,
       array_agg((seq & 4095)::smallint ORDER BY seq)
FROM events WHERE ip IS NOT NULL GROUP BY 1, 2, 3;
