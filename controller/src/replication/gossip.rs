//! The push-gossip worker. New records (written here or learned from a peer) are
//! pushed at once to `GOSSIP_FANOUT` peers (this controller's ring successor and
//! random others); a peer that learns something from them pushes it on. A push that fails marks its peer for a sync, and every
//! `GOSSIP_INTERVAL` the worker runs anti-entropy with the marked peers, so an update
//! waits at most about one interval once the peer is reachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redcloud_common::NodeId;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::engine::Batch;
use super::{Push, PushAck, Replica, clock_key, decode, encode};
use crate::records::Record;
use crate::workers::{BoxFuture, Worker, WorkerState};

/// Records to push, and the peer they came from (not pushed back to it).
#[derive(Debug)]
pub struct Outgoing {
    pub records: Vec<Record>,
    pub exclude: Option<NodeId>,
}

/// Most records coalesced into one push message.
const MAX_BATCH: usize = 10_000;

/// Batches bigger than this are not pushed whole: the fanout peers are marked for
/// a sync instead, and the next tick's anti-entropy sends each only what it lacks
/// (a big batch is usually an anti-entropy catch-up that peers are getting too).
const EAGER_LIMIT: usize = 256;

/// Most batches of records waiting for the worker. The queue is filled by every
/// write here and every record learned, so it is bounded: when it is full the
/// batch is dropped and every peer is marked for a sync instead (anti-entropy
/// brings them whatever pushes would have).
pub const QUEUE: usize = 1024;

/// Most pushes in flight at once. A frozen peer holds each push for the whole
/// request timeout; past this, a peer gets a sync mark instead of another task.
pub const MAX_PUSHES_IN_FLIGHT: usize = 64;

/// A push (at most EAGER_LIMIT records) not answered within this long failed: a
/// frozen peer does not hold push slots for the whole peer request timeout, and
/// what it missed comes by anti-entropy.
pub const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The writing end of the gossip queue.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::Sender<Outgoing>,
    overflowed: Arc<AtomicBool>,
}

impl Sender {
    /// Queues `o`; drops it (and asks for syncs with every peer) when the queue is full.
    pub fn send(&self, o: Outgoing) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(o) {
            self.overflowed.store(true, Ordering::Release);
        }
    }
}

/// The reading end of the gossip queue.
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::Receiver<Outgoing>,
    overflowed: Arc<AtomicBool>,
}

/// A bounded gossip queue of [`QUEUE`] batches.
pub fn queue() -> (Sender, Receiver) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let overflowed = Arc::new(AtomicBool::new(false));
    (
        Sender {
            tx,
            overflowed: overflowed.clone(),
        },
        Receiver { rx, overflowed },
    )
}

/// What woke the worker.
enum Wake {
    Records(Outgoing),
    Tick,
    Closed,
}

/// The push-gossip worker.
pub struct Gossip {
    replica: Arc<Replica>,
    rx: Receiver,
    pushes: Arc<tokio::sync::Semaphore>,
    tick: tokio::time::Interval,
    syncing: Arc<AtomicBool>,
    fanout: usize,
    patience: Duration,
    tasks: TaskTracker,
    woke: Option<Wake>,
}

impl Gossip {
    pub fn new(
        replica: Arc<Replica>,
        rx: Receiver,
        interval: Duration,
        fanout: usize,
        tasks: TaskTracker,
    ) -> Gossip {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Gossip {
            replica,
            rx,
            pushes: Arc::new(tokio::sync::Semaphore::new(MAX_PUSHES_IN_FLIGHT)),
            tick,
            syncing: Arc::new(AtomicBool::new(false)),
            fanout,
            patience: interval * 2,
            tasks,
            woke: None,
        }
    }

    fn push(&self, records: Vec<Record>, exclude: Option<NodeId>) {
        push_to_targets(
            &self.replica,
            &self.tasks,
            &self.pushes,
            self.fanout,
            records,
            exclude,
        );
    }

    /// After the queue overflowed, every peer may lack what was dropped.
    fn after_overflow(&self) {
        if self.rx.overflowed.swap(false, Ordering::AcqRel) {
            tracing::debug!("gossip queue overflowed: syncing with every peer instead");
            for p in self.replica.peers.all() {
                self.replica.peers.set_needs_sync(&p.http_addr, true);
            }
        }
    }
}

