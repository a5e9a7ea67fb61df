-- What a participant is given when they reach an end of the study (issue 20, part 4): per
-- outcome a completion code for the panel and, optionally, the URL that takes them back to it.
CREATE TABLE panel_completions (
    study_id     BLOB NOT NULL REFERENCES studies (id),
    outcome      TEXT NOT NULL CHECK (outcome IN ('completed', 'screened_out', 'out_of_time')),
    code         TEXT NOT NULL,
    redirect_url TEXT,
    PRIMARY KEY (study_id, outcome)
);
