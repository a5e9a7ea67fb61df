-- Bulk invitations: a rater may be invited with an email address (from the admin's CSV of
-- names and emails), kept so staff can tell who holds which link. `raters.revoked_at` already
-- exists (0001): revoking a link sets it, and a revoked token no longer authenticates.
ALTER TABLE raters ADD COLUMN email TEXT;
