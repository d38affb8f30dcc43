//! Secrets at rest and in comparison: password hashes (PBKDF2-HMAC-SHA256 in
//! Werkzeug's `pbkdf2:sha256:N$salt$hex` format, the format MLflow's
//! basic-auth database uses, so its hashes verify here unchanged), access
//! tokens (256 random bits, stored as SHA-256) and constant-time comparison.
//! All primitives are aws-lc-rs's, already in the build through object_store
//! and rustls.

use std::num::NonZeroU32;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{constant_time, digest, hmac, pbkdf2, rand};
use base64::Engine;
use keel_core::Error;

/// OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// The prefix every keel access token starts with (easy to spot in a leak scan).
pub const TOKEN_PREFIX: &str = "keel_";

const SALT_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("The system random generator failed"))?;
    Ok(bytes)
}

/// Hashes a password with a fresh 16-character salt.
pub fn hash_password(password: &str) -> Result<String, Error> {
    hash_password_with(password, PBKDF2_ITERATIONS)
}

/// [`hash_password`] with a chosen work factor (tests and the dummy hash).
pub fn hash_password_with(password: &str, iterations: u32) -> Result<String, Error> {
    let iterations = NonZeroU32::new(iterations)
        .ok_or_else(|| Error::internal("PBKDF2 needs at least one iteration"))?;
    let salt: String = random_bytes::<16>()?
        .iter()
        .map(|b| SALT_ALPHABET[usize::from(*b) % SALT_ALPHABET.len()] as char)
        .collect();
    let mut out = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt.as_bytes(),
        password.as_bytes(),
        &mut out,
    );
    Ok(format!("pbkdf2:sha256:{iterations}${salt}${}", hex(&out)))
}

/// Whether `password` matches `stored` (constant time in the hash).
/// An unreadable or unsupported hash matches nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.splitn(3, '$');
    let (Some(method), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(iterations) = method
        .strip_prefix("pbkdf2:sha256:")
        .and_then(|n| n.parse::<u32>().ok())
        .and_then(NonZeroU32::new)
    else {
        return false;
    };
    let Some(expected) = unhex(expected) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt.as_bytes(),
        password.as_bytes(),
        &expected,
    )
    .is_ok()
}

/// A new access token: the secret shown once, and the hash to store.
pub fn new_token() -> Result<(String, String), Error> {
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    );
    let hash = token_hash(&secret);
    Ok((secret, hash))
}

/// What is stored for a token: SHA-256 of the secret, hex. A random 256-bit
/// secret needs no slow hash: there is nothing to guess.
pub fn token_hash(secret: &str) -> String {
    hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref())
}

/// Constant-time equality of two byte strings.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A keyed digest of a credential, for the credential cache: the plain
/// password is never a key, and the digest is useless without this process's
/// random key.
pub struct CacheKeyer {
    key: hmac::Key,
}

impl CacheKeyer {
    pub fn new() -> Result<CacheKeyer, Error> {
        Ok(CacheKeyer {
            key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>()?),
        })
    }

    pub fn digest(&self, username: &str, secret: &str) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(username.as_bytes());
        context.update(&[0]);
        context.update(secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let stored = hash_password_with("correct horse battery", 1000).unwrap();
        assert!(stored.starts_with("pbkdf2:sha256:1000$"));
        assert!(verify_password("correct horse battery", &stored));
        assert!(!verify_password("correct horse batterx", &stored));
        assert!(!verify_password("x", "garbage"));
        assert!(!verify_password("x", "scrypt:32768:8:1$abc$00"));
    }

    #[test]
    fn werkzeug_hashes_verify() {
        // hashlib.pbkdf2_hmac("sha256", b"password1234", b"abcdefghijklmnop", 1000).hex(),
        // which is what werkzeug's generate_password_hash stores after the salt.
        let stored = "pbkdf2:sha256:1000$abcdefghijklmnop$\
                      3417dfe21fef2ab241eeca09b8ddf2d3c2cfea4cb97ba8e5fd39aabd39087220";
        assert!(verify_password("password1234", stored));
        assert!(!verify_password("password1235", stored));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, hash_a) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(token_hash(&a), hash_a);
        assert_eq!(hash_a.len(), 64);
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
    }
}
