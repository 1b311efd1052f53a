//! Replicated records as SQLite rows: reading and writing any table's row, the
//! engine's [`View`] over a connection, and carrying out an engine [`Op`].

use redcloud_common::replication::{Origin, Version};
use redcloud_common::{ChunkId, HlcTimestamp, NodeId, VectorClock};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::records::{Body, FileBody, Record, Table, key_parts};
use crate::replication::engine::{self, LogEntry, Op, View, ViewError};

/// The five replication columns, in the order every table stores them.
pub const META_COLS: &str = "vclock, hlc, origin, seq, deleted";

/// A table's own columns (before the replication columns).
fn own_cols(t: Table) -> &'static str {
    match t {
        Table::Users => "username, password_hash, created_at_ms",
        Table::Files => "owner, name, size, sha256, chunk_size, chunk_count, public, created_at_ms",
        Table::Chunks => "list",
        Table::ChunkserverNodes => "grpc_addr, http_addr, healthy",
        Table::ControllerNodes => "grpc_addr, http_addr",
        Table::Origins => "node_id, started_at_ms",
        Table::Sessions => "user_id, secret_sha256, expires_at_ms",
        Table::ChunkLocations | Table::Deletions => "NULL",
    }
}

/// The SQL expression that rebuilds a record key from the row.
pub fn key_expr(t: Table) -> &'static str {
    match t {
        Table::Users => "user_id",
        Table::Files | Table::Chunks => "file_id",
        Table::ChunkLocations => "chunk_id || '/' || node_id",
        Table::ChunkserverNodes => "node_id || '/' || observer",
        Table::ControllerNodes => "node_id",
        Table::Deletions => "owner || char(10) || name",
        Table::Origins => "origin_key",
        Table::Sessions => "session_id",
    }
}

/// The WHERE clause selecting the row of a key bound as `?1` (and `?2`).
fn key_where(t: Table) -> &'static str {
    match t {
        Table::Users => "user_id = ?1",
        Table::Files | Table::Chunks => "file_id = ?1",
        Table::ChunkLocations => "chunk_id = ?1 AND node_id = ?2",
        Table::ChunkserverNodes => "node_id = ?1 AND observer = ?2",
        Table::ControllerNodes => "node_id = ?1",
        Table::Deletions => "owner = ?1 AND name = ?2",
        Table::Origins => "origin_key = ?1",
        Table::Sessions => "session_id = ?1",
    }
}

fn two_part(t: Table) -> bool {
    key_where(t).contains("?2")
}

