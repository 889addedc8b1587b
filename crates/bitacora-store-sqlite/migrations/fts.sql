-- The full-text index, in its own database file (bitacora-fts.db) so that indexing runs on
-- its own thread with its own write lock, in parallel with the event writer; every
-- connection attaches it as `fts`. It is derived
-- data: deleting the file rebuilds it from the events at the next start.

-- Contentless: only the index is stored; rowid = events.pos.
CREATE VIRTUAL TABLE IF NOT EXISTS fts.events_fts USING fts5 (
    text,
    content = '',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Events of a tenant with seq < upto are indexed.
CREATE TABLE IF NOT EXISTS fts.fts_state (
    tenant_id INTEGER PRIMARY KEY,
    upto      INTEGER NOT NULL
);

-- Rows of `main.fts_deletes` (full-text entries of purged events) with id <= upto have been
-- deleted from the index; written in the same transaction as those deletes. One row. A new
-- index file (rebuilt from the remaining events) starts past every row queued so far: their
-- events' rows are gone, so the rebuild never indexed them.
CREATE TABLE IF NOT EXISTS fts.fts_deleted (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL
);
