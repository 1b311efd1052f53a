//! The `TestCluster` fixture: real controllers and chunkservers on loopback, each
//! on port 0 with its own data directory and its own tokio runtime, so a test can
//! kill one abruptly (its runtime is dropped: sockets close, tasks vanish, only what
//! reached disk survives) and restart it on the same address and data.
//!
//! Tests wait on conditions with [`wait_until`], never on fixed sleeps.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redcloud_common::ChunkId;
use redcloud_proto::chunk_client::{self, ChunkClient};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod corpus;
pub mod fault_run;
pub mod procs;
pub mod proxy;
pub mod sim;

/// Polls `check` every 20 ms until it returns true; panics naming `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
    }
}

/// Logs to stderr when `RUST_LOG` is set (captured per test by the test runner).
pub fn init_test_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = redcloud_common::config::init_logging();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Controller,
    Chunkserver,
}

/// One node running on its own runtime thread.
pub struct NodeHandle {
    role: Role,
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    controllers_http: Vec<String>,
    controller_config: Option<redcloud_controller::Config>,
    shutdown: CancellationToken,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    controller: Option<Arc<redcloud_controller::node::Node>>,
    chunkserver: Option<Arc<redcloud_chunkserver::node::Node>>,
    /// Chunkservers: the scrub interval they start with.
    scrub_interval: Duration,
    /// Chunkservers: the cluster secret they start with.
    cluster_secret: Option<String>,
    /// Chunkservers: the address advertised instead of the detected one.
    advertise: Option<String>,
    /// Sockets bound (port 0) when the node was made, used by its first start, so
    /// no other test can take the ports in between.
    reserved: Option<(std::net::TcpListener, std::net::TcpListener)>,
}

/// A started node's shared state, handed back to the test thread.
enum Started {
    Controller(Arc<redcloud_controller::node::Node>),
    Chunkserver(Arc<redcloud_chunkserver::node::Node>),
}

impl NodeHandle {
    fn new_controller(
        data_dir: PathBuf,
        sockets: (std::net::TcpListener, std::net::TcpListener),
        cfg: redcloud_controller::Config,
    ) -> Self {
        Self::new(
            Role::Controller,
            data_dir,
            sockets,
            Vec::new(),
            Some(cfg),
            Duration::from_secs(3600),
        )
    }

    fn new_chunkserver(
        data_dir: PathBuf,
        controllers_http: Vec<String>,
        scrub_interval: Duration,
    ) -> Self {
        Self::new(
            Role::Chunkserver,
            data_dir,
            (reserve(), reserve()),
            controllers_http,
            None,
            scrub_interval,
        )
    }

    fn new(
        role: Role,
        data_dir: PathBuf,
        sockets: (std::net::TcpListener, std::net::TcpListener),
        controllers_http: Vec<String>,
        controller_config: Option<redcloud_controller::Config>,
        scrub_interval: Duration,
    ) -> Self {
        let addr = |l: &std::net::TcpListener| l.local_addr().expect("local addr");
        NodeHandle {
            role,
            data_dir,
            grpc_addr: addr(&sockets.0),
            http_addr: addr(&sockets.1),
            reserved: Some(sockets),
            controllers_http,
            controller_config,
            shutdown: CancellationToken::new(),
            kill: None,
            thread: None,
            controller: None,
            chunkserver: None,
            scrub_interval,
            cluster_secret: None,
            advertise: None,
        }
    }

    /// The running controller's shared state (its network filter, database, clock).
    pub fn controller(&self) -> &Arc<redcloud_controller::node::Node> {
        self.controller.as_ref().expect("a running controller")
    }

    /// The running chunkserver's shared state (its store, metrics, test hooks).
    pub fn chunkserver(&self) -> &Arc<redcloud_chunkserver::node::Node> {
        self.chunkserver.as_ref().expect("a running chunkserver")
    }

    /// The configuration a controller starts with.
    pub fn config(&self) -> &redcloud_controller::Config {
        self.controller_config.as_ref().expect("a controller")
    }

