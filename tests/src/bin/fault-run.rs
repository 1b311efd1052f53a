//! The randomized fault run, on demand:
//!
//!   cargo run --release -p redcloud-tests --bin fault-run -- --seed 7 --duration 300
//!
//! Options: --seed N (default 1), --duration SECONDS (default 60), --controllers N (3),
//! --chunkservers N (3), --clients N (3), --max-clock-offset-ms N (1200: restart
//! offsets; clock steps of an hour and ten years are a fault of their own),
//! --bulk-records N (12000 per metadata burst), --max-bulk-bursts N (2),
//! --max-added-controllers N (2).
//! Prints the report as JSON; exits 1 if the checker found an anomaly, 2 on bad arguments.

use std::process::ExitCode;
use std::time::Duration;

use redcloud_tests::fault_run::{FaultRunConfig, run, to_json};

fn parse(args: &[String]) -> Result<FaultRunConfig, String> {
    let mut cfg = FaultRunConfig {
        duration: Duration::from_secs(60),
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: '{v}' is not a whole number"))
        };
        match flag.as_str() {
            "--seed" => cfg.seed = num(value)?,
            "--duration" => cfg.duration = Duration::from_secs(num(value)?),
            "--controllers" => cfg.controllers = num(value)?.clamp(1, 9) as usize,
            "--chunkservers" => cfg.chunkservers = num(value)?.clamp(1, 9) as usize,
            "--clients" => cfg.clients = num(value)?.clamp(1, 64) as usize,
            "--max-clock-offset-ms" => cfg.max_clock_offset_ms = num(value)? as i64,
            "--bulk-records" => cfg.bulk_records = num(value)? as usize,
            "--max-added-controllers" => cfg.max_added_controllers = num(value)? as usize,
            "--max-bulk-bursts" => cfg.max_bulk_bursts = num(value)? as usize,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: fault-run [--seed N] [--duration SECONDS] [--controllers N] [--chunkservers N] [--clients N] [--max-clock-offset-ms N] [--bulk-records N] [--max-bulk-bursts N] [--max-added-controllers N]"
        );
        return ExitCode::SUCCESS;
    }
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fault-run: error: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("REDCLOUD_FAULT_TRACE").is_some() {
        // The nodes' own warnings (refused messages, held records), on stderr.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fault-run: error: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = rt.block_on(run(cfg));
    println!("{}", to_json(&report));
    if report.anomalies.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("fault-run: {} anomalies", report.anomalies.len());
        ExitCode::FAILURE
    }
}
