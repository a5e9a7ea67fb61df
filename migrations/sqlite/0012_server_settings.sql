-- Settings the server records for the command line: `serve` writes the address raters reach it
-- at (its --public-url, or the address it listens on), so `legibility rater invite` prints links
-- to that server instead of a guessed default.
CREATE TABLE server_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
