//! The content-addressed chunk store on local disk.
//!
//! Layout: `<dir>/chunks/<first two hex digits>/<64 hex digits>`, temp files in
//! `<dir>/tmp/`. Paths are built only from a parsed [`ChunkId`], never from request
//! text. Invariants:
//! - A chunk file only ever appears under its final name complete and fsynced
//!   (temp file, `sync_all`, rename, fsync of the directory).
//! - A read returns bytes only after they hashed to the chunk's id; a copy that does
//!   not is deleted and reported as [`StoreError::Corrupt`], never served.
//!
//! All methods block (file I/O, hashing): call them from `spawn_blocking`.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use redcloud_common::ChunkId;

/// What went wrong in the store, and what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not held here: ask another replica.
    #[error("chunk {0} not found")]
    NotFound(ChunkId),
    /// The stored copy failed verification and was removed: ask another replica.
    #[error("chunk {0} is corrupt on disk (hash mismatch); the copy was removed")]
    Corrupt(ChunkId),
    /// The bytes offered do not hash to the id they were offered under: resend.
    #[error("data does not match chunk id {expected} (it hashes to {actual})")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
    /// The disk failed: this node cannot serve this request.
    #[error("disk error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a conditional removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    NotHeld,
    /// Written or offered again too recently: kept.
    KeptRecentlyWritten,
}

/// Whether a put stored new bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    AlreadyPresent,
}

/// The chunk store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ChunkStore {
    chunks: PathBuf,
    tmp: PathBuf,
    count: AtomicU64,
    bytes: AtomicU64,
    /// Serialises "is it there? rename; count it" so concurrent puts of one chunk
    /// count it once. `std` mutex: held for a rename only, never across `.await`.
    commit: Mutex<()>,
}

impl ChunkStore {
    /// Opens (creating if needed) the store under `dir`, drops leftover temp files
    /// from a crash, and counts what is stored.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let chunks = dir.join("chunks");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&chunks).map_err(io(&chunks))?;
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for i in 0..=255u8 {
            let d = chunks.join(hex::encode([i]));
            fs::create_dir_all(&d).map_err(io(&d))?;
        }
        sync_dir(&chunks)?;
        let store = ChunkStore {
            chunks,
            tmp,
            count: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            commit: Mutex::new(()),
        };
        let (mut n, mut b) = (0, 0);
        store.for_each(|_, len| {
            n += 1;
            b += len;
        })?;
        store.count.store(n, Ordering::Relaxed);
        store.bytes.store(b, Ordering::Relaxed);
        Ok(store)
    }

    /// Where chunk `id` lives on disk.
    pub fn path_of(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.chunks.join(&hex[..2]).join(hex)
    }

    pub fn chunk_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn used_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The directory the chunks live in (for capacity figures).
    pub fn root(&self) -> &Path {
        &self.chunks
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.path_of(id).is_file()
    }

    /// Size of a stored chunk, if held.
    pub fn size_of(&self, id: &ChunkId) -> Option<u64> {
        fs::metadata(self.path_of(id)).ok().map(|m| m.len())
    }

    /// Verifies `data` against `id` and stores it durably.
    pub fn put(&self, id: &ChunkId, data: &[u8]) -> Result<PutOutcome, StoreError> {
        let actual = ChunkId::of(data);
        if actual != *id {
            return Err(StoreError::HashMismatch {
                expected: *id,
                actual,
            });
        }
        let path = self.path_of(id);
        if self.touch(id)? {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let tmp = self
            .tmp
            .join(format!("{}.{}", id.to_hex(), uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Io {
                path: tmp,
                source: e,
            });
        }
        let outcome = {
            let _g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
            if path.is_file() {
                let _ = fs::remove_file(&tmp);
                touch_file(&path)?;
                PutOutcome::AlreadyPresent
            } else {
                fs::rename(&tmp, &path).map_err(io(&path))?;
                self.count.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                PutOutcome::Stored
            }
        };
        if outcome == PutOutcome::Stored {
            sync_dir(path.parent().unwrap_or(&self.chunks))?;
        }
        Ok(outcome)
    }

    /// Reads and verifies a chunk. A copy that fails verification is removed.
    pub fn get(&self, id: &ChunkId) -> Result<Bytes, StoreError> {
        let path = self.path_of(id);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::NotFound(*id)),
            Err(e) => return Err(io(&path)(e)),
        };
        let len = f.metadata().map_err(io(&path))?.len();
        let mut buf = Vec::with_capacity(len as usize);
        f.read_to_end(&mut buf).map_err(io(&path))?;
        if ChunkId::of(&buf) != *id {
            tracing::error!(chunk = %id, path = %path.display(), "corrupt chunk copy detected; removing it");
            self.remove(id)?;
            return Err(StoreError::Corrupt(*id));
        }
        Ok(Bytes::from(buf))
    }

    /// Marks a held chunk as written now (its file's modification time), as a put
    /// of bytes already held or a replication request for them does: whoever offered
    /// them may be about to commit a file that uses them. Returns whether it is held.
    pub fn touch(&self, id: &ChunkId) -> Result<bool, StoreError> {
        let path = self.path_of(id);
        let _g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        touch_file(&path)
    }

    /// Removes a chunk; returns whether it was there.
    pub fn remove(&self, id: &ChunkId) -> Result<bool, StoreError> {
        Ok(
            self.remove_unless_written_within(id, std::time::Duration::ZERO)?
                == RemoveOutcome::Removed,
        )
    }

    /// Removes a chunk unless it was written or touched within `window` (by this
    /// host's clock; a modification time in the future counts as recent). The
    /// check and the removal are one step with respect to puts and touches.
    pub fn remove_unless_written_within(
        &self,
        id: &ChunkId,
        window: std::time::Duration,
    ) -> Result<RemoveOutcome, StoreError> {
        let path = self.path_of(id);
        let _g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RemoveOutcome::NotHeld),
            Err(e) => return Err(io(&path)(e)),
        };
        if !window.is_zero() {
            let recent = match meta.modified() {
                Ok(m) => match std::time::SystemTime::now().duration_since(m) {
                    Ok(age) => age < window,
                    Err(_) => true, // modified "in the future": the clock went back
                },
                Err(_) => true, // no modification time on this file system: be safe
            };
            if recent {
                return Ok(RemoveOutcome::KeptRecentlyWritten);
            }
        }
        let len = meta.len();
        match fs::remove_file(&path) {
            Ok(()) => {
                self.count.fetch_sub(1, Ordering::Relaxed);
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                Ok(RemoveOutcome::Removed)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(RemoveOutcome::NotHeld),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Calls `f(id, size)` for every stored chunk. Files whose names are not chunk
    /// ids are ignored.
    pub fn for_each(&self, mut f: impl FnMut(ChunkId, u64)) -> Result<(), StoreError> {
        for i in 0..=255u8 {
            let d = self.chunks.join(hex::encode([i]));
            let entries = match fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&d)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io(&d))?;
                let Some(id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<ChunkId>().ok())
                else {
                    continue;
                };
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                f(id, len);
            }
        }
        Ok(())
    }
}

