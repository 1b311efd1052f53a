//! The scrub worker: re-reads and re-hashes every stored chunk in the background, at
//! most `SCRUB_RATE` bytes per second, one full pass per `SCRUB_INTERVAL`. A copy
//! that fails verification is removed by the store (and so is never served),
//! counted, logged, and reported in heartbeats; the controllers' repair worker then
//! copies a good replica back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::store::StoreError;

/// Runs until `shutdown`.
pub async fn run(
    node: Arc<Node>,
    rate_bytes_per_sec: u64,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let started = Instant::now();
        if let Some(found) = pass(&node, rate_bytes_per_sec, &shutdown).await
            && found > 0
        {
            tracing::warn!(corrupt = found, "scrub pass removed corrupt chunk copies");
        }
        node.metrics.scrub_passes.inc();
        let rest = interval.saturating_sub(started.elapsed());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(rest.max(Duration::from_millis(10))) => {}
        }
    }
}

/// One pass over every chunk; returns how many corrupt copies it removed, or
/// `None` if shut down midway.
async fn pass(node: &Arc<Node>, rate: u64, shutdown: &CancellationToken) -> Option<u64> {
    let store = node.store.clone();
    let ids = tokio::task::spawn_blocking(move || {
        let mut ids = Vec::new();
        let _ = store.for_each(|id, _| ids.push(id));
        ids
    })
    .await
    .ok()?;
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut corrupt = 0u64;
    for id in ids {
        if shutdown.is_cancelled() {
            return None;
        }
        let store = node.store.clone();
        let r = tokio::task::spawn_blocking(move || store.get(&id))
            .await
            .ok()?;
        match r {
            Ok(data) => {
                bytes += data.len() as u64;
                node.metrics.scrub_bytes.add(data.len() as u64);
            }
            Err(StoreError::Corrupt(_)) => {
                corrupt += 1;
                node.metrics.scrub_corrupt.inc();
                node.metrics.corrupt_reads.inc();
            }
            Err(StoreError::NotFound(_)) => {} // deleted meanwhile
            Err(e) => tracing::warn!("scrub cannot read chunk {id}: {e}"),
        }
        // Throttle: stay at or under `rate` bytes per second on average.
        if rate > 0 {
            let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
            let ahead = due.saturating_sub(start.elapsed());
            if !ahead.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(ahead) => {}
                }
            }
        }
    }
    Some(corrupt)
}
