-- Login throttling per (account, client address) with growing delays. It replaces 0006's count
-- per username, with which anyone could lock an account out by failing five times. A row with
-- username '' counts one address's failures over every account (password spraying); usernames
-- are never empty. Rows are forgotten an hour after their last failure.
DROP TABLE login_failures;
CREATE TABLE login_throttle (
    username       TEXT NOT NULL,
    address        TEXT NOT NULL,
    failures       BIGINT NOT NULL,
    last_failed_at BIGINT NOT NULL,
    PRIMARY KEY (username, address)
);
CREATE INDEX login_throttle_by_age ON login_throttle (last_failed_at);

-- Staff sessions can be listed and ended: an id to name one by (the token's hash is never shown),
-- when it was last used, and the address and browser it was opened from.
ALTER TABLE sessions ADD COLUMN id UUID NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE sessions ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
UPDATE sessions SET last_used_at = created_at;
CREATE UNIQUE INDEX sessions_by_id ON sessions (id);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Personal API tokens for researchers' scripts, stored as SHA-256 like every other token. A
-- revoked token is deleted; an expired one stays listed (as expired) until revoked.
CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_sha    TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    UNIQUE (user_id, name)
);
