-- The actor index carries the faceted columns (src/read.rs): `actor_id=42&severity=critical`
-- reads the actor's index entries in `pos` order and checks `action`, `category`,
-- `severity`, `outcome` and `source` on the entry itself, fetching only the events that
-- match (SQLite defers the table seek until a column the index lacks is needed). Before, it
-- fetched every event of the actor to check them: an actor with 50,000 events at 10M, none
-- critical, cost 95-120 ms for a first page that found nothing, and its total 250 ms
-- (the facets' actor sketch only says "maybe" when another actor shares its bit). A count
-- with only these filters reads the index alone.
--
-- `pos` is a key column (the rowid SQLite appends to every entry would come after the
-- faceted ones, out of order), so the actor's entries stay in `pos` order and a `pos` range
-- is a seek.
DROP INDEX events_actor;
CREATE INDEX events_actor
    ON events (actor_id, pos, action, category, severity, outcome, source)
    WHERE actor_id IS NOT NULL;
