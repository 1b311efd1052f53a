//! An in-memory replica: the engine's [`View`] and the execution of its [`Op`]s
//! over `BTreeMap`s instead of SQLite. The engine's property tests and the
//! 1,000-controller simulation drive [`MemReplica`], so they run the production
//! engine, not a model of it; `meta/` is the same contract over SQLite.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use redcloud_common::replication::{Origin, StateDigest, Version, VersionVector};
use redcloud_common::{Hlc, HlcTimestamp, NodeId};

use super::engine::{
    self, Batch, Delta, EngineState, LogEntry, Op, Plan, Result, View, ViewError, Write,
};
use crate::records::{Body, Record, Table};

/// What a replica keeps durably: rows, the write log, the persisted coverage and
/// the clock floor. A restart keeps it; a wipe replaces it with an empty one.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    pub rows: BTreeMap<(Table, String), Record>,
    /// `(origin, seq)` → the row it wrote, and whether it was retired since.
    pub log: BTreeMap<(Origin, u64), ((Table, String), bool)>,
    pub vector: VersionVector,
    pub hlc_floor: HlcTimestamp,
    /// Every origin this replica has been.
    pub origins: BTreeSet<Origin>,
}

impl View for MemStore {
    fn version(&mut self, table: Table, key: &str) -> Result<Option<Version>> {
        Ok(self
            .rows
            .get(&(table, key.to_string()))
            .map(|r| r.version.clone()))
    }

    fn record(&mut self, table: Table, key: &str) -> Result<Option<Record>> {
        Ok(self.rows.get(&(table, key.to_string())).cloned())
    }

    fn log_after(&mut self, origin: Origin, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        Ok(self
            .log
            .range((origin, after.saturating_add(1))..=(origin, u64::MAX))
            .map(|((_, seq), (t, retired))| LogEntry {
                seq: *seq,
                target: t.clone(),
                retired: *retired,
            })
            .take(limit)
            .collect())
    }

    fn purge_candidates(
        &mut self,
        horizon: HlcTimestamp,
        limit: usize,
    ) -> Result<Vec<(Table, String, Version)>> {
        Ok(self
            .rows
            .iter()
            .filter(|(_, r)| {
                r.version.hlc <= horizon && (r.version.deleted || r.table() == Table::Deletions)
            })
            .take(limit)
            .map(|((t, k), r)| (*t, k.clone(), r.version.clone()))
            .collect())
    }

    fn retired_upto(&mut self, origin: Origin, upto: u64, limit: usize) -> Result<Vec<LogEntry>> {
        Ok(self
            .log
            .range((origin, 0)..=(origin, upto))
            .filter(|(_, (_, retired))| *retired)
            .map(|((_, seq), (t, _))| LogEntry {
                seq: *seq,
                target: t.clone(),
                retired: true,
            })
            .take(limit)
            .collect())
    }

    fn hides_older_version(
        &mut self,
        owner: &str,
        name: &str,
        hlc: HlcTimestamp,
        origin: Origin,
    ) -> Result<bool> {
        Ok(self.rows.values().any(|r| match &r.body {
            Body::File(f) => {
                !r.version.deleted
                    && f.owner == owner
                    && f.name == name
                    && (r.version.hlc, r.version.origin) < (hlc, origin)
            }
            _ => false,
        }))
    }
}

impl MemStore {
    /// Carries out a plan's operations and persists its coverage.
    pub fn execute(&mut self, plan: &Plan) {
        for op in &plan.ops {
            match op {
                Op::Put(r) => {
                    self.rows.insert((r.table(), r.key.clone()), r.clone());
                }
                Op::Remove { table, key } => {
                    self.rows.remove(&(*table, key.clone()));
                }
                Op::Log {
                    origin,
                    seq,
                    target,
                    retired,
                } => {
                    if *retired {
                        self.log
                            .entry((*origin, *seq))
                            .or_insert((target.clone(), true));
                    } else {
                        self.log.insert((*origin, *seq), (target.clone(), false));
                    }
                }
                Op::Retire { origin, seq } => {
                    if let Some(e) = self.log.get_mut(&(*origin, *seq)) {
                        e.1 = true;
                    }
                }
                Op::Trim { origin, seq } => {
                    if self.log.get(&(*origin, *seq)).is_some_and(|(_, r)| *r) {
                        self.log.remove(&(*origin, *seq));
                    }
                }
                Op::HlcFloor(t) => self.hlc_floor = self.hlc_floor.max(*t),
            }
        }
        self.vector = plan.state.vector().clone();
    }

