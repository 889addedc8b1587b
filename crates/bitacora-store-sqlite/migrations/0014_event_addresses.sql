-- Client addresses, block by block (see src/addresses.rs): for each block of the zone map
-- (`seq >> window::BLOCK_BITS`) and each address seen in it, the offsets within the block of
-- the events from that address. `ip=ADDRESS` (or a narrow network) reads one short range per
-- block instead of every event of the log, and a total is the sum of the offsets.
--
-- Keyed block first, so a group commit's rows land at the tail of the tenant's range: an
-- index keyed by address (measured: 0.80x durable ingest) dirtied a leaf page per distinct
-- address in every commit. One row per (block, address, commit): a later commit adds a row
-- whose `first` offset is past every earlier one, so rows are only ever inserted; a purge
-- rewrites the rows of the addresses it touched.
CREATE TABLE event_addresses (
    tenant_id INTEGER NOT NULL,
    block     INTEGER NOT NULL,
    ip        BLOB NOT NULL,              -- 16 bytes, as events.ip
    first     INTEGER NOT NULL,           -- the first offset of `offsets`
    offsets   BLOB NOT NULL,              -- ascending u16 little-endian offsets in the block
    PRIMARY KEY (tenant_id, block, ip, first)
) WITHOUT ROWID;

-- Stores written before this table existed are filled by `addresses::backfill`, in the same
-- transaction.
