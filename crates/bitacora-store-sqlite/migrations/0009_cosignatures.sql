-- Witness cosignatures (CONTRACT §11): the C2SP `cosignature/v1` lines witnesses returned for a
-- tenant's checkpoints, verified against the witness policy's keys before they were stored.
-- A checkpoint is identified by its tree size (a log never signs a size twice); the served
-- checkpoint is its stored note followed by these lines.
CREATE TABLE cosignatures (
    tenant_id   INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    witness     TEXT NOT NULL,
    key_id      INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    line        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, size, witness, key_id)
) WITHOUT ROWID;

-- Each witness's newest cosignature per tenant: where its next submission starts from.
CREATE INDEX cosignatures_witness ON cosignatures (tenant_id, witness, key_id, size);

-- The origin line of each tenant's log (CONTRACT §11: `<integrity.origin_prefix>/<tenant>`),
-- fixed when the log's first checkpoint is signed, so that changing the prefix later never
-- changes an existing log's origin. A log with checkpoints and no row here is older than this
-- table: its origin is the one its checkpoints carry (`bitacora/<tenant>`).
CREATE TABLE log_origins (
    tenant TEXT PRIMARY KEY,
    origin TEXT NOT NULL
);
