-- bitacora capture, schema version 1: the tables. Applied once, in the installing transaction.
-- The triggers run as the role whose write fires them (no SECURITY DEFINER on the hot path:
-- it cost throughput, BENCHMARKS.md), so every role may INSERT into the outbox and read the
-- drain's state, and nothing else: no role but the owner reads or deletes outbox rows, and the
-- masking key is read only through a SECURITY DEFINER function.

CREATE SCHEMA IF NOT EXISTS bitacora_capture;
REVOKE ALL ON SCHEMA bitacora_capture FROM PUBLIC;

-- schema_version, install_id (the source identity in drained event ids), installed_at.
CREATE TABLE bitacora_capture.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- The masking key, as HMAC-SHA256's two padded keys (key XOR ipad, key XOR opad), so the
-- trigger computes the HMAC with the built-in sha256() and needs no extension.
CREATE TABLE bitacora_capture.mask_key (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64)
);

-- One row per captured table: the record of what `install` configured. The triggers get
-- the same settings as arguments, so capturing a row reads no table.
CREATE TABLE bitacora_capture.tables (
    relid        oid PRIMARY KEY,
    schema_name  text NOT NULL,
    table_name   text NOT NULL,
    key_columns  text[] NOT NULL,
    excluded     text[] NOT NULL DEFAULT '{}',
    masked       text[] NOT NULL DEFAULT '{}',
    full_rows    boolean NOT NULL DEFAULT false,
    installed_at timestamptz NOT NULL DEFAULT now()
);

-- Whether the drain is waiting for a NOTIFY. The triggers notify only then: NOTIFY takes a
-- cluster-wide lock at commit, which halved a busy application's throughput when every
-- transaction sent one. While the drain is busy it needs no wake-up.
CREATE TABLE bitacora_capture.drain_state (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    listening boolean NOT NULL DEFAULT false
);
INSERT INTO bitacora_capture.drain_state DEFAULT VALUES;

-- The outbox: one row per captured change, written in the application's own transaction,
-- drained (then deleted) by `bitacora serve`.
CREATE TABLE bitacora_capture.outbox (
    id          bigserial PRIMARY KEY,
    txid        bigint NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    op          text NOT NULL CHECK (op IN ('insert', 'update', 'delete', 'truncate')),
    -- The primary key as [[column, value], ...] in the key's column order.
    pk          jsonb,
    -- The row before (update, delete) and after (insert, update). Excluded columns are
    -- absent, masked ones are keyed hashes; the drain keeps only the changed columns.
    old_values  jsonb,
    new_values  jsonb,
    -- Whether the events carry the whole rows (metadata.before/after).
    full_rows   boolean NOT NULL DEFAULT false,
    actor_id    text,
    actor_name  text,
    actor_email text,
    actor_type  text,
    ip          text,
    user_agent  text,
    request_id  text,
    occurred_at timestamptz NOT NULL DEFAULT statement_timestamp()
);

GRANT USAGE ON SCHEMA bitacora_capture TO PUBLIC;
GRANT INSERT ON bitacora_capture.outbox TO PUBLIC;
GRANT USAGE ON SEQUENCE bitacora_capture.outbox_id_seq TO PUBLIC;
GRANT SELECT ON bitacora_capture.drain_state TO PUBLIC;
