-- bitacora capture, schema version 3: only the installing role writes.
--
-- Versions 1 and 2 ran the triggers as the role whose write fired them, so every role
-- (PUBLIC) had to be able to use the schema, INSERT into the outbox and call the masking
-- function, and with that any role could insert a made-up outbox row (drained as a trusted
-- `db_trigger` event) or hash a guess with the masking key. Since version 3 the trigger
-- functions are SECURITY DEFINER (sql/functions.sql): they run as the installing role, which
-- owns the schema and everything in it, and no other role needs, or has, any privilege here.
-- The drain connects as that role or as one granted what docs/CAPTURE.md lists.
REVOKE ALL ON SCHEMA bitacora_capture FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA bitacora_capture FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA bitacora_capture FROM PUBLIC;
