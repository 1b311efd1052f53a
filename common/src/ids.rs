//! Typed identifiers. Each is validated when parsed, so code holding one can use it
//! as a path component or a database key without further checks.

use std::fmt;
use std::str::FromStr;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("chunk id must be 64 hex characters (a SHA-256), got {0} characters")]
    ChunkIdLength(usize),
    #[error("chunk id must contain only hex digits 0-9a-f")]
    ChunkIdNotHex,
    #[error("node id must be 1-128 characters of [A-Za-z0-9._-], got {0:?}")]
    NodeId(String),
    #[error("file id must be a UUID: {0}")]
    FileId(String),
}

/// A chunk's id: the SHA-256 of its bytes.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> Self {
        ChunkId(crate::hash::sha256(data))
    }

    /// Lowercase hex, 64 characters: the form used on the wire and on disk.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for ChunkId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(IdError::ChunkIdLength(s.len()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::ChunkIdNotHex)?;
        Ok(ChunkId(out))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..12])
    }
}

/// A node's id (controller or chunkserver), `hostname-timestamp` style, persisted in
/// the node's data directory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Validates a node id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(NodeId(s))
        } else {
            Err(IdError::NodeId(s))
        }
    }

    /// A fresh id from the host name and the current time: `hostname-1732222222123`.
    pub fn generate(hostname: &str) -> Self {
        let clean: String = hostname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        let host = if clean.is_empty() {
            "node".to_string()
        } else {
            clean
        };
        // A random suffix keeps two nodes started in the same millisecond on one host apart.
        let suffix: u16 = rand::random();
        NodeId(format!("{host}-{}-{suffix:04x}", crate::now_ms()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        NodeId::new(s)
    }
}

impl From<NodeId> for String {
    fn from(n: NodeId) -> String {
        n.0
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::new(s)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

/// One version of a file. UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub uuid::Uuid);

impl FileId {
    pub fn generate() -> Self {
        FileId(uuid::Uuid::now_v7())
    }
}

impl FromStr for FileId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s)
            .map(FileId)
            .map_err(|e| IdError::FileId(e.to_string()))
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({})", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_round_trips_and_rejects_malformed() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert_eq!(
            "../../etc/passwd".parse::<ChunkId>(),
            Err(IdError::ChunkIdLength(16))
        );
        let bad = format!("{}/x", "a".repeat(62));
        assert_eq!(bad.parse::<ChunkId>(), Err(IdError::ChunkIdNotHex));
        assert!("".parse::<ChunkId>().is_err());
        // Upper-case hex parses to the same id, and prints back in lower case.
        let upper = id.to_hex().to_uppercase();
        assert_eq!(upper.parse::<ChunkId>().unwrap().to_hex(), id.to_hex());
    }

    #[test]
    fn node_ids_are_validated() {
        assert!(NodeId::new("ctl-1.local_x").is_ok());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("a/b").is_err());
        assert!(NodeId::new("x".repeat(129)).is_err());
        let g = NodeId::generate("my host/..");
        assert!(NodeId::new(g.as_str()).is_ok(), "{g}");
    }
}