/// Sets `path`'s modification time to now; `false` if there is no such file. Call
/// with the store's commit lock held.
fn touch_file(path: &Path) -> Result<bool, StoreError> {
    match File::options().write(true).open(path) {
        Ok(f) => {
            f.set_modified(std::time::SystemTime::now())
                .map_err(io(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_written_or_offered_again_within_the_window_is_kept() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let data = b"a chunk an upload elsewhere may be using".to_vec();
        let id = ChunkId::of(&data);
        let set_mtime = |store: &ChunkStore, t: SystemTime| {
            File::options()
                .write(true)
                .open(store.path_of(&id))
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        let age = |store: &ChunkStore, by: Duration| set_mtime(store, SystemTime::now() - by);
        let hour = Duration::from_secs(3600);
        store.put(&id, &data).unwrap();
        assert_eq!(
            store.remove_unless_written_within(&id, hour).unwrap(),
            RemoveOutcome::KeptRecentlyWritten
        );
        // Written two hours ago, then offered again by a put: kept.
        age(&store, 2 * hour);
        assert_eq!(store.put(&id, &data).unwrap(), PutOutcome::AlreadyPresent);
        assert_eq!(
            store.remove_unless_written_within(&id, hour).unwrap(),
            RemoveOutcome::KeptRecentlyWritten
        );
        // ... or by a replication request (touch): kept.
        age(&store, 2 * hour);
        assert!(store.touch(&id).unwrap());
        assert_eq!(
            store.remove_unless_written_within(&id, hour).unwrap(),
            RemoveOutcome::KeptRecentlyWritten
        );
        // A modification time in the future (the clock went back) counts as recent.
        set_mtime(&store, SystemTime::now() + hour);
        assert_eq!(
            store.remove_unless_written_within(&id, hour).unwrap(),
            RemoveOutcome::KeptRecentlyWritten
        );
        // Untouched for longer than the window: removed.
        age(&store, 2 * hour);
        assert_eq!(
            store.remove_unless_written_within(&id, hour).unwrap(),
            RemoveOutcome::Removed
        );
        assert_eq!(store.chunk_count(), 0);
        assert_eq!(
            store.remove_unless_written_within(&id, hour).unwrap(),
            RemoveOutcome::NotHeld
        );
        assert!(!store.touch(&id).unwrap());
    }

    #[test]
    fn put_get_remove_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let data = b"some book text".to_vec();
        let id = ChunkId::of(&data);
        assert_eq!(store.put(&id, &data).unwrap(), PutOutcome::Stored);
        assert_eq!(store.put(&id, &data).unwrap(), PutOutcome::AlreadyPresent);
        assert_eq!(store.chunk_count(), 1);
        assert_eq!(store.used_bytes(), data.len() as u64);
        assert_eq!(&store.get(&id).unwrap()[..], &data[..]);

        let wrong = ChunkId::of(b"other");
        assert!(matches!(
            store.put(&wrong, &data),
            Err(StoreError::HashMismatch { .. })
        ));

        // Reopening counts what is on disk.
        drop(store);
        let store = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(store.chunk_count(), 1);

        // Flip one byte on disk: the read refuses to serve it and drops the copy.
        let path = store.path_of(&id);
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 0x20;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(store.get(&id), Err(StoreError::Corrupt(_))));
        assert!(!path.exists());
        assert_eq!(store.chunk_count(), 0);
        assert!(matches!(store.get(&id), Err(StoreError::NotFound(_))));
        assert!(!store.remove(&id).unwrap());
    }

    #[test]
    fn leftover_temp_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        drop(ChunkStore::open(dir.path()).unwrap());
        fs::write(dir.path().join("tmp").join("half-written"), b"x").unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.chunk_count(), 0);
    }
}
