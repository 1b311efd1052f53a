//! A deterministic, seeded discrete-event simulation of many controllers in one
//! process. Every controller is a [`MemReplica`]: the production replication
//! engine (`engine.rs`) over memory, so what moves is decided by exactly the code a
//! controller runs. What is simulated is the network (per-message delay and loss)
//! and the two replication workers, modelled on `gossip.rs` and `anti_entropy.rs`:
//!
//! - **push**: a write, or records a replica learned (`plan.changed`), are pushed
//!   after a small processing delay to `fanout` peers (`Peers::push_targets`: the
//!   ring successor, skipping peers whose last message failed, and `fanout - 1`
//!   random others), never back to the peer they came from; a batch over
//!   `EAGER_LIMIT` records marks those peers for a sync instead. A push whose
//!   request or answer is lost fails at the sender after `timeout_ms`; the sender
//!   then marks the peer failing and for a sync.
//! - **gossip tick** (every `gossip_interval_ms`, per node phase): peers marked for
//!   a sync are synced one after another (the lower id starts at once, the higher
//!   one after the patience of two intervals), each with a full anti-entropy
//!   exchange; a failed one marks the peer again.
//! - **anti-entropy** (every `anti_entropy_interval_ms` plus up to 20% jitter,
//!   after the previous exchange ended): one exchange with a random peer.
//! - **exchange**: `Summary` (the vector's hash, and the vector unless this node's
//!   last exchange, with any peer, found both equal at this hash) → `SummaryReply`
//!   (`Same`, or `Differs` with the peer's vector and, given ours, the delta we
//!   lack) → we apply it and push back the delta the peer lacks (`Push` →
//!   `PushAck`); rounds repeat while a delta was cut.
//!
//! Bytes are the postcard encodings of the real messages ([`Push`], [`PushAck`],
//! [`Summary`], [`SummaryReply`]), plus a stated fixed HTTP overhead per request
//! (request and response headers), reported apart. Clocks are `Hlc::manual()`
//! advanced with simulated time (lazily, when a node acts), and every answer's
//! clock is sampled (`note_peer_clock`), as controllers sample answers.
//!
//! Not modelled: TCP/IP framing and connection set-up, CPU and disk time (a
//! replica applies a batch the instant it arrives, then forwards after
//! `processing_us`), the gossip worker's coalescing of queued batches, membership
//! and discovery traffic (every controller knows every other from the start),
//! chunkserver heartbeats, tombstone collection, clock skew.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redcloud_common::replication::Origin;
use redcloud_common::{ChunkId, Hlc, NodeId};
use redcloud_controller::records::{self, Body, Record};
use redcloud_controller::replication::engine::{self, Batch, Write};
use redcloud_controller::replication::mem::{MemReplica, MemStore};
use redcloud_controller::replication::{
    DELTA_BUDGET, Push, PushAck, Summary, SummaryReply, clock_key, encode,
};
use serde_json::{Value, json};

/// `MAX_CLOCK_DRIFT` (default 60 s): records stamped further ahead are held.
const MAX_DRIFT_MS: u64 = 60_000;
/// Half the drift: how far a clock may stray from the cluster's time.
const CLOCK_MARGIN_MS: u64 = 30_000;
/// `gossip.rs`: batches bigger than this are not pushed; peers are marked for sync.
const EAGER_LIMIT: usize = 256;
/// `anti_entropy.rs`: most rounds of one exchange.
const MAX_ROUNDS: usize = 256;

/// What one simulation run does.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// `GOSSIP_FANOUT`.
    pub fanout: usize,
    /// `GOSSIP_INTERVAL`.
    pub gossip_interval_ms: u64,
    /// `ANTI_ENTROPY_INTERVAL` (jittered by up to +20%, as the worker does).
    pub anti_entropy_interval_ms: u64,
    /// Probability that one message (a request, or an answer) is lost.
    pub loss: f64,
    /// One-way delay of a message: uniform in `[delay_min_us, delay_max_us]`...
    pub delay_min_us: u64,
    pub delay_max_us: u64,
    /// ...plus `spike_us` with probability `spike_prob`.
    pub spike_prob: f64,
    pub spike_us: u64,
    /// From learning records to pushing them on.
    pub processing_us: u64,
    /// When the sender of a lost request (or of a request whose answer was lost)
    /// gives up on it, after sending.
    pub timeout_ms: u64,
    /// Bytes of HTTP headers per request/response pair (counted per request sent).
    pub http_overhead: u64,
    /// Updates whose propagation is timed, one at a time on an idle cluster.
    pub updates: usize,
    /// An update not everywhere after this long counts as unreached.
    pub update_cap_ms: u64,
    /// Quiet time between one update reaching every node and the next write.
    pub update_gap_ms: u64,
    /// Idle time after the cluster starts, before anything is measured.
    pub warmup_ms: u64,
    /// Length of the idle (anti-entropy only) bandwidth window.
    pub idle_window_ms: u64,
    /// Writes per second, cluster-wide (Poisson), in the steady window.
    pub write_rate: f64,
    /// Writes run this long before the steady window starts counting.
    pub steady_warmup_ms: u64,
    pub steady_window_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 1000,
            seed: 1,
            fanout: 3,
            gossip_interval_ms: 1_000,
            anti_entropy_interval_ms: 30_000,
            loss: 0.0,
            delay_min_us: 1_000,
            delay_max_us: 20_000,
            spike_prob: 0.01,
            spike_us: 100_000,
            processing_us: 200,
            timeout_ms: 2_000,
            http_overhead: 150,
            updates: 20,
            update_cap_ms: 900_000,
            update_gap_ms: 5_000,
            warmup_ms: 40_000,
            idle_window_ms: 120_000,
            write_rate: 1.0,
            steady_warmup_ms: 30_000,
            steady_window_ms: 120_000,
        }
    }
}

