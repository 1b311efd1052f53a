//! Limits that hold before anyone is authenticated (issue 12, item 7): a request
//! body trickled in is dropped with its connection; an upload whose client stops
//! sending gives up its slot; the node keeps serving.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redcloud_proto::controller as pb;
use redcloud_tests::{ClusterSpec, TestCluster};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_http_body_is_dropped_within_the_body_deadline() {
    let cluster = TestCluster::start().await;
    let addr = cluster.controllers[0].http_addr;
    let started = Instant::now();
    // Headers promise 1,000 bytes; one arrives per second.
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        s.write_all(
            b"POST /internal/chunkserver/heartbeat HTTP/1.1\r\nhost: x\r\n\
              content-type: application/json\r\ncontent-length: 1000\r\n\r\n",
        )
        .expect("headers");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..60 {
            if s.write_all(b" ").is_err() {
                break;
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(1) {
                match s.read(&mut buf) {
                    Ok(0) => return (got, true),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
        }
        (got, false)
    })
    .await
    .expect("join");
    let (got, closed) = answer;
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(closed, "the connection stayed open: {text:?}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    let took = started.elapsed();
    assert!(
        took < redcloud_common::http::BODY_DEADLINE + Duration::from_secs(10),
        "dropped after {took:?}"
    );
    // Still serving.
    let http = redcloud_common::http::HttpClient::new(Duration::from_secs(5), None);
    http.get(&addr.to_string(), "/health")
        .await
        .expect("health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_client_stops_sending_is_dropped() {
    let cluster = TestCluster::with(ClusterSpec {
        tweak: Some(|_, c| c.upload_idle_timeout = Duration::from_secs(2)),
        ..Default::default()
    })
    .await;
    let mut raw = pb::controller_client::ControllerClient::connect(format!(
        "http://{}",
        cluster.controllers[0].grpc_addr
    ))
    .await
    .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    use pb::upload_request::Msg;
    tx.send(pb::UploadRequest {
        msg: Some(Msg::Start(pb::UploadStart {
            name: "stalled.txt".into(),
            size: 1000,
            public: false,
            after: 0,
        })),
    })
    .await
    .expect("start");
    tx.send(pb::UploadRequest {
        msg: Some(Msg::Data(Bytes::from(vec![b'x'; 10]))),
    })
    .await
    .expect("data");
    // Then nothing more (the sender is kept open).
    let e = raw
        .upload(cluster.authed(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await
        .expect_err("stalled upload");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("stalled"), "{e}");
    drop(tx);
    // Nothing was stored, and uploads still work.
    let mut c = cluster.client().await;
    assert!(c.list("").await.expect("ls").is_empty());
    c.upload_bytes(Bytes::from_static(b"fine"), "fine.txt", false)
        .await
        .expect("upload after a stalled one");
}
