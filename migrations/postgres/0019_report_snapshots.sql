-- The report at a million judgements (issue 21, part 5). The server keeps a study's report
-- attempts in memory and, per request, reads only the judgements inserted since, by `seq`. A
-- sequence value is taken at insert, not at commit, so a reader may see seq 101 before seq 100
-- commits: the reader also counts the study's judgements and reads afresh when the counts
-- disagree. Anything else that changes what a report reads bumps a revision here, from
-- triggers, so no write path can forget it; a changed revision makes the next report read the
-- study afresh. The nil id is every study's.
ALTER TABLE judgements ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE INDEX judgements_by_study_seq ON judgements (study_id, seq);
CREATE TABLE report_revisions (
    study_id UUID PRIMARY KEY,
    revision BIGINT NOT NULL
);
CREATE FUNCTION bump_report_revision(study UUID) RETURNS void LANGUAGE sql AS $$
    INSERT INTO report_revisions (study_id, revision) VALUES (study, 1)
    ON CONFLICT (study_id) DO UPDATE SET revision = report_revisions.revision + 1;
$$;
CREATE FUNCTION judgement_changed_for_reports() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_report_revision(OLD.study_id);
    IF TG_OP = 'UPDATE' AND NEW.study_id <> OLD.study_id THEN
        PERFORM bump_report_revision(NEW.study_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER judgement_changed_for_reports AFTER UPDATE OR DELETE ON judgements
    FOR EACH ROW EXECUTE FUNCTION judgement_changed_for_reports();
CREATE FUNCTION everything_changed_for_reports() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_report_revision('00000000-0000-0000-0000-000000000000');
    RETURN NULL;
END;
$$;
CREATE TRIGGER solution_changed_for_reports
    AFTER UPDATE OF problem_id, checkpoint_id, role, is_correct OR DELETE ON solutions
    FOR EACH ROW EXECUTE FUNCTION everything_changed_for_reports();
CREATE TRIGGER checkpoint_changed_for_reports AFTER UPDATE OF label, round OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION everything_changed_for_reports();
-- The counts per verdict that the studies list shows, from the index alone.
CREATE INDEX judgements_by_study_verdict ON judgements (study_id, verdict);
-- Downloads stream in serving order without sorting a study's judgements first.
CREATE INDEX judgements_in_serving_order ON judgements (study_id, served_at, id);
