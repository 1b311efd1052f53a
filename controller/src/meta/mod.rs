//! The metadata store: one SQLite database per controller (WAL,
//! `synchronous=NORMAL`), the only code that speaks SQL. The replication engine
//! (`replication/engine.rs`) decides; [`Store`] carries its plans out, each in one
//! transaction with the coverage it implies, and keeps the engine state in memory
//! beside the connection.
//!
//! - `schema.rs`: tables, migrations, the database lock;
//! - `rows.rs`: records as rows, the engine's view, executing operations;
//! - `files.rs`: file versions, names, deletions;
//! - `locations.rs`: chunk lists and where chunks are;
//! - `nodes.rs`: controllers, chunkservers, origins, membership;
//! - `log.rs`: coverage, the clock floor, members' reports;
//! - `users.rs`: accounts, who holds a name, login sessions.
//!
//! SQLite calls block: they run on the blocking pool through [`Db::call`], on one
//! connection behind a `std` mutex (held only inside the blocking closure, never
//! across an `.await`).

pub mod files;
pub mod locations;
pub mod log;
pub mod nodes;
pub mod rows;
pub mod schema;
pub mod users;

use std::path::Path;
use std::sync::{Arc, Mutex};

use redcloud_common::replication::{Origin, StateDigest, VersionVector};
use redcloud_common::{Hlc, HlcTimestamp, NodeId};
use rusqlite::Connection;

use crate::error::{ControllerError, Result};
use crate::records::{Body, Record};
use crate::replication::engine::{self, Batch, Delta, EngineState, Plan, Purged, ViewError, Write};
use rows::SqlView;

pub use files::*;
pub use locations::*;
pub use nodes::*;

impl From<ViewError> for ControllerError {
    fn from(e: ViewError) -> Self {
        ControllerError::Internal(e.to_string())
    }
}

/// What applying a peer's batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Records that changed this replica (the news to pass on).
    pub changed: Vec<Record>,
    /// Records held back, stamped too far ahead of our clock: (origin, seq, ms).
    pub held: Vec<(Origin, u64, u64)>,
}

/// The connection and the engine state of this life, guarded together so a row and
/// the bookkeeping about it never disagree.
pub struct Store {
    conn: Connection,
    engine: EngineState,
    hlc: Arc<Hlc>,
    /// Writes wait until the clock is settled (a peer's clock sampled, or the wait
    /// at start ran out), so nothing is stamped by a clock nobody checked.
    settled: bool,
    /// `MAX_CLOCK_DRIFT` in ms.
    max_drift_ms: u64,
    /// Refusing writes (being drained before it is stopped for good or wiped).
    draining: bool,
    /// The exclusive lock on the database, held as long as this store exists.
    _lock: std::fs::File,
}

/// A handle to the metadata database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
}

impl Db {
    /// Opens (creating and migrating as needed) the database at `path` for `node`,
    /// starting a new life: a fresh origin for this process's writes. `max_drift_ms`
    /// bounds the timestamps the clock is moved to.
    pub fn open(path: &Path, node: NodeId, hlc: Arc<Hlc>, max_drift_ms: u64) -> Result<Self> {
        Self::open_waiting(path, node, hlc, max_drift_ms, schema::LOCK_WAIT)
    }

    /// Like [`Db::open`], waiting at most `wait` for another holder of the database.
    pub fn open_waiting(
        path: &Path,
        node: NodeId,
        hlc: Arc<Hlc>,
        max_drift_ms: u64,
        wait: std::time::Duration,
    ) -> Result<Self> {
        let lock = schema::lock_database(path, wait)?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        let p = log::load(&conn)?;
        let mine = nodes::origins_of(&conn, &node)?;
        // Rows stamped beyond our clock plus the drift came from a clock that ran
        // ahead: the clock is not moved to them.
        let cap = HlcTimestamp::from_parts(hlc.wall_ms().saturating_add(max_drift_ms), u16::MAX);
        hlc.observe(rows::max_hlc(&conn, cap)?.max(p.hlc_floor.min(cap)));
        let mut me = Origin::random();
        while mine.contains(&me) {
            me = Origin::random();
        }
        let engine = EngineState::open(node, me, mine, p.vector, p.logged, p.ahead);
        Ok(Db {
            store: Arc::new(Mutex::new(Store {
                conn,
                engine,
                hlc,
                settled: false,
                max_drift_ms,
                draining: false,
                _lock: lock,
            })),
        })
    }

    /// Runs `f` on the store, on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s)
        })
        .await
        .map_err(|e| ControllerError::Internal(format!("database task failed: {e}")))?
    }

    /// Runs `f` on the store on this thread (tests and start-up only).
    pub fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut s = self.store.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }
}

impl Store {
    /// This controller.
    pub fn node(&self) -> &NodeId {
        &self.engine.node
    }

    /// The origin of this life's writes.
    pub fn origin(&self) -> Origin {
        self.engine.me
    }

