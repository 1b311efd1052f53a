//! Read tokens for chunks: a controller that has checked a caller may read a file
//! hands out, per chunk, a short-lived token signed with the cluster secret; a
//! chunkserver serves that chunk to whoever presents it (the client reading
//! directly), and nothing else. Without a cluster secret the chunk API is open
//! (as every internal call is then) and tokens are empty.
//!
//! A token is `EXPIRY_MS.HEX(HMAC-SHA256(secret, "redcloud-chunk-read\n" ID "\n" EXPIRY_MS))`.
//! Expiry is judged by the chunkserver's clock: one far behind the controllers'
//! honours tokens longer, one far ahead refuses them, and the client then reads
//! through the controller.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ChunkId;

/// How long a token is valid after it is made.
pub const VALIDITY_MS: u64 = 10 * 60 * 1000;

/// Longest token accepted (a u64, a dot and 64 hex digits, with room).
const MAX_TOKEN: usize = 128;

fn mac(secret: &str, id: &ChunkId, expiry_ms: u64) -> Hmac<Sha256> {
    // Any key length is valid for HMAC.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(b"redcloud-chunk-read\n");
    m.update(id.to_hex().as_bytes());
    m.update(b"\n");
    m.update(expiry_ms.to_string().as_bytes());
    m
}

/// A token for reading chunk `id` until `expiry_ms` (Unix ms); empty without a secret.
pub fn sign(secret: Option<&str>, id: &ChunkId, expiry_ms: u64) -> String {
    match secret {
        None => String::new(),
        Some(s) => format!(
            "{expiry_ms}.{}",
            hex::encode(mac(s, id, expiry_ms).finalize().into_bytes())
        ),
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no chunk read token given")]
    Missing,
    #[error("malformed chunk read token")]
    Malformed,
    #[error("chunk read token expired")]
    Expired,
    #[error("chunk read token is not valid for this chunk")]
    Invalid,
}

/// Whether `token` lets its bearer read chunk `id` at `now_ms`. Without a secret
/// every read is allowed. The MAC is compared in constant time.
pub fn verify(
    secret: Option<&str>,
    id: &ChunkId,
    token: &str,
    now_ms: u64,
) -> Result<(), TokenError> {
    let Some(secret) = secret else {
        return Ok(());
    };
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN {
        return Err(TokenError::Malformed);
    }
    let (expiry, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let expiry_ms: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
    mac(secret, id, expiry_ms)
        .verify_slice(&tag)
        .map_err(|_| TokenError::Invalid)?;
    if now_ms > expiry_ms {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_its_chunk_until_it_expires_and_nothing_else() {
        let a = ChunkId::of(b"a");
        let b = ChunkId::of(b"b");
        let t = sign(Some("s3cret"), &a, 1_000);
        assert_eq!(verify(Some("s3cret"), &a, &t, 999), Ok(()));
        assert_eq!(verify(Some("s3cret"), &a, &t, 1_000), Ok(()));
        assert_eq!(
            verify(Some("s3cret"), &a, &t, 1_001),
            Err(TokenError::Expired)
        );
        assert_eq!(verify(Some("s3cret"), &b, &t, 0), Err(TokenError::Invalid));
        assert_eq!(verify(Some("other"), &a, &t, 0), Err(TokenError::Invalid));
        // A later expiry with the old MAC is refused.
        let (_, tag) = t.split_once('.').expect("dot");
        let stretched = format!("9999999.{tag}");
        assert_eq!(
            verify(Some("s3cret"), &a, &stretched, 0),
            Err(TokenError::Invalid)
        );
        for bad in ["", "x", "1.zz", "1", &"9".repeat(200)] {
            assert!(verify(Some("s3cret"), &a, bad, 0).is_err(), "{bad:?}");
        }
        // No secret: open, and no token is made.
        assert_eq!(sign(None, &a, 1), "");
        assert_eq!(verify(None, &a, "", u64::MAX), Ok(()));
    }
}
