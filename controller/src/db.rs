//! The metadata store: one SQLite database per controller node, in WAL mode.
//!
//! Every replicated table carries `vclock` (JSON), `hlc`, `origin` and `deleted`.
//! Every local write to a replicated row appends to `gossip_log` in the same
//! transaction, so what replication must ship is never lost between the two.
//!
//! SQLite calls block: they run on the blocking pool through [`Db::call`], on one
//! connection behind a `std` mutex (held only inside the blocking closure, never
//! across an `.await`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redcloud_common::{ChunkId, FileId, HlcTimestamp, NodeId, VectorClock};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{ControllerError, Result};
use crate::model::{ChunkRef, ChunkserverRecord, FileRecord, RowMeta};

/// Forward-only migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the tables of SPEC §2.
    r#"
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX users_username ON users(username);
    CREATE TABLE files (
        file_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        chunk_size INTEGER NOT NULL,
        chunk_count INTEGER NOT NULL,
        public INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX files_owner_name ON files(owner, name, hlc);
    CREATE TABLE chunks (
        file_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        chunk_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (file_id, idx)
    );
    CREATE INDEX chunks_chunk_id ON chunks(chunk_id);
    CREATE TABLE chunk_locations (
        chunk_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (chunk_id, node_id)
    );
    CREATE TABLE chunkserver_nodes (
        node_id TEXT PRIMARY KEY,
        grpc_addr TEXT NOT NULL,
        http_addr TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE controller_nodes (
        node_id TEXT PRIMARY KEY,
        grpc_addr TEXT NOT NULL,
        http_addr TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE gossip_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        table_name TEXT NOT NULL,
        row_key TEXT NOT NULL,
        hlc INTEGER NOT NULL,
        origin TEXT NOT NULL
    );
    CREATE TABLE gossip_peers (
        peer_id TEXT PRIMARY KEY,
        acked_seq INTEGER NOT NULL DEFAULT 0
    );
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// A handle to the metadata database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| ControllerError::Internal(format!("database task failed: {e}")))?
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(ControllerError::Internal(format!(
            "database schema version {current} is newer than this build ({}); refusing to open it",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!("metadata schema migrated to version {}", i + 1);
    }
    Ok(())
}

fn log_update(conn: &Connection, table: &str, key: &str, meta: &RowMeta) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO gossip_log (table_name, row_key, hlc, origin) VALUES (?1, ?2, ?3, ?4)",
        params![table, key, meta.hlc.0 as i64, meta.origin.as_str()],
    )?;
    Ok(())
}

fn bad_row(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

fn read_meta(row: &Row<'_>, base: usize) -> rusqlite::Result<RowMeta> {
    let vclock: String = row.get(base)?;
    let origin: String = row.get(base + 2)?;
    Ok(RowMeta {
        vclock: VectorClock::from_json(&vclock).map_err(|e| bad_row("vclock", e))?,
        hlc: HlcTimestamp(row.get::<_, i64>(base + 1)? as u64),
        origin: NodeId::new(origin).map_err(|e| bad_row("origin", e))?,
        deleted: row.get::<_, i64>(base + 3)? != 0,
    })
}

const FILE_COLS: &str = "file_id, owner, name, size, sha256, chunk_size, chunk_count, public, created_at_ms, vclock, hlc, origin, deleted";

fn read_file(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let id: String = row.get(0)?;
    Ok(FileRecord {
        file_id: id.parse::<FileId>().map_err(|e| bad_row("file_id", e))?,
        owner: row.get(1)?,
        name: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        sha256: row.get(4)?,
        chunk_size: row.get::<_, i64>(5)? as u64,
        chunk_count: row.get::<_, i64>(6)? as u32,
        public: row.get::<_, i64>(7)? != 0,
        created_at_ms: row.get::<_, i64>(8)? as u64,
        meta: read_meta(row, 9)?,
    })
}

/// Stores a new file version with its chunks and the chunk copies known so far, in
/// one transaction.
pub fn insert_file(
    conn: &mut Connection,
    file: &FileRecord,
    chunks: &[ChunkRef],
    locations: &[(ChunkId, NodeId)],
    location_meta: &RowMeta,
) -> Result<()> {
    let tx = conn.transaction()?;
    let m = &file.meta;
    tx.execute(
        &format!(
            "INSERT INTO files ({FILE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"
        ),
        params![
            file.file_id.to_string(),
            file.owner,
            file.name,
            file.size as i64,
            file.sha256,
            file.chunk_size as i64,
            file.chunk_count as i64,
            file.public as i64,
            file.created_at_ms as i64,
            m.vclock.to_json(),
            m.hlc.0 as i64,
            m.origin.as_str(),
            m.deleted as i64
        ],
    )?;
    log_update(&tx, "files", &file.file_id.to_string(), m)?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO chunks (file_id, idx, chunk_id, size, vclock, hlc, origin, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
        )?;
        for c in chunks {
            ins.execute(params![
                file.file_id.to_string(),
                c.index as i64,
                c.chunk_id.to_hex(),
                c.size as i64,
                m.vclock.to_json(),
                m.hlc.0 as i64,
                m.origin.as_str()
            ])?;
        }
    }
    if !chunks.is_empty() {
        log_update(&tx, "chunks", &file.file_id.to_string(), m)?;
    }
    upsert_locations(&tx, locations, location_meta)?;
    tx.commit()?;
    Ok(())
}

/// Records that chunkservers hold chunks.
pub fn record_locations(
    conn: &mut Connection,
    locations: &[(ChunkId, NodeId)],
    meta: &RowMeta,
) -> Result<()> {
    let tx = conn.transaction()?;
    upsert_locations(&tx, locations, meta)?;
    tx.commit()?;
    Ok(())
}

fn upsert_locations(
    tx: &Connection,
    locations: &[(ChunkId, NodeId)],
    meta: &RowMeta,
) -> rusqlite::Result<()> {
    let mut existing = tx.prepare_cached(
        "SELECT vclock, hlc, origin, deleted FROM chunk_locations WHERE chunk_id = ?1 AND node_id = ?2",
    )?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO chunk_locations (chunk_id, node_id, vclock, hlc, origin, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)
         ON CONFLICT (chunk_id, node_id) DO UPDATE SET
           vclock = excluded.vclock, hlc = excluded.hlc, origin = excluded.origin, deleted = 0",
    )?;
    for (chunk, node) in locations {
        let key = chunk.to_hex();
        let prior = existing
            .query_row(params![key, node.as_str()], |r| read_meta(r, 0))
            .optional()?;
        let mut vclock = match &prior {
            Some(p) if !p.deleted => continue, // already recorded as present
            Some(p) => p.vclock.clone(),
            None => VectorClock::new(),
        };
        vclock.increment(&meta.origin);
        upsert.execute(params![
            key,
            node.as_str(),
            vclock.to_json(),
            meta.hlc.0 as i64,
            meta.origin.as_str()
        ])?;
        log_update(tx, "chunk_locations", &format!("{key}/{node}"), meta)?;
    }
    Ok(())
}

