//! `POST /internal/gossip/state-summary` and its answer: decode, check, and what
//! each side does next on the real store (compute the delta the peer lacks, note
//! its report, apply the delta an answer carries).
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use redcloud_controller::meta::{self, Db};
use redcloud_controller::replication::{DELTA_BUDGET, Summary, SummaryReply, decode};
use redcloud_fuzz::DRIFT_MS;

static POPULATED: LazyLock<Db> = LazyLock::new(|| {
    let db = redcloud_fuzz::open("fuzz-anti-entropy");
    redcloud_fuzz::populate(&db);
    db
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let now = redcloud_common::now_ms();
    if which % 2 == 0 {
        let Ok(syn) = decode::<Summary>(body) else {
            return;
        };
        if syn.check().is_err() {
            return;
        }
        if let Some(theirs) = &syn.vector {
            let _ = POPULATED.with(|s| {
                meta::log::note_report(s.conn(), &syn.from, theirs, now)?;
                s.delta(theirs, DELTA_BUDGET)
            });
        }
    } else {
        let Ok(reply) = decode::<SummaryReply>(body) else {
            return;
        };
        if reply.check().is_err() {
            return;
        }
        if let SummaryReply::Differs {
            delta: Some(d),
            vector,
            ..
        } = reply
        {
            let _ = POPULATED.with(|s| {
                let _ = s.apply(d.batch, DRIFT_MS);
                s.delta(&vector, DELTA_BUDGET)
            });
        }
    }
});
