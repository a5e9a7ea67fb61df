-- The candle worker: a job queue with leases, checkpoints backed by model files, and the
-- bookkeeping that makes generation jobs idempotent across retries.

-- One row per background job. A worker claims a job by taking its lease (owner, a fresh token
-- per claim, expiry); a worker that dies stops renewing, the lease expires and another worker
-- retries the job. Every write a worker makes is fenced by the lease token, so a worker that
-- lost its lease can no longer change the job.
CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL,
    params           TEXT NOT NULL,
    study_id         UUID REFERENCES studies (id),
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress_done    BIGINT NOT NULL DEFAULT 0 CHECK (progress_done >= 0),
    progress_total   BIGINT NOT NULL DEFAULT 0 CHECK (progress_total >= 0),
    attempts         BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     BIGINT NOT NULL CHECK (max_attempts > 0),
    lease_owner      TEXT,
    lease_token      UUID,
    lease_expires_at BIGINT,
    error            TEXT,
    created_by       UUID REFERENCES users (id),
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_study ON jobs (study_id);

-- Units of a job whose results are committed: a chunk's results and its row here are written
-- in one transaction, so a retried job skips finished chunks and never writes them twice.
CREATE TABLE job_chunks (
    job_id      UUID NOT NULL REFERENCES jobs (id),
    chunk_key   TEXT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, chunk_key)
);

-- Where a checkpoint's model files live, relative to the models directory; NULL for checkpoints
-- that only label imported solutions.
ALTER TABLE checkpoints ADD COLUMN model_dir TEXT;