/// The current version of `owner/name`: the live version with the highest
/// (HLC timestamp, origin).
pub fn current_file(conn: &Connection, owner: &str, name: &str) -> Result<Option<FileRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {FILE_COLS} FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0
                 ORDER BY hlc DESC, origin DESC LIMIT 1"
            ),
            params![owner, name],
            read_file,
        )
        .optional()?)
}

/// A specific live version of `owner/name`.
pub fn file_version(
    conn: &Connection,
    owner: &str,
    name: &str,
    id: &FileId,
) -> Result<Option<FileRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {FILE_COLS} FROM files WHERE file_id = ?1 AND owner = ?2 AND name = ?3 AND deleted = 0"),
            params![id.to_string(), owner, name],
            read_file,
        )
        .optional()?)
}

/// The current version of every live file of `owner` whose name starts with `prefix`.
pub fn list_current(conn: &Connection, owner: &str, prefix: &str) -> Result<Vec<FileRecord>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {FILE_COLS} FROM files f
         WHERE owner = ?1 AND deleted = 0 AND substr(name, 1, length(?2)) = ?2
           AND NOT EXISTS (
             SELECT 1 FROM files g
             WHERE g.owner = f.owner AND g.name = f.name AND g.deleted = 0
               AND (g.hlc > f.hlc OR (g.hlc = f.hlc AND g.origin > f.origin)))
         ORDER BY name"
    ))?;
    let rows = st.query_map(params![owner, prefix], read_file)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The chunks of a file version, in order.
