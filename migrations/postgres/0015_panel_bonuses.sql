-- Bonuses for panel participants (issue 20, part 6): a study's rule, in cents of the panel's
-- currency, and every amount already exported, so that a later export lists only what is new.
CREATE TABLE study_bonus_rules (
    study_id            UUID PRIMARY KEY REFERENCES studies (id),
    fixed_cents         BIGINT NOT NULL,
    per_judgement_cents BIGINT NOT NULL,
    per_correct_cents   BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE bonus_payments (
    id           UUID PRIMARY KEY,
    study_id     UUID NOT NULL REFERENCES studies (id),
    batch_id     UUID NOT NULL,
    rater_id     UUID NOT NULL REFERENCES raters (id),
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    created_at   BIGINT NOT NULL
);
CREATE INDEX bonus_payments_by_rater ON bonus_payments (rater_id);
