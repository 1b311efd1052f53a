//! Writes seed corpora for the fuzz targets into `fuzz/corpus/<target>/`: real
//! messages as the nodes send them (from a real store), and openings and endings
//! of real Project Gutenberg books from `../shared/corpus/books`.

use std::path::{Path, PathBuf};

use prost::Message;
use redcloud_common::NodeId;
use redcloud_common::replication::VersionVector;
use redcloud_common::wire::{ControllerRef, Heartbeat, HeartbeatAck};
use redcloud_controller::replication::{PeerInfo, Push, Summary, SummaryReply, encode};
use redcloud_proto::chunk;
use redcloud_proto::controller as pb;

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    std::fs::write(dir.join(name), data).expect("seed");
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(body);
    v
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let books = std::env::args().nth(2);

    // Replication: every kind of record, as one peer's delta to an empty one.
    let db = redcloud_fuzz::open("seed-origin");
    redcloud_fuzz::populate(&db);
    let delta = db
        .with(|s| s.delta(&VersionVector::default(), 1 << 20))
        .expect("delta");
    let vector = db.with(|s| s.vector());
    let from = NodeId::new("seed-origin").expect("id");
    let push = Push {
        from: from.clone(),
        from_http: "10.0.0.1:8701".into(),
        clock_ms: redcloud_common::now_ms(),
        batch: delta.batch.clone(),
    };
    let dir = root.join("gossip_push");
    write(&dir, "all-kinds", &encode(&push));
    for (i, r) in delta.batch.records.iter().enumerate() {
        let mut one = push.clone();
        one.batch.records = vec![r.clone()];
        one.batch.ranges.clear();
        write(&dir, &format!("record-{i}"), &encode(&one));
    }

    let dir = root.join("anti_entropy");
    let summary = Summary {
        from: from.clone(),
        from_http: "10.0.0.1:8701".into(),
        clock_ms: redcloud_common::now_ms(),
        hash: vector.hash(),
        vector: Some(vector.clone()),
    };
    write(&dir, "summary", &tagged(0, &encode(&summary)));
    let bare = Summary {
        vector: None,
        ..summary.clone()
    };
    write(&dir, "summary-hash-only", &tagged(0, &encode(&bare)));
    let reply = SummaryReply::Differs {
        from: from.clone(),
        clock_ms: redcloud_common::now_ms(),
        vector: vector.clone(),
        delta: Some(delta),
    };
    write(&dir, "reply-with-delta", &tagged(1, &encode(&reply)));
    let same = SummaryReply::Same {
        from: from.clone(),
        clock_ms: 1,
    };
    write(&dir, "reply-same", &tagged(1, &encode(&same)));

    // Internal JSON.
    let dir = root.join("internal_json");
    let hb = Heartbeat {
        node_id: NodeId::new("chunkserver-1").expect("id"),
        grpc_addr: "10.0.0.3:8800".into(),
        http_addr: "10.0.0.3:8801".into(),
        capacity_bytes: 1 << 40,
        free_bytes: 1 << 39,
        used_bytes: 12345,
        chunk_count: 7,
        corrupt_found: 0,
        controllers: vec![ControllerRef {
            node_id: from.clone(),
            http_addr: "10.0.0.1:8701".into(),
        }],
    };
    let json = |v: &dyn erased::Json| v.json();
    write(&dir, "heartbeat", &tagged(0, &json(&hb)));
    let ack = HeartbeatAck {
        controller_id: from.clone(),
        controllers: vec!["10.0.0.1:8701".into(), "10.0.0.2:8701".into()],
    };
    write(&dir, "heartbeat-ack", &tagged(1, &json(&ack)));
    let peer = PeerInfo {
        node_id: from.clone(),
        grpc_addr: "10.0.0.1:8700".into(),
        http_addr: "10.0.0.1:8701".into(),
        clock_ms: Some(redcloud_common::now_ms()),
        hlc: Some(1 << 40),
    };
    write(&dir, "peer", &tagged(2, &json(&peer)));
    write(&dir, "peers", &tagged(3, &json(&vec![peer.clone(), peer])));

    // gRPC messages, tagged as grpc_requests reads them.
    let dir = root.join("grpc_requests");
    let id = redcloud_common::ChunkId::of(b"chunk").to_hex();
    let msgs: Vec<(u8, Vec<u8>)> = vec![
        (
            0,
            pb::UploadRequest {
                msg: Some(pb::upload_request::Msg::Start(pb::UploadStart {
                    name: "books/tale.txt".into(),
                    size: 1000,
                    public: true,
                    after: 0,
                })),
            }
            .encode_to_vec(),
        ),
        (
            1,
            pb::DownloadRequest {
                name: "tale.txt".into(),
                version: redcloud_common::FileId::generate().to_string(),
                owner: "alice".into(),
                offset: 0,
            }
            .encode_to_vec(),
        ),
        (
            4,
            pb::RegisterRequest {
                username: "alice".into(),
                password: "correct horse".into(),
            }
            .encode_to_vec(),
        ),
        (
            5,
            pb::ForgetNodeRequest {
                node_id: "chunkserver-1".into(),
                force: false,
            }
            .encode_to_vec(),
        ),
        (6, b"Bearer rc1.0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_vec()),
        (
            7,
            chunk::PutChunkRequest {
                msg: Some(chunk::put_chunk_request::Msg::Header(
                    chunk::PutChunkHeader {
                        chunk_id: id.clone(),
                        size: 5,
                    },
                )),
            }
            .encode_to_vec(),
        ),
        (
            9,
            chunk::ReplicateFromPeerRequest {
                chunk_id: id.clone(),
                source_address: "10.0.0.3:8800".into(),
            }
            .encode_to_vec(),
        ),
        (
            10,
            chunk::StatRequest {
                chunk_ids: vec![id.clone(), "zz".into()],
            }
            .encode_to_vec(),
        ),
        (
            15,
            pb::SearchRequest {
                query: "best of times".into(),
                author: "Dickens".into(),
                language: "en".into(),
                title: String::new(),
                limit: 10,
            }
            .encode_to_vec(),
        ),
    ];
    for (i, (tag, body)) in msgs.iter().enumerate() {
        write(&dir, &format!("msg-{i}"), &tagged(*tag, body));
    }

    let dir = root.join("search_query");
    for (i, q) in [
        "best times",
        "\"worst of\"",
        "tim*",
        "cities\0Dickens\0en\0Tale\0\x05",
        "吾輩",
        "NEAR(best worst)",
        "title:cities OR -times",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, &format!("q-{i}"), q.as_bytes());
    }

    // Book openings and endings (headers, licence markers, BOMs, CRLF).
    let dir = root.join("gutenberg");
    write(
        &dir,
        "tiny",
        b"\xef\xbb\xbfTitle: T\r\nAuthor: A\r\nLanguage: fr\r\n*** START OF THE PROJECT GUTENBERG EBOOK T ***\r\nx\r\n*** END OF THE PROJECT GUTENBERG EBOOK T ***\r\n",
    );
    if let Some(books) = books {
        let mut paths: Vec<_> = std::fs::read_dir(&books)
            .expect("books directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for p in paths.iter().step_by(8) {
            let b = std::fs::read(p).expect("book");
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let head = &b[..b.len().min(12 * 1024)];
            let tail = &b[b.len().saturating_sub(6 * 1024)..];
            let mut both = head.to_vec();
            both.extend_from_slice(b"\n[...]\n");
            both.extend_from_slice(tail);
            write(&dir, &format!("{name}.ends"), &both);
        }
    }
    drop(db);
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("redcloud-fuzz-{}-seed-origin", std::process::id())),
    );
}

/// `serde_json` through a trait object, so the seeds above read as a list.
mod erased {
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("json")
        }
    }
}
