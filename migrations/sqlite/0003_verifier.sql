-- The verifier: versions trained from the accumulated ratings, and the score each version gave
-- each solution. Scores are research data for staff; no rater-facing query reads these tables.

-- One row per verifier version. A version is a checkpoint (kind 'verifier') whose files live
-- in its model_dir; the row is written only after those files were renamed into place, in the
-- transaction that also ends the training job's claim on it, so a failed or killed run
-- registers nothing. The newest version (highest number) is the current one.
CREATE TABLE verifier_versions (
    checkpoint_id      BLOB PRIMARY KEY REFERENCES checkpoints (id),
    version            INTEGER NOT NULL UNIQUE CHECK (version > 0),
    base_checkpoint_id BLOB REFERENCES checkpoints (id),
    job_id             BLOB UNIQUE REFERENCES jobs (id),
    label_source       TEXT NOT NULL CHECK (label_source IN ('human', 'ground_truth', 'both')),
    loss               TEXT NOT NULL CHECK (loss IN ('bradley_terry', 'cross_entropy')),
    judgements_seen    INTEGER NOT NULL DEFAULT 0 CHECK (judgements_seen >= 0),
    metrics            TEXT NOT NULL DEFAULT '{}',
    created_at         INTEGER NOT NULL
);

-- A verifier version's score of a solution (higher: more convincing). Keyed per version, so
-- scores of different versions sit side by side for comparison.
CREATE TABLE solution_scores (
    checkpoint_id BLOB NOT NULL REFERENCES verifier_versions (checkpoint_id),
    solution_id   BLOB NOT NULL REFERENCES solutions (id),
    score         REAL NOT NULL,
    scored_at     INTEGER NOT NULL,
    PRIMARY KEY (checkpoint_id, solution_id)
);
CREATE INDEX solution_scores_by_solution ON solution_scores (solution_id);

-- One verifier training job queued or running at a time: the automatic trigger of several
-- workers and servers, and an admin's click, cannot start two.
CREATE UNIQUE INDEX jobs_one_verifier_training ON jobs (kind)
    WHERE kind = 'verifier_training' AND state IN ('queued', 'running');