    /// Changes the configuration a controller gets at its next start.
    pub fn controller_config_mut(&mut self) -> &mut redcloud_controller::Config {
        self.controller_config.as_mut().expect("a controller")
    }

    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Stops the node abruptly, like `kill -9`: no draining, in-flight work is lost.
    pub fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.controller = None;
        self.chunkserver = None;
    }

    /// Stops the node gracefully (SIGTERM behaviour): drains, then returns.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.kill = None;
        self.controller = None;
        self.chunkserver = None;
    }

    /// (Re)starts the node on its address and data directory.
    pub fn start(&mut self) {
        assert!(self.thread.is_none(), "node already running");
        let shutdown = CancellationToken::new();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        type Ready = Result<Started, String>;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
        let role = self.role;
        let data_dir = self.data_dir.clone();
        let (grpc, http) = (self.grpc_addr, self.http_addr);
        let controllers = self.controllers_http.clone();
        let ctl_config = self.controller_config.clone();
        let scrub_interval = self.scrub_interval;
        let cluster_secret = self.cluster_secret.clone();
        let advertise = self.advertise.clone();
        let reserved = self.reserved.take();
        let sd = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{role:?}-{}", grpc.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("node runtime");
                let ready = ready_tx.clone();
                rt.block_on(async move {
                    let adopt = |l: std::net::TcpListener| {
                        l.set_nonblocking(true)?;
                        TcpListener::from_std(l)
                    };
                    let bound = match reserved {
                        Some((g, h)) => (adopt(g), adopt(h)),
                        None => (bind_retrying(grpc).await, bind_retrying(http).await),
                    };
                    let (g, h) = match bound {
                        (Ok(g), Ok(h)) => (g, h),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = ready.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let handle;
                    let waiter: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match role {
                        Role::Controller => {
                            let mut cfg = ctl_config.expect("controller config");
                            cfg.data_dir = data_dir;
                            let listeners = redcloud_controller::Listeners { grpc: g, http: h };
                            match redcloud_controller::start(cfg, listeners, sd).await {
                                Ok(r) => {
                                    handle = Started::Controller(r.node.clone());
                                    Box::pin(r.wait())
                                }
                                Err(e) => {
                                    let _ = ready.send(Err(e.to_string()));
                                    return;
                                }
                            }
                        }
                        Role::Chunkserver => {
                            let mut cfg =
                                redcloud_chunkserver::Config::for_test(data_dir, controllers);
                            cfg.scrub_interval = scrub_interval;
                            cfg.cluster_secret = cluster_secret;
                            cfg.advertise_addr = advertise;
                            let listeners = redcloud_chunkserver::Listeners { grpc: g, http: h };
                            match redcloud_chunkserver::start(cfg, listeners, sd).await {
                                Ok(r) => {
                                    handle = Started::Chunkserver(r.node.clone());
                                    Box::pin(r.wait())
                                }
                                Err(e) => {
                                    let _ = ready.send(Err(e.to_string()));
                                    return;
                                }
                            }
                        }
                    };
                    let _ = ready.send(Ok(handle));
                    tokio::select! {
                        _ = waiter => {}
                        _ = kill_rx => {}
                    }
                });
                // Dropping every task at once is what makes `kill` abrupt.
                rt.shutdown_background();
            })
            .expect("spawn node thread");
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(Started::Controller(n))) => self.controller = Some(n),
            Ok(Ok(Started::Chunkserver(n))) => self.chunkserver = Some(n),
            Ok(Err(e)) => panic!("{role:?} failed to start: {e}"),
            Err(e) => panic!("{role:?} did not start: {e}"),
        }
        self.shutdown = shutdown;
        self.kill = Some(kill_tx);
        self.thread = Some(thread);
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Binds `addr`, retrying briefly: a port just released by a killed node can take
/// a moment to be free again.
async fn bind_retrying(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..100 {
        tick.tick().await;
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

/// A listening socket on a free loopback port (port 0).
fn reserve() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0")
}

/// How a test cluster is built.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub controllers: usize,
    pub chunkservers: usize,
    pub min_chunk_replicas: u32,
    pub chunk_size: u64,
    /// Adjusts controller `i`'s configuration before it first starts.
    pub tweak: Option<fn(usize, &mut redcloud_controller::Config)>,
    /// How often chunkservers start a scrub pass.
    pub scrub_interval: Duration,
    /// The cluster secret every node starts with (none: internal calls unauthenticated).
    pub cluster_secret: Option<String>,
    /// Controllers serve the client API over TLS, with a certificate for
    /// `localhost` signed by a test CA; clients use `https://localhost:PORT`.
    pub tls: bool,
}