impl SimConfig {
    /// The configuration as JSON (for the report).
    pub fn to_json(&self) -> Value {
        json!({
            "nodes": self.nodes,
            "seed": self.seed,
            "gossip_fanout": self.fanout,
            "gossip_interval_ms": self.gossip_interval_ms,
            "anti_entropy_interval_ms": self.anti_entropy_interval_ms,
            "anti_entropy_jitter": "uniform 0..=20% of the interval, after each exchange",
            "loss_per_message": self.loss,
            "delay": format!(
                "uniform {}-{} ms, plus {} ms with probability {}",
                self.delay_min_us as f64 / 1000.0,
                self.delay_max_us as f64 / 1000.0,
                self.spike_us as f64 / 1000.0,
                self.spike_prob
            ),
            "processing_delay_ms": self.processing_us as f64 / 1000.0,
            "lost_message_timeout_ms": self.timeout_ms,
            "http_overhead_bytes_per_request": self.http_overhead,
            "delta_budget_bytes": DELTA_BUDGET,
            "updates": self.updates,
            "write_rate_per_s": self.write_rate,
            "idle_window_s": self.idle_window_ms as f64 / 1000.0,
            "steady_window_s": self.steady_window_ms as f64 / 1000.0,
        })
    }
}

/// The message kinds whose bytes are counted.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Push gossip: `Push` to a random peer.
    Push = 0,
    PushAck = 1,
    Summary = 2,
    SummaryReply = 3,
    /// Anti-entropy's push-back of what the peer lacks: a `Push`.
    AePush = 4,
    AePushAck = 5,
}

const KIND_NAMES: [&str; 6] = [
    "gossip_push",
    "gossip_push_ack",
    "summary",
    "summary_reply",
    "anti_entropy_push",
    "anti_entropy_push_ack",
];

/// Traffic counted since the last reset.
#[derive(Debug, Clone, Default)]
struct Traffic {
    msgs: [u64; 6],
    bytes: [u64; 6],
    requests: u64,
    lost: u64,
    exchanges: u64,
    exchanges_same: u64,
    exchanges_failed: u64,
    summaries_with_vector: u64,
    pushes_failed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The anti-entropy worker's periodic exchange.
    AntiEntropy,
    /// The gossip tick's sync with a peer a push failed to.
    Sync,
}

/// How a node learned a tracked record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Push,
    AntiEntropy,
}

struct Exchange {
    a: usize,
    b: usize,
    purpose: Purpose,
    send_vector: bool,
    rounds: usize,
    /// Our vector's hash as this round started.
    hash: [u8; 16],
    /// When this leg's request was sent (its timeout runs from here).
    sent_us: u64,
    their_complete: bool,
    our_complete: bool,
    held: usize,
}

enum Ev {
    /// `node` pushes `records` it wrote or learned (not to `exclude`).
    Forward {
        node: usize,
        records: Vec<Record>,
        exclude: Option<usize>,
    },
    Push {
        to: usize,
        from: usize,
        batch: Rc<Batch>,
        sent_us: u64,
    },
    PushAck {
        to: usize,
        from: usize,
        ack: PushAck,
    },
    PushFailed {
        node: usize,
        peer: usize,
    },
    Summary {
        x: u64,
        summary: Summary,
    },
    Reply {
        x: u64,
        reply: SummaryReply,
    },
    PushBack {
        x: u64,
        batch: Batch,
    },
    PushBackAck {
        x: u64,
        ack: PushAck,
    },
    ExchangeFailed {
        x: u64,
    },
    GossipTick {
        node: usize,
    },
    AntiEntropy {
        node: usize,
    },
    ClusterWrite,
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    /// Reversed: the heap pops the earliest event (ties in scheduling order).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Node {
    id: NodeId,
    http: String,
    clock_key: u64,
    rep: MemReplica,
    /// Simulated ms this node's clock has been advanced to.
    clock_ms: u64,
    /// Peers a sync is wanted with, and since when (µs).
    needs_sync: BTreeMap<usize, u64>,
    syncing: bool,
    sync_queue: VecDeque<usize>,
    tick_scheduled: bool,
    tick_phase_us: u64,
    /// The vector hash at which this node's last exchange (with any peer) found
    /// both sides equal (`Peers::note_same`).
    last_same: Option<[u8; 16]>,
    /// Peers whose last message failed (`Peers::mark_failed`, cleared by `mark_ok`).
    failing: HashSet<usize>,
}

/// One timed update.
struct Track {
    written_us: u64,
    reached: usize,
    by_push: usize,
    at: [Option<u64>; 3],
}

/// Fractions of the nodes an update's propagation is timed to, in 1/10,000.
const THRESHOLDS: [(u64, &str); 3] = [(5_000, "50%"), (9_900, "99%"), (9_999, "99.99%")];

