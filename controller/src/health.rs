//! The chunkserver-health worker: once a second, turns the health changes this
//! controller observed (heartbeats stopping past `HEARTBEAT_TIMEOUT`, or resuming)
//! into replicated `chunkserver_nodes` writes, so every controller learns them by
//! gossip — also those that cannot hear the chunkserver themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::meta;
use crate::model::ChunkserverRecord;
use crate::node::Node;

/// Writes observed health changes (and `changed`, a chunkserver whose addresses
/// changed) as replicated records, and pushes them.
pub async fn record_changes(node: &Arc<Node>, changed: Option<ChunkserverRecord>) -> Result<()> {
    if !node.is_settled() {
        // Nothing is written before the clock is checked; the observations are
        // recorded by the first pass after.
        return Ok(());
    }
    let mut changes = node.registry.transitions();
    if let Some(r) = changed
        && !changes.iter().any(|(c, _)| c.node_id == r.node_id)
    {
        changes.push((r, true));
    }
    if changes.is_empty() {
        return Ok(());
    }
    let written = node
        .db
        .call(move |s| {
            let mut out = Vec::new();
            for (cs, healthy) in &changes {
                out.extend(meta::upsert_chunkserver(s, cs, *healthy)?);
            }
            Ok(out)
        })
        .await?;
    node.publish(written, None);
    Ok(())
}

/// Runs until `shutdown`.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = record_changes(&node, None).await {
            tracing::warn!("cannot record chunkserver health: {e}");
        }
    }
}
