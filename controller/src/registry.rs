//! The chunkserver registry: who exists (from SQLite, replicated), who is healthy
//! (from heartbeats this controller received), and their last reported usage.
//!
//! Health: a chunkserver is healthy while its last heartbeat is younger than
//! `HEARTBEAT_TIMEOUT`. A failed call marks it suspect until its next heartbeat, so
//! a killed node stops being picked at once rather than after the timeout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redcloud_common::NodeId;
use redcloud_common::wire::Heartbeat;

use crate::model::ChunkserverRecord;

#[derive(Debug, Clone)]
struct Entry {
    record: ChunkserverRecord,
    last_heartbeat: Option<Instant>,
    suspect_since: Option<Instant>,
    capacity_bytes: u64,
    free_bytes: u64,
    used_bytes: u64,
    chunk_count: u64,
    corrupt_found: u64,
    /// Health as last gossiped by whichever controller judged it.
    gossiped_healthy: bool,
    /// Health this controller last wrote (from its own heartbeats).
    reported: Option<bool>,
    /// The controllers it said, in its last heartbeat, it talks to.
    talks_to: Vec<redcloud_common::wire::ControllerRef>,
}

/// What a heartbeat changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// The record, if new or its addresses changed (the caller persists it).
    pub persist: Option<ChunkserverRecord>,
    /// The chunkserver joined, returned, lost chunks or found corruption.
    pub wake_repair: bool,
}

/// One chunkserver as the status API shows it.
#[derive(Debug, Clone)]
pub struct ChunkserverView {
    pub record: ChunkserverRecord,
    pub healthy: bool,
    pub last_heartbeat_age: Option<Duration>,
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    pub used_bytes: u64,
    pub chunk_count: u64,
}

/// The most chunkservers one controller tracks: a heartbeat from a new one beyond
/// this is refused (heartbeats are the one way a remote node adds an entry here).
pub const MAX_CHUNKSERVERS: usize = 1024;

/// `std` mutex: every critical section is a map lookup, never across an `.await`.
#[derive(Debug)]
pub struct Registry {
    entries: Mutex<HashMap<NodeId, Entry>>,
    timeout: Duration,
}

