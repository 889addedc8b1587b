-- Data lifecycle (CONTRACT §9, see src/purge.rs). A retention purge deletes an event's row;
-- what the Merkle tree needs of it, its leaf hash, moves here, and the tree reads `events` and
-- this table as one sequence of leaves. The event id stays so that `GET /v1/events/{id}` can
-- answer 410. Not partitioned: 80 bytes per purged event, never deleted.
CREATE TABLE purged_events (
    tenant_id integer NOT NULL,
    seq       bigint NOT NULL,
    event_id  text NOT NULL,
    leaf_hash bytea NOT NULL,
    -- The purge that removed it: purges.event_seq.
    purge     bigint NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX purged_events_event_id ON purged_events (tenant_id, event_id);
CREATE INDEX purged_events_purge ON purged_events (tenant_id, purge);

-- Every purge, kept forever. `event_seq` is the seq of its own `bitacora.retention.purge`
-- event in the same log, which carries the same ranges, count and root.
CREATE TABLE purges (
    tenant_id  integer NOT NULL,
    event_seq  bigint NOT NULL,
    ranges     text NOT NULL,              -- "3-7,9-9"
    count      bigint NOT NULL,
    root       bytea NOT NULL,
    archive    text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (tenant_id, event_seq)
);

CREATE TABLE legal_holds (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    name        text NOT NULL,
    reason      text NOT NULL,
    filter      text NOT NULL,             -- JSON object of search parameters
    created_at  bigint NOT NULL,
    created_by  text NOT NULL,
    released_at bigint,
    released_by text
);

-- Retention rule sets by fingerprint, with when a server first ran with each
-- (`retention.min_delay` counts from there).
CREATE TABLE retention_rule_sets (
    fingerprint text PRIMARY KEY,
    first_seen  bigint NOT NULL
);
