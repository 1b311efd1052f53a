//! Hostile input at every entry point (issue 12, item 8): forged, oversized,
//! truncated and malformed messages to the client gRPC API, the chunk gRPC API,
//! every `/internal/` route (heartbeats among them) and the raw sockets. Each gets a
//! clear refusal; afterwards the replicated state, the chunks on disk, the known
//! peers and the tracked chunkservers are what they were, and every node serves.
//!
//! The table of what was sent and answered is printed and written to
//! `$CARGO_TARGET_TMPDIR/hostile-input.md`.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use redcloud_common::http::{HttpClient, MAX_BODY_BYTES, SECRET_HEADER};
use redcloud_common::replication::{Origin, Version, VersionVector};
use redcloud_common::{ChunkId, NodeId};
use redcloud_controller::records::{Body, Record};
use redcloud_controller::replication::{Push, Summary, encode};
use redcloud_proto::chunk::{self, chunkserver_client::ChunkserverClient};
use redcloud_proto::controller::{self as pb, controller_client::ControllerClient};
use redcloud_tests::{ClusterSpec, TEST_USER, TestCluster, wait_until};
use tonic::Code;

const SECRET: &str = "hostile-suite-secret";

/// What the replicated state holds, row keys and tombstone flags only (not
/// health or addresses, which heartbeats may legitimately refresh), plus the
/// peers and chunkservers the node tracks in memory.
async fn state_of(cluster: &TestCluster, i: usize) -> Vec<String> {
    let node = cluster.controllers[i].controller().clone();
    let mut rows = node
        .db
        .call(|s| {
            let mut out = Vec::new();
            for (table, cols) in [
                ("users", "user_id || ' ' || username"),
                (
                    "files",
                    "file_id || ' ' || owner || ' ' || name || ' ' || public",
                ),
                ("chunks", "file_id"),
                ("chunk_locations", "chunk_id || '/' || node_id"),
                ("chunkserver_nodes", "node_id || '/' || observer"),
                ("controller_nodes", "node_id"),
                ("deletions", "owner || ' ' || name"),
                ("origins", "origin_key"),
                ("sessions", "session_id"),
            ] {
                let mut st = s
                    .conn()
                    .prepare(&format!("SELECT {cols}, deleted FROM {table}"))?;
                let got = st.query_map([], |r| {
                    Ok(format!(
                        "{table}: {} deleted={}",
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?
                    ))
                })?;
                for g in got {
                    out.push(g?);
                }
            }
            Ok(out)
        })
        .await
        .expect("read state");
    let mut peers: Vec<String> = node
        .peers
        .all()
        .into_iter()
        // Addresses only: a peer first known by address learns its id in time.
        .map(|p| format!("peer: {}", p.http_addr))
        .collect();
    let mut servers: Vec<String> = node
        .registry
        .snapshot()
        .into_iter()
        .map(|v| format!("chunkserver: {}", v.record.node_id))
        .collect();
    rows.append(&mut peers);
    rows.append(&mut servers);
    for (j, _) in cluster.chunkservers.iter().enumerate() {
        let mut on_disk: Vec<String> = cluster
            .chunks_on_disk(j)
            .iter()
            .map(|c| format!("disk {j}: {c}"))
            .collect();
        rows.append(&mut on_disk);
    }
    rows.sort();
    rows
}

/// One line of the table.
struct Row {
    entry: &'static str,
    input: String,
    answer: String,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn add(&mut self, entry: &'static str, input: impl Into<String>, answer: impl Into<String>) {
        let answer: String = answer.into();
        let answer = answer.replace('\n', " ").replace('|', "/");
        let answer: String = answer.chars().take(160).collect();
        self.0.push(Row {
            entry,
            input: input.into(),
            answer,
        });
    }

    fn grpc<T: std::fmt::Debug>(
        &mut self,
        entry: &'static str,
        input: &str,
        want: &[Code],
        r: Result<T, tonic::Status>,
    ) {
        let e = match r {
            Ok(v) => panic!("{entry}: {input}: accepted: {v:?}"),
            Err(e) => e,
        };
        assert!(
            want.contains(&e.code()),
            "{entry}: {input}: wanted one of {want:?}, got {e}"
        );
        assert!(!e.message().is_empty(), "{entry}: {input}: no message");
        self.add(entry, input, format!("{:?}: {}", e.code(), e.message()));
    }

