//! Pure types and rules shared by every RedCloud crate.
//!
//! Architecture invariant: nothing here knows about gRPC, SQLite or a particular
//! node's state. The I/O helpers ([`http`], [`discovery`]) are thin, stateless
//! wrappers that the node crates drive.

pub mod chunk_token;
pub mod chunking;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod hash;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod names;
pub mod net;
pub mod replication;
pub mod shutdown;
pub mod wire;

pub use clock::{Causality, Hlc, HlcTimestamp, VectorClock};
pub use hash::Sha256Hex;
pub use ids::{ChunkId, FileId, IdError, NodeId};

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The longest error message a node sends back (gRPC `grpc-message`, HTTP error
/// bodies). Messages quote what the caller sent; a caller that sent megabytes
/// must still get an answer its client can read (HTTP/2 header lists are limited).
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// `s`, cut to at most `max` bytes on a character boundary, marked when cut.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &s[..end], s.len()))
}

#[cfg(test)]
mod clip_tests {
    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(super::clip("short", 10), "short");
        let long = "é".repeat(1000);
        let c = super::clip(&long, 100);
        assert!(c.len() <= 100, "{}", c.len());
        assert!(c.ends_with("(2000 bytes in all)"), "{c}");
    }
}
