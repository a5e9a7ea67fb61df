-- Deleting one participant's data on request (issue 20, part 7): what was deleted, when and by
-- whom, without the participant's ID (the rater row stays, anonymised, so the deletion can be
-- accounted for and the ID cannot enter again).
CREATE TABLE data_deletions (
    id              UUID PRIMARY KEY,
    study_id        UUID NOT NULL REFERENCES studies (id),
    rater_id        UUID NOT NULL REFERENCES raters (id),
    judgements      BIGINT NOT NULL,
    quality_answers BIGINT NOT NULL,
    deleted_by      TEXT NOT NULL,
    deleted_at      BIGINT NOT NULL
);
CREATE INDEX data_deletions_by_study ON data_deletions (study_id);
