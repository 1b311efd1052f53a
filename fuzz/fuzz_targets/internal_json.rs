//! The JSON internal routes and answers: heartbeats and their answers, peer
//! registrations and peer lists. Decode, then the same checks the routes make
//! before anything is taken from a message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redcloud_common::wire::{Heartbeat, HeartbeatAck};
use redcloud_controller::replication::PeerInfo;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(hb) = serde_json::from_slice::<Heartbeat>(body) {
                let _ = hb.check();
                let registry = redcloud_controller::registry::Registry::new(
                    std::time::Duration::from_secs(30),
                );
                if hb.check().is_ok() {
                    let _ = registry.heartbeat(&hb);
                }
            }
        }
        1 => {
            let _ = serde_json::from_slice::<HeartbeatAck>(body);
        }
        2 => {
            if let Ok(p) = serde_json::from_slice::<PeerInfo>(body) {
                let _ = p.check();
            }
        }
        _ => {
            if let Ok(list) = serde_json::from_slice::<Vec<PeerInfo>>(body) {
                for p in list {
                    let _ = p.check();
                }
            }
        }
    }
});
