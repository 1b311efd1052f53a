//! The replication engine: every decision replication makes, as plain functions
//! with no I/O (the shape of openraft's engine and chitchat's `process_message`).
//! Each reads the replica's state through a [`View`] and returns a [`Plan`]: the
//! operations to carry out ([`Op`]) and the engine state to adopt once they are
//! durable. `meta/` carries a plan out in one SQLite transaction; `mem.rs` carries
//! it out in memory for the property tests and the 1,000-controller simulation, so
//! both run exactly this code.
//!
//! The decisions:
//! - [`plan_write`]: number a local write, give it a vector clock one dot past the
//!   row's current one and a fresh HLC timestamp;
//! - [`plan_apply`]: merge a peer's records and cleared ranges; hold records stamped
//!   too far ahead of our wall clock;
//! - [`plan_delta`]: what a peer at some version vector lacks, cut by bytes, with
//!   the ranges it fully describes;
//! - [`plan_purge`]: which tombstones and log entries every controller has seen;
//! - [`check_batch`]: what anything received must satisfy before any of it is
//!   applied.
//!
//! The rules and why they hold are in `docs/replication.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redcloud_common::replication::{Coverage, MAX_SEQ, Origin, Version, VersionVector, supersedes};
use redcloud_common::{Hlc, HlcTimestamp, NodeId, VectorClock};
use serde::{Deserialize, Serialize};

use crate::records::{Body, Record, Table};

/// A failure reading the replica's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replica state unreadable: {0}")]
pub struct ViewError(pub String);

pub type Result<T> = std::result::Result<T, ViewError>;

/// Read access to one replica's state, inside the transaction that will carry the
/// plan out.
pub trait View {
    /// The current version of `key` in `table`.
    fn version(&mut self, table: Table, key: &str) -> Result<Option<Version>>;
    /// The current record of `key` in `table`.
    fn record(&mut self, table: Table, key: &str) -> Result<Option<Record>>;
    /// Log entries of `origin` numbered above `after`, in ascending order, at most
    /// `limit` (retired ones included).
    fn log_after(&mut self, origin: Origin, after: u64, limit: usize) -> Result<Vec<LogEntry>>;
    /// Rows that collection may remove, with `hlc <= horizon`: tombstones of every
    /// table, and live name-deletion markers. At most `limit`.
    fn purge_candidates(
        &mut self,
        horizon: HlcTimestamp,
        limit: usize,
    ) -> Result<Vec<(Table, String, Version)>>;
    /// Retired log entries of `origin` numbered up to `upto`, ascending, at most
    /// `limit`.
    fn retired_upto(&mut self, origin: Origin, upto: u64, limit: usize) -> Result<Vec<LogEntry>>;
    /// Whether a live version of `owner/name` older than `(hlc, origin)` exists (a
    /// deletion marker that hides one must stay).
    fn hides_older_version(
        &mut self,
        owner: &str,
        name: &str,
        hlc: HlcTimestamp,
        origin: Origin,
    ) -> Result<bool>;
}

/// One entry of the write log: write `(origin, seq)` wrote row `target`; `retired`
/// once a newer version replaced it there (or it lost on arrival, or its row was
/// purged). A retired entry keeps its key, so a delta that clears the write can
/// send the key's current row with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub target: (Table, String),
    pub retired: bool,
}

/// One operation on the replica's state. A plan's operations run in order, in one
/// transaction, together with persisting the plan's coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace the row of `record.key` in its table.
    Put(Record),
    /// Remove a row outright (collection of a tombstone or deletion marker).
    Remove { table: Table, key: String },
    /// Append write `(origin, seq)` of row `target` to the log: it produced the
    /// row's current version (an entry already there is replaced), or (`retired`)
    /// it lost to a version held here, or a peer cleared it (an entry already
    /// there is kept).
    Log {
        origin: Origin,
        seq: u64,
        target: (Table, String),
        retired: bool,
    },
    /// Write `(origin, seq)` no longer is its row's current version (superseded or
    /// purged).
    Retire { origin: Origin, seq: u64 },
    /// Drop the retired log entry of write `(origin, seq)`: every member reflects
    /// it and what replaced it.
    Trim { origin: Origin, seq: u64 },
    /// The highest timestamp of anything purged: the clock restarts above it.
    HlcFloor(HlcTimestamp),
}

/// The engine's state for one replica, kept in memory beside the store and
/// replaced, after a plan is carried out, by the plan's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineState {
    /// The origin of this replica's writes: taken afresh at every start.
    pub me: Origin,
    /// The controller this replica is.
    pub node: NodeId,
    /// Every origin this controller has been (earlier lives included).
    pub mine: BTreeSet<Origin>,
    pub next_seq: u64,
    pub coverage: Coverage,
    /// Highest write number logged per origin (contiguous or not).
    pub max_seq: BTreeMap<Origin, u64>,
}

