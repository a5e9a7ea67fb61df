-- Timing outcomes a researcher can trust. What the rater's page asked for is kept beside the
-- stored verdict, so an honest timeout fired by the page's countdown, a verdict that arrived
-- after the deadline, and a timeout the server recorded with no answer at all can be told
-- apart (see judging::timing_outcome). NULL: nothing arrived (the server recorded the timeout).
ALTER TABLE judgements ADD COLUMN requested_verdict TEXT
    CHECK (requested_verdict IN ('correct', 'wrong', 'timeout'));
-- Earlier rows: an answer in time asked for what was stored, and a timeout that arrived in time
-- can only have been the page's own. A timeout stored for an answer that arrived late stays
-- NULL: whether the page or a late verdict sent it was not recorded.
UPDATE judgements SET requested_verdict = verdict
 WHERE submitted_at IS NOT NULL AND (verdict <> 'timeout' OR submitted_at <= deadline);

-- How often the item was put in front of the rater: 1 when served, +1 for every reload, new
-- tab or reopened link while it ran. More than once is worth knowing when reading its timing.
ALTER TABLE assignments ADD COLUMN times_shown BIGINT NOT NULL DEFAULT 1 CHECK (times_shown >= 1);
