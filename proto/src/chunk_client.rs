//! A typed client for the chunkserver API, used by controllers (uploads, downloads)
//! and by chunkservers (copying from a peer). It speaks domain types: chunk ids are
//! [`ChunkId`]s and every chunk read is verified against its id before it is returned.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redcloud_common::ChunkId;
use tonic::transport::{Channel, Endpoint};

use crate::chunk::{self, chunkserver_client::ChunkserverClient};
use crate::{MAX_DATA_MESSAGE, MAX_MESSAGE_BYTES};

/// Bytes per streamed data message for chunk transfers.
pub const PIECE: usize = 1024 * 1024;

/// Why a call to a chunkserver failed, and so what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum ChunkCallError {
    /// The chunkserver does not hold the chunk: try another replica.
    #[error("{addr}: chunk {id} not found")]
    NotFound { addr: String, id: ChunkId },
    /// The bytes returned did not match the id (or the server found its copy corrupt):
    /// try another replica.
    #[error("{addr}: chunk {id} failed verification")]
    Corrupt { addr: String, id: ChunkId },
    /// The node could not be reached or did not answer in time: try another node.
    #[error("{addr}: unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The node answered with an error.
    #[error("{addr}: {status}")]
    Failed { addr: String, status: tonic::Status },
}

/// Connection settings for chunkserver calls.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Per call; a frozen node is given up on after this long.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(10),
        }
    }
}

/// HTTP/2 ping interval on chunk channels (a ping goes out when nothing arrived
/// for this long)...
pub const KEEPALIVE: Duration = Duration::from_millis(500);
/// ...and how long a ping may go unanswered before the connection is given up.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// A lazily connecting channel to `addr` (`host:port`).
pub fn channel(addr: &str, t: Timeouts) -> Result<Channel, ChunkCallError> {
    let ep = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| {
        ChunkCallError::Unreachable {
            addr: addr.to_string(),
            reason: format!("bad address: {e}"),
        }
    })?;
    Ok(ep
        .connect_timeout(t.connect)
        .timeout(t.request)
        .tcp_nodelay(true)
        // A connection whose path died (a container moved to another network and
        // back) can stay open with no RST ever coming; pings find it within
        // KEEPALIVE + KEEPALIVE_TIMEOUT, and so does a frozen node (SIGSTOP, `docker
        // pause`), whose kernel still accepts connections; the channel dials again
        // on the next call.
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .http2_adaptive_window(true)
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .max_frame_size(crate::MAX_FRAME_SIZE)
        .connect_lazy())
}

/// Gathers a chunk's pieces from `stream` and checks them against `id`.
async fn collect_verified(
    stream: &mut tonic::Streaming<chunk::GetChunkResponse>,
    id: ChunkId,
    addr: &str,
    classify: impl Fn(tonic::Status) -> ChunkCallError,
) -> Result<Bytes, ChunkCallError> {
    let corrupt = || ChunkCallError::Corrupt {
        addr: addr.to_string(),
        id,
    };
    let mut buf = BytesMut::new();
    let mut first: Option<Bytes> = None;
    while let Some(msg) = stream.message().await.map_err(&classify)? {
        if msg.data.len() > MAX_DATA_MESSAGE {
            return Err(corrupt());
        }
        // The common case is one message per chunk: keep it without copying.
        match first.take() {
            None if buf.is_empty() => first = Some(msg.data),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&msg.data);
            }
            None => buf.extend_from_slice(&msg.data),
        }
        if buf.len() > redcloud_common::chunking::MAX_CHUNK_SIZE {
            return Err(corrupt());
        }
    }
    let data = first.unwrap_or_else(|| buf.freeze());
    if ChunkId::of(&data) != id {
        return Err(corrupt());
    }
    Ok(data)
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotHeld,
    /// Written within the window asked for: kept.
    KeptRecentlyWritten,
}

/// A client for one chunkserver.
#[derive(Clone, Debug)]
pub struct ChunkClient {
    addr: String,
    inner: ChunkserverClient<Channel>,
    channel: Channel,
    /// The cluster secret, sent as `x-redcloud-secret` metadata on every call.
    secret: Option<tonic::metadata::AsciiMetadataValue>,
}

impl ChunkClient {
    pub fn new(addr: &str, channel: Channel) -> Self {
        let inner = ChunkserverClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        ChunkClient {
            addr: addr.to_string(),
            inner,
            channel,
            secret: None,
        }
    }

    /// Sends `secret` (the cluster secret) with every call. A secret that cannot be
    /// a metadata value (not visible ASCII) is refused by configuration checks first.
    pub fn with_secret(mut self, secret: Option<&str>) -> Self {
        self.secret = secret.and_then(|s| s.parse().ok());
        self
    }

    /// Wraps a message in a request carrying the secret.
    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(s) = &self.secret {
            r.metadata_mut()
                .insert(redcloud_common::http::SECRET_HEADER, s.clone());
        }
        r
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn classify(&self, id: Option<ChunkId>, status: tonic::Status) -> ChunkCallError {
        let addr = self.addr.clone();
        match (status.code(), id) {
            (tonic::Code::NotFound, Some(id)) => ChunkCallError::NotFound { addr, id },
            (tonic::Code::DataLoss, Some(id)) => ChunkCallError::Corrupt { addr, id },
            (
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled,
                _,
            ) => ChunkCallError::Unreachable {
                addr,
                reason: status.message().to_string(),
            },
            _ => ChunkCallError::Failed { addr, status },
        }
    }

