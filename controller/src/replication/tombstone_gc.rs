//! Tombstone garbage collection. A tombstone (and the log entries of writes it
//! superseded) is purged only when it is safe:
//!
//! 1. every controller this node knows has reported a version vector covering the
//!    tombstone's write, so none still holds the deleted version as current, and no
//!    anti-entropy delta will carry it again; and
//! 2. the tombstone is older than `TOMBSTONE_GRACE`, far longer than any message
//!    can be in flight, so a late push cannot bring the deleted version back (and
//!    writes already reflected are ignored on arrival anyway).
//!
//! A controller that is known but silent (down, or partitioned away) blocks
//! collection until it reports again: a long partition never resurrects a delete.
//! A name-deletion marker is kept while an older live version of the name exists
//! (the marker is what hides it), and while an older concurrent upload could still
//! be on its way here (until this node holds every write each peer had made when it
//! reported having seen the marker).

use std::sync::Arc;

use redcloud_common::replication::VersionVector;
use redcloud_common::{HlcTimestamp, NodeId};
use rusqlite::{OptionalExtension, params};
use tokio_util::sync::CancellationToken;

use crate::db::{self, Store};
use crate::error::Result;
use crate::node::Node;
use crate::records::{self, Table};

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub tombstones: usize,
    pub log_entries: usize,
}

/// The pointwise minimum of this node's vector and every known controller's last
/// reported one; `None` while some known controller has never reported. The flag
/// says whether this node holds every write each peer had made of its own when it
/// reported (so no write older than those reports is still on its way here).
pub fn cluster_floor(store: &Store) -> Result<Option<(VersionVector, bool)>> {
    let me = store.node().clone();
    let ours = store.vector();
    let mut floor = ours.clone();
    let mut caught_up = true;
    for (peer, _, _) in db::controllers(&store.conn)? {
        if peer == me {
            continue;
        }
        let v: Option<String> = store
            .conn
            .prepare_cached("SELECT vector FROM gossip_peers WHERE peer_id = ?1")?
            .query_row(params![peer.as_str()], |r| r.get(0))
            .optional()?;
        let Some(v) = v.and_then(|v| serde_json::from_str::<VersionVector>(&v).ok()) else {
            return Ok(None);
        };
        caught_up &= ours.get(&peer) >= v.get(&peer);
        let origins: Vec<NodeId> = floor.0.keys().cloned().collect();
        for o in origins {
            let m = floor.get(&o).min(v.get(&o));
            floor.0.insert(o, m);
        }
    }
    Ok(Some((floor, caught_up)))
}

/// One collection pass; `horizon` is the newest HLC a purged tombstone may have.
pub fn collect(store: &mut Store, horizon: HlcTimestamp) -> Result<Purged> {
    let Some((floor, caught_up)) = cluster_floor(store)? else {
        return Ok(Purged::default());
    };
    let tx = store.conn.transaction()?;
    let mut purged = Purged::default();
    for table in Table::ALL {
        // Only tombstones are candidates (through a partial index), except name
        // deletion markers, which are live rows that go once they hide nothing.
        let only_tombstones = if table == Table::Deletions {
            ""
        } else {
            " AND deleted = 1"
        };
        let sql = format!(
            "SELECT {}, origin, seq, hlc, deleted FROM {} WHERE hlc <= ?1{only_tombstones}",
            records::key_expr(table),
            table.name()
        );
        let candidates: Vec<(String, String, i64, i64, bool)> = {
            let mut st = tx.prepare(&sql)?;
            st.query_map(params![horizon.0 as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get::<_, i64>(4)? != 0,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        for (key, origin, seq, hlc, deleted) in candidates {
            let Ok(origin) = NodeId::new(origin) else {
                continue;
            };
            if floor.get(&origin) < seq as u64 {
                continue; // some controller may not have seen it yet
            }
            let purge = match table {
                Table::Deletions => {
                    // A live marker hides older concurrent uploads of its name. It goes
                    // only when none is here and none can still be on its way: every
                    // peer has seen the marker, and we hold every write each peer had
                    // made when it said so.
                    if !caught_up {
                        continue;
                    }
                    let (owner, name) = key.split_once('\n').unwrap_or((&key, ""));
                    let hidden: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0
                           AND (hlc < ?3 OR (hlc = ?3 AND origin < ?4))",
                        params![owner, name, hlc, origin.as_str()],
                        |r| r.get(0),
                    )?;
                    hidden == 0
                }
                _ => deleted,
            };
            if !purge {
                continue;
            }
            records::delete_row(&tx, table, &key)?;
            db::retire_log(&tx, &origin, seq as u64)?;
            if table == Table::Files {
                // The version's chunk list goes with it.
                if let Some(v) = records::load_version(&tx, Table::Chunks, &key)? {
                    db::retire_log(&tx, &v.origin, v.seq)?;
                }
                records::delete_row(&tx, Table::Chunks, &key)?;
            }
            purged.tombstones += 1;
        }
    }
    // Log entries every controller has seen that no longer name a current row: a
    // write is marked superseded (empty table_name) when its row is overwritten or
    // purged, so this is a range of the partial index, not a scan of the log.
    for (origin, &upto) in &floor.0 {
        purged.log_entries += tx
            .prepare_cached(
                "DELETE FROM gossip_log WHERE origin = ?1 AND seq <= ?2 AND table_name = ''",
            )?
            .execute(params![origin.as_str(), upto as i64])?;
    }
    tx.commit()?;
    Ok(purged)
}

/// Runs until `shutdown`: one pass per `TOMBSTONE_GC_INTERVAL`.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(node.config.tombstone_gc_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let grace = node.config.tombstone_grace.as_millis() as u64;
        let now = node.hlc.now();
        let horizon = HlcTimestamp::from_parts(now.millis().saturating_sub(grace), u16::MAX);
        match node.db.call(move |s| collect(s, horizon)).await {
            Ok(p) => {
                node.metrics.gc_passes.inc();
                node.metrics.tombstones_purged.add(p.tombstones as u64);
                if p.tombstones > 0 {
                    tracing::info!(
                        tombstones = p.tombstones,
                        log_entries = p.log_entries,
                        "purged tombstones every controller has seen"
                    );
                }
            }
            Err(e) => tracing::warn!("tombstone collection failed: {e}"),
        }
    }
}
