//! The metadata schema and its forward-only migrations (`PRAGMA user_version`
//! records how many have run), and the exclusive lock on a database.

use std::path::Path;

use redcloud_common::replication::Origin;
use rusqlite::{Connection, Transaction, params};

use crate::error::{ControllerError, Result};

/// One migration: SQL, or a conversion that needs code.
enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// Every migration, in order.
const MIGRATIONS: &[Migration] = &[
    // 1: the tables of SPEC §2, plus name deletions and replication bookkeeping.
    Migration::Sql(
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
    ),
    // 2: a log entry whose row has since been superseded (or purged) is marked as a
    // bare superseded write (empty table_name) at that moment, so tombstone
    // collection finds the entries it may drop through a partial index; the
    // tombstones collection looks at are indexed. Existing entries are converted.
    Migration::Sql(
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
    ),
    // 3: write identity by origin (a random id per life of a database) instead of
    // node id, vector clocks of dots, chunkserver observations per observing
    // controller, the origins table, cleared-range bookkeeping and the clock floor.
    Migration::Code(to_origins),
    // 4: login sessions (SPEC §5), replicated like every table.
    Migration::Sql(
        r#"
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_tombstones ON sessions(hlc) WHERE deleted = 1;
    CREATE INDEX sessions_user ON sessions(user_id);
    "#,
    ),
    // 5: the public books of every owner by name, for listing them a page at a time.
    Migration::Sql(
        r#"
    CREATE INDEX files_public ON files(name, owner) WHERE public = 1 AND deleted = 0;
    "#,
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The tables as version 3 defines them (the non-replication columns of each
/// replicated table, then the five replication columns).
const V3_TABLES: &str = r#"
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
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
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chunks (
        file_id TEXT PRIMARY KEY,
        list TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chunk_locations (
        chunk_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (chunk_id, node_id)
    );
    -- One row per (chunkserver, observing controller): each controller writes only
    -- its own judgement, so no record's vector clock grows with the controllers.
    CREATE TABLE chunkserver_nodes (
        node_id TEXT NOT NULL,
        observer TEXT NOT NULL,
        grpc_addr TEXT NOT NULL,
        http_addr TEXT NOT NULL,
        healthy INTEGER NOT NULL DEFAULT 1,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (node_id, observer)
    );
    CREATE TABLE controller_nodes (
        node_id TEXT PRIMARY KEY,
        grpc_addr TEXT NOT NULL,
        http_addr TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE deletions (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, name)
    );
    -- Every origin (one life of a controller's database) and whose it is.
    CREATE TABLE origins (
        origin_key TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        vclock TEXT NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL, seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    -- Every write this replica made or learned: (origin, seq) -> the row it wrote,
    -- and whether that row has held a newer version since (or the write lost on
    -- arrival, or the row was purged): retired entries keep their key.
    CREATE TABLE gossip_log (
        origin INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        table_name TEXT NOT NULL,
        row_key TEXT NOT NULL,
        retired INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (origin, seq)
    ) WITHOUT ROWID;
    -- Per origin, the contiguous prefix of its writes this replica reflects.
    CREATE TABLE replication_state (
        origin INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    -- What each member controller last reported (its version vector), when, and
    -- when a complete exchange this replica started with it last began.
    CREATE TABLE gossip_peers (
        peer_id TEXT PRIMARY KEY,
        vector TEXT NOT NULL,
        reported_at_ms INTEGER NOT NULL,
        last_exchange_ms INTEGER NOT NULL
    );
    -- Small durable settings: the clock floor (highest timestamp purged).
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE INDEX users_username ON users(username);
    CREATE INDEX files_owner_name ON files(owner, name, hlc);
    CREATE INDEX gossip_log_retired ON gossip_log(origin, seq) WHERE retired = 1;
    CREATE INDEX users_tombstones ON users(hlc) WHERE deleted = 1;
    CREATE INDEX files_tombstones ON files(hlc) WHERE deleted = 1;
    CREATE INDEX chunks_tombstones ON chunks(hlc) WHERE deleted = 1;
    CREATE INDEX chunk_locations_tombstones ON chunk_locations(hlc) WHERE deleted = 1;
    CREATE INDEX chunkserver_nodes_tombstones ON chunkserver_nodes(hlc) WHERE deleted = 1;
    CREATE INDEX controller_nodes_tombstones ON controller_nodes(hlc) WHERE deleted = 1;
    CREATE INDEX origins_node ON origins(node_id);
"#;

/// The origin a version-2 database's writes of node `node` are given: the same on
/// every controller that converts (so converted replicas still agree).
pub fn legacy_origin(node: &str) -> Origin {
    let d = redcloud_common::hash::sha256(format!("redcloud legacy origin\0{node}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    Origin(u64::from_le_bytes(b).max(1))
}

/// A version-2 vector clock (JSON, node id → count of that node's writes of the
/// record) as version 3's text form; the entry of the version's own origin becomes
/// its write number (a dot), as version 3 requires.
fn legacy_clock(json: &str, origin: Origin, seq: u64) -> String {
    let old: std::collections::BTreeMap<String, u64> =
        serde_json::from_str(json).unwrap_or_default();
    let mut vc = redcloud_common::VectorClock::new();
    for (node, n) in old {
        vc.dot(legacy_origin(&node), n.max(1));
    }
    vc.0.insert(origin, seq);
    vc.to_text()
}

/// Migration 3 (code): converts every version-2 table to version 3.
fn to_origins(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    use rusqlite::types::Value;
    // (table, its own columns in version 2)
    const TABLES: &[(&str, &str)] = &[
        ("users", "user_id, username, password_hash, created_at_ms"),
        (
            "files",
            "file_id, owner, name, size, sha256, chunk_size, chunk_count, public, created_at_ms",
        ),
        ("chunks", "file_id, list"),
        ("chunk_locations", "chunk_id, node_id"),
        (
            "chunkserver_nodes",
            "node_id, grpc_addr, http_addr, healthy",
        ),
        ("controller_nodes", "node_id, grpc_addr, http_addr"),
        ("deletions", "owner, name"),
    ];
    let mut saved: Vec<(&str, Vec<Vec<Value>>)> = Vec::new();
    for (t, cols) in TABLES {
        let n = cols.split(',').count();
        let mut st = tx.prepare(&format!(
            "SELECT {cols}, vclock, hlc, origin, seq, deleted FROM {t}"
        ))?;
        let rows = st
            .query_map([], |r| {
                let mut v: Vec<Value> =
                    (0..n).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
                let vclock: String = r.get(n)?;
                let hlc: i64 = r.get(n + 1)?;
                let node: String = r.get(n + 2)?;
                let seq: i64 = r.get(n + 3)?;
                let deleted: i64 = r.get(n + 4)?;
                let origin = legacy_origin(&node);
                if *t == "chunkserver_nodes" {
                    // One observation per chunkserver: the controller that wrote it.
                    v.insert(1, Value::Text(node.clone()));
                }
                v.push(Value::Text(legacy_clock(&vclock, origin, seq as u64)));
                v.push(Value::Integer(hlc));
                v.push(Value::Integer(origin.to_sql()));
                v.push(Value::Integer(seq));
                v.push(Value::Integer(deleted));
                Ok(v)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        saved.push((t, rows));
    }
    let log: Vec<(i64, i64, String, String)> = tx
        .prepare("SELECT origin, seq, table_name, row_key FROM gossip_log")?
        .query_map([], |r| {
            let node: String = r.get(0)?;
            Ok((
                legacy_origin(&node).to_sql(),
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let state: Vec<(i64, i64)> = tx
        .prepare("SELECT origin, seq FROM replication_state")?
        .query_map([], |r| {
            let node: String = r.get(0)?;
            Ok((legacy_origin(&node).to_sql(), r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let peers: Vec<(String, String, i64)> = tx
        .prepare("SELECT peer_id, vector, last_exchange_ms FROM gossip_peers")?
        .query_map([], |r| {
            let json: String = r.get(1)?;
            let old: std::collections::BTreeMap<String, u64> =
                serde_json::from_str(&json).unwrap_or_default();
            let mut vc = redcloud_common::VectorClock::new();
            for (node, n) in old {
                vc.dot(legacy_origin(&node), n);
            }
            Ok((r.get(0)?, vc.to_text(), r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    tx.execute_batch(
        "DROP TABLE users; DROP TABLE files; DROP TABLE chunks; DROP TABLE chunk_locations;
         DROP TABLE chunkserver_nodes; DROP TABLE controller_nodes; DROP TABLE deletions;
         DROP TABLE gossip_log; DROP TABLE replication_state; DROP TABLE gossip_peers;",
    )?;
    tx.execute_batch(V3_TABLES)?;
    for (t, rows) in saved {
        for row in rows {
            let marks = vec!["?"; row.len()].join(", ");
            tx.execute(
                &format!("INSERT OR REPLACE INTO {t} VALUES ({marks})"),
                rusqlite::params_from_iter(row),
            )?;
        }
    }
    for (o, s, t, k) in log {
        // Version 2 marked a superseded write by clearing its key.
        let retired = t.is_empty() as i64;
        tx.execute(
            "INSERT OR IGNORE INTO gossip_log (origin, seq, table_name, row_key, retired)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![o, s, t, k, retired],
        )?;
    }
    for (o, s) in state {
        tx.execute(
            "INSERT OR REPLACE INTO replication_state (origin, seq) VALUES (?1, ?2)",
            params![o, s],
        )?;
    }
    for (p, v, at) in peers {
        tx.execute(
            "INSERT OR REPLACE INTO gossip_peers (peer_id, vector, reported_at_ms, last_exchange_ms)
             VALUES (?1, ?2, ?3, ?3)",
            params![p, v, at],
        )?;
    }
    Ok(())
}

/// Runs the migrations this database has not had yet.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(ControllerError::Internal(format!(
            "database schema version {current} is newer than this build ({}); refusing to open it",
            MIGRATIONS.len()
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        match m {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        if current > 0 {
            tracing::info!("metadata schema migrated to version {}", i + 1);
        }
    }
    Ok(())
}

/// How long opening waits for another holder of the database to let go of it.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes the exclusive lock on `<db>.lock`. The engine state (the next write
/// number, the coverage) lives in this process, so two processes writing one
/// database would issue one `(origin, seq)` for two different writes. A killed
/// controller's lock goes with its process; an instance still shutting down is
/// waited for.
pub fn lock_database(path: &Path, wait: std::time::Duration) -> Result<std::fs::File> {
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
