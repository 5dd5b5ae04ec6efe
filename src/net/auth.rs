//! Shared-secret authentication between slave and master.
//!
//! Both sides read the same secret from `--token-file`. The master sends a
//! fresh random nonce after its greeting; the slave answers with
//! HMAC-SHA256(secret, nonce ‖ slave name). The secret itself never
//! crosses the wire, and a recorded answer is useless against another
//! nonce. The master compares in constant time.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const NONCE_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the token file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the token file {path} is empty; put a long random secret in it (e.g. `openssl rand -hex 32 > {path}`)")]
    Empty { path: String },
}

/// The secret, trimmed of surrounding whitespace (a trailing newline is
/// the usual way such files end).
pub fn load_token(path: &Path) -> Result<Vec<u8>, AuthError> {
    let raw = std::fs::read(path).map_err(|e| AuthError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let token = raw.trim_ascii().to_vec();
    if token.is_empty() {
        return Err(AuthError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(token)
}

pub fn nonce() -> [u8; NONCE_LEN] {
    use std::io::Read;
    let mut n = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .expect("reading /dev/urandom");
    n
}

pub fn respond(token: &[u8], nonce: &[u8], name: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes keys of any length");
    mac.update(nonce);
    mac.update(name.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub fn verify(token: &[u8], nonce: &[u8], name: &str, answer: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes keys of any length");
    mac.update(nonce);
    mac.update(name.as_bytes());
    mac.verify_slice(answer).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_depend_on_secret_nonce_and_name() {
        let n1 = nonce();
        let n2 = nonce();
        assert_ne!(n1, n2);
        let a = respond(b"secret", &n1, "s1");
        assert!(verify(b"secret", &n1, "s1", &a));
        assert!(!verify(b"other", &n1, "s1", &a));
        assert!(!verify(b"secret", &n2, "s1", &a), "a replayed answer fails");
        assert!(!verify(b"secret", &n1, "s2", &a));
        assert!(!verify(b"secret", &n1, "s1", &a[..31]));
    }

    #[test]
    fn token_files_are_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(load_token(&p).unwrap(), b"abc");
        std::fs::write(&p, " \n").unwrap();
        assert!(matches!(load_token(&p), Err(AuthError::Empty { .. })));
        assert!(load_token(&dir.path().join("missing")).is_err());
    }
}
