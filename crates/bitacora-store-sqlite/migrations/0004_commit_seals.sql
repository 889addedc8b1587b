-- Commit seals (bitacora_core::seal): per tenant, the writer's own keyed record of the log it
-- committed, upserted in the same transaction as every append made with a commit key. The
-- checkpointer signs only what a seal explains, so a row appended to this file by hand is
-- never signed. `mac` is an HMAC keyed by a secret kept outside the store.
CREATE TABLE commit_seals (
    tenant_id INTEGER PRIMARY KEY,
    size      INTEGER NOT NULL,
    root      BLOB NOT NULL,
    base      INTEGER NOT NULL,
    mac       BLOB NOT NULL
);
