//! Starting and stopping a controller: bind, open the database, serve gRPC and
//! HTTP, and drain everything on shutdown.

use std::sync::Arc;

use redcloud_proto::MAX_MESSAGE_BYTES;
use redcloud_proto::controller::controller_server::ControllerServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chunks::{Chunks, DataPath};
use crate::config::Config;
use crate::error::ControllerError;
use crate::events::Events;
use crate::meta::{self, Db};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::registry::Registry;
use crate::repair::Repair;
use crate::replication::anti_entropy::AntiEntropy;
use crate::replication::discovery::Discovery;
use crate::replication::gossip::Gossip;
use crate::replication::membership::Membership;
use crate::replication::net::PeerNet;
use crate::replication::peers::Peers;
use crate::replication::{Addrs, Replica};
use crate::search::Indexer;
use crate::service::ControllerService;
use crate::workers::Supervisor;
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

/// How long workers get, once shutdown is asked for, to end their unit of work.
pub const WORKER_STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Waits until the servers, the workers and all background work have stopped
    /// (after shutdown). Workers get [`WORKER_STOP_DEADLINE`] to finish their unit.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.node.workers.stop(WORKER_STOP_DEADLINE).await;
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
    // Read (and checked) before anything else starts: a bad certificate is a
    // configuration error, not a server that fails later.
    let mut builder = redcloud_proto::server_builder();
    if let Some(tls) = tls_config(&config)? {
        builder = builder
            .tls_config(tls)
            .map_err(|e| StartError::Config(format!("TLS: {e}")))?;
    }
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
    let (grpc_addr, http_addr) =
        crate::replication::detect_addrs(configured, grpc_local, http_local, &[]);
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
    let registry = Arc::new(registry);
    let config = Arc::new(config);
    // Connects fail fast on an unreachable peer; a whole call (a large delta from a
    // busy peer) may take longer.
    let net = Arc::new(PeerNet::new(
        std::time::Duration::from_secs(2),
        crate::replication::PEER_REQUEST_TIMEOUT,
        config.cluster_secret.clone(),
    ));
    let metrics = Arc::new(Metrics::default());
    let rpc_metrics = redcloud_common::metrics::RpcMetricsLayer::new(metrics.rpc.clone());
    let peers = Arc::new(Peers::default());
    let (gossip_tx, gossip_rx) = crate::replication::gossip::queue();
    let events = Arc::new(Events::new(gossip_tx, registry.clone(), metrics.clone()));
    let membership = Arc::new(Membership::new(
        id.clone(),
        db.clone(),
        peers.clone(),
        registry.clone(),
        hlc.clone(),
    ));
    let addrs = Arc::new(Addrs::new(grpc_addr, http_addr, detect_from));
    let replica = Arc::new(Replica::new(
        id.clone(),
        addrs,
        db.clone(),
        hlc.clone(),
        peers.clone(),
        net.clone(),
        metrics.clone(),
        events.clone(),
        membership.clone(),
        drift,
    ));
    let chunks = Arc::new(Chunks::new(
        registry.clone(),
        net.clone(),
        config.cluster_secret.clone(),
        config.min_chunk_replicas,
    ));
    let node_tasks = TaskTracker::new();
    let data = Arc::new(DataPath {
        id: id.clone(),
        config: config.clone(),
        db: db.clone(),
        chunks: chunks.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        tasks: node_tasks.clone(),
    });
    let workers = Supervisor::new();
    let node = Arc::new(Node {
        id,
        config: config.clone(),
        db,
        hlc,
        registry: registry.clone(),
        peers: peers.clone(),
        net,
        metrics,
        events,
        membership: membership.clone(),
        replica: replica.clone(),
        chunks,
        data: data.clone(),
        search: search.clone(),
        repair_state: Arc::new(std::sync::Mutex::new(Default::default())),
        workers: workers.clone(),
        tasks: node_tasks.clone(),
        shutdown: shutdown.clone(),
        started: std::time::Instant::now(),
    });

    let tasks = TaskTracker::new();
    // The HTTP routes and discovery first: peers' clocks are sampled (from their
    // answers) before this controller writes anything.
    // One client API for gRPC and the HTTP admin API (they share its transfer slots).
    let service = ControllerService::new(node.clone());
    tasks.spawn(redcloud_common::http::serve(
        listeners.http,
        crate::http::router(node.clone(), service.clone()),
        shutdown.clone(),
    ));
    workers.spawn(
        Discovery::new(
            replica.clone(),
            config.peers.clone(),
            config.discovery_interval,
        ),
        shutdown.clone(),
    );
    settle(&replica, config.max_clock_drift).await?;
    {
        let (id, g, h) = (node.id.clone(), node.grpc_addr(), node.http_addr());
        let written = node
            .db
            .call(move |s| meta::upsert_controller(s, &id, &g, &h))
            .await?;
        node.publish(written, None);
    }
    tracing::info!(node_id = %node.id, grpc = %node.grpc_addr(), http = %node.http_addr(), "controller started");

    let svc = ControllerServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = redcloud_proto::incoming::limited(
        listeners.grpc,
        redcloud_proto::incoming::MAX_CONNECTIONS,
    );
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let r = builder
            .layer(rpc_metrics)
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, sd.cancelled())
            .await;
        if let Err(e) = r {
            tracing::error!("gRPC server failed: {e}");
        }
    });
    workers.spawn(
        Gossip::new(
            replica.clone(),
            gossip_rx,
            config.gossip_interval,
            config.gossip_fanout as usize,
            node_tasks.clone(),
        ),
        shutdown.clone(),
    );
    workers.spawn(
        AntiEntropy {
            replica: replica.clone(),
            interval: config.anti_entropy_interval,
        },
        shutdown.clone(),
    );
    workers.spawn(
        crate::replication::tombstone_gc::worker(
            replica.clone(),
            config.tombstone_grace,
            config.tombstone_gc_interval,
        ),
        shutdown.clone(),
    );
    workers.spawn(
        crate::health::worker(replica.clone(), registry.clone()),
        shutdown.clone(),
    );
    workers.spawn(
        Repair::new(
            data.clone(),
            membership,
            peers,
            node.hlc.clone(),
            node.repair_state.clone(),
            shutdown.clone(),
        ),
        shutdown.clone(),
    );
    workers.spawn(
        Indexer::new(data, search, shutdown.clone()),
        shutdown.clone(),
    );
    Ok(Running { node, tasks })
}

/// Lets writes through once the clock has been checked: as soon as a peer's clock
/// was sampled, or discovery found no other controller, or [`CLOCK_SETTLE`] ran
/// out (peers unreachable: this controller's own clock is all there is).
/// The client API's TLS settings, from `--tls-cert` and `--tls-key` (PEM files).
fn tls_config(config: &Config) -> Result<Option<tonic::transport::ServerTlsConfig>, StartError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path, what: &str| {
        let b = std::fs::read(p)
            .map_err(|e| StartError::Config(format!("TLS {what} {}: {e}", p.display())))?;
        if !String::from_utf8_lossy(&b).contains("-----BEGIN ") {
            return Err(StartError::Config(format!(
                "TLS {what} {}: not a PEM file",
                p.display()
            )));
        }
        Ok(b)
    };
    let identity =
        tonic::transport::Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
}

async fn settle(node: &Arc<Replica>, drift: std::time::Duration) -> Result<(), StartError> {
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
    let margin = drift.as_millis() as i64 / 2;
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
    node.events.publish(written, None);
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
