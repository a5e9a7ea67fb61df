-- Time-limit arms and serial positions (issue 23). A study may compare several per-item time
-- limits (time_limit_arms, comma-separated milliseconds; empty: the one time_limit_ms), given
-- between raters (each rater one limit, in turn), within rater in blocks of arm_block_items
-- items (block order counterbalanced across raters by a balanced Latin square), or interleaved
-- (each run of as many items as there are arms holds every limit once, in a random order).
-- An item's limit is its deadline minus its serving time, so judgements need no column for it.
ALTER TABLE studies ADD COLUMN time_limit_arms TEXT NOT NULL DEFAULT '';
ALTER TABLE studies ADD COLUMN arm_design TEXT NOT NULL DEFAULT 'between'
    CHECK (arm_design IN ('between', 'blocked', 'interleaved'));
ALTER TABLE studies ADD COLUMN arm_block_items INTEGER NOT NULL DEFAULT 10 CHECK (arm_block_items >= 1);

-- The item's serial position in the rater's session (1-based; gold items count, as raters see
-- them), kept for fatigue and learning effects. NULL for items served before it was kept.
ALTER TABLE assignments ADD COLUMN position INTEGER CHECK (position >= 1);
ALTER TABLE judgements ADD COLUMN position INTEGER CHECK (position >= 1);
