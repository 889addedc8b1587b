-- Address areas beside the facets (bitacora_store::areas, src/facets.rs): per combination,
-- per block and per log, 256 bits saying which address areas (the /16 of an IPv4 address,
-- the /32 of an IPv6 one, hashed) its events came from, OR-ed in by the append's upsert. A
-- search with `ip=` drops the combinations and blocks whose bits miss the network's areas:
-- `ip=10.1.0.0/16&severity=critical`, where that network never raised a critical event,
-- answers without reading the network's events (4-23 s at 10M events before). The bits
-- only ever say "maybe" (a purge does not clear them); a clear bit is a proof of absence,
-- which `verify` checks. Existing events are summarized by `facets::backfill_areas`.
ALTER TABLE event_facets ADD COLUMN areas_0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN areas_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN areas_2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN areas_3 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_3 INTEGER NOT NULL DEFAULT 0;
