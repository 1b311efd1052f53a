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

use crate::replication::Origin;

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

/// A record's vector clock of *dots*: write origin → the write number of that
/// origin's latest write of the record. (A dot, not a count of the origin's writes
/// of this record: a later write by an origin always carries a higher entry, also
/// when the record's earlier history was purged in between.)
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VectorClock(pub BTreeMap<Origin, u64>);

impl VectorClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `origin`'s write number `seq` wrote this record.
    pub fn dot(&mut self, origin: Origin, seq: u64) {
        let e = self.0.entry(origin).or_insert(0);
        *e = (*e).max(seq);
    }

    pub fn get(&self, origin: Origin) -> u64 {
        self.0.get(&origin).copied().unwrap_or(0)
    }

    /// Pointwise maximum.
    pub fn merge(&mut self, other: &VectorClock) {
        for (o, &n) in &other.0 {
            let e = self.0.entry(*o).or_insert(0);
            *e = (*e).max(n);
        }
    }

    pub fn compare(&self, other: &VectorClock) -> Causality {
        let mut less = false;
        let mut greater = false;
        for o in self.0.keys().chain(other.0.keys()) {
            let (a, b) = (self.get(*o), other.get(*o));
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

    /// The form stored in SQLite: `origin:seq` pairs in hex and decimal, comma
    /// separated (readable with `sqlite3`, and compact).
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.0.len() * 24);
        for (i, (o, n)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("{o}:{n}"));
        }
        s
    }

    pub fn from_text(s: &str) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (o, n) = part
                .split_once(':')
                .ok_or_else(|| format!("vector clock entry {part:?} lacks ':'"))?;
            let n: u64 = n
                .parse()
                .map_err(|_| format!("vector clock entry {part:?}: bad number"))?;
            out.insert(o.parse::<Origin>()?, n);
        }
        Ok(VectorClock(out))
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

/// A node's hybrid logical clock, over a *disciplined* wall clock.
///
/// The physical part of a timestamp is this node's wall clock while it is within
/// `margin` of the cluster's time, and the cluster's time when it is not: the lower median of this node's wall clock and
/// every peer's, as last sampled from their messages and carried forward by this
/// node's monotonic clock. So a clock stepped an hour or ten years ahead while the
/// node runs (or a node in a cluster whose majority agrees on a different time)
/// stamps its writes with the cluster's time, and a step is noticed at once, not at
/// the next message: the samples are extrapolated with the monotonic clock, which
/// a step of the wall clock does not move. With no sample (a node that has not
/// heard from any peer since it started) the node's own wall clock is used.
///
/// `std::sync::Mutex` and not tokio's: every critical section is a few integer
/// operations and is never held across an `.await`.
#[derive(Debug)]
pub struct Hlc {
    last: Mutex<u64>,
    /// Added to the wall clock; lets tests and the fault run skew a node's clock.
    offset_ms: AtomicI64,
    /// A wall clock that moves only when told to (deterministic tests).
    manual: Option<AtomicU64>,
    /// Where the monotonic clock started (real clocks).
    started: std::time::Instant,
    /// Per peer: (its wall clock, our monotonic ms when we heard it).
    peers: Mutex<BTreeMap<u64, (u64, u64)>>,
    /// How far from the cluster's time the physical clock may be (half the
    /// allowed drift between nodes).
    margin_ms: AtomicU64,
}

impl Default for Hlc {
    fn default() -> Self {
        Self::new(0)
    }
}

/// How long a peer's clock sample counts (carried forward by the monotonic clock,
/// whose drift over a day, at the 100 ppm of a poor oscillator, is under 9 s).
pub const CLOCK_SAMPLE_TTL_MS: u64 = 86_400_000;

/// The most peer clock samples kept (one per peer; the stalest goes first).
pub const MAX_CLOCK_SAMPLES: usize = 1024;

/// The margin used until [`Hlc::set_margin_ms`] is called: half of the default
/// `MAX_CLOCK_DRIFT` (60 s).
pub const DEFAULT_CLOCK_MARGIN_MS: u64 = 30_000;