pub(crate) fn bad(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

/// Reads the five replication columns starting at `base`.
pub fn read_version(row: &Row<'_>, base: usize) -> rusqlite::Result<Version> {
    let vclock: String = row.get(base)?;
    Ok(Version {
        vclock: VectorClock::from_text(&vclock).map_err(|e| bad("vclock", e))?,
        hlc: HlcTimestamp(row.get::<_, i64>(base + 1)? as u64),
        origin: Origin::from_sql(row.get(base + 2)?),
        seq: row.get::<_, i64>(base + 3)? as u64,
        deleted: row.get::<_, i64>(base + 4)? != 0,
    })
}

fn query_key<T>(
    conn: &Connection,
    sql: &str,
    table: Table,
    key: &str,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let (a, b) = key_parts(table, key);
    let mut st = conn.prepare_cached(sql)?;
    if two_part(table) {
        st.query_row(params![a, b], f).optional()
    } else {
        st.query_row(params![a], f).optional()
    }
}

/// The current version of `key` in `table`, if any.
pub fn load_version(
    conn: &Connection,
    table: Table,
    key: &str,
) -> rusqlite::Result<Option<Version>> {
    let sql = format!(
        "SELECT {META_COLS} FROM {} WHERE {}",
        table.name(),
        key_where(table)
    );
    query_key(conn, &sql, table, key, |r| read_version(r, 0))
}

/// Reads a table's own columns (from column 0) into its body.
fn read_body(table: Table, r: &Row<'_>) -> rusqlite::Result<Body> {
    Ok(match table {
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
        Table::Origins => Body::Origin {
            node_id: NodeId::new(r.get::<_, String>(0)?).map_err(|e| bad("node_id", e))?,
            started_at_ms: r.get::<_, i64>(1)? as u64,
        },
        Table::Sessions => Body::Session {
            user_id: r.get(0)?,
            secret_sha256: r.get(1)?,
            expires_at_ms: r.get::<_, i64>(2)? as u64,
        },
    })
}

fn ncols(table: Table) -> usize {
    own_cols(table).split(',').count()
}

/// The whole current record of `key` in `table`, if any.
pub fn load(conn: &Connection, table: Table, key: &str) -> rusqlite::Result<Option<Record>> {
    let sql = format!(
        "SELECT {}, {META_COLS} FROM {} WHERE {}",
        own_cols(table),
        table.name(),
        key_where(table)
    );
    query_key(conn, &sql, table, key, |r| {
        Ok(Record {
            key: key.to_string(),
            body: read_body(table, r)?,
            version: read_version(r, ncols(table))?,
        })
    })
}

/// Writes `rec` as the current version of its row (insert or replace).
pub fn upsert(conn: &Connection, rec: &Record) -> rusqlite::Result<()> {
    let v = &rec.version;
    let (vc, hlc, origin, seq, del) = (
        v.vclock.to_text(),
        v.hlc.0 as i64,
        v.origin.to_sql(),
        v.seq as i64,
        v.deleted as i64,
    );
    let (a, b) = key_parts(rec.table(), &rec.key);
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
                "INSERT OR REPLACE INTO chunkserver_nodes (node_id, observer, grpc_addr, http_addr, healthy, {META_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![a, b, grpc_addr, http_addr, *healthy as i64, vc, hlc, origin, seq, del])?,
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
        Body::Origin {
            node_id,
            started_at_ms,
        } => conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO origins (origin_key, node_id, started_at_ms, {META_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![a, node_id.as_str(), *started_at_ms as i64, vc, hlc, origin, seq, del])?,
        Body::Session {
            user_id,
            secret_sha256,
            expires_at_ms,
        } => conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO sessions (session_id, user_id, secret_sha256, expires_at_ms, {META_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![a, user_id, secret_sha256, *expires_at_ms as i64, vc, hlc, origin, seq, del])?,
    };
    Ok(())
}

/// Removes the row of `key` from `table` outright (collection only).
pub fn delete_row(conn: &Connection, table: Table, key: &str) -> rusqlite::Result<usize> {
    let (a, b) = key_parts(table, key);
    let sql = format!("DELETE FROM {} WHERE {}", table.name(), key_where(table));
    let mut st = conn.prepare_cached(&sql)?;
    if two_part(table) {
        st.execute(params![a, b])
    } else {
        st.execute(params![a])
    }
}

/// Calls `f(table, key, version)` for every row of every replicated table.
pub fn for_each_version(
    conn: &Connection,
    mut f: impl FnMut(Table, &str, &Version),
) -> rusqlite::Result<()> {
    for t in Table::ALL {
        let sql = format!("SELECT {}, {META_COLS} FROM {}", key_expr(t), t.name());
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

/// The highest timestamp stored in any replicated table at or below `cap` (rows
/// stamped above it came from a clock that ran ahead: the clock is not moved to
/// them).
pub fn max_hlc(conn: &Connection, cap: HlcTimestamp) -> rusqlite::Result<HlcTimestamp> {
    let mut max = 0u64;
    for t in Table::ALL {
        let v: Option<i64> = conn.query_row(
            &format!("SELECT MAX(hlc) FROM {} WHERE hlc <= ?1", t.name()),
            params![cap.0 as i64],
            |r| r.get(0),
        )?;
        max = max.max(v.unwrap_or(0) as u64);
    }
    Ok(HlcTimestamp(max))
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

fn ve(e: rusqlite::Error) -> ViewError {
    ViewError(e.to_string())
}

/// The engine's view of a replica stored in SQLite.
pub struct SqlView<'c> {
    pub conn: &'c Connection,
}

impl View for SqlView<'_> {
    fn version(&mut self, table: Table, key: &str) -> engine::Result<Option<Version>> {
        load_version(self.conn, table, key).map_err(ve)
    }

    fn record(&mut self, table: Table, key: &str) -> engine::Result<Option<Record>> {
        load(self.conn, table, key).map_err(ve)
    }

    fn log_after(
        &mut self,
        origin: Origin,
        after: u64,
        limit: usize,
    ) -> engine::Result<Vec<LogEntry>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, table_name, row_key, retired FROM gossip_log
                  WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(ve)?;
        let rows = st
            .query_map(params![origin.to_sql(), after as i64, limit as i64], |r| {
                let t: String = r.get(1)?;
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    t,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)? != 0,
                ))
            })
            .map_err(ve)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, t, key, retired) = row.map_err(ve)?;
            // A version-2 entry retired before keys were kept: nothing to send with it.
            let Some(table) = Table::from_name(&t) else {
                continue;
            };
            out.push(LogEntry {
                seq,
                target: (table, key),
                retired,
            });
        }
        Ok(out)
    }

    fn purge_candidates(
        &mut self,
        horizon: HlcTimestamp,
        limit: usize,
    ) -> engine::Result<Vec<(Table, String, Version)>> {
        let mut out = Vec::new();
        for t in Table::ALL {
            if out.len() >= limit {
                break;
            }
            // Tombstones through their partial index; name-deletion markers, which
            // are live rows that go once they hide nothing, too.
            let which = if t == Table::Deletions {
                ""
            } else {
                " AND deleted = 1"
            };
            let sql = format!(
                "SELECT {}, {META_COLS} FROM {} WHERE hlc <= ?1{which} LIMIT ?2",
                key_expr(t),
                t.name()
            );
            let mut st = self.conn.prepare_cached(&sql).map_err(ve)?;
            let rows = st
                .query_map(params![horizon.0 as i64, (limit - out.len()) as i64], |r| {
                    Ok((r.get::<_, String>(0)?, read_version(r, 1)?))
                })
                .map_err(ve)?;
            for row in rows {
                let (k, v) = row.map_err(ve)?;
                out.push((t, k, v));
            }
        }
        Ok(out)
    }

    fn retired_upto(
        &mut self,
        origin: Origin,
        upto: u64,
        limit: usize,
    ) -> engine::Result<Vec<LogEntry>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, table_name, row_key FROM gossip_log
                  WHERE origin = ?1 AND seq <= ?2 AND retired = 1 ORDER BY seq LIMIT ?3",
            )
            .map_err(ve)?;
        let rows = st
            .query_map(params![origin.to_sql(), upto as i64, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(ve)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, t, key) = row.map_err(ve)?;
            // A version-2 entry retired without its key: nothing replaced it here.
            let table = Table::from_name(&t).unwrap_or(Table::Origins);
            out.push(LogEntry {
                seq,
                target: (table, key),
                retired: true,
            });
        }
        Ok(out)
    }

    fn hides_older_version(
        &mut self,
        owner: &str,
        name: &str,
        hlc: HlcTimestamp,
        origin: Origin,
    ) -> engine::Result<bool> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT hlc, origin FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0 AND hlc <= ?3",
            )
            .map_err(ve)?;
        let rows = st
            .query_map(params![owner, name, hlc.0 as i64], |r| {
                Ok((
                    HlcTimestamp(r.get::<_, i64>(0)? as u64),
                    Origin::from_sql(r.get(1)?),
                ))
            })
            .map_err(ve)?;
        for row in rows {
            if row.map_err(ve)? < (hlc, origin) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Carries out one operation of a plan.
pub fn execute(conn: &Connection, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::Put(r) => upsert(conn, r)?,
        Op::Remove { table, key } => {
            delete_row(conn, *table, key)?;
        }
        Op::Log {
            origin,
            seq,
            target,
            retired,
        } => {
            // A current write replaces an entry a peer cleared earlier; a retired one
            // never overwrites what is there.
            let sql = if *retired {
                "INSERT OR IGNORE INTO gossip_log (origin, seq, table_name, row_key, retired)
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            } else {
                "INSERT OR REPLACE INTO gossip_log (origin, seq, table_name, row_key, retired)
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            };
            conn.prepare_cached(sql)?.execute(params![
                origin.to_sql(),
                *seq as i64,
                target.0.name(),
                target.1,
                *retired as i64
            ])?;
        }
        Op::Retire { origin, seq } => {
            conn.prepare_cached(
                "UPDATE gossip_log SET retired = 1 WHERE origin = ?1 AND seq = ?2",
            )?
            .execute(params![origin.to_sql(), *seq as i64])?;
        }
        Op::Trim { origin, seq } => {
            conn.prepare_cached(
                "DELETE FROM gossip_log WHERE origin = ?1 AND seq = ?2 AND retired = 1",
            )?
            .execute(params![origin.to_sql(), *seq as i64])?;
        }
        Op::HlcFloor(t) => {
            conn.prepare_cached(
                "INSERT INTO kv (key, value) VALUES ('hlc_floor', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute(params![t.0 as i64])?;
        }
    }
    Ok(())
}
