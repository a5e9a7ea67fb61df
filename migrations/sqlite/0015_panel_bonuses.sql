-- Bonuses for panel participants (issue 20, part 6): a study's rule, in cents of the panel's
-- currency, and every amount already exported, so that a later export lists only what is new.
CREATE TABLE study_bonus_rules (
    study_id            BLOB PRIMARY KEY REFERENCES studies (id),
    fixed_cents         INTEGER NOT NULL,
    per_judgement_cents INTEGER NOT NULL,
    per_correct_cents   INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE bonus_payments (
    id           BLOB PRIMARY KEY,
    study_id     BLOB NOT NULL REFERENCES studies (id),
    batch_id     BLOB NOT NULL,
    rater_id     BLOB NOT NULL REFERENCES raters (id),
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    created_at   INTEGER NOT NULL
);
CREATE INDEX bonus_payments_by_rater ON bonus_payments (rater_id);
