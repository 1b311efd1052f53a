//! The `redcloud` binary's manners: argument mistakes caught before any connection,
//! a plain message when the controller's name does not resolve, completions and a
//! man page, `upload -r`, `cluster status`/`cluster wait` exit codes, and Ctrl-C /
//! SIGTERM stopping a command promptly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redcloud_tests::{ClusterSpec, TestCluster};

/// The CLI with no saved login and no controller from the environment.
fn cli(controller: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redcloud"));
    c.arg("--controller")
        .arg(controller)
        .env_remove("REDCLOUD_CONTROLLER")
        .env_remove("REDCLOUD_TOKEN")
        .env_remove("NO_COLOR")
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("redcloud-cli-test-no-login"),
        );
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A loopback address nobody listens on (a port just released).
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

#[test]
fn completions_and_the_man_page_need_no_cluster() {
    let dead = dead_addr();
    let out = cli(&dead)
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bash = text(&out.stdout);
    assert!(
        bash.contains("complete") && bash.contains("redcloud"),
        "{bash}"
    );
    assert!(
        bash.contains("upload") && bash.contains("--recursive"),
        "{bash}"
    );
    let out = cli(&dead)
        .args(["completions", "zsh"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("#compdef redcloud"));
    let out = cli(&dead)
        .args(["completions", "nushell"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "an unknown shell");

    let out = cli(&dead).arg("man").output().expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let man = text(&out.stdout);
    assert!(
        man.contains("\n.TH redcloud 1"),
        "{}",
        &man[..man.len().min(200)]
    );
    assert!(
        man.contains("cluster") && man.contains("completions"),
        "{man}"
    );
}

#[test]
fn argument_mistakes_exit_at_once_without_connecting() {
    let dead = dead_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("book.txt");
    std::fs::write(&file, "text").expect("write");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let (d, f, e) = (
        dir.path().to_str().expect("utf-8"),
        file.to_str().expect("utf-8"),
        empty.to_str().expect("utf-8"),
    );
    let missing = dir.path().join("missing.txt");
    let m = missing.to_str().expect("utf-8");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["upload", f, m], 1, "missing.txt"),
        (vec!["upload", "-r", m], 1, "missing.txt"),
        (vec!["upload", d], 2, "is a directory"),
        (vec!["upload", "-r", e], 2, "no files to upload"),
        (vec!["upload", "-r", d, "--name", "x"], 2, "single file"),
        (
            vec!["upload", f, "--name", "bad\u{7}name"],
            2,
            "control characters",
        ),
        (vec!["cat", ""], 2, "empty"),
        (
            vec!["cluster", "wait", "--healthy", "--timeout", "3x"],
            2,
            "--timeout",
        ),
        (vec!["cluster", "wait", "--timeout", "3s"], 2, "--healthy"),
    ];
    for (args, code, says) in cases {
        let start = Instant::now();
        let out = cli(&dead).args(&args).output().expect("run");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("cannot reach"), "{args:?} connected: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{args:?} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn a_controller_name_that_does_not_resolve_gets_a_plain_hint() {
    let out = cli("no-such-controller.invalid")
        .arg("ls")
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cannot resolve 'no-such-controller.invalid'"),
        "{err}"
    );
    assert!(
        err.contains("--controller HOST:PORT") && err.contains("REDCLOUD_CONTROLLER"),
        "{err}"
    );
    for internal in ["hickory", "ResolveError", "NXDomain", "no record", "proto"] {
        assert!(!err.contains(internal), "resolver internals: {err}");
    }
}

/// Starts `cluster wait` against nobody, waits until it says it is waiting (its
/// signal handlers are in place by then), sends `signal`, and returns its exit
/// code and how long it took to exit.
fn stop_a_waiting_cli(signal: &str) -> (Option<i32>, Duration) {
    let mut child = cli(&dead_addr())
        .args(["cluster", "wait", "--healthy", "--timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read stderr");
    assert!(line.contains("waiting up to 1m"), "{line}");
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let deadline = sent + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status.code(), sent.elapsed());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redcloud still running 10 s after SIG{signal}");
        }
        std::thread::yield_now();
    }
}

