//! Replicated records: one type for a row of any replicated table, and its mapping
//! to and from SQLite. Gossip and anti-entropy ship [`Record`]s; the merge rule
//! (`redcloud_common::replication`) decides which version of a key survives.

use redcloud_common::replication::Version;
use redcloud_common::{ChunkId, HlcTimestamp, NodeId, VectorClock};
use rusqlite::{Connection, OptionalExtension, Row, params};
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
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Users,
        Table::Files,
        Table::Chunks,
        Table::ChunkLocations,
        Table::ChunkserverNodes,
        Table::ControllerNodes,
        Table::Deletions,
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
        }
    }

    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The SQL expression that rebuilds a record key from the row.
    pub fn key_expr(self) -> &'static str {
        match self {
            Table::Users => "user_id",
            Table::Files | Table::Chunks => "file_id",
            Table::ChunkLocations => "chunk_id || '/' || node_id",
            Table::ChunkserverNodes | Table::ControllerNodes => "node_id",
            Table::Deletions => "owner || char(10) || name",
        }
    }

    /// The WHERE clause selecting the row of a key bound as `?1` (and `?2`).
    fn key_where(self) -> &'static str {
        match self {
            Table::Users => "user_id = ?1",
            Table::Files | Table::Chunks => "file_id = ?1",
            Table::ChunkLocations => "chunk_id = ?1 AND node_id = ?2",
            Table::ChunkserverNodes | Table::ControllerNodes => "node_id = ?1",
            Table::Deletions => "owner = ?1 AND name = ?2",
        }
    }

    /// Splits a record key into the values bound to `key_where`.
    fn key_parts(self, key: &str) -> (String, String) {
        let split = |sep: char| match key.split_once(sep) {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (key.to_string(), String::new()),
        };
        match self {
            Table::ChunkLocations => split('/'),
            Table::Deletions => split('\n'),
            _ => (key.to_string(), String::new()),
        }
    }
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
    /// A chunkserver, with its health as last judged by the controller that wrote
    /// this version (health transitions spread by gossip like any other write).
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
}

/// Key of a chunk-location record.
pub fn location_key(chunk: &ChunkId, node: &NodeId) -> String {
    format!("{}/{}", chunk.to_hex(), node)
}

/// Key of a name-deletion record.
pub fn deletion_key(owner: &str, name: &str) -> String {
    format!("{owner}\n{name}")
}

pub const META_COLS: &str = "vclock, hlc, origin, seq, deleted";

fn bad(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

/// Reads the five meta columns starting at `base`.
pub fn read_version(row: &Row<'_>, base: usize) -> rusqlite::Result<Version> {
    let vclock: String = row.get(base)?;
    let origin: String = row.get(base + 2)?;
    Ok(Version {
        vclock: VectorClock::from_json(&vclock).map_err(|e| bad("vclock", e))?,
        hlc: HlcTimestamp(row.get::<_, i64>(base + 1)? as u64),
        origin: NodeId::new(origin).map_err(|e| bad("origin", e))?,
        seq: row.get::<_, i64>(base + 3)? as u64,
        deleted: row.get::<_, i64>(base + 4)? != 0,
    })
}

/// The current version of `key` in `table`, if any.
pub fn load_version(
    conn: &Connection,
    table: Table,
    key: &str,
) -> rusqlite::Result<Option<Version>> {
    let (a, b) = table.key_parts(key);
    let sql = format!(
        "SELECT {META_COLS} FROM {} WHERE {}",
        table.name(),
        table.key_where()
    );
    let mut st = conn.prepare_cached(&sql)?;
    if table.key_where().contains("?2") {
        st.query_row(params![a, b], |r| read_version(r, 0))
            .optional()
    } else {
        st.query_row(params![a], |r| read_version(r, 0)).optional()
    }
}

/// The whole current record of `key` in `table`, if any.
pub fn load(conn: &Connection, table: Table, key: &str) -> rusqlite::Result<Option<Record>> {
    let (a, b) = table.key_parts(key);
    let cols = match table {
        Table::Users => "username, password_hash, created_at_ms",
        Table::Files => "owner, name, size, sha256, chunk_size, chunk_count, public, created_at_ms",
        Table::Chunks => "list",
        Table::ChunkserverNodes => "grpc_addr, http_addr, healthy",
        Table::ControllerNodes => "grpc_addr, http_addr",
        Table::ChunkLocations | Table::Deletions => "NULL",
    };
    let ncols = cols.split(',').count();
    let sql = format!(
        "SELECT {cols}, {META_COLS} FROM {} WHERE {}",
        table.name(),
        table.key_where()
    );
    let mut st = conn.prepare_cached(&sql)?;
    let read = |r: &Row<'_>| -> rusqlite::Result<Record> {
        let body = match table {
            Table::Users => Body::User {
                username: r.get(0)?,
                password_hash: r.get(1)?,
                created_at_ms: r.get::<_, i64>(2)? as u64,
            },
            Table::Files => Body::File(FileBody {
                owner: r.get(0)?,
                name: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                sha256: r.get(3)?,
                chunk_size: r.get::<_, i64>(4)? as u64,
                chunk_count: r.get::<_, i64>(5)? as u32,
                public: r.get::<_, i64>(6)? != 0,
                created_at_ms: r.get::<_, i64>(7)? as u64,
            }),
            Table::Chunks => {
                let list: String = r.get(0)?;
                Body::Chunks(decode_chunk_list(&list).map_err(|e| bad("chunk list", e))?)
            }
            Table::ChunkLocations => Body::ChunkLocation,
            Table::ChunkserverNodes => Body::Chunkserver {
                grpc_addr: r.get(0)?,
                http_addr: r.get(1)?,
                healthy: r.get::<_, i64>(2)? != 0,
            },
            Table::ControllerNodes => Body::Controller {
                grpc_addr: r.get(0)?,
                http_addr: r.get(1)?,
            },
            Table::Deletions => Body::Deletion,
        };
        Ok(Record {
            key: key.to_string(),
            version: read_version(r, ncols)?,
            body,
        })
    };
    if table.key_where().contains("?2") {
        st.query_row(params![a, b], read).optional()
    } else {
        st.query_row(params![a], read).optional()
    }
}

