//! Chunk lists and chunk locations: which chunks live files reference, and which
//! chunkservers are recorded as holding each.

use std::collections::HashMap;

use redcloud_common::{ChunkId, NodeId};
use rusqlite::{Connection, params};

use super::Store;
use super::rows::{self, bad};
use crate::error::{ControllerError, Result};
use crate::records::{self, Body, Record, Table};
use crate::replication::engine::Write;

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
                NodeId::new(s).map_err(|e| bad("node_id", e))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.insert(*c, nodes);
    }
    Ok(out)
}

pub(crate) fn location_writes(
    conn: &Connection,
    holders: &[(ChunkId, NodeId)],
) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    for (chunk, node) in holders {
        let key = records::location_key(chunk, node);
        match rows::load_version(conn, Table::ChunkLocations, &key)? {
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
    let writes = location_writes(store.conn(), holders)?;
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    store.write(writes)
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
        let id: ChunkId = c.parse().map_err(|e| bad("chunk_id", e))?;
        let entry = out.entry(id).or_default();
        if let Some(n) = n {
            entry.push(NodeId::new(n).map_err(|e| bad("node_id", e))?);
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
        let list = rows::decode_chunk_list(&row?)
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
        let c: ChunkId = c.parse().map_err(|e| bad("chunk_id", e))?;
        out.entry(c)
            .or_default()
            .push(NodeId::new(n).map_err(|e| bad("node_id", e))?);
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
    let mut writes = location_writes(store.conn(), adds)?;
    for (chunk, node) in drops {
        let key = records::location_key(chunk, node);
        if let Some(v) = rows::load_version(store.conn(), Table::ChunkLocations, &key)?
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
