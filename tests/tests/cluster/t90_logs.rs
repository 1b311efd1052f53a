//! Logs as operators read them: `LOG_FORMAT=json` gives one JSON object per line
//! (with the gRPC method of the request being served, when request spans are
//! on); the default text format carries no ANSI colour when stderr is not a
//! terminal (`docker logs`, files); an unknown `LOG_FORMAT` stops the node at
//! start with a message saying what is accepted.
//!
//! The real controller binary runs as a process, its stderr going to a file.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redcloud_tests::procs::bin_dir;
use redcloud_tests::wait_until;

/// A controller process killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// Starts a standalone controller in `dir` with `env`, stderr and stdout to
/// `dir/log`. Returns it and its gRPC address.
fn start(dir: &Path, env: &[(&str, &str)]) -> (Node, String) {
    let (g, h) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("log")).expect("log file");
    let mut cmd = Command::new(bin_dir().join("redcloud-controller"));
    cmd.args(["--data-dir", &dir.join("data").display().to_string()])
        .args(["--grpc-listen", &format!("127.0.0.1:{g}")])
        .args(["--http-listen", &format!("127.0.0.1:{h}")])
        .args(["--peers", "127.0.0.1:1", "--standalone"])
        .env_remove("LOG_FORMAT")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start redcloud-controller");
    (Node(child), format!("127.0.0.1:{g}"))
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_s_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_node, grpc) = start(
        dir.path(),
        &[
            ("LOG_FORMAT", "json"),
            // Request spans are at debug level: on for the gRPC layer only.
            ("RUST_LOG", "info,redcloud_proto=debug"),
        ],
    );
    // Registering an account logs "account registered" while serving the call.
    wait_until("the controller answers", Duration::from_secs(60), || {
        let grpc = grpc.clone();
        async move {
            match redcloud_cli::Client::connect(&[grpc]).await {
                Ok(mut c) => c
                    .register("logreader", "a long enough password")
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    wait_until(
        "the registration is logged",
        Duration::from_secs(30),
        || async { log(dir.path()).contains("account registered") },
    )
    .await;
    let text = log(dir.path());
    let mut registered = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}\nwhole log:\n{text}"));
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        assert!(v["level"].is_string(), "no level: {line}");
        assert!(v["fields"].is_object(), "no fields: {line}");
        if v["fields"]["message"] == "account registered" {
            registered = Some(v);
        }
    }
    let registered = registered.expect("the registration line");
    assert_eq!(registered["level"], "INFO");
    assert_eq!(
        registered["span"]["method"], "/redcloud.v1.Controller/Register",
        "the event carries its request's span: {registered}"
    );
    assert!(!text.contains('\u{1b}'), "JSON logs carry no ANSI codes");
}

#[tokio::test]
async fn text_logs_to_a_file_carry_no_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_node, _grpc) = start(dir.path(), &[("RUST_LOG", "info")]);
    wait_until(
        "the controller logs its start",
        Duration::from_secs(60),
        || async { log(dir.path()).contains("controller started") },
    )
    .await;
    let text = log(dir.path());
    assert!(
        !text.contains('\u{1b}'),
        "stderr is a file, not a terminal: no ANSI escape codes\n{text:?}"
    );
    assert!(text.contains("INFO"), "{text}");
}

#[tokio::test]
async fn an_unknown_log_format_stops_the_node_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut node, _grpc) = start(dir.path(), &[("LOG_FORMAT", "xml")]);
    let mut status = None;
    wait_until("the controller exits", Duration::from_secs(30), || {
        status = node.0.try_wait().expect("wait");
        std::future::ready(status.is_some())
    })
    .await;
    assert!(
        !status.expect("exited").success(),
        "a bad LOG_FORMAT is an error"
    );
    let text = log(dir.path());
    assert!(
        text.contains(r#"LOG_FORMAT must be "text" or "json", not "xml""#),
        "{text}"
    );
}
