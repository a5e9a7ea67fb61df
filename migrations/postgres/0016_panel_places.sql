-- Places and returns (issue 20, part 5): a panel link may take at most `places` participants
-- at a time (null: no limit); a participant the panel reports as returned or timed out gives
-- their place back (their link is revoked, their unanswered item returns to the pool) and is
-- marked, with their finished judgements kept.
ALTER TABLE study_panels ADD COLUMN places BIGINT;
ALTER TABLE raters ADD COLUMN returned_at BIGINT;
ALTER TABLE raters ADD COLUMN returned_as TEXT CHECK (returned_as IN ('returned', 'timed_out'));
