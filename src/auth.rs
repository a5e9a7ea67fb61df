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

/// Prefix of personal API tokens, so a script's token is told apart from a rater's invite token
/// at a glance (and by secret scanners).
pub const API_TOKEN_PREFIX: &str = "llpat_";

/// A new personal API token: the prefix and 256 random bits.
pub fn new_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", new_token())
}

// Login throttling. Failures are counted per key: the account together with the client address
// (so a storm of wrong passwords from one address delays that address only, never the account's
// owner elsewhere), and the address alone over every account (so spraying many usernames from
// one address is slowed too). A key's first failures are free; after them each failure doubles
// the wait before the next attempt, up to a cap. While a key waits, logins are refused without
// checking the password.

/// Failed logins of one account from one address before any wait.
pub const ACCOUNT_FREE_FAILURES: i64 = 5;
/// Failed logins from one address over all accounts before any wait: enough for an office
/// behind one NAT address to mistype now and then.
pub const ADDRESS_FREE_FAILURES: i64 = 30;
/// The wait after the first failure beyond the free ones; each further failure doubles it.
pub const LOGIN_FIRST_DELAY_MS: i64 = 1_000;
/// The longest wait: 15 minutes.
pub const LOGIN_MAX_DELAY_MS: i64 = 15 * 60 * 1000;
/// A key's failures are forgotten an hour after its latest one. Longer than the longest wait,
/// so waiting the wait out never resets the count; a success forgets the account's count at once.
pub const LOGIN_FORGET_MS: i64 = 60 * 60 * 1000;

/// The failures counted for one throttling key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCount {
    /// Failed logins not yet forgotten.
    pub failures: i64,
    /// When the latest of them happened (Unix ms).
    pub last_failed_at: i64,
}

/// How long after its latest failure a key with `failures` failures must wait: nothing for the
/// first `free_failures`, then 1 s, 2 s, 4 s … up to [`LOGIN_MAX_DELAY_MS`].
pub fn login_delay_ms(failures: i64, free_failures: i64) -> i64 {
    let beyond = failures - free_failures;
    if beyond < 0 {
        return 0;
    }
    // 2^20 s is far past the cap: no overflow, same answer.
    (LOGIN_FIRST_DELAY_MS << beyond.min(20)).min(LOGIN_MAX_DELAY_MS)
}

/// Milliseconds from `now` until a login of an account from an address may be checked again,
/// given the counts of the (account, address) key and of the address key; 0 when it may now.
pub fn login_wait_ms(account: FailureCount, address: FailureCount, now: i64) -> i64 {
    let wait = |count: FailureCount, free| match login_delay_ms(count.failures, free) {
        // Within the free failures there is no wait, even when the latest failure is stamped
        // a little after `now` (a concurrent attempt that read the clock later, or another
        // instance's clock).
        0 => 0,
        delay => (count.last_failed_at + delay - now).max(0),
    };
    wait(account, ACCOUNT_FREE_FAILURES).max(wait(address, ADDRESS_FREE_FAILURES))
}

/// A wait as whole seconds for `Retry-After`, rounded up so a client that waits that long is
/// never refused again for the same failures.
pub fn retry_after_secs(wait_ms: i64) -> i64 {
    (wait_ms.max(1) + 999) / 1000
}

/// A wait for people: "1 second", "40 seconds", "3 minutes" (rounded up).
pub fn wait_text(wait_ms: i64) -> String {
    let seconds = retry_after_secs(wait_ms);
    match seconds {
        1 => "1 second".into(),
        2..=59 => format!("{seconds} seconds"),
        _ => match (seconds + 59) / 60 {
            1 => "1 minute".into(),
            minutes => format!("{minutes} minutes"),
        },
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_double_up_to_the_cap() {
        for n in 0..ACCOUNT_FREE_FAILURES {
            assert_eq!(login_delay_ms(n, ACCOUNT_FREE_FAILURES), 0, "{n}");
        }
        let waits: Vec<i64> = (5..16).map(|n| login_delay_ms(n, 5)).collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900].map(|s| s * 1000)
        );
        assert_eq!(login_delay_ms(10_000, 5), LOGIN_MAX_DELAY_MS);
        assert_eq!(login_delay_ms(i64::MAX, 0), LOGIN_MAX_DELAY_MS);
        assert_eq!(
            login_delay_ms(ADDRESS_FREE_FAILURES - 1, ADDRESS_FREE_FAILURES),
            0
        );
    }

    #[test]
    fn the_longer_of_the_two_waits_counts_from_each_latest_failure() {
        let now = 1_000_000;
        let none = FailureCount::default();
        assert_eq!(login_wait_ms(none, none, now), 0);
        // Seven failures of the account from this address, the latest 1.5 s ago: 4 s − 1.5 s.
        let account = FailureCount {
            failures: 7,
            last_failed_at: now - 1_500,
        };
        assert_eq!(login_wait_ms(account, none, now), 2_500);
        // The address has failed over many accounts: its own, longer wait applies.
        let address = FailureCount {
            failures: ADDRESS_FREE_FAILURES + 3,
            last_failed_at: now - 1_000,
        };
        assert_eq!(login_wait_ms(account, address, now), 7_000);
        // Once the wait has passed, nothing more to wait.
        assert_eq!(login_wait_ms(account, none, now + 10_000), 0);
        // A key within its free failures never waits, even if its latest failure is stamped
        // after `now` (a concurrent attempt that read the clock a moment later).
        let later = FailureCount {
            failures: ACCOUNT_FREE_FAILURES - 1,
            last_failed_at: now + 30,
        };
        assert_eq!(login_wait_ms(later, none, now), 0);
    }

    #[test]
    fn waits_read_well_and_round_up() {
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1_000), 1);
        assert_eq!(retry_after_secs(1_001), 2);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(wait_text(1_000), "1 second");
        assert_eq!(wait_text(40_000), "40 seconds");
        assert_eq!(wait_text(60_000), "1 minute");
        assert_eq!(wait_text(61_000), "2 minutes");
        assert_eq!(wait_text(LOGIN_MAX_DELAY_MS), "15 minutes");
    }
}
