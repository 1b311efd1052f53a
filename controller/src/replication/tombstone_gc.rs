//! Tombstone collection. The engine decides what may go ([`engine::plan_purge`]);
//! this worker works out, every `TOMBSTONE_GC_INTERVAL`, the members whose reports
//! bound it and the horizon.
//!
//! A tombstone (and the log entries of writes it superseded) is purged only when
//! every *member* has reported a version vector covering its write, and it is older
//! than `TOMBSTONE_GRACE` by this controller's (disciplined) wall clock. Members are
//! every controller this one knows of: live controller records, peers it talks to,
//! and controllers that chunkservers report talking to; minus those forgotten with
//! `redcloud cluster forget`. A member that never reported blocks collection until
//! it does; one that is down or partitioned away holds the floor at its last
//! report, so a long partition never resurrects a delete.
//!
//! The grace is at least `MAX_CLOCK_DRIFT`, so every later write, stamped by a
//! clock within the drift of ours, carries a higher timestamp than anything purged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use redcloud_common::replication::{Origin, VersionVector};
use redcloud_common::{HlcTimestamp, NodeId};

use super::Replica;
use super::engine::{self, Purged, View};
use crate::error::Result;
use crate::meta::{self, Store, rows::SqlView};
use crate::workers::{BoxFuture, Periodic, WorkerState};

/// Something a collector waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcWait {
    /// The member it waits for.
    pub node: NodeId,
    pub reason: String,
    /// Since when (wall clock ms; 0: unknown).
    pub since_ms: u64,
}

/// The floor every member reflects, or who has not reported yet.
pub enum Floor {
    Ready {
        floor: VersionVector,
        /// We hold every write each member had made when it reported.
        caught_up: bool,
        reports: BTreeMap<NodeId, meta::log::Report>,
    },
    Waiting(Vec<GcWait>),
}

/// The floor of `members` (other than this controller) by their reports.
pub fn floor(store: &Store, members: &BTreeSet<NodeId>) -> Result<Floor> {
    let reports = meta::log::reports(store.conn())?;
    let mut waiting = Vec::new();
    let mut used = BTreeMap::new();
    for m in members {
        if m == store.node() {
            continue;
        }
        match reports.get(m) {
            Some(r)
                if !engine::report_is_current(&meta::origins_of(store.conn(), m)?, &r.vector) =>
            {
                waiting.push(GcWait {
                    node: m.clone(),
                    reason: "restarted with a new database and has not reported since".into(),
                    since_ms: r.reported_at_ms,
                })
            }
            Some(r) => {
                used.insert(m.clone(), r.clone());
            }
            None => waiting.push(GcWait {
                node: m.clone(),
                reason: "has never reported its version vector to this controller".into(),
                since_ms: 0,
            }),
        }
    }
    if !waiting.is_empty() {
        return Ok(Floor::Waiting(waiting));
    }
    let mine = store.vector();
    let floor = engine::cluster_floor(&mine, used.values().map(|r| &r.vector));
    let caught_up = used.values().all(|r| mine.covers(&r.vector));
    Ok(Floor::Ready {
        floor,
        caught_up,
        reports: used,
    })
}

/// One collection pass with `horizon` the newest timestamp a purged row may have.
/// Returns what was purged and what the rest waits for.
///
/// `held` is, per origin, the first write held back for being stamped ahead and
/// its timestamp: writes from there on are not waited for. They are stamped after
/// the horizon (an origin's timestamps only grow), so each is newer than any
/// tombstone collected now and wins over it whether or not it is still here.
pub fn collect(
    store: &mut Store,
    members: &BTreeSet<NodeId>,
    horizon: HlcTimestamp,
    held: &BTreeMap<Origin, (u64, u64)>,
) -> Result<(Purged, Vec<GcWait>)> {
    let (floor, caught_up, reports) = match floor(store, members)? {
        Floor::Waiting(w) => return Ok((Purged::default(), w)),
        Floor::Ready {
            floor,
            caught_up,
            reports,
        } => (floor, caught_up, reports),
    };
    let caught_up = caught_up || {
        let mine = store.vector();
        reports.values().all(|r| {
            r.vector.0.iter().all(|(o, s)| {
                let have = mine.get(*o);
                have >= *s
                    || held
                        .get(o)
                        .is_some_and(|(first, ms)| *first <= have + 1 && *ms > horizon.millis())
            })
        })
    };
    let purged = store.purge(&floor, caught_up, horizon)?;
    // Who the tombstones still here past the horizon wait for.
    let mut blocking: BTreeMap<NodeId, GcWait> = BTreeMap::new();
    let mut view = SqlView { conn: store.conn() };
    let mut past_grace = false;
    for (_, _, v) in view.purge_candidates(horizon, 200)? {
        if !v.deleted {
            continue;
        }
        past_grace = true;
        for (m, r) in &reports {
            if r.vector.get(v.origin) < v.seq {
                blocking.entry(m.clone()).or_insert_with(|| GcWait {
                    node: m.clone(),
                    reason: "its last report does not cover tombstones past the grace".into(),
                    since_ms: r.reported_at_ms,
                });
            }
        }
    }
    if !caught_up && past_grace {
        let mine = store.vector();
        for (m, r) in &reports {
            if !mine.covers(&r.vector) {
                blocking.entry(m.clone()).or_insert_with(|| GcWait {
                    node: m.clone(),
                    reason: "this controller does not hold every write it reported yet".into(),
                    since_ms: r.reported_at_ms,
                });
            }
        }
    }
    Ok((purged, blocking.into_values().collect()))
}

/// The worker: one pass per `TOMBSTONE_GC_INTERVAL`, purging what is older than
/// `grace` by the wall clock and reflected by every member.
pub fn worker(
    replica: Arc<Replica>,
    grace: Duration,
    interval: Duration,
) -> Periodic<impl FnMut() -> BoxFuture<'static, Result<WorkerState, String>>> {
    Periodic::new("tombstone-gc", interval, move || {
        let node = replica.clone();
        let fut: BoxFuture<'static, Result<WorkerState, String>> = Box::pin(async move {
            let grace = grace.as_millis() as u64;
            let horizon =
                HlcTimestamp::from_parts(node.hlc.wall_ms().saturating_sub(grace), u16::MAX);
            let members = node
                .membership
                .members()
                .await
                .map_err(|e| format!("cannot list members: {e}"))?;
            // Sessions long expired are tombstoned first (and collected like any
            // tombstone, on a later pass).
            let now = node.hlc.wall_ms();
            let expired = node
                .db
                .call(move |s| meta::users::expire_sessions(s, now, 1000))
                .await
                .map_err(|e| format!("expiring sessions failed: {e}"))?;
            if !expired.is_empty() {
                tracing::info!(
                    sessions = expired.len(),
                    "tombstoned expired login sessions"
                );
                node.events.publish(expired, None);
            }
            let held = node
                .held_ahead
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let (p, waits) = node
                .db
                .call(move |s| collect(s, &members, horizon, &held))
                .await
                .map_err(|e| format!("tombstone collection failed: {e}"))?;
            node.metrics.gc_passes.inc();
            node.metrics.tombstones_purged.add(p.rows as u64);
            if p.rows > 0 {
                tracing::info!(rows = p.rows, "purged tombstones every controller has seen");
            }
            node.membership.set_gc_waits("tombstones", waits);
            Ok(WorkerState::Idle)
        });
        fut
    })
}
