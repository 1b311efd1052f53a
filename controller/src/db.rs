//! The metadata store: one SQLite database per controller node, in WAL mode, and the
//! replication bookkeeping that goes with it.
//!
//! Every replicated table carries `vclock` (JSON), `hlc`, `origin`, `seq` and
//! `deleted`. Every write this node makes or learns is numbered `(origin, seq)` and
//! appended to `gossip_log` in the same transaction as the row it produced, and the
//! node's coverage (which writes its state reflects, per origin) is updated and
//! persisted in `replication_state` in that transaction too.
//!
//! SQLite calls block: they run on the blocking pool through [`Db::call`], on one
//! connection behind a `std` mutex (held only inside the blocking closure, never
//! across an `.await`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use redcloud_common::replication::{Coverage, StateDigest, Version, VersionVector, supersedes};
use redcloud_common::{ChunkId, FileId, Hlc, HlcTimestamp, NodeId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{ControllerError, Result};
use crate::model::{ChunkRef, ChunkserverRecord, FileRecord, VersionEntry};
use crate::records::{self, Body, Record, Table};

/// Forward-only migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the tables of SPEC §2, plus name deletions and replication bookkeeping.
    r#"
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
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
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX files_owner_name ON files(owner, name, hlc);
    CREATE TABLE chunks (
        file_id TEXT PRIMARY KEY,
        list TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chunk_locations (
        chunk_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (chunk_id, node_id)
    );
    CREATE TABLE chunkserver_nodes (
        node_id TEXT PRIMARY KEY,
        grpc_addr TEXT NOT NULL,
        http_addr TEXT NOT NULL,
        healthy INTEGER NOT NULL DEFAULT 1,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE controller_nodes (
        node_id TEXT PRIMARY KEY,
        grpc_addr TEXT NOT NULL,
        http_addr TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE deletions (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, name)
    );
    -- Every write this node made or learned: (origin, seq) -> the row it wrote.
    -- An empty table_name marks a write known only to have been superseded.
    CREATE TABLE gossip_log (
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        table_name TEXT NOT NULL,
        row_key TEXT NOT NULL,
        PRIMARY KEY (origin, seq)
    ) WITHOUT ROWID;
    -- Per origin, the contiguous prefix of its writes this node's state reflects.
    CREATE TABLE replication_state (
        origin TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    -- What each peer controller has seen: its version vector at our last exchange.
    CREATE TABLE gossip_peers (
        peer_id TEXT PRIMARY KEY,
        vector TEXT NOT NULL,
        last_exchange_ms INTEGER NOT NULL
    );
    "#,
    // 2: a log entry whose row has since been superseded (or purged) is marked as a
    // bare superseded write (empty table_name) at that moment, so tombstone collection
    // finds the entries it may drop through a partial index instead of checking every
    // entry against its table; and the tombstones collection looks at are indexed.
    // Existing entries are converted once, by key lookups.
    r#"
    UPDATE gossip_log SET table_name = '', row_key = '' WHERE
        (table_name = 'users' AND NOT EXISTS (SELECT 1 FROM users t WHERE t.user_id = gossip_log.row_key
            AND t.origin = gossip_log.origin AND t.seq = gossip_log.seq))
     OR (table_name = 'files' AND NOT EXISTS (SELECT 1 FROM files t WHERE t.file_id = gossip_log.row_key
            AND t.origin = gossip_log.origin AND t.seq = gossip_log.seq))
     OR (table_name = 'chunks' AND NOT EXISTS (SELECT 1 FROM chunks t WHERE t.file_id = gossip_log.row_key
            AND t.origin = gossip_log.origin AND t.seq = gossip_log.seq))
     OR (table_name = 'chunk_locations' AND NOT EXISTS (SELECT 1 FROM chunk_locations t
            WHERE t.chunk_id = substr(gossip_log.row_key, 1, instr(gossip_log.row_key, '/') - 1)
              AND t.node_id = substr(gossip_log.row_key, instr(gossip_log.row_key, '/') + 1)
              AND t.origin = gossip_log.origin AND t.seq = gossip_log.seq))
     OR (table_name = 'chunkserver_nodes' AND NOT EXISTS (SELECT 1 FROM chunkserver_nodes t
            WHERE t.node_id = gossip_log.row_key AND t.origin = gossip_log.origin AND t.seq = gossip_log.seq))
     OR (table_name = 'controller_nodes' AND NOT EXISTS (SELECT 1 FROM controller_nodes t
            WHERE t.node_id = gossip_log.row_key AND t.origin = gossip_log.origin AND t.seq = gossip_log.seq))
     OR (table_name = 'deletions' AND NOT EXISTS (SELECT 1 FROM deletions t
            WHERE t.owner = substr(gossip_log.row_key, 1, instr(gossip_log.row_key, char(10)) - 1)
              AND t.name = substr(gossip_log.row_key, instr(gossip_log.row_key, char(10)) + 1)
              AND t.origin = gossip_log.origin AND t.seq = gossip_log.seq));
    CREATE INDEX gossip_log_superseded ON gossip_log(origin, seq) WHERE table_name = '';
    CREATE INDEX users_tombstones ON users(hlc) WHERE deleted = 1;
    CREATE INDEX files_tombstones ON files(hlc) WHERE deleted = 1;
    CREATE INDEX chunks_tombstones ON chunks(hlc) WHERE deleted = 1;
    CREATE INDEX chunk_locations_tombstones ON chunk_locations(hlc) WHERE deleted = 1;
    CREATE INDEX chunkserver_nodes_tombstones ON chunkserver_nodes(hlc) WHERE deleted = 1;
    CREATE INDEX controller_nodes_tombstones ON controller_nodes(hlc) WHERE deleted = 1;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// One local change to a replicated row.
#[derive(Debug, Clone)]
pub struct Write {
    pub key: String,
    pub body: Body,
    pub deleted: bool,
}

/// An anti-entropy delta: what a peer at some version vector lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delta {
    /// Current versions whose write the peer has not seen.
    pub records: Vec<Record>,
    /// Writes the peer has not seen that were since superseded here: `(origin, seq)`.
    pub superseded: Vec<(NodeId, u64)>,
    /// False if the delta was cut at the size limit (ask again for the rest).
    pub complete: bool,
}

/// The connection and this node's replication state, guarded together so a row
/// and the bookkeeping about it never disagree.
pub struct Store {
    pub conn: Connection,
    node: NodeId,
    hlc: Arc<Hlc>,
    next_seq: u64,
    coverage: Coverage,
    /// Highest seq logged per origin (contiguous or not).
    max_seq: BTreeMap<NodeId, u64>,
    /// The exclusive lock on the database, held as long as this store exists.
    _lock: std::fs::File,
}

/// How long opening waits for another holder of the database to let go of it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes the exclusive lock on `<db>.lock`. Write numbering lives in this process's
/// memory (the next `seq`, the coverage), so two processes writing one database
/// would issue one `(origin, seq)` for two different writes, and peers that had
/// seen the first would ignore the second: a lost write. A killed controller's
/// lock goes with its process; an instance still shutting down is waited for.
fn lock_database(path: &Path, wait: std::time::Duration) -> Result<std::fs::File> {
    let lock_path = path.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            ControllerError::Internal(format!(
                "cannot open lock file {}: {e}",
                lock_path.display()
            ))
        })?;
    let deadline = std::time::Instant::now() + wait;
    let mut warned = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                if !warned {
                    warned = true;
                    tracing::warn!(
                        lock = %lock_path.display(),
                        "the metadata database is held by another process; waiting up to {:.0} s",
                        wait.as_secs_f64()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ControllerError::Internal(format!(
                    "metadata database {} is in use by another controller (lock {} still held after {:.1} s); \
                     is another controller running on this data directory?",
                    path.display(),
                    lock_path.display(),
                    wait.as_secs_f64()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(ControllerError::Internal(format!(
                    "cannot lock {}: {e}",
                    lock_path.display()
                )));
            }
        }
    }
}

/// A handle to the metadata database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
}

impl Db {
    /// Opens (creating and migrating as needed) the database at `path` for `node`.
    pub fn open(path: &Path, node: NodeId, hlc: Arc<Hlc>) -> Result<Self> {
        Self::open_waiting(path, node, hlc, LOCK_WAIT)
    }

    /// Like [`Db::open`], waiting at most `wait` for another holder of the database.
    pub fn open_waiting(
        path: &Path,
        node: NodeId,
        hlc: Arc<Hlc>,
        wait: std::time::Duration,
    ) -> Result<Self> {
        let lock = lock_database(path, wait)?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        let mut vv = VersionVector::default();
        {
            let mut st = conn.prepare("SELECT origin, seq FROM replication_state")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (o, s) = row?;
                if let Ok(o) = NodeId::new(o) {
                    vv.0.insert(o, s as u64);
                }
            }
        }
        let mut max_seq = BTreeMap::new();
        {
            let mut st = conn.prepare("SELECT origin, MAX(seq) FROM gossip_log GROUP BY origin")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (o, s) = row?;
                if let Ok(o) = NodeId::new(o) {
                    max_seq.insert(o, s as u64);
                }
            }
        }
        hlc.observe(records::max_hlc(&conn)?);
        let next_seq = max_seq.get(&node).copied().unwrap_or(0).max(vv.get(&node)) + 1;
        let store = Store {
            conn,
            node,
            hlc,
            next_seq,
            coverage: Coverage::new(vv),
            max_seq,
            _lock: lock,
        };
        Ok(Db {
            store: Arc::new(Mutex::new(store)),
        })
    }

    /// Runs `f` on the store, on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s)
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