/// One simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    nodes: Vec<Node>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    now: u64,
    events: u64,
    exchanges: HashMap<u64, Exchange>,
    next_x: u64,
    traffic: Traffic,
    tracks: Vec<Track>,
    tracked: HashMap<(Origin, u64), usize>,
    need: [usize; 3],
    writes_on: bool,
    writes: u64,
    refused: u64,
    chunkserver: NodeId,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl Sim {
    /// A cluster of `cfg.nodes` controllers, each having written its controller
    /// record, every replica holding every record (seeded directly, as a cluster
    /// that has run a while would), no message in flight.
    pub fn new(cfg: SimConfig) -> Sim {
        assert!(cfg.nodes >= 2, "a simulation needs at least 2 controllers");
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let n = cfg.nodes;
        let mut origins = HashSet::new();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let id = NodeId::new(format!("ctl-{i:04}-1700000000000")).expect("valid node id");
            let http = format!("10.0.{}.{}:8081", i / 250, i % 250 + 2);
            let hlc = Hlc::manual();
            hlc.set_margin_ms(CLOCK_MARGIN_MS);
            let mut rep = MemReplica::open(id.clone(), MemStore::default(), Arc::new(hlc));
            // `MemReplica::open` draws its origin from the thread's RNG: replace it
            // with one from the seed (no write has been made yet), so runs repeat.
            let me = loop {
                let v: u64 = rng.random();
                if v != 0 && origins.insert(v) {
                    break Origin(v);
                }
            };
            rep.state.me = me;
            rep.state.mine = [me].into_iter().collect();
            rep.store.origins = [me].into_iter().collect();
            let tick_phase_us = rng.random_range(0..cfg.gossip_interval_ms * 1000);
            nodes.push(Node {
                clock_key: clock_key(&id),
                id,
                http,
                rep,
                clock_ms: 0,
                needs_sync: BTreeMap::new(),
                syncing: false,
                sync_queue: VecDeque::new(),
                tick_scheduled: false,
                tick_phase_us,
                last_same: None,
                failing: HashSet::new(),
            });
        }
        // Every controller writes its record; every replica then takes in all of
        // them (the state a started cluster converges to).
        let mut all = Vec::with_capacity(n);
        for node in &mut nodes {
            let addr = node.http.trim_end_matches(":8081").to_string();
            let plan = node
                .rep
                .write(vec![Write {
                    key: node.id.to_string(),
                    body: Body::Controller {
                        grpc_addr: format!("{addr}:9090"),
                        http_addr: node.http.clone(),
                    },
                    deleted: false,
                }])
                .expect("in-memory write");
            all.extend(plan.into_changed());
        }
        let batch = Batch {
            records: all,
            ranges: Vec::new(),
            cleared: Vec::new(),
        };
        for node in &mut nodes {
            node.rep
                .apply(batch.clone(), MAX_DRIFT_MS)
                .expect("bootstrap batch applies");
        }
        let need = THRESHOLDS.map(|(f, _)| (n as u64 * f).div_ceil(10_000) as usize);
        let mut sim = Sim {
            cfg,
            rng,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            events: 0,
            exchanges: HashMap::new(),
            next_x: 0,
            traffic: Traffic::default(),
            tracks: Vec::new(),
            tracked: HashMap::new(),
            need,
            writes_on: false,
            writes: 0,
            refused: 0,
            chunkserver: NodeId::new("cs-0001-1700000000000").expect("valid node id"),
        };
        assert!(sim.converged(), "bootstrap left replicas apart");
        // Anti-entropy workers already running, at random phases.
        let ae_max = sim.ae_interval_us() + sim.ae_interval_us() / 5;
        for i in 0..n {
            let at = sim.rng.random_range(0..ae_max);
            sim.schedule(at, Ev::AntiEntropy { node: i });
        }
        sim
    }

    fn ae_interval_us(&self) -> u64 {
        self.cfg.anti_entropy_interval_ms * 1000
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// Advances node `i`'s clock to the simulated time (every clock moves together;
    /// each is caught up when its node acts).
    fn touch(&mut self, i: usize) {
        let ms = self.now / 1000;
        let n = &mut self.nodes[i];
        if ms > n.clock_ms {
            n.rep.hlc.advance_manual(ms - n.clock_ms);
            n.clock_ms = ms;
        }
    }

    fn wall_ms(&mut self, i: usize) -> u64 {
        self.touch(i);
        self.nodes[i].rep.hlc.wall_ms()
    }

    /// `MemReplica::apply` at `node`: the records that changed it and how many
    /// were held back, or `None` if the batch was refused. A batch of records all
    /// reflected already (most pushes: each node gets every update about `fanout`
    /// times) takes a shortcut with the same outcome: `apply` would check it and
    /// plan nothing (`plan_apply` skips covered records), but first clone the
    /// engine state (vectors of one entry per controller) twice.
    fn apply_at(&mut self, node: usize, batch: &Batch) -> Option<(Vec<Record>, usize)> {
        self.touch(node);
        let rep = &mut self.nodes[node].rep;
        let nothing_new = batch.ranges.is_empty()
            && batch.cleared.is_empty()
            && batch
                .records
                .iter()
                .all(|r| rep.state.coverage.covers(r.version.origin, r.version.seq));
        let outcome = if nothing_new {
            engine::check_batch(&rep.state, batch)
                .ok()
                .map(|()| (Vec::new(), 0))
        } else {
            rep.apply(batch.clone(), MAX_DRIFT_MS).ok().map(|p| {
                let held = p.held.len();
                (p.into_changed(), held)
            })
        };
        if outcome.is_none() {
            self.refused += 1;
        }
        outcome
    }

    /// Counts a message and returns when it arrives, or `None` if it is lost.
    fn send(&mut self, kind: Kind, bytes: usize, request: bool) -> Option<u64> {
        let k = kind as usize;
        self.traffic.msgs[k] += 1;
        self.traffic.bytes[k] += bytes as u64;
        if request {
            self.traffic.requests += 1;
        }
        let lost = self.rng.random::<f64>() < self.cfg.loss;
        let mut d = self
            .rng
            .random_range(self.cfg.delay_min_us..=self.cfg.delay_max_us);
        if self.rng.random::<f64>() < self.cfg.spike_prob {
            d += self.cfg.spike_us;
        }
        if lost {
            self.traffic.lost += 1;
            return None;
        }
        Some(self.now + d)
    }

    /// Up to `k` distinct random peers of `me`, leaving out `exclude`.
    fn random_peers(&mut self, me: usize, k: usize, exclude: Option<usize>) -> Vec<usize> {
        let n = self.nodes.len();
        let excluded = usize::from(exclude.is_some_and(|e| e != me && e < n));
        let k = k.min(n - 1 - excluded);
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let p = self.rng.random_range(0..n);
            if p != me && Some(p) != exclude && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Runs events up to simulated time `end` (µs), or until `stop` holds.
    fn run_until(&mut self, end: u64, mut stop: impl FnMut(&Sim) -> bool) {
        while self.queue.peek().is_some_and(|s| s.at <= end) {
            let Some(s) = self.queue.pop() else { break };
            self.now = s.at;
            self.events += 1;
            self.handle(s.ev);
            if stop(self) {
                return;
            }
        }
        self.now = self.now.max(end);
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.now + ms * 1000;
        self.run_until(end, |_| false);
    }

    /// Whether every replica's vector is equal.
    pub fn converged(&self) -> bool {
        let v0 = self.nodes[0].rep.vector();
        self.nodes.iter().all(|n| n.rep.vector() == v0)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Forward {
                node,
                records,
                exclude,
            } => self.forward(node, records, exclude),
            Ev::Push {
                to,
                from,
                batch,
                sent_us,
            } => self.receive_push(to, from, &batch, sent_us),
            Ev::PushAck { to, from, ack } => {
                self.nodes[to].failing.remove(&from);
                self.touch(to);
                let key = self.nodes[from].clock_key;
                self.nodes[to].rep.hlc.note_peer_clock(key, ack.clock_ms);
                if ack.held > 0 {
                    self.want_sync(to, from);
                }
            }
            Ev::PushFailed { node, peer } => {
                self.traffic.pushes_failed += 1;
                self.nodes[node].failing.insert(peer);
                self.want_sync(node, peer);
            }
            Ev::Summary { x, summary } => self.answer_summary(x, summary),
            Ev::Reply { x, reply } => self.take_reply(x, reply),
            Ev::PushBack { x, batch } => self.receive_push_back(x, &batch),
            Ev::PushBackAck { x, ack } => {
                let Some(ex) = self.exchanges.get(&x) else {
                    return;
                };
                let (a, b) = (ex.a, ex.b);
                self.touch(a);
                let key = self.nodes[b].clock_key;
                self.nodes[a].rep.hlc.note_peer_clock(key, ack.clock_ms);
                self.after_push_back(x, ack.held as usize);
            }
            Ev::ExchangeFailed { x } => self.finish(x, false),
            Ev::GossipTick { node } => self.gossip_tick(node),
            Ev::AntiEntropy { node } => {
                if let Some(&peer) = self.random_peers(node, 1, None).first() {
                    self.start_exchange(node, peer, Purpose::AntiEntropy);
                }
            }
            Ev::ClusterWrite => {
                if !self.writes_on {
                    return;
                }
                let node = self.rng.random_range(0..self.nodes.len());
                self.write(node);
                let u: f64 = self.rng.random();
                let gap_us = (-(1.0 - u).ln() / self.cfg.write_rate * 1e6) as u64;
                self.schedule(self.now + gap_us.max(1), Ev::ClusterWrite);
            }
        }
    }

    /// A local write of one small record (a chunk location) at `node`, pushed at
    /// once. Returns its dot.
    fn write(&mut self, node: usize) -> (Origin, u64) {
        self.writes += 1;
        let key =
            records::location_key(&ChunkId::of(&self.writes.to_le_bytes()), &self.chunkserver);
        self.touch(node);
        let plan = self.nodes[node]
            .rep
            .write(vec![Write {
                key,
                body: Body::ChunkLocation,
                deleted: false,
            }])
            .expect("in-memory write");
        let changed = plan.into_changed();
        let v = &changed[0].version;
        let dot = (v.origin, v.seq);
        let at = self.now + self.cfg.processing_us;
        self.schedule(
            at,
            Ev::Forward {
                node,
                records: changed,
                exclude: None,
            },
        );
        dot
    }

    /// Records that changed `node` (learned from `from`): tracked ones are
    /// counted; all are pushed on.
    fn learned(&mut self, node: usize, changed: Vec<Record>, from: usize, via: Via) {
        if changed.is_empty() {
            return;
        }
        for r in &changed {
            if let Some(&t) = self.tracked.get(&(r.version.origin, r.version.seq)) {
                let tr = &mut self.tracks[t];
                tr.reached += 1;
                if via == Via::Push {
                    tr.by_push += 1;
                }
                for (k, need) in self.need.iter().enumerate() {
                    if tr.at[k].is_none() && tr.reached >= *need {
                        tr.at[k] = Some(self.now - tr.written_us);
                    }
                }
            }
        }
        let at = self.now + self.cfg.processing_us;
        self.schedule(
            at,
            Ev::Forward {
                node,
                records: changed,
                exclude: Some(from),
            },
        );
    }

    /// `Peers::push_targets`: the ring successor (next index, which is next node id,
    /// wrapping; skipping failing peers while one is reachable), then random others.
    fn push_targets(&mut self, node: usize, exclude: Option<usize>) -> Vec<usize> {
        let n = self.nodes.len();
        let fanout = self.cfg.fanout;
        if fanout == 0 {
            return Vec::new();
        }
        let candidate = |p: usize| p != node && Some(p) != exclude;
        let ring = (1..n).map(|k| (node + k) % n).filter(|&p| candidate(p));
        let successor = ring
            .clone()
            .find(|p| !self.nodes[node].failing.contains(p))
            .or_else(|| ring.clone().next());
        let Some(successor) = successor else {
            return Vec::new();
        };
        let mut out = vec![successor];
        let available = (0..n).filter(|&p| candidate(p)).count();
        let k = fanout.min(available);
        while out.len() < k {
            let p = self.rng.random_range(0..n);
            if candidate(p) && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    fn forward(&mut self, node: usize, records: Vec<Record>, exclude: Option<usize>) {
        let targets = self.push_targets(node, exclude);
        if records.len() > EAGER_LIMIT {
            for t in targets {
                self.want_sync(node, t);
            }
            return;
        }
        let clock_ms = self.wall_ms(node);
        let push = Push {
            from: self.nodes[node].id.clone(),
            from_http: self.nodes[node].http.clone(),
            clock_ms,
            batch: Batch {
                records,
                ranges: Vec::new(),
                cleared: Vec::new(),
            },
        };
        let bytes = encode(&push).len();
        let batch = Rc::new(push.batch);
        for t in targets {
            match self.send(Kind::Push, bytes, true) {
                Some(at) => self.schedule(
                    at,
                    Ev::Push {
                        to: t,
                        from: node,
                        batch: batch.clone(),
                        sent_us: self.now,
                    },
                ),
                None => self.schedule(
                    self.now + self.cfg.timeout_ms * 1000,
                    Ev::PushFailed { node, peer: t },
                ),
            }
        }
    }

    /// The `PushAck` node `node` answers a push with.
    fn ack(&mut self, node: usize, applied: usize, held: usize) -> PushAck {
        PushAck {
            from: self.nodes[node].id.clone(),
            clock_ms: self.wall_ms(node),
            applied: applied as u32,
            held: held as u32,
        }
    }

    /// `/internal/gossip/receive` at `to`.
    fn receive_push(&mut self, to: usize, from: usize, batch: &Batch, sent_us: u64) {
        let Some((changed, held)) = self.apply_at(to, batch) else {
            // Answered 400: the push failed.
            self.schedule(
                self.now,
                Ev::PushFailed {
                    node: from,
                    peer: to,
                },
            );
            return;
        };
        let ack = self.ack(to, changed.len(), held);
        self.learned(to, changed, from, Via::Push);
        let bytes = encode(&ack).len();
        match self.send(Kind::PushAck, bytes, false) {
            Some(at) => self.schedule(
                at,
                Ev::PushAck {
                    to: from,
                    from: to,
                    ack,
                },
            ),
            None => {
                let at = (sent_us + self.cfg.timeout_ms * 1000).max(self.now);
                self.schedule(
                    at,
                    Ev::PushFailed {
                        node: from,
                        peer: to,
                    },
                );
            }
        }
    }

    /// `Peers::set_needs_sync(peer, true)` at `node`.
    fn want_sync(&mut self, node: usize, peer: usize) {
        let now = self.now;
        self.nodes[node].needs_sync.entry(peer).or_insert(now);
        self.ensure_tick(node);
    }

    /// Schedules `node`'s next gossip tick if it has peers to sync with.
    fn ensure_tick(&mut self, node: usize) {
        let n = &self.nodes[node];
        if n.tick_scheduled || n.needs_sync.is_empty() {
            return;
        }
        let interval = self.cfg.gossip_interval_ms * 1000;
        let phase = n.tick_phase_us;
        let k = if self.now >= phase {
            (self.now - phase) / interval + 1
        } else {
            0
        };
        self.nodes[node].tick_scheduled = true;
        self.schedule(phase + k * interval, Ev::GossipTick { node });
    }

    fn gossip_tick(&mut self, node: usize) {
        self.nodes[node].tick_scheduled = false;
        if !self.nodes[node].syncing {
            let patience = 2 * self.cfg.gossip_interval_ms * 1000;
            let now = self.now;
            let me = &self.nodes[node];
            let mut due: Vec<usize> = me
                .needs_sync
                .iter()
                .filter(|(p, since)| me.id < self.nodes[**p].id || now - **since >= patience)
                .map(|(p, _)| *p)
                .collect();
            due.sort_by(|a, b| self.nodes[*a].http.cmp(&self.nodes[*b].http));
            if !due.is_empty() {
                self.nodes[node].syncing = true;
                self.nodes[node].sync_queue = due.into();
                self.continue_sync(node);
            }
        }
        self.ensure_tick(node);
    }

    fn continue_sync(&mut self, node: usize) {
        match self.nodes[node].sync_queue.pop_front() {
            Some(p) => {
                self.nodes[node].needs_sync.remove(&p);
                self.start_exchange(node, p, Purpose::Sync);
            }
            None => {
                self.nodes[node].syncing = false;
                self.ensure_tick(node);
            }
        }
    }

    fn start_exchange(&mut self, a: usize, b: usize, purpose: Purpose) {
        self.traffic.exchanges += 1;
        let hash = self.nodes[a].rep.vector().hash();
        let send_vector = self.nodes[a].last_same != Some(hash);
        let x = self.next_x;
        self.next_x += 1;
        self.exchanges.insert(
            x,
            Exchange {
                a,
                b,
                purpose,
                send_vector,
                rounds: 0,
                hash,
                sent_us: self.now,
                their_complete: true,
                our_complete: true,
                held: 0,
            },
        );
        self.start_round(x);
    }

    fn start_round(&mut self, x: u64) {
        let Some(ex) = self.exchanges.get(&x) else {
            return;
        };
        let (a, send_vector) = (ex.a, ex.send_vector);
        let clock_ms = self.wall_ms(a);
        let vector = self.nodes[a].rep.vector().clone();
        let hash = vector.hash();
        let summary = Summary {
            from: self.nodes[a].id.clone(),
            from_http: self.nodes[a].http.clone(),
            clock_ms,
            hash,
            vector: send_vector.then_some(vector),
        };
        if send_vector {
            self.traffic.summaries_with_vector += 1;
        }
        let bytes = encode(&summary).len();
        let now = self.now;
        if let Some(ex) = self.exchanges.get_mut(&x) {
            ex.rounds += 1;
            ex.hash = hash;
            ex.sent_us = now;
        }
        match self.send(Kind::Summary, bytes, true) {
            Some(at) => self.schedule(at, Ev::Summary { x, summary }),
            None => self.schedule(now + self.cfg.timeout_ms * 1000, Ev::ExchangeFailed { x }),
        }
    }

    fn fail_leg(&mut self, x: u64) {
        let sent = self.exchanges.get(&x).map_or(self.now, |e| e.sent_us);
        let at = (sent + self.cfg.timeout_ms * 1000).max(self.now);
        self.schedule(at, Ev::ExchangeFailed { x });
    }

    /// `/internal/gossip/state-summary` at the exchange's peer.
    fn answer_summary(&mut self, x: u64, summary: Summary) {
        let Some(ex) = self.exchanges.get(&x) else {
            return;
        };
        let b = ex.b;
        let clock_ms = self.wall_ms(b);
        let from = self.nodes[b].id.clone();
        let reply = if self.nodes[b].rep.vector().hash() == summary.hash {
            self.nodes[b].last_same = Some(summary.hash);
            SummaryReply::Same { from, clock_ms }
        } else {
            let vector = self.nodes[b].rep.vector().clone();
            let delta = match &summary.vector {
                Some(theirs) => Some(
                    self.nodes[b]
                        .rep
                        .delta(theirs, DELTA_BUDGET)
                        .expect("in-memory delta"),
                ),
                None => None,
            };
            SummaryReply::Differs {
                from,
                clock_ms,
                vector,
                delta,
            }
        };
        let bytes = encode(&reply).len();
        match self.send(Kind::SummaryReply, bytes, false) {
            Some(at) => self.schedule(at, Ev::Reply { x, reply }),
            None => self.fail_leg(x),
        }
    }

    fn take_reply(&mut self, x: u64, reply: SummaryReply) {
        let Some(ex) = self.exchanges.get(&x) else {
            return;
        };
        let (a, b, hash) = (ex.a, ex.b, ex.hash);
        self.touch(a);
        let key = self.nodes[b].clock_key;
        self.nodes[a].rep.hlc.note_peer_clock(key, reply.clock_ms());
        let (theirs, delta) = match reply {
            SummaryReply::Same { .. } => {
                self.nodes[a].last_same = Some(hash);
                self.nodes[a].failing.remove(&b);
                self.traffic.exchanges_same += 1;
                self.finish(x, true);
                return;
            }
            SummaryReply::Differs { delta: None, .. } => {
                if let Some(ex) = self.exchanges.get_mut(&x) {
                    ex.send_vector = true;
                }
                self.next_round(x);
                return;
            }
            SummaryReply::Differs {
                vector,
                delta: Some(delta),
                ..
            } => (vector, delta),
        };
        let Some((changed, held)) = self.apply_at(a, &delta.batch) else {
            self.finish(x, false);
            return;
        };
        self.learned(a, changed, b, Via::AntiEntropy);
        let ours = self.nodes[a]
            .rep
            .delta(&theirs, DELTA_BUDGET)
            .expect("in-memory delta");
        let now = self.now;
        if let Some(ex) = self.exchanges.get_mut(&x) {
            ex.their_complete = delta.complete;
            ex.our_complete = ours.complete;
            ex.held += held;
            ex.sent_us = now;
        }
        if ours.batch.records.is_empty() && ours.batch.ranges.is_empty() {
            self.after_push_back(x, 0);
            return;
        }
        let clock_ms = self.wall_ms(a);
        let push = Push {
            from: self.nodes[a].id.clone(),
            from_http: self.nodes[a].http.clone(),
            clock_ms,
            batch: ours.batch,
        };
        let bytes = encode(&push).len();
        match self.send(Kind::AePush, bytes, true) {
            Some(at) => self.schedule(
                at,
                Ev::PushBack {
                    x,
                    batch: push.batch,
                },
            ),
            None => self.fail_leg(x),
        }
    }

    /// The push-back arriving at the exchange's peer (`/internal/gossip/receive`).
    fn receive_push_back(&mut self, x: u64, batch: &Batch) {
        let Some(ex) = self.exchanges.get(&x) else {
            return;
        };
        let (a, b) = (ex.a, ex.b);
        let Some((changed, held)) = self.apply_at(b, batch) else {
            self.finish(x, false);
            return;
        };
        let ack = self.ack(b, changed.len(), held);
        self.learned(b, changed, a, Via::AntiEntropy);
        let bytes = encode(&ack).len();
        match self.send(Kind::AePushAck, bytes, false) {
            Some(at) => self.schedule(at, Ev::PushBackAck { x, ack }),
            None => self.fail_leg(x),
        }
    }

    fn after_push_back(&mut self, x: u64, they_held: usize) {
        let Some(ex) = self.exchanges.get_mut(&x) else {
            return;
        };
        ex.send_vector = true;
        if ex.held > 0 || they_held > 0 || (ex.their_complete && ex.our_complete) {
            self.finish(x, true);
        } else {
            self.next_round(x);
        }
    }

    fn next_round(&mut self, x: u64) {
        match self.exchanges.get(&x) {
            Some(ex) if ex.rounds >= MAX_ROUNDS => self.finish(x, true),
            Some(_) => self.start_round(x),
            None => {}
        }
    }

    fn finish(&mut self, x: u64, ok: bool) {
        let Some(ex) = self.exchanges.remove(&x) else {
            return;
        };
        if ok {
            self.nodes[ex.a].failing.remove(&ex.b);
        } else {
            self.traffic.exchanges_failed += 1;
            self.nodes[ex.a].failing.insert(ex.b);
        }
        match ex.purpose {
            Purpose::AntiEntropy => {
                if ok {
                    self.nodes[ex.a].needs_sync.remove(&ex.b);
                }
                let interval_ms = self.cfg.anti_entropy_interval_ms;
                let jitter_ms = self.rng.random::<u64>() % (interval_ms / 5 + 1);
                let at = self.now + (interval_ms + jitter_ms) * 1000;
                self.schedule(at, Ev::AntiEntropy { node: ex.a });
            }
            Purpose::Sync => {
                if !ok {
                    self.want_sync(ex.a, ex.b);
                }
                self.continue_sync(ex.a);
            }
        }
    }

    /// Writes one update at a random node and runs until it is everywhere (or the
    /// cap passes). Returns its track.
    fn timed_update(&mut self) -> usize {
        let node = self.rng.random_range(0..self.nodes.len());
        let t = self.tracks.len();
        self.tracks.push(Track {
            written_us: self.now,
            reached: 1,
            by_push: 0,
            at: [None; 3],
        });
        let dot = self.write(node);
        self.tracked.insert(dot, t);
        let n = self.nodes.len();
        let end = self.now + self.cfg.update_cap_ms * 1000;
        self.run_until(end, |s| s.tracks[t].reached >= n);
        t
    }

    fn traffic_json(&self, t: &Traffic, window_ms: u64) -> Value {
        let per = |v: u64| v as f64 / self.nodes.len() as f64 / (window_ms as f64 / 1000.0);
        let payload: u64 = t.bytes.iter().sum();
        let overhead = t.requests * self.cfg.http_overhead;
        let msgs: u64 = t.msgs.iter().sum();
        let by: serde_json::Map<String, Value> = KIND_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    name.to_string(),
                    json!({
                        "messages": t.msgs[i],
                        "bytes": t.bytes[i],
                        "mean_bytes": if t.msgs[i] > 0 { round1(t.bytes[i] as f64 / t.msgs[i] as f64) } else { 0.0 },
                    }),
                )
            })
            .collect();
        let ae_bytes: u64 = t.bytes[2..].iter().sum();
        let ae_requests = t.msgs[Kind::Summary as usize] + t.msgs[Kind::AePush as usize];
        json!({
            "window_s": window_ms as f64 / 1000.0,
            "payload_bytes_per_node_per_s": round1(per(payload)),
            "http_overhead_bytes_per_node_per_s": round1(per(overhead)),
            "total_bytes_per_node_per_s": round1(per(payload + overhead)),
            "in_plus_out_bytes_per_node_per_s": round1(2.0 * per(payload + overhead)),
            "messages_per_node_per_s": (per(msgs) * 100.0).round() / 100.0,
            "by_message": by,
            "lost_messages": t.lost,
            "gossip_pushes_failed": t.pushes_failed,
            "anti_entropy": {
                "exchanges_started": t.exchanges,
                "exchanges_same": t.exchanges_same,
                "exchanges_failed": t.exchanges_failed,
                "summaries_with_vector": t.summaries_with_vector,
                "summaries": t.msgs[Kind::Summary as usize],
                "mean_payload_bytes_per_exchange": if t.exchanges > 0 { round1(ae_bytes as f64 / t.exchanges as f64) } else { 0.0 },
                "mean_bytes_per_exchange_with_http": if t.exchanges > 0 {
                    round1((ae_bytes + ae_requests * self.cfg.http_overhead) as f64 / t.exchanges as f64)
                } else { 0.0 },
            },
        })
    }

    /// The bytes of one idle anti-entropy exchange at this cluster's size, from
    /// node 0's state: `Summary` (hash only) + `SummaryReply::Same`; and the
    /// summary carrying the vector (sent when the last exchange with that very
    /// peer did not find both equal at this hash).
    fn idle_exchange_json(&mut self) -> Value {
        let clock_ms = self.wall_ms(0);
        let v = self.nodes[0].rep.vector().clone();
        let hash_only = Summary {
            from: self.nodes[0].id.clone(),
            from_http: self.nodes[0].http.clone(),
            clock_ms,
            hash: v.hash(),
            vector: None,
        };
        let same = SummaryReply::Same {
            from: self.nodes[1].id.clone(),
            clock_ms,
        };
        let (s, r) = (encode(&hash_only).len(), encode(&same).len());
        let with_vector = encode(&Summary {
            vector: Some(v.clone()),
            ..hash_only
        })
        .len();
        let total = (s + r) as u64;
        json!({
            "vector_entries": v.0.len(),
            "summary_hash_only_bytes": s,
            "same_reply_bytes": r,
            "payload_bytes": total,
            "payload_le_1kb": total <= 1024,
            "with_http_overhead_bytes": total + self.cfg.http_overhead,
            "summary_with_vector_bytes": with_vector,
            "exchange_with_vector_payload_bytes": with_vector + r,
        })
    }

    /// Runs the whole scenario: warm-up, timed updates, the idle window, the
    /// steady-writes window, and a drain until every replica agrees.
    pub fn run(mut self) -> Value {
        let n = self.nodes.len();
        self.run_for(self.cfg.warmup_ms);
        let idle_exchange = self.idle_exchange_json();

        // (a) one update at a time, on an idle converged cluster.
        let mut unconverged_before_update = 0;
        for _ in 0..self.cfg.updates {
            self.run_for(self.cfg.update_gap_ms);
            if !self.converged() {
                unconverged_before_update += 1;
            }
            self.timed_update();
        }
        let mut propagation = serde_json::Map::new();
        for (k, (_, name)) in THRESHOLDS.iter().enumerate() {
            let mut ms: Vec<f64> = self
                .tracks
                .iter()
                .filter_map(|t| t.at[k])
                .map(|us| us as f64 / 1000.0)
                .collect();
            let samples: Vec<Value> = self
                .tracks
                .iter()
                .map(|t| t.at[k].map_or(Value::Null, |us| json!(round1(us as f64 / 1000.0))))
                .collect();
            ms.sort_by(f64::total_cmp);
            let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
            propagation.insert(
                format!("to_{name}"),
                json!({
                    "nodes": self.need[k],
                    "p50_ms": round1(quantile(&ms, 0.5)),
                    "p99_ms": round1(quantile(&ms, 0.99)),
                    "max_ms": round1(ms.last().copied().unwrap_or(f64::NAN)),
                    "mean_ms": round1(mean),
                    "unreached": self.tracks.len() - ms.len(),
                    "samples_ms": samples,
                }),
            );
        }
        let by_push: Vec<f64> = self
            .tracks
            .iter()
            .map(|t| (t.by_push + 1) as f64 / n as f64)
            .collect();
        let mut by_push_sorted = by_push.clone();
        by_push_sorted.sort_by(f64::total_cmp);
        propagation.insert(
            "reached_by_push_gossip_alone".into(),
            json!({
                "note": "fraction of nodes (the writer included) that first got the update from a gossip push, not from anti-entropy",
                "min": quantile(&by_push_sorted, 0.0),
                "median": quantile(&by_push_sorted, 0.5),
                "max": by_push_sorted.last().copied().unwrap_or(f64::NAN),
            }),
        );
        propagation.insert(
            "updates_started_on_unconverged_cluster".into(),
            json!(unconverged_before_update),
        );

        // (b) idle: anti-entropy only.
        self.run_for(self.cfg.update_gap_ms);
        self.traffic = Traffic::default();
        self.run_for(self.cfg.idle_window_ms);
        let idle = self.traffic_json(&self.traffic, self.cfg.idle_window_ms);

        // (b) steady writes.
        let writes_before = self.writes;
        self.writes_on = true;
        self.schedule(self.now, Ev::ClusterWrite);
        self.run_for(self.cfg.steady_warmup_ms);
        self.traffic = Traffic::default();
        let w0 = self.writes;
        self.run_for(self.cfg.steady_window_ms);
        let mut steady = self.traffic_json(&self.traffic, self.cfg.steady_window_ms);
        steady["writes_in_window"] = json!(self.writes - w0);
        self.writes_on = false;
        let steady_writes = self.writes - writes_before;

        // Drain: every replica reflects every write.
        let drain_start = self.now;
        let cap = self.now + self.cfg.update_cap_ms * 1000;
        while !self.converged() && self.now < cap {
            self.run_for(1_000);
        }
        let converged = self.converged();
        let live = self.nodes[0].rep.store.live().len();
        json!({
            "loss": self.cfg.loss,
            "idle_exchange": idle_exchange,
            "propagation": propagation,
            "bandwidth": {
                "idle": idle,
                "steady_writes": steady,
            },
            "final": {
                "steady_writes_total": steady_writes,
                "converged": converged,
                "every_replica_same_live_rows": converged && self.nodes.iter().all(|x| x.rep.store.live().len() == live),
                "drain_ms_after_writes_stopped": round1((self.now - drain_start) as f64 / 1000.0),
                "live_rows_per_replica": live,
                "refused_batches": self.refused,
                "events": self.events,
                "simulated_s": round1(self.now as f64 / 1e6),
            },
        })
    }
}

