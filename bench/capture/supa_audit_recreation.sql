-- COMPARATOR FOR BENCHMARKS ONLY — NOT PART OF BITACORA.
--
-- A re-creation of supabase's supa_audit (github.com/supabase/supa_audit), written here from its
-- published design, since the original cannot be downloaded on this machine:
--   * one table audit.record_version: bigserial id, record_id / old_record_id (UUIDv5 of the
--     table oid and the primary key values), an operation enum, ts default now(), table oid,
--     schema and name, and the whole new and old rows as jsonb;
--   * indexes: record_id and old_record_id (partial), a BRIN on ts, table_oid;
--   * a SECURITY DEFINER row trigger that looks the primary key columns up in pg_index for
--     every row, converts NEW and OLD with to_jsonb, derives both record ids, and inserts;
--   * a statement-level TRUNCATE trigger.
-- Needs uuid-ossp (uuid_generate_v5).

CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE SCHEMA IF NOT EXISTS audit;
DO $$ BEGIN
    CREATE TYPE audit.operation AS ENUM ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE IF NOT EXISTS audit.record_version (
    id            bigserial PRIMARY KEY,
    record_id     uuid,
    old_record_id uuid,
    op            audit.operation NOT NULL,
    ts            timestamptz NOT NULL DEFAULT now(),
    table_oid     oid NOT NULL,
    table_schema  name NOT NULL,
    table_name    name NOT NULL,
    record        jsonb,
    old_record    jsonb
);
CREATE INDEX IF NOT EXISTS rv_record_id ON audit.record_version (record_id) WHERE record_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rv_old_record_id ON audit.record_version (old_record_id) WHERE old_record_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rv_ts ON audit.record_version USING brin (ts);
CREATE INDEX IF NOT EXISTS rv_table_oid ON audit.record_version (table_oid);

CREATE OR REPLACE FUNCTION audit.pk_columns(rel oid) RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}')
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = rel AND i.indisprimary
$$;

CREATE OR REPLACE FUNCTION audit.record_uuid(rel oid, cols text[], rec jsonb) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN rec IS NULL THEN NULL
                ELSE (SELECT uuid_generate_v5('fd62bc3d-8d6e-43c2-919c-802ba3762271',
                                              (jsonb_build_array(to_jsonb(rel)) || jsonb_agg(rec ->> c))::text)
                      FROM unnest(cols) AS c)
           END
$$;

CREATE OR REPLACE FUNCTION audit.row_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    cols    text[] := audit.pk_columns(TG_RELID);
    new_doc jsonb := to_jsonb(NEW);
    old_doc jsonb := to_jsonb(OLD);
BEGIN
    INSERT INTO audit.record_version
        (record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record)
    VALUES
        (audit.record_uuid(TG_RELID, cols, new_doc), audit.record_uuid(TG_RELID, cols, old_doc),
         TG_OP::audit.operation, TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, new_doc, old_doc);
    RETURN coalesce(NEW, OLD);
END $$;

CREATE OR REPLACE FUNCTION audit.truncate_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    INSERT INTO audit.record_version (op, table_oid, table_schema, table_name)
    VALUES (TG_OP::audit.operation, TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION audit.enable(rel regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER audit_i_u_d AFTER INSERT OR UPDATE OR DELETE ON %s
                    FOR EACH ROW EXECUTE FUNCTION audit.row_trigger()', rel);
    EXECUTE format('CREATE TRIGGER audit_t AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION audit.truncate_trigger()', rel);
END $$;
