//! Pull anti-entropy: every `ANTI_ENTROPY_INTERVAL` a controller exchanges state
//! with one random peer. It sends a hash of its version vector (and the vector
//! when it expects a difference); the peer answers `Same`, or with its vector and
//! the delta we lack; we apply it and push back what the peer lacks. Deltas are cut
//! by bytes; the exchange repeats until neither side's was cut. An idle round is
//! two messages of a few dozen bytes, whatever the number of controllers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redcloud_common::http::HttpError;

use super::Replica;
use super::{DELTA_BUDGET, Push, PushAck, Summary, SummaryReply, clock_key, decode, encode};
use crate::meta;
use crate::workers::{BoxFuture, Worker, WorkerState};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("malformed answer from {peer}: {reason}")]
    Malformed { peer: String, reason: String },
    #[error(transparent)]
    Store(#[from] crate::error::ControllerError),
}

/// What one exchange moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeStats {
    pub received: usize,
    pub sent: usize,
    pub held: usize,
    pub rounds: usize,
}

/// Most rounds one exchange runs when deltas are cut at [`DELTA_BUDGET`].
const MAX_ROUNDS: usize = 256;

/// One anti-entropy exchange with the peer at `peer_http`, repeated until neither
/// side's delta was cut short.
pub async fn exchange(
    node: &Arc<Replica>,
    peer_http: &str,
) -> Result<ExchangeStats, ExchangeError> {
    let mut stats = ExchangeStats::default();
    let malformed = |reason: String| ExchangeError::Malformed {
        peer: peer_http.to_string(),
        reason,
    };
    // Send the vector itself unless this controller's last exchange found both
    // sides equal at this very vector: then it is most likely converged, and the
    // hash alone settles an idle round with any peer, at any cluster size.
    let mut send_vector = !node
        .peers
        .hash_alone_will_do(&node.db.call(|s| Ok(s.vector().hash())).await?);
    for _ in 0..MAX_ROUNDS {
        stats.rounds += 1;
        node.metrics.anti_entropy_rounds.inc();
        let vector = node.db.call(|s| Ok(s.vector())).await?;
        let hash = vector.hash();
        // The peer computes its answer after this moment: a complete answer means we
        // hold everything it held at or after it (chunk GC relies on this).
        let asked_at = Instant::now();
        let asked_at_ms = node.hlc.wall_ms();
        let syn = encode(&Summary {
            from: node.id.clone(),
            from_http: node.http_addr(),
            clock_ms: node.hlc.wall_ms(),
            hash,
            vector: send_vector.then(|| vector.clone()),
        });
        let answer = node
            .net
            .post(peer_http, "/internal/gossip/state-summary", syn)
            .await?;
        let rtt = asked_at.elapsed();
        let applying = node.apply_slot.acquire().await;
        let reply: SummaryReply = decode(&answer).map_err(|e| malformed(e.to_string()))?;
        drop(answer);
        reply.check().map_err(|e| malformed(e.to_string()))?;
        let peer_id = reply.from().clone();
        node.hlc
            .note_answer_clock(clock_key(&peer_id), reply.clock_ms(), rtt);
        let (theirs, delta) = match reply {
            SummaryReply::Same { .. } => {
                let (p, v) = (peer_id.clone(), vector.clone());
                let now = node.hlc.wall_ms();
                node.db
                    .call(move |s| {
                        meta::log::note_report(s.conn(), &p, &v, now)?;
                        meta::log::note_exchange(s.conn(), &p, asked_at_ms)?;
                        Ok(())
                    })
                    .await?;
                node.peers.mark_ok(peer_http);
                node.peers.note_same(hash);
                node.membership.note_complete_exchange(&peer_id, asked_at);
                return Ok(stats);
            }
            SummaryReply::Differs { delta: None, .. } => {
                // The peer needs our vector to tell us what we lack.
                send_vector = true;
                continue;
            }
            SummaryReply::Differs {
                vector: theirs,
                delta: Some(delta),
                ..
            } => (theirs, delta),
        };
        let their_complete = delta.complete;
        stats.received += delta.batch.records.len();
        let (p, t) = (peer_id.clone(), theirs.clone());
        let drift = node.max_drift_ms;
        let now = node.hlc.wall_ms();
        let applied = node
            .db
            .call(move |s| {
                let a = s.apply(delta.batch, drift)?;
                meta::log::note_report(s.conn(), &p, &t, now)?;
                Ok(a)
            })
            .await?;
        drop(applying);
        stats.held += applied.held.len();
        node.note_held(&peer_id, &applied.held);
        node.events.learned(applied.changed, Some(peer_id.clone()));

        // Push back what the peer lacks.
        let ours = node
            .db
            .call(move |s| s.delta(&theirs, DELTA_BUDGET))
            .await?;
        let our_complete = ours.complete;
        let mut they_held = 0;
        if !ours.batch.records.is_empty() || !ours.batch.ranges.is_empty() {
            stats.sent += ours.batch.records.len();
            let push = encode(&Push {
                from: node.id.clone(),
                from_http: node.http_addr(),
                clock_ms: node.hlc.wall_ms(),
                batch: ours.batch,
            });
            let sent = Instant::now();
            let ack = node
                .net
                .post(peer_http, "/internal/gossip/receive", push)
                .await?;
            let ack: PushAck = decode(&ack).map_err(|e| malformed(e.to_string()))?;
            node.hlc
                .note_answer_clock(clock_key(&ack.from), ack.clock_ms, sent.elapsed());
            they_held = ack.held;
        }
        node.peers.mark_ok(peer_http);
        send_vector = true;
        if stats.held > 0 || they_held > 0 {
            // Records stamped ahead of one side's clock were held back: another round
            // now would carry them again. They come once that clock passes them.
            return Ok(stats);
        }
        if their_complete && our_complete {
            let p = peer_id.clone();
            node.db
                .call(move |s| Ok(meta::log::note_exchange(s.conn(), &p, asked_at_ms)?))
                .await?;
            node.membership.note_complete_exchange(&peer_id, asked_at);
            return Ok(stats);
        }
    }
    Ok(stats)
}