impl Worker for Gossip {
    fn name(&self) -> &'static str {
        "gossip"
    }

    fn work(&mut self) -> BoxFuture<'_, Result<WorkerState, String>> {
        Box::pin(async move {
            self.after_overflow();
            match self.woke.take() {
                None => Ok(WorkerState::Idle),
                Some(Wake::Closed) => Ok(WorkerState::Done),
                Some(Wake::Records(first)) => {
                    // Coalesce whatever else is already queued with the same exclusion.
                    let exclude = first.exclude.clone();
                    let mut records = first.records;
                    while records.len() < MAX_BATCH {
                        match self.rx.rx.try_recv() {
                            Ok(o) if o.exclude == exclude => records.extend(o.records),
                            Ok(o) => self.push(o.records, o.exclude),
                            Err(_) => break,
                        }
                    }
                    self.push(records, exclude);
                    Ok(WorkerState::Idle)
                }
                Some(Wake::Tick) => {
                    // One sync at a time, one peer after another: each exchange starts
                    // from what the previous ones brought, so the same records are not
                    // fetched from several peers at once.
                    let node = self.replica.clone();
                    let patience = self.patience;
                    if !self.syncing.load(Ordering::Acquire)
                        && !node.peers.due_for_sync(&node.id, patience).is_empty()
                    {
                        self.syncing.store(true, Ordering::Release);
                        let syncing = self.syncing.clone();
                        self.tasks.spawn(async move {
                            for peer in node.peers.due_for_sync(&node.id, patience) {
                                node.peers.set_needs_sync(&peer.http_addr, false);
                                if let Err(e) =
                                    super::anti_entropy::exchange(&node, &peer.http_addr).await
                                {
                                    tracing::debug!(peer = %peer.http_addr, "sync failed: {e}");
                                    node.peers.mark_failed(&peer.http_addr);
                                    node.peers.set_needs_sync(&peer.http_addr, true);
                                }
                            }
                            syncing.store(false, Ordering::Release);
                        });
                    }
                    Ok(WorkerState::Idle)
                }
            }
        })
    }

    fn wait_for_work(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.woke = Some(tokio::select! {
                r = self.rx.rx.recv() => match r {
                    Some(o) => Wake::Records(o),
                    None => Wake::Closed,
                },
                _ = self.tick.tick() => Wake::Tick,
            });
        })
    }
}

/// Pushes `records` to up to `GOSSIP_FANOUT` peers (the ring successor and random
/// others, [`super::peers::Peers::push_targets`]), each in its own task.
fn push_to_targets(
    node: &Arc<Replica>,
    tasks: &TaskTracker,
    pushes: &Arc<tokio::sync::Semaphore>,
    fanout: usize,
    records: Vec<Record>,
    exclude: Option<NodeId>,
) {
    if records.is_empty() {
        return;
    }
    let targets = node.peers.push_targets(&node.id, fanout, exclude.as_ref());
    if records.len() > EAGER_LIMIT {
        for peer in targets {
            node.peers.set_needs_sync(&peer.http_addr, true);
        }
        return;
    }
    let body = encode(&Push {
        from: node.id.clone(),
        from_http: node.http_addr(),
        clock_ms: node.hlc.wall_ms(),
        batch: Batch {
            records,
            ranges: Vec::new(),
            cleared: Vec::new(),
        },
    });
    for peer in targets {
        let Ok(slot) = pushes.clone().try_acquire_owned() else {
            node.peers.set_needs_sync(&peer.http_addr, true);
            continue;
        };
        let node = node.clone();
        let body = body.clone();
        tasks.spawn(async move {
            let _slot = slot;
            node.metrics.gossip_pushes.inc();
            let sent = std::time::Instant::now();
            let push = node
                .net
                .post(&peer.http_addr, "/internal/gossip/receive", body);
            let answer = match tokio::time::timeout(PUSH_TIMEOUT, push).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {PUSH_TIMEOUT:?}")),
            };
            match answer {
                Ok(b) => match decode::<PushAck>(&b) {
                    Ok(ack) => {
                        node.hlc.note_answer_clock(
                            clock_key(&ack.from),
                            ack.clock_ms,
                            sent.elapsed(),
                        );
                        node.peers.mark_ok(&peer.http_addr);
                        if ack.held > 0 {
                            // It holds records stamped ahead of its clock: they come
                            // again by anti-entropy once its clock passes them.
                            node.peers.set_needs_sync(&peer.http_addr, true);
                        }
                    }
                    Err(_) => {
                        node.metrics.gossip_push_failures.inc();
                        node.peers.mark_failed(&peer.http_addr);
                        node.peers.set_needs_sync(&peer.http_addr, true);
                    }
                },
                Err(e) => {
                    node.metrics.gossip_push_failures.inc();
                    tracing::debug!("push to {} failed: {e}", peer.http_addr);
                    node.peers.mark_failed(&peer.http_addr);
                    node.peers.set_needs_sync(&peer.http_addr, true);
                }
            }
        });
    }
}