pub fn file_chunks(conn: &Connection, file_id: &FileId) -> Result<Vec<ChunkRef>> {
    let mut st = conn.prepare_cached(
        "SELECT idx, chunk_id, size FROM chunks WHERE file_id = ?1 AND deleted = 0 ORDER BY idx",
    )?;
    let rows = st.query_map(params![file_id.to_string()], |r| {
        let id: String = r.get(1)?;
        Ok(ChunkRef {
            index: r.get::<_, i64>(0)? as u32,
            chunk_id: id.parse().map_err(|e| bad_row("chunk_id", e))?,
            size: r.get::<_, i64>(2)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Which chunkservers are recorded as holding each of `chunks`.
pub fn locations(conn: &Connection, chunks: &[ChunkId]) -> Result<HashMap<ChunkId, Vec<NodeId>>> {
    let mut st = conn.prepare_cached(
        "SELECT node_id FROM chunk_locations WHERE chunk_id = ?1 AND deleted = 0",
    )?;
    let mut out = HashMap::new();
    for c in chunks {
        let nodes = st
            .query_map(params![c.to_hex()], |r| {
                let s: String = r.get(0)?;
                NodeId::new(s).map_err(|e| bad_row("node_id", e))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.insert(*c, nodes);
    }
    Ok(out)
}

/// Tombstones every live version of `owner/name`; returns how many there were.
pub fn delete_name(
    conn: &mut Connection,
    owner: &str,
    name: &str,
    node: &NodeId,
    hlc: HlcTimestamp,
) -> Result<u32> {
    let tx = conn.transaction()?;
    let versions: Vec<(String, String)> = {
        let mut st = tx.prepare(
            "SELECT file_id, vclock FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0",
        )?;
        st.query_map(params![owner, name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    for (id, vclock) in &versions {
        let mut vc = VectorClock::from_json(vclock).map_err(|e| bad_row("vclock", e))?;
        vc.increment(node);
        let meta = RowMeta {
            vclock: vc,
            hlc,
            origin: node.clone(),
            deleted: true,
        };
        tx.execute(
            "UPDATE files SET deleted = 1, vclock = ?2, hlc = ?3, origin = ?4 WHERE file_id = ?1",
            params![id, meta.vclock.to_json(), hlc.0 as i64, node.as_str()],
        )?;
        log_update(&tx, "files", id, &meta)?;
    }
    tx.commit()?;
    Ok(versions.len() as u32)
}

/// Records (or updates the addresses of) a chunkserver. Returns true if anything changed.
pub fn upsert_chunkserver(
    conn: &mut Connection,
    cs: &ChunkserverRecord,
    node: &NodeId,
    hlc: HlcTimestamp,
) -> Result<bool> {
    let tx = conn.transaction()?;
    let prior: Option<(String, String, String, i64)> = tx
        .query_row(
            "SELECT grpc_addr, http_addr, vclock, deleted FROM chunkserver_nodes WHERE node_id = ?1",
            params![cs.node_id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let mut vclock = match prior {
        Some((g, h, _, 0)) if g == cs.grpc_addr && h == cs.http_addr => return Ok(false),
        Some((_, _, vc, _)) => VectorClock::from_json(&vc).map_err(|e| bad_row("vclock", e))?,
        None => VectorClock::new(),
    };
    vclock.increment(node);
    let meta = RowMeta {
        vclock,
        hlc,
        origin: node.clone(),
        deleted: false,
    };
    tx.execute(
        "INSERT INTO chunkserver_nodes (node_id, grpc_addr, http_addr, vclock, hlc, origin, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT (node_id) DO UPDATE SET grpc_addr = excluded.grpc_addr, http_addr = excluded.http_addr,
           vclock = excluded.vclock, hlc = excluded.hlc, origin = excluded.origin, deleted = 0",
        params![cs.node_id.as_str(), cs.grpc_addr, cs.http_addr, meta.vclock.to_json(), hlc.0 as i64, node.as_str()],
    )?;
    log_update(&tx, "chunkserver_nodes", cs.node_id.as_str(), &meta)?;
    tx.commit()?;
    Ok(true)
}

/// Every registered chunkserver.
pub fn chunkservers(conn: &Connection) -> Result<Vec<ChunkserverRecord>> {
    let mut st = conn
        .prepare("SELECT node_id, grpc_addr, http_addr FROM chunkserver_nodes WHERE deleted = 0")?;
    let rows = st.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok(ChunkserverRecord {
            node_id: NodeId::new(id).map_err(|e| bad_row("node_id", e))?,
            grpc_addr: r.get(1)?,
            http_addr: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Records this controller in `controller_nodes` (if its addresses changed).
pub fn upsert_controller(
    conn: &mut Connection,
    node: &NodeId,
    grpc: &str,
    http: &str,
    hlc: HlcTimestamp,
) -> Result<()> {
    let tx = conn.transaction()?;
    let prior: Option<(String, String, String)> = tx
        .query_row(
            "SELECT grpc_addr, http_addr, vclock FROM controller_nodes WHERE node_id = ?1",
            params![node.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let mut vclock = match prior {
        Some((g, h, _)) if g == grpc && h == http => return Ok(()),
        Some((_, _, vc)) => VectorClock::from_json(&vc).map_err(|e| bad_row("vclock", e))?,
        None => VectorClock::new(),
    };
    vclock.increment(node);
    let meta = RowMeta {
        vclock,
        hlc,
        origin: node.clone(),
        deleted: false,
    };
    tx.execute(
        "INSERT INTO controller_nodes (node_id, grpc_addr, http_addr, vclock, hlc, origin, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT (node_id) DO UPDATE SET grpc_addr = excluded.grpc_addr, http_addr = excluded.http_addr,
           vclock = excluded.vclock, hlc = excluded.hlc, origin = excluded.origin, deleted = 0",
        params![node.as_str(), grpc, http, meta.vclock.to_json(), hlc.0 as i64, node.as_str()],
    )?;
    log_update(&tx, "controller_nodes", node.as_str(), &meta)?;
    tx.commit()?;
    Ok(())
}

/// Every known controller: (id, gRPC address, HTTP address).
pub fn controllers(conn: &Connection) -> Result<Vec<(NodeId, String, String)>> {
    let mut st = conn.prepare("SELECT node_id, grpc_addr, http_addr FROM controller_nodes WHERE deleted = 0 ORDER BY node_id")?;
    let rows = st.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok((
            NodeId::new(id).map_err(|e| bad_row("node_id", e))?,
            r.get(1)?,
            r.get(2)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every distinct chunk referenced by a live file version, with the chunkservers
/// recorded as holding it.
pub fn live_chunk_locations(conn: &Connection) -> Result<HashMap<ChunkId, Vec<NodeId>>> {
    let mut st = conn.prepare(
        "SELECT c.chunk_id, l.node_id FROM
           (SELECT DISTINCT chunks.chunk_id FROM chunks JOIN files ON files.file_id = chunks.file_id
            WHERE files.deleted = 0 AND chunks.deleted = 0) c
         LEFT JOIN chunk_locations l ON l.chunk_id = c.chunk_id AND l.deleted = 0",
    )?;
    let mut out: HashMap<ChunkId, Vec<NodeId>> = HashMap::new();
    let rows = st.query_map([], |r| {
        let c: String = r.get(0)?;
        let n: Option<String> = r.get(1)?;
        Ok((c, n))
    })?;
    for row in rows {
        let (c, n) = row?;
        let id: ChunkId = c.parse().map_err(|e| bad_row("chunk_id", e))?;
        let entry = out.entry(id).or_default();
        if let Some(n) = n {
            entry.push(NodeId::new(n).map_err(|e| bad_row("node_id", e))?);
        }
    }
    Ok(out)
}

/// The number of live files (current versions).
pub fn live_file_count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM (SELECT DISTINCT owner, name FROM files WHERE deleted = 0)",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn meta(n: &NodeId, hlc: u64) -> RowMeta {
        let mut vclock = VectorClock::new();
        vclock.increment(n);
        RowMeta {
            vclock,
            hlc: HlcTimestamp(hlc),
            origin: n.clone(),
            deleted: false,
        }
    }

    fn file(name: &str, hlc: u64, n: &NodeId) -> FileRecord {
        FileRecord {
            file_id: FileId::generate(),
            owner: "anonymous".into(),
            name: name.into(),
            size: 3,
            sha256: "x".into(),
            chunk_size: 1024,
            chunk_count: 1,
            public: false,
            created_at_ms: 1,
            meta: meta(n, hlc),
        }
    }

    #[test]
    fn versions_listing_and_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.sqlite")).unwrap();
        let mut c = db.conn.lock().unwrap();
        let a = node("a");
        let chunk = ChunkRef {
            index: 0,
            chunk_id: ChunkId::of(b"abc"),
            size: 3,
        };
        let v1 = file("moby.txt", 10, &a);
        let v2 = file("moby.txt", 20, &a);
        let other = file("other.txt", 15, &a);
        for f in [&v1, &v2, &other] {
            insert_file(
                &mut c,
                f,
                std::slice::from_ref(&chunk),
                &[(chunk.chunk_id, a.clone())],
                &f.meta,
            )
            .unwrap();
        }
        assert_eq!(
            current_file(&c, "anonymous", "moby.txt")
                .unwrap()
                .unwrap()
                .file_id,
            v2.file_id
        );
        assert!(
            file_version(&c, "anonymous", "moby.txt", &v1.file_id)
                .unwrap()
                .is_some()
        );
        let names: Vec<_> = list_current(&c, "anonymous", "")
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["moby.txt", "other.txt"]);
        assert_eq!(list_current(&c, "anonymous", "oth").unwrap().len(), 1);
        assert_eq!(file_chunks(&c, &v1.file_id).unwrap(), vec![chunk.clone()]);
        assert_eq!(
            locations(&c, &[chunk.chunk_id]).unwrap()[&chunk.chunk_id],
            vec![a.clone()]
        );

        assert_eq!(
            delete_name(&mut c, "anonymous", "moby.txt", &a, HlcTimestamp(30)).unwrap(),
            2
        );
        assert!(current_file(&c, "anonymous", "moby.txt").unwrap().is_none());
        assert_eq!(live_file_count(&c).unwrap(), 1);
        let log: i64 = c
            .query_row("SELECT COUNT(*) FROM gossip_log", [], |r| r.get(0))
            .unwrap();
        assert!(log >= 8, "every replicated write is logged, got {log}");
        drop(c);
        // Reopening does not re-run migrations.
        drop(db);
        Db::open(&dir.path().join("m.sqlite")).unwrap();
    }
}
