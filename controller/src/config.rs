//! Controller settings: every one a flag with an environment override and a default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use redcloud_common::config::{parse_duration, parse_size};

/// Runs a RedCloud controller: metadata, the client API and the chunkserver registry.
#[derive(Debug, Clone, Parser)]
#[command(name = "redcloud-controller", version)]
pub struct Config {
    /// Directory holding this node's id and its SQLite database.
    #[arg(
        long,
        env = "CONTROLLER_DATA_DIR",
        default_value = "redcloud-data/controller"
    )]
    pub data_dir: PathBuf,

    /// This node's id; generated (`hostname-timestamp`) and persisted when unset.
    #[arg(long, env = "CONTROLLER_NODE_ID")]
    pub node_id: Option<String>,

    /// Address the gRPC client API listens on.
    #[arg(long, env = "CONTROLLER_GRPC_LISTEN", default_value = "0.0.0.0:8700")]
    pub grpc_listen: String,

    /// Address the HTTP service (`/health`, `/metrics`, `/internal/...`) listens on.
    #[arg(long, env = "CONTROLLER_HTTP_LISTEN", default_value = "0.0.0.0:8701")]
    pub http_listen: String,

    /// gRPC address other nodes and clients use to reach this one; detected when unset.
    #[arg(long, env = "CONTROLLER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Chunkservers that must durably hold every chunk before an upload is
    /// acknowledged (capped by how many are healthy).
    #[arg(long, env = "MIN_CHUNK_REPLICAS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_chunk_replicas: u32,

    /// Size of the chunks files are cut into.
    #[arg(long, env = "CHUNK_SIZE", default_value = "1MiB", value_parser = parse_chunk_size)]
    pub chunk_size: u64,

    /// A chunkserver not heard from for this long is marked failed.
    #[arg(long, env = "HEARTBEAT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,

    /// Other controllers: DNS names (every address behind a name, e.g. the Docker
    /// network alias) or `host:port` seeds, comma-separated. The port defaults to 8701.
    #[arg(
        long,
        env = "CONTROLLER_PEERS",
        value_delimiter = ',',
        default_value = "controller"
    )]
    pub peers: Vec<String>,

    /// How often peer names are resolved again.
    #[arg(long, env = "DISCOVERY_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub discovery_interval: Duration,

    /// Peers each new update is pushed to.
    #[arg(long, env = "GOSSIP_FANOUT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub gossip_fanout: u32,

    /// Longest an update waits for a reachable peer that missed its push.
    #[arg(long, env = "GOSSIP_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub gossip_interval: Duration,

    /// How often a controller runs pull anti-entropy with a random peer.
    #[arg(long, env = "ANTI_ENTROPY_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub anti_entropy_interval: Duration,

    /// A tombstone is purged only after every controller has seen it and it is this old.
    #[arg(long, env = "TOMBSTONE_GRACE", default_value = "1h", value_parser = parse_duration)]
    pub tombstone_grace: Duration,

    /// How often tombstone collection runs.
    #[arg(long, env = "TOMBSTONE_GC_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub tombstone_gc_interval: Duration,

    /// How often the repair worker runs (it also runs when a chunkserver joins or returns).
    #[arg(long, env = "REPAIR_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub repair_interval: Duration,

    /// Chunk copies the repair worker runs at once.
    #[arg(long, env = "REPAIR_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub repair_concurrency: u32,

    /// Most bytes per second the repair worker copies (0: unthrottled), so clients keep service.
    #[arg(long, env = "REPAIR_RATE", default_value = "0", value_parser = parse_size)]
    pub repair_rate: u64,

    /// An unreferenced chunk is deleted from the chunkservers after this long.
    #[arg(long, env = "CHUNK_GC_GRACE", default_value = "10m", value_parser = parse_gc_grace)]
    pub chunk_gc_grace: Duration,

    /// A record stamped more than this ahead of this controller's clock is held back
    /// (not applied) until it no longer is; timestamps are kept within half of it of
    /// the cluster's time. Tombstones are kept at least this long.
    #[arg(long, env = "MAX_CLOCK_DRIFT", default_value = "60s", value_parser = parse_duration)]
    pub max_clock_drift: Duration,

    /// Collect unreferenced chunks even when no other controller is known (a
    /// one-controller cluster). Without it, a controller that knows no peer deletes
    /// no chunk: it may be one cut off from the others by a wrong peer list.
    #[arg(long, env = "CONTROLLER_STANDALONE", default_value_t = false)]
    pub standalone: bool,

    /// Skews this node's wall clock (milliseconds, may be negative). For fault tests.
    #[arg(
        long,
        env = "CONTROLLER_CLOCK_OFFSET_MS",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide = true
    )]
    pub clock_offset_ms: i64,

    /// Shared secret for internal calls (optional; without it internal calls are unauthenticated).
    #[arg(long, env = "REDCLOUD_CLUSTER_SECRET", hide_env_values = true, value_parser = redcloud_common::config::parse_secret)]
    pub cluster_secret: Option<String>,

    /// An upload whose client sends nothing for this long is dropped (a frozen or
    /// stalling client gives up its memory and chunk slots).
    #[arg(long, env = "UPLOAD_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub upload_idle_timeout: Duration,

    /// Serve the client API (gRPC) over TLS with this certificate chain (PEM);
    /// needs --tls-key. Clients then use https:// addresses.
    #[arg(long, env = "REDCLOUD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "REDCLOUD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The chunk GC grace also bounds how long an upload may take (80% of it), so it