fn log_write(
    conn: &Connection,
    origin: &NodeId,
    seq: u64,
    table: &str,
    key: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO gossip_log (origin, seq, table_name, row_key) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![origin.as_str(), seq as i64, table, key])?;
    Ok(())
}

/// Marks the log entry of write `(origin, seq)` as a bare superseded write: its row
/// now holds a newer version (or is gone), so a delta sends only the marker, and
/// tombstone collection may drop the entry once every controller has seen the write.
pub(crate) fn retire_log(conn: &Connection, origin: &NodeId, seq: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE gossip_log SET table_name = '', row_key = '' WHERE origin = ?1 AND seq = ?2",
    )?
    .execute(params![origin.as_str(), seq as i64])?;
    Ok(())
}

fn persist_vv(
    conn: &Connection,
    before: &VersionVector,
    after: &VersionVector,
) -> rusqlite::Result<()> {
    let mut st = conn
        .prepare_cached("INSERT OR REPLACE INTO replication_state (origin, seq) VALUES (?1, ?2)")?;
    for (o, s) in &after.0 {
        if before.get(o) != *s {
            st.execute(params![o.as_str(), *s as i64])?;
        }
    }
    Ok(())
}

impl Store {
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// This node's version vector: per origin, the writes its state reflects.
    pub fn vector(&self) -> VersionVector {
        self.coverage.vector().clone()
    }