impl Registry {
    pub fn new(timeout: Duration) -> Self {
        Registry {
            entries: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds chunkservers known from the database (not healthy until they report).
    /// Adds chunkservers known from the database or gossip, with their health as
    /// last gossiped. Until this controller hears a heartbeat from one, the gossiped
    /// health stands in for its own judgement; its own heartbeats then take over.
    pub fn load(&self, records: Vec<(ChunkserverRecord, bool)>) {
        let mut m = self.lock();
        for (record, healthy) in records {
            let e = m
                .entry(record.node_id.clone())
                .or_insert_with(|| Entry::new(record.clone(), healthy));
            e.gossiped_healthy = healthy;
            if e.last_heartbeat.is_none() {
                e.record = record;
            }
        }
    }

    /// Health changes this controller observed since the last call (a chunkserver
    /// whose heartbeats stopped past the timeout, or that came back), to be written
    /// as replicated records so every controller learns them.
    pub fn transitions(&self) -> Vec<(ChunkserverRecord, bool)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for e in self.lock().values_mut() {
            let Some(t) = e.last_heartbeat else { continue };
            let healthy = now.duration_since(t) < self.timeout;
            if e.reported != Some(healthy) {
                if !healthy {
                    tracing::warn!(node = %e.record.node_id, "chunkserver failed: no heartbeat within the timeout");
                }
                e.reported = Some(healthy);
                out.push((e.record.clone(), healthy));
            }
        }
        out
    }

    /// Takes a heartbeat. Returns the record if it is new or its addresses changed
    /// (the caller persists it). Refused for a new chunkserver when
    /// [`MAX_CHUNKSERVERS`] are already tracked.
    pub fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatOutcome, String> {
        let record = ChunkserverRecord {
            node_id: hb.node_id.clone(),
            grpc_addr: hb.grpc_addr.clone(),
            http_addr: hb.http_addr.clone(),
        };
        let mut m = self.lock();
        if m.len() >= MAX_CHUNKSERVERS && !m.contains_key(&hb.node_id) {
            return Err(format!(
                "this controller already tracks {MAX_CHUNKSERVERS} chunkservers; retire some \
                 (redcloud cluster forget) before adding more"
            ));
        }
        let e = m
            .entry(hb.node_id.clone())
            .or_insert_with(|| Entry::new(record.clone(), true));
        let changed = e.last_heartbeat.is_none() || e.record != record;
        // First heartbeat heard here, or back after the timeout.
        let returned = e.last_heartbeat.is_none() || !e.healthy_at(Instant::now(), self.timeout);
        if returned {
            tracing::info!(node = %hb.node_id, addr = %hb.grpc_addr, "chunkserver is healthy");
        }
        // A node that (re)joined, lost chunks or found corrupt copies needs repair now.
        let wake_repair =
            returned || hb.chunk_count < e.chunk_count || hb.corrupt_found > e.corrupt_found;
        e.record = record.clone();
        e.last_heartbeat = Some(Instant::now());
        e.suspect_since = None;
        e.capacity_bytes = hb.capacity_bytes;
        e.free_bytes = hb.free_bytes;
        e.used_bytes = hb.used_bytes;
        e.chunk_count = hb.chunk_count;
        e.corrupt_found = hb.corrupt_found;
        e.talks_to = hb.controllers.clone();
        Ok(HeartbeatOutcome {
            persist: changed.then_some(record),
            wake_repair,
        })
    }

    /// Marks a chunkserver suspect after a failed call to it at `grpc_addr`: it is
    /// not picked again until its next heartbeat. A failure at an address it no
    /// longer has (a call begun before a heartbeat brought the new one: it moved to
    /// another network) says nothing about it, and is ignored.
    pub fn report_failure(&self, id: &NodeId, grpc_addr: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            if e.record.grpc_addr != grpc_addr {
                tracing::debug!(node = %id, addr = grpc_addr, now = %e.record.grpc_addr, "a call to a former address failed; ignored");
                return;
            }
            if e.suspect_since.is_none() {
                tracing::warn!(node = %id, "chunkserver call failed; not using it until its next heartbeat");
            }
            e.suspect_since = Some(Instant::now());
        }
    }

