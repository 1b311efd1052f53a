//! The RedCloud chunkserver: a content-addressed chunk store on local disk, served
//! over gRPC with every read verified, reporting to controllers by heartbeat.
//!
//! Entry point: [`server::start`] / [`server::run`] with a [`config::Config`], the
//! bound [`server::Listeners`] and a shutdown token. `main.rs` only parses flags.

pub mod config;
pub mod heartbeat;
pub mod http;
pub mod node;
pub mod scrub;
pub mod server;
pub mod service;
pub mod store;

pub use config::Config;
pub use server::{Listeners, Running, StartError, bind, run, start};
