//! A cluster of the real binaries as separate processes, as users run them: for
//! faults a process can suffer and an in-process node cannot (SIGSTOP freezes the
//! whole process, its kernel still accepting connections), and for figures per
//! process (peak RSS).
//!
//! The binaries are the workspace's own, built beside the running test or
//! benchmark (`target/debug` for tests, `target/release` for benchmarks) by
//! [`bin_dir`] before first use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{TEST_PASSWORD, TEST_USER, wait_until};

/// The directory holding `redcloud-controller`, `redcloud-chunkserver` and
/// `redcloud`: the one the running executable was built into, after `cargo build
/// --bins` (with `--release` for a benchmark) brought them up to date, once per
/// process (`cargo test` builds only the binaries of the package under test).
/// `REDCLOUD_BIN_DIR` points elsewhere and skips the build.
pub fn bin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("REDCLOUD_BIN_DIR") {
            return PathBuf::from(d);
        }
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test>-<hash>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("executable under target/<profile>/deps")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--workspace", "--bins"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"));
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let out = build
            .output()
            .unwrap_or_else(|e| panic!("run cargo build --bins: {e}"));
        assert!(
            out.status.success(),
            "cargo build --bins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for b in ["redcloud-controller", "redcloud-chunkserver", "redcloud"] {
            assert!(
                dir.join(b).is_file(),
                "{} is missing after cargo build --bins (point REDCLOUD_BIN_DIR at the binaries)",
                dir.join(b).display()
            );
        }
        dir
    })
    .clone()
}

