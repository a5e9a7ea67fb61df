-- Before the first item (issue 20, parts 2, 3 and 5): a consent text kept per version (what a
-- participant accepted can always be shown), comprehension and background questions as the
-- researcher wrote them (empty: none), each participant's progress through them, a panel's
-- idle limit after which a participant's place is given up, and the failed-quality end.
CREATE TABLE consent_versions (
    study_id   BLOB NOT NULL REFERENCES studies (id),
    version    INTEGER NOT NULL,
    markdown   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (study_id, version)
);
ALTER TABLE studies ADD COLUMN consent_version INTEGER;
ALTER TABLE studies ADD COLUMN comprehension_questions TEXT NOT NULL DEFAULT '';
ALTER TABLE studies ADD COLUMN background_questions TEXT NOT NULL DEFAULT '';
ALTER TABLE raters ADD COLUMN consent_version INTEGER;
ALTER TABLE raters ADD COLUMN consented_at INTEGER;
ALTER TABLE raters ADD COLUMN consent_declined_at INTEGER;
ALTER TABLE raters ADD COLUMN comprehension_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE raters ADD COLUMN comprehension_passed_at INTEGER;
ALTER TABLE raters ADD COLUMN background_answers TEXT;
ALTER TABLE raters ADD COLUMN background_at INTEGER;
ALTER TABLE raters ADD COLUMN idle_at INTEGER;
ALTER TABLE study_panels ADD COLUMN idle_minutes INTEGER;
-- Whether failing the silent gold items ends a participant's study (with its own code).
ALTER TABLE studies ADD COLUMN gold_failure_ends INTEGER NOT NULL DEFAULT 0;
-- Two more ends with their own completion codes: declined consent, failed quality (SQLite
-- cannot change a CHECK, so the table is rebuilt with its rows).
CREATE TABLE panel_completions_next (
    study_id     BLOB NOT NULL REFERENCES studies (id),
    outcome      TEXT NOT NULL CHECK (outcome IN ('completed', 'screened_out', 'out_of_time',
                                                  'declined_consent', 'failed_quality')),
    code         TEXT NOT NULL,
    redirect_url TEXT,
    PRIMARY KEY (study_id, outcome)
);
INSERT INTO panel_completions_next (study_id, outcome, code, redirect_url)
    SELECT study_id, outcome, code, redirect_url FROM panel_completions;
DROP TABLE panel_completions;
ALTER TABLE panel_completions_next RENAME TO panel_completions;
