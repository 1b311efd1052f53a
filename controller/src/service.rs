//! The gRPC client API. Each handler converts its request to domain types, calls
//! the upload/download/db code, and converts back; errors become statuses in
//! `error.rs` only.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use redcloud_common::replication::Origin;
use redcloud_common::{FileId, HlcTimestamp};
use redcloud_proto::controller::{self as pb, controller_server::Controller};
use redcloud_proto::convert;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{self, Caller};
use crate::download;
use crate::error::ControllerError;
use crate::meta;
use crate::model::{ANONYMOUS, FileRecord};
use crate::node::Node;
use crate::upload::{self, UploadPart, UploadStart};

/// The client API of one controller.
#[derive(Clone)]
pub struct ControllerService {
    node: Arc<Node>,
    /// Uploads and downloads in progress (each holds a few chunks in memory).
    transfers: Arc<tokio::sync::Semaphore>,
}

/// The most uploads and downloads one controller serves at once. Each holds up to
/// a few chunks in memory; more wait up to [`TRANSFER_WAIT`] for a turn, then get
/// `RESOURCE_EXHAUSTED`.
pub const MAX_TRANSFERS: usize = 256;

/// The most pages of hits one search reads looking for books the caller may read.
const MAX_SEARCH_PAGES: usize = 20;

/// How long an upload or download waits for one of the [`MAX_TRANSFERS`] slots.
pub const TRANSFER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a transfer is told when no slot freed up within [`TRANSFER_WAIT`].
pub fn transfers_full() -> String {
    format!(
        "this controller is serving {MAX_TRANSFERS} uploads and downloads; try again later or \
         another controller"
    )
}

impl ControllerService {
    /// Moves this controller's clock past a client's causal context (`after`: the
    /// highest write timestamp the client has been answered), so the write about
    /// to be stamped orders after every write the client saw, also when it saw
    /// them on a controller whose clock runs ahead of this one's. Bounded to half
    /// of `MAX_CLOCK_DRIFT` past this controller's clock (how far apart disciplined
    /// clocks may be): a client's value from any controller is honoured, and no
    /// client can move the clock so far that its writes would be held by peers.
    fn observe_after(&self, after: u64) {
        if after == 0 {
            return;
        }
        let hlc = &self.node.hlc;
        let limit_ms = hlc
            .wall_ms()
            .saturating_add(self.node.config.max_clock_drift.as_millis() as u64 / 2);
        let after = HlcTimestamp(after);
        let bounded = if after.millis() > limit_ms {
            tracing::debug!(
                after_ms = after.millis(),
                limit_ms,
                "a client's causal clock is further ahead than MAX_CLOCK_DRIFT/2: taken up to the bound"
            );
            HlcTimestamp::from_parts(limit_ms, 0)
        } else {
            after
        };
        hlc.observe(bounded);
    }

    pub fn new(node: Arc<Node>) -> Self {
        ControllerService {
            node,
            transfers: Arc::new(tokio::sync::Semaphore::new(MAX_TRANSFERS)),
        }
    }