/// A test CA and a `localhost` certificate it signed, as PEM files in `dir`:
/// (certificate, key, CA certificate PEM).
pub fn test_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    std::fs::create_dir_all(dir).expect("certificate dir");
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).expect("write certificate");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k, ca.pem().into_bytes())
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            controllers: 1,
            chunkservers: 3,
            min_chunk_replicas: 2,
            chunk_size: redcloud_common::chunking::DEFAULT_CHUNK_SIZE as u64,
            tweak: None,
            scrub_interval: Duration::from_secs(3600),
            cluster_secret: None,
            tls: false,
        }
    }
}

/// Controllers and chunkservers on loopback, with data in a temporary directory
/// that is removed when the cluster is dropped (after every node is stopped).
pub struct TestCluster {
    pub controllers: Vec<NodeHandle>,
    pub chunkservers: Vec<NodeHandle>,
    /// The secret the nodes share, if any; the chunk-API helper sends it.
    pub cluster_secret: Option<String>,
    /// The test CA's certificate (PEM) when the controllers serve TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// The token of the test account ([`TEST_USER`]), made when the cluster
    /// started and known to every controller; clients send it.
    pub token: Option<String>,
    _dir: tempfile::TempDir,
}

/// The account every test cluster has, and its password.
pub const TEST_USER: &str = "tester";
pub const TEST_PASSWORD: &str = "tester-password";

impl TestCluster {
    /// 1 controller and 3 chunkservers, `MIN_CHUNK_REPLICAS` 2.
    pub async fn start() -> TestCluster {
        Self::with(ClusterSpec::default()).await
    }

    /// Starts the cluster and waits until every controller sees every chunkserver healthy.
    pub async fn with(spec: ClusterSpec) -> TestCluster {
        init_test_logging();
        let dir = tempfile::Builder::new()
            .prefix("redcloud-test-")
            .tempdir()
            .expect("tempdir");
        let mut controllers = Vec::new();
        let tls = spec.tls.then(|| test_certificates(&dir.path().join("tls")));
        let ctl_sockets: Vec<(std::net::TcpListener, std::net::TcpListener)> = (0..spec
            .controllers)
            .map(|_| (reserve(), reserve()))
            .collect();
        let peers: Vec<String> = ctl_sockets
            .iter()
            .map(|(_, h)| h.local_addr().expect("local addr").to_string())
            .collect();
        for (i, sockets) in ctl_sockets.into_iter().enumerate() {
            let data_dir = dir.path().join(format!("controller-{i}"));
            let mut cfg = redcloud_controller::Config::for_test(data_dir.clone());
            cfg.min_chunk_replicas = spec.min_chunk_replicas;
            cfg.chunk_size = spec.chunk_size;
            cfg.peers = peers.clone();
            cfg.cluster_secret = spec.cluster_secret.clone();
            if let Some((cert, key, _)) = &tls {
                cfg.tls_cert = Some(cert.clone());
                cfg.tls_key = Some(key.clone());
            }
            if let Some(tweak) = spec.tweak {
                tweak(i, &mut cfg);
            }
            controllers.push(NodeHandle::new_controller(data_dir, sockets, cfg));
        }
        let controllers_http: Vec<String> = controllers
            .iter()
            .map(|c| c.http_addr.to_string())
            .collect();
        let mut chunkservers = Vec::new();
        for i in 0..spec.chunkservers {
            let mut cs = NodeHandle::new_chunkserver(
                dir.path().join(format!("chunkserver-{i}")),
                controllers_http.clone(),
                spec.scrub_interval,
            );
            cs.cluster_secret = spec.cluster_secret.clone();
            chunkservers.push(cs);
        }
        for n in controllers.iter_mut().chain(chunkservers.iter_mut()) {
            n.start();
        }
        let mut cluster = TestCluster {
            controllers,
            chunkservers,
            cluster_secret: spec.cluster_secret.clone(),
            ca_pem: tls.map(|(_, _, ca)| ca),
            token: None,
            _dir: dir,
        };
        let want = spec.chunkservers;
        for i in 0..spec.controllers {
            cluster.wait_healthy_chunkservers(i, want).await;
        }
        if spec.controllers > 0 {
            cluster.token = Some(cluster.make_test_account().await);
        }
        cluster
    }

