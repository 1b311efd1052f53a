//! `redcloud register/login/logout/whoami` as a user runs them: the password from
//! standard input, the token kept in `$XDG_CONFIG_HOME/redcloud/` with mode 0600,
//! and a clear message with a non-zero exit for every refusal.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use redcloud_tests::TestCluster;

fn redcloud(controller: &str, config: &Path, args: &[String], stdin: Option<String>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redcloud"))
        .arg("--controller")
        .arg(controller)
        .args(args)
        .env_remove("REDCLOUD_CONTROLLER")
        .env_remove("REDCLOUD_TOKEN")
        .env("XDG_CONFIG_HOME", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redcloud");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

async fn run(controller: &str, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let (controller, config) = (controller.to_string(), config.to_path_buf());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || redcloud(&controller, &config, &args, stdin))
        .await
        .expect("join")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_from_the_command_line() {
    let cluster = TestCluster::start().await;
    let ctl = cluster.controller_addr(0);
    let home = tempfile::tempdir().expect("tempdir");
    let (dana, eve) = (home.path().join("dana"), home.path().join("eve"));
    let book = home.path().join("notes.txt");
    std::fs::write(&book, "private notes of dana\n".repeat(100)).expect("write");
    let book_s = book.to_str().expect("utf-8");

    let out = run(
        &ctl,
        &dana,
        &["register", "dana", "--password-stdin"],
        Some("dana-password\n"),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("registered dana"),
        "{}",
        text(&out.stdout)
    );
    // The same controller addressed as https:// (it serves plaintext): told so.
    let out = run(&format!("https://{ctl}"), &dana, &["ls"], None).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not answer in TLS"),
        "{}",
        text(&out.stderr)
    );
    let saved = dana.join("redcloud").join("session.json");
    let mode = std::fs::metadata(&saved)
        .expect("saved login")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let out = run(&ctl, &dana, &["whoami"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "dana");
    let out = run(&ctl, &dana, &["upload", book_s], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The login keeps the causal clock of its writes, so the next command's
    // writes are stamped after this upload on any controller.
    let clock_of = || {
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&saved).expect("saved login")).unwrap();
        s["clock"].as_u64().unwrap_or(0)
    };
    let after_upload = clock_of();
    assert!(after_upload > 0, "no causal clock kept after an upload");
    let out = run(&ctl, &dana, &["rm", "notes.txt"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        clock_of() > after_upload,
        "the delete did not move the clock"
    );
    // Commands side by side each save the clock: the login survives them all.
    let uploads = (0..6).map(|i| {
        let name = format!("side-{i}.txt");
        let (ctl, dana) = (ctl.clone(), dana.clone());
        async move { run(&ctl, &dana, &["upload", book_s, "--name", &name], None).await }
    });
    for out in futures::future::join_all(uploads).await {
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains("warning"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = run(&ctl, &dana, &["whoami"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "dana");
    let out = run(&ctl, &dana, &["upload", book_s], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Another user does not see it; a wrong password is refused (exit 7).
    let out = run(
        &ctl,
        &eve,
        &["login", "dana", "--password-stdin"],
        Some("not-her-password\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("wrong user name or password"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &ctl,
        &eve,
        &["register", "eve", "--password-stdin"],
        Some("eve-password\n"),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&ctl, &eve, &["ls"], None).await;
    assert!(out.status.success());
    assert!(
        !text(&out.stdout).contains("notes.txt"),
        "{}",
        text(&out.stdout)
    );
    let out = run(
        &ctl,
        &eve,
        &["--owner", "dana", "download", "notes.txt", "-o", "-"],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));

    // Taken name: exit 9; no password on stdin: exit 2; no terminal: exit 2.
    let out = run(
        &ctl,
        &eve,
        &["register", "dana", "--password-stdin"],
        Some("whatever-password\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(9), "{}", text(&out.stderr));
    let out = run(
        &ctl,
        &eve,
        &["login", "eve", "--password-stdin"],
        Some("\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = run(&ctl, &eve, &["login", "eve"], None).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--password-stdin"),
        "{}",
        text(&out.stderr)
    );

    // Logout revokes the token: the saved file is gone, whoami says not logged in,
    // and the old token (kept aside) is refused with a clear message.
    let token: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("read")).expect("json");
    let token = token["token"].as_str().expect("token").to_string();
    let out = run(&ctl, &dana, &["logout"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!saved.exists());
    let out = run(&ctl, &dana, &["whoami"], None).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let out = tokio::task::spawn_blocking({
        let (ctl, dana) = (ctl.clone(), dana.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_redcloud"))
                .args(["--controller", &ctl, "ls"])
                .env("XDG_CONFIG_HOME", &dana)
                .env("REDCLOUD_TOKEN", &token)
                .output()
                .expect("run")
        }
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("log in again"),
        "{}",
        text(&out.stderr)
    );
}

/// `https://` controllers and `--ca-file`: the password goes over TLS (no warning),
/// and an untrusted certificate is a clear error (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_tls_with_a_ca_file() {
    let cluster = TestCluster::with(redcloud_tests::ClusterSpec {
        tls: true,
        ..Default::default()
    })
    .await;
    let ctl = cluster.controller_addr(0);
    assert!(ctl.starts_with("https://localhost:"), "{ctl}");
    let home = tempfile::tempdir().expect("tempdir");
    let ca = home.path().join("ca.pem");
    std::fs::write(&ca, cluster.ca_pem.clone().expect("CA")).expect("write CA");
    let ca_s = ca.to_str().expect("utf-8").to_string();
    let config = home.path().join("config");
    let out = run(
        &ctl,
        &config,
        &[
            "--ca-file",
            &ca_s,
            "login",
            redcloud_tests::TEST_USER,
            "--password-stdin",
        ],
        Some(&format!("{}\n", redcloud_tests::TEST_PASSWORD)),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("unencrypted"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&ctl, &config, &["--ca-file", &ca_s, "whoami"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), redcloud_tests::TEST_USER);
    // Without the CA file the certificate is not trusted.
    let out = run(&ctl, &config, &["whoami"], None).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&out.stderr)
    );
}