impl EngineState {
    /// The state of a replica starting a new life as `me`: `vector` is the
    /// persisted coverage, `logged` the highest write logged per origin, `ahead` the
    /// logged writes beyond the coverage (reflected, but past a gap).
    pub fn open(
        node: NodeId,
        me: Origin,
        mut mine: BTreeSet<Origin>,
        vector: VersionVector,
        logged: BTreeMap<Origin, u64>,
        ahead: impl IntoIterator<Item = (Origin, u64)>,
    ) -> EngineState {
        let mut coverage = Coverage::new(vector);
        for (o, s) in ahead {
            coverage.record(o, s);
        }
        mine.insert(me);
        EngineState {
            me,
            node,
            mine,
            next_seq: 1,
            coverage,
            max_seq: logged,
        }
    }

    pub fn vector(&self) -> &VersionVector {
        self.coverage.vector()
    }
}

/// One local change to a replicated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    pub body: Body,
    pub deleted: bool,
}

/// Per origin, a range of write numbers `(after, upto]` that a batch describes
/// completely: every write in it is either among the batch's records, or was
/// superseded (or purged) at the sender. A receiver covering `after` may cover
/// `upto`. This is how gaps left by collection travel: as cleared ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub origin: Origin,
    pub after: u64,
    pub upto: u64,
}

/// A write a range clears: superseded (or lost) at the sender, with the row it
/// wrote, so the receiver can clear it onwards with that row's current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleared {
    pub origin: Origin,
    pub seq: u64,
    pub table: Table,
    pub key: String,
}

/// Records and ranges, as one message carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub records: Vec<Record>,
    pub ranges: Vec<Range>,
    /// The superseded writes inside `ranges` whose log entries the sender keeps.
    #[serde(default)]
    pub cleared: Vec<Cleared>,
}

/// What a peer lacks, as far as fitted in the byte budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub batch: Batch,
    /// False if the delta was cut at the budget: ask again for the rest.
    pub complete: bool,
}

/// What collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub rows: usize,
    pub log_entries: usize,
}

/// What a plan does, and the state to adopt once it is carried out.
#[derive(Debug, Clone)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub state: EngineState,
    /// Records held back: stamped more than the allowed drift ahead of our clock.
    pub held: Vec<(Origin, u64, u64)>,
    pub purged: Purged,
}

impl Plan {
    /// Records written, or learned, that changed this replica (the news to pass
    /// on): the rows the plan puts.
    pub fn changed(&self) -> impl Iterator<Item = &Record> {
        self.ops.iter().filter_map(|op| match op {
            Op::Put(r) => Some(r),
            _ => None,
        })
    }