    /// Makes local writes: each gets the next `seq`, a vector clock one past the
    /// row's current one, and a fresh HLC timestamp. Returns the records written.
    pub fn write(&mut self, writes: Vec<Write>) -> Result<Vec<Record>> {
        let first_seq = self.next_seq;
        let mut coverage = self.coverage.clone();
        let before = coverage.vector().clone();
        let result = (|| -> Result<Vec<Record>> {
            let tx = self.conn.transaction()?;
            let mut out = Vec::with_capacity(writes.len());
            for (seq, w) in (first_seq..).zip(writes) {
                let table = w.body.table();
                let previous = records::load_version(&tx, table, &w.key)?;
                if let Some(p) = &previous {
                    retire_log(&tx, &p.origin, p.seq)?;
                }
                let mut vclock = previous.map(|v| v.vclock).unwrap_or_default();
                vclock.increment(&self.node);
                let rec = Record {
                    key: w.key,
                    version: Version {
                        vclock,
                        hlc: self.hlc.now(),
                        origin: self.node.clone(),
                        seq,
                        deleted: w.deleted,
                    },
                    body: w.body,
                };
                records::upsert(&tx, &rec)?;
                log_write(&tx, &self.node, seq, table.name(), &rec.key)?;
                coverage.record(&self.node, seq);
                out.push(rec);
            }
            persist_vv(&tx, &before, coverage.vector())?;
            tx.commit()?;
            Ok(out)
        })();
        if let Ok(out) = &result {
            self.next_seq = first_seq + out.len() as u64;
            self.coverage = coverage;
            if let Some(last) = out.last() {
                self.max_seq.insert(self.node.clone(), last.version.seq);
            }
        }
        result
    }

    /// Applies records and superseded-write markers from a peer. Returns the
    /// records that changed this node's state (the news to pass on).
    pub fn apply(
        &mut self,
        incoming: Vec<Record>,
        superseded: &[(NodeId, u64)],
    ) -> Result<Vec<Record>> {
        self.apply_delta(incoming, superseded, None)
    }

    /// Like [`Store::apply`]; with `complete_from`, the records are a *complete*
    /// delta from a peer whose vector was that, so afterwards this node reflects
    /// everything that peer did and takes its vector in.
    pub fn apply_delta(
        &mut self,
        incoming: Vec<Record>,
        superseded: &[(NodeId, u64)],
        complete_from: Option<&VersionVector>,
    ) -> Result<Vec<Record>> {
        let mut coverage = self.coverage.clone();
        let before = coverage.vector().clone();
        let mut max_seq = self.max_seq.clone();
        let result = (|| -> Result<Vec<Record>> {
            let tx = self.conn.transaction()?;
            let mut changed = Vec::new();
            for rec in incoming {
                let v = &rec.version;
                self.hlc.observe(v.hlc);
                if v.seq == 0 {
                    continue; // not a numbered write: ignore rather than corrupt coverage
                }
                // Already reflected here: either held, superseded, or purged after
                // every controller saw its tombstone. Re-applying could only undo that.
                if coverage.covers(&v.origin, v.seq) {
                    continue;
                }
                let table = rec.table();
                let current = records::load_version(&tx, table, &rec.key)?;
                let newer = current.as_ref().is_none_or(|cur| supersedes(v, cur));
                if newer {
                    if let Some(cur) = &current {
                        retire_log(&tx, &cur.origin, cur.seq)?;
                    }
                    log_write(&tx, &v.origin, v.seq, table.name(), &rec.key)?;
                } else {
                    log_write(&tx, &v.origin, v.seq, "", "")?;
                }
                coverage.record(&v.origin, v.seq);
                let m = max_seq.entry(v.origin.clone()).or_insert(0);
                *m = (*m).max(v.seq);
                if newer {
                    records::upsert(&tx, &rec)?;
                    changed.push(rec);
                }
            }
            for (origin, seq) in superseded {
                if *seq == 0 {
                    continue;
                }
                log_write(&tx, origin, *seq, "", "")?;
                coverage.record(origin, *seq);
                let m = max_seq.entry(origin.clone()).or_insert(0);
                *m = (*m).max(*seq);
            }
            if let Some(vv) = complete_from {
                coverage.absorb(vv);
            }
            persist_vv(&tx, &before, coverage.vector())?;
            tx.commit()?;
            Ok(changed)
        })();
        if result.is_ok() {
            self.coverage = coverage;
            self.max_seq = max_seq;
        }
        result
    }

