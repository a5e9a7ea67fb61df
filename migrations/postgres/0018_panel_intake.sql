-- Before the first item (issue 20, parts 2, 3 and 5): a consent text kept per version (what a
-- participant accepted can always be shown), comprehension and background questions as the
-- researcher wrote them (empty: none), each participant's progress through them, a panel's
-- idle limit after which a participant's place is given up, and the failed-quality end.
CREATE TABLE consent_versions (
    study_id   UUID NOT NULL REFERENCES studies (id),
    version    BIGINT NOT NULL,
    markdown   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (study_id, version)
);
ALTER TABLE studies ADD COLUMN consent_version BIGINT;
ALTER TABLE studies ADD COLUMN comprehension_questions TEXT NOT NULL DEFAULT '';
ALTER TABLE studies ADD COLUMN background_questions TEXT NOT NULL DEFAULT '';
ALTER TABLE raters ADD COLUMN consent_version BIGINT;
ALTER TABLE raters ADD COLUMN consented_at BIGINT;
ALTER TABLE raters ADD COLUMN consent_declined_at BIGINT;
ALTER TABLE raters ADD COLUMN comprehension_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE raters ADD COLUMN comprehension_passed_at BIGINT;
ALTER TABLE raters ADD COLUMN background_answers TEXT;
ALTER TABLE raters ADD COLUMN background_at BIGINT;
ALTER TABLE raters ADD COLUMN idle_at BIGINT;
ALTER TABLE study_panels ADD COLUMN idle_minutes BIGINT;
-- Whether failing the silent gold items ends a participant's study (with its own code).
ALTER TABLE studies ADD COLUMN gold_failure_ends BOOLEAN NOT NULL DEFAULT FALSE;
-- Two more ends with their own completion codes: declined consent, failed quality.
ALTER TABLE panel_completions DROP CONSTRAINT panel_completions_outcome_check;
ALTER TABLE panel_completions ADD CONSTRAINT panel_completions_outcome_check
    CHECK (outcome IN ('completed', 'screened_out', 'out_of_time', 'declined_consent',
                       'failed_quality'));
