//! File versions and names: what a name's current version is, its history, and
//! the writes an upload or a delete makes.

use redcloud_common::replication::Origin;
use redcloud_common::{FileId, HlcTimestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Store;
use super::locations::location_writes;
use super::rows::{self, bad};
use crate::error::{ControllerError, Result};
use crate::model::{ChunkRef, FileRecord, VersionEntry};
use crate::records::{self, Body, Record};
use crate::replication::engine::Write;
use redcloud_common::{ChunkId, NodeId};

const FILE_COLS: &str = "file_id, owner, name, size, sha256, chunk_size, chunk_count, public, created_at_ms, vclock, hlc, origin, seq, deleted";

fn read_file(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let id: String = row.get(0)?;
    Ok(FileRecord {
        file_id: id.parse::<FileId>().map_err(|e| bad("file_id", e))?,
        owner: row.get(1)?,
        name: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        sha256: row.get(4)?,
        chunk_size: row.get::<_, i64>(5)? as u64,
        chunk_count: row.get::<_, i64>(6)? as u32,
        public: row.get::<_, i64>(7)? != 0,
        created_at_ms: row.get::<_, i64>(8)? as u64,
        meta: rows::read_version(row, 9)?,
    })
}

/// Orders versions by the merge rule's tiebreak: (HLC, origin).
fn newer(a_hlc: HlcTimestamp, a_origin: &Origin, b_hlc: HlcTimestamp, b_origin: &Origin) -> bool {
    (a_hlc, a_origin) > (b_hlc, b_origin)
}

/// The deletion marker of `owner/name`, if any: (hlc, origin).
fn deletion(conn: &Connection, owner: &str, name: &str) -> Result<Option<(HlcTimestamp, Origin)>> {
    let r = conn
        .prepare_cached(
            "SELECT hlc, origin FROM deletions WHERE owner = ?1 AND name = ?2 AND deleted = 0",
        )?
        .query_row(params![owner, name], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()?;
    Ok(r.map(|(h, o)| (HlcTimestamp(h as u64), Origin::from_sql(o))))
}

/// The current version among `files` (all versions of one name): the live one with
/// the highest (HLC, origin), unless a later deletion of the name hides it.
fn current_of(
    conn: &Connection,
    owner: &str,
    name: &str,
    files: &[FileRecord],
) -> Result<Option<FileRecord>> {
    let best = files
        .iter()
        .filter(|f| !f.meta.deleted)
        .max_by(|a, b| (a.meta.hlc, &a.meta.origin).cmp(&(b.meta.hlc, &b.meta.origin)));
    let Some(best) = best else { return Ok(None) };
    if let Some((dh, dorigin)) = deletion(conn, owner, name)?
        && newer(dh, &dorigin, best.meta.hlc, &best.meta.origin)
    {
        return Ok(None);
    }
    Ok(Some(best.clone()))
}

/// The current version of `owner/name`.
pub fn current_file(conn: &Connection, owner: &str, name: &str) -> Result<Option<FileRecord>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {FILE_COLS} FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0"
    ))?;
    let files = st
        .query_map(params![owner, name], read_file)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    current_of(conn, owner, name, &files)
}

/// The live file version `id`, whoever owns it.
pub fn file_by_id(conn: &Connection, id: &FileId) -> Result<Option<FileRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {FILE_COLS} FROM files WHERE file_id = ?1 AND deleted = 0"),
            params![id.to_string()],
            read_file,
        )
        .optional()?)
}

/// A specific live version of `owner/name`.
pub fn file_version(
    conn: &Connection,
    owner: &str,
    name: &str,
    id: &FileId,
) -> Result<Option<FileRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {FILE_COLS} FROM files WHERE file_id = ?1 AND owner = ?2 AND name = ?3 AND deleted = 0"),
            params![id.to_string(), owner, name],
            read_file,
        )
        .optional()?)
}

/// The current version of every live file of `owner` whose name starts with `prefix`.
pub fn list_current(conn: &Connection, owner: &str, prefix: &str) -> Result<Vec<FileRecord>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {FILE_COLS} FROM files
         WHERE owner = ?1 AND deleted = 0 AND substr(name, 1, length(?2)) = ?2
         ORDER BY name"
    ))?;
    let files = st
        .query_map(params![owner, prefix], read_file)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < files.len() {
        let mut j = i;
        while j < files.len() && files[j].name == files[i].name {
            j += 1;
        }
        if let Some(f) = current_of(conn, owner, &files[i].name, &files[i..j])? {
            out.push(f);
        }
        i = j;
    }
    Ok(out)
}

