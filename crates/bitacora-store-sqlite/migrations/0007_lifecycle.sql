-- Data lifecycle (CONTRACT §9, see src/purge.rs). A retention purge deletes an event's row
-- (and so its index entries); what the Merkle tree needs of it, its leaf hash, moves here,
-- keyed like `events` (pos = tenant_id << 40 | seq), so the tree reads `events` and this table
-- as one sequence of leaves. The event id stays so that `GET /v1/events/{id}` can answer 410.
CREATE TABLE purged_events (
    pos       INTEGER PRIMARY KEY,
    event_id  TEXT NOT NULL,
    leaf_hash BLOB NOT NULL,
    -- The purge that removed it: purges.event_seq.
    purge     INTEGER NOT NULL
);
CREATE INDEX purged_events_event_id ON purged_events (event_id);

-- Every purge, kept forever. `event_seq` is the seq of its own `bitacora.retention.purge`
-- event in the same log, which carries the same ranges, count and root.
CREATE TABLE purges (
    tenant_id  INTEGER NOT NULL,
    event_seq  INTEGER NOT NULL,
    ranges     TEXT NOT NULL,              -- "3-7,9-9"
    count      INTEGER NOT NULL,
    root       BLOB NOT NULL,
    archive    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, event_seq)
) WITHOUT ROWID;

CREATE TABLE legal_holds (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    filter      TEXT NOT NULL,             -- JSON object of search parameters
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    released_at INTEGER,
    released_by TEXT
);

-- Retention rule sets by fingerprint, with when a server first ran with each
-- (`retention.min_delay` counts from there).
CREATE TABLE retention_rule_sets (
    fingerprint TEXT PRIMARY KEY,
    first_seen  INTEGER NOT NULL
);
