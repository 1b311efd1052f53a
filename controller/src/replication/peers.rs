//! The set of other controllers this one knows, with what the gossip layer needs
//! per peer: its addresses and whether it missed a push (and so needs a sync).

use std::collections::HashMap;
#[cfg(test)]
use std::collections::HashSet;
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
    /// Since when messages to it fail (cleared by the next success).
    pub failing_since: Option<Instant>,
}

/// The most peers one controller keeps. Peers arrive from other nodes' messages
/// (pushes, heartbeats' controller lists, registrations), so the map is bounded:
/// beyond this, new addresses are ignored until known ones are forgotten.
pub const MAX_PEERS: usize = 1024;

/// Known peers by HTTP address. `std` mutex: map operations only.
#[derive(Debug, Default)]
pub struct Peers {
    inner: Mutex<HashMap<String, Peer>>,
    /// The vector hash at which this controller's last exchange, with any peer,
    /// found both sides equal: while its vector still hashes to it, it is most
    /// likely converged with the cluster, and a summary of the hash alone settles
    /// an idle round with whichever peer it picks.
    last_same: Mutex<Option<[u8; 16]>>,
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
        let full = m.len() >= MAX_PEERS;
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
            None if full => {
                tracing::debug!(
                    addr = http_addr,
                    "ignoring a new peer: this controller already knows {MAX_PEERS}"
                );
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
                        failing_since: None,
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

    /// Where a push of new records goes: the ring successor (the known peer whose
    /// node id follows `me` in id order, wrapping around, skipping peers whose
    /// messages fail while another is reachable), plus `fanout - 1` random others;
    /// never `exclude` (the peer the records came from).
    ///
    /// The random targets spread an update to most controllers in a few hops, but
    /// random choice alone leaves out about `e^-fanout` of them (5% at fanout 3)
    /// until anti-entropy. Since every controller pushes what it learns to its
    /// successor, one it misses is reached by its predecessor one hop later: an
    /// update reaches every live controller by pushes alone (docs/replication.md,
    /// "Push targets").
    pub fn push_targets(&self, me: &NodeId, fanout: usize, exclude: Option<&NodeId>) -> Vec<Peer> {
        if fanout == 0 {
            return Vec::new();
        }
        let m = self.lock();
        let candidates: Vec<&Peer> = m
            .values()
            .filter(|p| exclude.is_none() || p.node_id.as_ref() != exclude)
            .filter(|p| p.node_id.as_ref() != Some(me))
            .collect();
        let ids: Vec<(&NodeId, bool)> = candidates
            .iter()
            .filter_map(|p| p.node_id.as_ref().map(|id| (id, p.failing_since.is_none())))
            .collect();
        let successor = ring_successor(me, &ids).cloned();
        let mut out: Vec<Peer> = Vec::with_capacity(fanout);
        if let Some(id) = &successor
            && let Some(p) = candidates.iter().find(|p| p.node_id.as_ref() == Some(id))
        {
            out.push((*p).clone());
        }
        let rest: Vec<&&Peer> = candidates
            .iter()
            .filter(|p| successor.is_none() || p.node_id != successor)
            .collect();
        let mut rng = rand::rng();
        out.extend(
            rest.choose_multiple(&mut rng, fanout - out.len())
                .map(|p| (**p).clone()),
        );
        out
    }

    /// Notes a successful message to or from the peer at `http_addr`.
    pub fn mark_ok(&self, http_addr: &str) {
        if let Some(p) = self.lock().get_mut(http_addr) {
            p.last_ok = Some(Instant::now());
            p.failing_since = None;
        }
    }

    /// Notes a failed message to the peer at `http_addr`.
    pub fn mark_failed(&self, http_addr: &str) {
        if let Some(p) = self.lock().get_mut(http_addr) {
            p.failing_since.get_or_insert_with(Instant::now);
        }
    }

    /// Whether a summary may carry the vector's hash alone: this controller's last
    /// exchange that found both sides equal was at this very hash.
    pub fn hash_alone_will_do(&self, hash: &[u8; 16]) -> bool {
        self.last_same
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            == Some(hash)
    }

    /// Notes an exchange that found both sides equal at `hash`.
    pub fn note_same(&self, hash: [u8; 16]) {
        *self.last_same.lock().unwrap_or_else(|e| e.into_inner()) = Some(hash);
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

/// The ring successor of `me` among `ids` (each with whether it is reachable): the
/// smallest id above `me`, wrapping to the smallest id; reachable ids first, an
/// unreachable one only if no id is reachable.
pub fn ring_successor<'a>(me: &NodeId, ids: &[(&'a NodeId, bool)]) -> Option<&'a NodeId> {
    let pick = |reachable_only: bool| {
        let ok = ids.iter().filter(|(_, r)| *r || !reachable_only);
        let above = ok
            .clone()
            .filter(|(id, _)| *id > me)
            .map(|(id, _)| *id)
            .min();
        above.or_else(|| ok.map(|(id, _)| *id).min())
    };
    pick(true).or_else(|| pick(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn successor_wraps_and_skips_unreachable() {
        let (a, b, c, d) = (id("a"), id("b"), id("c"), id("d"));
        let all = [(&a, true), (&c, true), (&d, true)];
        assert_eq!(ring_successor(&b, &all), Some(&c));
        assert_eq!(ring_successor(&d, &all), Some(&a), "wraps around");
        let c_down = [(&a, true), (&c, false), (&d, true)];
        assert_eq!(ring_successor(&b, &c_down), Some(&d));
        let all_down = [(&a, false), (&c, false)];
        assert_eq!(ring_successor(&b, &all_down), Some(&c));
        assert_eq!(ring_successor(&b, &[]), None);
    }

    #[test]
    fn the_map_is_bounded() {
        let peers = Peers::default();
        for i in 0..MAX_PEERS + 10 {
            peers.upsert(Some(id(&format!("n{i}"))), &format!("h{i}"), "");
        }
        assert_eq!(peers.all().len(), MAX_PEERS);
        // A known peer is still updated, and moving it keeps the count.
        assert!(!peers.upsert(Some(id("n0")), "h0", "g0"));
        assert_eq!(peers.all().len(), MAX_PEERS);
        peers.remove_id(&id("n1"));
        assert!(peers.upsert(Some(id("new")), "h-new", ""), "room again");
    }

    #[test]
    fn push_targets_are_the_successor_and_distinct_random_peers() {
        let peers = Peers::default();
        for i in 0..10 {
            peers.upsert(Some(id(&format!("n{i}"))), &format!("h{i}"), "");
        }
        let me = id("n3");
        for _ in 0..50 {
            let t = peers.push_targets(&me, 3, Some(&id("n7")));
            assert_eq!(t.len(), 3);
            assert_eq!(t[0].node_id, Some(id("n4")), "successor first");
            let ids: HashSet<_> = t.iter().map(|p| p.node_id.clone()).collect();
            assert_eq!(ids.len(), 3, "distinct");
            assert!(!ids.contains(&Some(id("n7"))), "never the sender");
            assert!(!ids.contains(&Some(me.clone())), "never itself");
        }
        // The successor's messages fail: the next reachable id takes its place.
        peers.mark_failed("h4");
        assert_eq!(peers.push_targets(&me, 1, None)[0].node_id, Some(id("n5")));
        peers.mark_ok("h4");
        assert_eq!(peers.push_targets(&me, 1, None)[0].node_id, Some(id("n4")));
        // Excluded successor (the records came from it): skipped.
        assert_eq!(
            peers.push_targets(&me, 1, Some(&id("n4")))[0].node_id,
            Some(id("n5"))
        );
    }
}
