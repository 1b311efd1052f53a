//! The search index follows the replicated state: every controller indexes the
//! current version of every stored book, whether it was uploaded here or learned by
//! gossip, and drops names that were deleted or replaced.
//!
//! The index is derived state, kept in its own SQLite file (`search.sqlite` in the
//! data directory) so indexing never holds the metadata database's lock; it can be
//! deleted and is rebuilt from the replicated state. One connection writes (this
//! worker), another answers queries (WAL lets them run side by side).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redcloud_search::index::{Hit, Index, Query, SearchError};
use tokio_util::sync::CancellationToken;

use crate::chunks::DataPath;
use crate::download;
use crate::meta;
use crate::workers::{BoxFuture, Worker, WorkerState};

/// A pass runs at least this often (and at once when files change).
const PASS_INTERVAL: Duration = Duration::from_secs(10);
/// A book that failed to index is tried again after this long (doubling, capped).
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Books larger than this are not indexed (the store takes any file; the index is
/// for books).
pub const MAX_INDEXED_BYTES: u64 = 256 * 1024 * 1024;

/// The two connections to the index.
pub struct SearchIndex {
    writer: Mutex<Index>,
    reader: Mutex<Index>,
    /// Where every write to the index runs.
    thread: IndexThread,
    /// Current books known but not indexed yet, from the last pass.
    pending: std::sync::atomic::AtomicU64,
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread of its own, at the lowest CPU priority (nice 19), that runs every
/// write to the index. Indexing a book costs far more CPU than storing it (about
/// 13 MB/s of text against hundreds for an upload), and it is background work: at
/// normal priority it took one of this machine's two cores from the uploads that
/// feed it. Niced, it gets what the node leaves idle, and all of it when the
/// node is idle. Not the blocking pool: a nice value belongs to a thread, and the
/// pool's threads run the metadata commits too.
struct IndexThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl IndexThread {
    fn start() -> std::io::Result<IndexThread> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("search-index".into())
            .spawn(move || {
                background_priority();
                // Ends when the index (the only sender) is dropped.
                for job in rx {
                    // A job that panics loses its answer (its caller gets an
                    // error), not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(IndexThread { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, crate::error::ControllerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| {
                crate::error::ControllerError::Internal(
                    "the search index thread has stopped".into(),
                )
            })?;
        rx.await.map_err(|_| {
            crate::error::ControllerError::Internal("a search index job failed".into())
        })
    }
}

/// Lowers the calling thread's CPU priority to nice 19 (on Linux a nice value is
/// per thread). Not being able to is logged, not fatal.
fn background_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!("cannot lower the search index thread's priority: {e}");
    }
}

impl SearchIndex {
    pub fn open(dir: &std::path::Path) -> Result<SearchIndex, SearchError> {
        let path = dir.join("search.sqlite");
        let writer = Index::open(&path)?;
        let reader = Index::open(&path)?;
        let thread = IndexThread::start().map_err(|e| {
            SearchError::Unavailable(format!("cannot start the search index thread: {e}"))
        })?;
        Ok(SearchIndex {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            thread,
            pending: Default::default(),
        })
    }

    /// Runs a query (on the blocking pool). Returns the hits, the number of books
    /// indexed and the number still pending.
    pub async fn search(self: &Arc<Self>, q: Query) -> Result<(Vec<Hit>, u64, u64), SearchError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let ix = me.reader.lock().unwrap_or_else(|e| e.into_inner());
            let hits = ix.search(&q)?;
            let (books, _) = ix.size()?;
            Ok((
                hits,
                books,
                me.pending.load(std::sync::atomic::Ordering::Relaxed),
            ))
        })
        .await
        .map_err(|e| SearchError::Unavailable(format!("search task failed: {e}")))?
    }

    /// Indexing progress: books in the index and current books still pending (on
    /// the blocking pool, as a search).
    pub async fn progress(self: &Arc<Self>) -> Result<(u64, u64), SearchError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let ix = me.reader.lock().unwrap_or_else(|e| e.into_inner());
            let (books, _) = ix.size()?;
            Ok((books, me.pending.load(std::sync::atomic::Ordering::Relaxed)))
        })
        .await
        .map_err(|e| SearchError::Unavailable(format!("search task failed: {e}")))?
    }
}

/// The indexer worker: a pass at start, on every change of files, and every
/// `PASS_INTERVAL`; books that could not be fetched yet (chunks still replicating)
/// are retried soon, with backoff per book.
pub struct Indexer {
    pub data: Arc<DataPath>,
    pub index: Arc<SearchIndex>,
    pub shutdown: CancellationToken,
    failures: HashMap<String, (u32, Instant)>,
}

impl Indexer {
    pub fn new(data: Arc<DataPath>, index: Arc<SearchIndex>, shutdown: CancellationToken) -> Self {
        Indexer {
            data,
            index,
            shutdown,
            failures: HashMap::new(),
        }
    }
}

impl Worker for Indexer {
    fn name(&self) -> &'static str {
        "search-indexer"
    }

    fn work(&mut self) -> BoxFuture<'_, Result<WorkerState, String>> {
        Box::pin(async move {
            let mut failures = std::mem::take(&mut self.failures);
            let r = pass(&self.data, &self.index, &mut failures, &self.shutdown).await;
            self.failures = failures;
            r.map(|_| WorkerState::Idle)
                .map_err(|e| format!("search indexing pass failed: {e}"))
        })
    }

    fn wait_for_work(&mut self) -> BoxFuture<'_, ()> {
        let wait = if self.failures.is_empty() {
            PASS_INTERVAL
        } else {
            RETRY_BASE
        };
        let wake = self.data.events.search_wakeup.clone();
        Box::pin(async move {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        })
    }
}

