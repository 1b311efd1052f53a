//! The push-gossip worker. New records (written here or learned from a peer) are
//! pushed at once to `GOSSIP_FANOUT` random peers; a peer that learns something
//! from them pushes it on. A push that fails marks its peer for a sync, and every
//! `GOSSIP_INTERVAL` the worker runs anti-entropy with the marked peers, so an update
//! waits at most about one interval once the peer is reachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redcloud_common::NodeId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::Batch;
use super::{Push, PushAck, clock_key, decode, encode};
use crate::node::Node;
use crate::records::Record;

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

/// Runs until `shutdown`.
pub async fn run(
    node: Arc<Node>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(node.config.gossip_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let syncing = Arc::new(AtomicBool::new(false));
    let patience = node.config.gossip_interval * 2;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            first = rx.recv() => {
                let Some(first) = first else { return };
                // Coalesce whatever else is already queued with the same exclusion.
                let exclude = first.exclude.clone();
                let mut records = first.records;
                while records.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(o) if o.exclude == exclude => records.extend(o.records),
                        Ok(o) => { push_to_random(&node, o.records, o.exclude); }
                        Err(_) => break,
                    }
                }
                push_to_random(&node, records, exclude);
            }
            _ = tick.tick() => {
                // One sync at a time, one peer after another: each exchange starts from
                // what the previous ones brought, so the same records are not fetched
                // from several peers at once.
                if !syncing.load(Ordering::Acquire) && !node.peers.due_for_sync(&node.id, patience).is_empty() {
                    syncing.store(true, Ordering::Release);
                    let node = node.clone();
                    let syncing = syncing.clone();
                    node.tasks.clone().spawn(async move {
                        for peer in node.peers.due_for_sync(&node.id, patience) {
                            node.peers.set_needs_sync(&peer.http_addr, false);
                            if let Err(e) = super::anti_entropy::exchange(&node, &peer.http_addr).await {
                                tracing::debug!(peer = %peer.http_addr, "sync failed: {e}");
                                node.peers.set_needs_sync(&peer.http_addr, true);
                            }
                        }
                        syncing.store(false, Ordering::Release);
                    });
                }
            }
        }
    }
}

/// Pushes `records` to up to `GOSSIP_FANOUT` random peers, each in its own task.
fn push_to_random(node: &Arc<Node>, records: Vec<Record>, exclude: Option<NodeId>) {
    if records.is_empty() {
        return;
    }
    let targets = node
        .peers
        .random(node.config.gossip_fanout as usize, exclude.as_ref());
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
        let node = node.clone();
        let body = body.clone();
        node.tasks.clone().spawn(async move {
            node.metrics.gossip_pushes.inc();
            let sent = std::time::Instant::now();
            match node
                .net
                .post(&peer.http_addr, "/internal/gossip/receive", body)
                .await
            {
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
                        node.peers.set_needs_sync(&peer.http_addr, true);
                    }
                },
                Err(e) => {
                    node.metrics.gossip_push_failures.inc();
                    tracing::debug!("push to {} failed: {e}", peer.http_addr);
                    node.peers.set_needs_sync(&peer.http_addr, true);
                }
            }
        });
    }
}