    /// Takes the changed records out of a plan that was carried out.
    pub fn into_changed(self) -> Vec<Record> {
        self.ops
            .into_iter()
            .filter_map(|op| match op {
                Op::Put(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn new(state: &EngineState) -> Plan {
        Plan {
            ops: Vec::new(),
            state: state.clone(),
            held: Vec::new(),
            purged: Purged::default(),
        }
    }
}

/// Reads through the versions a plan has already decided, so a batch touching one
/// key twice sees its own first write.
struct Overlay<'v, V: View> {
    view: &'v mut V,
    pending: HashMap<(Table, String), Option<Version>>,
}

impl<V: View> Overlay<'_, V> {
    fn version(&mut self, table: Table, key: &str) -> Result<Option<Version>> {
        if let Some(v) = self.pending.get(&(table, key.to_string())) {
            return Ok(v.clone());
        }
        self.view.version(table, key)
    }

    fn set(&mut self, table: Table, key: &str, v: Option<Version>) {
        self.pending.insert((table, key.to_string()), v);
    }
}

/// Plans local writes: each gets the next write number, a vector clock one dot
/// past the row's current one (entries of this controller's earlier lives dropped:
/// its new dot succeeds them) and a fresh HLC timestamp.
pub fn plan_write(
    state: &EngineState,
    view: &mut impl View,
    hlc: &Hlc,
    writes: Vec<Write>,
) -> Result<Plan> {
    let mut plan = Plan::new(state);
    let mut ov = Overlay {
        view,
        pending: HashMap::new(),
    };
    for w in writes {
        let st = &mut plan.state;
        let seq = st.next_seq;
        st.next_seq += 1;
        let table = w.body.table();
        let previous = ov.version(table, &w.key)?;
        let mut vclock = match &previous {
            Some(p) => {
                plan.ops.push(Op::Retire {
                    origin: p.origin,
                    seq: p.seq,
                });
                p.vclock.clone()
            }
            None => VectorClock::new(),
        };
        vclock.0.retain(|o, _| !st.mine.contains(o) || *o == st.me);
        vclock.dot(st.me, seq);
        let rec = Record {
            key: w.key,
            version: Version {
                vclock,
                hlc: hlc.now(),
                origin: st.me,
                seq,
                deleted: w.deleted,
            },
            body: w.body,
        };
        plan.ops.push(Op::Log {
            origin: st.me,
            seq,
            target: (table, rec.key.clone()),
            retired: false,
        });
        st.coverage.record(st.me, seq);
        st.max_seq.insert(st.me, seq);
        ov.set(table, &rec.key, Some(rec.version.clone()));
        plan.ops.push(Op::Put(rec));
    }
    Ok(plan)
}

/// Checks everything in a batch from a peer before any of it is applied: every
/// record (key, body, version), every range, and no claim about this replica's
/// own writes beyond those it has made. A batch that fails is refused whole.
pub fn check_batch(state: &EngineState, batch: &Batch) -> std::result::Result<(), String> {
    for r in &batch.records {
        r.check()?;
        if r.version.origin == state.me && r.version.seq >= state.next_seq {
            return Err(format!(
                "record {:?} claims write {} of this controller, which has made only {}",
                r.key,
                r.version.seq,
                state.next_seq - 1
            ));
        }
    }
    for c in &batch.cleared {
        if c.origin.0 == 0 || c.seq == 0 || c.seq > MAX_SEQ {
            return Err(format!(
                "cleared write {} of origin {} is malformed",
                c.seq, c.origin
            ));
        }
        c.table
            .check_key(&c.key)
            .map_err(|e| format!("cleared write {} of origin {}: {e}", c.seq, c.origin))?;
    }
    for g in &batch.ranges {
        if g.origin.0 == 0 || g.after >= g.upto || g.upto > MAX_SEQ {
            return Err(format!(
                "range ({}, {}] of origin {} is malformed",
                g.after, g.upto, g.origin
            ));
        }
        if g.origin == state.me && g.upto >= state.next_seq {
            return Err(format!(
                "range up to write {} of this controller, which has made only {}",
                g.upto,
                state.next_seq - 1
            ));
        }
    }
    Ok(())
}

/// Plans applying a peer's batch (checked by [`check_batch`]): records not yet
/// reflected are merged by the merge rule and logged; a record stamped more than
/// `max_drift_ms` ahead of `now_ms` (our wall clock) is held — neither applied nor
/// covered, so it comes again — together with every later write of its origin in
/// the batch; ranges then cover what they describe, up to the first held write.
pub fn plan_apply(
    state: &EngineState,
    view: &mut impl View,
    hlc: &Hlc,
    batch: Batch,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<Plan> {
    let mut plan = Plan::new(state);
    let mut ov = Overlay {
        view,
        pending: HashMap::new(),
    };
    let limit = now_ms.saturating_add(max_drift_ms);
    let mut held_from: BTreeMap<Origin, u64> = BTreeMap::new();
    let Batch {
        records,
        ranges,
        cleared,
    } = batch;
    for rec in records {
        let v = &rec.version;
        let (origin, seq) = (v.origin, v.seq);
        if plan.state.coverage.covers(origin, seq) {
            continue;
        }
        if v.hlc.millis() > limit || held_from.get(&origin).is_some_and(|h| seq > *h) {
            let h = held_from.entry(origin).or_insert(seq);
            *h = (*h).min(seq);
            plan.held.push((origin, seq, v.hlc.millis()));
            continue;
        }
        let table = rec.table();
        let current = ov.version(table, &rec.key)?;
        if current.as_ref().is_some_and(|c| c.same_write(v)) {
            // Held already (reflected before a restart lost the out-of-order note).
            plan.state.coverage.record(origin, seq);
            continue;
        }
        hlc.observe(v.hlc);
        let newer = current.as_ref().is_none_or(|cur| supersedes(v, cur));
        if let Some(cur) = current.as_ref().filter(|_| newer) {
            plan.ops.push(Op::Retire {
                origin: cur.origin,
                seq: cur.seq,
            });
        }
        plan.ops.push(Op::Log {
            origin,
            seq,
            target: (table, rec.key.clone()),
            retired: !newer,
        });
        if newer {
            ov.set(table, &rec.key, Some(v.clone()));
            plan.ops.push(Op::Put(rec));
        }
        plan.state.coverage.record(origin, seq);
        let m = plan.state.max_seq.entry(origin).or_insert(0);
        *m = (*m).max(seq);
    }
    for c in cleared {
        if plan.state.coverage.covers(c.origin, c.seq) {
            continue;
        }
        let m = plan.state.max_seq.entry(c.origin).or_insert(0);
        *m = (*m).max(c.seq);
        plan.ops.push(Op::Log {
            origin: c.origin,
            seq: c.seq,
            target: (c.table, c.key),
            retired: true,
        });
    }
    for g in &ranges {
        let upto = match held_from.get(&g.origin) {
            Some(h) => g.upto.min(h - 1),
            None => g.upto,
        };
        if upto > g.after {
            plan.state.coverage.cover_range(g.origin, g.after, upto);
        }
    }
    Ok(plan)
}

/// How many log entries a delta reads at once.
const PAGE: usize = 1024;

/// What a peer whose version vector is `theirs` lacks: for every origin we reflect
/// further, the current records written by the writes it has not seen (in write
/// order) and the range they describe, stopping once `budget` bytes are used (at
/// least one record is always sent). Then, while the budget lasts, writes we hold
/// beyond a gap of ours (no range can describe those; not sending them all is no
/// cut).
///
/// A cut delta is sound: a range ends where the records stopped, and a write a
/// range clears (superseded here) travels with its row's current version unless
/// the peer already reflects that one — so a peer that covers a write always holds,
/// or is being sent, what replaced it, even if this exchange never continues.
pub fn plan_delta(
    state: &EngineState,
    view: &mut impl View,
    theirs: &VersionVector,
    budget: usize,
) -> Result<Delta> {
    let mut d = Delta {
        complete: true,
        ..Delta::default()
    };
    let mut used = 0usize;
    let mut sent: BTreeSet<(Origin, u64)> = BTreeSet::new();
    // Ranges first: what we reflect contiguously beyond what the peer does.
    for (&o, &covered) in &state.vector().0 {
        let from = theirs.get(o);
        if covered <= from {
            continue;
        }
        let mut after = from;
        let mut cut_at: Option<u64> = None;
        'scan: loop {
            let entries = view.log_after(o, after, PAGE)?;
            if entries.is_empty() {
                break;
            }
            for e in entries {
                if e.seq > covered {
                    break 'scan;
                }
                // The row this write wrote, as it is now: the write itself, or what
                // replaced it (to send unless the peer reflects it already).
                let rec = view.record(e.target.0, &e.target.1)?;
                let dot = rec.as_ref().map(|r| (r.version.origin, r.version.seq));
                let own = dot == Some((o, e.seq));
                let cleared = (!own).then(|| Cleared {
                    origin: o,
                    seq: e.seq,
                    table: e.target.0,
                    key: e.target.1.clone(),
                });
                let send = match (rec, dot) {
                    (Some(r), Some(dot))
                        if !sent.contains(&dot) && (own || theirs.get(dot.0) < dot.1) =>
                    {
                        Some((r, dot))
                    }
                    _ => None, // sent already, reflected there, or purged
                };
                let size = send.as_ref().map_or(0, |(r, _)| r.approx_size() + 8)
                    + cleared.as_ref().map_or(0, |c| c.key.len() + 24);
                if used > 0 && used + size > budget {
                    cut_at = Some(e.seq - 1);
                    break 'scan;
                }
                after = e.seq;
                used += size;
                if let Some((r, dot)) = send {
                    sent.insert(dot);
                    d.batch.records.push(r);
                }
                if let Some(c) = cleared {
                    d.batch.cleared.push(c);
                }
            }
        }
        let upto = cut_at.unwrap_or(covered);
        if upto > from {
            d.batch.ranges.push(Range {
                origin: o,
                after: from,
                upto,
            });
            used += 24;
        }
        if cut_at.is_some() {
            d.complete = false;
            return Ok(d);
        }
    }
    // Then writes past a gap of ours, while they fit.
    for (&o, &logged) in &state.max_seq {
        let start = theirs.get(o).max(state.vector().get(o));
        if logged <= start {
            continue;
        }
        let mut after = start;
        loop {
            let entries = view.log_after(o, after, PAGE)?;
            if entries.is_empty() {
                break;
            }
            for e in entries {
                after = e.seq;
                if e.retired || sent.contains(&(o, e.seq)) {
                    continue;
                }
                let Some(rec) = current_of(view, o, &e)? else {
                    continue;
                };
                let size = rec.approx_size() + 8;
                if used + size > budget {
                    return Ok(d);
                }
                used += size;
                sent.insert((o, e.seq));
                d.batch.records.push(rec);
            }
        }
    }
    Ok(d)
}

/// The record log entry `e` of origin `o` produced, if it is still current.
fn current_of(view: &mut impl View, o: Origin, e: &LogEntry) -> Result<Option<Record>> {
    Ok(view
        .record(e.target.0, &e.target.1)?
        .filter(|r| r.version.origin == o && r.version.seq == e.seq))
}

/// The pointwise minimum of our vector and every member's last reported one: what
/// every controller reflects.
pub fn cluster_floor<'a>(
    mine: &VersionVector,
    reports: impl IntoIterator<Item = &'a VersionVector>,
) -> VersionVector {
    reports.into_iter().fold(mine.clone(), |f, r| f.meet(r))
}

/// Whether `report` comes from the reporting controller's current life: it
/// covers the first write (the origin record) of every life of that controller
/// known here (`lives`). A controller wiped and restarted with its old node id is,
/// until it reports again, represented by its earlier life's report, which
/// vouches for writes the new life never saw: a version purged on the strength
/// of it can leave the new life holding what that version replaced. Such a report
/// counts as none (docs/replication.md, "Deletes stay deleted across purges").
pub fn report_is_current(lives: &BTreeSet<Origin>, report: &VersionVector) -> bool {
    lives.iter().all(|o| report.get(*o) >= 1)
}

/// The most rows one collection pass removes.
pub const PURGE_LIMIT: usize = 10_000;

/// Plans one collection pass. `floor` is what every member reflects
/// ([`cluster_floor`]); `caught_up` says we hold every write each member had made
/// when it last reported; `horizon` is the newest timestamp a purged row may have
/// (our wall clock minus the grace).
///
/// Removed, once we are caught up (no older concurrent write can still be on its
/// way): tombstones whose write every member reflects (not a forgotten
/// controller's: that one is the record of the forgetting); name-deletion markers
/// every member reflects that hide no older live version here. And log entries of
/// superseded writes every member reflects.
pub fn plan_purge(
    state: &EngineState,
    view: &mut impl View,
    floor: &VersionVector,
    caught_up: bool,
    horizon: HlcTimestamp,
) -> Result<Plan> {
    let mut plan = Plan::new(state);
    let mut high = HlcTimestamp(0);
    for (table, key, v) in view.purge_candidates(horizon, PURGE_LIMIT)? {
        if floor.get(v.origin) < v.seq {
            continue; // some controller may not have seen it yet
        }
        if table == Table::ControllerNodes {
            // A forgotten controller's tombstone is the record that it was
            // forgotten: kept, so chunkservers still reporting it (or a stale peer
            // list) do not make it a member again. It goes when the controller
            // itself rejoins (its own newer record replaces it).
            continue;
        }
        if !caught_up {
            // A write concurrent with this version and older (it loses to it) may
            // still be on its way here: a member's report can arrive before its
            // writes do. With the version gone it would win here and lose
            // everywhere else, for good. A member that reflects this version made
            // every such write before its report, so once we hold everything each
            // member reported, none can still come (docs/replication.md).
            continue;
        }
        if !v.deleted {
            if table != Table::Deletions {
                continue;
            }
            let (owner, name) = key.split_once('\n').unwrap_or((&key, ""));
            if view.hides_older_version(owner, name, v.hlc, v.origin)? {
                continue;
            }
        }
        plan.ops.push(Op::Remove {
            table,
            key: key.clone(),
        });
        plan.ops.push(Op::Retire {
            origin: v.origin,
            seq: v.seq,
        });
        high = high.max(v.hlc);
        plan.purged.rows += 1;
    }
    // A retired entry goes once every member reflects its write and the version
    // that replaced it (or the row is purged): then no member holds the write
    // as current, and whoever is cleared it without its key still gets that
    // version from any member.
    let mut budget = PURGE_LIMIT;
    let removed: BTreeSet<(Table, String)> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Remove { table, key } => Some((*table, key.clone())),
            _ => None,
        })
        .collect();
    for (o, upto) in &floor.0 {
        if budget == 0 {
            break;
        }
        for e in view.retired_upto(*o, *upto, budget)? {
            budget -= 1;
            let gone = removed.contains(&e.target);
            let replaced_everywhere = gone
                || match view.version(e.target.0, &e.target.1)? {
                    None => true,
                    Some(v) => floor.get(v.origin) >= v.seq,
                };
            if replaced_everywhere {
                plan.ops.push(Op::Trim {
                    origin: *o,
                    seq: e.seq,
                });
                plan.purged.log_entries += 1;
            }
        }
    }
    if high.0 > 0 {
        plan.ops.push(Op::HlcFloor(high));
    }
    Ok(plan)
}
