-- Panel entry (Prolific and similar): one secret entry link per study, the names of the URL
-- parameters the panel fills in, and a per-study secret from which each participant's rater
-- token is derived, so the same participant ID resumes in any browser.
CREATE TABLE study_panels (
    study_id      BLOB PRIMARY KEY REFERENCES studies (id),
    link          TEXT NOT NULL UNIQUE,
    secret        TEXT NOT NULL,
    id_param      TEXT NOT NULL,
    study_param   TEXT,
    session_param TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- A rater who came through the panel link: the panel's participant ID (unique per study), and
-- the panel's study and session IDs as the latest entry gave them. Invited raters have none.
ALTER TABLE raters ADD COLUMN participant_id TEXT;
ALTER TABLE raters ADD COLUMN panel_study_id TEXT;
ALTER TABLE raters ADD COLUMN panel_session_id TEXT;
CREATE UNIQUE INDEX raters_by_participant ON raters (study_id, participant_id);
