-- Viewer tokens (CONTRACT §3 `POST /v1/viewer-tokens`): short-lived, read-only, pinned to one
-- tenant. Like API keys, only the SHA-256 of the secret is stored; servers sharing this store
-- all see an issued or revoked token within their 1 s credential cache.
CREATE TABLE viewer_tokens (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    secret_hash BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX viewer_tokens_expiry ON viewer_tokens (expires_at);