    /// This replica's version vector: per origin, the writes its state reflects.
    pub fn vector(&self) -> VersionVector {
        self.engine.vector().clone()
    }

    /// The engine state of this life.
    pub fn engine(&self) -> &EngineState {
        &self.engine
    }

    /// The connection, for queries (every change goes through the engine).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Lets writes through, and records this life's origin (its first write).
    /// Returns the record written.
    pub fn settle(&mut self) -> Result<Vec<Record>> {
        if self.settled {
            return Ok(Vec::new());
        }
        self.settled = true;
        let me = self.engine.me;
        let node = self.engine.node.clone();
        self.write(vec![Write {
            key: me.to_string(),
            body: Body::Origin {
                node_id: node,
                started_at_ms: self.hlc.wall_ms(),
            },
            deleted: false,
        }])
    }

    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// Refuses (or again takes) writes: a controller being drained before it is
    /// stopped for good, or its data directory wiped, takes no write its peers
    /// might not have received when it goes.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Carries out the plan `make` returns, in one transaction with the coverage it
    /// implies; adopts its engine state once committed.
    fn run(
        &mut self,
        make: impl FnOnce(&EngineState, &mut SqlView<'_>, &Hlc) -> engine::Result<Plan>,
    ) -> Result<Plan> {
        let Store {
            conn, engine, hlc, ..
        } = self;
        let tx = conn.transaction()?;
        let plan = {
            let mut view = SqlView { conn: &tx };
            make(engine, &mut view, hlc)?
        };
        for op in &plan.ops {
            rows::execute(&tx, op)?;
        }
        log::persist_vector(&tx, engine.vector(), plan.state.vector())?;
        tx.commit()?;
        *engine = plan.state.clone();
        Ok(plan)
    }

    /// Makes local writes (numbered, clocked, logged). Returns the records written.
    pub fn write(&mut self, writes: Vec<Write>) -> Result<Vec<Record>> {
        if !self.settled {
            return Err(ControllerError::Unavailable(
                "this controller is starting: its clock has not been checked against its peers yet; retry in a moment".into(),
            ));
        }
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        if self.draining {
            return Err(ControllerError::Unavailable(
                "this controller is being drained (it is about to stop): write through another controller".into(),
            ));
        }
        // A clock that stamped writes far ahead (started alone with a wrong clock)
        // cannot go back: everything it stamps now would be held by the others.
        let wall = self.hlc.wall_ms();
        let stamped = self.hlc.peek().millis();
        if stamped > wall.saturating_add(self.max_drift_ms) {
            return Err(ControllerError::Unavailable(format!(
                "this controller's clock ran {:.0} s ahead of the cluster's time before it could check it against \
                 its peers; its writes would be held back by every other controller. Fix its clock and restart it \
                 (its earlier writes are kept); meanwhile write through another controller",
                (stamped - wall) as f64 / 1000.0
            )));
        }
        // Every key and body passes the very check a peer applies to them: a record
        // this controller accepted but its peers refuse would be refused whole in
        // every batch that carries it, and replication with them would stall.
        for w in &writes {
            let table = w.body.table();
            table
                .check_key(&w.key)
                .and_then(|_| w.body.check())
                .map_err(|e| {
                    ControllerError::InvalidArgument(format!(
                        "{} record {:?}: {e}",
                        table.name(),
                        w.key
                    ))
                })?;
        }
        let changed = self
            .run(|st, view, hlc| engine::plan_write(st, view, hlc, writes))?
            .into_changed();
        debug_assert!(changed.iter().all(|r| r.check().is_ok()));
        Ok(changed)
    }

    /// Checks a peer's batch, then applies it (nothing of a batch that fails the
    /// checks is applied).
    pub fn apply(&mut self, batch: Batch, max_drift_ms: u64) -> Result<Applied> {
        engine::check_batch(&self.engine, &batch).map_err(ControllerError::InvalidArgument)?;
        let now = self.hlc.wall_ms();
        let mut plan =
            self.run(|st, view, hlc| engine::plan_apply(st, view, hlc, batch, now, max_drift_ms))?;
        let held = std::mem::take(&mut plan.held);
        Ok(Applied {
            changed: plan.into_changed(),
            held,
        })
    }

    /// What a peer whose vector is `theirs` lacks, at most about `budget` bytes.
    pub fn delta(&mut self, theirs: &VersionVector, budget: usize) -> Result<Delta> {
        let mut view = SqlView { conn: &self.conn };
        Ok(engine::plan_delta(&self.engine, &mut view, theirs, budget)?)
    }

    /// One collection pass (see [`engine::plan_purge`]).
    pub fn purge(
        &mut self,
        floor: &VersionVector,
        caught_up: bool,
        horizon: HlcTimestamp,
    ) -> Result<Purged> {
        Ok(self
            .run(|st, view, _| engine::plan_purge(st, view, floor, caught_up, horizon))?
            .purged)
    }

    /// An order-independent digest of every replicated row's current version,
    /// tombstones left out: a tombstone and a purged (or never seen) row are the
    /// same state, and controllers purge at different moments. A live row held on
    /// one side only, or in different versions, changes the digest.
    pub fn digest(&self) -> Result<StateDigest> {
        let mut d = StateDigest::default();
        rows::for_each_version(&self.conn, |t, k, v| {
            if !v.deleted {
                d.add(t.name(), k, v)
            }
        })?;
        Ok(d)
    }

    /// The clock this store stamps with.
    pub fn hlc(&self) -> &Arc<Hlc> {
        &self.hlc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::FileBody;

    /// A fresh database in a temporary directory, its clock settled (the
    /// directory goes when the first value is dropped).
    fn settled_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("meta.db"),
            NodeId::new("ctl-a").unwrap(),
            Arc::new(Hlc::default()),
            60_000,
        )
        .unwrap();
        db.store.lock().unwrap().settle().unwrap();
        (dir, db)
    }

