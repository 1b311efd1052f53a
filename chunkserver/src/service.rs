//! The gRPC chunk service: converts requests to domain types at the top of each
//! handler and runs store work on the blocking pool.

use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use futures::Stream;
use redcloud_common::ChunkId;
use redcloud_common::chunking::MAX_CHUNK_SIZE;
use redcloud_proto::chunk::{self, chunkserver_server::Chunkserver};
use redcloud_proto::chunk_client::PIECE;
use redcloud_proto::convert;
use tonic::{Request, Response, Status, Streaming};

use crate::node::Node;
use crate::store::{PutOutcome, StoreError};

/// The one place store errors become gRPC statuses.
impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match &e {
            StoreError::NotFound(_) => Status::not_found(e.to_string()),
            StoreError::Corrupt(_) => Status::data_loss(e.to_string()),
            StoreError::HashMismatch { .. } => Status::invalid_argument(e.to_string()),
            StoreError::Io { .. } => Status::internal(e.to_string()),
        }
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?
        .map_err(Status::from)
}

impl ChunkService {
    /// Reads and verifies chunk `id`, as a stream of pieces.
    async fn read(&self, id: ChunkId) -> Result<BoxStream<chunk::GetChunkResponse>, Status> {
        let store = self.node.store.clone();
        let data = match blocking(move || store.get(&id)).await {
            Ok(d) => d,
            Err(s) => {
                if s.code() == tonic::Code::DataLoss {
                    self.node.metrics.corrupt_reads.inc();
                }
                return Err(s);
            }
        };
        self.node.metrics.chunks_read.inc();
        self.node.metrics.bytes_read.add(data.len() as u64);
        let pieces: Vec<_> = (0..data.len().max(1))
            .step_by(PIECE)
            .map(|off| {
                Ok(chunk::GetChunkResponse {
                    data: data.slice(off.min(data.len())..(off + PIECE).min(data.len())),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(pieces)))
    }
}

/// The client-facing read service: a chunk for a valid read token, nothing else.
pub struct ChunkReadService(pub Arc<ChunkService>);

#[tonic::async_trait]
impl chunk::chunk_read_server::ChunkRead for ChunkReadService {
    type ReadChunkStream = BoxStream<chunk::GetChunkResponse>;

    async fn read_chunk(
        &self,
        request: Request<chunk::ReadChunkRequest>,
    ) -> Result<Response<Self::ReadChunkStream>, Status> {
        let req = request.get_ref();
        let id = convert::chunk_id("chunk_id", &req.chunk_id)?;
        redcloud_common::chunk_token::verify(
            self.0.node.cluster_secret.as_deref(),
            &id,
            &req.token,
            redcloud_common::now_ms(),
        )
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
        self.0.node.metrics.direct_reads.inc();
        Ok(Response::new(self.0.read(id).await?))
    }
}

/// The chunk service of one node.
#[derive(Clone)]
pub struct ChunkService {
    node: Arc<Node>,
}

impl ChunkService {
    pub fn new(node: Arc<Node>) -> Self {
        ChunkService { node }
    }

    async fn store_chunk(&self, id: ChunkId, data: bytes::Bytes) -> Result<PutOutcome, Status> {
        let store = self.node.store.clone();
        let len = data.len() as u64;
        let outcome = blocking(move || store.put(&id, &data)).await?;
        if outcome == PutOutcome::Stored {
            self.node.metrics.chunks_written.inc();
            self.node.metrics.bytes_written.add(len);
        }
        Ok(outcome)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Chunkserver for ChunkService {
    async fn put_chunk(
        &self,
        request: Request<Streaming<chunk::PutChunkRequest>>,
    ) -> Result<Response<chunk::PutChunkResponse>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(chunk::PutChunkRequest {
                msg: Some(chunk::put_chunk_request::Msg::Header(h)),
            }) => h,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of PutChunk must be a header",
                ));
            }
            None => return Err(Status::invalid_argument("empty PutChunk stream")),
        };
        let id = convert::chunk_id("header.chunk_id", &header.chunk_id)?;
        let size = header.size as usize;
        if header.size > MAX_CHUNK_SIZE as u64 {
            return Err(Status::invalid_argument(format!(
                "chunk size {} exceeds the maximum of {MAX_CHUNK_SIZE} bytes",
                header.size
            )));
        }
        // Memory is taken as data arrives (a header may declare 64 MiB and send
        // nothing), from a budget shared by every PutChunk; the permits go with `buf`.
        let mut buf = BytesMut::with_capacity(size.min(256 * 1024));
        let mut held = Vec::new();
        let idle = crate::node::PUT_IDLE;
        loop {
            let msg = match tokio::time::timeout(idle, stream.message()).await {
                Ok(m) => m?,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "PutChunk stalled: no message for {} s",
                        idle.as_secs()
                    )));
                }
            };
            let Some(msg) = msg else { break };
            match msg.msg {
                Some(chunk::put_chunk_request::Msg::Data(d)) => {
                    if buf.len() + d.len() > size {
                        return Err(Status::invalid_argument(format!(
                            "PutChunk sent more than the {size} bytes its header declared"
                        )));
                    }
                    let permit = tokio::time::timeout(
                        idle,
                        self.node
                            .put_budget
                            .clone()
                            .acquire_many_owned(d.len() as u32),
                    )
                    .await
                    .map_err(|_| {
                        Status::resource_exhausted(
                            "this chunkserver holds too many incoming chunks; retry shortly",
                        )
                    })?
                    .map_err(|_| Status::unavailable("the chunkserver is stopping"))?;
                    held.push(permit);
                    buf.extend_from_slice(&d);
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "PutChunk: only data may follow the header",
                    ));
                }
            }
        }
        if buf.len() != size {
            return Err(Status::invalid_argument(format!(
                "truncated PutChunk stream: got {} of {size} bytes",
                buf.len()
            )));
        }
        let outcome = self.store_chunk(id, buf.freeze()).await?;
        Ok(Response::new(chunk::PutChunkResponse {
            already_present: outcome == PutOutcome::AlreadyPresent,
            node_id: self.node.id.to_string(),
        }))
    }

    type GetChunkStream = BoxStream<chunk::GetChunkResponse>;

    async fn get_chunk(
        &self,
        request: Request<chunk::GetChunkRequest>,
    ) -> Result<Response<Self::GetChunkStream>, Status> {
        let id = convert::chunk_id("chunk_id", &request.get_ref().chunk_id)?;
        Ok(Response::new(self.read(id).await?))
    }

    type ListChunksStream = BoxStream<chunk::ListChunksResponse>;

    async fn list_chunks(
        &self,
        _request: Request<chunk::ListChunksRequest>,
    ) -> Result<Response<Self::ListChunksStream>, Status> {
        let store = self.node.store.clone();
        let ids = blocking(move || {
            let mut ids = Vec::new();
            store.for_each(|id, _| ids.push(id.to_hex()))?;
            Ok(ids)
        })
        .await?;
        let batches: Vec<_> = ids
            .chunks(4096)
            .map(|b| {
                Ok(chunk::ListChunksResponse {
                    chunk_ids: b.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(batches))))
    }

    async fn delete_chunk(
        &self,
        request: Request<chunk::DeleteChunkRequest>,
    ) -> Result<Response<chunk::DeleteChunkResponse>, Status> {
        let req = request.into_inner();
        let id = convert::chunk_id("chunk_id", &req.chunk_id)?;
        let window = std::time::Duration::from_millis(req.unless_written_within_ms);
        let store = self.node.store.clone();
        let outcome = blocking(move || store.remove_unless_written_within(&id, window)).await?;
        use crate::store::RemoveOutcome;
        if outcome == RemoveOutcome::KeptRecentlyWritten {
            tracing::info!(chunk = %id, "delete refused: the chunk was written within {window:?}; an upload may be using it");
        }
        Ok(Response::new(chunk::DeleteChunkResponse {
            existed: outcome != RemoveOutcome::NotHeld,
            kept_recently_written: outcome == RemoveOutcome::KeptRecentlyWritten,
        }))
    }

    async fn replicate_from_peer(
        &self,
        request: Request<chunk::ReplicateFromPeerRequest>,
    ) -> Result<Response<chunk::ReplicateFromPeerResponse>, Status> {
        let req = request.into_inner();
        let id = convert::chunk_id("chunk_id", &req.chunk_id)?;
        let source = convert::required("source_address", &req.source_address)?;
        let store = self.node.store.clone();
        if blocking(move || store.touch(&id)).await? {
            return Ok(Response::new(chunk::ReplicateFromPeerResponse {
                already_present: true,
                bytes_copied: 0,
            }));
        }
        // One copy per chunk at a time: overlapping requests (several controllers
        // repairing the same chunk) do not fetch it twice.
        let claimed = self
            .node
            .replicating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        if !claimed {
            return Err(Status::already_exists(format!(
                "chunk {id} is already being copied here"
            )));
        }
        let _release = Release(&self.node, id);
        let _slot = self
            .node
            .copy_slots
            .acquire()
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        let data = self
            .node
            .peer_client(source)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .get(id)
            .await
            .map_err(|e| Status::unavailable(format!("copy from peer failed: {e}")))?;
        let len = data.len() as u64;
        let outcome = self.store_chunk(id, data).await?;
        self.node.metrics.replications.inc();
        Ok(Response::new(chunk::ReplicateFromPeerResponse {
            already_present: outcome == PutOutcome::AlreadyPresent,
            bytes_copied: len,
        }))
    }

    async fn stat(
        &self,
        request: Request<chunk::StatRequest>,
    ) -> Result<Response<chunk::StatResponse>, Status> {
        let req = request.into_inner();
        if req.chunk_ids.len() > 100_000 {
            return Err(Status::invalid_argument(
                "Stat: at most 100000 chunk ids per call",
            ));
        }
        let ids = req
            .chunk_ids
            .iter()
            .map(|s| convert::chunk_id("chunk_ids", s))
            .collect::<Result<Vec<_>, _>>()?;
        let store = self.node.store.clone();
        let chunks = blocking(move || {
            Ok(ids
                .iter()
                .map(|id| {
                    let size = store.size_of(id);
                    chunk::ChunkPresence {
                        chunk_id: id.to_hex(),
                        present: size.is_some(),
                        size: size.unwrap_or(0),
                    }
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let (capacity, _) = self.node.disk_space();
        Ok(Response::new(chunk::StatResponse {
            node_id: self.node.id.to_string(),
            capacity_bytes: capacity,
            used_bytes: self.node.store.used_bytes(),
            chunk_count: self.node.store.chunk_count(),
            chunks,
        }))
    }
}

/// Releases a replication claim when the request ends, however it ends.
struct Release<'a>(&'a Node, redcloud_common::ChunkId);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0
            .replicating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}