impl Hlc {
    pub fn new(offset_ms: i64) -> Self {
        Hlc {
            last: Mutex::new(0),
            offset_ms: AtomicI64::new(offset_ms),
            manual: None,
            started: std::time::Instant::now(),
            peers: Mutex::new(BTreeMap::new()),
            margin_ms: AtomicU64::new(DEFAULT_CLOCK_MARGIN_MS),
        }
    }

    /// A clock whose wall time starts at 2023-11-14 (1.7e12 ms) and moves only by
    /// [`Hlc::advance_manual`]; its monotonic clock moves with it.
    pub fn manual() -> Self {
        Hlc {
            manual: Some(AtomicU64::new(1_700_000_000_000)),
            ..Self::new(0)
        }
    }

    pub fn advance_manual(&self, ms: u64) {
        if let Some(m) = &self.manual {
            m.fetch_add(ms, AtomicOrdering::Relaxed);
        }
    }

    /// Skews this node's wall clock by `ms` from now on (a step of the clock).
    pub fn set_offset_ms(&self, ms: i64) {
        self.offset_ms.store(ms, AtomicOrdering::Relaxed);
    }

    /// The test offset currently applied to the wall clock.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(AtomicOrdering::Relaxed)
    }

    /// Sets how far the physical clock may stray from the cluster's time.
    pub fn set_margin_ms(&self, ms: u64) {
        self.margin_ms.store(ms, AtomicOrdering::Relaxed);
    }

    /// This node's own wall clock in milliseconds (with its test offset).
    pub fn raw_wall_ms(&self) -> u64 {
        let base = match &self.manual {
            Some(m) => m.load(AtomicOrdering::Relaxed) as i64,
            None => crate::now_ms() as i64,
        };
        base.saturating_add(self.offset_ms.load(AtomicOrdering::Relaxed))
            .max(0) as u64
    }

    /// Milliseconds of a clock that only moves forward and that stepping the wall
    /// clock does not move.
    fn mono_ms(&self) -> u64 {
        match &self.manual {
            Some(m) => m.load(AtomicOrdering::Relaxed),
            None => self.started.elapsed().as_millis() as u64,
        }
    }

    /// Takes in peer `peer`'s (disciplined) wall clock, read from its answer to a
    /// request of ours that took `rtt` there and back: the clock is taken as of half
    /// the round trip before now, and a sample whose round trip exceeds half the
    /// margin is dropped (too imprecise). Only answers count: a request can sit in a
    /// socket's queue for seconds (a peer still starting, or frozen), so the clock
    /// it carries may be old by any amount.
    pub fn note_answer_clock(&self, peer: u64, peer_wall_ms: u64, rtt: std::time::Duration) {
        let rtt_ms = rtt.as_millis() as u64;
        if rtt_ms > self.margin_ms.load(AtomicOrdering::Relaxed) / 2 {
            return;
        }
        self.note_peer_clock(peer, peer_wall_ms.saturating_add(rtt_ms / 2));
    }

    /// Takes in peer `peer`'s (disciplined) wall clock as of now (tests; see
    /// [`Hlc::note_answer_clock`]).
    pub fn note_peer_clock(&self, peer: u64, peer_wall_ms: u64) {
        let mono = self.mono_ms();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_CLOCK_SAMPLES && !peers.contains_key(&peer) {
            // Bounded: the stalest sample makes room.
            if let Some(oldest) = peers.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                peers.remove(&oldest);
            }
        }
        peers.insert(peer, (peer_wall_ms, mono));
    }

    /// The cluster's time as this node sees it: the lower median of its own wall
    /// clock and every fresh peer sample carried forward to now.
    pub fn cluster_ms(&self) -> u64 {
        let own = self.raw_wall_ms();
        let mono = self.mono_ms();
        let mut times = vec![own];
        {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            peers.retain(|_, (_, at)| mono.saturating_sub(*at) <= CLOCK_SAMPLE_TTL_MS);
            times.extend(
                peers
                    .values()
                    .map(|(w, at)| w.saturating_add(mono.saturating_sub(*at))),
            );
        }
        times.sort_unstable();
        times[(times.len() - 1) / 2]
    }

    /// Every fresh peer sample, as (peer key, how far that peer's clock is ahead of
    /// this node's own wall clock in ms, ms since it was taken).
    pub fn peer_offsets(&self) -> Vec<(u64, i64, u64)> {
        let own = self.raw_wall_ms() as i64;
        let mono = self.mono_ms();
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, (w, at))| {
                let age = mono.saturating_sub(*at);
                (*k, w.saturating_add(age) as i64 - own, age)
            })
            .collect()
    }

    /// How far this node's own wall clock is ahead of the cluster's time (negative:
    /// behind).
    pub fn skew_ms(&self) -> i64 {
        self.raw_wall_ms() as i64 - self.cluster_ms() as i64
    }

    /// Whether any peer's clock has been sampled (within the sample lifetime).
    pub fn has_peer_samples(&self) -> bool {
        let mono = self.mono_ms();
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|(_, at)| mono.saturating_sub(*at) <= CLOCK_SAMPLE_TTL_MS)
    }

    /// The disciplined wall clock (ms): this node's wall clock kept within the
    /// margin of the cluster's time. Timestamps, garbage-collection horizons and the
    /// clock-drift bound on received records are all measured on it.
    pub fn wall_ms(&self) -> u64 {
        let own = self.raw_wall_ms();
        let cluster = self.cluster_ms();
        let margin = self.margin_ms.load(AtomicOrdering::Relaxed);
        if own.abs_diff(cluster) <= margin {
            own
        } else {
            // Off by more than the margin: the cluster's time itself (not its edge,
            // or clocks disciplined by clocks disciplined to an edge would creep).
            cluster
        }
    }

    fn wall(&self) -> u64 {
        HlcTimestamp::from_parts(self.wall_ms(), 0).0
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

    fn n(s: &str) -> Origin {
        Origin(match s {
            "a" => 1,
            "b" => 2,
            _ => 3,
        })
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
        a.dot(n("a"), 1);
        let mut b = a.clone();
        b.dot(n("b"), 1);
        assert_eq!(a.compare(&b), Causality::Before);
        a.dot(n("a"), 2);
        assert_eq!(a.compare(&b), Causality::Concurrent);
        let text = b.to_text();
        assert_eq!(VectorClock::from_text(&text).unwrap(), b);
        assert_eq!(VectorClock::from_text("").unwrap(), VectorClock::new());
        assert!(VectorClock::from_text("zz:1").is_err());
    }

    #[test]
    fn clock_samples_are_bounded() {
        let h = Hlc::manual();
        for p in 0..(MAX_CLOCK_SAMPLES as u64 + 50) {
            h.note_peer_clock(p, h.raw_wall_ms());
            h.advance_manual(1);
        }
        let kept: Vec<u64> = h.peer_offsets().iter().map(|(k, _, _)| *k).collect();
        assert_eq!(kept.len(), MAX_CLOCK_SAMPLES);
        assert!(!kept.contains(&0), "the stalest went first");
        assert!(kept.contains(&(MAX_CLOCK_SAMPLES as u64 + 49)));
    }

    #[test]
    fn a_stepped_clock_keeps_the_cluster_time() {
        let h = Hlc::manual();
        h.set_margin_ms(30_000);
        let base = h.raw_wall_ms();
        // Two peers agree with us.
        h.note_peer_clock(1, base);
        h.note_peer_clock(2, base);
        h.advance_manual(1_000);
        assert_eq!(h.wall_ms(), base + 1_000);
        // Our wall clock steps ten years ahead: the samples, carried forward by the
        // monotonic clock, keep timestamps at the peers' time.
        h.set_offset_ms(10 * 365 * 86_400_000);
        assert!(h.skew_ms() > 300 * 86_400_000);
        assert_eq!(h.wall_ms(), base + 1_000);
        let t = h.now();
        assert_eq!(t.millis(), base + 1_000);
        // Stepped back: our own clock again.
        h.set_offset_ms(0);
        h.advance_manual(1_000);
        assert_eq!(h.wall_ms(), base + 2_000);
        // One peer far behind does not drag us (lower median of three).
        h.note_peer_clock(2, base - 3_600_000);
        assert_eq!(h.wall_ms(), base + 2_000);
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