    /// Registers [`TEST_USER`] through controller 0, logs in, and waits until every
    /// controller accepts the token.
    async fn make_test_account(&self) -> String {
        let mut c = self.anonymous_client_of(0).await;
        c.register(TEST_USER, TEST_PASSWORD)
            .await
            .expect("register the test account");
        let token = c
            .login(TEST_USER, TEST_PASSWORD)
            .await
            .expect("log in as the test account")
            .token;
        for i in 0..self.controllers.len() {
            let t = token.clone();
            wait_until(
                &format!("controller {i} accepts the test account's token"),
                Duration::from_secs(60),
                || {
                    let t = t.clone();
                    async move {
                        let mut c = self.anonymous_client_of(i).await;
                        c.set_token(Some(&t)).is_ok() && c.whoami().await.is_ok()
                    }
                },
            )
            .await;
        }
        token
    }

    /// A client of the addresses `addrs`, logged in as the test account.
    pub async fn connect(
        &self,
        addrs: &[String],
    ) -> Result<redcloud_cli::Client, redcloud_cli::ClientError> {
        let mut c = redcloud_cli::Client::connect_with_ca(addrs, self.ca_pem.as_deref()).await?;
        c.set_token(self.token.as_deref())?;
        Ok(c)
    }

    /// A gRPC request carrying the test account's token (for raw clients).
    pub fn authed<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    /// Waits until controller `i` reports `n` healthy chunkservers.
    pub async fn wait_healthy_chunkservers(&self, i: usize, n: usize) {
        let addr = self.controller_addr(i);
        wait_until(
            &format!("controller {i} sees {n} healthy chunkservers"),
            Duration::from_secs(20),
            || {
                let addr = addr.clone();
                async move {
                    match self.connect(&[addr]).await {
                        Ok(mut c) => match c.cluster_status().await {
                            Ok(s) => s.chunkservers.iter().filter(|c| c.healthy).count() == n,
                            Err(_) => false,
                        },
                        Err(_) => false,
                    }
                }
            },
        )
        .await;
    }

    /// Starts one more controller that knows the others only as seeds; returns its index.
    pub fn add_controller(&mut self) -> usize {
        let i = self.controllers.len();
        let base = self.controllers[0]
            .controller_config
            .clone()
            .expect("controller config");
        let data_dir = self._dir.path().join(format!("controller-{i}"));
        let mut cfg = redcloud_controller::Config::for_test(data_dir.clone());
        cfg.min_chunk_replicas = base.min_chunk_replicas;
        cfg.chunk_size = base.chunk_size;
        cfg.cluster_secret = base.cluster_secret.clone();
        cfg.peers = self
            .controllers
            .iter()
            .map(|c| c.http_addr.to_string())
            .collect();
        let mut node = NodeHandle::new_controller(data_dir, (reserve(), reserve()), cfg);
        node.start();
        self.controllers.push(node);
        i
    }

