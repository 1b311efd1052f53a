//! Starting and stopping a controller: bind, open the database, serve gRPC and
//! HTTP, and drain everything on shutdown.

use std::sync::Arc;

use redcloud_proto::MAX_MESSAGE_BYTES;
use redcloud_proto::controller::controller_server::ControllerServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::db::{self, Db};
use crate::error::ControllerError;
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
}

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
    let (db_id, db_hlc) = (id.clone(), hlc.clone());
    let db = tokio::task::spawn_blocking(move || Db::open(&path, db_id, db_hlc))
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
    registry.load(db.call(|s| db::chunkservers(&s.conn)).await?);
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
    {
        let (id, g, h) = (node.id.clone(), node.grpc_addr(), node.http_addr());
        let written = node
            .db
            .call(move |s| db::upsert_controller(s, &id, &g, &h))
            .await?;
        node.publish(written, None);
    }
    tracing::info!(node_id = %node.id, grpc = %node.grpc_addr(), http = %node.http_addr(), "controller started");

    let tasks = TaskTracker::new();
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
    tasks.spawn(crate::replication::discovery::run(
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
    let n = node.clone();
    let handler = redcloud_common::http::handler(move |req| crate::http::route(n.clone(), req));
    tasks.spawn(redcloud_common::http::serve(
        listeners.http,
        handler,
        shutdown.clone(),
    ));
    Ok(Running { node, tasks })
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