    /// What a peer whose version vector is `theirs` lacks, at most `limit` items.
    pub fn delta(&self, theirs: &VersionVector, limit: usize) -> Result<Delta> {
        let mut d = Delta {
            complete: true,
            ..Delta::default()
        };
        let mut st = self.conn.prepare_cached(
            "SELECT seq, table_name, row_key FROM gossip_log WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        for (origin, &max) in &self.max_seq {
            let from = theirs.get(origin);
            if max <= from {
                continue;
            }
            let room = limit.saturating_sub(d.records.len() + d.superseded.len());
            if room == 0 {
                d.complete = false;
                break;
            }
            let entries: Vec<(i64, String, String)> = st
                .query_map(
                    params![origin.as_str(), from as i64, room as i64 + 1],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?
                .collect::<rusqlite::Result<_>>()?;
            if entries.len() > room {
                d.complete = false;
            }
            for (seq, table, key) in entries.into_iter().take(room) {
                let seq = seq as u64;
                let current = match Table::from_name(&table) {
                    Some(t) => records::load(&self.conn, t, &key)?,
                    None => None,
                };
                match current {
                    Some(r) if r.version.origin == *origin && r.version.seq == seq => {
                        d.records.push(r)
                    }
                    _ => d.superseded.push((origin.clone(), seq)),
                }
            }
        }
        Ok(d)
    }

    /// An order-independent digest of every replicated row's current version,
    /// tombstones left out: a tombstone and a purged (or never seen) row are the
    /// same state, and controllers purge tombstones at different moments (each
    /// after TOMBSTONE_GRACE by its own clock). A live row held on one side only,
    /// or in different versions, still changes the digest.
    pub fn digest(&self) -> Result<StateDigest> {
        let mut d = StateDigest::default();
        records::for_each_version(&self.conn, |t, k, v| {
            if !v.deleted {
                d.add(t.name(), k, v)
            }
        })?;
        Ok(d)
    }

    /// Remembers what a peer has seen, and, with `synced_at`, that we now hold
    /// everything it held no earlier than that time (by our clock): a complete delta
    /// from it, asked for at `synced_at`, was applied. Chunk GC relies on that time, so
    /// only an exchange this node started sets it (the peer computed its answer after
    /// our question left); a summary, a partial delta or a peer's push-back must not.
    pub fn note_peer_vector(
        &self,
        peer: &NodeId,
        vv: &VersionVector,
        synced_at: Option<u64>,
    ) -> Result<()> {
        let vector = serde_json::to_string(vv).unwrap_or_default();
        if let Some(at) = synced_at {
            self.conn
                .prepare_cached(
                    "INSERT INTO gossip_peers (peer_id, vector, last_exchange_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (peer_id) DO UPDATE SET vector = excluded.vector,
                       last_exchange_ms = MAX(last_exchange_ms, excluded.last_exchange_ms)",
                )?
                .execute(params![peer.as_str(), vector, at as i64])?;
        } else {
            self.conn
                .prepare_cached(
                    "INSERT INTO gossip_peers (peer_id, vector, last_exchange_ms) VALUES (?1, ?2, 0)
                     ON CONFLICT (peer_id) DO UPDATE SET vector = excluded.vector",
                )?
                .execute(params![peer.as_str(), vector])?;
        }
        Ok(())
    }
}

const FILE_COLS: &str = "file_id, owner, name, size, sha256, chunk_size, chunk_count, public, created_at_ms, vclock, hlc, origin, seq, deleted";

fn bad_row(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

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
        meta: records::read_version(row, 9)?,
    })
}

/// Orders versions by the merge rule's tiebreak: (HLC, origin).
fn newer(a_hlc: HlcTimestamp, a_origin: &NodeId, b_hlc: HlcTimestamp, b_origin: &NodeId) -> bool {
    (a_hlc, a_origin) > (b_hlc, b_origin)
}

/// The deletion marker of `owner/name`, if any: (hlc, origin).
fn deletion(conn: &Connection, owner: &str, name: &str) -> Result<Option<(HlcTimestamp, NodeId)>> {
    let r = conn
        .prepare_cached(
            "SELECT hlc, origin FROM deletions WHERE owner = ?1 AND name = ?2 AND deleted = 0",
        )?
        .query_row(params![owner, name], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    Ok(match r {
        Some((h, o)) => Some((
            HlcTimestamp(h as u64),
            NodeId::new(o).map_err(|e| bad_row("origin", e))?,
        )),
        None => None,
    })
}

/// Every version of `owner/name`, newest first (live and deleted).
pub fn versions(conn: &Connection, owner: &str, name: &str) -> Result<Vec<VersionEntry>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {FILE_COLS} FROM files WHERE owner = ?1 AND name = ?2 ORDER BY hlc DESC, origin DESC"
    ))?;
    let files = st
        .query_map(params![owner, name], read_file)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let current = current_of(conn, owner, name, &files)?.map(|f| f.file_id);
    Ok(files
        .into_iter()
        .map(|f| VersionEntry {
            current: Some(f.file_id) == current,
            file: f,
        })
        .collect())
}

/// The current version among `files` (all versions of one name): the live one with
/// the highest (HLC, origin), unless a later deletion of the name hides it.
fn current_of(
    conn: &Connection,
    owner: &str,
    name: &str,
    files: &[FileRecord],
) -> Result<Option<FileRecord>> {
    let best = files
        .iter()
        .filter(|f| !f.meta.deleted)
        .max_by(|a, b| (a.meta.hlc, &a.meta.origin).cmp(&(b.meta.hlc, &b.meta.origin)));
    let Some(best) = best else { return Ok(None) };
    if let Some((dh, dorigin)) = deletion(conn, owner, name)?
        && newer(dh, &dorigin, best.meta.hlc, &best.meta.origin)
    {
        return Ok(None);
    }
    Ok(Some(best.clone()))
}