    fn http(
        &mut self,
        entry: &'static str,
        input: &str,
        want: u16,
        r: Result<Bytes, redcloud_common::http::HttpError>,
    ) {
        let e = match r {
            Ok(b) => panic!(
                "{entry}: {input}: accepted: {:?}",
                String::from_utf8_lossy(&b)
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(&want.to_string()),
            "{entry}: {input}: wanted {want}, got {e}"
        );
        self.add(entry, input, e);
    }

    fn markdown(&self) -> String {
        let mut s = String::from("| Entry point | Input | Answer |\n|---|---|---|\n");
        for r in &self.0 {
            s.push_str(&format!("| {} | {} | {} |\n", r.entry, r.input, r.answer));
        }
        s
    }
}

fn with_auth<T>(msg: T, auth: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(a) = auth {
        r.metadata_mut()
            .insert("authorization", a.parse().expect("metadata"));
    }
    r
}

/// A request carrying `authorization: $auth`.
macro_rules! as_user {
    ($auth:expr, $msg:expr) => {
        with_auth($msg, Some($auth.as_str()))
    };
}

fn with_secret<T>(msg: T, secret: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(s) = secret {
        r.metadata_mut()
            .insert(SECRET_HEADER, s.parse().expect("metadata"));
    }
    r
}

fn upload_stream(
    msgs: Vec<pb::upload_request::Msg>,
) -> impl tokio_stream::Stream<Item = pb::UploadRequest> {
    futures::stream::iter(msgs.into_iter().map(|m| pb::UploadRequest { msg: Some(m) }))
}

fn put_stream(
    msgs: Vec<chunk::put_chunk_request::Msg>,
) -> impl tokio_stream::Stream<Item = chunk::PutChunkRequest> {
    futures::stream::iter(
        msgs.into_iter()
            .map(|m| chunk::PutChunkRequest { msg: Some(m) }),
    )
}

/// Writes `bytes` to `addr` on a plain socket and returns what came back before
/// the server closed the connection (or 10 s passed).
async fn raw_exchange(addr: std::net::SocketAddr, bytes: Vec<u8>) -> (String, bool) {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(&bytes);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        (String::from_utf8_lossy(&got).into_owned(), closed)
    })
    .await
    .expect("join")
}

