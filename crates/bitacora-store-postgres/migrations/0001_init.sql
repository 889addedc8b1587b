-- bitacora PostgreSQL store, schema version 1.
--
-- Several servers share this database. Each tenant's log is sequenced under a row lock on
-- its `tenants` row, which also holds the log's size and Merkle frontier: whoever holds the
-- lock reads the truth from here, never from its own memory.

-- Full-text search folds diacritics. `unaccent` is STABLE (its dictionary could be changed),
-- so it is wrapped in an IMMUTABLE function that names the dictionary explicitly; that is
-- what lets an index be built on it. The wrapper is created in whichever schema holds the
-- extension, fully qualified, so a different search_path cannot change what it calls.
CREATE EXTENSION IF NOT EXISTS unaccent;

DO $$
DECLARE
    ext_schema text;
    own_schema text := current_schema();
BEGIN
    SELECT n.nspname INTO ext_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'unaccent';
    EXECUTE format(
        'CREATE FUNCTION bitacora_unaccent(text) RETURNS text
         LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
         AS %L',
        format('SELECT %I.unaccent(%L::regdictionary, $1)', ext_schema, ext_schema || '.unaccent'));
    -- The document `q=` searches, as indexed and as queried.
    EXECUTE format(
        'CREATE FUNCTION bitacora_tsvector(text) RETURNS tsvector
         LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
         AS %L',
        format('SELECT to_tsvector(''pg_catalog.simple''::regconfig, %I.bitacora_unaccent($1))',
               own_schema));
END
$$;

CREATE TABLE tenants (
    id       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name     text NOT NULL UNIQUE,
    -- Number of events in the log: the next seq.
    size     bigint NOT NULL DEFAULT 0,
    -- The Merkle compact range of the log (the hashes of the perfect subtrees of its right
    -- edge, biggest first), 32 bytes each: all an appender needs to extend the tree.
    frontier bytea NOT NULL DEFAULT ''::bytea
);

-- Partitioned by month of received_at: the server's clock, not the client's, so new rows
-- always land in the current partition (whose indexes stay in memory), partitions can be
-- created ahead predictably, and an old month can later be detached or archived whole.
-- (occurred_at is client-supplied and may be years in the past when history is imported.)
-- Partitions are created by bitacora_ensure_partition below, never by hand.
CREATE TABLE events (
    tenant_id    integer NOT NULL,
    seq          bigint NOT NULL,
    received_at  timestamptz NOT NULL,
    event_id     text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    action       text COLLATE "C" NOT NULL,
    category     text COLLATE "C" NOT NULL,
    severity     smallint NOT NULL,            -- 0 low .. 3 critical
    outcome      smallint NOT NULL,            -- 0 success, 1 failure
    actor_id     text,
    actor_search text,                         -- lowercased "name\nemail", for `actor=`
    target_type  text COLLATE "C",
    target_id    text,
    ip           bytea,                        -- 16 bytes, IPv4 mapped into IPv6
    source       text COLLATE "C",
    fingerprint  bytea NOT NULL,               -- digest of the client's input (idempotency)
    leaf_hash    bytea NOT NULL,               -- SHA-256(0x00 || body)
    body         text NOT NULL,                -- RFC 8785 JSON without seq and leaf_hash
    fts          text NOT NULL                 -- the text `q=` searches
) PARTITION BY RANGE (received_at);

-- Every index leads with tenant_id and (where order matters) ends with seq, so a filtered
-- page is an index range scan already in log order, merged across partitions.
CREATE INDEX events_event_id ON events (tenant_id, event_id);
CREATE INDEX events_action ON events (tenant_id, action, seq);
CREATE INDEX events_actor ON events (tenant_id, actor_id, seq) WHERE actor_id IS NOT NULL;
CREATE INDEX events_target ON events (tenant_id, target_id, target_type, seq)
    WHERE target_id IS NOT NULL;
CREATE INDEX events_occurred ON events (tenant_id, occurred_at);
CREATE INDEX events_fts ON events USING gin (bitacora_tsvector(fts));

-- Creates the partition holding `month` (any instant in it, UTC) if it is missing. Safe to
-- call concurrently from several servers: creation is serialized by an advisory lock.
-- Each partition also gets a UNIQUE (tenant_id, seq) index: a unique index on the parent
-- would have to include received_at, which would make it useless as a guard.
CREATE FUNCTION bitacora_ensure_partition(month timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    start timestamp := date_trunc('month', month AT TIME ZONE 'UTC');
    name  text := format('events_%s', to_char(start, 'YYYY_MM'));
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Waits for another server creating partitions; it may have created this one, which
    -- the catalog snapshot of this statement may not show yet: then CREATE reports it.
    PERFORM pg_advisory_xact_lock(hashtext('bitacora.partitions'));
    BEGIN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            name, start AT TIME ZONE 'UTC', (start + interval '1 month') AT TIME ZONE 'UTC');
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (tenant_id, seq)', name || '_seq', name);
    EXCEPTION WHEN duplicate_table OR unique_violation THEN
        RETURN false;
    END;
    RETURN true;
END
$$;

-- Counters kept in the same transaction as the events they count.
CREATE TABLE action_counts (
    tenant_id integer NOT NULL,
    action    text COLLATE "C" NOT NULL,
    category  text COLLATE "C" NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, action, category)
);

CREATE TABLE actor_stats (
    tenant_id integer NOT NULL,
    actor_id  text NOT NULL,
    name      text,
    email     text,
    count     bigint NOT NULL,
    last_seen bigint NOT NULL,                 -- microseconds since the Unix epoch
    PRIMARY KEY (tenant_id, actor_id)
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    scope        text NOT NULL,
    tenant       text,
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   bigint NOT NULL,
    last_used_at bigint,
    revoked      boolean NOT NULL DEFAULT false
);

-- The Merkle tree of each tenant's log (RFC 6962): complete subtree hashes from level 4 up,
-- which never change once written. Lower nodes are folded from at most 16 leaf hashes.
CREATE TABLE merkle_nodes (
    tenant_id integer NOT NULL,
    level     smallint NOT NULL,
    idx       bigint NOT NULL,
    hash      bytea NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
);

-- Every signed checkpoint, kept forever (C2SP signed note text).
CREATE TABLE checkpoints (
    tenant_id  integer NOT NULL,
    size       bigint NOT NULL,
    root       bytea NOT NULL,
    note       text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (tenant_id, size)
);