/// The current version of `owner/name`.
pub fn current_file(conn: &Connection, owner: &str, name: &str) -> Result<Option<FileRecord>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {FILE_COLS} FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0"
    ))?;
    let files = st
        .query_map(params![owner, name], read_file)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    current_of(conn, owner, name, &files)
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
        "SELECT {FILE_COLS} FROM files
         WHERE owner = ?1 AND deleted = 0 AND substr(name, 1, length(?2)) = ?2
         ORDER BY name"
    ))?;
    let files = st
        .query_map(params![owner, prefix], read_file)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < files.len() {
        let mut j = i;
        while j < files.len() && files[j].name == files[i].name {
            j += 1;
        }
        if let Some(f) = current_of(conn, owner, &files[i].name, &files[i..j])? {
            out.push(f);
        }
        i = j;
    }
    Ok(out)
}

/// The chunks of a file version, in order; `None` if its chunk list has not
/// arrived (yet) on this controller.
pub fn file_chunks(conn: &Connection, file_id: &FileId) -> Result<Option<Vec<ChunkRef>>> {
    let list: Option<String> = conn
        .prepare_cached("SELECT list FROM chunks WHERE file_id = ?1")?
        .query_row(params![file_id.to_string()], |r| r.get(0))
        .optional()?;
    let Some(list) = list else { return Ok(None) };
    let list = records::decode_chunk_list(&list)
        .map_err(|e| ControllerError::Internal(format!("chunk list: {e}")))?;
    Ok(Some(
        list.into_iter()
            .enumerate()
            .map(|(i, (chunk_id, size))| ChunkRef {
                index: i as u32,
                chunk_id,
                size,
            })
            .collect(),
    ))
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

/// Records a new file version: its row, its chunk list and the copies known so far.
pub fn insert_file(
    store: &mut Store,
    file: &FileRecord,
    chunks: &[ChunkRef],
    holders: &[(ChunkId, NodeId)],
) -> Result<Vec<Record>> {
    let mut writes = vec![
        Write {
            key: file.file_id.to_string(),
            body: Body::File(file.body()),
            deleted: false,
        },
        Write {
            key: file.file_id.to_string(),
            body: Body::Chunks(chunks.iter().map(|c| (c.chunk_id, c.size)).collect()),
            deleted: false,
        },
    ];
    writes.extend(location_writes(&store.conn, holders)?);
    store.write(writes)
}

fn location_writes(conn: &Connection, holders: &[(ChunkId, NodeId)]) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    for (chunk, node) in holders {
        let key = records::location_key(chunk, node);
        match records::load_version(conn, Table::ChunkLocations, &key)? {
            Some(v) if !v.deleted => {} // already recorded
            _ => out.push(Write {
                key,
                body: Body::ChunkLocation,
                deleted: false,
            }),
        }
    }
    Ok(out)
}

/// Records that chunkservers hold chunks (those not yet recorded).
pub fn record_locations(store: &mut Store, holders: &[(ChunkId, NodeId)]) -> Result<Vec<Record>> {
    let writes = location_writes(&store.conn, holders)?;
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    store.write(writes)
}