    fn file(name: String) -> Write {
        Write {
            key: redcloud_common::FileId::generate().to_string(),
            body: Body::File(FileBody {
                owner: "alice".into(),
                name,
                size: 1,
                sha256: "0".repeat(64),
                chunk_size: 1 << 20,
                chunk_count: 1,
                public: false,
                created_at_ms: 1,
            }),
            deleted: false,
        }
    }

    /// A write this controller accepted but its peers' boundary check refuses would
    /// be refused whole in every batch carrying it: replication with every peer
    /// would stall (found by the fault run: a 1,027-byte name). The local write
    /// applies the same check.
    #[test]
    fn a_write_peers_would_refuse_is_refused_here() {
        let (_dir, db) = settled_db();
        let mut s = db.store.lock().unwrap();
        let long = "n".repeat(crate::records::MAX_NAME_BYTES + 1);
        let err = s.write(vec![file(long)]).unwrap_err();
        assert!(
            matches!(&err, ControllerError::InvalidArgument(m) if m.contains("longer than")),
            "{err:?}"
        );
        let before = s.vector();
        let ok = s
            .write(vec![file("n".repeat(crate::records::MAX_NAME_BYTES))])
            .unwrap();
        assert_eq!(ok.len(), 1);
        assert!(ok.iter().all(|r| r.check().is_ok()));
        assert_ne!(s.vector(), before);
    }

    /// Found by the 300 s fault runs: a controller wiped with a new id was
    /// "forgotten" by asking the wiped controller itself, which did not know its
    /// old id (not found), so the old id stayed a member everywhere and every
    /// collection waited for it for good. A controller that knows an id only as a
    /// member (a peer, or reported by the chunkservers) now records the forgetting
    /// from nothing; asking again is harmless; an id it does not know at all is
    /// still not found.
    #[test]
    fn a_member_known_without_its_record_can_be_forgotten() {
        let (_dir, db) = settled_db();
        let mut s = db.store.lock().unwrap();
        let gone = NodeId::new("ctl-gone").unwrap();
        let (f, w) = forget(&mut s, &gone, None).unwrap();
        assert!(!f.controller && w.is_empty(), "unknown: nothing recorded");
        let addrs = Some((String::new(), "10.0.0.9:8080".to_string()));
        let (f, w) = forget(&mut s, &gone, addrs.clone()).unwrap();
        assert!(f.controller);
        assert_eq!(w.len(), 1);
        assert!(w[0].version.deleted && w[0].check().is_ok());
        assert!(forgotten_controllers(s.conn()).unwrap().contains(&gone));
        let (f, w) = forget(&mut s, &gone, addrs).unwrap();
        assert!(f.controller && w.is_empty(), "already forgotten");
    }

    #[test]
    fn long_expired_sessions_are_tombstoned_and_live_ones_kept() {
        let (_dir, db) = settled_db();
        let mut s = db.store.lock().unwrap();
        let now = s.hlc().wall_ms();
        let old = "0".repeat(32);
        let fresh = "1".repeat(32);
        let just = "2".repeat(32);
        users::create_session(&mut s, &old, "u1", "a".repeat(64), now - 2 * 3_600_000).unwrap();
        users::create_session(&mut s, &fresh, "u1", "b".repeat(64), now + 3_600_000).unwrap();
        // Expired a minute ago: within the hour kept for clocks a little apart.
        users::create_session(&mut s, &just, "u1", "c".repeat(64), now - 60_000).unwrap();
        let written = users::expire_sessions(&mut s, now, 1000).unwrap();
        assert_eq!(written.len(), 1);
        assert!(written[0].version.deleted);
        assert_eq!(written[0].key, old);
        assert!(users::session(s.conn(), &old).unwrap().is_none());
        assert!(users::session(s.conn(), &fresh).unwrap().is_some());
        assert!(users::session(s.conn(), &just).unwrap().is_some());
        assert!(
            users::expire_sessions(&mut s, now, 1000)
                .unwrap()
                .is_empty()
        );
    }
}
