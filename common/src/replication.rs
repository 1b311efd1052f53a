//! The replication core: the merge rule for two versions of a record, version
//! vectors over write origins, and the bookkeeping of which writes a replica
//! reflects. Pure code, no I/O: the controller's gossip and anti-entropy workers
//! drive it. The algorithm and its invariants are in `docs/replication.md`.
//!
//! Every write is made by one node (its *origin*) and numbered by that node's
//! write counter (`seq`, 1, 2, 3, ...). A version carries that pair, the record's
//! vector clock and an HLC timestamp.
//!
//! Merge rule ([`supersedes`]): if one version's vector clock dominates, it wins;
//! if they are concurrent, the higher `(hlc, origin, seq)` wins. Because an HLC
//! timestamp is above every timestamp its node had seen, a version that dominates
//! another also has a higher HLC timestamp; the rule therefore agrees with the
//! total order on `(hlc, origin, seq)`, which makes merging commutative,
//! associative and idempotent (property-tested below).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::{Causality, HlcTimestamp, NodeId, VectorClock};

/// Replication metadata of one version of a record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub vclock: VectorClock,
    pub hlc: HlcTimestamp,
    /// The node that made this version.
    pub origin: NodeId,
    /// The origin's write counter at this version.
    pub seq: u64,
    /// A tombstone: the record is deleted, and the deletion replicates.
    pub deleted: bool,
}

impl Version {
    /// The total-order key that breaks ties between concurrent versions.
    fn tiebreak(&self) -> (HlcTimestamp, &NodeId, u64) {
        (self.hlc, &self.origin, self.seq)
    }

    /// Whether this is the same version as `other` (same write).
    pub fn same_write(&self, other: &Version) -> bool {
        self.origin == other.origin && self.seq == other.seq
    }
}

/// Whether version `a` replaces version `b` of the same record.
pub fn supersedes(a: &Version, b: &Version) -> bool {
    if a.same_write(b) {
        return false;
    }
    match a.vclock.compare(&b.vclock) {
        Causality::After => true,
        Causality::Before => false,
        Causality::Equal | Causality::Concurrent => {
            a.tiebreak().cmp(&b.tiebreak()) == Ordering::Greater
        }
    }
}

/// The version that survives when `a` and `b` meet.
pub fn merge<'a>(a: &'a Version, b: &'a Version) -> &'a Version {
    if supersedes(b, a) { b } else { a }
}

/// For each origin, the highest write counter up to which a replica reflects every
/// write of that origin (holds it, or a version that superseded it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionVector(pub BTreeMap<NodeId, u64>);

impl VersionVector {
    pub fn get(&self, origin: &NodeId) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }

    /// Pointwise maximum.
    pub fn merge(&mut self, other: &VersionVector) {
        for (o, &s) in &other.0 {
            let e = self.0.entry(o.clone()).or_insert(0);
            *e = (*e).max(s);
        }
    }

    /// What a replica at `theirs` lacks from one at `self`: for every origin where
    /// `self` is ahead, `(origin, theirs[origin])` — send the writes of `origin`
    /// numbered above that.
    pub fn ahead_of(&self, theirs: &VersionVector) -> Vec<(NodeId, u64)> {
        self.0
            .iter()
            .filter(|(o, s)| **s > theirs.get(o))
            .map(|(o, _)| (o.clone(), theirs.get(o)))
            .collect()
    }

    /// Whether `self` covers everything `other` covers.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(o, s)| self.get(o) >= *s)
    }
}

/// Tracks which writes a replica reflects: the contiguous [`VersionVector`] plus
/// writes seen out of order (beyond a gap), which fold in when the gap fills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    vv: VersionVector,
    ahead: BTreeMap<NodeId, BTreeSet<u64>>,
}

impl Coverage {
    pub fn new(vv: VersionVector) -> Self {
        Coverage {
            vv,
            ahead: BTreeMap::new(),
        }
    }

    pub fn vector(&self) -> &VersionVector {
        &self.vv
    }

    /// Whether write `(origin, seq)` is already reflected.
    pub fn covers(&self, origin: &NodeId, seq: u64) -> bool {
        seq <= self.vv.get(origin) || self.ahead.get(origin).is_some_and(|s| s.contains(&seq))
    }

    /// Notes that write `(origin, seq)` is reflected.
    pub fn record(&mut self, origin: &NodeId, seq: u64) {
        let cur = self.vv.get(origin);
        if seq <= cur {
            return;
        }
        let set = self.ahead.entry(origin.clone()).or_default();
        set.insert(seq);
        let mut next = cur;
        while set.remove(&(next + 1)) {
            next += 1;
        }
        if set.is_empty() {
            self.ahead.remove(origin);
        }
        if next > cur {
            self.vv.0.insert(origin.clone(), next);
        }
    }

