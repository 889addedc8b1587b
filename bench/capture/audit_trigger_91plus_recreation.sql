-- COMPARATOR FOR BENCHMARKS ONLY — NOT PART OF BITACORA.
--
-- A re-creation of 2ndQuadrant's audit-trigger (github.com/2ndQuadrant/audit-trigger, the
-- PostgreSQL wiki's "Audit trigger 91plus"), written here from its published design, since the
-- original cannot be downloaded on this machine:
--   * one table audit.logged_actions: bigserial event_id, schema and table name, relid, session
--     user, three timestamps (transaction, statement, clock), txid, application_name, client
--     address and port, the client's query text, a one-letter action, row_data and
--     changed_fields as hstore, statement_only;
--   * indexes on relid, the statement timestamp and action;
--   * one SECURITY DEFINER trigger function for row and statement level: the whole row as hstore
--     (minus excluded columns), for an UPDATE the changed fields as hstore difference, skipping
--     updates that change nothing; the query text is recorded (its default).
-- Needs hstore.

CREATE EXTENSION IF NOT EXISTS hstore;
CREATE SCHEMA IF NOT EXISTS audit91;

CREATE TABLE IF NOT EXISTS audit91.logged_actions (
    event_id          bigserial PRIMARY KEY,
    schema_name       text NOT NULL,
    table_name        text NOT NULL,
    relid             oid NOT NULL,
    session_user_name text,
    action_tstamp_tx  timestamptz NOT NULL,
    action_tstamp_stm timestamptz NOT NULL,
    action_tstamp_clk timestamptz NOT NULL,
    transaction_id    bigint,
    application_name  text,
    client_addr       inet,
    client_port       integer,
    client_query      text,
    action            text NOT NULL CHECK (action IN ('I', 'D', 'U', 'T')),
    row_data          hstore,
    changed_fields    hstore,
    statement_only    boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS la_relid ON audit91.logged_actions (relid);
CREATE INDEX IF NOT EXISTS la_stm ON audit91.logged_actions (action_tstamp_stm);
CREATE INDEX IF NOT EXISTS la_action ON audit91.logged_actions (action);

CREATE OR REPLACE FUNCTION audit91.if_modified() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    entry    audit91.logged_actions;
    excluded text[] := '{}';
BEGIN
    entry := ROW(nextval('audit91.logged_actions_event_id_seq'), TG_TABLE_SCHEMA::text,
                 TG_TABLE_NAME::text, TG_RELID, session_user::text, current_timestamp,
                 statement_timestamp(), clock_timestamp(), txid_current(),
                 current_setting('application_name'), inet_client_addr(), inet_client_port(),
                 current_query(), substring(TG_OP, 1, 1), NULL, NULL, 'f');
    IF TG_ARGV[0] IS NOT NULL AND NOT TG_ARGV[0]::boolean THEN
        entry.client_query := NULL;
    END IF;
    IF TG_ARGV[1] IS NOT NULL THEN
        excluded := TG_ARGV[1]::text[];
    END IF;
    IF TG_LEVEL = 'ROW' AND TG_OP = 'UPDATE' THEN
        entry.row_data := hstore(OLD.*) - excluded;
        entry.changed_fields := (hstore(NEW.*) - entry.row_data) - excluded;
        IF entry.changed_fields = hstore('') THEN
            RETURN NULL;
        END IF;
    ELSIF TG_LEVEL = 'ROW' AND TG_OP = 'DELETE' THEN
        entry.row_data := hstore(OLD.*) - excluded;
    ELSIF TG_LEVEL = 'ROW' AND TG_OP = 'INSERT' THEN
        entry.row_data := hstore(NEW.*) - excluded;
    ELSIF TG_LEVEL = 'STATEMENT' THEN
        entry.statement_only := 't';
    ELSE
        RAISE EXCEPTION 'audit91.if_modified: unexpected % %', TG_OP, TG_LEVEL;
    END IF;
    INSERT INTO audit91.logged_actions VALUES (entry.*);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION audit91.enable(rel regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER audit_trigger_row AFTER INSERT OR UPDATE OR DELETE ON %s
                    FOR EACH ROW EXECUTE FUNCTION audit91.if_modified(true)', rel);
    EXECUTE format('CREATE TRIGGER audit_trigger_stm AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION audit91.if_modified(true)', rel);
END $$;