/// Writes `rec` as the current version of its row (insert or replace).
pub fn upsert(conn: &Connection, rec: &Record) -> rusqlite::Result<()> {
    let v = &rec.version;
    let (vc, hlc, origin, seq, del) = (
        v.vclock.to_json(),
        v.hlc.0 as i64,
        v.origin.as_str().to_string(),
        v.seq as i64,
        v.deleted as i64,
    );
    let (a, b) = rec.table().key_parts(&rec.key);
    match &rec.body {
        Body::User {
            username,
            password_hash,
            created_at_ms,
        } => conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO users (user_id, username, password_hash, created_at_ms, {META_COLS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?
        .execute(params![a, username, password_hash, *created_at_ms as i64, vc, hlc, origin, seq, del])?,
        Body::File(f) => conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO files (file_id, owner, name, size, sha256, chunk_size, chunk_count, public,
               created_at_ms, {META_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))?
        .execute(params![
            a,
            f.owner,
            f.name,
            f.size as i64,
            f.sha256,
            f.chunk_size as i64,
            f.chunk_count as i64,
            f.public as i64,
            f.created_at_ms as i64,
            vc,
            hlc,
            origin,
            seq,
            del
        ])?,
        Body::Chunks(list) => conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO chunks (file_id, list, {META_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![a, encode_chunk_list(list), vc, hlc, origin, seq, del])?,
        Body::ChunkLocation => conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO chunk_locations (chunk_id, node_id, {META_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![a, b, vc, hlc, origin, seq, del])?,
        Body::Chunkserver {
            grpc_addr,
            http_addr,
            healthy,
        } => conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO chunkserver_nodes (node_id, grpc_addr, http_addr, healthy, {META_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![a, grpc_addr, http_addr, *healthy as i64, vc, hlc, origin, seq, del])?,
        Body::Controller { grpc_addr, http_addr } => conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO controller_nodes (node_id, grpc_addr, http_addr, {META_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![a, grpc_addr, http_addr, vc, hlc, origin, seq, del])?,
        Body::Deletion => conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO deletions (owner, name, {META_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![a, b, vc, hlc, origin, seq, del])?,
    };
    Ok(())
}

/// Calls `f(table, key, version)` for every row of every replicated table.
pub fn for_each_version(
    conn: &Connection,
    mut f: impl FnMut(Table, &str, &Version),
) -> rusqlite::Result<()> {
    for t in Table::ALL {
        let sql = format!("SELECT {}, {META_COLS} FROM {}", t.key_expr(), t.name());
        let mut st = conn.prepare_cached(&sql)?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let key: String = r.get(0)?;
            let v = read_version(r, 1)?;
            f(t, &key, &v);
        }
    }
    Ok(())
}

/// The highest HLC timestamp stored in any replicated table.
pub fn max_hlc(conn: &Connection) -> rusqlite::Result<HlcTimestamp> {
    let mut max = 0i64;
    for t in Table::ALL {
        let v: Option<i64> =
            conn.query_row(&format!("SELECT MAX(hlc) FROM {}", t.name()), [], |r| {
                r.get(0)
            })?;
        max = max.max(v.unwrap_or(0));
    }
    Ok(HlcTimestamp(max as u64))
}

/// `[["<hex>", size], ...]`: JSON so SQL can read it with `json_each`.
pub fn encode_chunk_list(list: &[(ChunkId, u64)]) -> String {
    let v: Vec<(String, u64)> = list.iter().map(|(c, s)| (c.to_hex(), *s)).collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

pub fn decode_chunk_list(s: &str) -> Result<Vec<(ChunkId, u64)>, String> {
    let v: Vec<(String, u64)> = serde_json::from_str(s).map_err(|e| e.to_string())?;
    v.into_iter()
        .map(|(c, s)| {
            c.parse()
                .map(|c| (c, s))
                .map_err(|e: redcloud_common::IdError| e.to_string())
        })
        .collect()
}

/// The SQL expression that rebuilds `table`'s record key from a row.
pub fn key_expr(table: Table) -> &'static str {
    table.key_expr()
}

/// Removes the row of `key` from `table` outright (tombstone collection only).
pub fn delete_row(conn: &Connection, table: Table, key: &str) -> rusqlite::Result<usize> {
    let (a, b) = table.key_parts(key);
    let sql = format!("DELETE FROM {} WHERE {}", table.name(), table.key_where());
    if table.key_where().contains("?2") {
        conn.execute(&sql, params![a, b])
    } else {
        conn.execute(&sql, params![a])
    }
}