    /// Stores `data` as chunk `id`; returns whether it was already there.
    pub async fn put(&self, id: ChunkId, data: Bytes) -> Result<bool, ChunkCallError> {
        let header = chunk::PutChunkRequest {
            msg: Some(chunk::put_chunk_request::Msg::Header(
                chunk::PutChunkHeader {
                    chunk_id: id.to_hex(),
                    size: data.len() as u64,
                },
            )),
        };
        let pieces = (0..data.len())
            .step_by(PIECE)
            .map(move |off| chunk::PutChunkRequest {
                msg: Some(chunk::put_chunk_request::Msg::Data(
                    data.slice(off..(off + PIECE).min(data.len())),
                )),
            });
        let stream = futures::stream::iter(std::iter::once(header).chain(pieces));
        let resp = self
            .inner
            .clone()
            .put_chunk(self.req(stream))
            .await
            .map_err(|s| self.classify(Some(id), s))?;
        Ok(resp.into_inner().already_present)
    }

    /// Reads chunk `id`, verifying the bytes against the id.
    pub async fn get(&self, id: ChunkId) -> Result<Bytes, ChunkCallError> {
        let mut stream = self
            .inner
            .clone()
            .get_chunk(self.req(chunk::GetChunkRequest {
                chunk_id: id.to_hex(),
            }))
            .await
            .map_err(|s| self.classify(Some(id), s))?
            .into_inner();
        collect_verified(&mut stream, id, &self.addr, |st| {
            self.classify(Some(id), st)
        })
        .await
    }

    /// Reads chunk `id` through the client-facing ChunkRead service with a read
    /// `token` from a controller's download plan, verified like [`ChunkClient::get`].
    pub async fn read_with_token(&self, id: ChunkId, token: &str) -> Result<Bytes, ChunkCallError> {
        let mut client = chunk::chunk_read_client::ChunkReadClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut stream = client
            .read_chunk(chunk::ReadChunkRequest {
                chunk_id: id.to_hex(),
                token: token.to_string(),
            })
            .await
            .map_err(|s| self.classify(Some(id), s))?
            .into_inner();
        collect_verified(&mut stream, id, &self.addr, |st| {
            self.classify(Some(id), st)
        })
        .await
    }

    /// Every chunk id the server holds.
    pub async fn list(&self) -> Result<Vec<ChunkId>, ChunkCallError> {
        let mut stream = self
            .inner
            .clone()
            .list_chunks(self.req(chunk::ListChunksRequest {}))
            .await
            .map_err(|s| self.classify(None, s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.message().await.map_err(|s| self.classify(None, s))? {
            for s in batch.chunk_ids {
                match s.parse() {
                    Ok(id) => out.push(id),
                    Err(e) => {
                        return Err(ChunkCallError::Failed {
                            addr: self.addr.clone(),
                            status: tonic::Status::internal(format!(
                                "bad chunk id in listing: {e}"
                            )),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes chunk `id`; returns whether it was there.
    pub async fn delete(&self, id: ChunkId) -> Result<bool, ChunkCallError> {
        Ok(self
            .delete_unless_written_within(id, Duration::ZERO)
            .await?
            != Deleted::NotHeld)
    }

    /// Deletes chunk `id` unless the server saw it written (or offered again)
    /// within `window` by its own clock; `Duration::ZERO`: unconditionally.
    pub async fn delete_unless_written_within(
        &self,
        id: ChunkId,
        window: Duration,
    ) -> Result<Deleted, ChunkCallError> {
        let r = self
            .inner
            .clone()
            .delete_chunk(self.req(chunk::DeleteChunkRequest {
                chunk_id: id.to_hex(),
                unless_written_within_ms: window.as_millis().min(u64::MAX as u128) as u64,
            }))
            .await
            .map_err(|s| self.classify(Some(id), s))?
            .into_inner();
        Ok(if r.kept_recently_written {
            Deleted::KeptRecentlyWritten
        } else if r.existed {
            Deleted::Deleted
        } else {
            Deleted::NotHeld
        })
    }

    /// Asks this server to copy chunk `id` from the chunkserver at `source`.
    pub async fn replicate_from(&self, id: ChunkId, source: &str) -> Result<u64, ChunkCallError> {
        let r = self
            .inner
            .clone()
            .replicate_from_peer(self.req(chunk::ReplicateFromPeerRequest {
                chunk_id: id.to_hex(),
                source_address: source.to_string(),
            }))
            .await
            .map_err(|s| self.classify(Some(id), s))?;
        Ok(r.into_inner().bytes_copied)
    }

    /// Totals, and which of `ids` are held.
    pub async fn stat(&self, ids: &[ChunkId]) -> Result<ChunkserverStat, ChunkCallError> {
        let r = self
            .inner
            .clone()
            .stat(self.req(chunk::StatRequest {
                chunk_ids: ids.iter().map(ChunkId::to_hex).collect(),
            }))
            .await
            .map_err(|s| self.classify(None, s))?
            .into_inner();
        let mut present = Vec::new();
        for c in r.chunks {
            if c.present
                && let Ok(id) = c.chunk_id.parse()
            {
                present.push(id);
            }
        }
        Ok(ChunkserverStat {
            node_id: r.node_id,
            capacity_bytes: r.capacity_bytes,
            used_bytes: r.used_bytes,
            chunk_count: r.chunk_count,
            present,
        })
    }
}

/// A chunkserver's answer to `Stat`.
#[derive(Debug, Clone)]
pub struct ChunkserverStat {
    pub node_id: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub chunk_count: u64,
    /// Which of the ids asked about are held.
    pub present: Vec<ChunkId>,
}
