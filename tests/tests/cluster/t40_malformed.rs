//! Malformed requests get clear errors and leave the servers running: bad chunk
//! ids, truncated streams, oversized messages, bad internal HTTP bodies.

use bytes::Bytes;
use redcloud_proto::chunk::{self, chunkserver_client::ChunkserverClient};
use redcloud_proto::controller::{self as pb, controller_client::ControllerClient};
use redcloud_tests::TestCluster;
use tonic::Code;

async fn raw_controller(cluster: &TestCluster) -> ControllerClient<tonic::transport::Channel> {
    ControllerClient::connect(format!("http://{}", cluster.controller_addr(0)))
        .await
        .expect("connect")
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX)
}

async fn raw_chunkserver(
    cluster: &TestCluster,
    i: usize,
) -> ChunkserverClient<tonic::transport::Channel> {
    ChunkserverClient::connect(format!("http://{}", cluster.chunkservers[i].grpc_addr))
        .await
        .expect("connect")
        .max_encoding_message_size(usize::MAX)
}

fn upload_msgs(
    msgs: Vec<pb::upload_request::Msg>,
) -> impl tokio_stream::Stream<Item = pb::UploadRequest> {
    futures::stream::iter(msgs.into_iter().map(|m| pb::UploadRequest { msg: Some(m) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_servers_keep_running() {
    let cluster = TestCluster::start().await;
    let mut cs = raw_chunkserver(&cluster, 0).await;

    // Bad chunk ids never reach the file system.
    for bad in [
        "../../etc/passwd",
        "",
        "zz",
        &"g".repeat(64),
        &format!("{}/", "a".repeat(63)),
    ] {
        let e = cs
            .get_chunk(chunk::GetChunkRequest {
                chunk_id: bad.into(),
            })
            .await
            .expect_err("bad id");
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e}");
        assert!(e.message().contains("chunk id"), "{e}");
        let e = cs
            .delete_chunk(chunk::DeleteChunkRequest {
                chunk_id: bad.into(),
                unless_written_within_ms: 0,
            })
            .await
            .expect_err("bad id");
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    // A put whose bytes do not match its id, or stop short, stores nothing.
    let data = Bytes::from_static(b"some chunk bytes");
    let id = redcloud_common::ChunkId::of(&data);
    let put = |header_id: String, size: u64, data: Bytes| {
        futures::stream::iter(vec![
            chunk::PutChunkRequest {
                msg: Some(chunk::put_chunk_request::Msg::Header(
                    chunk::PutChunkHeader {
                        chunk_id: header_id,
                        size,
                    },
                )),
            },
            chunk::PutChunkRequest {
                msg: Some(chunk::put_chunk_request::Msg::Data(data)),
            },
        ])
    };
    let wrong = redcloud_common::ChunkId::of(b"other").to_hex();
    let e = cs
        .put_chunk(put(wrong, data.len() as u64, data.clone()))
        .await
        .expect_err("hash mismatch");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("does not match"), "{e}");
    let e = cs
        .put_chunk(put(id.to_hex(), data.len() as u64 + 10, data.clone()))
        .await
        .expect_err("truncated");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("truncated"), "{e}");
    let e = cs
        .put_chunk(put(id.to_hex(), u64::MAX, data.clone()))
        .await
        .expect_err("absurd size");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(cluster.chunks_on_disk(0).is_empty(), "nothing was stored");

    // An oversized message is refused before it is buffered.
    let big = Bytes::from(vec![7u8; redcloud_proto::MAX_MESSAGE_BYTES + 1024]);
    let e = cs
        .put_chunk(put(
            redcloud_common::ChunkId::of(&big).to_hex(),
            big.len() as u64,
            big.clone(),
        ))
        .await
        .expect_err("oversized message");
    assert!(
        matches!(
            e.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{e}"
    );

    // Controller: a truncated upload (no finish), a lying size, a wrong SHA-256, a
    // stream not starting with `start`, an oversized message, an empty name.
    let mut ctl = raw_controller(&cluster).await;
    use pb::upload_request::Msg;
    let start = |name: &str, size| {
        Msg::Start(pb::UploadStart {
            name: name.into(),
            size,
            public: false,
            after: 0,
        })
    };
    let cases: Vec<(Vec<Msg>, &str)> = vec![
        (
            vec![start("t.txt", 100), Msg::Data(Bytes::from(vec![1u8; 50]))],
            "truncated",
        ),
        (
            vec![start("t.txt", 10), Msg::Data(Bytes::from(vec![1u8; 50]))],
            "more than",
        ),
        (
            vec![
                start("t.txt", 3),
                Msg::Data(Bytes::from_static(b"abc")),
                Msg::Finish(pb::UploadFinish {
                    sha256: "00".repeat(32),
                }),
            ],
            "SHA-256",
        ),
        (vec![Msg::Data(Bytes::from_static(b"abc"))], "first message"),
        (
            vec![
                start("", 3),
                Msg::Data(Bytes::from_static(b"abc")),
                Msg::Finish(pb::UploadFinish {
                    sha256: hex::encode(redcloud_common::hash::sha256(b"abc")),
                }),
            ],
            "empty",
        ),
    ];
    for (msgs, expect) in cases {
        let e = ctl
            .upload(cluster.authed(upload_msgs(msgs)))
            .await
            .expect_err(expect);
        assert_eq!(e.code(), Code::InvalidArgument, "{expect}: {e}");
        assert!(e.message().contains(expect), "expected {expect:?} in {e}");
    }
    let e = ctl
        .upload(cluster.authed(upload_msgs(vec![
            start("big.txt", 10 << 20),
            Msg::Data(big.clone()),
        ])))
        .await
        .expect_err("oversized");
    assert!(
        matches!(
            e.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{e}"
    );
    let e = ctl
        .download(pb::DownloadRequest {
            name: "x".into(),
            version: "not-a-uuid".into(),
            owner: String::new(),
            offset: 0,
        })
        .await
        .expect_err("bad version");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        ctl.list(pb::ListRequest::default())
            .await
            .expect("list")
            .into_inner()
            .files
            .is_empty()
    );

    // Without a token, no upload is even read.
    let e = ctl
        .upload(upload_msgs(vec![start("anon.txt", 3)]))
        .await
        .expect_err("anonymous upload");
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");

    // Internal HTTP: malformed and oversized heartbeats.
    let http = redcloud_common::http::HttpClient::new(std::time::Duration::from_secs(5), None);
    let addr = cluster.controllers[0].http_addr.to_string();
    let e = http
        .post_json::<_, serde_json::Value>(
            &addr,
            "/internal/chunkserver/heartbeat",
            &serde_json::json!({"node_id": 5}),
        )
        .await
        .expect_err("malformed heartbeat");
    assert!(e.to_string().contains("400"), "{e}");
    let huge = "x".repeat(redcloud_common::http::MAX_BODY_BYTES + 1);
    let e = http
        .post_json::<_, serde_json::Value>(&addr, "/internal/chunkserver/heartbeat", &huge)
        .await
        .expect_err("oversized heartbeat");
    assert!(e.to_string().contains("413"), "{e}");

    // Everything still works.
    let mut client = cluster.client().await;
    client
        .upload_bytes(Bytes::from_static(b"still alive"), "alive.txt", false)
        .await
        .expect("upload after abuse");
    let (_, got) = client
        .download_bytes("alive.txt", None)
        .await
        .expect("download after abuse");
    assert_eq!(got, b"still alive");
}
