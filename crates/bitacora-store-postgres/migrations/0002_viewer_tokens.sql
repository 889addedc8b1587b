-- Viewer tokens (CONTRACT §3 `POST /v1/viewer-tokens`): short-lived, read-only, pinned to one
-- tenant. Like API keys, only the SHA-256 of the secret is stored; every server sharing this
-- database sees an issued or revoked token within its 1 s credential cache.
CREATE TABLE viewer_tokens (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE,
    created_at  bigint NOT NULL,
    expires_at  bigint NOT NULL,
    created_by  text NOT NULL,
    revoked     boolean NOT NULL DEFAULT false
);
CREATE INDEX viewer_tokens_expiry ON viewer_tokens (expires_at);