/// The smallest string greater than every string starting with `prefix` (UTF-8
/// byte order is code point order), if there is one: the prefix with its last
/// character that can be incremented, incremented.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = (c as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// One page of a listing: the records, and the key to continue after (`None`
/// when nothing is left).
pub struct Page<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
}

/// Up to `limit` names of `owner` after `after` (exclusive) starting with `prefix`,
/// with their current version: one page of [`list_current`], by name. Names
/// whose versions are all deleted are skipped (so a page may hold fewer than
/// `limit` records and still have a next one).
pub fn list_current_page(
    conn: &Connection,
    owner: &str,
    prefix: &str,
    after: &str,
    limit: usize,
) -> Result<Page<FileRecord, String>> {
    let end = prefix_end(prefix);
    let names: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT name FROM files
              WHERE owner = ?1 AND deleted = 0 AND name > ?2 AND name >= ?3
                AND (?4 IS NULL OR name < ?4)
              ORDER BY name LIMIT ?5",
        )?
        .query_map(params![owner, after, prefix, end, limit as i64], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let (Some(first), Some(last)) = (names.first(), names.last()) else {
        return Ok(Page {
            items: Vec::new(),
            next: None,
        });
    };
    let rows: Vec<FileRecord> = conn
        .prepare_cached(&format!(
            "SELECT {FILE_COLS} FROM files
              WHERE owner = ?1 AND deleted = 0 AND name >= ?2 AND name <= ?3
              ORDER BY name"
        ))?
        .query_map(params![owner, first, last], read_file)?
        .collect::<rusqlite::Result<_>>()?;
    let mut items = Vec::new();
    for group in rows.chunk_by(|a, b| a.name == b.name) {
        if let Some(f) = current_of(conn, owner, &group[0].name, group)? {
            items.push(f);
        }
    }
    Ok(Page {
        next: (names.len() >= limit).then(|| last.clone()),
        items,
    })
}

