-- The grader's three-valued outcome per solution: a solution that states no final answer is
-- 'ungradable' (its correctness is unknown). It is stored like any other, so nothing a user
-- imports is lost, but never becomes a study item or quality item. `is_correct` stays (true
-- only for 'correct') for the code that needs a yes/no. Existing rows were graded before
-- ungradable existed: their outcome follows their `is_correct`.
ALTER TABLE solutions ADD COLUMN grade TEXT NOT NULL DEFAULT 'incorrect'
    CHECK (grade IN ('correct', 'incorrect', 'ungradable'));
UPDATE solutions SET grade = CASE WHEN is_correct THEN 'correct' ELSE 'incorrect' END;

-- How many ungradable solutions matching a study's choice (or generated for it) were left out,
-- so the study page and report can say so.
ALTER TABLE studies ADD COLUMN ungradable_left_out BIGINT NOT NULL DEFAULT 0
    CHECK (ungradable_left_out >= 0);