/// The worker: one exchange with a random peer per `ANTI_ENTROPY_INTERVAL`
/// (jittered, so controllers started together spread their rounds).
pub struct AntiEntropy {
    pub replica: Arc<Replica>,
    pub interval: Duration,
}

impl Worker for AntiEntropy {
    fn name(&self) -> &'static str {
        "anti-entropy"
    }

    fn work(&mut self) -> BoxFuture<'_, Result<WorkerState, String>> {
        Box::pin(async move {
            let node = &self.replica;
            let Some(peer) = node.peers.random(1, None).into_iter().next() else {
                return Ok(WorkerState::Idle);
            };
            match exchange(node, &peer.http_addr).await {
                Ok(s) => {
                    if s.received + s.sent > 0 {
                        tracing::info!(peer = %peer.http_addr, received = s.received, sent = s.sent, "anti-entropy repaired a difference");
                    }
                    node.peers.set_needs_sync(&peer.http_addr, false);
                    Ok(WorkerState::Idle)
                }
                Err(e) => {
                    node.metrics.anti_entropy_failures.inc();
                    node.peers.mark_failed(&peer.http_addr);
                    tracing::debug!(peer = %peer.http_addr, "anti-entropy failed: {e}");
                    Ok(WorkerState::Idle)
                }
            }
        })
    }

    fn wait_for_work(&mut self) -> BoxFuture<'_, ()> {
        let interval = self.interval;
        let jitter =
            Duration::from_millis(rand::random::<u64>() % (interval.as_millis() as u64 / 5 + 1));
        Box::pin(tokio::time::sleep(interval + jitter))
    }
}
