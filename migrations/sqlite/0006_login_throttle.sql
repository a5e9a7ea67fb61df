-- Failed staff logins, per username, for throttling password guessing. In the database (not in
-- memory) so that every server instance behind a load balancer counts the same failures.
CREATE TABLE login_failures (
    username  TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE INDEX login_failures_by_username ON login_failures (username, failed_at);
