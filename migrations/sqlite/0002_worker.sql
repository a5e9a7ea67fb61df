-- The candle worker: a job queue with leases, checkpoints backed by model files, and the
-- bookkeeping that makes generation jobs idempotent across retries.

-- One row per background job. A worker claims a job by taking its lease (owner, a fresh token
-- per claim, expiry); a worker that dies stops renewing, the lease expires and another worker
-- retries the job. Every write a worker makes is fenced by the lease token, so a worker that
-- lost its lease can no longer change the job.
CREATE TABLE jobs (
    id               BLOB PRIMARY KEY,
    kind             TEXT NOT NULL,
    params           TEXT NOT NULL,
    study_id         BLOB REFERENCES studies (id),
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress_done    INTEGER NOT NULL DEFAULT 0 CHECK (progress_done >= 0),
    progress_total   INTEGER NOT NULL DEFAULT 0 CHECK (progress_total >= 0),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_owner      TEXT,
    lease_token      BLOB,
    lease_expires_at INTEGER,
    error            TEXT,
    created_by       BLOB REFERENCES users (id),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_study ON jobs (study_id);

-- Units of a job whose results are committed: a chunk's results and its row here are written
-- in one transaction, so a retried job skips finished chunks and never writes them twice.
CREATE TABLE job_chunks (
    job_id      BLOB NOT NULL REFERENCES jobs (id),
    chunk_key   TEXT NOT NULL,
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, chunk_key)
);

-- Where a checkpoint's model files live, relative to the models directory; NULL for checkpoints
-- that only label imported solutions.
ALTER TABLE checkpoints ADD COLUMN model_dir TEXT;
