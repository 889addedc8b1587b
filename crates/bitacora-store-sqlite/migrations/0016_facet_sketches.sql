-- Sketches beside the facets (bitacora_store::sketch, src/facets.rs): per combination, per
-- block and per log, 256 bits saying which client-address areas (the /16 of an IPv4
-- address, the /32 of an IPv6 one, hashed) its events came from, and 256 saying which actor
-- ids (hashed) they had, OR-ed in by the append's upsert. A search with `ip=` or `actor_id=`
-- drops the combinations and blocks whose bits miss its own: `ip=10.1.0.0/16&severity=
-- critical` where that network never raised a critical event (4-23 s at 10M events before),
-- or `actor_id=42&action=user.role_change` where that actor never changed a role (170-340
-- ms), answer without reading the events. The bits only ever say "maybe" (a purge does not
-- clear them); a clear bit is a proof of absence, which `verify` checks. Existing events are
-- summarized by `facets::backfill_sketches`.
ALTER TABLE event_facets ADD COLUMN areas_0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN areas_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN areas_2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN areas_3 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN actors_0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN actors_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN actors_2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_facets ADD COLUMN actors_3 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN areas_3 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN actors_0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN actors_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN actors_2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE facet_counts ADD COLUMN actors_3 INTEGER NOT NULL DEFAULT 0;
