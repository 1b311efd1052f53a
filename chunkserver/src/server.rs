//! Starting and stopping a chunkserver: bind, open the store, serve gRPC and HTTP,
//! run the heartbeat worker, and drain everything on shutdown.

use std::sync::Arc;

use redcloud_common::discovery::advertise_addr;
use redcloud_proto::MAX_MESSAGE_BYTES;
use redcloud_proto::chunk::chunkserver_server::ChunkserverServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::node::{Metrics, Node};
use crate::service::ChunkService;
use crate::store::{ChunkStore, StoreError};

/// Why a chunkserver could not start.
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
    #[error("cannot open the chunk store: {0}")]
    Store(#[from] StoreError),
}

pub use redcloud_common::net::Listeners;

/// Binds the configured gRPC and HTTP addresses.
pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
    Listeners::bind(&config.grpc_listen, &config.http_listen)
        .await
        .map_err(|(addr, source)| StartError::Bind { addr, source })
}

/// A started chunkserver.
pub struct Running {
    pub node: Arc<Node>,
    tasks: TaskTracker,
}

impl Running {
    /// Waits until every server and worker has stopped (after shutdown is cancelled).
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Starts a chunkserver on `listeners`; it runs until `shutdown` is cancelled.
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
    let dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || ChunkStore::open(&dir))
        .await
        .map_err(|e| dir_err(std::io::Error::other(e)))??;
    let grpc_local = listeners.grpc.local_addr().map_err(dir_err)?;
    let http_local = listeners.http.local_addr().map_err(dir_err)?;
    let grpc_addr = advertise_addr(config.advertise_addr.as_deref(), grpc_local);
    // The HTTP address shares the advertised host, on the HTTP port.
    let host = grpc_addr
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_default();
    let http_addr = format!("{host}:{}", http_local.port());
    let node = Arc::new(Node {
        id,
        store: Arc::new(store),
        metrics: Metrics::default(),
        grpc_addr,
        http_addr,
        bound: (grpc_local, http_local),
        advertise_configured: config.advertise_addr.clone().filter(|a| !a.is_empty()),
        replicating: Default::default(),
        heartbeats_paused: Default::default(),
        peers: Default::default(),
        cluster_secret: config.cluster_secret.clone(),
        put_budget: Arc::new(tokio::sync::Semaphore::new(crate::node::PUT_BUDGET_BYTES)),
        copy_slots: tokio::sync::Semaphore::new(crate::node::MAX_PEER_COPIES),
    });
    if config.cluster_secret.is_none() {
        tracing::warn!(
            "no cluster secret set (REDCLOUD_CLUSTER_SECRET): internal calls are unauthenticated"
        );
    }
    tracing::info!(
        node_id = %node.id,
        grpc = %node.grpc_addr,
        http = %node.http_addr,
        chunks = node.store.chunk_count(),
        "chunkserver started"
    );

    let tasks = TaskTracker::new();
    let service = ChunkService::new(node.clone());
    // Client reads with a controller's token: a service of its own, outside the
    // secret check below, that can do nothing but read a chunk its token names.
    let read_svc = redcloud_proto::chunk::chunk_read_server::ChunkReadServer::new(
        crate::service::ChunkReadService(std::sync::Arc::new(service.clone())),
    )
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let svc = ChunkserverServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // The chunk API is internal: reads and writes of chunks need the cluster secret.
    let secret = config.cluster_secret.clone();
    let svc =
        tonic::service::interceptor::InterceptedService::new(svc, move |req: tonic::Request<()>| {
            let given = req
                .metadata()
                .get(redcloud_common::http::SECRET_HEADER)
                .and_then(|v| v.to_str().ok());
            if redcloud_common::http::secret_allows(secret.as_deref(), given) {
                Ok(req)
            } else {
                Err(tonic::Status::unauthenticated(
                    "missing or wrong cluster secret",
                ))
            }
        });
    let incoming = redcloud_proto::incoming::limited(
        listeners.grpc,
        redcloud_proto::incoming::MAX_CONNECTIONS,
    );
    let sd = shutdown.clone();
    let rpc_metrics = redcloud_common::metrics::RpcMetricsLayer::new(node.metrics.rpc.clone());
    tasks.spawn(async move {
        let r = redcloud_proto::server_builder()
            .layer(rpc_metrics)
            .add_service(svc)
            .add_service(read_svc)
            .serve_with_incoming_shutdown(incoming, sd.cancelled())
            .await;
        if let Err(e) = r {
            tracing::error!("gRPC server failed: {e}");
        }
    });
    tasks.spawn(redcloud_common::http::serve(
        listeners.http,
        crate::http::router(node.clone()),
        shutdown.clone(),
    ));
    tasks.spawn(crate::scrub::run(
        node.clone(),
        config.scrub_rate,
        config.scrub_interval,
        shutdown.clone(),
    ));
    tasks.spawn(crate::heartbeat::run(
        node.clone(),
        config.controllers.clone(),
        config.heartbeat_interval,
        config.cluster_secret.clone(),
        shutdown.clone(),
    ));
    Ok(Running { node, tasks })
}

/// Starts a chunkserver and runs it until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    start(config, listeners, shutdown).await?.wait().await;
    Ok(())
}
