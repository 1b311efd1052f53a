//! A connection to the cluster through any reachable controller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use redcloud_common::Sha256Hex;
use redcloud_common::discovery::{DiscoveryError, Resolver};
use redcloud_proto::chunk_client::{ChunkCallError, ChunkClient};
use redcloud_proto::controller::{self as pb, controller_client::ControllerClient};
use redcloud_proto::{MAX_DATA_MESSAGE, MAX_MESSAGE_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::CONTROLLER_GRPC_PORT;
use crate::error::ClientError;

pub use pb::{ChunkInfo, ClusterStatusResponse, FileInfo, StatResponse, VersionInfo};

/// How long a TCP connect to a controller may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A connection on which nothing arrived for this long is sent a ping...
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// ...and is given up on if the ping is not answered within this long. A call
/// waits at most about KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT (1.5 s) on a
/// controller that stopped answering, and CONNECT_TIMEOUT on one that cannot be
/// reached at all, before it moves on.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Bytes per upload message.
const PIECE: usize = 1024 * 1024;
const _: () = assert!(PIECE <= MAX_DATA_MESSAGE);

/// Adds `authorization: Bearer TOKEN` to every call, when logged in.
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

type Inner = ControllerClient<InterceptedService<Channel, Bearer>>;

fn inner(ch: Channel, bearer: Bearer) -> Inner {
    ControllerClient::with_interceptor(ch, bearer)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A client bound to one controller, able to move to another.
pub struct Client {
    /// Every address the configured names resolved to, in the order tried.
    addrs: Vec<String>,
    /// For each address, whether it is reached over TLS (the target said
    /// `https://`), and the name its certificate must carry.
    tls: Vec<Option<String>>,
    /// Extra trusted root certificate (PEM) for TLS, beside the public web roots.
    ca: Option<tonic::transport::Certificate>,
    /// Index into `addrs` of the connected controller.
    current: usize,
    channel: Channel,
    bearer: Bearer,
    inner: Inner,
    /// The causal clock: the highest write timestamp the controllers answered this
    /// client (or one it was given, see [`Client::observe_clock`]). Sent as `after`
    /// with every write, so its writes take effect in the order it made them on
    /// any controller, whatever that controller's clock says.
    clock: u64,
    /// Whose books `download`, `stat`, `versions` and `ls` address (a user name);
    /// empty: the caller's own (and, for `ls`, everyone's public ones).
    owner: String,
    /// Whether downloads read chunks straight from the chunkservers (with the
    /// controller's read tokens) rather than through the controller.
    direct: bool,
    /// Chunkserver connections for direct reads, by address.
    chunk_clients: std::collections::HashMap<String, ChunkClient>,
    /// Chunkservers a direct read could not reach or that did not answer in
    /// time, for BAD_FOR: tried last, and a chunk held only by such nodes is read
    /// through the controller at once.
    direct_bad: BadSet,
}

/// How long a chunkserver a direct read could not use is passed over.
const BAD_FOR: Duration = Duration::from_secs(30);

/// Chunkservers recently found unreachable or silent, and when.
#[derive(Clone, Default)]
struct BadSet(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
);

impl BadSet {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, addr: &str) {
        self.lock()
            .insert(addr.to_string(), std::time::Instant::now());
    }

    fn contains(&self, addr: &str) -> bool {
        let mut m = self.lock();
        match m.get(addr) {
            Some(t) if t.elapsed() < BAD_FOR => true,
            Some(_) => {
                m.remove(addr);
                false
            }
            None => false,
        }
    }
}

impl Client {
    /// Resolves `targets` (names or `host:port`, e.g. the `controller` DNS alias) and
    /// connects to the first controller that answers.
    pub async fn connect(targets: &[String]) -> Result<Client, ClientError> {
        Self::connect_with_ca(targets, None).await
    }

    /// As [`Client::connect`]; `ca_pem` is a root certificate (PEM) trusted for
    /// `https://` controllers besides the public web roots (for a cluster's own CA
    /// or a self-signed certificate).
    pub async fn connect_with_ca(
        targets: &[String],
        ca_pem: Option<&[u8]>,
    ) -> Result<Client, ClientError> {
        let resolver = Resolver::new();
        let mut addrs = Vec::new();
        let mut tls = Vec::new();
        let mut unresolved = Vec::new();
        for t in targets {
            let t = t.trim();
            let secure = t.starts_with("https://");
            if let Some((scheme, _)) = t.split_once("://")
                && scheme != "http"
                && scheme != "https"
            {
                return Err(ClientError::InvalidArgument(format!(
                    "controller address {t:?}: only http:// and https:// are understood"
                )));
            }
            let domain = if secure {
                let (host, _) =
                    redcloud_common::discovery::split_host_port(t, CONTROLLER_GRPC_PORT)
                        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
                Some(host)
            } else {
                None
            };
            match resolver.resolve(t, CONTROLLER_GRPC_PORT).await {
                Ok(a) => {
                    for a in a {
                        // An address named twice (given, and again behind an alias)
                        // is tried once: a frozen one would cost its wait twice.
                        let a = a.to_string();
                        if !addrs.contains(&a) {
                            addrs.push(a);
                            tls.push(domain.clone());
                        }
                    }
                }
                Err(DiscoveryError::InvalidTarget(t)) => {
                    return Err(ClientError::InvalidArgument(format!(
                        "controller address {t:?}: expected HOST, HOST:PORT or IP:PORT"
                    )));
                }
                Err(DiscoveryError::Unresolved { name, reason }) => {
                    // The resolver's own words (server addresses, record types)
                    // help nobody at the terminal; they go to the debug log.
                    tracing::debug!("cannot resolve {name:?}: {reason}");
                    unresolved.push(format!("'{name}'"));
                }
            }
        }
        let not_found = (!unresolved.is_empty()).then(|| {
            format!(
                "cannot resolve {}: outside the Docker network give --controller HOST:PORT \
                 or set REDCLOUD_CONTROLLER",
                unresolved.join(", ")
            )
        });
        if addrs.is_empty() {
            return Err(ClientError::Unreachable {
                addrs: targets.join(","),
                reason: not_found.unwrap_or_else(|| "no address given".to_string()),
            });
        }
        let ca = ca_pem.map(tonic::transport::Certificate::from_pem);
        let (current, channel) = match connect_any(&addrs, &tls, ca.as_ref(), 0).await {
            Ok(c) => c,
            Err(ClientError::Unreachable { addrs, reason }) if not_found.is_some() => {
                return Err(ClientError::Unreachable {
                    addrs,
                    reason: format!("{reason}; {}", not_found.unwrap_or_default()),
                });
            }
            Err(e) => return Err(e),
        };
        Ok(Client {
            addrs,
            tls,
            ca,
            current,
            inner: inner(channel.clone(), Bearer::default()),
            channel,
            bearer: Bearer::default(),
            clock: 0,
            owner: String::new(),
            direct: true,
            chunk_clients: Default::default(),
            direct_bad: Default::default(),
        })
    }

    /// The causal clock: the highest write timestamp this client was answered.
    /// Keep it with the session (the CLI saves it beside the token) and hand it
    /// to the next client with [`Client::observe_clock`].
    pub fn causal_clock(&self) -> u64 {
        self.clock
    }

    /// Takes in a causal clock from an earlier client of the same user: this
    /// client's writes will be ordered after the writes that clock covers.
    pub fn observe_clock(&mut self, clock: u64) {
        self.clock = self.clock.max(clock);
    }

    /// Whether the connected controller is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls[self.current].is_some()
    }

    /// Whether downloads read chunks straight from the chunkservers (the default
    /// over plaintext), or always through the controller. Over TLS they always go
    /// through the controller: chunkservers speak plaintext.
    pub fn set_direct_reads(&mut self, direct: bool) {
        self.direct = direct;
    }

    /// Addresses `owner`'s books (a user name) from now on; `None`: the caller's.
    pub fn set_owner(&mut self, owner: Option<&str>) {
        self.owner = owner.unwrap_or_default().to_string();
    }

    /// Creates an account.
    pub async fn register(
        &mut self,
        username: &str,
        password: &str,
    ) -> Result<pb::RegisterResponse, ClientError> {
        let req = pb::RegisterRequest {
            username: username.into(),
            password: password.into(),
        };
        // Not retried on another controller: a lost answer may hide a
        // registration that took place (asking again says the name is taken).
        Ok(self.inner.clone().register(req).await?.into_inner())
    }

    /// Logs in; the token is used for every call from now on.
    pub async fn login(
        &mut self,
        username: &str,
        password: &str,
    ) -> Result<pb::LoginResponse, ClientError> {
        let req = pb::LoginRequest {
            username: username.into(),
            password: password.into(),
        };
        let r = self
            .retrying(|mut c| {
                let req = req.clone();
                async move { c.login(req).await }
            })
            .await?
            .into_inner();
        self.set_token(Some(&r.token))?;
        Ok(r)
    }

    /// Revokes the token in use, and calls anonymously from now on.
    pub async fn logout(&mut self) -> Result<(), ClientError> {
        self.retrying(|mut c| async move { c.logout(pb::LogoutRequest {}).await })
            .await?;
        self.set_token(None)
    }

    /// Who the token in use belongs to.
    pub async fn whoami(&mut self) -> Result<pb::WhoAmIResponse, ClientError> {
        Ok(self
            .retrying(|mut c| async move { c.who_am_i(pb::WhoAmIRequest {}).await })
            .await?
            .into_inner())
    }

    /// Sends `token` (from `login`) with every call from now on; `None` calls
    /// anonymously.
    pub fn set_token(&mut self, token: Option<&str>) -> Result<(), ClientError> {
        self.bearer = Bearer(match token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                ClientError::InvalidArgument("the saved token is not text: log in again".into())
            })?),
            None => None,
        });
        self.inner = inner(self.channel.clone(), self.bearer.clone());
        Ok(())
    }

    /// The address of the controller in use.
    pub fn controller(&self) -> &str {
        &self.addrs[self.current]
    }

    /// Moves to the next reachable controller after the current one fails.
    async fn fail_over(&mut self) -> Result<(), ClientError> {
        let (current, channel) =
            connect_any(&self.addrs, &self.tls, self.ca.as_ref(), self.current + 1).await?;
        self.current = current;
        self.inner = inner(channel.clone(), self.bearer.clone());
        self.channel = channel;
        Ok(())
    }

    /// Runs an idempotent call, moving to another controller if this one is unreachable.
    async fn retrying<T, F, Fut>(&mut self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Inner) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut attempts = self.addrs.len();
        loop {
            match call(self.inner.clone()).await.map_err(ClientError::from) {
                Err(ClientError::Unreachable { .. }) if attempts > 1 => {
                    attempts -= 1;
                    self.fail_over().await?;
                }
                r => return r,
            }
        }
    }

    /// Uploads the file at `path` under `name`; `progress` is called with the bytes sent so far.
    ///
    /// If the controller becomes unreachable (before or during the upload), the file is
    /// sent again from the start to the next controller. Only an acknowledged upload
    /// counts; if the lost controller had committed the first attempt just before it
    /// went away, the name gets a second, identical version (`versions` shows both).
    pub async fn upload_file(
        &mut self,
        path: &Path,
        name: &str,
        public: bool,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<pb::UploadResponse, ClientError> {
        let progress = std::sync::Arc::new(progress);
        let mut attempts = self.addrs.len();
        loop {
            let meta = tokio::fs::metadata(path)
                .await
                .map_err(|e| ClientError::io(path.display(), e))?;
            if !meta.is_file() {
                return Err(ClientError::io(
                    path.display(),
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
                ));
            }
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| ClientError::io(path.display(), e))?;
            let p = progress.clone();
            let r = self
                .upload_reader(file, meta.len(), name, public, move |n| p(n))
                .await;
            match r {
                Err(ClientError::Unreachable { .. }) if attempts > 1 => {
                    attempts -= 1;
                    self.fail_over().await?;
                }
                r => {
                    return r.map_err(|e| match e {
                        ClientError::Io { source, .. } => ClientError::io(path.display(), source),
                        e => e,
                    });
                }
            }
        }
    }

    /// Uploads in-memory bytes under `name`.
    pub async fn upload_bytes(
        &mut self,
        data: Bytes,
        name: &str,
        public: bool,
    ) -> Result<pb::UploadResponse, ClientError> {
        let len = data.len() as u64;
        self.upload_reader(std::io::Cursor::new(data), len, name, public, |_| {})
            .await
    }

    /// Uploads `size` bytes read from `reader`. If no controller is reachable at the
    /// start, fails over; a stream broken midway is reported, not retried (the
    /// upload may or may not have been stored: run `ls` to see).
    pub async fn upload_reader<R>(
        &mut self,
        reader: R,
        size: u64,
        name: &str,
        public: bool,
        progress: impl Fn(u64) + Send + 'static,
    ) -> Result<pb::UploadResponse, ClientError>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadRequest>(4);
        let start = pb::UploadRequest {
            msg: Some(pb::upload_request::Msg::Start(pb::UploadStart {
                name: name.to_string(),
                size,
                public,
                after: self.clock,
            })),
        };
        let reader_task = tokio::spawn(async move {
            let mut reader = reader;
            let mut hasher = Sha256Hex::new();
            let mut sent = 0u64;
            if tx.send(start).await.is_err() {
                return Ok(());
            }
            loop {
                if sent >= size {
                    // All declared bytes sent: a file that grew since is refused
                    // here rather than read on.
                    let mut probe = [0u8; 1];
                    if reader.read(&mut probe).await? > 0 {
                        return Err(std::io::Error::other(format!(
                            "file changed while it was read: it grew past {size} bytes"
                        )));
                    }
                    break;
                }
                // No bigger than what is left: a 4 KiB book does not zero 1 MiB.
                let want = ((size - sent) as usize).min(PIECE);
                let mut buf = vec![0u8; want];
                let mut filled = 0;
                while filled < want {
                    let n = reader.read(&mut buf[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                buf.truncate(filled);
                hasher.update(&buf);
                sent += filled as u64;
                let msg = pb::UploadRequest {
                    msg: Some(pb::upload_request::Msg::Data(Bytes::from(buf))),
                };
                if tx.send(msg).await.is_err() {
                    return Ok(()); // the call ended early; its error is reported
                }
                progress(sent);
            }
            if sent != size {
                return Err(std::io::Error::other(format!(
                    "file changed while it was read: expected {size} bytes, read {sent}"
                )));
            }
            let finish = pb::UploadRequest {
                msg: Some(pb::upload_request::Msg::Finish(pb::UploadFinish {
                    sha256: hasher.finish(),
                })),
            };
            let _ = tx.send(finish).await;
            Ok::<(), std::io::Error>(())
        });
        let call = self
            .inner
            .clone()
            .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        let read = reader_task
            .await
            .map_err(|e| ClientError::io("upload reader", std::io::Error::other(e)))?;
        read.map_err(|e| ClientError::io("upload source", e))?;
        let r = call?.into_inner();
        self.observe_clock(r.clock);
        Ok(r)
    }

    /// Downloads `name` (or a `version`) to `out`. The bytes go to a temporary file
    /// beside `out`, which replaces `out` only after the whole-file SHA-256 matched.
    pub async fn download_to(
        &mut self,
        name: &str,
        version: Option<&str>,
        out: &Path,
        progress: impl Fn(u64, u64),
    ) -> Result<FileInfo, ClientError> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{}.redcloud-partial-{}",
            out.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("download"),
            std::process::id()
        ));
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| ClientError::io(tmp.display(), e))?;
        let result = async {
            let info = self.download_into(name, version, &mut f, progress).await?;
            f.flush()
                .await
                .map_err(|e| ClientError::io(tmp.display(), e))?;
            f.sync_all()
                .await
                .map_err(|e| ClientError::io(tmp.display(), e))?;
            tokio::fs::rename(&tmp, out)
                .await
                .map_err(|e| ClientError::io(out.display(), e))?;
            Ok(info)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Downloads `name` (or a `version`) into memory.
    pub async fn download_bytes(
        &mut self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(FileInfo, Vec<u8>), ClientError> {
        let mut out = Vec::new();
        let info = self
            .download_into(name, version, &mut out, |_, _| {})
            .await?;
        Ok((info, out))
    }

    /// Streams a download into `sink`, checking size and whole-file SHA-256.
    ///
    /// If the controller becomes unreachable midway (dead, frozen, cut off), the
    /// rest of the same version is asked of the next controller from the byte where
    /// the stream broke: what reached `sink` is never sent twice.
    pub async fn download_into<W>(
        &mut self,
        name: &str,
        version: Option<&str>,
        sink: &mut W,
        progress: impl Fn(u64, u64),
    ) -> Result<FileInfo, ClientError>
    where
        W: tokio::io::AsyncWrite + Unpin + Send,
    {
        let mut req = pb::DownloadRequest {
            name: name.to_string(),
            version: version.unwrap_or_default().to_string(),
            owner: self.owner.clone(),
            offset: 0,
        };
        let mut hasher = Sha256Hex::new();
        let mut got = 0u64;
        let mut known: Option<FileInfo> = None;
        // Whether every byte goes through `hasher` (a download wholly through
        // controllers); bytes read directly were each checked against their chunk's
        // id instead, which the whole-file SHA-256 was checked against at upload.
        let mut whole = true;
        if self.direct && !self.is_tls() {
            match self.download_direct(&req, sink, &progress).await {
                Direct::Done(info) => return Ok(info),
                Direct::Failed(e) => return Err(e),
                Direct::Fallback { info, got: n, why } => {
                    tracing::debug!("reading through the controller from byte {n}: {why}");
                    if let Some(info) = info {
                        req.version = info.file_id.clone();
                        req.offset = n;
                        whole = n == 0;
                        got = n;
                        known = Some(info);
                    }
                }
            }
        }
        let mut attempts = self.addrs.len();
        loop {
            let r = self
                .download_part(&req, known.as_ref(), &mut got, &mut hasher, sink, &progress)
                .await;
            match r {
                Ok(info) if !whole => return Ok(info),
                Ok(info) => {
                    let sha = hasher.finish();
                    if sha != info.sha256 {
                        return Err(ClientError::Integrity(format!(
                            "SHA-256 of the received bytes is {sha}, the file's is {}",
                            info.sha256
                        )));
                    }
                    return Ok(info);
                }
                Err((ClientError::Unreachable { .. }, Some(info))) if attempts > 1 => {
                    attempts -= 1;
                    self.fail_over().await?;
                    // The rest of the very version being read, whatever is current now.
                    req.version = info.file_id.clone();
                    req.offset = got;
                    known = Some(info);
                }
                Err((ClientError::Unreachable { .. }, None)) if attempts > 1 => {
                    attempts -= 1;
                    self.fail_over().await?;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Reads the file straight from the chunkservers: a plan from a controller
    /// (chunk ids, where each is, read tokens), then the chunks, a few at once,
    /// each verified against its id and written in order. Gives up to the
    /// controller path (`Fallback`, with how far it got) where a chunk cannot be
    /// read from any of its chunkservers or the controller has no plans.
    async fn download_direct<W>(
        &mut self,
        req: &pb::DownloadRequest,
        sink: &mut W,
        progress: &impl Fn(u64, u64),
    ) -> Direct
    where
        W: tokio::io::AsyncWrite + Unpin + Send,
    {
        use futures::StreamExt;
        let mut file = req.clone();
        let mut from = 0u32;
        let mut got = 0u64;
        let mut info: Option<FileInfo> = None;
        let bad = self.direct_bad.clone();
        loop {
            let plan_req = pb::DownloadPlanRequest {
                file: Some(file.clone()),
                from_chunk: from,
            };
            let plan = match self
                .retrying(|mut c| {
                    let r = plan_req.clone();
                    async move { c.download_plan(r).await }
                })
                .await
            {
                Ok(p) => p.into_inner(),
                Err(ClientError::Server {
                    code: tonic::Code::Unimplemented,
                    ..
                }) => {
                    return Direct::Fallback {
                        info,
                        got,
                        why: "the controller makes no download plans".into(),
                    };
                }
                Err(e) => return Direct::Failed(e),
            };
            let Some(this) = plan.file else {
                return Direct::Failed(ClientError::Integrity(
                    "a download plan without file info".into(),
                ));
            };
            if let Some(k) = &info
                && (k.file_id != this.file_id || k.size != this.size)
            {
                return Direct::Failed(ClientError::Integrity(
                    "the download plan changed file midway".into(),
                ));
            }
            // Later plans are of this very version.
            file.version = this.file_id.clone();
            let size = this.size;
            info = Some(this);
            let chunk_size = plan.chunks.iter().map(|c| c.size).max().unwrap_or(1).max(1);
            let window = ((DIRECT_WINDOW_BYTES / chunk_size) as usize).clamp(1, 8);
            let mut jobs = Vec::new();
            let mut cut = None;
            for pc in plan.chunks {
                if pc.offset != got + jobs.iter().map(|(_, s, _)| *s).sum::<u64>() {
                    return Direct::Failed(ClientError::Integrity(
                        "the download plan's chunks do not follow each other".into(),
                    ));
                }
                let Ok(id) = pc.chunk_id.parse::<redcloud_common::ChunkId>() else {
                    return Direct::Failed(ClientError::Integrity(format!(
                        "the download plan names chunk {:?}",
                        pc.chunk_id
                    )));
                };
                let all_bad = pc.addresses.iter().all(|a| bad.contains(a));
                if all_bad && jobs.is_empty() {
                    return Direct::Fallback {
                        info,
                        got,
                        why: format!("no chunkserver of chunk {} answered this client", pc.index),
                    };
                }
                if all_bad {
                    // Read what comes before it directly; from it on, through the controller.
                    cut = Some(pc.index);
                    break;
                }
                let mut replicas = Vec::new();
                for a in &pc.addresses {
                    if let Some(c) = self.chunk_client(a) {
                        replicas.push((a.clone(), c));
                    }
                }
                let size = pc.size;
                jobs.push((id, size, (replicas, pc.token)));
            }
            let fetches =
                futures::stream::iter(jobs.into_iter().map(|(id, size, (replicas, token))| {
                    let bad = bad.clone();
                    let task = tokio::spawn(read_direct(id, size, token, replicas, bad));
                    async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("chunk read task failed: {e}")))
                    }
                }))
                .buffered(window);
            tokio::pin!(fetches);
            while let Some(r) = fetches.next().await {
                match r {
                    Ok(data) => {
                        if let Err(e) = sink.write_all(&data).await {
                            return Direct::Failed(ClientError::io("download output", e));
                        }
                        got += data.len() as u64;
                        progress(got, size);
                    }
                    Err(why) => return Direct::Fallback { info, got, why },
                }
            }
            if let Some(index) = cut {
                return Direct::Fallback {
                    info,
                    got,
                    why: format!("no chunkserver of chunk {index} answered this client"),
                };
            }
            if plan.next_chunk == 0 {
                if got != size {
                    return Direct::Failed(ClientError::Integrity(format!(
                        "the download plan covers {got} of {size} bytes"
                    )));
                }
                return match info {
                    Some(i) => Direct::Done(i),
                    None => Direct::Failed(ClientError::Integrity("no file info".into())),
                };
            }
            from = plan.next_chunk;
        }
    }

    /// A (cached) connection to chunkserver `addr` for direct reads.
    fn chunk_client(&mut self, addr: &str) -> Option<ChunkClient> {
        if let Some(c) = self.chunk_clients.get(addr) {
            return Some(c.clone());
        }
        let t = redcloud_proto::chunk_client::Timeouts {
            connect: DIRECT_CONNECT_TIMEOUT,
            request: Duration::from_secs(60),
        };
        let ch = redcloud_proto::chunk_client::channel(addr, t).ok()?;
        let c = ChunkClient::new(addr, ch);
        self.chunk_clients.insert(addr.to_string(), c.clone());
        Some(c)
    }

    /// One download call from `req.offset` (== `*got`). Returns the file's info when
    /// the stream ended at its size; on an error, also the info if it had arrived
    /// (so a resumed call can ask for the same version).
    async fn download_part<W>(
        &mut self,
        req: &pb::DownloadRequest,
        known: Option<&FileInfo>,
        got: &mut u64,
        hasher: &mut Sha256Hex,
        sink: &mut W,
        progress: &impl Fn(u64, u64),
    ) -> Result<FileInfo, (ClientError, Option<FileInfo>)>
    where
        W: tokio::io::AsyncWrite + Unpin + Send,
    {
        let carry = |e: ClientError| (e, known.cloned());
        let mut stream = self
            .inner
            .clone()
            .download(req.clone())
            .await
            .map_err(|s| carry(s.into()))?
            .into_inner();
        let info = match stream.message().await.map_err(|s| carry(s.into()))? {
            Some(pb::DownloadResponse {
                msg: Some(pb::download_response::Msg::Info(i)),
            }) => i,
            _ => {
                return Err(carry(ClientError::Integrity(
                    "download did not start with file info".into(),
                )));
            }
        };
        if let Some(k) = known
            && (k.file_id != info.file_id || k.size != info.size || k.sha256 != info.sha256)
        {
            return Err(carry(ClientError::Integrity(format!(
                "controller {} resumed a different file than the one being read",
                self.controller()
            ))));
        }
        let fail = |e: ClientError| (e, Some(info.clone()));
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(s) => return Err(fail(s.into())),
            };
            let Some(pb::download_response::Msg::Data(d)) = msg.msg else {
                return Err(fail(ClientError::Integrity(
                    "unexpected message in download stream".into(),
                )));
            };
            if *got + d.len() as u64 > info.size {
                return Err(fail(ClientError::Integrity(format!(
                    "received more than the {} bytes of the file",
                    info.size
                ))));
            }
            *got += d.len() as u64;
            hasher.update(&d);
            sink.write_all(&d)
                .await
                .map_err(|e| fail(ClientError::io("download output", e)))?;
            progress(*got, info.size);
        }
        if *got != info.size {
            return Err(fail(ClientError::Integrity(format!(
                "download ended after {} of {} bytes",
                *got, info.size
            ))));
        }
        Ok(info)
    }

    /// The current version of every file (optionally only names with `prefix`).
    pub async fn list(&mut self, prefix: &str) -> Result<Vec<FileInfo>, ClientError> {
        let mut all = Vec::new();
        self.list_pages(prefix, |page| all.extend(page)).await?;
        Ok(all)
    }

    /// As [`Client::list`], a page at a time: `each` gets every page as it
    /// arrives, so a listing of any length is held in memory one page at a time.
    /// A page is asked of the next controller if the current one goes away (page
    /// tokens hold names, valid everywhere).
    pub async fn list_pages(
        &mut self,
        prefix: &str,
        mut each: impl FnMut(Vec<FileInfo>),
    ) -> Result<(), ClientError> {
        let mut req = pb::ListRequest {
            prefix: prefix.into(),
            owner: self.owner.clone(),
            page_size: 0,
            page_token: String::new(),
        };
        loop {
            let r = self
                .retrying(|mut c| {
                    let req = req.clone();
                    async move { c.list(req).await }
                })
                .await?
                .into_inner();
            each(r.files);
            if r.next_page_token.is_empty() {
                return Ok(());
            }
            req.page_token = r.next_page_token;
        }
    }

    /// Deletes every version of `name`; returns how many versions there were.
    ///
    /// If the controller goes away during the call, the delete is sent to the next
    /// one. The first may have carried it out and gossiped it before going away, so a
    /// "not found" from the next one is not an answer: that is reported as
    /// [`ClientError::Unavailable`] (the delete may or may not have happened).
    pub async fn delete(&mut self, name: &str) -> Result<u32, ClientError> {
        let req = pb::DeleteRequest {
            name: name.into(),
            after: self.clock,
        };
        let mut attempts = self.addrs.len();
        let mut lost: Option<String> = None;
        loop {
            let r = self.inner.clone().delete(req.clone()).await;
            match r.map_err(ClientError::from) {
                Ok(r) => {
                    let r = r.into_inner();
                    self.observe_clock(r.clock);
                    return Ok(r.versions_deleted);
                }
                Err(ClientError::Unreachable { reason, .. }) if attempts > 1 => {
                    lost.get_or_insert_with(|| format!("{} ({reason})", self.controller()));
                    attempts -= 1;
                    self.fail_over().await?;
                }
                Err(ClientError::NotFound(_)) if lost.is_some() => {
                    return Err(ClientError::Unavailable(format!(
                        "controller {} went away during the delete of '{name}', which may have \
                         taken effect there; controller {} does not know the name now. Run `ls` \
                         or `versions {name}` to check",
                        lost.unwrap_or_default(),
                        self.controller()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every version of `name`, newest first.
    pub async fn versions(&mut self, name: &str) -> Result<Vec<VersionInfo>, ClientError> {
        let mut req = pb::VersionsRequest {
            name: name.into(),
            owner: self.owner.clone(),
            page_size: 0,
            page_token: String::new(),
        };
        let mut all = Vec::new();
        loop {
            let r = self
                .retrying(|mut c| {
                    let req = req.clone();
                    async move { c.versions(req).await }
                })
                .await?
                .into_inner();
            all.extend(r.versions);
            if r.next_page_token.is_empty() {
                return Ok(all);
            }
            req.page_token = r.next_page_token;
        }
    }

    /// A file's chunks and where each is stored.
    pub async fn stat(
        &mut self,
        name: &str,
        version: Option<&str>,
    ) -> Result<StatResponse, ClientError> {
        let req = pb::StatRequest {
            name: name.into(),
            version: version.unwrap_or_default().into(),
            owner: self.owner.clone(),
        };
        Ok(self
            .retrying(|mut c| {
                let req = req.clone();
                async move { c.stat(req).await }
            })
            .await?
            .into_inner())
    }

    /// The cluster as the connected controller sees it.
    /// Full-text search over the stored books.
    pub async fn search(
        &mut self,
        req: pb::SearchRequest,
    ) -> Result<pb::SearchResponse, ClientError> {
        Ok(self
            .retrying(|mut c| {
                let req = req.clone();
                async move { c.search(req).await }
            })
            .await?
            .into_inner())
    }

    /// Forgets a node that is gone for good (`force`: even if it was heard from
    /// recently). A controller that does not know the node or the caller's account
    /// (one just started or wiped, not caught up yet) answers "not found" or
    /// "unauthenticated": the next controller is asked, and the answer stands only
    /// when none of them knows better.
    pub async fn forget_node(
        &mut self,
        node_id: &str,
        force: bool,
    ) -> Result<pb::ForgetNodeResponse, ClientError> {
        let req = pb::ForgetNodeRequest {
            node_id: node_id.to_string(),
            force,
        };
        let mut others = self.addrs.len().saturating_sub(1);
        loop {
            let r = self
                .retrying(|mut c| {
                    let req = req.clone();
                    async move { c.forget_node(req).await }
                })
                .await;
            match r {
                Err(ClientError::NotFound(_) | ClientError::Unauthenticated(_)) if others > 0 => {
                    others -= 1;
                    if self.fail_over().await.is_err() {
                        return r.map(|r| r.into_inner());
                    }
                }
                r => return r.map(|r| r.into_inner()),
            }
        }
    }

    pub async fn cluster_status(&mut self) -> Result<ClusterStatusResponse, ClientError> {
        Ok(self
            .retrying(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
            .await?
            .into_inner())
    }
}

/// Bytes of chunks a direct download reads ahead of the one it writes.
const DIRECT_WINDOW_BYTES: u64 = 16 * 1024 * 1024;
/// A chunkserver that does not take a connection within this long (an address
/// this client cannot route to, e.g. a container address seen from the host) is
/// passed over for the next.
const DIRECT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How a direct download ended.
enum Direct {
    Done(FileInfo),
    Failed(ClientError),
    /// Go on through the controller from byte `got` (of version `info`, if known).
    Fallback {
        info: Option<FileInfo>,
        got: u64,
        why: String,
    },
}

/// How long one chunkserver gets to send a chunk of `size` bytes before the next
/// one is asked: 1 s, plus the chunk at 50 MB/s.
fn direct_attempt_deadline(size: u64) -> Duration {
    Duration::from_millis(1000 + size / 50_000)
}

/// Reads chunk `id` from the first of `replicas` that returns it verified, those
/// that failed this download before tried last. A node that cannot be reached or
/// does not answer in time joins `bad`.
async fn read_direct(
    id: redcloud_common::ChunkId,
    size: u64,
    token: String,
    mut replicas: Vec<(String, ChunkClient)>,
    bad: BadSet,
) -> Result<Bytes, String> {
    replicas.sort_by_key(|(a, _)| bad.contains(a));
    let mut tried = Vec::new();
    for (addr, c) in replicas {
        let deadline = direct_attempt_deadline(size);
        match tokio::time::timeout(deadline, c.read_with_token(id, &token)).await {
            Ok(Ok(data)) if data.len() as u64 == size => return Ok(data),
            Ok(Ok(data)) => tried.push(format!("{addr}: {} bytes, expected {size}", data.len())),
            Ok(Err(e)) => {
                if matches!(e, ChunkCallError::Unreachable { .. }) {
                    bad.mark(&addr);
                }
                tried.push(e.to_string());
            }
            Err(_) => {
                bad.mark(&addr);
                tried.push(format!("{addr}: no answer within {deadline:?}"));
            }
        }
    }
    Err(format!(
        "chunk {id}: {}",
        if tried.is_empty() {
            "no chunkserver known".into()
        } else {
            tried.join("; ")
        }
    ))
}

/// Connects to the first answering address, starting at `from` and wrapping around.
async fn connect_any(
    addrs: &[String],
    tls: &[Option<String>],
    ca: Option<&tonic::transport::Certificate>,
    from: usize,
) -> Result<(usize, Channel), ClientError> {
    let mut errors = Vec::new();
    for k in 0..addrs.len() {
        let i = (from + k) % addrs.len();
        let addr = &addrs[i];
        let scheme = if tls[i].is_some() { "https" } else { "http" };
        let ep = match Endpoint::from_shared(format!("{scheme}://{addr}")) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{addr}: {e}"));
                continue;
            }
        };
        let ep = match &tls[i] {
            Some(domain) => {
                let mut cfg = tonic::transport::ClientTlsConfig::new()
                    .domain_name(domain.clone())
                    .with_webpki_roots();
                if let Some(ca) = ca {
                    cfg = cfg.ca_certificate(ca.clone());
                }
                match ep.tls_config(cfg) {
                    Ok(e) => e,
                    Err(e) => {
                        errors.push(format!("{addr}: TLS: {e}"));
                        continue;
                    }
                }
            }
            None => ep,
        };
        let ep = ep
            .connect_timeout(CONNECT_TIMEOUT)
            // A frozen controller (SIGSTOP, `docker pause`) still completes TCP
            // handshakes in its kernel, and one behind a dead path drops packets
            // silently: neither ever answers. HTTP/2 pings, also while a call is
            // waiting or streaming, find both within KEEPALIVE_INTERVAL +
            // KEEPALIVE_TIMEOUT; the call then fails as unreachable and is moved
            // to the next controller where that is safe.
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024)
            .max_frame_size(redcloud_proto::MAX_FRAME_SIZE);
        match ep.connect().await {
            Ok(ch) => return Ok((i, ch)),
            Err(e) => {
                // Name the root cause ("Connection refused"), not only "transport error".
                let mut msg = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    msg = format!("{msg}: {c}");
                    cause = c.source();
                }
                if tls[i].is_some() && msg.contains("InvalidContentType") {
                    msg = "it does not answer in TLS (a controller started without --tls-cert \
                           is reached with http://)"
                        .to_string();
                }
                errors.push(format!("{addr}: {msg}"));
            }
        }
    }
    Err(ClientError::Unreachable {
        addrs: addrs.join(","),
        reason: errors.join("; "),
    })
}
