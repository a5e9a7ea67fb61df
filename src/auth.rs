//! Credentials: argon2 password hashes for staff accounts, random bearer tokens for sessions and
//! rater invites. Tokens are stored only as SHA-256 hashes, so a leaked database cannot be used
//! to log in or to judge as someone else.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Staff passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Errors of credential handling.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password does not meet the minimum length.
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    /// The hashing library failed (bad stored hash, RNG failure).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Hashes a new staff password with argon2id and a random salt (PHC string format).
/// CPU-heavy by design: call it off the async runtime.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::WeakPassword);
    }
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks a password against a stored PHC hash; false for a wrong password or a malformed hash.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), stored_hash)
        .is_ok()
}

/// A new unguessable token (256 random bits as 64 hex characters) for a session or an invite.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the database keeps of a token.
pub fn token_hash(token: &str) -> String {
    crate::store::sha256_hex(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
        assert!(!verify_password("anything", "not a phc string"));
        assert!(matches!(
            hash_password("short"),
            Err(AuthError::WeakPassword)
        ));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}

/// Failed logins of one username allowed within [`LOGIN_WINDOW_MS`]; more are refused, even
/// with the right password, until the oldest falls out of the window.
pub const LOGIN_FAILURE_LIMIT: i64 = 5;

/// The window over which failed logins are counted: 15 minutes.
pub const LOGIN_WINDOW_MS: i64 = 15 * 60 * 1000;

/// Whether a username with `recent_failures` failed logins in the window is throttled.
pub fn login_throttled(recent_failures: i64) -> bool {
    recent_failures >= LOGIN_FAILURE_LIMIT
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[test]
    fn five_failures_throttle_a_username() {
        assert!(!login_throttled(0));
        assert!(!login_throttled(LOGIN_FAILURE_LIMIT - 1));
        assert!(login_throttled(LOGIN_FAILURE_LIMIT));
    }
}
