//! TLS for the client API (issue 12, item 6): a controller started with
//! `--tls-cert`/`--tls-key` serves gRPC over TLS; the client reaches it with an
//! `https://` address and trusts it through a CA file; a plaintext client, a
//! client that does not trust the certificate, and a wrong certificate at start
//! each fail with a clear error.

use bytes::Bytes;
use redcloud_cli::{Client, ClientError};
use redcloud_tests::{ClusterSpec, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_api_is_served_over_tls_and_plaintext_is_refused() {
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 2,
        chunkservers: 2,
        tls: true,
        ..Default::default()
    })
    .await;
    // The test account was made over TLS; books go up and come back over it.
    let data = Bytes::from("over an encrypted channel\n".repeat(1000));
    let mut c = cluster.client_of(0).await;
    assert!(c.is_tls());
    c.upload_bytes(data.clone(), "tls.txt", false)
        .await
        .expect("upload over TLS");
    let (_, got) = c.download_bytes("tls.txt", None).await.expect("download");
    assert_eq!(Bytes::from(got), data);

    // Not trusted: the public roots do not know the test CA.
    let addr = cluster.controller_addr(0);
    let untrusted = Client::connect(std::slice::from_ref(&addr)).await;
    let r = match untrusted {
        Err(e) => Err(e),
        Ok(mut c) => c.cluster_status().await.map(|_| ()),
    };
    assert!(
        matches!(&r, Err(ClientError::Unreachable { reason, .. }) if reason.to_lowercase().contains("certificate")),
        "{r:?}"
    );

    // Plaintext to the TLS port gets no answer that looks like success.
    let plain = format!("127.0.0.1:{}", cluster.controllers[0].grpc_addr.port());
    let r = match Client::connect(&[plain]).await {
        Err(e) => Err(e),
        Ok(mut c) => c.cluster_status().await.map(|_| ()),
    };
    assert!(r.is_err(), "plaintext to a TLS port: {r:?}");

    // A scheme the client does not know is a bad argument, not a silent fallback.
    let r = Client::connect(&["ftp://localhost:1".to_string()])
        .await
        .map(|_| ());
    assert!(matches!(r, Err(ClientError::InvalidArgument(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_an_unreadable_certificate_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _key, _) = redcloud_tests::test_certificates(&dir.path().join("tls"));
    let mut cfg = redcloud_controller::Config::for_test(dir.path().join("data"));
    cfg.tls_cert = Some(cert.clone());
    cfg.tls_key = Some(dir.path().join("missing.pem"));
    let listeners = redcloud_controller::server::bind(&cfg).await.expect("bind");
    let r = redcloud_controller::server::start(
        cfg.clone(),
        listeners,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let e = r.err().expect("refused");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // A certificate given as its own key: not a key.
    cfg.tls_key = Some(cert);
    let listeners = redcloud_controller::server::bind(&cfg).await.expect("bind");
    let r = redcloud_controller::server::start(
        cfg,
        listeners,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    assert!(r.is_err(), "a certificate as the key must be refused");
}
