//! The RedCloud controller: metadata in SQLite, the gRPC client API, the chunkserver
//! registry, and the upload and download paths.
//!
//! Entry point: [`server::start`] / [`server::run`] with a [`config::Config`], the
//! bound [`server::Listeners`] and a shutdown token. `main.rs` only parses flags.

pub mod api;
pub mod auth;
pub mod chunks;
pub mod config;
pub mod dashboard;
pub mod download;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod node;
pub mod records;
pub mod registry;
pub mod repair;
pub mod replication;
pub mod search;
pub mod server;
pub mod service;
pub mod status;
pub mod upload;
pub mod workers;

pub use config::Config;
pub use server::{Listeners, Running, StartError, bind, run, start};