    /// After applying every write a peer at `vv` reflected (an anti-entropy
    /// delta), this replica reflects everything that peer did.
    pub fn absorb(&mut self, vv: &VersionVector) {
        self.vv.merge(vv);
        let vv = self.vv.clone();
        self.ahead.retain(|o, set| {
            let floor = vv.get(o);
            set.retain(|s| *s > floor);
            !set.is_empty()
        });
        // Out-of-order writes just above the new floor may now be contiguous.
        let origins: Vec<NodeId> = self.ahead.keys().cloned().collect();
        for o in origins {
            let cur = self.vv.get(&o);
            if let Some(set) = self.ahead.get_mut(&o) {
                let mut next = cur;
                while set.remove(&(next + 1)) {
                    next += 1;
                }
                if set.is_empty() {
                    self.ahead.remove(&o);
                }
                if next > cur {
                    self.vv.0.insert(o, next);
                }
            }
        }
    }
}

/// An order-independent digest of a replica's state: the XOR of a hash per record
/// version, so equal sets of (table, key, version) give equal digests whatever the
/// order they are fed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateDigest([u8; 32]);

impl StateDigest {
    pub fn add(&mut self, table: &str, key: &str, v: &Version) {
        let mut h = crate::Sha256Hex::new();
        h.update(table.as_bytes());
        h.update(&[0]);
        h.update(key.as_bytes());
        h.update(&[0]);
        h.update(v.origin.as_str().as_bytes());
        h.update(&[0]);
        h.update(&v.seq.to_le_bytes());
        h.update(&v.hlc.0.to_le_bytes());
        h.update(&[v.deleted as u8]);
        let hex = h.finish();
        let mut one = [0u8; 32];
        if hex::decode_to_slice(hex, &mut one).is_ok() {
            for (d, x) in self.0.iter_mut().zip(one) {
                *d ^= x;
            }
        }
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hlc;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    /// A replica in memory: what the controller's SQLite tables do, minus SQL.
    #[derive(Debug, Clone, Default)]
    struct Replica {
        rows: BTreeMap<u8, Version>,
        coverage: Coverage,
    }

    impl Replica {
        fn apply(&mut self, key: u8, v: &Version) -> bool {
            self.coverage.record(&v.origin, v.seq);
            match self.rows.get(&key) {
                Some(cur) if !supersedes(v, cur) => false,
                _ => {
                    self.rows.insert(key, v.clone());
                    true
                }
            }
        }
    }

    /// A node making writes in a simulated history.
    struct Node {
        id: NodeId,
        hlc: Hlc,
        seq: u64,
        replica: Replica,
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Node `a` writes key `k` (a delete if `del`).
        Write(usize, u8, bool),
        /// Node `a` learns everything node `b` holds.
        Sync(usize, usize),
        /// Wall clock moves on by this many ms for node `a` (skew between nodes).
        Tick(usize, u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0usize..3, 0u8..4, any::<bool>()).prop_map(|(a, k, d)| Step::Write(a, k, d)),
            2 => (0usize..3, 0usize..3).prop_map(|(a, b)| Step::Sync(a, b)),
            1 => (0usize..3, 0u16..500).prop_map(|(a, t)| Step::Tick(a, t)),
        ]
    }

