//! Passwords, tokens, and who is calling (SPEC §5).
//!
//! Passwords are kept only as argon2id hashes (PHC strings). A token is
//! `rc1.SESSION.SECRET`: the session id names a replicated `sessions` record, which
//! holds the SHA-256 of the secret, the user and the expiry, so a token made on one
//! controller works on every controller that has the record, and logout (a
//! tombstone) revokes it everywhere. Tokens arrive as gRPC `authorization: Bearer`
//! metadata.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tonic::metadata::MetadataMap;

use crate::error::{ControllerError, Result};
use crate::meta::{self, Db};

/// How long a token lasts.
pub const TOKEN_TTL_MS: u64 = 30 * 86_400_000;

/// The longest password accepted (argon2 takes any length; this bounds the work a
/// request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Who is calling: an account, or nobody (no token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    /// The name the account goes by now.
    pub name: String,
    pub session_id: String,
    pub expires_at_ms: u64,
}

/// Checks a password someone chooses.
pub fn check_password(pw: &str) -> Result<()> {
    if pw.len() < 8 {
        return Err(ControllerError::InvalidArgument(
            "a password has at least 8 characters".into(),
        ));
    }
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(ControllerError::InvalidArgument(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Password hashes computed at once: each takes argon2's 19 MiB and tens of ms of
/// CPU, and `Login` and `Register` are open to anyone, so they take turns.
pub const MAX_CONCURRENT_HASHES: usize = 4;

static HASH_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// Runs a password hash or check on the blocking pool, [`MAX_CONCURRENT_HASHES`]
/// at a time.
pub async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _slot = HASH_SLOTS
        .acquire()
        .await
        .map_err(|e| ControllerError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ControllerError::Internal(e.to_string()))
}

/// The costliest argon2 parameters a stored hash may ask for (what `verify`
/// spends): a record replicated from a peer cannot make one login take gigabytes.
const MAX_HASH_MEMORY_KIB: u32 = 64 * 1024;
const MAX_HASH_ITERATIONS: u32 = 16;

/// The argon2id hash (PHC string) of `pw`, with a random salt. Slow by design: call
/// it through [`hashing`].
pub fn hash_password(pw: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| ControllerError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ControllerError::Internal(format!("hashing the password: {e}")))
}

/// Whether `pw` matches the PHC string `hash` (false for a hash that does not
/// parse or asks for more than this controller spends on one check). Slow by
/// design: call it through [`hashing`].
pub fn verify_password(pw: &str, hash: &str) -> bool {
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    match argon2::Params::try_from(&h) {
        Ok(p) if p.m_cost() <= MAX_HASH_MEMORY_KIB && p.t_cost() <= MAX_HASH_ITERATIONS => {}
        _ => {
            tracing::warn!("an account's stored password hash asks for too much work: refused");
            return false;
        }
    }
    Argon2::default().verify_password(pw.as_bytes(), &h).is_ok()
}

/// A new token for a new session: (session id, token, SHA-256 hex of its secret).
pub fn new_token() -> (String, String, String) {
    let session = hex::encode(rand::random::<[u8; 16]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let token = format!("rc1.{session}.{secret}");
    (session, token, sha256_hex(&secret))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(redcloud_common::hash::sha256(s.as_bytes()))
}

/// The session id and secret of a token, if it is well formed.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("rc1.")?;
    let (session, secret) = rest.split_once('.')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(session, 32) && hex(secret, 64)).then_some((session, secret))
}

/// The bearer token in `md`, if any; an `authorization` value that is not
/// `Bearer TOKEN` is refused.
pub fn bearer(md: &MetadataMap) -> Result<Option<String>> {
    let Some(v) = md.get("authorization") else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| {
        ControllerError::Unauthenticated("the authorization header is not text".into())
    })?;
    match v.strip_prefix("Bearer ") {
        Some(t) => Ok(Some(t.trim().to_string())),
        None => Err(ControllerError::Unauthenticated(
            "the authorization header is not `Bearer TOKEN`".into(),
        )),
    }
}

/// Who `md` says is calling: `None` without a token; an error for a token that is
/// malformed, unknown here, revoked or expired. `clock_checked`: this controller's
/// clock has been compared with its peers' (else an "expired" may be its clock's
/// fault, and the message says so).
pub async fn caller(
    db: &Db,
    md: &MetadataMap,
    now_ms: u64,
    clock_checked: bool,
) -> Result<Option<Caller>> {
    let Some(token) = bearer(md)? else {
        return Ok(None);
    };
    let Some((session_id, secret)) = parse_token(&token) else {
        return Err(ControllerError::Unauthenticated(
            "the token is malformed: log in again".into(),
        ));
    };
    let (session_id, digest) = (session_id.to_string(), sha256_hex(secret));
    let sid = session_id.clone();
    let found = db
        .call(move |s| {
            let Some(session) = meta::users::session(s.conn(), &sid)? else {
                return Ok(None);
            };
            let account = meta::users::account(s.conn(), &session.user_id)?;
            Ok(Some((session, account)))
        })
        .await?;
    let refused = || {
        ControllerError::Unauthenticated(
            "the token is not valid (logged out, or unknown to this controller): log in again"
                .into(),
        )
    };
    let Some((session, account)) = found else {
        return Err(refused());
    };
    // Both sides are SHA-256 digests of a secret, compared in constant time.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        session.secret_sha256.as_bytes(),
        digest.as_bytes(),
    )) {
        return Err(refused());
    }
    if session.expires_at_ms <= now_ms {
        return Err(ControllerError::Unauthenticated(if clock_checked {
            "the token has expired: log in again".into()
        } else {
            "the token has expired by this controller's clock, which has not been checked \
             against any peer's yet: if you logged in recently, its clock is off (try another \
             controller); otherwise log in again"
                .into()
        }));
    }
    let Some(account) = account else {
        return Err(ControllerError::Unauthenticated(
            "the account of this token no longer exists".into(),
        ));
    };
    Ok(Some(Caller {
        user_id: account.user_id,
        name: account.name,
        session_id,
        expires_at_ms: session.expires_at_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash_password("correct horse").unwrap(), h, "salted");
        // A stored hash asking for a gigabyte per check is refused without trying.
        assert!(h.contains("m=19456"), "{h}");
        let greedy = h.replace("m=19456", "m=1048576");
        assert!(!verify_password("correct horse", &greedy));
    }

    #[test]
    fn tokens_parse_only_when_well_formed() {
        let (session, token, digest) = new_token();
        let (s, secret) = parse_token(&token).unwrap();
        assert_eq!(s, session);
        assert_eq!(sha256_hex(secret), digest);
        for bad in [
            "",
            "rc1.",
            "rc1.abc.def",
            "rc2.x.y",
            &token[..token.len() - 1],
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
    }
}
