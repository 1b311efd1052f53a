//! The change feed: records written here or learned from a peer go from the one
//! place that changed the store to everything that follows the replicated state
//! (push gossip, the search indexer, the chunkserver registry, discovery), so none
//! of those modules needs to know the others.

use std::sync::Arc;

use redcloud_common::NodeId;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::records::{Body, Record, Table};
use crate::registry::Registry;
use crate::replication::gossip::{self, Outgoing};

/// Where changes go.
pub struct Events {
    gossip_tx: gossip::Sender,
    /// Wakes the search indexer (files changed).
    pub search_wakeup: Arc<Notify>,
    /// Wakes the repair worker before its interval (a chunkserver joined, returned,
    /// lost chunks or found corruption).
    pub repair_wakeup: Arc<Notify>,
    /// Wakes discovery to read the controllers the database knows.
    pub controllers_changed: Arc<Notify>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl Events {
    pub fn new(
        gossip_tx: gossip::Sender,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> Events {
        Events {
            gossip_tx,
            search_wakeup: Arc::new(Notify::new()),
            repair_wakeup: Arc::new(Notify::new()),
            controllers_changed: Arc::new(Notify::new()),
            registry,
            metrics,
        }
    }

    /// Records written here, or learned, go to push gossip (not back to `from`, where
    /// they came from) and wake the search indexer if files changed.
    pub fn publish(&self, records: Vec<Record>, from: Option<NodeId>) {
        if records.is_empty() {
            return;
        }
        if records
            .iter()
            .any(|r| matches!(r.table(), Table::Files | Table::Chunks | Table::Deletions))
        {
            self.search_wakeup.notify_one();
        }
        self.gossip_tx.send(Outgoing {
            records,
            exclude: from,
        });
    }

    /// Records learned from a peer that changed our state: the chunkservers and
    /// controllers they describe are taken in, and they are passed on.
    pub fn learned(&self, changed: Vec<Record>, from: Option<NodeId>) {
        if changed.is_empty() {
            return;
        }
        self.metrics
            .gossip_records_applied
            .add(changed.len() as u64);
        let mut chunkservers = Vec::new();
        let mut controllers = false;
        for r in &changed {
            match (&r.body, r.version.deleted) {
                (
                    Body::Chunkserver {
                        grpc_addr,
                        http_addr,
                        healthy,
                    },
                    false,
                ) => {
                    let cs = r.key.split_once('/').map(|(c, _)| c).unwrap_or(&r.key);
                    if let Ok(id) = NodeId::new(cs) {
                        chunkservers.push((
                            crate::model::ChunkserverRecord {
                                node_id: id,
                                grpc_addr: grpc_addr.clone(),
                                http_addr: http_addr.clone(),
                            },
                            *healthy,
                        ));
                    }
                }
                _ if r.table() == Table::ControllerNodes => controllers = true,
                _ => {}
            }
        }
        if !chunkservers.is_empty() {
            self.registry.load(chunkservers);
        }
        if controllers {
            self.controllers_changed.notify_one();
        }
        self.publish(changed, from);
    }
}
