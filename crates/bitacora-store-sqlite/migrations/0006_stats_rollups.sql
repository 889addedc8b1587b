-- Rollups for `GET /v1/stats` and the dashboard (see src/rollup.rs), kept by the writer in the
-- same transaction as the events they count, per tenant and per UTC day of `occurred_at`:
-- joint counts by category, severity, outcome and whether the event has an actor id; and
-- counts per actor id and per client address. A window of whole days reads these rows only;
-- the partial days at its ends are counted from the events themselves, so every figure is
-- exactly what a scan of the window would give.
CREATE TABLE stats_days (
    tenant_id INTEGER NOT NULL,
    day       INTEGER NOT NULL,           -- occurred_at div 86,400,000,000 (floor)
    category  INTEGER NOT NULL,           -- terms.id
    severity  INTEGER NOT NULL,
    outcome   INTEGER NOT NULL,
    no_actor  INTEGER NOT NULL,           -- 1 when the event has no actor id
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, category, severity, outcome, no_actor)
) WITHOUT ROWID;

CREATE TABLE stats_day_actors (
    tenant_id INTEGER NOT NULL,
    day       INTEGER NOT NULL,
    actor_id  TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, actor_id)
) WITHOUT ROWID;

CREATE TABLE stats_day_ips (
    tenant_id INTEGER NOT NULL,
    day       INTEGER NOT NULL,
    ip        BLOB NOT NULL,              -- 16 bytes, as events.ip
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, ip)
) WITHOUT ROWID;

-- Stores written before the rollups existed.
INSERT INTO stats_days (tenant_id, day, category, severity, outcome, no_actor, count)
SELECT pos >> 40, occurred_at / 86400000000 - (occurred_at % 86400000000 < 0),
       category, severity, outcome, actor_id IS NULL, count(*)
FROM events GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO stats_day_actors (tenant_id, day, actor_id, count)
SELECT pos >> 40, occurred_at / 86400000000 - (occurred_at % 86400000000 < 0), actor_id, count(*)
FROM events WHERE actor_id IS NOT NULL GROUP BY 1, 2, 3;

INSERT INTO stats_day_ips (tenant_id, day, ip, count)
SELECT pos >> 40, occurred_at / 86400000000 - (occurred_at % 86400000000 < 0), ip, count(*)
FROM events WHERE ip IS NOT NULL GROUP BY 1, 2, 3;
