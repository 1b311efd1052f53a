//! Chunkserver settings: every one a flag with an environment override and a default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Runs a RedCloud chunkserver: stores chunks, serves them verified, and reports to
/// the controllers it finds through DNS.
#[derive(Debug, Clone, Parser)]
#[command(name = "redcloud-chunkserver", version)]
pub struct Config {
    /// Directory holding the chunks and this node's id.
    #[arg(
        long,
        env = "CHUNKSERVER_DATA_DIR",
        default_value = "redcloud-data/chunkserver"
    )]
    pub data_dir: PathBuf,

    /// This node's id; generated (`hostname-timestamp`) and persisted when unset.
    #[arg(long, env = "CHUNKSERVER_NODE_ID")]
    pub node_id: Option<String>,

    /// Address the gRPC chunk service listens on.
    #[arg(long, env = "CHUNKSERVER_GRPC_LISTEN", default_value = "0.0.0.0:8800")]
    pub grpc_listen: String,

    /// Address the HTTP service (`/health`, `/metrics`) listens on.
    #[arg(long, env = "CHUNKSERVER_HTTP_LISTEN", default_value = "0.0.0.0:8801")]
    pub http_listen: String,

    /// gRPC address other nodes use to reach this one; detected (this host's IP) when unset.
    #[arg(long, env = "CHUNKSERVER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Controllers to send heartbeats to: DNS names (every address behind a name is
    /// used, e.g. a Docker network alias) or `host:port` seeds, comma-separated.
    /// The port defaults to the controllers' HTTP port, 8701.
    #[arg(
        long,
        env = "REDCLOUD_CONTROLLERS",
        value_delimiter = ',',
        default_value = "controller"
    )]
    pub controllers: Vec<String>,

    /// How often to send a heartbeat.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "1s", value_parser = redcloud_common::config::parse_duration)]
    pub heartbeat_interval: Duration,

    /// Most bytes per second the scrub worker re-reads (0: unthrottled).
    #[arg(long, env = "SCRUB_RATE", default_value = "32MiB", value_parser = redcloud_common::config::parse_size)]
    pub scrub_rate: u64,

    /// A full scrub pass starts at most this often.
    #[arg(long, env = "SCRUB_INTERVAL", default_value = "1h", value_parser = redcloud_common::config::parse_duration)]
    pub scrub_interval: Duration,

    /// Shared secret for internal calls (optional; without it internal calls are unauthenticated).
    #[arg(long, env = "REDCLOUD_CLUSTER_SECRET", hide_env_values = true, value_parser = redcloud_common::config::parse_secret)]
    pub cluster_secret: Option<String>,
}

/// The controllers' HTTP port, used when a controller name carries no port.
pub const CONTROLLER_HTTP_PORT: u16 = 8701;

impl Config {
    /// The default of `--http-listen`.
    pub fn default_http_listen() -> &'static str {
        "0.0.0.0:8801"
    }

    /// A configuration for tests and embedding: everything on loopback, port 0.
    pub fn for_test(data_dir: PathBuf, controllers: Vec<String>) -> Self {
        Config {
            data_dir,
            node_id: None,
            grpc_listen: "127.0.0.1:0".into(),
            http_listen: "127.0.0.1:0".into(),
            advertise_addr: None,
            controllers,
            heartbeat_interval: Duration::from_millis(200),
            scrub_rate: 0,
            scrub_interval: Duration::from_secs(3600),
            cluster_secret: None,
        }
    }
}
