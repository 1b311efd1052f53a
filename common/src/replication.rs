//! The replication core's pure types: write identity ([`Origin`], `seq`), record
//! versions and the merge rule, version vectors and coverage of write numbers, and
//! the state digest. No I/O; the controller's replication engine
//! (`controller/src/replication/engine.rs`) plans with them. The algorithm and its
//! invariants are in `docs/replication.md`.
//!
//! **Write identity.** Every write is made by one *origin* and numbered by that
//! origin's counter (`seq`, 1, 2, 3, ...). An origin is a random 64-bit id a
//! controller takes every time it opens its database, so a write's id `(origin,
//! seq)` never collides with a write of an earlier life of the same node: not after
//! a restart, a wiped data directory (same node id or a new one), or a restored
//! snapshot.
//!
//! **Merge rule** ([`supersedes`]): if one version's vector clock dominates, it
//! wins; if they are concurrent, the higher `(hlc, origin, seq)` wins. A record's
//! vector clock holds *dots*: per origin, the `seq` of that origin's latest write
//! of the record, so a later write by any origin carries a higher entry than any
//! earlier one, also when the record's history was purged in between. Because an
//! HLC timestamp is above every timestamp its node had seen, a version that
//! dominates another also has a higher timestamp; the rule therefore agrees with
//! the total order on `(hlc, origin, seq)`, which makes merging commutative,
//! associative and idempotent (property-tested below and, on the engine, in
//! `controller/src/replication/engine.rs`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::{Causality, HlcTimestamp, VectorClock};

/// The highest write number accepted (2^48): a counter beyond it is a corrupt or
/// hostile message, never a real write (a controller would need 9,000 years at a
/// million writes a second to reach it).
pub const MAX_SEQ: u64 = 1 << 48;

/// The most entries a record's vector clock may hold on the wire.
pub const MAX_VCLOCK_ENTRIES: usize = 4096;

/// The earliest HLC wall-clock part accepted (2001-09-09, 10^12 ms): an older
/// timestamp is a broken clock or a corrupt message.
pub const MIN_HLC_MS: u64 = 1_000_000_000_000;

/// The latest HLC wall-clock part that fits (year 6429: the timestamp must stay
/// below 2^63 to be stored as a signed 64-bit integer).
pub const MAX_HLC_MS: u64 = (1 << 47) - 1;

/// One life of a controller's database: the origin of the writes it makes.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Origin(pub u64);

impl Origin {
    /// A fresh random origin (never 0).
    pub fn random() -> Origin {
        loop {
            let v: u64 = rand::random();
            if v != 0 {
                return Origin(v);
            }
        }
    }

    /// The value stored in SQLite (an `INTEGER` is signed: the bits are kept).
    pub fn to_sql(self) -> i64 {
        self.0 as i64
    }

    pub fn from_sql(v: i64) -> Origin {
        Origin(v as u64)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "o{:08x}", self.0 >> 32)
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16)
            .ok()
            .filter(|v| *v != 0 && s.len() == 16)
            .map(Origin)
            .ok_or_else(|| format!("a write origin is 16 hex digits, got {s:?}"))
    }
}

/// Replication metadata of one version of a record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub vclock: VectorClock,
    pub hlc: HlcTimestamp,
    /// The origin that made this version.
    pub origin: Origin,
    /// The origin's write counter at this version.
    pub seq: u64,
    /// A tombstone: the record is deleted, and the deletion replicates.
    pub deleted: bool,
}

impl Version {
    /// The total-order key that breaks ties between concurrent versions.
    fn tiebreak(&self) -> (HlcTimestamp, Origin, u64) {
        (self.hlc, self.origin, self.seq)
    }

    /// Whether this is the same version as `other` (same write).
    pub fn same_write(&self, other: &Version) -> bool {
        self.origin == other.origin && self.seq == other.seq
    }