    /// Adds a controller whose configuration `tweak` adjusts (after the defaults of
    /// [`TestCluster::add_controller`]), and starts it; returns its index.
    pub fn add_controller_with(
        &mut self,
        tweak: impl FnOnce(&mut redcloud_controller::Config),
    ) -> usize {
        let i = self.controllers.len();
        let base = self.controllers[0]
            .controller_config
            .clone()
            .expect("controller config");
        let data_dir = self._dir.path().join(format!("controller-{i}"));
        let mut cfg = base;
        cfg.data_dir = data_dir.clone();
        cfg.node_id = None;
        cfg.clock_offset_ms = 0;
        cfg.peers = self
            .controllers
            .iter()
            .map(|c| c.http_addr.to_string())
            .collect();
        tweak(&mut cfg);
        let mut node = NodeHandle::new_controller(data_dir, (reserve(), reserve()), cfg);
        node.start();
        self.controllers.push(node);
        i
    }

    /// Kills controller `i`, deletes its data directory and starts it again: with
    /// its old node id (`same_id`, as `--node-id` would), or a new one.
    pub fn wipe_controller(&mut self, i: usize, same_id: bool) {
        let node = &mut self.controllers[i];
        let old = std::fs::read_to_string(node.data_dir.join("node_id")).expect("node id");
        node.kill();
        std::fs::remove_dir_all(&node.data_dir).expect("wipe the data directory");
        node.controller_config_mut().node_id = same_id.then(|| old.trim().to_string());
        node.start();
    }

    /// Restarts every chunkserver so that it also reports to the controller at
    /// `http` (as a DNS alias would once that controller's container joins it).
    pub fn point_chunkservers_at(&mut self, http: &str) {
        for cs in &mut self.chunkservers {
            if !cs.controllers_http.iter().any(|c| c == http) {
                cs.controllers_http.push(http.to_string());
            }
            if cs.is_running() {
                cs.stop();
                cs.start();
            }
        }
    }

    /// The node id of controller `i` (read from its data directory).
    pub fn controller_id(&self, i: usize) -> String {
        std::fs::read_to_string(self.controllers[i].data_dir.join("node_id"))
            .expect("node id")
            .trim()
            .to_string()
    }

    /// Starts one more (empty) chunkserver reporting to every controller; returns its index.
    pub fn add_chunkserver(&mut self) -> usize {
        self.add_chunkserver_advertising(|_| None)
    }

    /// Adds a chunkserver that advertises `advertise(its gRPC address)` (e.g. a
    /// proxy in front of it) instead of its own address; waits until it has started.
    pub fn add_chunkserver_advertising(
        &mut self,
        advertise: impl FnOnce(SocketAddr) -> Option<String>,
    ) -> usize {
        let i = self.chunkservers.len();
        let mut node = NodeHandle::new_chunkserver(
            self._dir.path().join(format!("chunkserver-{i}")),
            self.controllers
                .iter()
                .map(|c| c.http_addr.to_string())
                .collect(),
            Duration::from_secs(3600),
        );
        node.cluster_secret = self.cluster_secret.clone();
        node.advertise = advertise(node.grpc_addr);
        node.start();
        self.chunkservers.push(node);
        i
    }

    /// Cuts chunkserver `i` off from every controller (its heartbeats stop and
    /// controllers cannot call it), or reconnects it.
    pub fn isolate_chunkserver(&self, i: usize, isolated: bool) {
        use redcloud_controller::replication::net::Fault;
        let cs = &self.chunkservers[i];
        cs.chunkserver()
            .heartbeats_paused
            .store(isolated, std::sync::atomic::Ordering::Relaxed);
        let addr = cs.grpc_addr.to_string();
        for c in &self.controllers {
            if let Some(n) = &c.controller {
                if isolated {
                    n.net.filter.set(&addr, Fault::Cut);
                } else {
                    n.net.filter.clear(&addr);
                }
            }
        }
    }

    /// Every chunk referenced by a live file version, per controller 0.
    pub async fn live_chunks(&self) -> std::collections::BTreeSet<ChunkId> {
        let node = self.controllers[0].controller().clone();
        node.db
            .call(|s| redcloud_controller::meta::live_chunks(s.conn()))
            .await
            .expect("live chunks")
            .into_keys()
            .collect()
    }

