-- bitacora capture, schema version 2: a cheaper outbox insert for the triggers.
--
-- The CHECK on `op` is dropped: PostgreSQL prepares a table's CHECK expressions again for every
-- INSERT a trigger runs, and that alone cost about 8 µs of each captured row (BENCHMARKS.md).
-- Only the triggers write `op` (as TG_OP: 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'); rows of
-- version 1 hold it lower-cased, and the drain reads both.
ALTER TABLE bitacora_capture.outbox DROP CONSTRAINT IF EXISTS outbox_op_check;

-- The key's column names, as the trigger's text[] literal (e.g. `{org,lang}`). The drain builds
-- `pk` from them and the row's values, off the application's transaction; `pk` stays for the
-- rows written by version 1 triggers.
ALTER TABLE bitacora_capture.outbox ADD COLUMN key_columns text;
