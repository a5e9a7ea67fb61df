-- Core data model for timed legibility studies (PostgreSQL flavour).
-- Ids are UUIDs (native uuid), times are Unix milliseconds (BIGINT).

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'researcher')),
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_sha  TEXT PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE problem_sets (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE problems (
    id                 UUID PRIMARY KEY,
    problem_set_id     UUID NOT NULL REFERENCES problem_sets (id),
    position           BIGINT NOT NULL,
    question           TEXT NOT NULL,
    question_sha       TEXT NOT NULL,
    ground_truth       TEXT NOT NULL,
    reference_solution TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    UNIQUE (problem_set_id, question_sha)
);

CREATE TABLE checkpoints (
    id         UUID PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('prover', 'verifier')),
    label      TEXT NOT NULL UNIQUE,
    round      BIGINT NOT NULL CHECK (round >= 0),
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);

CREATE TABLE solutions (
    id               UUID PRIMARY KEY,
    problem_id       UUID NOT NULL REFERENCES problems (id),
    checkpoint_id    UUID NOT NULL REFERENCES checkpoints (id),
    role             TEXT NOT NULL CHECK (role IN ('helpful', 'sneaky')),
    text             TEXT NOT NULL,
    text_sha         TEXT NOT NULL,
    extracted_answer TEXT,
    is_correct       BOOLEAN NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (problem_id, checkpoint_id, role, text_sha)
);
CREATE INDEX solutions_by_checkpoint ON solutions (checkpoint_id);

CREATE TABLE studies (
    id                      UUID PRIMARY KEY,
    name                    TEXT NOT NULL UNIQUE,
    time_limit_ms           BIGINT NOT NULL CHECK (time_limit_ms > 0),
    judgements_per_solution BIGINT NOT NULL CHECK (judgements_per_solution > 0),
    reclaim_grace_ms        BIGINT NOT NULL CHECK (reclaim_grace_ms >= 0),
    status                  TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_by              UUID REFERENCES users (id),
    created_at              BIGINT NOT NULL
);

-- The solutions a study judges, with the fields assignment needs (denormalised so serving an item
-- touches one table) and the live slot counter (active + judged assignments) that makes
-- over-assignment impossible.
CREATE TABLE study_solutions (
    study_id      UUID NOT NULL REFERENCES studies (id),
    solution_id   UUID NOT NULL REFERENCES solutions (id),
    problem_id    UUID NOT NULL REFERENCES problems (id),
    checkpoint_id UUID NOT NULL REFERENCES checkpoints (id),
    is_correct    BOOLEAN NOT NULL,
    shuffle_key   BIGINT NOT NULL,
    slots_taken   BIGINT NOT NULL DEFAULT 0 CHECK (slots_taken >= 0),
    PRIMARY KEY (study_id, solution_id)
);
CREATE INDEX study_solutions_by_stratum
    ON study_solutions (study_id, checkpoint_id, is_correct, shuffle_key);

CREATE TABLE raters (
    id         UUID PRIMARY KEY,
    study_id   UUID NOT NULL REFERENCES studies (id),
    name       TEXT NOT NULL,
    token_sha  TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX raters_by_study ON raters (study_id);

CREATE TABLE assignments (
    id          UUID PRIMARY KEY,
    study_id    UUID NOT NULL REFERENCES studies (id),
    rater_id    UUID NOT NULL REFERENCES raters (id),
    solution_id UUID NOT NULL REFERENCES solutions (id),
    problem_id  UUID NOT NULL,
    -- problem_id, checkpoint_id and is_correct are copies of the solution's (no foreign keys:
    -- solution_id already has one), so the per-problem rule and balancing are index lookups.
    checkpoint_id UUID NOT NULL,
    is_correct  BOOLEAN NOT NULL,
    served_at   BIGINT NOT NULL,
    deadline    BIGINT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('active', 'judged', 'abandoned')),
    UNIQUE (study_id, rater_id, problem_id)
);
CREATE UNIQUE INDEX assignments_one_active_per_rater ON assignments (rater_id) WHERE state = 'active';
CREATE INDEX assignments_active_by_deadline ON assignments (study_id, deadline) WHERE state = 'active';
CREATE INDEX assignments_by_rater_stratum ON assignments (rater_id, checkpoint_id, is_correct);

CREATE TABLE judgements (
    -- study_id, rater_id, solution_id are copies of the assignment's (which has the foreign
    -- keys), kept so reports need no join.
    id                UUID PRIMARY KEY,
    assignment_id     UUID NOT NULL UNIQUE REFERENCES assignments (id),
    study_id          UUID NOT NULL,
    rater_id          UUID NOT NULL,
    solution_id       UUID NOT NULL,
    verdict           TEXT NOT NULL CHECK (verdict IN ('correct', 'wrong', 'timeout')),
    served_at         BIGINT NOT NULL,
    deadline          BIGINT NOT NULL,
    submitted_at      BIGINT,
    server_elapsed_ms BIGINT NOT NULL,
    client_elapsed_ms BIGINT
);
CREATE INDEX judgements_by_study ON judgements (study_id, solution_id);

-- The (checkpoint, correctness) kinds present in a study, so serving can balance what each
-- rater sees without scanning all of the study's solutions.
CREATE TABLE study_strata (
    study_id      UUID NOT NULL REFERENCES studies (id),
    checkpoint_id UUID NOT NULL REFERENCES checkpoints (id),
    is_correct    BOOLEAN NOT NULL,
    PRIMARY KEY (study_id, checkpoint_id, is_correct)
);
CREATE INDEX judgements_by_rater ON judgements (rater_id);
