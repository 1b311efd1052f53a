//! The replication simulation: many controllers in one process, each running the
//! production replication engine, over a simulated network (see `sim.rs`).
//!
//!   cargo run --release -p redcloud-tests --bin simulate -- --nodes 1000 --seed 1
//!
//! Options: --nodes N (1000), --seed N (1), --loss LIST (comma-separated message loss
//! probabilities, one scenario each, run in parallel; default 0,0.01,0.05),
//! --updates N (20 timed updates), --fanout N (3), --write-rate W (1 write/s in the
//! steady window), --window-secs S (120: idle and steady windows), --http-overhead B
//! (150 bytes per request/response pair), --timeout-ms MS (2000), --spike-prob P
//! (0.01: chance of an extra 100 ms on a message), --gossip-interval-ms MS (1000),
//! --anti-entropy-ms MS (30000) — fanout and the two intervals are the controller's
//! `GOSSIP_FANOUT`, `GOSSIP_INTERVAL` and `ANTI_ENTROPY_INTERVAL`.
//! Prints one JSON document; exits 2 on bad arguments.

use std::process::ExitCode;
use std::time::Instant;

use redcloud_tests::sim::{Sim, SimConfig, reference_json, verdict_json};
use serde_json::{Value, json};

struct Args {
    cfg: SimConfig,
    losses: Vec<f64>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut cfg = SimConfig::default();
    let mut losses = vec![0.0, 0.01, 0.05];
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: '{v}' is not a whole number"))
        };
        let real = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{flag}: '{v}' is not a non-negative number"))
        };
        match flag.as_str() {
            "--nodes" => cfg.nodes = (num(value)? as usize).clamp(2, 100_000),
            "--seed" => cfg.seed = num(value)?,
            "--loss" => {
                losses = value
                    .split(',')
                    .map(|v| real(v.trim()))
                    .collect::<Result<Vec<_>, _>>()?;
                if losses.iter().any(|l| *l >= 1.0) || losses.is_empty() {
                    return Err("--loss: each probability must be below 1".into());
                }
            }
            "--updates" => cfg.updates = num(value)? as usize,
            "--fanout" => cfg.fanout = (num(value)? as usize).max(1),
            "--write-rate" => {
                cfg.write_rate = real(value)?;
                if cfg.write_rate <= 0.0 {
                    return Err("--write-rate must be above 0".into());
                }
            }
            "--window-secs" => {
                let s = num(value)?.max(1);
                cfg.idle_window_ms = s * 1000;
                cfg.steady_window_ms = s * 1000;
            }
            "--gossip-interval-ms" => cfg.gossip_interval_ms = num(value)?.max(1),
            "--anti-entropy-ms" => cfg.anti_entropy_interval_ms = num(value)?.max(1),
            "--http-overhead" => cfg.http_overhead = num(value)?,
            "--timeout-ms" => cfg.timeout_ms = num(value)?.max(1),
            "--spike-prob" => cfg.spike_prob = real(value)?.min(1.0),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Args { cfg, losses })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: simulate [--nodes N] [--seed N] [--loss P[,P...]] [--updates N] [--fanout N] [--write-rate W] [--window-secs S] [--http-overhead B] [--timeout-ms MS] [--spike-prob P] [--gossip-interval-ms MS] [--anti-entropy-ms MS]"
        );
        return ExitCode::SUCCESS;
    }
    let Args { cfg, losses } = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("simulate: error: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    // One thread per scenario: each is its own cluster, deterministic on its own.
    let results: Vec<(Value, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = losses
            .iter()
            .map(|&loss| {
                let cfg = SimConfig {
                    loss,
                    ..cfg.clone()
                };
                s.spawn(move || {
                    let t = Instant::now();
                    let r = Sim::new(cfg).run();
                    (r, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scenario panicked"))
            .collect()
    });
    let verdicts: Vec<Value> = results.iter().map(|(r, _)| verdict_json(r)).collect();
    let walls: Vec<Value> = results
        .iter()
        .map(|(r, w)| json!({"loss": r["loss"], "wall_s": (w * 10.0).round() / 10.0}))
        .collect();
    let mut config = cfg.to_json();
    config["loss_per_message"] = json!(losses);
    let out = json!({
        "simulation": "discrete-event, seeded; every controller is a MemReplica running the production replication engine",
        "config": config,
        "reference": reference_json(),
        "idle_exchange": results.first().map(|(r, _)| r["idle_exchange"].clone()),
        "verdict": verdicts,
        "scenarios": results.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        "wall_time": {
            "total_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "per_scenario": walls,
            "note": "the only part of this document that is not determined by the seed",
        },
    });
    match serde_json::to_string_pretty(&out) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::FAILURE
        }
    }
}
