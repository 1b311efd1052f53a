//! What the fuzz targets share: a real metadata store (the production engine on
//! SQLite) in a directory of its own, opened once per fuzzing process.

use std::sync::{Arc, LazyLock};

use redcloud_common::NodeId;
use redcloud_common::clock::Hlc;
use redcloud_controller::meta::Db;

/// `MAX_CLOCK_DRIFT` as a controller's default (60 s).
pub const DRIFT_MS: u64 = 60_000;

/// A settled store in `$TMPDIR/redcloud-fuzz-PID/` (the fuzz script removes it).
pub static STORE: LazyLock<Db> = LazyLock::new(|| open("fuzz-target"));

/// Opens a settled store for `node` in a fresh directory.
pub fn open(node: &str) -> Db {
    let dir = std::env::temp_dir().join(format!("redcloud-fuzz-{}-{node}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fuzz store directory");
    let db = Db::open(
        &dir.join("meta.db"),
        NodeId::new(node).expect("node id"),
        Arc::new(Hlc::new(0)),
        DRIFT_MS,
    )
    .expect("open the fuzz store");
    db.with(|s| s.settle()).expect("settle");
    db
}

/// Writes one record of every kind to `db` (an account, a session, a controller,
/// a chunkserver, a file with its chunk list and copy, a deletion) and returns them.
pub fn populate(db: &Db) -> Vec<redcloud_controller::records::Record> {
    use redcloud_common::ChunkId;
    use redcloud_controller::meta;
    use redcloud_controller::model::{ChunkRef, ChunkserverRecord, FileRecord};
    let now = redcloud_common::now_ms();
    db.with(|s| {
        let mut out = Vec::new();
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let (user, w) = meta::users::register(s, "alice", hash.into(), now).expect("register");
        out.extend(w);
        out.extend(
            meta::users::create_session(s, "0123456789abcdef0123456789abcdef", &user, "ab".repeat(32), now + 60_000)
                .expect("session"),
        );
        let peer = NodeId::new("controller-2").expect("id");
        out.extend(
            meta::upsert_controller(s, &peer, "10.0.0.2:8700", "10.0.0.2:8701").expect("peer"),
        );
        let cs = NodeId::new("chunkserver-1").expect("id");
        let record = ChunkserverRecord {
            node_id: cs.clone(),
            grpc_addr: "10.0.0.3:8800".into(),
            http_addr: "10.0.0.3:8801".into(),
        };
        out.extend(meta::upsert_chunkserver(s, &record, true).expect("chunkserver"));
        let data = b"It was the best of times, it was the worst of times";
        let chunk_id = ChunkId::of(data);
        let file = FileRecord {
            file_id: redcloud_common::FileId::generate(),
            owner: user.clone(),
            name: "tale.txt".into(),
            size: data.len() as u64,
            sha256: hex_of(&redcloud_common::hash::sha256(data)),
            chunk_size: 1 << 20,
            chunk_count: 1,
            public: true,
            created_at_ms: now,
            meta: redcloud_common::replication::Version {
                vclock: Default::default(),
                hlc: Default::default(),
                origin: Default::default(),
                seq: 0,
                deleted: false,
            },
        };
        let chunks = [ChunkRef {
            index: 0,
            chunk_id,
            size: data.len() as u64,
        }];
        out.extend(meta::insert_file(s, &file, &chunks, &[(chunk_id, cs)]).expect("file"));
        out.extend(meta::delete_name(s, &user, "tale.txt").expect("delete").1);
        out
    })
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