    /// Waits until chunkserver `i` holds every live chunk.
    pub async fn wait_holds_all(&self, i: usize, deadline: Duration) {
        let wanted = self.live_chunks().await;
        assert!(!wanted.is_empty(), "no live chunks to wait for");
        wait_until(
            &format!("chunkserver {i} holds all {} live chunks", wanted.len()),
            deadline,
            || {
                let wanted = &wanted;
                async move {
                    let held: std::collections::BTreeSet<ChunkId> =
                        self.chunks_on_disk(i).into_iter().collect();
                    wanted.is_subset(&held)
                }
            },
        )
        .await;
    }

    /// A client connected to controller `i` only, logged in as the test account.
    pub async fn client_of(&self, i: usize) -> redcloud_cli::Client {
        self.connect(&[self.controller_addr(i)])
            .await
            .unwrap_or_else(|e| panic!("connect to controller {i}: {e}"))
    }

    /// A client connected to controller `i` only, without a token.
    pub async fn anonymous_client_of(&self, i: usize) -> redcloud_cli::Client {
        redcloud_cli::Client::connect_with_ca(&[self.controller_addr(i)], self.ca_pem.as_deref())
            .await
            .unwrap_or_else(|e| panic!("connect to controller {i}: {e}"))
    }

    /// The state digest of each controller in `which`.
    pub async fn digests(&self, which: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        for &i in which {
            let node = self.controllers[i].controller().clone();
            let d = node.db.call(|s| s.digest()).await.expect("digest");
            out.push(d.to_hex());
        }
        out
    }

    /// Waits until every controller in `which` reports the same state digest.
    pub async fn wait_converged(&self, which: &[usize], deadline: Duration) {
        let which = which.to_vec();
        wait_until(&format!("controllers {which:?} converge"), deadline, || {
            let which = which.clone();
            async move {
                let d = self.digests(&which).await;
                d.windows(2).all(|w| w[0] == w[1])
            }
        })
        .await;
    }

    /// Cuts every link between the controllers in `a` and those in `b` (both ways).
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        use redcloud_controller::replication::net::Fault;
        for &i in a {
            for &j in b {
                let (ni, nj) = (&self.controllers[i], &self.controllers[j]);
                ni.controller()
                    .net
                    .filter
                    .set(&nj.http_addr.to_string(), Fault::Cut);
                nj.controller()
                    .net
                    .filter
                    .set(&ni.http_addr.to_string(), Fault::Cut);
            }
        }
    }

    /// Removes every fault rule on every running controller.
    pub fn heal(&self) {
        for c in &self.controllers {
            if let Some(n) = &c.controller {
                n.net.filter.clear_all();
            }
        }
    }

    /// The gRPC address of controller `i` (`https://localhost:PORT` with TLS).
    pub fn controller_addr(&self, i: usize) -> String {
        match self.ca_pem {
            Some(_) => format!("https://localhost:{}", self.controllers[i].grpc_addr.port()),
            None => self.controllers[i].grpc_addr.to_string(),
        }
    }

    /// A client connected to controller 0, logged in as the test account.
    pub async fn client(&self) -> redcloud_cli::Client {
        self.connect(&[self.controller_addr(0)])
            .await
            .expect("connect to controller 0")
    }

    /// A chunk-API client for chunkserver `i`.
    pub fn chunk_client(&self, i: usize) -> ChunkClient {
        let addr = self.chunkservers[i].grpc_addr.to_string();
        let ch = chunk_client::channel(&addr, chunk_client::Timeouts::default()).expect("channel");
        ChunkClient::new(&addr, ch).with_secret(self.cluster_secret.as_deref())
    }

    /// Where chunkserver `i` keeps chunk `id` on disk.
    pub fn chunk_path(&self, i: usize, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.chunkservers[i]
            .data_dir
            .join("chunks")
            .join(&hex[..2])
            .join(hex)
    }

    /// The ids of the chunks chunkserver `i` holds, read from its directory.
    pub fn chunks_on_disk(&self, i: usize) -> Vec<ChunkId> {
        chunks_in(&self.chunkservers[i].data_dir.join("chunks"))
    }
}

fn chunks_in(root: &Path) -> Vec<ChunkId> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    for d in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            if let Some(id) = f.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push(id);
            }
        }
    }
    out.sort();
    out
}