/// The index's name for a book: owner and name (the deletion key's shape). An
/// index made before owners were part of it holds bare names: those read as
/// stale and are indexed again under this key.
pub fn index_key(owner: &str, name: &str) -> String {
    crate::records::deletion_key(owner, name)
}

/// The book name of an index key.
pub fn name_of_key(key: &str) -> &str {
    key.split_once('\n').map(|(_, n)| n).unwrap_or(key)
}

/// One pass: drops what is no longer current, indexes what is missing.
async fn pass(
    node: &Arc<DataPath>,
    index: &Arc<SearchIndex>,
    failures: &mut HashMap<String, (u32, Instant)>,
    shutdown: &CancellationToken,
) -> Result<(), crate::error::ControllerError> {
    let current = node.db.call(|s| meta::list_all_current(s.conn())).await?;
    // Keyed by owner and name (`index_key`): names are unique per owner only.
    let want: BTreeMap<String, crate::model::FileRecord> = current
        .into_iter()
        .map(|f| (index_key(&f.owner, &f.name), f))
        .collect();
    let ix = index.clone();
    let have: BTreeMap<String, String> = index
        .thread
        .run(move || {
            let w = ix.writer.lock().unwrap_or_else(|e| e.into_inner());
            w.books()
                .map(|b| b.into_iter().map(|b| (b.name, b.file_id)).collect())
        })
        .await?
        .map_err(|e| crate::error::ControllerError::Internal(e.to_string()))?;

    // Drop names deleted (or replaced: re-added below).
    let stale: Vec<String> = have
        .iter()
        .filter(|(name, id)| want.get(*name).map(|f| f.file_id.to_string()) != Some((*id).clone()))
        .map(|(n, _)| n.clone())
        .collect();
    let to_add: Vec<crate::model::FileRecord> = want
        .values()
        .filter(|f| have.get(&index_key(&f.owner, &f.name)) != Some(&f.file_id.to_string()))
        .filter(|f| f.size <= MAX_INDEXED_BYTES)
        .cloned()
        .collect();
    index
        .pending
        .store(to_add.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if !stale.is_empty() {
        let ix = index.clone();
        let names = stale.clone();
        index
            .thread
            .run(move || {
                let mut w = ix.writer.lock().unwrap_or_else(|e| e.into_inner());
                for n in &names {
                    if let Err(e) = w.remove(n) {
                        tracing::warn!(name = %n, "cannot remove from the search index: {e}");
                    }
                }
            })
            .await?;
        tracing::debug!(
            removed = stale.len(),
            "search index: dropped deleted or replaced books"
        );
    }
    let mut left = to_add.len();
    for f in to_add {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let key = f.file_id.to_string();
        if let Some((n, at)) = failures.get(&key) {
            let wait = (RETRY_BASE * 2u32.saturating_pow(*n)).min(RETRY_MAX);
            if at.elapsed() < wait {
                continue;
            }
        }
        match index_one(node, index, &f).await {
            Ok(()) => {
                failures.remove(&key);
                left -= 1;
                index
                    .pending
                    .store(left as u64, std::sync::atomic::Ordering::Relaxed);
                node.metrics.books_indexed.inc();
            }
            Err(e) => {
                let n = failures.get(&key).map(|(n, _)| n + 1).unwrap_or(0);
                failures.insert(key, (n, Instant::now()));
                tracing::debug!(name = %f.name, "cannot index yet: {e}");
            }
        }
    }
    // Failed ones are retried by a later pass (within RETRY_MAX).
    let live: std::collections::HashSet<String> =
        want.values().map(|f| f.file_id.to_string()).collect();
    failures.retain(|id, _| live.contains(id));
    Ok(())
}

/// Fetches one version's bytes through the chunkservers and indexes it.
async fn index_one(
    node: &Arc<DataPath>,
    index: &Arc<SearchIndex>,
    f: &crate::model::FileRecord,
) -> Result<(), crate::error::ControllerError> {
    let opened = download::open(node, &f.owner, &f.name, Some(f.file_id)).await?;
    let mut rx = download::stream(node.clone(), opened, 0);
    let mut bytes = Vec::with_capacity(f.size as usize);
    while let Some(piece) = rx.recv().await {
        bytes.extend_from_slice(&piece?);
    }
    if bytes.len() as u64 != f.size {
        return Err(crate::error::ControllerError::Unavailable(format!(
            "read {} of {} bytes of '{}'",
            bytes.len(),
            f.size,
            f.name
        )));
    }
    let ix = index.clone();
    let (name, id) = (index_key(&f.owner, &f.name), f.file_id.to_string());
    index
        .thread
        .run(move || {
            let mut w = ix.writer.lock().unwrap_or_else(|e| e.into_inner());
            w.add(&name, &id, &bytes)
        })
        .await?
        .map_err(|e| crate::error::ControllerError::Internal(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn index_writes_run_on_their_own_thread_at_the_lowest_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ix = SearchIndex::open(dir.path()).expect("open index");
        let (name, nice) = ix
            .thread
            .run(|| {
                (
                    std::thread::current().name().map(String::from),
                    rustix::process::getpriority_process(Some(rustix::thread::gettid())),
                )
            })
            .await
            .expect("job");
        assert_eq!(name.as_deref(), Some("search-index"));
        #[cfg(target_os = "linux")]
        assert_eq!(nice.expect("getpriority"), 19);
        // A job that panics loses its answer, not the thread.
        let e = ix
            .thread
            .run(|| -> u32 { panic!("a failing index job") })
            .await
            .expect_err("a panicking job has no answer");
        assert!(e.to_string().contains("search index job failed"), "{e}");
        assert_eq!(ix.thread.run(|| 2 + 2).await.expect("next job"), 4);
    }
}
