//! A frozen node never holds a client up: a controller or chunkserver stopped with
//! SIGSTOP (its kernel still completes TCP handshakes, nothing answers) costs a
//! request at most the time to notice it and move on, for the CLI as a separate
//! process and for the client library mid-transfer.
//!
//! The real binaries run as processes (`redcloud_tests::procs`): SIGSTOP on an
//! in-process node would freeze the test too. Each request is bounded by a deadline
//! well above the design figure (a hang fails the test, noise does not); the
//! longest wait is printed, and the frozen benchmark figures are in docs/.

use std::time::{Duration, Instant};

use redcloud_tests::procs::ProcCluster;

/// A request that takes longer than this is taken as hung (the design figure is
/// about 1.5 s to notice a frozen controller, SPEC §10 aims at 2 s).
const HUNG: Duration = Duration::from_secs(15);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Book-like bytes: lines of a real book repeated to `len`.
fn book_bytes(len: usize, salt: &str) -> Vec<u8> {
    let line = format!("{salt}: It was the best of times, it was the worst of times.\n");
    line.as_bytes().iter().copied().cycle().take(len).collect()
}

/// Runs the CLI with `args` against `addrs`; it must succeed within [`HUNG`].
/// Returns how long it took and its standard output.
async fn timed(c: &ProcCluster, addrs: &[String], args: &[&str]) -> (Duration, String) {
    let (took, out) = timed_output(c, addrs, args).await;
    assert!(
        out.status.success(),
        "`redcloud {}` failed: {}",
        args.join(" "),
        text(&out.stderr)
    );
    (took, text(&out.stdout))
}

