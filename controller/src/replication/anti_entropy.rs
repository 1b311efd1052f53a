//! Pull anti-entropy: every `ANTI_ENTROPY_INTERVAL` a controller exchanges version
//! vectors with one random peer. The peer answers with what we lack; we then push
//! what it lacks. Both legs carry only the difference: an idle round is two small
//! version vectors.

use std::sync::Arc;
use std::time::Duration;

use redcloud_common::http::HttpError;
use tokio_util::sync::CancellationToken;

use super::{DELTA_LIMIT, Push, PushAck, Summary, SummaryReply, decode, encode};
use crate::node::Node;

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
}

/// Most rounds one exchange runs when deltas are cut at [`DELTA_LIMIT`].
const MAX_ROUNDS: usize = 64;

/// One anti-entropy exchange with the peer at `peer_http`, repeated until neither
/// side's delta was cut short.
pub async fn exchange(node: &Arc<Node>, peer_http: &str) -> Result<ExchangeStats, ExchangeError> {
    let mut stats = ExchangeStats::default();
    for _ in 0..MAX_ROUNDS {
        node.metrics.anti_entropy_rounds.inc();
        let vector = node.db.call(|s| Ok(s.vector())).await?;
        // The peer computes its answer after this moment: a complete answer means we
        // hold everything it held at or after it (chunk GC relies on this time).
        let asked_at = redcloud_common::now_ms();
        let syn = encode(&Summary {
            from: node.id.clone(),
            from_http: node.http_addr(),
            vector,
        });
        let answer = node
            .net
            .post(peer_http, "/internal/gossip/state-summary", syn)
            .await?;
        let reply: SummaryReply = decode(&answer).map_err(|e| ExchangeError::Malformed {
            peer: peer_http.to_string(),
            reason: e.to_string(),
        })?;
        let their_complete = reply.delta.complete;
        stats.received += reply.delta.records.len();
        let peer_id = reply.from.clone();
        let their_vector = reply.vector.clone();
        let delta = reply.delta;
        let changed = node
            .db
            .call(move |s| {
                let complete = delta.complete.then_some(&their_vector);
                let changed = s.apply_delta(delta.records, &delta.superseded, complete)?;
                s.note_peer_vector(&peer_id, &their_vector, delta.complete.then_some(asked_at))?;
                Ok(changed)
            })
            .await?;
        node.learned(changed, Some(reply.from.clone())).await;

        // Push back what the peer lacks.
        let their_vector = reply.vector;
        let (ours, our_vector) = node
            .db
            .call(move |s| Ok((s.delta(&their_vector, DELTA_LIMIT)?, s.vector())))
            .await?;
        let our_complete = ours.complete;
        if !ours.records.is_empty() || !ours.superseded.is_empty() {
            stats.sent += ours.records.len();
            let push = encode(&Push {
                from: node.id.clone(),
                from_http: node.http_addr(),
                records: ours.records,
                superseded: ours.superseded,
                complete_from: our_complete.then_some(our_vector),
            });
            let ack = node
                .net
                .post(peer_http, "/internal/gossip/receive", push)
                .await?;
            decode::<PushAck>(&ack).map_err(|e| ExchangeError::Malformed {
                peer: peer_http.to_string(),
                reason: e.to_string(),
            })?;
        }
        node.peers.mark_ok(peer_http);
        if their_complete && our_complete {
            return Ok(stats);
        }
    }
    Ok(stats)
}

/// Runs until `shutdown`: one exchange with a random peer per interval.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let interval = node.config.anti_entropy_interval;
    loop {
        // Jitter spreads the rounds of controllers started together.
        let jitter =
            Duration::from_millis(rand::random::<u64>() % (interval.as_millis() as u64 / 5 + 1));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval + jitter) => {}
        }
        let Some(peer) = node.peers.random(1, None).into_iter().next() else {
            continue;
        };
        match exchange(&node, &peer.http_addr).await {
            Ok(s) if s.received + s.sent > 0 => {
                tracing::info!(peer = %peer.http_addr, received = s.received, sent = s.sent, "anti-entropy repaired a difference");
                node.peers.set_needs_sync(&peer.http_addr, false);
            }
            Ok(_) => node.peers.set_needs_sync(&peer.http_addr, false),
            Err(e) => {
                node.metrics.anti_entropy_failures.inc();
                tracing::debug!(peer = %peer.http_addr, "anti-entropy failed: {e}");
            }
        }
    }
}
