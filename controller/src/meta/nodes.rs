//! Controllers, chunkservers and origins as replicated records: who the members
//! are, where they are reached, what each controller observed of each chunkserver,
//! and forgetting a node that is gone for good.

use std::collections::{BTreeMap, BTreeSet};

use redcloud_common::replication::Origin;
use redcloud_common::{HlcTimestamp, NodeId};
use rusqlite::{Connection, params};

use super::Store;
use super::rows::{self, bad};
use crate::error::Result;
use crate::model::ChunkserverRecord;
use crate::records::{self, Body, Record, Table};
use crate::replication::engine::Write;

/// Every origin `node` has been (its lives), as recorded in the origins table.
pub fn origins_of(conn: &Connection, node: &NodeId) -> Result<BTreeSet<Origin>> {
    let mut st = conn.prepare_cached("SELECT origin_key FROM origins WHERE node_id = ?1")?;
    let rows = st.query_map(params![node.as_str()], |r| r.get::<_, String>(0))?;
    let mut out = BTreeSet::new();
    for r in rows {
        if let Ok(o) = r?.parse::<Origin>() {
            out.insert(o);
        }
    }
    Ok(out)
}

/// Which controller each known origin belongs to.
pub fn origin_owners(conn: &Connection) -> Result<BTreeMap<Origin, NodeId>> {
    let mut st =
        conn.prepare_cached("SELECT origin_key, node_id FROM origins WHERE deleted = 0")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let (o, n) = r?;
        if let (Ok(o), Ok(n)) = (o.parse::<Origin>(), NodeId::new(n)) {
            out.insert(o, n);
        }
    }
    Ok(out)
}

/// Every known chunkserver with its addresses and health from the freshest
/// observation any controller made of it.
pub fn chunkservers(conn: &Connection) -> Result<Vec<(ChunkserverRecord, bool)>> {
    let mut st = conn.prepare_cached(
        "SELECT node_id, grpc_addr, http_addr, healthy, hlc, origin FROM chunkserver_nodes WHERE deleted = 0",
    )?;
    let rows = st.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok((
            ChunkserverRecord {
                node_id: NodeId::new(id).map_err(|e| bad("node_id", e))?,
                grpc_addr: r.get(1)?,
                http_addr: r.get(2)?,
            },
            r.get::<_, i64>(3)? != 0,
            (
                HlcTimestamp(r.get::<_, i64>(4)? as u64),
                Origin::from_sql(r.get(5)?),
            ),
        ))
    })?;
    let mut best: BTreeMap<NodeId, (ChunkserverRecord, bool, (HlcTimestamp, Origin))> =
        BTreeMap::new();
    for r in rows {
        let (rec, healthy, at) = r?;
        match best.get(&rec.node_id) {
            Some((_, _, b)) if *b >= at => {}
            _ => {
                best.insert(rec.node_id.clone(), (rec, healthy, at));
            }
        }
    }
    Ok(best.into_values().map(|(r, h, _)| (r, h)).collect())
}

/// Records this controller's observation of a chunkserver (addresses and health),
/// if it changed.
pub fn upsert_chunkserver(
    store: &mut Store,
    cs: &ChunkserverRecord,
    healthy: bool,
) -> Result<Vec<Record>> {
    let key = records::chunkserver_key(&cs.node_id, store.node());
    upsert_node(
        store,
        &key,
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
    if let Some(cur) = rows::load(store.conn(), body.table(), key)?
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

/// Every known controller: (id, gRPC address, HTTP address).
pub fn controllers(conn: &Connection) -> Result<Vec<(NodeId, String, String)>> {
    let mut st = conn.prepare_cached(
        "SELECT node_id, grpc_addr, http_addr FROM controller_nodes WHERE deleted = 0 ORDER BY node_id",
    )?;
    let rows = st.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok((
            NodeId::new(id).map_err(|e| bad("node_id", e))?,
            r.get(1)?,
            r.get(2)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Controllers that were forgotten (their record is a tombstone).
pub fn forgotten_controllers(conn: &Connection) -> Result<BTreeSet<NodeId>> {
    let mut st = conn.prepare_cached("SELECT node_id FROM controller_nodes WHERE deleted = 1")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = BTreeSet::new();
    for r in rows {
        if let Ok(n) = NodeId::new(r?) {
            out.insert(n);
        }
    }
    Ok(out)
}

/// What `cluster forget` removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    pub controller: bool,
    pub chunkserver_records: usize,
    pub locations: usize,
}

/// Forgets node `id`, gone for good: as a controller, its membership record is
/// tombstoned (no collection waits for it any more, on any controller once this
/// replicates) and its report dropped; as a chunkserver, every controller's
/// observation of it and every location of a chunk on it are tombstoned.
///
/// `member` is how this controller knows `id` as a member without holding its
/// record (a peer it talks to, or a controller the chunkservers report talking
/// to), with its addresses: such an id is a member collection waits for, so the
/// forgetting is recorded all the same (a tombstone written from nothing). An id
/// already forgotten counts as a controller forgotten (asking twice is harmless).
pub fn forget(
    store: &mut Store,
    id: &NodeId,
    member: Option<(String, String)>,
) -> Result<(Forgotten, Vec<Record>)> {
    let mut out = Forgotten::default();
    let mut writes = Vec::new();
    match rows::load(store.conn(), Table::ControllerNodes, id.as_str())? {
        Some(r) if r.version.deleted => out.controller = true,
        Some(r) => {
            out.controller = true;
            writes.push(Write {
                key: r.key,
                body: r.body,
                deleted: true,
            });
        }
        None => {
            if let Some((grpc_addr, http_addr)) = member {
                out.controller = true;
                writes.push(Write {
                    key: id.as_str().to_string(),
                    body: Body::Controller {
                        grpc_addr,
                        http_addr,
                    },
                    deleted: true,
                });
            }
        }
    }
    {
        let mut st = store.conn().prepare(
            "SELECT observer, grpc_addr, http_addr, healthy FROM chunkserver_nodes
              WHERE node_id = ?1 AND deleted = 0",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)? != 0,
            ))
        })?;
        for row in rows {
            let (observer, grpc_addr, http_addr, healthy) = row?;
            out.chunkserver_records += 1;
            writes.push(Write {
                key: format!("{id}/{observer}"),
                body: Body::Chunkserver {
                    grpc_addr,
                    http_addr,
                    healthy,
                },
                deleted: true,
            });
        }
        let mut st = store
            .conn()
            .prepare("SELECT chunk_id FROM chunk_locations WHERE node_id = ?1 AND deleted = 0")?;
        let rows = st.query_map(params![id.as_str()], |r| r.get::<_, String>(0))?;
        for row in rows {
            out.locations += 1;
            writes.push(Write {
                key: format!("{}/{id}", row?),
                body: Body::ChunkLocation,
                deleted: true,
            });
        }
    }
    // Nothing to write (unknown here, or forgotten already): no write at all, so
    // a controller still starting answers too.
    let written = if writes.is_empty() {
        Vec::new()
    } else {
        store.write(writes)?
    };
    if out.controller {
        super::log::forget_report(store.conn(), id)?;
    }
    Ok((out, written))
}