    /// A slot among the [`MAX_TRANSFERS`], held until the transfer ends.
    async fn transfer_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.wait_for_transfer_slot()
            .await
            .ok_or_else(|| Status::resource_exhausted(transfers_full()))
    }

    /// A slot among the [`MAX_TRANSFERS`] (shared by gRPC and HTTP downloads), or
    /// `None` when none freed up within [`TRANSFER_WAIT`].
    pub(crate) async fn wait_for_transfer_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match tokio::time::timeout(TRANSFER_WAIT, self.transfers.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => None,
        }
    }

    /// A page of the current public books (of every owner, anonymous included)
    /// whose name starts with `prefix`, after the page `page_token` names; and the
    /// token of the next page (empty: this was the last).
    pub(crate) async fn list_public(
        &self,
        prefix: String,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<pb::FileInfo>, String), ControllerError> {
        let limit = page_size_of(page_size);
        let after = match decode_cursor(page_token)? {
            None => None,
            Some(ListCursor::Public { n, o }) => Some((n, o)),
            Some(ListCursor::Own { .. }) => {
                return Err(bad_page_token("it is not one of this listing"));
            }
        };
        let (files, next) = self
            .node
            .db
            .call(move |s| {
                let after = after.as_ref().map(|(n, o)| (n.as_str(), o.as_str()));
                // No owner is excluded ("" is nobody's id).
                let p = meta::list_public_page(s.conn(), "", &prefix, after, limit)?;
                Ok((p.items, p.next.map(|(n, o)| ListCursor::Public { n, o })))
            })
            .await?;
        let files: Vec<&FileRecord> = files.iter().filter(|f| f.public).collect();
        let names = self.owner_names(&files).await?;
        Ok((
            files.iter().map(|f| file_info(f, &names)).collect(),
            encode_cursor(next.as_ref()),
        ))
    }

    /// Up to `want` hits for `q` among the books `visible` lets through, ranked;
    /// and the index's progress (books indexed, books pending). The index ranks
    /// every book; pages of `want` hits are read until `want` are visible (or the
    /// hits end), so books the caller may not read never leave a short answer.
    pub(crate) async fn search_visible(
        &self,
        mut q: redcloud_search::index::Query,
        want: usize,
        visible: &(dyn Fn(&FileRecord) -> bool + Sync),
    ) -> Result<(Vec<pb::SearchHit>, u64, u64), ControllerError> {
        self.node.metrics.searches.inc();
        let mut out: Vec<pb::SearchHit> = Vec::new();
        let (mut indexed, mut pending) = (0, 0);
        for _page in 0..MAX_SEARCH_PAGES {
            let (hits, n, p) = self
                .node
                .search
                .search(q.clone())
                .await
                .map_err(|e| match e {
                    redcloud_search::index::SearchError::BadQuery(m) => {
                        ControllerError::InvalidArgument(format!("invalid query: {m}"))
                    }
                    e => ControllerError::Internal(e.to_string()),
                })?;
            (indexed, pending) = (n, p);
            let last_page = hits.len() < q.limit;
            self.visible_hits(hits, visible, want, &mut out).await?;
            if last_page || out.len() >= want {
                break;
            }
            q.offset += q.limit;
        }
        Ok((out, indexed, pending))
    }

    /// Appends to `out` (up to `want` in all) the `hits` whose version the caller
    /// may read, ranked on from `out`'s length, with owner names.
    async fn visible_hits(
        &self,
        hits: Vec<redcloud_search::index::Hit>,
        visible: &(dyn Fn(&FileRecord) -> bool + Sync),
        want: usize,
        out: &mut Vec<pb::SearchHit>,
    ) -> Result<(), ControllerError> {
        let ids: Vec<String> = hits.iter().map(|h| h.file_id.clone()).collect();
        let files = self
            .node
            .db
            .call(move |s| {
                let mut out = std::collections::HashMap::new();
                for id in ids {
                    if let Ok(fid) = id.parse::<FileId>()
                        && let Some(f) = meta::file_by_id(s.conn(), &fid)?
                    {
                        out.insert(id, f);
                    }
                }
                Ok(out)
            })
            .await?;
        let shown: Vec<&FileRecord> = files.values().filter(|f| visible(f)).collect();
        let names = self.owner_names(&shown).await?;
        for h in hits {
            if out.len() >= want {
                break;
            }
            let Some(f) = files.get(&h.file_id).filter(|f| visible(f)) else {
                continue;
            };
            out.push(pb::SearchHit {
                rank: out.len() as u32 + 1,
                name: crate::search::name_of_key(&h.name).to_string(),
                owner: names
                    .get(&f.owner)
                    .cloned()
                    .unwrap_or_else(|| f.owner.clone()),
                file_id: h.file_id,
                title: h.title,
                author: h.author,
                language: h.language,
                score: h.score,
                snippet: h.snippet,
            });
        }
        Ok(())
    }

    /// Who is calling (`None`: no token). A bad, revoked or expired token is
    /// refused, not taken as anonymous.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Option<Caller>, Status> {
        let hlc = &self.node.hlc;
        Ok(auth::caller(
            &self.node.db,
            request.metadata(),
            hlc.wall_ms(),
            hlc.has_peer_samples(),
        )
        .await?)
    }

    /// The owner id a name-addressed call looks in: the caller's own books (or the
    /// anonymous ones, without a token) unless `owner` names a user.
    pub(crate) async fn namespace(
        &self,
        caller: &Option<Caller>,
        owner: &str,
    ) -> Result<String, ControllerError> {
        if owner.is_empty() {
            return Ok(own_namespace(caller));
        }
        if owner == ANONYMOUS {
            return Ok(ANONYMOUS.to_string());
        }
        let name = owner.to_string();
        let found = self
            .node
            .db
            .call(move |s| meta::users::accounts_named(s.conn(), &name))
            .await?;
        match found.into_iter().find(|a| a.name == owner) {
            Some(a) => Ok(a.user_id),
            None => Err(ControllerError::NotFound(format!("no user {owner:?}"))),
        }
    }

    /// The names the owners of `files` go by (ids as they are when unknown here).
    async fn owner_names(
        &self,
        files: &[&FileRecord],
    ) -> Result<std::collections::HashMap<String, String>, ControllerError> {
        let ids: Vec<String> = files
            .iter()
            .map(|f| f.owner.clone())
            .filter(|o| o != ANONYMOUS)
            .collect();
        self.node
            .db
            .call(move |s| meta::users::names_of(s.conn(), ids))
            .await
    }

    pub(crate) async fn info(&self, f: &FileRecord) -> Result<pb::FileInfo, ControllerError> {
        let names = self.owner_names(&[f]).await?;
        Ok(file_info(f, &names))
    }
}

