//! Replicated records: one type for a row of any replicated table, its typed key,
//! and the checks every record received from a peer must pass. No SQL here (that
//! is `meta/`); the replication engine (`replication/engine.rs`) decides which
//! version of a key survives.

use redcloud_common::replication::{Origin, Version};
use redcloud_common::{ChunkId, FileId, NodeId};
use serde::{Deserialize, Serialize};

/// The replicated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Table {
    Users,
    Files,
    Chunks,
    ChunkLocations,
    ChunkserverNodes,
    ControllerNodes,
    Deletions,
    Origins,
    /// Login sessions (SPEC §5): key a session id; a token is the id and a secret
    /// whose SHA-256 the record holds. Logout tombstones it.
    Sessions,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Users,
        Table::Files,
        Table::Chunks,
        Table::ChunkLocations,
        Table::ChunkserverNodes,
        Table::ControllerNodes,
        Table::Deletions,
        Table::Origins,
        Table::Sessions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Files => "files",
            Table::Chunks => "chunks",
            Table::ChunkLocations => "chunk_locations",
            Table::ChunkserverNodes => "chunkserver_nodes",
            Table::ControllerNodes => "controller_nodes",
            Table::Deletions => "deletions",
            Table::Origins => "origins",
            Table::Sessions => "sessions",
        }
    }

    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Checks that `key` is a well-formed key of this table.
    pub fn check_key(self, key: &str) -> Result<(), String> {
        let node = |s: &str| NodeId::new(s).map(|_| ()).map_err(|e| e.to_string());
        match self {
            Table::Users => check_text("user id", key, 128),
            Table::Files | Table::Chunks => {
                key.parse::<FileId>().map(|_| ()).map_err(|e| e.to_string())
            }
            Table::ChunkLocations => {
                let (c, n) = key
                    .split_once('/')
                    .ok_or("a chunk location key is chunk/node")?;
                c.parse::<ChunkId>().map_err(|e| e.to_string())?;
                node(n)
            }
            Table::ChunkserverNodes => {
                let (c, o) = key
                    .split_once('/')
                    .ok_or("a chunkserver key is chunkserver/observer")?;
                node(c)?;
                node(o)
            }
            Table::ControllerNodes => node(key),
            Table::Deletions => {
                let (owner, name) = key
                    .split_once('\n')
                    .ok_or("a deletion key is owner\\nname")?;
                check_text("owner", owner, 128)?;
                check_name(name)
            }
            Table::Origins => key.parse::<Origin>().map(|_| ()),
            Table::Sessions => check_hex("session id", key, 32),
        }
    }
}

/// The longest file name accepted, and the check for a user-chosen file name
/// (shared with the CLI, which checks names before it connects).
pub use redcloud_common::names::{MAX_NAME_BYTES, check_name};

/// The most chunks one file version may have (256 GiB at the default 1 MiB chunk
/// size): a chunk list must fit well inside one replication message.
pub const MAX_CHUNKS_PER_FILE: u64 = 262_144;

fn check_hex(what: &str, s: &str, len: usize) -> Result<(), String> {
    if s.len() != len || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{what} must be {len} lowercase hex digits"));
    }
    Ok(())
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(format!(
            "{what} must be 1-{max} bytes without control characters"
        ));
    }
    Ok(())
}

fn check_addr(what: &str, a: &str) -> Result<(), String> {
    if a.len() > 300 || a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{what} {a:?} is not a host:port"));
    }
    Ok(())
}

/// A file version's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBody {
    pub owner: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u64,
    pub chunk_count: u32,
    pub public: bool,
    pub created_at_ms: u64,
}

/// What a record holds besides its key and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    User {
        username: String,
        password_hash: String,
        created_at_ms: u64,
    },
    File(FileBody),
    /// The ordered chunks (id, size) of the file version named by the key.
    Chunks(Vec<(ChunkId, u64)>),
    /// Key `chunk/node`: that chunkserver holds that chunk (a tombstone: no longer).
    ChunkLocation,
    /// Key `chunkserver/observer`: a chunkserver's addresses and health as the
    /// observing controller last judged them from its heartbeats. Every controller
    /// writes only its own observations, so a record's vector clock never grows with
    /// the number of controllers.
    Chunkserver {
        grpc_addr: String,
        http_addr: String,
        healthy: bool,
    },
    Controller {
        grpc_addr: String,
        http_addr: String,
    },
    /// Key `owner\nname`: the name was deleted at this version's timestamp. Versions
    /// of the name older than it are hidden; newer uploads show again.
    Deletion,
    /// Key: an origin (one life of a controller's database) and whose it is.
    Origin {
        node_id: NodeId,
        started_at_ms: u64,
    },
    /// Key: a session id. Whose session it is, the SHA-256 (hex) of the token's
    /// secret, and when it expires (wall clock, ms).
    Session {
        user_id: String,
        secret_sha256: String,
        expires_at_ms: u64,
    },
}

impl Body {
    pub fn table(&self) -> Table {
        match self {
            Body::User { .. } => Table::Users,
            Body::File(_) => Table::Files,
            Body::Chunks(_) => Table::Chunks,
            Body::ChunkLocation => Table::ChunkLocations,
            Body::Chunkserver { .. } => Table::ChunkserverNodes,
            Body::Controller { .. } => Table::ControllerNodes,
            Body::Deletion => Table::Deletions,
            Body::Origin { .. } => Table::Origins,
            Body::Session { .. } => Table::Sessions,
        }
    }

