//! Starting and stopping a controller: bind, open the database, serve gRPC and
//! HTTP, and drain everything on shutdown.

use std::sync::Arc;

use redcloud_proto::MAX_MESSAGE_BYTES;
use redcloud_proto::controller::controller_server::ControllerServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::ControllerError;
use crate::meta::{self, Db};
use crate::node::Node;
use crate::registry::Registry;
use crate::service::ControllerService;
use redcloud_common::Hlc;

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use data directory {dir}: {source}")]
    DataDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the metadata database: {0}")]
    Db(#[from] ControllerError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Longest a controller waits at start for a peer's clock before its first write.
pub const CLOCK_SETTLE: std::time::Duration = std::time::Duration::from_millis(1500);

pub use redcloud_common::net::Listeners;

/// Binds the configured gRPC and HTTP addresses.
pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
    Listeners::bind(&config.grpc_listen, &config.http_listen)
        .await
        .map_err(|(addr, source)| StartError::Bind { addr, source })
}

/// A started controller.
pub struct Running {
    pub node: Arc<Node>,
    tasks: TaskTracker,
}

impl Running {
    /// Waits until the servers and all background work have stopped (after shutdown).
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.node.tasks.close();
        self.node.tasks.wait().await;
    }
}

/// Starts a controller on `listeners`; it runs until `shutdown` is cancelled.
pub async fn start(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    config.validate().map_err(StartError::Config)?;
    let dir_err = |source| StartError::DataDir {
        dir: config.data_dir.display().to_string(),
        source,
    };
    let id = redcloud_common::config::load_or_create_node_id(
        &config.data_dir,
        config.node_id.as_deref(),
    )
    .map_err(dir_err)?;
    let path = config.data_dir.join(format!("{id}.sqlite"));
    let hlc = Arc::new(Hlc::new(config.clock_offset_ms));
    let drift = config.max_clock_drift.as_millis() as u64;
    hlc.set_margin_ms(drift / 2);
    let (db_id, db_hlc) = (id.clone(), hlc.clone());
    let db = tokio::task::spawn_blocking(move || Db::open(&path, db_id, db_hlc, drift))
        .await
        .map_err(|e| dir_err(std::io::Error::other(e)))??;
    let grpc_local = listeners.grpc.local_addr().map_err(dir_err)?;
    let http_local = listeners.http.local_addr().map_err(dir_err)?;
    let configured = config.advertise_addr.as_deref().filter(|a| !a.is_empty());
    let (grpc_addr, http_addr) = crate::node::detect_addrs(configured, grpc_local, http_local, &[]);
    // Detected addresses are checked again by discovery; a configured one is kept.
    let detect_from = (configured.is_none() && grpc_local.ip().is_unspecified())
        .then_some((grpc_local, http_local));

    let search_dir = config.data_dir.clone();
    let search = tokio::task::spawn_blocking(move || crate::search::SearchIndex::open(&search_dir))
        .await
        .map_err(|e| dir_err(std::io::Error::other(e)))?
        .map_err(|e| dir_err(std::io::Error::other(e)))?;
    let search = Arc::new(search);
    let registry = Registry::new(config.heartbeat_timeout);
    registry.load(db.call(|s| meta::chunkservers(s.conn())).await?);
    if config.cluster_secret.is_none() {
        tracing::warn!(
            "no cluster secret set (REDCLOUD_CLUSTER_SECRET): internal calls are unauthenticated"
        );
    }
    let (gossip_tx, gossip_rx) = tokio::sync::mpsc::unbounded_channel();
    let node = Arc::new(Node::new(
        id,
        config,
        db,
        hlc,
        registry,
        grpc_addr,
        http_addr,
        detect_from,
        search,
        shutdown.clone(),
        gossip_tx,
    ));
    let tasks = TaskTracker::new();
    // The HTTP routes and discovery first: peers' clocks are sampled (from their
    // answers and messages) before this controller writes anything.
    let n = node.clone();
    let handler = redcloud_common::http::handler(move |req| crate::http::route(n.clone(), req));
    tasks.spawn(redcloud_common::http::serve(
        listeners.http,
        handler,
        shutdown.clone(),
    ));
    tasks.spawn(crate::replication::discovery::run(
        node.clone(),
        shutdown.clone(),
    ));
    settle(&node).await?;
    {
        let (id, g, h) = (node.id.clone(), node.grpc_addr(), node.http_addr());
        let written = node
            .db
            .call(move |s| meta::upsert_controller(s, &id, &g, &h))
            .await?;
        node.publish(written, None);
    }
    tracing::info!(node_id = %node.id, grpc = %node.grpc_addr(), http = %node.http_addr(), "controller started");

    let svc = ControllerServer::new(ControllerService::new(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = redcloud_common::net::incoming_nodelay(listeners.grpc);
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let r = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024)
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, sd.cancelled())
            .await;
        if let Err(e) = r {
            tracing::error!("gRPC server failed: {e}");
        }
    });
    tasks.spawn(crate::replication::gossip::run(
        node.clone(),
        gossip_rx,
        shutdown.clone(),
    ));
    tasks.spawn(crate::replication::anti_entropy::run(
        node.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::repair::run(node.clone(), shutdown.clone()));
    tasks.spawn(crate::search::run(node.clone(), shutdown.clone()));
    tasks.spawn(crate::health::run(node.clone(), shutdown.clone()));
    tasks.spawn(crate::replication::tombstone_gc::run(
        node.clone(),
        shutdown.clone(),
    ));
    Ok(Running { node, tasks })
}

/// Lets writes through once the clock has been checked: as soon as a peer's clock
/// was sampled, or discovery found no other controller, or [`CLOCK_SETTLE`] ran
/// out (peers unreachable: this controller's own clock is all there is).
async fn settle(node: &Arc<Node>) -> Result<(), StartError> {
    let start = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
    loop {
        tick.tick().await;
        let alone = node.discovery_passes() > 0 && node.peers.all().is_empty();
        if node.hlc.has_peer_samples() || alone || start.elapsed() >= CLOCK_SETTLE {
            break;
        }
    }
    let skew = node.hlc.skew_ms();
    let margin = node.config.max_clock_drift.as_millis() as i64 / 2;
    if skew.abs() > margin {
        tracing::error!(
            skew_ms = skew,
            "this controller's clock is {:.1} s {} the cluster's time (its peers' clocks): \
             timestamps are kept within {:.1} s of the cluster's time; fix the clock",
            skew.abs() as f64 / 1000.0,
            if skew > 0 { "ahead of" } else { "behind" },
            margin as f64 / 1000.0
        );
    } else if !node.hlc.has_peer_samples() && !node.peers.all().is_empty() {
        tracing::warn!(
            "no peer answered within {:.1} s of starting: this controller stamps its writes with its own clock",
            CLOCK_SETTLE.as_secs_f64()
        );
    }
    let written = node.db.call(|s| s.settle()).await?;
    node.settled
        .store(true, std::sync::atomic::Ordering::Release);
    node.publish(written, None);
    Ok(())
}

/// Starts a controller and runs it until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    start(config, listeners, shutdown).await?.wait().await;
    Ok(())
}
