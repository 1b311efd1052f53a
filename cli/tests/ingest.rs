//! `redcloud ingest gutenberg` against a local HTTP mirror serving the corpus:
//! books stored byte-identical; an unknown ebook and an unreachable mirror give
//! clear errors and their exit codes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use redcloud_tests::{TestCluster, corpus};

/// A minimal static HTTP/1.1 server for `root` (GET only, one thread per connection).
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                // Skip the headers.
                let mut h = String::new();
                while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let safe = !path.contains("..");
                let file = root.join(path.trim_start_matches('/'));
                let mut conn = conn;
                match std::fs::read(&file) {
                    Ok(body) if safe => {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(&body);
                    }
                    _ => {
                        let _ = conn.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
                        );
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Runs the CLI logged in as the test account of `cluster` (`REDCLOUD_TOKEN`).
async fn redcloud(cluster: &TestCluster, args: &[&str]) -> Output {
    let controller = cluster.controller_addr(0);
    let token = cluster.token.clone().unwrap_or_default();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_redcloud"))
            .arg("--controller")
            .arg(&controller)
            .args(&args)
            .env_remove("REDCLOUD_CONTROLLER")
            .env("REDCLOUD_TOKEN", &token)
            .env_remove("REDCLOUD_GUTENBERG_MIRROR")
            .env_remove("REDCLOUD_GUTENBERG_LAYOUT")
            .output()
            .expect("run redcloud")
    })
    .await
    .expect("join")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_from_a_local_mirror() {
    let cluster = TestCluster::start().await;
    let mirror = serve(corpus::dir());
    let layout = "books/pg{id}.txt";

    let out = redcloud(
        &cluster,
        &[
            "ingest",
            "gutenberg",
            "11",
            "2701",
            "--mirror",
            &mirror,
            "--layout",
            layout,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ingested ebook #2701 as pg2701.txt"),
        "{}",
        text(&out.stdout)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for id in [11, 2701] {
        let dest = dir.path().join(format!("pg{id}.txt"));
        let out = redcloud(
            &cluster,
            &[
                "download",
                &format!("pg{id}.txt"),
                "-o",
                dest.to_str().expect("utf-8"),
            ],
        )
        .await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            std::fs::read(&dest).expect("read"),
            std::fs::read(corpus::dir().join("books").join(format!("pg{id}.txt"))).expect("read"),
            "ebook {id} differs"
        );
    }

    // An ebook the mirror does not have: not found (exit 4), the others still stored.
    let out = redcloud(
        &cluster,
        &[
            "ingest",
            "gutenberg",
            "999999999",
            "--mirror",
            &mirror,
            "--layout",
            layout,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ebook #999999999 is not on the mirror"),
        "{}",
        text(&out.stderr)
    );

    // A mirror nobody listens on: unreachable (exit 3), with the URL in the message.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let out = redcloud(
        &cluster,
        &[
            "ingest",
            "gutenberg",
            "11",
            "--mirror",
            &dead,
            "--layout",
            layout,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&dead), "{}", text(&out.stderr));

    // Bad arguments: exit 2.
    for args in [
        &["ingest", "gutenberg", "eleven"][..],
        &["ingest", "gutenberg", "11", "--mirror", "ftp://x"][..],
        &["ingest", "gutenberg", "11", "--layout", "no-id.txt"][..],
    ] {
        let out = redcloud(&cluster, args).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