/// A free loopback port (bound and released: the node binds it again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// One node process.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub grpc_addr: String,
    pub http_addr: String,
    frozen: bool,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {} ({})", self.pid(), self.name);
    }

    /// Freezes the process (SIGSTOP): it answers nothing, its sockets stay open.
    pub fn freeze(&mut self) {
        self.signal("STOP");
        self.frozen = true;
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal("CONT");
        self.frozen = false;
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.frozen {
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(c.id().to_string())
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Controllers and chunkservers as processes on loopback, each with its own data
/// directory and log file; every process is killed when this is dropped.
pub struct ProcCluster {
    pub controllers: Vec<Proc>,
    pub chunkservers: Vec<Proc>,
    /// The test account's token.
    pub token: String,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
}

impl ProcCluster {
    /// Starts `controllers` controllers and `chunkservers` chunkservers, waits until
    /// every controller sees every chunkserver, and makes the test account.
    /// `extra_controller_args` go to every controller (e.g. `--min-chunk-replicas 3`).
    pub async fn start(
        controllers: usize,
        chunkservers: usize,
        extra_controller_args: &[&str],
    ) -> ProcCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("redcloud-procs-")
            .tempdir()
            .expect("tempdir");
        let ctl_ports: Vec<(u16, u16)> = (0..controllers)
            .map(|_| (free_port(), free_port()))
            .collect();
        let peers: Vec<String> = ctl_ports
            .iter()
            .map(|(_, h)| format!("127.0.0.1:{h}"))
            .collect();
        let mut out = ProcCluster {
            controllers: Vec::new(),
            chunkservers: Vec::new(),
            token: String::new(),
            dir,
            bin,
        };
        for (i, (g, h)) in ctl_ports.iter().enumerate() {
            let name = format!("controller-{i}");
            let mut args: Vec<String> = vec![
                "--data-dir".into(),
                out.dir.path().join(&name).display().to_string(),
                "--grpc-listen".into(),
                format!("127.0.0.1:{g}"),
                "--http-listen".into(),
                format!("127.0.0.1:{h}"),
                "--peers".into(),
                peers.join(","),
            ];
            args.extend(extra_controller_args.iter().map(|s| s.to_string()));
            let p = out.spawn("redcloud-controller", &name, &args, *g, *h);
            out.controllers.push(p);
        }
        for i in 0..chunkservers {
            out.add_chunkserver_process(i);
        }
        for i in 0..controllers {
            out.wait_healthy(i, chunkservers).await;
        }
        out.token = out.make_account().await;
        out
    }

    fn add_chunkserver_process(&mut self, i: usize) {
        let (g, h) = (free_port(), free_port());
        let name = format!("chunkserver-{i}");
        let controllers: Vec<String> = self
            .controllers
            .iter()
            .map(|c| c.http_addr.clone())
            .collect();
        let args: Vec<String> = vec![
            "--data-dir".into(),
            self.dir.path().join(&name).display().to_string(),
            "--grpc-listen".into(),
            format!("127.0.0.1:{g}"),
            "--http-listen".into(),
            format!("127.0.0.1:{h}"),
            "--controllers".into(),
            controllers.join(","),
        ];
        let p = self.spawn("redcloud-chunkserver", &name, &args, g, h);
        self.chunkservers.push(p);
    }

    fn spawn(&self, binary: &str, name: &str, args: &[String], grpc: u16, http: u16) -> Proc {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log");
        let child = Command::new(self.bin.join(binary))
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            grpc_addr: format!("127.0.0.1:{grpc}"),
            http_addr: format!("127.0.0.1:{http}"),
            frozen: false,
        }
    }

    /// The log of node `name` (e.g. "controller-0"), for a failing assertion.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Every controller's gRPC address, in order, comma-separated (for `--controller`).
    pub fn all_controllers(&self) -> Vec<String> {
        self.controllers
            .iter()
            .map(|c| c.grpc_addr.clone())
            .collect()
    }

    /// A client of `addrs` logged in as the test account.
    pub async fn client(&self, addrs: &[String]) -> redcloud_cli::Client {
        let mut c = redcloud_cli::Client::connect(addrs)
            .await
            .unwrap_or_else(|e| panic!("connect to {addrs:?}: {e}"));
        c.set_token(Some(&self.token)).expect("token");
        c
    }

    /// Waits until controller `i` sees `n` healthy chunkservers.
    pub async fn wait_healthy(&self, i: usize, n: usize) {
        let addr = self.controllers[i].grpc_addr.clone();
        let name = self.controllers[i].name.clone();
        wait_until(
            &format!("{name} sees {n} healthy chunkservers"),
            Duration::from_secs(60),
            || {
                let addr = addr.clone();
                async move {
                    let Ok(mut c) = redcloud_cli::Client::connect(&[addr]).await else {
                        return false;
                    };
                    c.cluster_status()
                        .await
                        .map(|s| s.chunkservers.iter().filter(|c| c.healthy).count() >= n)
                        .unwrap_or(false)
                }
            },
        )
        .await;
    }

    async fn make_account(&self) -> String {
        let first = vec![self.controllers[0].grpc_addr.clone()];
        let mut c = redcloud_cli::Client::connect(&first)
            .await
            .expect("connect to controller-0");
        c.register(TEST_USER, TEST_PASSWORD)
            .await
            .expect("register");
        let token = c
            .login(TEST_USER, TEST_PASSWORD)
            .await
            .expect("log in")
            .token;
        for p in &self.controllers {
            let (addr, t) = (p.grpc_addr.clone(), token.clone());
            wait_until(
                &format!("{} accepts the test account's token", p.name),
                Duration::from_secs(60),
                || {
                    let (addr, t) = (addr.clone(), t.clone());
                    async move {
                        let Ok(mut c) = redcloud_cli::Client::connect(&[addr]).await else {
                            return false;
                        };
                        c.set_token(Some(&t)).is_ok() && c.whoami().await.is_ok()
                    }
                },
            )
            .await;
        }
        token
    }

    /// Runs the `redcloud` binary with `--controller ADDRS`, logged in as the test
    /// account (on a blocking thread, so the caller's runtime keeps going).
    pub async fn cli(&self, addrs: &[String], args: &[&str]) -> std::process::Output {
        let mut c = Command::new(self.bin.join("redcloud"));
        c.arg("--controller")
            .arg(addrs.join(","))
            .args(args)
            .env_remove("REDCLOUD_CONTROLLER")
            .env("REDCLOUD_TOKEN", &self.token)
            .env("XDG_CONFIG_HOME", self.dir.path().join("cli-config"))
            .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || c.output().expect("run redcloud"))
            .await
            .expect("join")
    }
}
