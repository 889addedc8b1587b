-- bitacora capture: the trigger functions. Re-created by every `install` (CREATE OR REPLACE),
-- so upgrading bitacora upgrades them.
--
-- Since schema version 3 the trigger functions run as the installing role (SECURITY DEFINER),
-- the owner of the schema: the outbox, the masking key and these functions are that role's
-- alone, and the role whose write fires a trigger needs no privilege on any of them. Every
-- function pins its search_path (pg_catalog, then pg_temp last), so a caller cannot shadow a
-- function or operator it uses; objects are named with their schema all the same. Triggers do
-- not need EXECUTE on their function to fire, so no role but the owner may call any of them.

-- The keyed hash of a masked value: HMAC-SHA256(key, the value's JSON text), hex.
CREATE OR REPLACE FUNCTION bitacora_capture.mask(value jsonb, inner_pad bytea, outer_pad bytea)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT to_jsonb('hmac-sha256:' || encode(
        sha256(outer_pad || sha256(inner_pad || convert_to(value::text, 'UTF8'))), 'hex'))
$fn$;

-- Replaces each of `cols` present in `doc` by its keyed hash. Called by the triggers, as the
-- owner (the only role that may read the key or run this: anyone else could hash guesses and
-- compare them with the hashes in the log). Versions 1 and 2 made it SECURITY DEFINER and
-- executable by PUBLIC; CREATE OR REPLACE keeps a function's grants, hence the REVOKE below.
CREATE OR REPLACE FUNCTION bitacora_capture.mask_columns(doc jsonb, cols text[])
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ipad bytea;
    opad bytea;
    col  text;
BEGIN
    SELECT k.inner_pad, k.outer_pad INTO ipad, opad FROM bitacora_capture.mask_key k;
    FOREACH col IN ARRAY cols LOOP
        IF doc ? col THEN
            doc := jsonb_set(doc, ARRAY[col], bitacora_capture.mask(doc -> col, ipad, opad));
        END IF;
    END LOOP;
    RETURN doc;
END
$fn$;

-- Row-level AFTER INSERT/UPDATE/DELETE. Arguments (written by `install`):
--   0: key columns (text[] literal, in key order)  1: excluded columns  2: masked columns
--   3: full rows ('t' or 'f')
-- This runs once per changed row inside the application's transaction, so it does the least it
-- can and leaves the rest to the drain (BENCHMARKS.md, "Capture trigger overhead"): it writes
-- the whole rows (the drain keeps the changed columns), the key's column names as the
-- argument's text (the drain reads the key's values from the row) and TG_OP as it is (the
-- drain lower-cases it). Each of those cost measurable time per row here, nothing there.
-- Since schema version 2, `install` fires this for UPDATE only when the row's binary image
-- changed (`WHEN (OLD *<> NEW)`), so a no-op update does not even queue the trigger; the
-- comparison below still decides, after dropping excluded columns, whether anything changed.
CREATE OR REPLACE FUNCTION bitacora_capture.capture_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    o jsonb;
    n jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        n := to_jsonb(NEW);
    ELSIF TG_OP = 'DELETE' THEN
        o := to_jsonb(OLD);
    ELSE
        o := to_jsonb(OLD);
        n := to_jsonb(NEW);
    END IF;
    IF TG_ARGV[1] <> '{}' THEN
        o := o - TG_ARGV[1]::text[];
        n := n - TG_ARGV[1]::text[];
    END IF;
    -- An UPDATE that changes nothing (or only excluded columns) records nothing.
    IF TG_OP = 'UPDATE' AND o = n THEN
        RETURN NULL;
    END IF;
    IF TG_ARGV[2] <> '{}' THEN
        o := bitacora_capture.mask_columns(o, TG_ARGV[2]::text[]);
        n := bitacora_capture.mask_columns(n, TG_ARGV[2]::text[]);
    END IF;

    INSERT INTO bitacora_capture.outbox
        (txid, schema_name, table_name, op, key_columns, old_values, new_values, full_rows,
         actor_id, actor_name, actor_email, actor_type, ip, user_agent, request_id)
    VALUES
        (txid_current(), TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, TG_ARGV[0], o, n, TG_ARGV[3] = 't',
         nullif(current_setting('bitacora.actor_id', true), ''),
         nullif(current_setting('bitacora.actor_name', true), ''),
         nullif(current_setting('bitacora.actor_email', true), ''),
         nullif(current_setting('bitacora.actor_type', true), ''),
         nullif(current_setting('bitacora.ip', true), ''),
         nullif(current_setting('bitacora.user_agent', true), ''),
         nullif(current_setting('bitacora.request_id', true), ''));

    -- Once per transaction (a transaction-local flag): wake the drain if it is waiting.
    -- NOTIFY is delivered at commit, and not at all on rollback.
    IF current_setting('bitacora_capture.notified', true) IS DISTINCT FROM 't' THEN
        PERFORM set_config('bitacora_capture.notified', 't', true);
        IF (SELECT d.listening FROM bitacora_capture.drain_state d) THEN
            PERFORM pg_notify('bitacora_capture', '');
        END IF;
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
        (txid_current(), TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP,
         nullif(current_setting('bitacora.actor_id', true), ''),
         nullif(current_setting('bitacora.actor_name', true), ''),
         nullif(current_setting('bitacora.actor_email', true), ''),
         nullif(current_setting('bitacora.actor_type', true), ''),
         nullif(current_setting('bitacora.ip', true), ''),
         nullif(current_setting('bitacora.user_agent', true), ''),
         nullif(current_setting('bitacora.request_id', true), ''));
    IF current_setting('bitacora_capture.notified', true) IS DISTINCT FROM 't' THEN
        PERFORM set_config('bitacora_capture.notified', 't', true);
        IF (SELECT d.listening FROM bitacora_capture.drain_state d) THEN
            PERFORM pg_notify('bitacora_capture', '');
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

-- The privilege model (schema version 3), asserted again by every install: nothing for PUBLIC.
REVOKE ALL ON FUNCTION bitacora_capture.mask(jsonb, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION bitacora_capture.mask_columns(jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION bitacora_capture.capture_row() FROM PUBLIC;
REVOKE ALL ON FUNCTION bitacora_capture.capture_truncate() FROM PUBLIC;
REVOKE ALL ON SCHEMA bitacora_capture FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA bitacora_capture FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA bitacora_capture FROM PUBLIC;
