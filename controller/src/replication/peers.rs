//! The set of other controllers this one knows, with what the gossip layer needs
//! per peer: its addresses and whether it missed a push (and so needs a sync).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use redcloud_common::NodeId;

/// One known peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_id: Option<NodeId>,
    pub http_addr: String,
    pub grpc_addr: String,
    /// Since when it may lack something we have (a push to it failed, or it is
    /// new): anti-entropy with it is due.
    pub sync_wanted_since: Option<Instant>,
    /// When a message to or from it last succeeded.
    pub last_ok: Option<Instant>,
    /// The vector hash both sides had when the last exchange found them equal.
    pub last_same_hash: Option<[u8; 16]>,
}

/// Known peers by HTTP address. `std` mutex: map operations only.
#[derive(Debug, Default)]
pub struct Peers {
    inner: Mutex<HashMap<String, Peer>>,
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Peer>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or updates a peer. Returns true if it was new.
    pub fn upsert(&self, node_id: Option<NodeId>, http_addr: &str, grpc_addr: &str) -> bool {
        let mut m = self.lock();
        // A node that moved to a new address: forget the old one.
        if let Some(id) = &node_id {
            m.retain(|a, p| a == http_addr || p.node_id.as_ref() != Some(id));
        }
        match m.get_mut(http_addr) {
            Some(p) => {
                if node_id.is_some() {
                    p.node_id = node_id;
                }
                if !grpc_addr.is_empty() {
                    p.grpc_addr = grpc_addr.to_string();
                }
                false
            }
            None => {
                m.insert(
                    http_addr.to_string(),
                    Peer {
                        node_id,
                        http_addr: http_addr.to_string(),
                        grpc_addr: grpc_addr.to_string(),
                        // A new peer may lack anything: sync with it soon.
                        sync_wanted_since: Some(Instant::now()),
                        last_ok: None,
                        last_same_hash: None,
                    },
                );
                true
            }
        }
    }

    pub fn all(&self) -> Vec<Peer> {
        let mut v: Vec<Peer> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.http_addr.cmp(&b.http_addr));
        v
    }

    pub fn contains(&self, http_addr: &str) -> bool {
        self.lock().contains_key(http_addr)
    }

    /// Up to `n` random peers, leaving out `exclude` (a node id).
    pub fn random(&self, n: usize, exclude: Option<&NodeId>) -> Vec<Peer> {
        let m = self.lock();
        let candidates: Vec<&Peer> = m
            .values()
            .filter(|p| exclude.is_none() || p.node_id.as_ref() != exclude)
            .collect();
        let mut rng = rand::rng();
        candidates
            .choose_multiple(&mut rng, n)
            .map(|p| (*p).clone())
            .collect()
    }

    /// Notes a successful message to or from the peer at `http_addr`.
    pub fn mark_ok(&self, http_addr: &str) {
        if let Some(p) = self.lock().get_mut(http_addr) {
            p.last_ok = Some(Instant::now());
        }
    }

    /// Ids of peers heard from within `window`.
    pub fn alive(&self, window: Duration) -> Vec<NodeId> {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|p| p.last_ok.is_some_and(|t| now.duration_since(t) <= window))
            .filter_map(|p| p.node_id.clone())
            .collect()
    }

    /// Whether the last exchange with the peer at `http_addr` found both vectors
    /// equal to `hash` (then a hash alone settles the next idle round).
    pub fn last_same_hash_is(&self, http_addr: &str, hash: &[u8; 16]) -> bool {
        self.lock()
            .get(http_addr)
            .is_some_and(|p| p.last_same_hash.as_ref() == Some(hash))
    }

    pub fn set_last_same_hash(&self, http_addr: &str, hash: Option<[u8; 16]>) {
        if let Some(p) = self.lock().get_mut(http_addr) {
            p.last_same_hash = hash;
        }
    }

    /// Whether a peer with node id `id` is known.
    pub fn knows_id(&self, id: &NodeId) -> bool {
        self.lock().values().any(|p| p.node_id.as_ref() == Some(id))
    }

    /// Forgets the peer with node id `id` (it was removed from the cluster).
    pub fn remove_id(&self, id: &NodeId) {
        self.lock().retain(|_, p| p.node_id.as_ref() != Some(id));
    }

    pub fn set_needs_sync(&self, http_addr: &str, v: bool) {
        if let Some(p) = self.lock().get_mut(http_addr) {
            match (v, p.sync_wanted_since) {
                (true, None) => p.sync_wanted_since = Some(Instant::now()),
                (false, _) => p.sync_wanted_since = None,
                _ => {}
            }
        }
    }

    /// Peers a sync is due with. When two controllers want to sync with each other
    /// (as both sides of a healed partition do), the one with the lower id starts
    /// and its exchange serves both directions; the other starts only if nothing
    /// came within `patience`.
    pub fn due_for_sync(&self, me: &NodeId, patience: Duration) -> Vec<Peer> {
        let now = Instant::now();
        let mut v: Vec<Peer> = self
            .lock()
            .values()
            .filter(|p| match (p.sync_wanted_since, &p.node_id) {
                (None, _) => false,
                (Some(_), Some(id)) if me < id => true,
                (Some(_), None) => true,
                (Some(t), Some(_)) => now.duration_since(t) >= patience,
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| a.http_addr.cmp(&b.http_addr));
        v
    }
}