    /// Runs a history; returns every version written, keyed.
    fn run(steps: &[Step]) -> (Vec<(u8, Version)>, Vec<Replica>) {
        let mut nodes: Vec<Node> = ["a", "b", "c"]
            .iter()
            .map(|s| Node {
                id: n(s),
                hlc: Hlc::manual(),
                seq: 0,
                replica: Replica::default(),
            })
            .collect();
        let mut all = Vec::new();
        for s in steps {
            match *s {
                Step::Write(a, k, del) => {
                    let node = &mut nodes[a];
                    let mut vclock = node
                        .replica
                        .rows
                        .get(&k)
                        .map(|v| v.vclock.clone())
                        .unwrap_or_default();
                    vclock.increment(&node.id);
                    node.seq += 1;
                    let v = Version {
                        vclock,
                        hlc: node.hlc.now(),
                        origin: node.id.clone(),
                        seq: node.seq,
                        deleted: del,
                    };
                    assert!(
                        node.replica.apply(k, &v),
                        "a local write always wins locally"
                    );
                    all.push((k, v));
                }
                Step::Sync(a, b) => {
                    let rows: Vec<_> = nodes[b]
                        .replica
                        .rows
                        .iter()
                        .map(|(k, v)| (*k, v.clone()))
                        .collect();
                    let vv = nodes[b].replica.coverage.vector().clone();
                    for (k, v) in rows {
                        nodes[a].hlc.observe(v.hlc);
                        nodes[a].replica.apply(k, &v);
                    }
                    nodes[a].replica.coverage.absorb(&vv);
                }
                Step::Tick(a, ms) => nodes[a].hlc.advance_manual(u64::from(ms)),
            }
        }
        (all, nodes.into_iter().map(|n| n.replica).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any delivery order, with duplicates, of every version gives the same state.
        #[test]
        fn delivery_order_does_not_matter(
            steps in proptest::collection::vec(step(), 1..60),
            seed in any::<u64>(),
        ) {
            let (all, _) = run(&steps);
            let mut reference = Replica::default();
            for (k, v) in &all { reference.apply(*k, v); }

            let mut shuffled: Vec<_> = all.iter().chain(all.iter().step_by(2)).cloned().collect();
            let mut rng = seed;
            for i in (1..shuffled.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let mut other = Replica::default();
            for (k, v) in &shuffled { other.apply(*k, v); }
            prop_assert_eq!(&reference.rows, &other.rows);
            prop_assert_eq!(reference.coverage.vector(), other.coverage.vector());
        }

        /// Merge laws over versions of one key from real histories.
        #[test]
        fn merge_is_commutative_associative_idempotent(steps in proptest::collection::vec(step(), 1..60)) {
            let (all, _) = run(&steps);
            let vs: Vec<&Version> = all.iter().filter(|(k, _)| *k == 0).map(|(_, v)| v).collect();
            for a in &vs {
                prop_assert_eq!(merge(a, a), *a);
                for b in &vs {
                    prop_assert_eq!(merge(a, b), merge(b, a));
                    for c in &vs {
                        prop_assert_eq!(merge(merge(a, b), c), merge(a, merge(b, c)));
                    }
                }
            }
        }

        /// Replicas that exchange everything end identical, and their coverage then
        /// includes every write.
        #[test]
        fn full_exchange_converges(steps in proptest::collection::vec(step(), 1..60)) {
            let (all, mut replicas) = run(&steps);
            for _ in 0..2 {
                for a in 0..replicas.len() {
                    for b in 0..replicas.len() {
                        let rows: Vec<_> = replicas[b].rows.iter().map(|(k, v)| (*k, v.clone())).collect();
                        let vv = replicas[b].coverage.vector().clone();
                        for (k, v) in rows { replicas[a].apply(k, &v); }
                        replicas[a].coverage.absorb(&vv);
                    }
                }
            }
            for r in &replicas[1..] {
                prop_assert_eq!(&r.rows, &replicas[0].rows);
            }
            for (_, v) in &all {
                prop_assert!(replicas[0].coverage.vector().get(&v.origin) >= v.seq);
            }
        }
    }

    #[test]
    fn dominance_beats_timestamps_and_ties_are_deterministic() {
        let mut vc1 = VectorClock::new();
        vc1.increment(&n("a"));
        let mut vc2 = vc1.clone();
        vc2.increment(&n("b"));
        let old = Version {
            vclock: vc1.clone(),
            hlc: HlcTimestamp(100),
            origin: n("a"),
            seq: 1,
            deleted: false,
        };
        let newer = Version {
            vclock: vc2,
            hlc: HlcTimestamp(50),
            origin: n("b"),
            seq: 1,
            deleted: false,
        };
        assert!(
            supersedes(&newer, &old),
            "a dominating clock wins even with a lower timestamp"
        );
        let mut vc3 = VectorClock::new();
        vc3.increment(&n("c"));
        let conc = Version {
            vclock: vc3,
            hlc: HlcTimestamp(100),
            origin: n("c"),
            seq: 1,
            deleted: true,
        };
        assert!(
            supersedes(&conc, &old),
            "equal timestamps: the higher node id wins"
        );
        assert!(!supersedes(&old, &conc));
        assert!(!supersedes(&old, &old));
    }

    #[test]
    fn coverage_folds_in_out_of_order_writes() {
        let mut c = Coverage::default();
        let a = n("a");
        c.record(&a, 2);
        assert_eq!(c.vector().get(&a), 0);
        c.record(&a, 1);
        assert_eq!(c.vector().get(&a), 2);
        c.record(&a, 5);
        let mut vv = VersionVector::default();
        vv.0.insert(a.clone(), 4);
        c.absorb(&vv);
        assert_eq!(c.vector().get(&a), 5);
        assert!(c.ahead.is_empty());
    }

    #[test]
    fn ahead_of_lists_only_what_the_other_lacks() {
        let mut mine = VersionVector::default();
        mine.0.insert(n("a"), 5);
        mine.0.insert(n("b"), 2);
        let mut theirs = VersionVector::default();
        theirs.0.insert(n("a"), 3);
        theirs.0.insert(n("b"), 7);
        assert_eq!(mine.ahead_of(&theirs), vec![(n("a"), 3)]);
        assert!(!mine.covers(&theirs));
        assert_eq!(mine.ahead_of(&mine), vec![]);
    }

    #[test]
    fn digest_ignores_order() {
        let v = |s| Version {
            vclock: VectorClock::new(),
            hlc: HlcTimestamp(s),
            origin: n("a"),
            seq: s,
            deleted: false,
        };
        let mut d1 = StateDigest::default();
        d1.add("files", "x", &v(1));
        d1.add("files", "y", &v(2));
        let mut d2 = StateDigest::default();
        d2.add("files", "y", &v(2));
        d2.add("files", "x", &v(1));
        assert_eq!(d1, d2);
        assert_ne!(d1, StateDigest::default());
    }
}
