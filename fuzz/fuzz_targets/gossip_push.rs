//! `POST /internal/gossip/receive`: what the route does with a body, on the real
//! engine and SQLite store: decode (postcard), check, apply.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redcloud_controller::replication::{Push, decode};
use redcloud_fuzz::{DRIFT_MS, STORE};

fuzz_target!(|data: &[u8]| {
    let Ok(push) = decode::<Push>(data) else {
        return;
    };
    if push.check().is_err() {
        return;
    }
    // Refused batches are errors, not panics; accepted ones change the store.
    let _ = STORE.with(|s| s.apply(push.batch, DRIFT_MS));
});