/// cannot be shorter than a few seconds.
fn parse_gc_grace(s: &str) -> Result<Duration, String> {
    let v = parse_duration(s)?;
    if v < MIN_CHUNK_GC_GRACE {
        return Err(format!(
            "must be at least {MIN_CHUNK_GC_GRACE:?}: an upload must finish within 80% of it"
        ));
    }
    Ok(v)
}

/// The shortest `CHUNK_GC_GRACE` accepted.
pub const MIN_CHUNK_GC_GRACE: Duration = Duration::from_secs(10);

fn parse_chunk_size(s: &str) -> Result<u64, String> {
    let v = parse_size(s)?;
    let max = redcloud_common::chunking::MAX_CHUNK_SIZE as u64;
    if v == 0 || v > max {
        return Err(format!("chunk size must be between 1 byte and {max} bytes"));
    }
    Ok(v)
}

impl Config {
    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.tombstone_grace < self.max_clock_drift {
            return Err(format!(
                "TOMBSTONE_GRACE ({:?}) must be at least MAX_CLOCK_DRIFT ({:?}): a write stamped by a \
                 clock within the drift must always be newer than any tombstone already purged",
                self.tombstone_grace, self.max_clock_drift
            ));
        }
        if self.max_clock_drift < Duration::from_millis(100) {
            return Err("MAX_CLOCK_DRIFT must be at least 100ms".into());
        }
        Ok(())
    }

    /// The default of `--http-listen`.
    pub fn default_http_listen() -> &'static str {
        "0.0.0.0:8701"
    }

    /// A configuration for tests and embedding: everything on loopback, port 0.
    pub fn for_test(data_dir: PathBuf) -> Self {
        Config {
            data_dir,
            node_id: None,
            grpc_listen: "127.0.0.1:0".into(),
            http_listen: "127.0.0.1:0".into(),
            advertise_addr: None,
            min_chunk_replicas: 2,
            chunk_size: redcloud_common::chunking::DEFAULT_CHUNK_SIZE as u64,
            heartbeat_timeout: Duration::from_secs(3),
            peers: Vec::new(),
            discovery_interval: Duration::from_secs(1),
            gossip_fanout: 3,
            gossip_interval: Duration::from_millis(200),
            anti_entropy_interval: Duration::from_secs(2),
            tombstone_grace: Duration::from_secs(3600),
            repair_interval: Duration::from_secs(2),
            repair_concurrency: 4,
            repair_rate: 0,
            chunk_gc_grace: Duration::from_secs(3600),
            tombstone_gc_interval: Duration::from_secs(5),
            max_clock_drift: Duration::from_secs(60),
            standalone: false,
            clock_offset_ms: 0,
            cluster_secret: None,
            tls_cert: None,
            tls_key: None,
            upload_idle_timeout: Duration::from_secs(30),
        }
    }
}
