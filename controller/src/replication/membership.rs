//! Who the members are (the controllers garbage collection must hear from), what
//! was forgotten, when the last complete exchange with each began, and what each
//! collector waits for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redcloud_common::{Hlc, NodeId};

use super::peers::Peers;
use super::tombstone_gc::GcWait;
use crate::error::Result;
use crate::meta::{self, Db};
use crate::registry::Registry;

/// `std` mutexes: each guards a small map, never across an `.await`.
pub struct Membership {
    id: NodeId,
    db: Db,
    peers: Arc<Peers>,
    registry: Arc<Registry>,
    hlc: Arc<Hlc>,
    /// Controllers forgotten (`cluster forget`), as last read from the database.
    forgotten: Mutex<BTreeSet<NodeId>>,
    /// When the last complete exchange this controller started with each peer began
    /// (this process's monotonic clock; chunk collection relies on it).
    sync_times: Mutex<HashMap<NodeId, Instant>>,
    /// What each collector waits for, for `cluster status`.
    gc_waits: Mutex<BTreeMap<&'static str, Vec<GcWait>>>,
}

impl Membership {
    pub fn new(
        id: NodeId,
        db: Db,
        peers: Arc<Peers>,
        registry: Arc<Registry>,
        hlc: Arc<Hlc>,
    ) -> Membership {
        Membership {
            id,
            db,
            peers,
            registry,
            hlc,
            forgotten: Mutex::new(BTreeSet::new()),
            sync_times: Mutex::new(HashMap::new()),
            gc_waits: Mutex::new(BTreeMap::new()),
        }
    }

    /// Every controller collection must hear from: live controller records, peers,
    /// and controllers chunkservers report talking to, minus forgotten ones. Never
    /// this controller.
    pub async fn members(&self) -> Result<BTreeSet<NodeId>> {
        let (known, forgotten) = self
            .db
            .call(|s| {
                Ok((
                    meta::controllers(s.conn())?,
                    meta::forgotten_controllers(s.conn())?,
                ))
            })
            .await?;
        let mut out: BTreeSet<NodeId> = known.into_iter().map(|(id, _, _)| id).collect();
        out.extend(self.peers.all().into_iter().filter_map(|p| p.node_id));
        out.extend(
            self.registry
                .reported_controllers()
                .into_iter()
                .map(|c| c.node_id),
        );
        out.retain(|n| *n != self.id && !forgotten.contains(n));
        Ok(out)
    }

    /// Whether controller `id` was forgotten.
    pub fn is_forgotten(&self, id: &NodeId) -> bool {
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Replaces the set of forgotten controllers.
    pub fn set_forgotten(&self, ids: BTreeSet<NodeId>) {
        *self.forgotten.lock().unwrap_or_else(|e| e.into_inner()) = ids;
    }

    /// Notes a complete exchange with `peer` that this controller asked for at `at`.
    pub fn note_complete_exchange(&self, peer: &NodeId, at: Instant) {
        let mut m = self.sync_times.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(peer.clone()).or_insert(at);
        if *e < at {
            *e = at;
        }
    }

    /// When the last complete exchange with `peer` asked for by this controller began.
    pub fn last_complete_exchange(&self, peer: &NodeId) -> Option<Instant> {
        self.sync_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .copied()
    }

    /// Records what collector `which` waits for (shown by `cluster status`); the
    /// time a wait began is kept while it lasts.
    pub fn set_gc_waits(&self, which: &'static str, mut waits: Vec<GcWait>) {
        let mut m = self.gc_waits.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.hlc.wall_ms();
        let old = m.remove(which).unwrap_or_default();
        for w in &mut waits {
            let kept = old
                .iter()
                .find(|o| o.node == w.node && o.reason == w.reason);
            w.since_ms = match kept {
                Some(o) => o.since_ms,
                None if w.since_ms == 0 => now,
                None => w.since_ms,
            };
        }
        m.insert(which, waits);
    }

    /// What each collector waits for.
    pub fn gc_waits(&self) -> Vec<(&'static str, GcWait)> {
        self.gc_waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flat_map(|(k, v)| v.iter().map(|w| (*k, w.clone())))
            .collect()
    }
}