/// The caller's own books: its user id, or the anonymous books without a token.
/// Files per page of `List` and `Versions` when the request does not say...
pub const DEFAULT_PAGE: usize = 1000;
/// ...and the most it may ask for (a page of FileInfos stays far below
/// MAX_MESSAGE_BYTES).
pub const MAX_PAGE: usize = 5000;

pub(crate) fn page_size_of(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    }
}

/// Where a `List` goes on: after the caller's (or the named owner's) name `n`, or
/// after public book `n` of owner (user id) `o`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "s")]
enum ListCursor {
    #[serde(rename = "own")]
    Own { n: String },
    #[serde(rename = "pub")]
    Public { n: String, o: String },
}

/// Where `Versions` goes on: after the version with HLC `h` and origin `o`.
#[derive(serde::Serialize, serde::Deserialize)]
struct VersionsCursor {
    h: u64,
    o: i64,
}

/// Longest page token accepted (hex of a cursor holding one name).
const MAX_PAGE_TOKEN: usize = 8 * 1024;

fn bad_page_token(why: &str) -> ControllerError {
    ControllerError::InvalidArgument(format!(
        "bad page_token ({why}): pass the next_page_token of the previous page, or none"
    ))
}

/// A page token is the hex of the cursor's JSON: opaque to clients, valid at
/// every controller (it names keys, not positions).
fn encode_cursor<T: serde::Serialize>(c: Option<&T>) -> String {
    c.and_then(|c| serde_json::to_vec(c).ok())
        .map(hex::encode)
        .unwrap_or_default()
}

fn decode_cursor<T: serde::de::DeserializeOwned>(
    token: &str,
) -> Result<Option<T>, ControllerError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_PAGE_TOKEN {
        return Err(bad_page_token("too long"));
    }
    let bytes = hex::decode(token).map_err(|_| bad_page_token("not hex"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| bad_page_token("not a cursor"))
}

fn own_namespace(caller: &Option<Caller>) -> String {
    caller
        .as_ref()
        .map(|c| c.user_id.clone())
        .unwrap_or_else(|| ANONYMOUS.to_string())
}