    /// The order-independent digest of the live rows (as `meta` computes it).
    pub fn digest(&self) -> StateDigest {
        let mut d = StateDigest::default();
        for ((t, k), r) in &self.rows {
            if !r.version.deleted {
                d.add(t.name(), k, &r.version);
            }
        }
        d
    }

    /// The live rows, for comparing replicas.
    pub fn live(&self) -> BTreeMap<(Table, String), Version> {
        self.rows
            .iter()
            .filter(|(_, r)| !r.version.deleted)
            .map(|(k, r)| (k.clone(), r.version.clone()))
            .collect()
    }
}

/// A replica: its durable store, the engine state of its current life, and its
/// clock.
pub struct MemReplica {
    pub store: MemStore,
    pub state: EngineState,
    pub hlc: Arc<Hlc>,
}

impl MemReplica {
    /// A replica of controller `node` starting a new life on `store`.
    pub fn open(node: NodeId, store: MemStore, hlc: Arc<Hlc>) -> MemReplica {
        let mut logged: BTreeMap<Origin, u64> = BTreeMap::new();
        for (o, s) in store.log.keys() {
            let e = logged.entry(*o).or_insert(0);
            *e = (*e).max(*s);
        }
        let ahead: Vec<(Origin, u64)> = store
            .log
            .keys()
            .filter(|(o, s)| *s > store.vector.get(*o))
            .copied()
            .collect();
        let mut me = Origin::random();
        while store.origins.contains(&me) {
            me = Origin::random();
        }
        let max_hlc = store
            .rows
            .values()
            .map(|r| r.version.hlc)
            .max()
            .unwrap_or_default()
            .max(store.hlc_floor);
        hlc.observe(max_hlc);
        let state = EngineState::open(
            node,
            me,
            store.origins.clone(),
            store.vector.clone(),
            logged,
            ahead,
        );
        let mut store = store;
        store.origins.insert(me);
        MemReplica { store, state, hlc }
    }

    fn run(&mut self, plan: Result<Plan>) -> Result<Plan> {
        let plan = plan?;
        self.store.execute(&plan);
        self.state = plan.state.clone();
        Ok(plan)
    }

    pub fn write(&mut self, writes: Vec<Write>) -> Result<Plan> {
        let p = engine::plan_write(&self.state, &mut self.store, &self.hlc, writes);
        self.run(p)
    }

    /// Checks and applies a batch; a batch that fails the checks changes nothing.
    pub fn apply(&mut self, batch: Batch, max_drift_ms: u64) -> Result<Plan> {
        engine::check_batch(&self.state, &batch).map_err(ViewError)?;
        let now = self.hlc.wall_ms();
        let p = engine::plan_apply(
            &self.state,
            &mut self.store,
            &self.hlc,
            batch,
            now,
            max_drift_ms,
        );
        self.run(p)
    }

    pub fn delta(&mut self, theirs: &VersionVector, budget: usize) -> Result<Delta> {
        engine::plan_delta(&self.state, &mut self.store, theirs, budget)
    }

    pub fn purge(
        &mut self,
        floor: &VersionVector,
        caught_up: bool,
        horizon: HlcTimestamp,
    ) -> Result<Plan> {
        let p = engine::plan_purge(&self.state, &mut self.store, floor, caught_up, horizon);
        self.run(p)
    }

    pub fn vector(&self) -> &VersionVector {
        self.state.vector()
    }
}