/// The reference figures the results are compared against.
pub fn reference_json() -> Value {
    json!({
        "serf_simulator_99.99pct_of_1000_nodes_s": 2.2,
        "chitchat_bytes_per_s_per_node_under": 15_000,
        "aim": "99.99% of 1,000 controllers faster than 2.2 s, under 15 KB/s/node, at default intervals",
    })
}

/// Checks a scenario's result against the aims.
pub fn verdict_json(scenario: &Value) -> Value {
    let p99 = scenario["propagation"]["to_99.99%"]["p99_ms"].as_f64();
    let p50 = scenario["propagation"]["to_99.99%"]["p50_ms"].as_f64();
    let steady = scenario["bandwidth"]["steady_writes"]["total_bytes_per_node_per_s"].as_f64();
    let idle = scenario["bandwidth"]["idle"]["total_bytes_per_node_per_s"].as_f64();
    json!({
        "loss": scenario["loss"],
        "to_99.99pct_p50_ms": p50,
        "to_99.99pct_p99_ms": p99,
        "faster_than_serf_2.2s_p99": p99.is_some_and(|v| v < 2_200.0),
        "steady_total_bytes_per_node_per_s": steady,
        "idle_total_bytes_per_node_per_s": idle,
        "under_15kb_per_s_per_node": steady.is_some_and(|v| v < 15_000.0) && idle.is_some_and(|v| v < 15_000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64, nodes: usize, loss: f64) -> SimConfig {
        SimConfig {
            nodes,
            seed,
            loss,
            updates: 4,
            warmup_ms: 40_000,
            idle_window_ms: 20_000,
            steady_warmup_ms: 5_000,
            steady_window_ms: 20_000,
            write_rate: 2.0,
            ..SimConfig::default()
        }
    }

    #[test]
    fn every_update_reaches_every_node_and_idle_exchange_is_small() {
        let r = Sim::new(small(7, 100, 0.01)).run();
        let p = &r["propagation"];
        assert_eq!(p["to_99.99%"]["nodes"], 100);
        assert_eq!(p["to_99.99%"]["unreached"], 0, "{p}");
        assert_eq!(p["updates_started_on_unconverged_cluster"], 0, "{p}");
        assert!(r["final"]["converged"].as_bool() == Some(true), "{r}");
        assert!(r["final"]["every_replica_same_live_rows"].as_bool() == Some(true));
        assert_eq!(r["final"]["refused_batches"], 0);
        let idle = &r["idle_exchange"];
        assert!(idle["payload_le_1kb"].as_bool() == Some(true), "{idle}");
        assert!(idle["payload_bytes"].as_u64().is_some_and(|b| b <= 1024));
        assert!(
            r["bandwidth"]["steady_writes"]["by_message"]["gossip_push"]["messages"]
                .as_u64()
                .is_some_and(|m| m > 0)
        );
    }

    #[test]
    fn without_loss_push_gossip_alone_reaches_every_node() {
        // The ring successor among the push targets: a node the random targets miss
        // is reached by its predecessor, so no update waits for anti-entropy.
        let r = Sim::new(small(11, 200, 0.0)).run();
        let p = &r["propagation"];
        assert_eq!(p["to_99.99%"]["unreached"], 0, "{p}");
        assert_eq!(p["reached_by_push_gossip_alone"]["min"], 1.0, "{p}");
        assert!(
            p["to_99.99%"]["max_ms"]
                .as_f64()
                .is_some_and(|ms| ms < f64::from(2 * 1_000)),
            "every update everywhere within two gossip intervals: {p}"
        );
    }

    #[test]
    fn same_seed_same_result() {
        let a = Sim::new(small(3, 40, 0.05)).run();
        let b = Sim::new(small(3, 40, 0.05)).run();
        assert_eq!(a, b);
        let c = Sim::new(small(4, 40, 0.05)).run();
        assert_ne!(a["propagation"], c["propagation"]);
    }
}
