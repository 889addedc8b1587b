-- bitacora embedded store, schema version 1.
--
-- Events are clustered on pos = (tenant_id << 40) | seq: a tenant's log is one contiguous
-- rowid range, appends are sequential, and ORDER BY seq is a rowid scan. Every index below
-- implicitly ends with pos, so an index on one column already orders its entries by tenant
-- and seq. Repeated strings are dictionary-encoded in `terms`.

CREATE TABLE tenants (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    -- Number of events in the log: the next seq.
    size     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE terms (
    id    INTEGER PRIMARY KEY,
    -- 1 action, 2 category, 3 target type, 4 source
    kind  INTEGER NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (kind, value)
);

CREATE TABLE events (
    pos          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL,           -- microseconds since the Unix epoch, UTC
    action       INTEGER NOT NULL,           -- terms.id
    category     INTEGER NOT NULL,           -- terms.id
    severity     INTEGER NOT NULL,           -- 0 low .. 3 critical
    outcome      INTEGER NOT NULL,           -- 0 success, 1 failure
    actor_id     TEXT,
    actor_search TEXT,                       -- lowercased "name\nemail", for `actor=`
    target_type  INTEGER,                    -- terms.id
    target_id    TEXT,
    ip           BLOB,                       -- 16 bytes, IPv4 mapped into IPv6
    source       INTEGER,                    -- terms.id
    fingerprint  BLOB NOT NULL,              -- digest of the client's input (idempotency)
    leaf_hash    BLOB NOT NULL,              -- SHA-256(0x00 || body)
    body         TEXT NOT NULL               -- RFC 8785 JSON without seq and leaf_hash
);

CREATE INDEX events_event_id ON events (event_id);
CREATE INDEX events_action ON events (action);
CREATE INDEX events_actor ON events (actor_id) WHERE actor_id IS NOT NULL;
CREATE INDEX events_target ON events (target_id, target_type) WHERE target_id IS NOT NULL;
CREATE INDEX events_occurred ON events (occurred_at);

-- Counters kept in the same transaction as the events they count.
CREATE TABLE action_counts (
    tenant_id INTEGER NOT NULL,
    action    INTEGER NOT NULL,
    category  INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, action, category)
) WITHOUT ROWID;

CREATE TABLE actor_stats (
    tenant_id INTEGER NOT NULL,
    actor_id  TEXT NOT NULL,
    name      TEXT,
    email     TEXT,
    count     INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, actor_id)
) WITHOUT ROWID;

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    tenant       TEXT,
    secret_hash  BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked      INTEGER NOT NULL DEFAULT 0
);

-- The Merkle tree of each tenant's log (RFC 6962): complete subtree hashes, which never
-- change once written. Nodes below level 4 are not stored; they are folded from at most 8
-- leaf hashes in `events`, which keeps this table at 1/16 of a row per event.
CREATE TABLE merkle_nodes (
    tenant_id INTEGER NOT NULL,
    level     INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
) WITHOUT ROWID;

-- Every signed checkpoint, kept forever (C2SP signed note text).
CREATE TABLE checkpoints (
    tenant_id  INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, size)
) WITHOUT ROWID;