    /// Checks what any version must satisfy, whoever sent it: a write number in
    /// range, a vector clock whose entry for the origin is this write (a dot), every
    /// entry in range, and a timestamp that fits.
    pub fn check(&self) -> Result<(), String> {
        if self.origin.0 == 0 {
            return Err("origin 0".into());
        }
        if self.seq == 0 || self.seq > MAX_SEQ {
            return Err(format!("write number {} out of range", self.seq));
        }
        let ms = self.hlc.millis();
        if !(MIN_HLC_MS..=MAX_HLC_MS).contains(&ms) {
            return Err(format!("timestamp {ms} ms is outside the valid range"));
        }
        if self.vclock.0.len() > MAX_VCLOCK_ENTRIES {
            return Err(format!("vector clock of {} entries", self.vclock.0.len()));
        }
        if self.vclock.get(self.origin) != self.seq {
            return Err(format!(
                "vector clock entry {} for the origin is not the write number {}",
                self.vclock.get(self.origin),
                self.seq
            ));
        }
        if let Some((o, s)) = self
            .vclock
            .0
            .iter()
            .find(|(o, s)| o.0 == 0 || **s == 0 || **s > MAX_SEQ)
        {
            return Err(format!("vector clock entry {o}: {s} out of range"));
        }
        Ok(())
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

/// For each origin, the highest write number up to which a replica reflects every
/// write of that origin (holds it, or a version that superseded it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionVector(pub BTreeMap<Origin, u64>);

impl VersionVector {
    pub fn get(&self, origin: Origin) -> u64 {
        self.0.get(&origin).copied().unwrap_or(0)
    }

    /// Pointwise maximum.
    pub fn merge(&mut self, other: &VersionVector) {
        for (o, &s) in &other.0 {
            let e = self.0.entry(*o).or_insert(0);
            *e = (*e).max(s);
        }
    }

    /// Pointwise minimum over every origin either side knows (a missing entry is 0).
    pub fn meet(&self, other: &VersionVector) -> VersionVector {
        let mut out = VersionVector::default();
        for o in self.0.keys().chain(other.0.keys()) {
            let m = self.get(*o).min(other.get(*o));
            if m > 0 {
                out.0.insert(*o, m);
            }
        }
        out
    }

    /// Whether `self` covers everything `other` covers.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(o, s)| self.get(*o) >= *s)
    }

    /// A 128-bit digest of the vector: equal vectors, equal hashes. An idle
    /// anti-entropy round sends only this.
    pub fn hash(&self) -> [u8; 16] {
        let mut h = crate::Sha256Hex::new();
        for (o, s) in &self.0 {
            if *s > 0 {
                h.update(&o.0.to_le_bytes());
                h.update(&s.to_le_bytes());
            }
        }
        let hex = h.finish();
        let mut out = [0u8; 16];
        let _ = hex::decode_to_slice(&hex[..32], &mut out);
        out
    }

    /// Checks a vector received from a peer: every counter in range.
    pub fn check(&self) -> Result<(), String> {
        match self.0.iter().find(|(o, s)| o.0 == 0 || **s > MAX_SEQ) {
            Some((o, s)) => Err(format!("version vector entry {o}: {s} out of range")),
            None => Ok(()),
        }
    }
}

/// Tracks which writes a replica reflects: the contiguous [`VersionVector`] plus
/// writes seen out of order (beyond a gap), which fold in when the gap fills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    vv: VersionVector,
    ahead: BTreeMap<Origin, BTreeSet<u64>>,
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
    pub fn covers(&self, origin: Origin, seq: u64) -> bool {
        seq <= self.vv.get(origin) || self.ahead.get(&origin).is_some_and(|s| s.contains(&seq))
    }

    /// Writes reflected beyond the contiguous part, per origin.
    pub fn ahead(&self) -> &BTreeMap<Origin, BTreeSet<u64>> {
        &self.ahead
    }

    /// Notes that write `(origin, seq)` is reflected.
    pub fn record(&mut self, origin: Origin, seq: u64) {
        let cur = self.vv.get(origin);
        if seq <= cur {
            return;
        }
        if seq == cur + 1 {
            self.vv.0.insert(origin, seq);
            self.fold(origin);
        } else {
            self.ahead.entry(origin).or_default().insert(seq);
        }
    }

    /// Notes that every write of `origin` numbered `(after, upto]` is reflected (a
    /// peer described that whole range: the writes it did not send were superseded
    /// or purged there). Only applies when the range starts inside what is already
    /// covered, so no gap is skipped. Returns whether coverage moved.
    pub fn cover_range(&mut self, origin: Origin, after: u64, upto: u64) -> bool {
        let cur = self.vv.get(origin);
        if after > cur || upto <= cur {
            return false;
        }
        self.vv.0.insert(origin, upto);
        if let Some(set) = self.ahead.get_mut(&origin) {
            set.retain(|s| *s > upto);
        }
        self.fold(origin);
        true
    }

