-- The report at a million judgements (issue 21, part 5). The server keeps a study's report
-- attempts in memory and, per request, reads only the judgements inserted since (by rowid: SQLite
-- has one writer, so a new row's rowid is above every committed one). Anything else that changes
-- what a report reads bumps a revision here, from triggers, so no write path can forget it; a
-- changed revision makes the next report read the study afresh. The nil id is every study's.
CREATE TABLE report_revisions (
    study_id BLOB PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE TRIGGER judgement_updated_for_reports AFTER UPDATE ON judgements
BEGIN
    INSERT OR IGNORE INTO report_revisions (study_id, revision) VALUES (OLD.study_id, 0);
    INSERT OR IGNORE INTO report_revisions (study_id, revision) VALUES (NEW.study_id, 0);
    UPDATE report_revisions SET revision = revision + 1 WHERE study_id IN (OLD.study_id, NEW.study_id);
END;
CREATE TRIGGER judgement_deleted_for_reports AFTER DELETE ON judgements
BEGIN
    INSERT OR IGNORE INTO report_revisions (study_id, revision) VALUES (OLD.study_id, 0);
    UPDATE report_revisions SET revision = revision + 1 WHERE study_id = OLD.study_id;
END;
CREATE TRIGGER solution_changed_for_reports
AFTER UPDATE OF problem_id, checkpoint_id, role, is_correct ON solutions
BEGIN
    INSERT OR IGNORE INTO report_revisions (study_id, revision) VALUES (zeroblob(16), 0);
    UPDATE report_revisions SET revision = revision + 1 WHERE study_id = zeroblob(16);
END;
CREATE TRIGGER solution_deleted_for_reports AFTER DELETE ON solutions
BEGIN
    INSERT OR IGNORE INTO report_revisions (study_id, revision) VALUES (zeroblob(16), 0);
    UPDATE report_revisions SET revision = revision + 1 WHERE study_id = zeroblob(16);
END;
CREATE TRIGGER checkpoint_changed_for_reports AFTER UPDATE OF label, round ON checkpoints
BEGIN
    INSERT OR IGNORE INTO report_revisions (study_id, revision) VALUES (zeroblob(16), 0);
    UPDATE report_revisions SET revision = revision + 1 WHERE study_id = zeroblob(16);
END;
-- The counts per verdict that the studies list shows, from the index alone.
CREATE INDEX judgements_by_study_verdict ON judgements (study_id, verdict);
-- Downloads stream in serving order without sorting a study's judgements first.
CREATE INDEX judgements_in_serving_order ON judgements (study_id, served_at, id);
