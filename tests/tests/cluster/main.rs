//! Cluster tests on real servers over loopback (see `redcloud_tests::TestCluster`).
//! Numbered modules run from the basic path to failures.

mod t10_round_trip;
mod t12_listing;
mod t15_chunk_api;
mod t20_chunkserver_loss;
mod t25_frozen;
mod t30_corruption;
mod t40_malformed;
mod t42_limits;
mod t43_hostile;
mod t45_cluster_secret;
mod t47_tls;
mod t50_replication;
mod t52_causal_sessions;
mod t55_tombstone_gc;
mod t57_operator_faults;
mod t60_repair;
mod t70_fault_run;
mod t80_search;
mod t85_accounts;
mod t88_admin_api;
mod t90_logs;
mod t92_metrics;
mod t95_dashboard;
