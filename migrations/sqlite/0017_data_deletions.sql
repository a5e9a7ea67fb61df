-- Deleting one participant's data on request (issue 20, part 7): what was deleted, when and by
-- whom, without the participant's ID (the rater row stays, anonymised, so the deletion can be
-- accounted for and the ID cannot enter again).
CREATE TABLE data_deletions (
    id              BLOB PRIMARY KEY,
    study_id        BLOB NOT NULL REFERENCES studies (id),
    rater_id        BLOB NOT NULL REFERENCES raters (id),
    judgements      INTEGER NOT NULL,
    quality_answers INTEGER NOT NULL,
    deleted_by      TEXT NOT NULL,
    deleted_at      INTEGER NOT NULL
);
CREATE INDEX data_deletions_by_study ON data_deletions (study_id);
