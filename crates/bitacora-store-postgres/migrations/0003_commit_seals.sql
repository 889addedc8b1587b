-- Commit seals (bitacora_core::seal): per tenant, the writers' own keyed record of the log
-- they committed, upserted in the same transaction as every append made with a commit key
-- (under the tenant's row lock). The checkpointer signs only what a seal explains, so a row
-- inserted by hand is never signed. `mac` is an HMAC keyed by a secret kept outside the
-- database: every server writing to one database must share the signing key file.
CREATE TABLE commit_seals (
    tenant_id integer PRIMARY KEY,
    size      bigint NOT NULL,
    root      bytea NOT NULL,
    base      bigint NOT NULL,
    mac       bytea NOT NULL
);