/// The account a write is made as; a call without a token may not write.
fn writer<'a>(caller: &'a Option<Caller>, what: &str) -> Result<&'a Caller, Status> {
    caller.as_ref().ok_or_else(|| {
        ControllerError::Unauthenticated(format!(
            "log in to {what}: `redcloud login NAME` (or `redcloud register NAME`); without \
             an account you may list, download and search public books only"
        ))
        .into()
    })
}

/// Whether `caller` may read `f`: its own, public, or owned by `anonymous` (books
/// stored before accounts existed, readable by everyone and writable by nobody).
fn readable(f: &FileRecord, caller: &Option<Caller>) -> bool {
    f.public || f.owner == ANONYMOUS || caller.as_ref().is_some_and(|c| c.user_id == f.owner)
}

fn not_found(name: &str) -> Status {
    ControllerError::NotFound(format!("file '{name}' not found")).into()
}

fn file_info(f: &FileRecord, names: &std::collections::HashMap<String, String>) -> pb::FileInfo {
    pb::FileInfo {
        file_id: f.file_id.to_string(),
        name: f.name.clone(),
        owner: names
            .get(&f.owner)
            .cloned()
            .unwrap_or_else(|| f.owner.clone()),
        size: f.size,
        sha256: f.sha256.clone(),
        chunk_count: f.chunk_count,
        chunk_size: f.chunk_size,
        created_at_ms: f.created_at_ms,
        public: f.public,
    }
}

