//! The short randomized fault run (the long one: `--bin fault-run`, see README.md).
//! Replay a failure with `REDCLOUD_FAULT_SEED=<seed> cargo test fault_run`.

use std::time::Duration;

use redcloud_tests::fault_run::{FaultRunConfig, run, seed_from_env, to_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_run_keeps_every_acknowledged_write() {
    let cfg = FaultRunConfig {
        seed: seed_from_env(20261122),
        duration: Duration::from_secs(15),
        ..Default::default()
    };
    let report = run(cfg).await;
    println!("{}", to_json(&report));
    assert!(report.faults_total >= 5, "too few faults injected");
    assert!(
        report.operations.get("upload_acked").copied().unwrap_or(0) >= 10,
        "too few acknowledged uploads to check"
    );
    assert!(
        report.anomalies.is_empty(),
        "seed {}: {} anomalies: {:#?}",
        report.seed,
        report.anomalies.len(),
        report.anomalies
    );
}