/// A new, well-formed record from an origin nobody has seen: a deletion of a name.
fn fresh_deletion(owner: &str) -> Record {
    let origin = Origin::random();
    let mut vclock = redcloud_common::clock::VectorClock::new();
    vclock.dot(origin, 1);
    Record {
        key: format!("{owner}\nghost.txt"),
        version: Version {
            vclock,
            hlc: redcloud_common::clock::HlcTimestamp::from_parts(redcloud_common::now_ms(), 0),
            origin,
            seq: 1,
            deleted: false,
        },
        body: Body::Deletion,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_everywhere_and_changes_nothing() {
    let cluster = TestCluster::with(ClusterSpec {
        controllers: 2,
        chunkservers: 2,
        cluster_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let ctl_addr = cluster.controllers[0].grpc_addr;
    let http_addr = cluster.controllers[0].http_addr.to_string();
    let cs_addr = cluster.chunkservers[0].grpc_addr;

    // State to protect: a private and a public book of the test user, and a second
    // account that will try to reach the private one.
    let mut owner = cluster.client().await;
    let secret_words = "zanzibar quixotic heliotrope ".repeat(200);
    owner
        .upload_bytes(Bytes::from(secret_words.clone()), "diary.txt", false)
        .await
        .expect("private upload");
    owner
        .upload_bytes(
            Bytes::from("A public book about lighthouses.\n".repeat(200)),
            "lighthouse.txt",
            true,
        )
        .await
        .expect("public upload");
    cluster
        .anonymous_client_of(0)
        .await
        .register("mallory", "mallory-password")
        .await
        .expect("register mallory");
    let mallory_token = {
        let mut c = ControllerClient::connect(format!("http://{ctl_addr}"))
            .await
            .expect("connect");
        c.login(pb::LoginRequest {
            username: "mallory".into(),
            password: "mallory-password".into(),
        })
        .await
        .expect("login")
        .into_inner()
        .token
    };
    let mallory_auth = format!("Bearer {mallory_token}");
    cluster
        .wait_converged(&[0, 1], Duration::from_secs(30))
        .await;
    let before = state_of(&cluster, 0).await;
    let before_1 = state_of(&cluster, 1).await;

    let mut t = Table::default();
    let mut ctl = ControllerClient::connect(format!("http://{ctl_addr}"))
        .await
        .expect("connect")
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    use pb::upload_request::Msg as Up;
    let start = |name: &str| {
        Up::Start(pb::UploadStart {
            name: name.into(),
            size: 3,
            public: false,
            after: 0,
        })
    };

    // ---- Client gRPC: forged and malformed credentials.
    let real = cluster.token.clone().expect("test token");
    let mut flipped = real.clone();
    let last = flipped.pop().expect("token");
    flipped.push(if last == '0' { '1' } else { '0' });
    let forged = format!("rc1.{}.{}", "0".repeat(32), "f".repeat(64));
    for (input, auth) in [
        (
            "upload, forged token (unknown session)",
            format!("Bearer {forged}"),
        ),
        (
            "upload, real session id with a wrong secret",
            format!("Bearer {flipped}"),
        ),
        (
            "upload, token of the wrong shape",
            "Bearer rc1.abc".to_string(),
        ),
        (
            "upload, `Basic` credentials",
            "Basic dXNlcjpwYXNz".to_string(),
        ),
    ] {
        let r = ctl
            .upload(with_auth(
                upload_stream(vec![start("forged.txt")]),
                Some(&auth),
            ))
            .await;
        t.grpc("client gRPC", input, &[Code::Unauthenticated], r);
    }
    let r = ctl
        .list(with_auth(
            pb::ListRequest::default(),
            Some(&format!("Bearer {forged}")),
        ))
        .await;
    t.grpc(
        "client gRPC",
        "list with a forged token (not taken as anonymous)",
        &[Code::Unauthenticated],
        r,
    );
    let r = ctl.upload(upload_stream(vec![start("anon.txt")])).await;
    t.grpc(
        "client gRPC",
        "upload without a token",
        &[Code::Unauthenticated],
        r,
    );
    let r = ctl
        .delete(pb::DeleteRequest {
            name: "diary.txt".into(),
            after: 0,
        })
        .await;
    t.grpc(
        "client gRPC",
        "delete without a token",
        &[Code::Unauthenticated],
        r,
    );
    let r = ctl
        .forget_node(pb::ForgetNodeRequest {
            node_id: cluster.controller_id(1),
            force: true,
        })
        .await;
    t.grpc(
        "client gRPC",
        "forget a controller without a token",
        &[Code::Unauthenticated],
        r,
    );

    // ---- Client gRPC: another user's private book.
    let r = ctl
        .download(as_user!(
            mallory_auth,
            pb::DownloadRequest {
                name: "diary.txt".into(),
                version: String::new(),
                owner: TEST_USER.into(),
                offset: 0,
            }
        ))
        .await;
    t.grpc(
        "client gRPC",
        "download another user's private book (owner named)",
        &[Code::NotFound],
        r,
    );
    let r = ctl
        .stat(as_user!(
            mallory_auth,
            pb::StatRequest {
                name: "diary.txt".into(),
                version: String::new(),
                owner: TEST_USER.into(),
            }
        ))
        .await;
    t.grpc(
        "client gRPC",
        "stat another user's private book",
        &[Code::NotFound],
        r,
    );
    let r = ctl
        .versions(as_user!(
            mallory_auth,
            pb::VersionsRequest {
                name: "diary.txt".into(),
                owner: TEST_USER.into(),
                ..Default::default()
            }
        ))
        .await;
    t.grpc(
        "client gRPC",
        "versions of another user's private book",
        &[Code::NotFound],
        r,
    );
    let r = ctl
        .delete(as_user!(
            mallory_auth,
            pb::DeleteRequest {
                name: "diary.txt".into(),
                after: 0,
            }
        ))
        .await;
    t.grpc(
        "client gRPC",
        "delete a name only another user has",
        &[Code::NotFound],
        r,
    );
    let listed = ctl
        .list(as_user!(
            mallory_auth,
            pb::ListRequest {
                prefix: String::new(),
                owner: TEST_USER.into(),
                ..Default::default()
            }
        ))
        .await
        .expect("list another user's books")
        .into_inner();
    assert!(
        listed.files.iter().all(|f| f.public),
        "another user's private book listed: {:?}",
        listed.files
    );
    for (input, token) in [
        (
            "list with a page token that is not hex",
            "zz-not-hex".to_string(),
        ),
        (
            "list with a page token that is not a cursor",
            hex_of(b"{\"s\":\"x\"}"),
        ),
        ("list with a 100 KiB page token", "ab".repeat(50 * 1024)),
    ] {
        let r = ctl
            .list(as_user!(
                mallory_auth,
                pb::ListRequest {
                    page_token: token,
                    ..Default::default()
                }
            ))
            .await;
        t.grpc("client gRPC", input, &[Code::InvalidArgument], r);
    }
    let r = ctl
        .versions(as_user!(
            mallory_auth,
            pb::VersionsRequest {
                name: "diary.txt".into(),
                page_token: hex_of(b"{\"h\":-1}"),
                ..Default::default()
            }
        ))
        .await;
    t.grpc(
        "client gRPC",
        "versions with a page token that is not a cursor",
        &[Code::InvalidArgument],
        r,
    );
    t.add(
        "client gRPC",
        "list another user's books",
        format!("OK: {} public book(s) only", listed.files.len()),
    );
    wait_until(
        "the private book is indexed",
        Duration::from_secs(30),
        || {
            let cluster = &cluster;
            async move {
                let mut owner = cluster.client().await;
                owner
                    .search(pb::SearchRequest {
                        query: "zanzibar".into(),
                        limit: 10,
                        ..Default::default()
                    })
                    .await
                    .is_ok_and(|r| !r.hits.is_empty())
            }
        },
    )
    .await;
    let found = ctl
        .search(as_user!(
            mallory_auth,
            pb::SearchRequest {
                query: "zanzibar heliotrope".into(),
                limit: 100,
                ..Default::default()
            }
        ))
        .await
        .expect("search")
        .into_inner();
    assert!(found.hits.is_empty(), "search leaked: {:?}", found.hits);
    t.add(
        "client gRPC",
        "search for words only another user's private book has",
        "OK: 0 hits",
    );

    // ---- Client gRPC: malformed and oversized requests.
    let real_auth = format!("Bearer {real}");
    let long_name = "n".repeat(redcloud_controller::records::MAX_NAME_BYTES + 1);
    for (input, msgs, want) in [
        (
            "upload named with a control character",
            vec![start("bad\u{7}name.txt")],
            Code::InvalidArgument,
        ),
        (
            "upload with a 1025-byte name",
            vec![start(&long_name)],
            Code::InvalidArgument,
        ),
        (
            "upload starting with data",
            vec![Up::Data(Bytes::from_static(b"abc"))],
            Code::InvalidArgument,
        ),
        (
            "upload declaring 3 bytes, sending 50",
            vec![start("liar.txt"), Up::Data(Bytes::from(vec![1u8; 50]))],
            Code::InvalidArgument,
        ),
        (
            "upload truncated (no finish)",
            vec![start("cut.txt"), Up::Data(Bytes::from_static(b"ab"))],
            Code::InvalidArgument,
        ),
        (
            "upload with a second start",
            vec![start("twice.txt"), start("twice.txt")],
            Code::InvalidArgument,
        ),
        (
            "upload with a wrong SHA-256",
            vec![
                start("sum.txt"),
                Up::Data(Bytes::from_static(b"abc")),
                Up::Finish(pb::UploadFinish {
                    sha256: "00".repeat(32),
                }),
            ],
            Code::InvalidArgument,
        ),
    ] {
        let r = ctl.upload(as_user!(real_auth, upload_stream(msgs))).await;
        t.grpc("client gRPC", input, &[want], r);
    }
    let big = Bytes::from(vec![0u8; redcloud_proto::MAX_MESSAGE_BYTES + 1]);
    let r = ctl
        .upload(as_user!(
            real_auth,
            upload_stream(vec![
                Up::Start(pb::UploadStart {
                    name: "huge.txt".into(),
                    size: big.len() as u64,
                    public: false,
                    after: 0,
                }),
                Up::Data(big.clone()),
            ])
        ))
        .await;
    t.grpc(
        "client gRPC",
        "upload message over the 4 MiB + 64 KiB limit",
        &[
            Code::OutOfRange,
            Code::ResourceExhausted,
            Code::InvalidArgument,
        ],
        r,
    );
    let r = ctl
        .search(pb::SearchRequest {
            query: String::from_utf8(vec![b'a'; redcloud_proto::MAX_MESSAGE_BYTES + 1])
                .expect("utf8"),
            ..Default::default()
        })
        .await;
    t.grpc(
        "client gRPC",
        "search request over the message limit",
        &[Code::OutOfRange, Code::ResourceExhausted],
        r,
    );
    let r = ctl
        .search(pb::SearchRequest {
            query: "word ".repeat(300),
            ..Default::default()
        })
        .await;
    t.grpc(
        "client gRPC",
        "search query of 1500 bytes",
        &[Code::InvalidArgument],
        r,
    );
    let r = ctl
        .search(pb::SearchRequest {
            query: "\"unbalanced AND (NEAR".into(),
            ..Default::default()
        })
        .await;
    match r {
        Ok(_) => t.add(
            "client gRPC",
            "search query with FTS5 syntax",
            "OK: taken as words",
        ),
        Err(e) => t.grpc(
            "client gRPC",
            "search query with FTS5 syntax",
            &[Code::InvalidArgument],
            Err::<(), _>(e),
        ),
    }
    let r = ctl
        .download(pb::DownloadRequest {
            name: "lighthouse.txt".into(),
            version: "not-a-uuid".into(),
            owner: TEST_USER.into(),
            offset: 0,
        })
        .await;
    t.grpc(
        "client gRPC",
        "download with a malformed version",
        &[Code::InvalidArgument],
        r,
    );
    for (input, name, pw) in [
        (
            "register an empty name",
            String::new(),
            "long-enough-pw".to_string(),
        ),
        (
            "register a 65-byte name",
            "u".repeat(65),
            "long-enough-pw".to_string(),
        ),
        (
            "register a name with a newline",
            "eve\nroot".into(),
            "long-enough-pw".to_string(),
        ),
        (
            "register a 7-character password",
            "eve".into(),
            "1234567".to_string(),
        ),
        (
            "register a 1025-byte password",
            "eve".into(),
            "p".repeat(1025),
        ),
        (
            "register a name taken",
            TEST_USER.into(),
            "long-enough-pw".to_string(),
        ),
    ] {
        let r = ctl
            .register(pb::RegisterRequest {
                username: name,
                password: pw,
            })
            .await;
        t.grpc(
            "client gRPC",
            input,
            &[Code::InvalidArgument, Code::AlreadyExists],
            r,
        );
    }
    let r = ctl
        .login(pb::LoginRequest {
            username: "x".repeat(100_000),
            password: "whatever".into(),
        })
        .await;
    t.grpc(
        "client gRPC",
        "login with a 100 kB user name",
        &[Code::Unauthenticated],
        r,
    );
    let r = ctl
        .login(pb::LoginRequest {
            username: TEST_USER.into(),
            password: "wrong password".into(),
        })
        .await;
    t.grpc(
        "client gRPC",
        "login with a wrong password",
        &[Code::Unauthenticated],
        r,
    );
    let r = ctl
        .forget_node(as_user!(
            real_auth,
            pb::ForgetNodeRequest {
                node_id: "../../etc".into(),
                force: false,
            }
        ))
        .await;
    t.grpc(
        "client gRPC",
        "forget a malformed node id",
        &[Code::InvalidArgument],
        r,
    );
    let r = ctl
        .forget_node(as_user!(
            real_auth,
            pb::ForgetNodeRequest {
                node_id: cluster.controller_id(1),
                force: false,
            }
        ))
        .await;
    t.grpc(
        "client gRPC",
        "forget a live controller without --force",
        &[Code::FailedPrecondition],
        r,
    );

    // ---- Chunk gRPC (chunkserver 0).
    let mut cs = ChunkserverClient::connect(format!("http://{cs_addr}"))
        .await
        .expect("connect")
        .max_encoding_message_size(usize::MAX);
    use chunk::put_chunk_request::Msg as Put;
    let data = Bytes::from_static(b"intruder bytes");
    let id = ChunkId::of(&data).to_hex();
    let header = |id: &str, size: u64| {
        Put::Header(chunk::PutChunkHeader {
            chunk_id: id.into(),
            size,
        })
    };
    for (input, secret) in [
        ("put without the cluster secret", None),
        ("put with a wrong cluster secret", Some("guess")),
    ] {
        let r = cs
            .put_chunk(with_secret(
                put_stream(vec![
                    header(&id, data.len() as u64),
                    Put::Data(data.clone()),
                ]),
                secret,
            ))
            .await;
        t.grpc("chunk gRPC", input, &[Code::Unauthenticated], r);
    }
    let r = cs
        .list_chunks(with_secret(chunk::ListChunksRequest {}, None))
        .await;
    t.grpc(
        "chunk gRPC",
        "list without the cluster secret",
        &[Code::Unauthenticated],
        r,
    );
    let s = Some(SECRET);
    for (input, msgs) in [
        ("put starting with data", vec![Put::Data(data.clone())]),
        (
            "put with two headers",
            vec![
                header(&id, data.len() as u64),
                header(&id, data.len() as u64),
            ],
        ),
        (
            "put with a path as chunk id",
            vec![header("../../etc/passwd", 4), Put::Data(data.clone())],
        ),
        (
            "put whose bytes do not hash to its id",
            vec![
                header(&ChunkId::of(b"other").to_hex(), data.len() as u64),
                Put::Data(data.clone()),
            ],
        ),
        (
            "put truncated (fewer bytes than declared)",
            vec![
                header(&id, data.len() as u64 + 100),
                Put::Data(data.clone()),
            ],
        ),
        (
            "put declaring 2^64-1 bytes",
            vec![header(&id, u64::MAX), Put::Data(data.clone())],
        ),
        ("put with no messages", vec![]),
    ] {
        let r = cs.put_chunk(with_secret(put_stream(msgs), s)).await;
        t.grpc("chunk gRPC", input, &[Code::InvalidArgument], r);
    }
    let r = cs
        .put_chunk(with_secret(
            put_stream(vec![
                header(&ChunkId::of(&big).to_hex(), big.len() as u64),
                Put::Data(big.clone()),
            ]),
            s,
        ))
        .await;
    t.grpc(
        "chunk gRPC",
        "put message over the message limit",
        &[
            Code::OutOfRange,
            Code::ResourceExhausted,
            Code::InvalidArgument,
        ],
        r,
    );
    let r = cs
        .get_chunk(with_secret(
            chunk::GetChunkRequest {
                chunk_id: "zz".into(),
            },
            s,
        ))
        .await;
    t.grpc(
        "chunk gRPC",
        "get a malformed chunk id",
        &[Code::InvalidArgument],
        r,
    );
    let r = cs
        .stat(with_secret(
            chunk::StatRequest {
                chunk_ids: vec!["a".into(); 100_001],
            },
            s,
        ))
        .await;
    t.grpc(
        "chunk gRPC",
        "stat 100,001 chunk ids",
        &[Code::InvalidArgument],
        r,
    );
    for (input, source, want) in [
        ("replicate from an empty address", "", Code::InvalidArgument),
        (
            "replicate from something that is not an address",
            "not an address",
            Code::InvalidArgument,
        ),
        (
            "replicate from a port nothing listens on",
            "127.0.0.1:1",
            Code::Unavailable,
        ),
    ] {
        let r = cs
            .replicate_from_peer(with_secret(
                chunk::ReplicateFromPeerRequest {
                    chunk_id: id.clone(),
                    source_address: source.into(),
                },
                s,
            ))
            .await;
        t.grpc("chunk gRPC", input, &[want, Code::InvalidArgument], r);
    }
    let r = cs
        .delete_chunk(with_secret(
            chunk::DeleteChunkRequest {
                chunk_id: "/".into(),
                unless_written_within_ms: 0,
            },
            s,
        ))
        .await;
    t.grpc(
        "chunk gRPC",
        "delete a malformed chunk id",
        &[Code::InvalidArgument],
        r,
    );

    // ---- Internal HTTP routes (controller 0).
    let anon = HttpClient::new(Duration::from_secs(10), None);
    let wrong = HttpClient::new(Duration::from_secs(10), Some("guess".into()));
    let right = HttpClient::new(Duration::from_secs(10), Some(SECRET.into()));
    let routes = [
        ("POST", "/internal/chunkserver/heartbeat"),
        ("POST", "/internal/gossip/receive"),
        ("POST", "/internal/gossip/state-summary"),
        ("POST", "/internal/peers/register"),
        ("GET", "/internal/peers"),
        ("GET", "/internal/state"),
    ];
    for (method, path) in routes {
        for (who, http) in [("no secret", &anon), ("a wrong secret", &wrong)] {
            let r = match method {
                "GET" => http.get(&http_addr, path).await,
                _ => {
                    http.post_bytes(&http_addr, path, Bytes::from_static(b"{}"))
                        .await
                }
            };
            t.http(
                "internal HTTP",
                &format!("{method} {path} with {who}"),
                401,
                r,
            );
        }
    }
    let hb = |v: serde_json::Value| Bytes::from(serde_json::to_vec(&v).expect("json"));
    let good_hb = serde_json::json!({
        "node_id": "intruder-cs",
        "grpc_addr": "127.0.0.1:1",
        "http_addr": "127.0.0.1:2",
        "capacity_bytes": 1, "free_bytes": 1, "used_bytes": 0, "chunk_count": 0,
    });
    let mut bad_addr = good_hb.clone();
    bad_addr["grpc_addr"] = "evil host:1\r\nx".into();
    let mut bad_id = good_hb.clone();
    bad_id["node_id"] = "../../etc".into();
    let mut many = good_hb.clone();
    many["controllers"] = serde_json::Value::Array(
        (0..redcloud_common::wire::Heartbeat::MAX_CONTROLLERS + 1)
            .map(|i| serde_json::json!({"node_id": format!("c{i}"), "http_addr": "127.0.0.1:9"}))
            .collect(),
    );
    let hb_path = "/internal/chunkserver/heartbeat";
    for (input, body, want) in [
        (
            "heartbeat that is not JSON",
            Bytes::from_static(b"\x00\xffnot json"),
            400,
        ),
        (
            "heartbeat with a field of the wrong type",
            hb(serde_json::json!({"node_id": 5})),
            400,
        ),
        ("heartbeat truncated", hb(good_hb.clone()).slice(..20), 400),
        ("heartbeat with an address holding CRLF", hb(bad_addr), 400),
        ("heartbeat with a path as node id", hb(bad_id), 400),
        ("heartbeat listing 1025 controllers", hb(many), 400),
        (
            "heartbeat body over 16 MiB",
            Bytes::from(vec![b' '; MAX_BODY_BYTES + 1]),
            413,
        ),
    ] {
        let r = right.post_bytes(&http_addr, hb_path, body).await;
        t.http("internal HTTP", input, want, r);
    }

    // Gossip pushes: random bytes, truncated, records that break the rules, and a
    // batch mixing a valid new record with an invalid one (applied all or nothing).
    let node0 = cluster.controllers[0].controller().clone();
    let own_origin = node0.db.call(|s| Ok(s.origin())).await.expect("origin");
    let real_batch = cluster.controllers[1]
        .controller()
        .db
        .call(|s| s.delta(&VersionVector::default(), 1 << 20))
        .await
        .expect("delta")
        .batch;
    assert!(!real_batch.records.is_empty());
    let push = |records: Vec<Record>| Push {
        from: NodeId::new("intruder").expect("id"),
        from_http: "127.0.0.1:9".into(),
        clock_ms: redcloud_common::now_ms(),
        batch: redcloud_controller::replication::engine::Batch {
            records,
            ranges: Vec::new(),
            cleared: Vec::new(),
        },
    };
    let sample = real_batch.records[0].clone();
    // Pushes that should be accepted come as controller 1 (already a peer), so
    // only their content can change anything.
    let as_peer = |records: Vec<Record>| Push {
        from: NodeId::new(cluster.controller_id(1)).expect("id"),
        from_http: cluster.controllers[1].http_addr.to_string(),
        ..push(records)
    };
    let mut seq_zero = fresh_deletion(TEST_USER);
    seq_zero.version.seq = 0;
    let mut no_dot = fresh_deletion(TEST_USER);
    no_dot.version.vclock = Default::default();
    let mut bad_key = fresh_deletion(TEST_USER);
    bad_key.key = "no-newline".into();
    let mut claims_ours = fresh_deletion(TEST_USER);
    claims_ours.version.origin = own_origin;
    claims_ours.version.seq = 1 << 40;
    let mut vclock = redcloud_common::clock::VectorClock::new();
    vclock.dot(own_origin, 1 << 40);
    claims_ours.version.vclock = vclock;
    let mut far_future = fresh_deletion(TEST_USER);
    far_future.version.hlc = redcloud_common::clock::HlcTimestamp::from_parts(u64::MAX >> 17, 0);
    let full = encode(&push(vec![sample.clone()]));
    let gossip_path = "/internal/gossip/receive";
    for (input, body) in [
        (
            "gossip push of random bytes",
            Bytes::from_static(b"\x07\x99garbage\x00\x01"),
        ),
        (
            "gossip push truncated to half",
            full.slice(..full.len() / 2),
        ),
        (
            "gossip push of a record with write number 0",
            encode(&push(vec![seq_zero])),
        ),
        (
            "gossip push of a record whose vector clock lacks its own write",
            encode(&push(vec![no_dot])),
        ),
        (
            "gossip push of a deletion with a malformed key",
            encode(&push(vec![bad_key])),
        ),
        (
            "gossip push claiming a write of the receiver's own origin it never made",
            encode(&push(vec![claims_ours])),
        ),
        (
            "gossip push of a valid new record plus an invalid one",
            encode(&push(vec![fresh_deletion(TEST_USER), {
                let mut r = fresh_deletion(TEST_USER);
                r.version.seq = 0;
                r
            }])),
        ),
        ("gossip push with an empty sender address", {
            let mut p = push(vec![sample.clone()]);
            p.from_http = String::new();
            encode(&p)
        }),
    ] {
        let r = right.post_bytes(&http_addr, gossip_path, body).await;
        t.http("internal HTTP", input, 400, r);
    }
    // A record stamped far in the future is held back, not applied.
    let r = right
        .post_bytes(&http_addr, gossip_path, encode(&as_peer(vec![far_future])))
        .await;
    match r {
        Ok(b) => {
            let ack: redcloud_controller::replication::PushAck =
                redcloud_controller::replication::decode(&b).expect("ack");
            assert_eq!(ack.applied, 0, "a record from the far future was applied");
            t.add(
                "internal HTTP",
                "gossip push of a record stamped centuries ahead",
                format!("200, applied {} held {}", ack.applied, ack.held),
            );
        }
        Err(e) => t.http(
            "internal HTTP",
            "gossip push of a record stamped centuries ahead",
            400,
            Err(e),
        ),
    }
    // Replaying what the receiver already has changes nothing.
    let replay = right
        .post_bytes(
            &http_addr,
            gossip_path,
            encode(&as_peer(real_batch.records.clone())),
        )
        .await
        .expect("replay");
    let ack: redcloud_controller::replication::PushAck =
        redcloud_controller::replication::decode(&replay).expect("ack");
    assert_eq!(ack.applied, 0, "a replay changed state");
    t.add(
        "internal HTTP",
        format!(
            "gossip replay of {} records the receiver has",
            real_batch.records.len()
        ),
        "200, applied 0",
    );
    let summary = |vector: Option<VersionVector>| Summary {
        from: NodeId::new("intruder").expect("id"),
        from_http: "127.0.0.1:9".into(),
        clock_ms: redcloud_common::now_ms(),
        hash: [0; 16],
        vector,
    };
    let mut huge_vector = VersionVector::default();
    for _ in 0..redcloud_controller::replication::MAX_ENTRIES_PER_MESSAGE + 1 {
        huge_vector.0.insert(Origin::random(), 1);
    }
    let summary_path = "/internal/gossip/state-summary";
    let whole = encode(&summary(None));
    for (input, body) in [
        (
            "state summary of random bytes",
            Bytes::from_static(b"\xff\xfe\xfd"),
        ),
        ("state summary truncated", whole.slice(..whole.len() - 3)),
        (
            "state summary with a vector of 100,001 origins",
            encode(&summary(Some(huge_vector))),
        ),
    ] {
        let r = right.post_bytes(&http_addr, summary_path, body).await;
        t.http("internal HTTP", input, 400, r);
    }
    let reg_path = "/internal/peers/register";
    for (input, body) in [
        (
            "peer registration that is not JSON",
            Bytes::from_static(b"<xml/>"),
        ),
        (
            "peer registration with an address holding a space",
            hb(serde_json::json!({
                "node_id": "intruder-ctl", "grpc_addr": "a b:1", "http_addr": "127.0.0.1:9"
            })),
        ),
        (
            "peer registration with a malformed node id",
            hb(serde_json::json!({
                "node_id": "", "grpc_addr": "127.0.0.1:8", "http_addr": "127.0.0.1:9"
            })),
        ),
    ] {
        let r = right.post_bytes(&http_addr, reg_path, body).await;
        t.http("internal HTTP", input, 400, r);
    }
    let r = right.get(&http_addr, "/internal/nothing-here").await;
    t.http("internal HTTP", "GET of an unknown internal route", 404, r);
    let r = right
        .post_bytes(&http_addr, "/internal/peers", Bytes::new())
        .await;
    t.http("internal HTTP", "POST to a GET-only route", 404, r);

    // ---- Raw sockets: bytes that are not HTTP, not HTTP/2, or too many headers.
    let http_sock = cluster.controllers[0].http_addr;
    let (got, closed) = raw_exchange(http_sock, b"GARBAGE\x00\x01\r\n\r\n".to_vec()).await;
    assert!(closed, "HTTP port kept a garbage connection open: {got:?}");
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "{got:?}");
    t.add(
        "HTTP socket",
        "bytes that are not an HTTP request",
        format!("closed; {}", got.lines().next().unwrap_or("no answer")),
    );
    let mut flood = b"GET /health HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..2000 {
        flood.extend_from_slice(format!("x-junk-{i}: {}\r\n", "y".repeat(100)).as_bytes());
    }
    flood.extend_from_slice(b"\r\n");
    let (got, closed) = raw_exchange(http_sock, flood).await;
    assert!(closed, "a 200 kB header block kept the connection: {got:?}");
    assert!(
        !got.contains(" 200 "),
        "a 200 kB header block was served: {got:?}"
    );
    t.add(
        "HTTP socket",
        "2000 headers (200 kB)",
        format!("closed; {}", got.lines().next().unwrap_or("no answer")),
    );
    for (input, addr) in [
        ("controller gRPC socket", ctl_addr),
        ("chunkserver gRPC socket", cs_addr),
    ] {
        let (_, closed) = raw_exchange(
            addr,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff".to_vec(),
        )
        .await;
        assert!(closed, "{input}: a broken HTTP/2 connection stayed open");
        t.add(input, "HTTP/2 preface then a malformed frame", "closed");
    }

    // ---- Afterwards: nothing changed, and everything serves.
    let after = state_of(&cluster, 0).await;
    assert_eq!(before, after, "hostile input changed controller 0's state");
    let after_1 = state_of(&cluster, 1).await;
    assert_eq!(
        before_1, after_1,
        "hostile input changed controller 1's state"
    );
    let mut c = cluster.client().await;
    c.upload_bytes(Bytes::from_static(b"still serving\n"), "after.txt", false)
        .await
        .expect("upload after the abuse");
    let (_, got) = c.download_bytes("diary.txt", None).await.expect("download");
    assert_eq!(got, secret_words.as_bytes());
    anon.get(&http_addr, "/health").await.expect("health");
    for i in 0..2 {
        cluster
            .chunk_client(i)
            .list()
            .await
            .expect("chunkserver serves");
    }

    let table = t.markdown();
    println!("{table}");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-input.md");
    std::fs::write(&out, &table).expect("write the table");
    println!("{} cases; table written to {}", t.0.len(), out.display());
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
