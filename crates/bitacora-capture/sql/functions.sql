-- bitacora capture: the trigger functions. Re-created by every `install` (CREATE OR REPLACE),
-- so upgrading bitacora upgrades them.
--
-- SECURITY DEFINER: they run as the installing role, which alone can write the outbox and
-- read the masking key. search_path is pinned so a caller cannot shadow anything they use.

-- The keyed hash of a masked value: HMAC-SHA256(key, the value's JSON text), hex.
CREATE OR REPLACE FUNCTION bitacora_capture.mask(value jsonb, inner_pad bytea, outer_pad bytea)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT to_jsonb('hmac-sha256:' || encode(
        sha256(outer_pad || sha256(inner_pad || convert_to(value::text, 'UTF8'))), 'hex'))
$fn$;

-- Row-level AFTER INSERT/UPDATE/DELETE. Arguments (written by `install`):
--   0: key columns (text[] literal, in key order)  1: excluded columns  2: masked columns
--   3: full rows ('t' or 'f')
CREATE OR REPLACE FUNCTION bitacora_capture.capture_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    key_cols text[] := TG_ARGV[0]::text[];
    excluded text[] := TG_ARGV[1]::text[];
    masked   text[] := TG_ARGV[2]::text[];
    full_row boolean := TG_ARGV[3] = 't';
    o        jsonb;
    n        jsonb;
    r        jsonb;
    pk       jsonb;
    col      text;
    ipad     bytea;
    opad     bytea;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        o := to_jsonb(OLD) - excluded;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        n := to_jsonb(NEW) - excluded;
    END IF;
    -- An UPDATE that changes nothing (or only excluded columns) records nothing.
    IF TG_OP = 'UPDATE' AND o = n THEN
        RETURN NULL;
    END IF;

    IF cardinality(masked) > 0 THEN
        SELECT k.inner_pad, k.outer_pad INTO ipad, opad FROM bitacora_capture.mask_key k;
        FOREACH col IN ARRAY masked LOOP
            IF o ? col THEN
                o := jsonb_set(o, ARRAY[col], bitacora_capture.mask(o -> col, ipad, opad));
            END IF;
            IF n ? col THEN
                n := jsonb_set(n, ARRAY[col], bitacora_capture.mask(n -> col, ipad, opad));
            END IF;
        END LOOP;
    END IF;

    r := coalesce(n, o);
    IF cardinality(key_cols) = 1 THEN
        pk := jsonb_build_array(jsonb_build_array(key_cols[1], r -> key_cols[1]));
    ELSE
        SELECT jsonb_agg(jsonb_build_array(k.c, r -> k.c) ORDER BY k.i) INTO pk
        FROM unnest(key_cols) WITH ORDINALITY AS k(c, i);
    END IF;

    -- Without full rows, an UPDATE keeps only the changed columns.
    IF TG_OP = 'UPDATE' AND NOT full_row THEN
        SELECT jsonb_object_agg(e.key, o -> e.key), jsonb_object_agg(e.key, e.value)
        INTO o, n
        FROM jsonb_each(n) AS e
        WHERE (o -> e.key) IS DISTINCT FROM e.value;
    END IF;

    INSERT INTO bitacora_capture.outbox
        (txid, schema_name, table_name, op, pk, old_values, new_values, full_rows,
         actor_id, actor_name, actor_email, actor_type, ip, user_agent, request_id)
    VALUES
        (txid_current(), TG_TABLE_SCHEMA, TG_TABLE_NAME, lower(TG_OP), pk, o, n, full_row,
         nullif(current_setting('bitacora.actor_id', true), ''),
         nullif(current_setting('bitacora.actor_name', true), ''),
         nullif(current_setting('bitacora.actor_email', true), ''),
         nullif(current_setting('bitacora.actor_type', true), ''),
         nullif(current_setting('bitacora.ip', true), ''),
         nullif(current_setting('bitacora.user_agent', true), ''),
         nullif(current_setting('bitacora.request_id', true), ''));

    -- Wake the drain once per transaction (a transaction-local flag; NOTIFY is delivered
    -- at commit, and not at all on rollback).
    IF coalesce(current_setting('bitacora_capture.notified', true), '') = '' THEN
        PERFORM pg_notify('bitacora_capture', '');
        PERFORM set_config('bitacora_capture.notified', 't', true);
    END IF;
    RETURN NULL;
END
$fn$;

-- Statement-level AFTER TRUNCATE: one outbox row for the whole table.
CREATE OR REPLACE FUNCTION bitacora_capture.capture_truncate()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    INSERT INTO bitacora_capture.outbox
        (txid, schema_name, table_name, op,
         actor_id, actor_name, actor_email, actor_type, ip, user_agent, request_id)
    VALUES
        (txid_current(), TG_TABLE_SCHEMA, TG_TABLE_NAME, 'truncate',
         nullif(current_setting('bitacora.actor_id', true), ''),
         nullif(current_setting('bitacora.actor_name', true), ''),
         nullif(current_setting('bitacora.actor_email', true), ''),
         nullif(current_setting('bitacora.actor_type', true), ''),
         nullif(current_setting('bitacora.ip', true), ''),
         nullif(current_setting('bitacora.user_agent', true), ''),
         nullif(current_setting('bitacora.request_id', true), ''));
    IF coalesce(current_setting('bitacora_capture.notified', true), '') = '' THEN
        PERFORM pg_notify('bitacora_capture', '');
        PERFORM set_config('bitacora_capture.notified', 't', true);
    END IF;
    RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION bitacora_capture.capture_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION bitacora_capture.capture_truncate() FROM PUBLIC;
REVOKE ALL ON FUNCTION bitacora_capture.mask(jsonb, bytea, bytea) FROM PUBLIC;