/// Deletes `owner/name`: tombstones every live version this node knows and records
/// the name's deletion (which hides concurrent older uploads it did not know of).
/// Returns the number of versions tombstoned and the records written.
pub fn delete_name(store: &mut Store, owner: &str, name: &str) -> Result<(u32, Vec<Record>)> {
    let live: Vec<FileRecord> = {
        let mut st = store.conn.prepare_cached(&format!(
            "SELECT {FILE_COLS} FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0"
        ))?;
        st.query_map(params![owner, name], read_file)?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    if current_of(&store.conn, owner, name, &live)?.is_none() {
        return Ok((0, Vec::new()));
    }
    let mut writes: Vec<Write> = live
        .iter()
        .map(|f| Write {
            key: f.file_id.to_string(),
            body: Body::File(f.body()),
            deleted: true,
        })
        .collect();
    writes.push(Write {
        key: records::deletion_key(owner, name),
        body: Body::Deletion,
        deleted: false,
    });
    let recs = store.write(writes)?;
    Ok((live.len() as u32, recs))
}

/// Records a chunkserver's addresses and health as this controller judges it, if
/// anything changed.
pub fn upsert_chunkserver(
    store: &mut Store,
    cs: &ChunkserverRecord,
    healthy: bool,
) -> Result<Vec<Record>> {
    upsert_node(
        store,
        cs.node_id.as_str(),
        Body::Chunkserver {
            grpc_addr: cs.grpc_addr.clone(),
            http_addr: cs.http_addr.clone(),
            healthy,
        },
    )
}

/// Records (or updates the addresses of) a controller, if anything changed.
pub fn upsert_controller(
    store: &mut Store,
    node: &NodeId,
    grpc: &str,
    http: &str,
) -> Result<Vec<Record>> {
    upsert_node(
        store,
        node.as_str(),
        Body::Controller {
            grpc_addr: grpc.to_string(),
            http_addr: http.to_string(),
        },
    )
}

fn upsert_node(store: &mut Store, key: &str, body: Body) -> Result<Vec<Record>> {
    if let Some(cur) = records::load(&store.conn, body.table(), key)?
        && !cur.version.deleted
        && cur.body == body
    {
        return Ok(Vec::new());
    }
    store.write(vec![Write {
        key: key.to_string(),
        body,
        deleted: false,
    }])
}

/// Every registered chunkserver, with its health as last gossiped.
pub fn chunkservers(conn: &Connection) -> Result<Vec<(ChunkserverRecord, bool)>> {
    let mut st = conn.prepare(
        "SELECT node_id, grpc_addr, http_addr, healthy FROM chunkserver_nodes WHERE deleted = 0",
    )?;
    let rows = st.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok((
            ChunkserverRecord {
                node_id: NodeId::new(id).map_err(|e| bad_row("node_id", e))?,
                grpc_addr: r.get(1)?,
                http_addr: r.get(2)?,
            },
            r.get::<_, i64>(3)? != 0,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every known controller: (id, gRPC address, HTTP address).
pub fn controllers(conn: &Connection) -> Result<Vec<(NodeId, String, String)>> {
    let mut st = conn.prepare_cached(
        "SELECT node_id, grpc_addr, http_addr FROM controller_nodes WHERE deleted = 0 ORDER BY node_id",
    )?;
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
           (SELECT DISTINCT json_extract(j.value, '$[0]') AS chunk_id
              FROM files f JOIN chunks ch ON ch.file_id = f.file_id, json_each(ch.list) j
             WHERE f.deleted = 0) c
         LEFT JOIN chunk_locations l ON l.chunk_id = c.chunk_id AND l.deleted = 0",
    )?;
    let mut out: HashMap<ChunkId, Vec<NodeId>> = HashMap::new();
    let rows = st.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
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

/// Every chunk referenced by a live file version (current or kept), with its size.
pub fn live_chunks(conn: &Connection) -> Result<HashMap<ChunkId, u64>> {
    let mut st = conn.prepare_cached(
        "SELECT ch.list FROM chunks ch JOIN files f ON f.file_id = ch.file_id WHERE f.deleted = 0",
    )?;
    let mut out = HashMap::new();
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    for row in rows {
        let list = records::decode_chunk_list(&row?)
            .map_err(|e| ControllerError::Internal(format!("chunk list: {e}")))?;
        out.extend(list);
    }
    Ok(out)
}

/// Every live chunk-location record: chunk → chunkservers recorded as holding it.
pub fn all_chunk_locations(conn: &Connection) -> Result<HashMap<ChunkId, Vec<NodeId>>> {
    let mut st =
        conn.prepare_cached("SELECT chunk_id, node_id FROM chunk_locations WHERE deleted = 0")?;
    let mut out: HashMap<ChunkId, Vec<NodeId>> = HashMap::new();
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (c, n) = row?;
        let c: ChunkId = c.parse().map_err(|e| bad_row("chunk_id", e))?;
        out.entry(c)
            .or_default()
            .push(NodeId::new(n).map_err(|e| bad_row("node_id", e))?);
    }
    Ok(out)
}

/// Records chunk copies seen (`adds`) and copies gone (`drops`, as tombstones);
/// only what differs from the current records is written.
pub fn reconcile_locations(
    store: &mut Store,
    adds: &[(ChunkId, NodeId)],
    drops: &[(ChunkId, NodeId)],
) -> Result<Vec<Record>> {
    let mut writes = location_writes(&store.conn, adds)?;
    for (chunk, node) in drops {
        let key = records::location_key(chunk, node);
        if let Some(v) = records::load_version(&store.conn, Table::ChunkLocations, &key)?
            && !v.deleted
        {
            writes.push(Write {
                key,
                body: Body::ChunkLocation,
                deleted: true,
            });
        }
    }
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    store.write(writes)
}

/// The time (our wall clock, ms) since which this node holds every write that every
/// known controller had made: the oldest of the last complete exchanges this node
/// started with each, provided it also holds every write each peer had made when it
/// last reported. `None` while some controller has never been synced with;
/// `u64::MAX` when there is no other controller.
pub fn peers_synced_at(store: &Store) -> Result<Option<u64>> {
    let me = store.node().clone();
    let mut oldest = u64::MAX;
    for (peer, _, _) in controllers(&store.conn)? {
        if peer == me {
            continue;
        }
        let last: Option<i64> = store
            .conn
            .prepare_cached("SELECT last_exchange_ms FROM gossip_peers WHERE peer_id = ?1")?
            .query_row(params![peer.as_str()], |r| r.get(0))
            .optional()?;
        match last {
            Some(l) if l > 0 => oldest = oldest.min(l as u64),
            _ => return Ok(None),
        }
    }
    let caught_up = matches!(
        crate::replication::tombstone_gc::cluster_floor(store)?,
        Some((_, true))
    );
    Ok(caught_up.then_some(oldest))
}

/// The number of live files (names with a current version).
pub fn live_file_count(conn: &Connection) -> Result<u64> {
    let mut st = conn.prepare("SELECT DISTINCT owner, name FROM files WHERE deleted = 0")?;
    let names = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut n = 0;
    for (owner, name) in names {
        if current_file(conn, &owner, &name)?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcloud_common::VectorClock;

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn open(dir: &Path, n: &str) -> Db {
        Db::open(
            &dir.join(format!("{n}.sqlite")),
            node(n),
            Arc::new(Hlc::default()),
        )
        .unwrap()
    }

    fn file(name: &str) -> FileRecord {
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
            meta: Version {
                vclock: VectorClock::new(),
                hlc: HlcTimestamp(0),
                origin: node("a"),
                seq: 0,
                deleted: false,
            },
        }
    }

    fn with<T>(db: &Db, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut s = db.store.lock().unwrap();
        f(&mut s)
    }

    #[test]
    fn versions_listing_tombstones_and_logging() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), "a");
        let a = node("a");
        let chunk = ChunkRef {
            index: 0,
            chunk_id: ChunkId::of(b"abc"),
            size: 3,
        };
        let v1 = file("moby.txt");
        let v2 = file("moby.txt");
        let other = file("other.txt");
        with(&db, |s| {
            for f in [&v1, &v2, &other] {
                insert_file(
                    s,
                    f,
                    std::slice::from_ref(&chunk),
                    &[(chunk.chunk_id, a.clone())],
                )
                .unwrap();
            }
            let c = &s.conn;
            assert_eq!(
                current_file(c, "anonymous", "moby.txt")
                    .unwrap()
                    .unwrap()
                    .file_id,
                v2.file_id
            );
            assert!(
                file_version(c, "anonymous", "moby.txt", &v1.file_id)
                    .unwrap()
                    .is_some()
            );
            let names: Vec<_> = list_current(c, "anonymous", "")
                .unwrap()
                .into_iter()
                .map(|f| f.name)
                .collect();
            assert_eq!(names, ["moby.txt", "other.txt"]);
            assert_eq!(list_current(c, "anonymous", "oth").unwrap().len(), 1);
            assert_eq!(
                file_chunks(c, &v1.file_id).unwrap().unwrap(),
                vec![chunk.clone()]
            );
            assert_eq!(
                locations(c, &[chunk.chunk_id]).unwrap()[&chunk.chunk_id],
                vec![a.clone()]
            );
            assert_eq!(versions(c, "anonymous", "moby.txt").unwrap().len(), 2);

            let (n, recs) = delete_name(s, "anonymous", "moby.txt").unwrap();
            assert_eq!(n, 2);
            assert_eq!(recs.len(), 3, "two tombstones and a deletion marker");
            let c = &s.conn;
            assert!(current_file(c, "anonymous", "moby.txt").unwrap().is_none());
            assert_eq!(live_file_count(c).unwrap(), 1);
            // 3 files + 3 chunk lists + 1 location + 3 delete records, numbered 1..=10.
            let log: i64 = c
                .query_row("SELECT COUNT(*) FROM gossip_log", [], |r| r.get(0))
                .unwrap();
            assert_eq!(log, 10);
            assert_eq!(s.vector().get(&a), 10);
        });
        drop(db);
        // Reopening keeps numbering where it was.
        let db = open(dir.path(), "a");
        with(&db, |s| {
            let r = insert_file(s, &file("n.txt"), &[], &[]).unwrap();
            assert_eq!(r[0].version.seq, 11);
        });
    }

    #[test]
    fn deltas_and_apply_bring_a_peer_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), "a");
        let b = open(dir.path(), "b");
        let f1 = file("one.txt");
        with(&a, |s| insert_file(s, &f1, &[], &[]).unwrap());
        with(&a, |s| delete_name(s, "anonymous", "one.txt").unwrap());
        let f2 = file("two.txt");
        with(&a, |s| insert_file(s, &f2, &[], &[]).unwrap());

        // b knows nothing: the delta holds every current version; the first write of
        // one.txt was superseded by its tombstone and travels as a marker.
        let d = with(&a, |s| s.delta(&VersionVector::default(), 1000).unwrap());
        assert!(d.complete);
        assert_eq!(d.superseded, vec![(node("a"), 1)]);
        let changed = with(&b, |s| s.apply(d.records.clone(), &d.superseded).unwrap());
        assert_eq!(changed.len(), d.records.len());
        assert_eq!(
            with(&a, |s| s.digest().unwrap()),
            with(&b, |s| s.digest().unwrap())
        );
        assert_eq!(with(&b, |s| s.vector()), with(&a, |s| s.vector()));
        // Now in sync: the next delta is empty, whatever the size of the state.
        let vb = with(&b, |s| s.vector());
        let d2 = with(&a, |s| s.delta(&vb, 1000).unwrap());
        assert!(d2.records.is_empty() && d2.superseded.is_empty() && d2.complete);
        // Applying the same delta again changes nothing.
        assert!(with(&b, |s| s.apply(d.records, &d.superseded).unwrap()).is_empty());
        with(&b, |s| {
            assert!(
                current_file(&s.conn, "anonymous", "one.txt")
                    .unwrap()
                    .is_none()
            );
            assert!(
                current_file(&s.conn, "anonymous", "two.txt")
                    .unwrap()
                    .is_some()
            );
        });
        // A cut delta resumes where it stopped.
        let c = open(dir.path(), "c");
        let part = with(&a, |s| s.delta(&VersionVector::default(), 2).unwrap());
        assert!(!part.complete);
        with(&c, |s| s.apply(part.records, &part.superseded).unwrap());
        let vc = with(&c, |s| s.vector());
        let rest = with(&a, |s| s.delta(&vc, 1000).unwrap());
        assert!(rest.complete);
        with(&c, |s| s.apply(rest.records, &rest.superseded).unwrap());
        assert_eq!(
            with(&a, |s| s.digest().unwrap()),
            with(&c, |s| s.digest().unwrap())
        );
    }

    fn log_of(s: &Store) -> Vec<(String, i64, String)> {
        let mut st = s
            .conn
            .prepare("SELECT origin, seq, table_name FROM gossip_log ORDER BY origin, seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_superseded_write_is_marked_in_the_log_locally_on_arrival_and_by_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), "a");
        let f = file("one.txt");
        with(&a, |s| insert_file(s, &f, &[], &[]).unwrap()); // a1 file, a2 chunk list
        with(&a, |s| delete_name(s, "anonymous", "one.txt").unwrap()); // a3 tombstone, a4 marker
        let entries = |s: &Store| -> Vec<(i64, String)> {
            log_of(s).into_iter().map(|(_, q, t)| (q, t)).collect()
        };
        // A local overwrite marks the write it replaced.
        let expect = vec![
            (1, String::new()),
            (2, "chunks".to_string()),
            (3, "files".to_string()),
            (4, "deletions".to_string()),
        ];
        assert_eq!(with(&a, |s| entries(s)), expect);

        // A peer learns the same: the marker arrives as a marker, and a stale record
        // that arrives after its successor is logged as superseded at once.
        let d = with(&a, |s| s.delta(&VersionVector::default(), 1000).unwrap());
        let b = open(dir.path(), "b");
        with(&b, |s| s.apply(d.records.clone(), &d.superseded).unwrap());
        assert_eq!(with(&b, |s| entries(s)), expect);
        let first = Record {
            key: f.file_id.to_string(),
            version: Version {
                vclock: {
                    let mut v = VectorClock::default();
                    v.increment(&node("a"));
                    v
                },
                hlc: HlcTimestamp::from_parts(1, 0),
                origin: node("a"),
                seq: 1,
                deleted: false,
            },
            body: Body::File(f.body()),
        };
        let tomb: Vec<Record> = d
            .records
            .iter()
            .filter(|r| r.version.seq == 3)
            .cloned()
            .collect();
        let c = open(dir.path(), "c");
        with(&c, |s| s.apply(tomb, &[]).unwrap());
        assert!(with(&c, |s| s.apply(vec![first], &[]).unwrap()).is_empty());
        assert_eq!(
            with(&c, |s| entries(s)),
            vec![(1, String::new()), (3, "files".to_string())]
        );
        // Still sent onwards as a marker, never as the record it was.
        let dc = with(&c, |s| s.delta(&VersionVector::default(), 1000).unwrap());
        assert_eq!(dc.superseded, vec![(node("a"), 1)]);
        assert_eq!(dc.records.len(), 1);

        // A database written before the marking (schema 1) is converted on opening.
        with(&a, |s| {
            s.conn
                .execute_batch(&format!(
                    "UPDATE gossip_log SET table_name = 'files', row_key = '{}' WHERE seq = 1;
                     DROP INDEX gossip_log_superseded;
                     DROP INDEX users_tombstones; DROP INDEX files_tombstones;
                     DROP INDEX chunks_tombstones; DROP INDEX chunk_locations_tombstones;
                     DROP INDEX chunkserver_nodes_tombstones; DROP INDEX controller_nodes_tombstones;
                     PRAGMA user_version = 1;",
                    f.file_id
                ))
                .unwrap();
            assert_eq!(entries(s)[0], (1, "files".to_string()));
        });
        drop(a);
        let a = open(dir.path(), "a");
        assert_eq!(with(&a, |s| entries(s)), expect);
    }

    #[test]
    fn a_database_is_written_by_one_store_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        let first = Db::open(&path, node("a"), Arc::new(Hlc::default())).unwrap();
        let wait = std::time::Duration::from_millis(200);
        let err = Db::open_waiting(&path, node("a"), Arc::new(Hlc::default()), wait)
            .err()
            .expect("a second store on a held database is refused");
        assert!(
            err.to_string().contains("in use by another controller"),
            "{err}"
        );
        // Released with the store: a restart after the old instance is gone opens it.
        drop(first);
        Db::open_waiting(&path, node("a"), Arc::new(Hlc::default()), wait).unwrap();
    }

    #[test]
    fn only_complete_exchanges_we_asked_for_date_the_sync_with_a_peer() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), "a");
        with(&a, |s| {
            upsert_controller(s, &node("a"), "a:1", "a:2").unwrap();
            upsert_controller(s, &node("b"), "b:1", "b:2").unwrap();
            // Never synced with b: no time.
            assert_eq!(peers_synced_at(s).unwrap(), None);
            // b's summary, or its push-back, tells its vector but dates nothing.
            s.note_peer_vector(&node("b"), &VersionVector::default(), None)
                .unwrap();
            assert_eq!(peers_synced_at(s).unwrap(), None);
            s.note_peer_vector(&node("b"), &VersionVector::default(), Some(1_000))
                .unwrap();
            assert_eq!(peers_synced_at(s).unwrap(), Some(1_000));
            // An older exchange finishing late never moves the time back.
            s.note_peer_vector(&node("b"), &VersionVector::default(), Some(500))
                .unwrap();
            s.note_peer_vector(&node("b"), &VersionVector::default(), None)
                .unwrap();
            assert_eq!(peers_synced_at(s).unwrap(), Some(1_000));
        });
        // Alone, nothing to wait for.
        let solo = open(dir.path(), "solo");
        with(&solo, |s| {
            assert_eq!(peers_synced_at(s).unwrap(), Some(u64::MAX))
        });
    }
}
