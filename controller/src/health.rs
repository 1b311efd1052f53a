//! The chunkserver-health worker: once a second, turns the health changes this
//! controller observed (heartbeats stopping past `HEARTBEAT_TIMEOUT`, or resuming)
//! into replicated `chunkserver_nodes` writes, so every controller learns them by
//! gossip — also those that cannot hear the chunkserver themselves.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::meta;
use crate::model::ChunkserverRecord;
use crate::registry::Registry;
use crate::replication::Replica;
use crate::workers::{BoxFuture, Periodic, WorkerState};

/// Writes observed health changes (and `changed`, a chunkserver whose addresses
/// changed) as replicated records, and pushes them.
pub async fn record_changes(
    replica: &Replica,
    registry: &Registry,
    changed: Option<ChunkserverRecord>,
) -> Result<()> {
    if !replica.is_settled() {
        // Nothing is written before the clock is checked; the observations are
        // recorded by the first pass after.
        return Ok(());
    }
    let mut changes = registry.transitions();
    if let Some(r) = changed
        && !changes.iter().any(|(c, _)| c.node_id == r.node_id)
    {
        changes.push((r, true));
    }
    if changes.is_empty() {
        return Ok(());
    }
    let written = replica
        .db
        .call(move |s| {
            let mut out = Vec::new();
            for (cs, healthy) in &changes {
                out.extend(meta::upsert_chunkserver(s, cs, *healthy)?);
            }
            Ok(out)
        })
        .await?;
    replica.events.publish(written, None);
    Ok(())
}

/// The worker: once a second.
pub fn worker(
    replica: Arc<Replica>,
    registry: Arc<Registry>,
) -> Periodic<impl FnMut() -> BoxFuture<'static, Result<WorkerState, String>>> {
    Periodic::new("chunkserver-health", Duration::from_secs(1), move || {
        let (replica, registry) = (replica.clone(), registry.clone());
        let fut: BoxFuture<'static, Result<WorkerState, String>> = Box::pin(async move {
            record_changes(&replica, &registry, None)
                .await
                .map_err(|e| format!("cannot record chunkserver health: {e}"))?;
            Ok(WorkerState::Idle)
        });
        fut
    })
}
