//! The `redcloud` binary against a real cluster: output, `--json`, and a clear
//! message with a non-zero exit for every failure a user can hit.

use std::process::{Command, Output};

use redcloud_tests::TestCluster;

fn redcloud(controller: &str, token: Option<&str>, args: &[String]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redcloud"));
    c.arg("--controller")
        .arg(controller)
        .args(args)
        .env_remove("REDCLOUD_CONTROLLER")
        .env_remove("REDCLOUD_TOKEN")
        // Never the saved login of whoever runs the tests.
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("redcloud-cli-test-no-login"),
        );
    if let Some(t) = token {
        c.env("REDCLOUD_TOKEN", t);
    }
    c.output().expect("run redcloud")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the CLI on a blocking thread, so the in-process cluster keeps being served;
/// logged in as the test account (`REDCLOUD_TOKEN`).
async fn run_at(cluster: &TestCluster, controller: &str, args: &[&str]) -> Output {
    let controller = controller.to_string();
    let token = cluster.token.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || redcloud(&controller, token.as_deref(), &args))
        .await
        .expect("join")
}

async fn run(cluster: &TestCluster, args: &[&str]) -> Output {
    run_at(cluster, &cluster.controller_addr(0), args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_work_and_failures_exit_non_zero_with_clear_messages() {
    let cluster = TestCluster::start().await;
    let ctl = cluster.controller_addr(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("alpha.txt");
    let b = dir.path().join("beta.txt");
    std::fs::write(&a, "Call me Ishmael. ".repeat(10_000)).expect("write");
    std::fs::write(&b, "It is a truth universally acknowledged.").expect("write");
    let (a_s, b_s) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let dest = dir.path().join("copy.txt");
    let dest_s = dest.to_str().expect("utf-8");

    // Upload several files at once.
    let out = run(&cluster, &["upload", a_s, b_s]).await;
    assert!(out.status.success(), "upload failed: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("uploaded alpha.txt"),
        "{}",
        text(&out.stdout)
    );

    let out = run(&cluster, &["ls", "--json"]).await;
    assert!(out.status.success());
    let files: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json is JSON");
    let names: Vec<&str> = files
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["alpha.txt", "beta.txt"]);

    let out = run(&cluster, &["download", "alpha.txt", "-o", dest_s]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&a).expect("read")
    );

    // `cat` (and `download -o -`) stream the book to standard output.
    for args in [
        vec!["cat", "alpha.txt"],
        vec!["download", "alpha.txt", "-o", "-"],
    ] {
        let out = run(&cluster, &args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            out.stdout == std::fs::read(&a).expect("read"),
            "{args:?}: stdout differs from the file"
        );
    }
    let out = run(&cluster, &["cat", "no-such-book.txt"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());

    // Several names at once, into a directory.
    let many = dir.path().join("many");
    std::fs::create_dir(&many).expect("mkdir");
    let many_s = many.to_str().expect("utf-8");
    let out = run(
        &cluster,
        &["download", "alpha.txt", "beta.txt", "-o", many_s],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (name, src) in [("alpha.txt", &a), ("beta.txt", &b)] {
        assert_eq!(
            std::fs::read(many.join(name)).expect("read"),
            std::fs::read(src).expect("read")
        );
    }
    let out = run(&cluster, &["download", "alpha.txt", "beta.txt", "-o", a_s]).await;
    assert_eq!(out.status.code(), Some(2), "a file as the directory");
    assert!(
        text(&out.stderr).contains("must be an existing directory"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&cluster, &["stat", "alpha.txt", "--json"]).await;
    assert!(out.status.success());
    let stat: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stat --json is JSON");
    assert_eq!(
        stat["chunks"][0]["replicas"]
            .as_array()
            .expect("replicas")
            .len(),
        3
    );
    let out = run(&cluster, &["stat", "alpha.txt"]).await;
    assert!(
        text(&out.stdout).contains("3 copies"),
        "{}",
        text(&out.stdout)
    );

    let out = run(&cluster, &["cluster", "status", "--json"]).await;
    assert!(out.status.success());
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(
        st["chunkservers"].as_array().expect("chunkservers").len(),
        3
    );
    let out = run(&cluster, &["cluster", "status"]).await;
    assert!(
        text(&out.stdout).contains("3 healthy"),
        "{}",
        text(&out.stdout)
    );

    // A second upload of a name makes a new version; `versions` lists both.
    let out = run(&cluster, &["upload", a_s]).await;
    assert!(out.status.success());
    let out = run(&cluster, &["versions", "alpha.txt", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("versions --json is JSON");
    assert_eq!(v.as_array().expect("array").len(), 2);
    let out = run(&cluster, &["versions", "alpha.txt"]).await;
    assert!(
        text(&out.stdout).contains("current"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("earlier"),
        "{}",
        text(&out.stdout)
    );

    let out = run(&cluster, &["rm", "beta.txt"]).await;
    assert!(out.status.success());

    // Not found: exit 4, and a failed download leaves an existing output file alone.
    let out = run(&cluster, &["download", "beta.txt", "-o", dest_s]).await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("'beta.txt' not found"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&a).expect("read")
    );
    let out = run(&cluster, &["rm", "no-such-book.txt"]).await;
    assert_eq!(out.status.code(), Some(4));

    // Bad arguments: exit 2.
    assert_eq!(
        run(&cluster, &["upload"]).await.status.code(),
        Some(2),
        "missing arguments"
    );
    assert_eq!(
        run(&cluster, &["frobnicate"]).await.status.code(),
        Some(2),
        "unknown command"
    );
    let out = run(&cluster, &["upload", a_s, b_s, "--name", "x"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("single file"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&cluster, &["download", "alpha.txt", "--version", "v7"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("version"),
        "{}",
        text(&out.stderr)
    );

    // A missing local file: exit 1, naming the file.
    let missing = dir.path().join("missing.txt");
    let out = run(&cluster, &["upload", missing.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.txt"),
        "{}",
        text(&out.stderr)
    );

    // An unreachable controller: exit 3.
    let unreachable = run_at(&cluster, "127.0.0.1:1", &["ls"]).await;
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(
        text(&unreachable.stderr).contains("cannot reach any controller"),
        "{}",
        text(&unreachable.stderr)
    );

    // Failover: a dead address first, then the live controller.
    let out = run_at(&cluster, &format!("127.0.0.1:1,{ctl}"), &["ls"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("alpha.txt"));
    assert!(!text(&unreachable.stderr).contains("panicked"));
}
