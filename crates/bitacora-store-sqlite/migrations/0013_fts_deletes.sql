-- Full-text entries of purged events, waiting to be deleted from the full-text index.
--
-- The index lives in its own file (bitacora-fts.db, `fts.sql`) with its own write lock. A
-- retention purge does not delete the entries itself, inside the transaction that holds the
-- events database's write lock (which every append waits for): it queues each purged event's
-- full-text entry here, in the same transaction as the delete of its row, and the full-text
-- indexer thread deletes the entries from the index (a contentless FTS5 entry is deleted by
-- giving its text again) and then the queued rows. `fts.fts_deleted.upto` records, in the
-- index's own file and in the same transaction as the index deletes, the last queued row
-- applied, so a crash between the two never applies a row twice. Searches join the index
-- with `events`, so an entry whose row is gone never matches meanwhile; the queued text
-- lives until the indexer's next turn (a fraction of a second).
--
-- AUTOINCREMENT: ids are never reused once the queue has been emptied, since `upto` only
-- grows.
CREATE TABLE fts_deletes (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    pos  INTEGER NOT NULL,                 -- events.pos of the purged event
    text TEXT NOT NULL                     -- its full-text entry, as the indexer wrote it
);
