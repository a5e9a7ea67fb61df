-- Study designs beyond True/False (issue 23). A study asks for one answer format: a plain
-- verdict ('binary'), a verdict with the rater's confidence in it ('confidence', 50-100 %), or
-- the probability that the solution is correct ('probability', 0-100 in steps of 5, 50 left
-- out unless allow_even_odds so that raters commit). A short justification is not asked for,
-- optional or required.
ALTER TABLE studies ADD COLUMN answer_format TEXT NOT NULL DEFAULT 'binary'
    CHECK (answer_format IN ('binary', 'confidence', 'probability'));
ALTER TABLE studies ADD COLUMN allow_even_odds BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE studies ADD COLUMN justification TEXT NOT NULL DEFAULT 'none'
    CHECK (justification IN ('none', 'optional', 'required'));

-- What the rater gave beside the verdict, as sent (also on a late answer stored as a timeout).
ALTER TABLE judgements ADD COLUMN confidence BIGINT CHECK (confidence BETWEEN 50 AND 100);
ALTER TABLE judgements ADD COLUMN probability BIGINT CHECK (probability BETWEEN 0 AND 100);
ALTER TABLE judgements ADD COLUMN justification TEXT;

-- Trial integrity, as the rater's page counted it while the item ran: times the tab was
-- hidden and for how long in all, times the window lost focus, copy and paste events. NULL:
-- the page sent nothing (no script, a timeout recorded without an answer, or an older row).
ALTER TABLE judgements ADD COLUMN hidden_count BIGINT CHECK (hidden_count >= 0);
ALTER TABLE judgements ADD COLUMN hidden_ms BIGINT CHECK (hidden_ms >= 0);
ALTER TABLE judgements ADD COLUMN blur_count BIGINT CHECK (blur_count >= 0);
ALTER TABLE judgements ADD COLUMN copy_count BIGINT CHECK (copy_count >= 0);
ALTER TABLE judgements ADD COLUMN paste_count BIGINT CHECK (paste_count >= 0);
