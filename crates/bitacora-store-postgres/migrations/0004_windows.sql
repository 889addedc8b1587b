-- Time windows and stats at scale (see src/window.rs and src/rollup.rs).

-- A zone map of `occurred_at` over each tenant's log: for every block of 4,096 consecutive
-- seqs, the earliest and latest `occurred_at` in it and how many events it holds. A search
-- with `since`/`until` reads these rows first and scans only the seq ranges of the blocks that
-- overlap the window (through the partitions' (tenant_id, seq) indexes), so its cost follows
-- the window, not the number of events newer than it. Kept by the writer in the same
-- transaction as the events; a block's bounds only ever widen, so imported history (events
-- whose `occurred_at` is far from their neighbours') makes its block overlap more windows:
-- slower, never wrong. This is the role a BRIN index on `occurred_at` would play, but keyed by
-- `seq`, which is the order every page is read in, and across partitions.
CREATE TABLE event_blocks (
    tenant_id integer NOT NULL,
    block     bigint NOT NULL,             -- seq >> 12
    min_at    timestamptz NOT NULL,
    max_at    timestamptz NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, block)
);

-- Rollups for `GET /v1/stats` and the dashboard, kept by the writer in the same transaction
-- as the events they count, per tenant and per UTC day of `occurred_at`: joint counts by
-- category, severity, outcome and whether the event has an actor id; and counts per actor id
-- and per client address. A window of whole days reads these rows only; the partial days at
-- its ends are counted from the events themselves, so every figure is exactly what a scan of
-- the window gives.
CREATE TABLE stats_days (
    tenant_id integer NOT NULL,
    day       date NOT NULL,                -- UTC day of occurred_at
    category  text COLLATE "C" NOT NULL,
    severity  smallint NOT NULL,
    outcome   smallint NOT NULL,
    no_actor  boolean NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, category, severity, outcome, no_actor)
);

CREATE TABLE stats_day_actors (
    tenant_id integer NOT NULL,
    day       date NOT NULL,
    actor_id  text NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, actor_id)
);

CREATE TABLE stats_day_ips (
    tenant_id integer NOT NULL,
    day       date NOT NULL,
    ip        bytea NOT NULL,               -- 16 bytes, as events.ip
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, ip)
);

-- Databases written before these tables existed.
INSERT INTO event_blocks (tenant_id, block, min_at, max_at, count)
SELECT tenant_id, seq >> 12, min(occurred_at), max(occurred_at), count(*)
FROM events GROUP BY 1, 2;

INSERT INTO stats_days (tenant_id, day, category, severity, outcome, no_actor, count)
SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, category, severity, outcome,
       actor_id IS NULL, count(*)
FROM events GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO stats_day_actors (tenant_id, day, actor_id, count)
SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, actor_id, count(*)
FROM events WHERE actor_id IS NOT NULL GROUP BY 1, 2, 3;

INSERT INTO stats_day_ips (tenant_id, day, ip, count)
SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, ip, count(*)
FROM events WHERE ip IS NOT NULL GROUP BY 1, 2, 3;