/// Runs the CLI with `args` against `addrs`; it must end within [`HUNG`],
/// whatever its exit code. Returns how long it took and what it wrote.
async fn timed_output(
    c: &ProcCluster,
    addrs: &[String],
    args: &[&str],
) -> (Duration, std::process::Output) {
    let t = Instant::now();
    let out = tokio::time::timeout(HUNG, c.cli(addrs, args))
        .await
        .unwrap_or_else(|_| panic!("`redcloud {}` hung past {HUNG:?}", args.join(" ")));
    (t.elapsed(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_controller_or_chunkserver_never_holds_a_request() {
    let mut c = ProcCluster::start(3, 3, &[]).await;
    let all = c.all_controllers();
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.txt");
    let big_bytes = book_bytes(24 << 20, "big");
    std::fs::write(&big, &big_bytes).expect("write");
    let small = dir.path().join("small.txt");
    std::fs::write(&small, book_bytes(300_000, "small")).expect("write");
    let (big_s, small_s) = (big.to_str().expect("utf-8"), small.to_str().expect("utf-8"));
    let out_path = dir.path().join("out.txt");
    let out_s = out_path.to_str().expect("utf-8");

    timed(&c, &all, &["upload", big_s, small_s]).await;
    let mut longest: Vec<(String, Duration)> = Vec::new();

    // 1. Controller 0, the first address every client tries, is frozen.
    c.controllers[0].freeze();
    for args in [
        vec!["ls"],
        vec!["stat", "small.txt"],
        vec!["versions", "small.txt"],
        vec!["upload", small_s, "--name", "while-frozen.txt"],
        vec!["download", "small.txt", "-o", out_s],
        vec!["search", "worst of times"],
    ] {
        // The frozen address named twice (as when it is given and is also behind
        // an alias): it is tried once.
        let twice: Vec<String> = std::iter::once(all[0].clone())
            .chain(all.iter().cloned())
            .collect();
        let (took, _) = timed(&c, &twice, &args).await;
        longest.push((format!("controller frozen: {}", args[0]), took));
    }
    // `cluster status` answers too, and says the truth: degraded (exit 10), the
    // frozen controller not answering.
    let (took, out) = timed_output(&c, &all, &["cluster", "status"]).await;
    assert_eq!(
        out.status.code(),
        Some(10),
        "a frozen controller makes the cluster degraded: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("not answering"),
        "{}",
        text(&out.stderr)
    );
    longest.push(("controller frozen: cluster status".into(), took));
    assert_eq!(
        std::fs::read(&out_path).expect("read"),
        std::fs::read(&small).expect("read")
    );
    c.controllers[0].thaw();

    // 2. A node freezes in the middle of a download or an upload: a download read
    // through controller 0 resumes from the next controller at the byte where it
    // broke; one read directly from the chunkservers goes on from the other
    // replicas of the frozen chunkserver's chunks (and needs no controller once it
    // has the plan); an upload is sent again from the start.
    let freeze_at = |pid: u32, limit: u64| {
        let done = std::sync::atomic::AtomicBool::new(false);
        move |n: u64| {
            if n >= limit && !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let _ = std::process::Command::new("kill")
                    .args(["-STOP", &pid.to_string()])
                    .status();
            }
        }
    };
    let ctl0 = c.controllers[0].pid();
    let cs0 = c.chunkservers[0].pid();
    for (what, direct, pid) in [
        (
            "controller frozen mid-download (through the controller)",
            false,
            ctl0,
        ),
        ("controller frozen mid-download (direct reads)", true, ctl0),
        ("chunkserver frozen mid-download (direct reads)", true, cs0),
    ] {
        let mut client = c.client(&all).await;
        client.set_direct_reads(direct);
        assert_eq!(client.controller(), all[0], "controller 0 answers first");
        let mut got = Vec::new();
        let freeze = freeze_at(pid, 4 << 20);
        let t = Instant::now();
        let info = tokio::time::timeout(
            HUNG,
            client.download_into("big.txt", None, &mut got, |n, _| freeze(n)),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: the download hung"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        longest.push((what.to_string(), t.elapsed()));
        assert_eq!(info.size, big_bytes.len() as u64, "{what}");
        assert!(
            got == big_bytes,
            "{what}: the download has the file's bytes"
        );
        if !direct {
            assert_ne!(
                client.controller(),
                all[0],
                "moved off the frozen controller"
            );
        }
        c.controllers[0].thaw();
        c.chunkservers[0].thaw();
    }

    let mut client = c.client(&all).await;
    assert_eq!(client.controller(), all[0]);
    let t = Instant::now();
    let up = tokio::time::timeout(
        HUNG,
        client.upload_file(&big, "big-again.txt", false, freeze_at(ctl0, 6 << 20)),
    )
    .await
    .expect("an upload through a controller frozen midway hung")
    .expect("upload sent again to another controller");
    longest.push(("controller frozen mid-upload".into(), t.elapsed()));
    assert_eq!(up.file.expect("file info").size, big_bytes.len() as u64);
    c.controllers[0].thaw();

    // 3. A chunkserver is frozen: uploads and downloads go on without it.
    c.chunkservers[0].freeze();
    for (i, args) in [
        vec!["upload", small_s, "--name", "cs-frozen.txt"],
        vec!["download", "big.txt", "-o", out_s],
        vec!["download", "small.txt", "-o", out_s],
        vec!["download", "cs-frozen.txt", "-o", out_s],
    ]
    .into_iter()
    .enumerate()
    {
        // Each through another controller, so each reads with its own rotation.
        let addrs: Vec<String> = all
            .iter()
            .cycle()
            .skip(i)
            .take(all.len())
            .cloned()
            .collect();
        let (took, _) = timed(&c, &addrs, &args).await;
        longest.push((format!("chunkserver frozen: {}", args[0]), took));
    }
    c.chunkservers[0].thaw();

    // Thawed, every controller serves everything written meanwhile.
    for a in &all {
        let (_, ls) = timed(&c, std::slice::from_ref(a), &["ls"]).await;
        for name in ["while-frozen.txt", "big-again.txt", "cs-frozen.txt"] {
            if !ls.contains(name) {
                redcloud_tests::wait_until(
                    &format!("{a} lists {name}"),
                    Duration::from_secs(60),
                    || async {
                        let out = c.cli(std::slice::from_ref(a), &["ls"]).await;
                        text(&out.stdout).contains(name)
                    },
                )
                .await;
            }
        }
    }

    longest.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    for (what, d) in &longest {
        eprintln!("frozen-node wait: {what}: {:.2} s", d.as_secs_f64());
    }
}