/// Up to `limit` (name, owner) pairs after `after` (exclusive) of owners other
/// than `except` whose current version is public and whose name starts with
/// `prefix`, with that version: one page of a listing, by name then owner.
pub fn list_public_page(
    conn: &Connection,
    except: &str,
    prefix: &str,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Page<FileRecord, (String, String)>> {
    let end = prefix_end(prefix);
    let (an, ao) = after.unwrap_or(("", ""));
    let keys: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT DISTINCT name, owner FROM files
              WHERE public = 1 AND deleted = 0 AND owner != ?1
                AND name >= ?2 AND (?3 IS NULL OR name < ?3)
                AND (name > ?4 OR (name = ?4 AND owner > ?5))
              ORDER BY name, owner LIMIT ?6",
        )?
        .query_map(params![except, prefix, end, an, ao, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut items = Vec::new();
    for (name, owner) in &keys {
        if let Some(f) = current_file(conn, owner, name)?
            && f.public
        {
            items.push(f);
        }
    }
    Ok(Page {
        next: (keys.len() >= limit)
            .then(|| keys.last().cloned())
            .flatten(),
        items,
    })
}

/// Up to `limit` versions of `owner/name` (live and deleted), newest first,
/// after the version `after` ((HLC, origin), exclusive); each says whether it is
/// the current one.
pub fn versions_page(
    conn: &Connection,
    owner: &str,
    name: &str,
    after: Option<(HlcTimestamp, Origin)>,
    limit: usize,
) -> Result<Page<VersionEntry, (HlcTimestamp, Origin)>> {
    let (ah, ao) = match &after {
        Some((h, o)) => (Some(h.0 as i64), Some(o.to_sql())),
        None => (None, None),
    };
    let files: Vec<FileRecord> = conn
        .prepare_cached(&format!(
            "SELECT {FILE_COLS} FROM files
              WHERE owner = ?1 AND name = ?2
                AND (?3 IS NULL OR hlc < ?3 OR (hlc = ?3 AND origin < ?4))
              ORDER BY hlc DESC, origin DESC LIMIT ?5"
        ))?
        .query_map(params![owner, name, ah, ao, limit as i64], read_file)?
        .collect::<rusqlite::Result<_>>()?;
    let current = current_file(conn, owner, name)?.map(|f| f.file_id);
    let next = (files.len() >= limit)
        .then(|| files.last().map(|f| (f.meta.hlc, f.meta.origin)))
        .flatten();
    Ok(Page {
        items: files
            .into_iter()
            .map(|f| VersionEntry {
                current: Some(f.file_id) == current,
                file: f,
            })
            .collect(),
        next,
    })
}

/// The current version of every live name of every owner, by owner then name.
pub fn list_all_current(conn: &Connection) -> Result<Vec<FileRecord>> {
    let owners: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT owner FROM files WHERE deleted = 0 ORDER BY owner")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for owner in owners {
        out.extend(list_current(conn, &owner, "")?);
    }
    Ok(out)
}

/// The chunks of a file version, in order; `None` if its chunk list has not
/// arrived (yet) on this controller.
pub fn file_chunks(conn: &Connection, file_id: &FileId) -> Result<Option<Vec<ChunkRef>>> {
    let list: Option<String> = conn
        .prepare_cached("SELECT list FROM chunks WHERE file_id = ?1")?
        .query_row(params![file_id.to_string()], |r| r.get(0))
        .optional()?;
    let Some(list) = list else { return Ok(None) };
    let list = rows::decode_chunk_list(&list)
        .map_err(|e| ControllerError::Internal(format!("chunk list: {e}")))?;
    Ok(Some(
        list.into_iter()
            .enumerate()
            .map(|(i, (chunk_id, size))| ChunkRef {
                index: i as u32,
                chunk_id,
                size,
            })
            .collect(),
    ))
}

/// Records a new file version: its row, its chunk list and the copies known so far.
pub fn insert_file(
    store: &mut Store,
    file: &FileRecord,
    chunks: &[ChunkRef],
    holders: &[(ChunkId, NodeId)],
) -> Result<Vec<Record>> {
    let mut writes = vec![
        Write {
            key: file.file_id.to_string(),
            body: Body::File(file.body()),
            deleted: false,
        },
        Write {
            key: file.file_id.to_string(),
            body: Body::Chunks(chunks.iter().map(|c| (c.chunk_id, c.size)).collect()),
            deleted: false,
        },
    ];
    writes.extend(location_writes(store.conn(), holders)?);
    store.write(writes)
}

/// Deletes `owner/name`: tombstones every live version this node knows and records
/// the name's deletion (which hides concurrent older uploads it did not know of).
/// Returns the number of versions tombstoned and the records written.
pub fn delete_name(store: &mut Store, owner: &str, name: &str) -> Result<(u32, Vec<Record>)> {
    let live: Vec<FileRecord> = {
        let mut st = store.conn().prepare_cached(&format!(
            "SELECT {FILE_COLS} FROM files WHERE owner = ?1 AND name = ?2 AND deleted = 0"
        ))?;
        st.query_map(params![owner, name], read_file)?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    if current_of(store.conn(), owner, name, &live)?.is_none() {
        return Ok((0, Vec::new()));
    }
    // Each version is tombstoned with its chunk list (kept empty: a deleted version
    // is never read again).
    let mut writes: Vec<Write> = Vec::with_capacity(live.len() * 2 + 1);
    for f in &live {
        writes.push(Write {
            key: f.file_id.to_string(),
            body: Body::File(f.body()),
            deleted: true,
        });
        if rows::load_version(
            store.conn(),
            crate::records::Table::Chunks,
            &f.file_id.to_string(),
        )?
        .is_some_and(|v| !v.deleted)
        {
            writes.push(Write {
                key: f.file_id.to_string(),
                body: Body::Chunks(Vec::new()),
                deleted: true,
            });
        }
    }
    writes.push(Write {
        key: records::deletion_key(owner, name),
        body: Body::Deletion,
        deleted: false,
    });
    let recs = store.write(writes)?;
    Ok((live.len() as u32, recs))
}

/// The number of live files (names with a current version).
pub fn live_file_count(conn: &Connection) -> Result<u64> {
    let mut st = conn.prepare("SELECT DISTINCT owner, name FROM files WHERE deleted = 0")?;
    let names = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut n = 0;
    for (owner, name) in names {
        if current_file(conn, &owner, &name)?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}