    /// Folds out-of-order writes just above the contiguous part into it.
    fn fold(&mut self, origin: Origin) {
        let Some(set) = self.ahead.get_mut(&origin) else {
            return;
        };
        let mut next = self.vv.get(origin);
        while set.remove(&(next + 1)) {
            next += 1;
        }
        set.retain(|s| *s > next);
        if set.is_empty() {
            self.ahead.remove(&origin);
        }
        if next > 0 {
            self.vv.0.insert(origin, next);
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
        h.update(&v.origin.0.to_le_bytes());
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
    use proptest::prelude::*;

    fn o(n: u64) -> Origin {
        Origin(n)
    }

    fn version(origin: u64, seq: u64, hlc: u64, clock: &[(u64, u64)]) -> Version {
        let mut vclock = VectorClock::new();
        for &(k, s) in clock {
            vclock.dot(o(k), s);
        }
        vclock.dot(o(origin), seq);
        Version {
            vclock,
            hlc: HlcTimestamp::from_parts(MIN_HLC_MS + hlc, 0),
            origin: o(origin),
            seq,
            deleted: false,
        }
    }

    fn any_version() -> impl Strategy<Value = Version> {
        (
            1u64..4,
            1u64..6,
            0u64..6,
            proptest::collection::vec((1u64..4, 1u64..6), 0..3),
        )
            .prop_map(|(origin, seq, hlc, clock)| version(origin, seq, hlc, &clock))
    }

    proptest! {
        /// The merge laws hold for any versions whose clocks and timestamps agree
        /// on causality (dominance implies a higher timestamp), which is what the
        /// engine guarantees; the engine's own property tests check it over
        /// histories.
        #[test]
        fn merge_is_commutative_associative_idempotent(
            a in any_version(), b in any_version(), c in any_version()
        ) {
            let consistent = |x: &Version, y: &Version| match x.vclock.compare(&y.vclock) {
                Causality::After => x.tiebreak() > y.tiebreak(),
                Causality::Before => x.tiebreak() < y.tiebreak(),
                _ => true,
            };
            prop_assume!(consistent(&a, &b) && consistent(&b, &c) && consistent(&a, &c));
            prop_assume!(!a.same_write(&b) || a == b);
            prop_assume!(!b.same_write(&c) || b == c);
            prop_assume!(!a.same_write(&c) || a == c);
            prop_assert_eq!(merge(&a, &a), &a);
            prop_assert_eq!(merge(&a, &b), merge(&b, &a));
            prop_assert_eq!(merge(merge(&a, &b), &c), merge(&a, merge(&b, &c)));
        }

        #[test]
        fn cover_range_and_record_agree(seqs in proptest::collection::vec(1u64..40, 0..40), upto in 0u64..50) {
            let mut a = Coverage::default();
            let mut b = Coverage::default();
            for s in &seqs { a.record(o(1), *s); }
            for s in 1..=upto { b.record(o(1), s); }
            for s in &seqs { b.record(o(1), *s); }
            a.cover_range(o(1), 0, upto);
            prop_assert_eq!(a.vector(), b.vector());
            for s in 1..60 { prop_assert_eq!(a.covers(o(1), s), b.covers(o(1), s)); }
        }
    }

    #[test]
    fn dominance_beats_timestamps_and_ties_are_deterministic() {
        let old = version(1, 1, 100, &[]);
        let newer = version(2, 1, 50, &[(1, 1)]);
        assert!(
            supersedes(&newer, &old),
            "a dominating clock wins even with a lower timestamp"
        );
        let conc = version(3, 1, 100, &[]);
        assert!(
            supersedes(&conc, &old),
            "equal timestamps: the higher origin wins"
        );
        assert!(!supersedes(&old, &conc));
        assert!(!supersedes(&old, &old));
    }

    #[test]
    fn a_later_write_by_the_same_origin_dominates_also_after_a_purge() {
        // Dots, not counters per record: origin 1 wrote the record at seq 3 (that
        // version was purged somewhere), and later writes it afresh at seq 9 with no
        // history: the new clock {1: 9} is not dominated by the old {1: 3, 2: 1}.
        let old = version(1, 3, 10, &[(2, 1)]);
        let fresh = version(1, 9, 20, &[]);
        assert_eq!(fresh.vclock.compare(&old.vclock), Causality::Concurrent);
        assert!(supersedes(&fresh, &old));
    }

    #[test]
    fn coverage_folds_in_out_of_order_writes_and_ranges() {
        let mut c = Coverage::default();
        let a = o(1);
        c.record(a, 2);
        assert_eq!(c.vector().get(a), 0);
        c.record(a, 1);
        assert_eq!(c.vector().get(a), 2);
        c.record(a, 5);
        c.record(a, 9);
        assert!(!c.cover_range(a, 3, 6), "a range past a gap is not taken");
        assert!(c.cover_range(a, 2, 7));
        assert_eq!(c.vector().get(a), 7);
        assert!(c.covers(a, 9) && !c.covers(a, 8));
        c.record(a, 8);
        assert_eq!(c.vector().get(a), 9);
        assert!(c.ahead.is_empty());
    }

    #[test]
    fn versions_and_vectors_are_checked() {
        assert!(version(1, 1, 0, &[]).check().is_ok());
        let mut v = version(1, 1, 0, &[]);
        v.seq = 2;
        assert!(
            v.check().is_err(),
            "the origin's entry must be the write itself"
        );
        let mut v = version(1, 1, 0, &[]);
        v.hlc = HlcTimestamp(0);
        assert!(v.check().is_err());
        let mut vv = VersionVector::default();
        vv.0.insert(o(1), 1 << 62);
        assert!(vv.check().is_err());
        assert_eq!("00000000000000ff".parse::<Origin>().unwrap(), Origin(255));
        assert!("ff".parse::<Origin>().is_err());
    }

    #[test]
    fn vector_hash_ignores_zero_entries() {
        let mut a = VersionVector::default();
        a.0.insert(o(1), 3);
        let mut b = a.clone();
        b.0.insert(o(2), 0);
        assert_eq!(a.hash(), b.hash());
        b.0.insert(o(2), 1);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn digest_ignores_order() {
        let mut d1 = StateDigest::default();
        d1.add("files", "x", &version(1, 1, 1, &[]));
        d1.add("files", "y", &version(1, 2, 2, &[]));
        let mut d2 = StateDigest::default();
        d2.add("files", "y", &version(1, 2, 2, &[]));
        d2.add("files", "x", &version(1, 1, 1, &[]));
        assert_eq!(d1, d2);
        assert_ne!(d1, StateDigest::default());
    }
}
