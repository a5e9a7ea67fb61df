-- The rater protocol of a study: practice items with feedback, a screening (qualification) set
-- with a pass mark, silent gold items mixed into the session, a workload cap and breaks; and the
-- step flag (the first wrong line a rater points at after answering "wrong").
ALTER TABLE studies ADD COLUMN practice_items BIGINT NOT NULL DEFAULT 0 CHECK (practice_items >= 0);
ALTER TABLE studies ADD COLUMN screening_items BIGINT NOT NULL DEFAULT 0 CHECK (screening_items >= 0);
ALTER TABLE studies ADD COLUMN screening_pass_accuracy DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE studies ADD COLUMN gold_rate DOUBLE PRECISION NOT NULL DEFAULT 0;
-- The paper's raters worked at most 4 hours; time on items, not wall-clock time.
ALTER TABLE studies ADD COLUMN max_rater_ms BIGINT NOT NULL DEFAULT 14400000 CHECK (max_rater_ms > 0);
-- 0 = no breaks.
ALTER TABLE studies ADD COLUMN break_every BIGINT NOT NULL DEFAULT 0 CHECK (break_every >= 0);

-- Set once, when a rater has answered the whole screening set; NULL before (or without one).
ALTER TABLE raters ADD COLUMN screening_correct BIGINT;
ALTER TABLE raters ADD COLUMN screening_passed BOOLEAN;

-- The first wrong step (1-based line of the solution as raters see it), only on 'wrong' verdicts.
ALTER TABLE judgements ADD COLUMN first_wrong_step BIGINT CHECK (first_wrong_step >= 1);

-- Solutions with known correctness used to train (practice), admit (screening) and watch
-- (gold) raters. They come from problems outside the study and are never study items.
CREATE TABLE quality_items (
    study_id    UUID NOT NULL REFERENCES studies (id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('practice', 'screening', 'gold')),
    position    BIGINT NOT NULL,
    solution_id UUID NOT NULL REFERENCES solutions (id),
    is_correct  BOOLEAN NOT NULL,
    PRIMARY KEY (study_id, purpose, position),
    UNIQUE (study_id, solution_id)
);

-- Raters' answers to quality items: kept apart from assignments and judgements, so no study
-- figure, report or download can include them.
CREATE TABLE quality_attempts (
    id                UUID PRIMARY KEY,
    study_id          UUID NOT NULL REFERENCES studies (id),
    rater_id          UUID NOT NULL REFERENCES raters (id),
    solution_id       UUID NOT NULL REFERENCES solutions (id),
    purpose           TEXT NOT NULL CHECK (purpose IN ('practice', 'screening', 'gold')),
    is_correct        BOOLEAN NOT NULL,
    served_at         BIGINT NOT NULL,
    deadline          BIGINT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('active', 'judged')),
    verdict           TEXT CHECK (verdict IN ('correct', 'wrong', 'timeout')),
    submitted_at      BIGINT,
    server_elapsed_ms BIGINT,
    client_elapsed_ms BIGINT,
    first_wrong_step  BIGINT CHECK (first_wrong_step >= 1),
    UNIQUE (rater_id, solution_id)
);
CREATE UNIQUE INDEX quality_attempts_one_active_per_rater ON quality_attempts (rater_id) WHERE state = 'active';
CREATE INDEX quality_attempts_by_study ON quality_attempts (study_id, rater_id);