fn parse_version(v: &str) -> Result<Option<FileId>, Status> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("version: {e}")))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let caller = self.caller(&request).await?;
        let owner = writer(&caller, "upload")?.user_id.clone();
        let _slot = self.transfer_slot().await?;
        let mut stream = request.into_inner();
        let idle = self.node.config.upload_idle_timeout;
        let stalled = || {
            Status::invalid_argument(format!(
                "upload stream stalled: no message for {:.0} s",
                idle.as_secs_f64()
            ))
        };
        let first = tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| stalled())??;
        let start = match first {
            Some(pb::UploadRequest {
                msg: Some(pb::upload_request::Msg::Start(s)),
            }) => s,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of Upload must be `start`",
                ));
            }
            None => return Err(Status::invalid_argument("empty Upload stream")),
        };
        self.observe_after(start.after);
        let start = UploadStart {
            owner,
            name: start.name,
            size: start.size,
            public: start.public,
        };
        // A client that stops sending (frozen, or trickling nothing) gives up its
        // upload's memory and chunk slots after `upload_idle_timeout`.
        let parts = Box::pin(tokio_stream::StreamExt::timeout(stream, idle)).map(|m| match m {
            Err(_) => Err(ControllerError::InvalidArgument(format!(
                "upload stream stalled: no message for {:.0} s",
                idle.as_secs_f64()
            ))),
            Ok(m) => match m {
                Ok(pb::UploadRequest {
                    msg: Some(pb::upload_request::Msg::Data(d)),
                }) => Ok(UploadPart::Data(d)),
                Ok(pb::UploadRequest {
                    msg: Some(pb::upload_request::Msg::Finish(f)),
                }) => Ok(UploadPart::Finish { sha256: f.sha256 }),
                Ok(_) => Err(ControllerError::InvalidArgument(
                    "Upload: after `start`, only `data` and `finish` messages are allowed".into(),
                )),
                Err(s) => Err(ControllerError::InvalidArgument(format!(
                    "upload stream broken: {}",
                    s.message()
                ))),
            },
        });
        match upload::upload(self.node.data.clone(), start, parts).await {
            Ok((file, replicas)) => Ok(Response::new(pb::UploadResponse {
                file: Some(self.info(&file).await?),
                replicas: replicas as u32,
                clock: file.meta.hlc.0,
            })),
            Err(e) => {
                self.node.metrics.upload_failures.inc();
                tracing::warn!("upload refused: {e}");
                Err(e.into())
            }
        }
    }

    type DownloadStream = BoxStream<pb::DownloadResponse>;

    async fn download(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let name = convert::required("name", &req.name)?;
        let version = parse_version(&req.version)?;
        let owner = self.namespace(&caller, &req.owner).await?;
        let opened = download::open(&self.node.data, &owner, name, version).await?;
        if !readable(&opened.file, &caller) {
            return Err(not_found(name));
        }
        if req.offset > opened.file.size {
            return Err(Status::out_of_range(format!(
                "offset {} is past the end of '{name}' ({} bytes)",
                req.offset, opened.file.size
            )));
        }
        let slot = self.transfer_slot().await?;
        let info = pb::DownloadResponse {
            msg: Some(pb::download_response::Msg::Info(
                self.info(&opened.file).await?,
            )),
        };
        let data = tokio_stream::wrappers::ReceiverStream::new(download::stream(
            self.node.data.clone(),
            opened,
            req.offset,
        ))
        .map(move |r| {
            let _held_until_the_stream_ends = &slot;
            r.map(|d| pb::DownloadResponse {
                msg: Some(pb::download_response::Msg::Data(d)),
            })
            .map_err(Status::from)
        });
        let out = futures::stream::once(async { Ok(info) }).chain(data);
        Ok(Response::new(Box::pin(out)))
    }

    async fn download_plan(
        &self,
        request: Request<pb::DownloadPlanRequest>,
    ) -> Result<Response<pb::DownloadPlanResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let file = req
            .file
            .ok_or_else(|| ControllerError::InvalidArgument("file is required".into()))?;
        let name = convert::required("file.name", &file.name)?;
        let version = parse_version(&file.version)?;
        let owner = self.namespace(&caller, &file.owner).await?;
        let opened = download::open(&self.node.data, &owner, name, version).await?;
        if !readable(&opened.file, &caller) {
            return Err(not_found(name));
        }
        let from = req.from_chunk as usize;
        if from > opened.chunks.len() {
            return Err(Status::out_of_range(format!(
                "from_chunk {from} is past the last chunk of '{name}' ({} chunks)",
                opened.chunks.len()
            )));
        }
        let (chunks, next_chunk) = download::plan(
            &self.node.data,
            &opened,
            from,
            self.node.config.cluster_secret.as_deref(),
            self.node.hlc.wall_ms(),
        );
        Ok(Response::new(pb::DownloadPlanResponse {
            file: Some(self.info(&opened.file).await?),
            chunks,
            next_chunk,
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let limit = page_size_of(req.page_size);
        let cursor: Option<ListCursor> = decode_cursor(&req.page_token)?;
        let prefix = req.prefix;
        let (files, next) = if req.owner.is_empty() {
            // The caller's books, then everyone else's public ones.
            let own = own_namespace(&caller);
            self.node
                .db
                .call(move |s| {
                    let c = s.conn();
                    let mut files = Vec::new();
                    let public_after = match cursor {
                        Some(ListCursor::Public { n, o }) => Some((n, o)),
                        own_cursor => {
                            let after = match own_cursor {
                                Some(ListCursor::Own { n }) => n,
                                _ => String::new(),
                            };
                            let p = meta::list_current_page(c, &own, &prefix, &after, limit)?;
                            files = p.items;
                            if let Some(n) = p.next {
                                return Ok((files, Some(ListCursor::Own { n })));
                            }
                            None
                        }
                    };
                    let budget = limit.saturating_sub(files.len()).max(1);
                    let after = public_after.as_ref().map(|(n, o)| (n.as_str(), o.as_str()));
                    let p = meta::list_public_page(c, &own, &prefix, after, budget)?;
                    files.extend(p.items);
                    Ok((files, p.next.map(|(n, o)| ListCursor::Public { n, o })))
                })
                .await?
        } else {
            let owner = self.namespace(&caller, &req.owner).await?;
            let after = match cursor {
                None => String::new(),
                Some(ListCursor::Own { n }) => n,
                Some(ListCursor::Public { .. }) => {
                    return Err(bad_page_token("it is not one of this listing").into());
                }
            };
            self.node
                .db
                .call(move |s| {
                    let p = meta::list_current_page(s.conn(), &owner, &prefix, &after, limit)?;
                    Ok((p.items, p.next.map(|n| ListCursor::Own { n })))
                })
                .await?
        };
        let files: Vec<&FileRecord> = files.iter().filter(|f| readable(f, &caller)).collect();
        let names = self.owner_names(&files).await?;
        Ok(Response::new(pb::ListResponse {
            files: files.iter().map(|f| file_info(f, &names)).collect(),
            next_page_token: encode_cursor(next.as_ref()),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = self.caller(&request).await?;
        let own = writer(&caller, "delete")?.user_id.clone();
        let name = convert::required("name", &request.get_ref().name)?.to_string();
        self.observe_after(request.get_ref().after);
        let n = name.clone();
        let (deleted, written) = self
            .node
            .db
            .call(move |s| meta::delete_name(s, &own, &n))
            .await?;
        let clock = written.iter().map(|r| r.version.hlc.0).max().unwrap_or(0);
        self.node.publish(written, None);
        if deleted == 0 {
            return Err(ControllerError::NotFound(format!("file '{name}' not found")).into());
        }
        tracing::info!(node = %self.node.id, %name, versions = deleted, "file deleted");
        Ok(Response::new(pb::DeleteResponse {
            versions_deleted: deleted,
            clock,
        }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        if r.query.trim().is_empty() {
            return Err(ControllerError::InvalidArgument("empty search query".into()).into());
        }
        let opt = |s: String| (!s.trim().is_empty()).then_some(s);
        let want = match r.limit {
            0 => 10,
            n => (n as usize).min(redcloud_search::index::MAX_LIMIT),
        };
        let q = redcloud_search::index::Query {
            text: r.query,
            author: opt(r.author),
            language: opt(r.language),
            title: opt(r.title),
            limit: want,
            offset: 0,
        };
        // Only the books the caller may read are answered.
        let (out, indexed, pending) = self
            .search_visible(q, want, &|f| readable(f, &caller))
            .await?;
        Ok(Response::new(pb::SearchResponse {
            hits: out,
            indexed_books: indexed,
            pending_books: pending,
        }))
    }

    async fn versions(
        &self,
        request: Request<pb::VersionsRequest>,
    ) -> Result<Response<pb::VersionsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let name = convert::required("name", &request.get_ref().name)?.to_string();
        let owner = self.namespace(&caller, &request.get_ref().owner).await?;
        let limit = page_size_of(request.get_ref().page_size);
        let first_page = request.get_ref().page_token.is_empty();
        let mut cursor: Option<VersionsCursor> = decode_cursor(&request.get_ref().page_token)?;
        // Pages until one holds a version the caller may read, or none are left (so
        // "not found" is said only of a name with no readable version at all).
        let (list, next) = loop {
            let (owner, n) = (owner.clone(), name.clone());
            let after = cursor
                .take()
                .map(|c| (HlcTimestamp(c.h), Origin::from_sql(c.o)));
            let page = self
                .node
                .db
                .call(move |s| meta::versions_page(s.conn(), &owner, &n, after, limit))
                .await?;
            let next = page.next.map(|(h, o)| VersionsCursor {
                h: h.0,
                o: o.to_sql(),
            });
            let list: Vec<_> = page
                .items
                .into_iter()
                .filter(|v| readable(&v.file, &caller))
                .collect();
            match next {
                Some(c) if list.is_empty() => cursor = Some(c),
                next => break (list, next),
            }
        };
        if list.is_empty() && first_page {
            return Err(not_found(&name));
        }
        let files: Vec<&FileRecord> = list.iter().map(|v| &v.file).collect();
        let names = self.owner_names(&files).await?;
        Ok(Response::new(pb::VersionsResponse {
            versions: list
                .iter()
                .map(|v| pb::VersionInfo {
                    file: Some(file_info(&v.file, &names)),
                    current: v.current,
                    deleted: v.file.meta.deleted,
                    origin: v.file.meta.origin.to_string(),
                })
                .collect(),
            next_page_token: encode_cursor(next.as_ref()),
        }))
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let name = convert::required("name", &req.name)?;
        let version = parse_version(&req.version)?;
        let owner = self.namespace(&caller, &req.owner).await?;
        let opened = download::open(&self.node.data, &owner, name, version).await?;
        if !readable(&opened.file, &caller) {
            return Err(not_found(name));
        }
        let ids: Vec<_> = opened.chunks.iter().map(|c| c.chunk_id).collect();
        let locations = self
            .node
            .db
            .call(move |s| meta::locations(s.conn(), &ids))
            .await?;
        let chunks = opened
            .chunks
            .iter()
            .map(|c| pb::ChunkInfo {
                index: c.index,
                chunk_id: c.chunk_id.to_hex(),
                size: c.size,
                replicas: locations
                    .get(&c.chunk_id)
                    .into_iter()
                    .flatten()
                    .map(|n| {
                        let (addr, healthy) = match self.node.registry.get(n) {
                            Some((rec, h)) => (rec.grpc_addr, h),
                            None => (String::new(), false),
                        };
                        pb::ChunkReplica {
                            node_id: n.to_string(),
                            address: addr,
                            healthy,
                        }
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::StatResponse {
            file: Some(self.info(&opened.file).await?),
            chunks,
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(
            crate::status::cluster_status(&self.node).await?.status,
        ))
    }

    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = request.into_inner();
        meta::users::check_username(&req.username).map_err(ControllerError::InvalidArgument)?;
        auth::check_password(&req.password)?;
        let pw = req.password;
        let hash = auth::hashing(move || auth::hash_password(&pw)).await??;
        let now = self.node.hlc.wall_ms();
        let username = req.username.clone();
        let (user_id, written) = self
            .node
            .db
            .call(move |s| meta::users::register(s, &username, hash, now))
            .await?;
        self.node.publish(written, None);
        tracing::info!(user = %req.username, %user_id, "account registered");
        Ok(Response::new(pb::RegisterResponse {
            user_id,
            username: req.username,
        }))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = request.into_inner();
        let refused = || {
            Status::unauthenticated(format!(
                "wrong user name or password for {:?} (an account made on another controller \
                 may not have reached this one yet)",
                redcloud_common::clip(&req.username, 128)
            ))
        };
        if req.username.is_empty()
            || req.username.len() > 2 * meta::users::MAX_USERNAME_BYTES
            || req.password.len() > auth::MAX_PASSWORD_BYTES
        {
            return Err(refused());
        }
        let name = req.username.clone();
        let candidates = self
            .node
            .db
            .call(move |s| meta::users::accounts_named(s.conn(), &name))
            .await?;
        let pw = req.password.clone();
        let account = auth::hashing(move || {
            candidates
                .into_iter()
                .find(|a| auth::verify_password(&pw, &a.password_hash))
        })
        .await?;
        let Some(account) = account else {
            return Err(refused());
        };
        let (session, token, digest) = auth::new_token();
        let expires = self.node.hlc.wall_ms() + auth::TOKEN_TTL_MS;
        let user_id = account.user_id.clone();
        let written = self
            .node
            .db
            .call(move |s| meta::users::create_session(s, &session, &user_id, digest, expires))
            .await?;
        self.node.publish(written, None);
        // Told at every login while it lasts: the name registered is held by an
        // earlier registration of it.
        let renamed_from = if account.renamed() {
            account.registered.clone()
        } else {
            String::new()
        };
        Ok(Response::new(pb::LoginResponse {
            token,
            user_id: account.user_id,
            username: account.name,
            expires_at_ms: expires,
            renamed_from,
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let Some(caller) = self.caller(&request).await? else {
            return Err(ControllerError::Unauthenticated("not logged in".into()).into());
        };
        let session = caller.session_id.clone();
        let written = self
            .node
            .db
            .call(move |s| meta::users::revoke_session(s, &session))
            .await?;
        self.node.publish(written, None);
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let Some(caller) = self.caller(&request).await? else {
            return Err(ControllerError::Unauthenticated("not logged in".into()).into());
        };
        let id = caller.user_id.clone();
        let account = self
            .node
            .db
            .call(move |s| meta::users::account(s.conn(), &id))
            .await?;
        Ok(Response::new(pb::WhoAmIResponse {
            user_id: caller.user_id,
            username: caller.name,
            registered_as: account.map(|a| a.registered).unwrap_or_default(),
            expires_at_ms: caller.expires_at_ms,
        }))
    }

    async fn forget_node(
        &self,
        request: Request<pb::ForgetNodeRequest>,
    ) -> Result<Response<pb::ForgetNodeResponse>, Status> {
        // A write to the cluster's membership: never anonymous.
        let caller = self.caller(&request).await?;
        let who = writer(&caller, "forget a node")?.name.clone();
        let req = request.into_inner();
        let id = redcloud_common::NodeId::new(convert::required("node_id", &req.node_id)?)
            .map_err(|e| ControllerError::InvalidArgument(e.to_string()))?;
        if id == self.node.id {
            return Err(ControllerError::InvalidArgument(format!(
                "{id} is the controller answering this request: a controller cannot forget itself \
                 (ask another one, after stopping this one for good)"
            ))
            .into());
        }
        if !req.force {
            // Heard from recently: probably not gone for good.
            let alive_window = self
                .node
                .config
                .heartbeat_timeout
                .max(std::time::Duration::from_secs(30));
            let controller_alive = self.node.peers.alive(alive_window).contains(&id);
            let chunkserver_alive = self.node.registry.get(&id).is_some_and(|(_, h)| h);
            if controller_alive || chunkserver_alive {
                return Err(ControllerError::FailedPrecondition(format!(
                    "{id} was heard from within the last {} s: it looks alive. Forgetting a live node \
                     means collection stops waiting for it: deletes it has not seen may later be undone on \
                     it, and chunks only it references may be deleted. Stop it for good first, or pass --force",
                    alive_window.as_secs()
                ))
                .into());
            }
        }
        // Known as a member without a record: a peer, or a controller the
        // chunkservers report talking to (collection waits for it all the same).
        let member = self
            .node
            .peers
            .all()
            .into_iter()
            .find(|p| p.node_id.as_ref() == Some(&id))
            .map(|p| (p.grpc_addr, p.http_addr))
            .or_else(|| {
                self.node
                    .registry
                    .reported_controllers()
                    .into_iter()
                    .find(|c| c.node_id == id)
                    .map(|c| (String::new(), c.http_addr))
            });
        let target = id.clone();
        let (forgotten, written) = self
            .node
            .db
            .call(move |s| meta::forget(s, &target, member))
            .await?;
        if !forgotten.controller && forgotten.chunkserver_records == 0 && forgotten.locations == 0 {
            return Err(ControllerError::NotFound(format!(
                "no controller or chunkserver {id} is known to this controller (one that has just \
                 started or been wiped may not have caught up yet: ask another controller)"
            ))
            .into());
        }
        self.node.peers.remove_id(&id);
        self.node.registry.remove(&id);
        if forgotten.controller {
            let mut all = self
                .node
                .db
                .call(|s| meta::forgotten_controllers(s.conn()))
                .await?;
            all.insert(id.clone());
            self.node.membership.set_forgotten(all);
        }
        self.node.publish(written, None);
        tracing::warn!(node = %id, by = %who, ?forgotten, "node forgotten: collection no longer waits for it");
        Ok(Response::new(pb::ForgetNodeResponse {
            controller: forgotten.controller,
            chunkserver_records: forgotten.chunkserver_records as u32,
            chunk_locations: forgotten.locations as u32,
        }))
    }
}
