-- Training runs of the checkability game (a job of kind 'training_run'): what each finished
-- prover step and each finished round produced. A worker writes a row in the same fenced
-- transaction as the job's progress, so a retried run resumes after its last finished step,
-- and a round's prover is registered as a checkpoint exactly once, in the transaction that
-- records the round.

-- One row per finished prover step: the step's record (its prover folder relative to the
-- run's folder, reward, kept samples, metrics) as JSON.
CREATE TABLE game_steps (
    job_id      BLOB NOT NULL REFERENCES jobs (id),
    round       INTEGER NOT NULL CHECK (round >= 1),
    step        INTEGER NOT NULL CHECK (step >= 1),
    record      TEXT NOT NULL,
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, round, step)
);

-- One row per finished round: its report (metrics on held-out problems, steps, stop rule) as
-- JSON, and the checkpoint of the round's prover (the initial prover's for round 0).
CREATE TABLE game_rounds (
    job_id        BLOB NOT NULL REFERENCES jobs (id),
    round         INTEGER NOT NULL CHECK (round >= 0),
    checkpoint_id BLOB NOT NULL REFERENCES checkpoints (id),
    report        TEXT NOT NULL,
    finished_at   INTEGER NOT NULL,
    PRIMARY KEY (job_id, round)
);
