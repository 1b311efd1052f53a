//! Vector clocks and the hybrid logical clock (HLC) that order replicated records.
//!
//! Laws (checked by the tests below; the merge rule built on them lives with the
//! replication code):
//! - [`VectorClock::merge`] is the pointwise maximum: commutative, associative,
//!   idempotent, and the result dominates-or-equals both inputs.
//! - [`VectorClock::compare`] is a partial order: `Before`/`After` are mirror images,
//!   `Equal` only for identical clocks, `Concurrent` when neither covers the other.
//! - An [`Hlc`] never issues a timestamp at or below any timestamp it issued or
//!   observed, so a node whose wall clock is behind still orders its writes after
//!   everything it has seen.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering as AtomicOrdering};

use crate::NodeId;

/// How two vector clocks relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// The left clock happened before the right one.
    Before,
    /// The left clock happened after the right one.
    After,
    Equal,
    Concurrent,
}

/// A vector clock: node id → number of updates from that node that it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VectorClock(pub BTreeMap<NodeId, u64>);

impl VectorClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more update by `node`.
    pub fn increment(&mut self, node: &NodeId) {
        *self.0.entry(node.clone()).or_insert(0) += 1;
    }

    pub fn get(&self, node: &NodeId) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Pointwise maximum.
    pub fn merge(&mut self, other: &VectorClock) {
        for (node, &n) in &other.0 {
            let e = self.0.entry(node.clone()).or_insert(0);
            *e = (*e).max(n);
        }
    }

    pub fn compare(&self, other: &VectorClock) -> Causality {
        let mut less = false;
        let mut greater = false;
        for node in self.0.keys().chain(other.0.keys()) {
            let (a, b) = (self.get(node), other.get(node));
            less |= a < b;
            greater |= a > b;
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Compact JSON, the form stored in SQLite.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// A hybrid logical clock timestamp: the high 48 bits are wall-clock milliseconds,
/// the low 16 bits a counter for events within one millisecond.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct HlcTimestamp(pub u64);

impl HlcTimestamp {
    pub fn from_parts(ms: u64, counter: u16) -> Self {
        HlcTimestamp((ms << 16) | u64::from(counter))
    }

    /// The wall-clock part, in milliseconds since the Unix epoch.
    pub fn millis(self) -> u64 {
        self.0 >> 16
    }
}

/// A node's hybrid logical clock.
///
/// `std::sync::Mutex` and not tokio's: the critical section is a few integer
/// operations and is never held across an `.await`.
#[derive(Debug)]
pub struct Hlc {
    last: Mutex<u64>,
    /// Added to the wall clock; lets tests and the fault run skew a node's clock.
    offset_ms: AtomicI64,
    /// A wall clock that moves only when told to (deterministic tests).
    manual: Option<AtomicU64>,
}

impl Default for Hlc {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Hlc {
    pub fn new(offset_ms: i64) -> Self {
        Hlc {
            last: Mutex::new(0),
            offset_ms: AtomicI64::new(offset_ms),
            manual: None,
        }
    }

    /// A clock whose wall time starts at 1,000,000 ms and moves only by
    /// [`Hlc::advance_manual`].
    pub fn manual() -> Self {
        Hlc {
            last: Mutex::new(0),
            offset_ms: AtomicI64::new(0),
            manual: Some(AtomicU64::new(1_000_000)),
        }
    }

    pub fn advance_manual(&self, ms: u64) {
        if let Some(m) = &self.manual {
            m.fetch_add(ms, AtomicOrdering::Relaxed);
        }
    }

    /// Skews this node's wall clock by `ms` from now on.
    pub fn set_offset_ms(&self, ms: i64) {
        self.offset_ms.store(ms, AtomicOrdering::Relaxed);
    }

    fn wall(&self) -> u64 {
        let base = match &self.manual {
            Some(m) => m.load(AtomicOrdering::Relaxed) as i64,
            None => crate::now_ms() as i64,
        };
        let ms = base + self.offset_ms.load(AtomicOrdering::Relaxed);
        HlcTimestamp::from_parts(ms.max(0) as u64, 0).0
    }

    /// A timestamp greater than every one issued or observed before.
    pub fn now(&self) -> HlcTimestamp {
        let wall = self.wall();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = wall.max(*last + 1);
        HlcTimestamp(*last)
    }

    /// Takes in a timestamp seen on a remote record, so later local timestamps exceed it.
    pub fn observe(&self, remote: HlcTimestamp) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = (*last).max(remote.0);
    }

    /// The highest timestamp issued or observed so far.
    pub fn peek(&self) -> HlcTimestamp {
        HlcTimestamp(*self.last.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn clock() -> impl Strategy<Value = VectorClock> {
        proptest::collection::btree_map(
            prop_oneof![Just(n("a")), Just(n("b")), Just(n("c"))],
            0u64..5,
            0..3,
        )
        .prop_map(VectorClock)
    }

    proptest! {
        #[test]
        fn merge_laws(a in clock(), b in clock(), c in clock()) {
            let mut ab = a.clone(); ab.merge(&b);
            let mut ba = b.clone(); ba.merge(&a);
            prop_assert_eq!(ab.compare(&ba), Causality::Equal);
            let mut ab_c = ab.clone(); ab_c.merge(&c);
            let mut bc = b.clone(); bc.merge(&c);
            let mut a_bc = a.clone(); a_bc.merge(&bc);
            prop_assert_eq!(ab_c.compare(&a_bc), Causality::Equal);
            let mut aa = a.clone(); aa.merge(&a);
            prop_assert_eq!(aa.compare(&a), Causality::Equal);
            prop_assert!(matches!(ab.compare(&a), Causality::After | Causality::Equal));
        }

        #[test]
        fn compare_is_antisymmetric(a in clock(), b in clock()) {
            let mirrored = match a.compare(&b) {
                Causality::Before => Causality::After,
                Causality::After => Causality::Before,
                x => x,
            };
            prop_assert_eq!(b.compare(&a), mirrored);
        }
    }

    #[test]
    fn increment_orders_updates() {
        let mut a = VectorClock::new();
        a.increment(&n("a"));
        let mut b = a.clone();
        b.increment(&n("b"));
        assert_eq!(a.compare(&b), Causality::Before);
        a.increment(&n("a"));
        assert_eq!(a.compare(&b), Causality::Concurrent);
        let json = b.to_json();
        assert_eq!(VectorClock::from_json(&json).unwrap(), b);
    }

    #[test]
    fn hlc_is_monotonic_and_passes_observed_time() {
        let behind = Hlc::new(-3_600_000);
        let t1 = behind.now();
        let t2 = behind.now();
        assert!(t2 > t1);
        let ahead = HlcTimestamp::from_parts(crate::now_ms() + 3_600_000, 7);
        behind.observe(ahead);
        assert!(behind.now() > ahead);
    }
}