    /// Chunkservers that sent a heartbeat within the timeout, suspects included (a
    /// call to them failed since): where to try when no healthy one is left, rather
    /// than refuse.
    pub fn alive(&self) -> Vec<ChunkserverRecord> {
        let now = Instant::now();
        let timeout = self.timeout;
        let mut v: Vec<_> = self
            .lock()
            .values()
            .filter(|e| {
                e.last_heartbeat
                    .is_some_and(|t| now.duration_since(t) < timeout)
            })
            .map(|e| e.record.clone())
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    /// Healthy chunkservers, ordered by node id.
    pub fn healthy(&self) -> Vec<ChunkserverRecord> {
        let now = Instant::now();
        let mut v: Vec<_> = self
            .lock()
            .values()
            .filter(|e| e.healthy_at(now, self.timeout))
            .map(|e| e.record.clone())
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    pub fn get(&self, id: &NodeId) -> Option<(ChunkserverRecord, bool)> {
        let now = Instant::now();
        self.lock()
            .get(id)
            .map(|e| (e.record.clone(), e.healthy_at(now, self.timeout)))
    }

    /// Every controller a chunkserver heard from within the last hour says it talks
    /// to (deduplicated by id).
    pub fn reported_controllers(&self) -> Vec<redcloud_common::wire::ControllerRef> {
        let mut out: HashMap<NodeId, redcloud_common::wire::ControllerRef> = HashMap::new();
        for e in self.lock().values() {
            if e.last_heartbeat
                .is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
            {
                for c in &e.talks_to {
                    out.entry(c.node_id.clone()).or_insert_with(|| c.clone());
                }
            }
        }
        out.into_values().collect()
    }

    /// Forgets chunkserver `id` (removed from the cluster).
    pub fn remove(&self, id: &NodeId) {
        self.lock().remove(id);
    }

    /// Every known chunkserver, ordered by node id.
    pub fn snapshot(&self) -> Vec<ChunkserverView> {
        let now = Instant::now();
        let mut v: Vec<_> = self
            .lock()
            .values()
            .map(|e| ChunkserverView {
                record: e.record.clone(),
                healthy: e.healthy_at(now, self.timeout),
                last_heartbeat_age: e.last_heartbeat.map(|t| now.duration_since(t)),
                capacity_bytes: e.capacity_bytes,
                free_bytes: e.free_bytes,
                used_bytes: e.used_bytes,
                chunk_count: e.chunk_count,
            })
            .collect();
        v.sort_by(|a, b| a.record.node_id.cmp(&b.record.node_id));
        v
    }
}

impl Entry {
    /// A chunkserver not heard from yet, with its gossiped health.
    fn new(record: ChunkserverRecord, gossiped_healthy: bool) -> Self {
        Entry {
            record,
            last_heartbeat: None,
            suspect_since: None,
            capacity_bytes: 0,
            free_bytes: 0,
            used_bytes: 0,
            chunk_count: 0,
            corrupt_found: 0,
            gossiped_healthy,
            reported: None,
            talks_to: Vec::new(),
        }
    }

    fn healthy_at(&self, now: Instant, timeout: Duration) -> bool {
        let alive = match self.last_heartbeat {
            Some(t) => now.duration_since(t) < timeout,
            None => self.gossiped_healthy,
        };
        alive && self.suspect_since.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str) -> Heartbeat {
        Heartbeat {
            node_id: NodeId::new(id).unwrap(),
            grpc_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
            capacity_bytes: 10,
            free_bytes: 5,
            used_bytes: 1,
            chunk_count: 1,
            corrupt_found: 0,
            controllers: Vec::new(),
        }
    }

    #[test]
    fn health_follows_heartbeats_and_failures() {
        let r = Registry::new(Duration::from_secs(30));
        assert!(r.heartbeat(&hb("a")).unwrap().persist.is_some());
        assert!(
            r.heartbeat(&hb("a")).unwrap().persist.is_none(),
            "unchanged record is not re-persisted"
        );
        r.heartbeat(&hb("b")).unwrap();
        assert_eq!(r.healthy().len(), 2);
        r.report_failure(&NodeId::new("a").unwrap(), "127.0.0.1:1");
        assert_eq!(r.healthy().len(), 1);
        assert_eq!(
            r.alive().len(),
            2,
            "a suspect with a fresh heartbeat is alive"
        );
        r.heartbeat(&hb("a")).unwrap();
        assert_eq!(r.healthy().len(), 2);
        // A failure at an address the chunkserver no longer has is ignored.
        r.report_failure(&NodeId::new("a").unwrap(), "10.0.0.9:8800");
        assert_eq!(r.healthy().len(), 2);
        // Past the timeout with no heartbeat, a chunkserver is failed.
        let e = r.lock().get(&NodeId::new("b").unwrap()).cloned().unwrap();
        let later = Instant::now() + Duration::from_secs(31);
        assert!(!e.healthy_at(later, Duration::from_secs(30)));
        assert!(e.healthy_at(Instant::now(), Duration::from_secs(30)));
    }

    #[test]
    fn the_registry_is_bounded() {
        let r = Registry::new(Duration::from_secs(30));
        for i in 0..MAX_CHUNKSERVERS {
            r.heartbeat(&hb(&format!("cs{i}"))).unwrap();
        }
        let e = r.heartbeat(&hb("one-too-many")).unwrap_err();
        assert!(e.contains("already tracks"), "{e}");
        assert!(r.get(&NodeId::new("one-too-many").unwrap()).is_none());
        // Known ones keep their heartbeats.
        r.heartbeat(&hb("cs0")).unwrap();
        assert_eq!(r.snapshot().len(), MAX_CHUNKSERVERS);
    }
}
