-- The actor index carries `severity` and `outcome` as key columns after `seq` (src/read.rs):
-- `actor_id=42&severity=critical` (or `min_severity=`, `outcome=`) walks the actor's entries
-- in `seq` order and checks those columns on each index entry — B-tree index conditions, not
-- a filter on the fetched row — so only the matching events are read from the table. Before,
-- every event of the actor was fetched to be checked: 10,000 heap rows to find that an actor
-- never raised a critical event cost ~35 ms where the index entries alone cost 0.6 ms, and
-- 50,000 at 10M events (the facets' actor sketch only says "maybe" when another actor shares
-- its bit). The severities are compared as a range (a set of them as its bounds plus the
-- set), because PostgreSQL checks `= ANY(array)` on a later key column after the fetch.
-- The text columns (`action`, `category`, `source`) would widen every entry several times;
-- the facets and sketches prune those first.
DROP INDEX events_actor;
CREATE INDEX events_actor ON events (tenant_id, actor_id, seq, severity, outcome)
    WHERE actor_id IS NOT NULL;