    /// Checks the fields a peer sent.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Body::User {
                username,
                password_hash,
                ..
            } => {
                check_text("username", username, 128)?;
                check_text("password hash", password_hash, 512)
            }
            Body::File(f) => {
                check_text("owner", &f.owner, 128)?;
                check_name(&f.name)?;
                if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("file sha256 is not 64 hex digits".into());
                }
                let max = redcloud_common::chunking::MAX_CHUNK_SIZE as u64;
                if f.chunk_size == 0 || f.chunk_size > max {
                    return Err(format!("chunk size {} out of range", f.chunk_size));
                }
                if u64::from(f.chunk_count) != f.size.div_ceil(f.chunk_size)
                    || u64::from(f.chunk_count) > MAX_CHUNKS_PER_FILE
                {
                    return Err(format!(
                        "{} chunks of {} bytes do not hold {} bytes",
                        f.chunk_count, f.chunk_size, f.size
                    ));
                }
                Ok(())
            }
            Body::Chunks(list) => {
                let max = redcloud_common::chunking::MAX_CHUNK_SIZE as u64;
                if list.len() as u64 > MAX_CHUNKS_PER_FILE {
                    return Err(format!("chunk list of {} chunks", list.len()));
                }
                match list.iter().find(|(_, s)| *s == 0 || *s > max) {
                    Some((c, s)) => Err(format!("chunk {c} of {s} bytes")),
                    None => Ok(()),
                }
            }
            Body::Chunkserver {
                grpc_addr,
                http_addr,
                ..
            }
            | Body::Controller {
                grpc_addr,
                http_addr,
            } => {
                check_addr("gRPC address", grpc_addr)?;
                check_addr("HTTP address", http_addr)
            }
            Body::Session {
                user_id,
                secret_sha256,
                ..
            } => {
                check_text("user id", user_id, 128)?;
                check_hex("session secret hash", secret_sha256, 64)
            }
            Body::ChunkLocation | Body::Deletion | Body::Origin { .. } => Ok(()),
        }
    }

    /// A cheap upper estimate of the encoded size (deltas are cut by bytes).
    pub fn approx_size(&self) -> usize {
        match self {
            Body::User {
                username,
                password_hash,
                ..
            } => username.len() + password_hash.len() + 16,
            Body::File(f) => f.owner.len() + f.name.len() + f.sha256.len() + 48,
            Body::Chunks(list) => list.len() * 42 + 8,
            Body::Chunkserver {
                grpc_addr,
                http_addr,
                ..
            }
            | Body::Controller {
                grpc_addr,
                http_addr,
            } => grpc_addr.len() + http_addr.len() + 8,
            Body::ChunkLocation | Body::Deletion => 1,
            Body::Origin { node_id, .. } => node_id.as_str().len() + 16,
            Body::Session { user_id, .. } => user_id.len() + 64 + 16,
        }
    }
}

/// One version of one replicated row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub version: Version,
    pub body: Body,
}

impl Record {
    pub fn table(&self) -> Table {
        self.body.table()
    }

    /// Checks everything about a record a peer sent: its key for its table, its
    /// body, and its version.
    pub fn check(&self) -> Result<(), String> {
        let t = self.table();
        t.check_key(&self.key)
            .and_then(|_| self.body.check())
            .and_then(|_| self.version.check())
            .map_err(|e| format!("{} record {:?}: {e}", t.name(), self.key))
    }

    /// A cheap upper estimate of the encoded size.
    pub fn approx_size(&self) -> usize {
        self.key.len() + self.body.approx_size() + self.version.vclock.0.len() * 20 + 40
    }
}

/// Key of a chunk-location record.
pub fn location_key(chunk: &ChunkId, node: &NodeId) -> String {
    format!("{}/{}", chunk.to_hex(), node)
}

/// Key of a name-deletion record.
pub fn deletion_key(owner: &str, name: &str) -> String {
    format!("{owner}\n{name}")
}

/// Key of a chunkserver observation record.
pub fn chunkserver_key(chunkserver: &NodeId, observer: &NodeId) -> String {
    format!("{chunkserver}/{observer}")
}

/// Splits a two-part key (`a/b` or `owner\nname`) at its separator.
pub fn key_parts(table: Table, key: &str) -> (String, String) {
    let split = |sep: char| match key.split_once(sep) {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (key.to_string(), String::new()),
    };
    match table {
        Table::ChunkLocations | Table::ChunkserverNodes => split('/'),
        Table::Deletions => split('\n'),
        _ => (key.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_per_table() {
        let chunk = ChunkId::of(b"x");
        assert!(
            Table::ChunkLocations
                .check_key(&location_key(&chunk, &NodeId::new("cs-1").unwrap()))
                .is_ok()
        );
        assert!(Table::ChunkLocations.check_key("nothex/cs-1").is_err());
        assert!(Table::Files.check_key("../../etc/passwd").is_err());
        assert!(Table::Deletions.check_key("anonymous\nbook.txt").is_ok());
        assert!(Table::Deletions.check_key("anonymous").is_err());
        assert!(Table::ChunkserverNodes.check_key("cs-1/ctl-1").is_ok());
        assert!(Table::Origins.check_key("0000000000000001").is_ok());
        assert!(Table::ControllerNodes.check_key("bad id!").is_err());
    }

    #[test]
    fn bodies_are_checked() {
        let f = FileBody {
            owner: "anonymous".into(),
            name: "a.txt".into(),
            size: 3,
            sha256: "0".repeat(64),
            chunk_size: 1024,
            chunk_count: 1,
            public: false,
            created_at_ms: 0,
        };
        assert!(Body::File(f.clone()).check().is_ok());
        let mut bad = f.clone();
        bad.chunk_count = 7;
        assert!(Body::File(bad).check().is_err());
        let mut bad = f;
        bad.name = "a\u{7}".into();
        assert!(Body::File(bad).check().is_err());
        assert!(Body::Chunks(vec![(ChunkId::of(b"x"), 0)]).check().is_err());
    }
}