#[test]
fn sigterm_and_ctrl_c_stop_a_command_promptly() {
    let (code, took) = stop_a_waiting_cli("TERM");
    assert_eq!(code, Some(143));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let (code, took) = stop_a_waiting_cli("INT");
    assert_eq!(code, Some(130));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

async fn run(cluster: &TestCluster, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = cli(&cluster.controller_addr(0));
    c.args(args)
        .env("REDCLOUD_TOKEN", cluster.token.clone().unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::task::spawn_blocking(move || c.output().expect("run"))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_r_goes_on_past_a_failed_file_and_status_exit_codes_follow_health() {
    // 64-byte chunks: a file over 16 MiB is more chunks than a file may have, so
    // the controller refuses it; small files are stored.
    let cluster = TestCluster::with(ClusterSpec {
        chunk_size: 64,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("books");
    std::fs::create_dir_all(root.join("shelf/top")).expect("mkdir");
    std::fs::write(root.join("a.txt"), "Call me Ishmael.").expect("write");
    std::fs::write(root.join("shelf/top/b.txt"), "It was a dark night.").expect("write");
    std::fs::File::create(root.join("shelf/huge.txt"))
        .and_then(|f| f.set_len(17 * 1024 * 1024))
        .expect("sparse file");
    std::fs::write(root.join("z.txt"), "The end.").expect("write");
    let r = root.to_str().expect("utf-8");

    let out = run(&cluster, &["upload", "-r", r], &[]).await;
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{so}\n{se}");
    assert!(so.contains("3 of 4 file(s) uploaded"), "{so}");
    assert!(
        se.contains("shelf/huge.txt") && se.contains("larger than"),
        "{se}"
    );
    assert!(se.contains("1 of 4 file(s) not uploaded"), "{se}");

    let out = run(&cluster, &["ls", "--json"], &[]).await;
    let files: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = files
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["a.txt", "shelf/top/b.txt", "z.txt"]);
    assert_eq!(files[0]["size"], 16, "--json keeps exact sizes");

    // Human sizes and dates; --quiet keeps the data, drops the chatter.
    let out = run(&cluster, &["ls"], &[]).await;
    let ls = text(&out.stdout);
    assert!(ls.contains("16 B") && ls.contains("UPLOADED (UTC)"), "{ls}");
    assert!(!ls.contains('\x1b'), "colour in piped output: {ls:?}");
    let out = run(&cluster, &["-q", "upload", "-r", r], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("huge.txt"));
    let out = run(&cluster, &["--quiet", "ls"], &[]).await;
    assert!(text(&out.stdout).contains("z.txt"));

    // Healthy: status exits 0, wait returns at once.
    let out = run(&cluster, &["cluster", "status"], &[("NO_COLOR", "1")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("health: healthy"));
    let out = run(
        &cluster,
        &["cluster", "wait", "--healthy", "--timeout", "20s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("healthy"),
        "{}",
        text(&out.stdout)
    );

    // A chunkserver cut off: degraded, exit 10, naming it; wait times out saying what.
    cluster.isolate_chunkserver(2, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = run(&cluster, &["cluster", "status"], &[]).await;
        if out.status.code() == Some(10) {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "status never reported the cut-off chunkserver: {}",
            text(&out.stdout)
        );
        // The poll interval of a condition wait (as redcloud_tests::wait_until).
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (so, se) = (text(&status.stdout), text(&status.stderr));
    assert!(so.contains("health: DEGRADED"), "{so}");
    assert!(se.contains("cluster not healthy"), "{se}");
    let out = run(&cluster, &["cluster", "status", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(10));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("still JSON");
    let start = Instant::now();
    let out = run(
        &cluster,
        &["cluster", "wait", "--healthy", "--timeout", "1500ms"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(10));
    let err = text(&out.stderr);
    assert!(
        err.contains("still not healthy after 1s 500ms")
            && (err.contains("chunkserver(s) failed")
                || err.contains("2 of 3 chunkservers answered")),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    cluster.isolate_chunkserver(2, false);
    let out = run(
        &cluster,
        &["cluster", "wait", "--healthy", "--timeout", "30s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
