//! The full-text index of the stored books: SQLite FTS5 in a database of its own.
//!
//! Two FTS5 tables, both with the `unicode61 remove_diacritics 2` tokenizer (case and
//! accents folded: `liberte` finds `liberté`):
//! - `books` (title, author, body): one row per book, *contentless* — it holds only
//!   the inverted index, and ranks whole books with BM25.
//! - `passages` (body): the same text cut at paragraph breaks into passages of about
//!   [`PASSAGE_BYTES`], stored, so a snippet is cut from one short passage of each hit
//!   rather than from a whole book.
//!
//! Chinese and Japanese are written without spaces; `unicode61` would make a whole
//! run of characters one token. Before indexing (and in queries) a space is put
//! between adjacent CJK characters, so each character is a token and a word is a
//! phrase of its characters: searching 悟空 finds it inside 孙悟空道. Snippets drop
//! those spaces again.
//!
//! BM25 uses the index's statistics (number of books, average length, books per term).
//! Each controller indexes every live book of the cluster, so after convergence the
//! statistics, the scores and the order (ties broken by name) are the same everywhere.

use std::borrow::Cow;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::gutenberg::{self, BookMeta};

/// Passages are cut at the first paragraph break after this many bytes.
pub const PASSAGE_BYTES: usize = 1500;
/// A passage with no paragraph break is cut at a line break after this many bytes.
const PASSAGE_MAX: usize = 4096;
/// Passage rowids are `doc_id << PASSAGE_BITS | n`.
const PASSAGE_BITS: u32 = 24;
/// BM25 column weights: title, author, body.
const WEIGHTS: (f64, f64, f64) = (10.0, 5.0, 1.0);
/// Most hits one query returns.
pub const MAX_LIMIT: usize = 100;
/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;

/// Marks the start and end of a highlighted match in a snippet.
pub const HIGHLIGHT_START: char = '\u{2}';
pub const HIGHLIGHT_END: char = '\u{3}';

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("search index: {0}")]
    Db(#[from] rusqlite::Error),
    /// The index cannot be used now (its thread or task failed).
    #[error("search index unavailable: {0}")]
    Unavailable(String),
}

/// A search request.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Words (all must occur), `"quoted phrases"`, and `prefix*`.
    pub text: String,
    /// Only books whose author field contains these words.
    pub author: Option<String>,
    /// Only books in this language (a name such as `French`, or a code such as `fr`).
    pub language: Option<String>,
    /// Only books whose title contains these words.
    pub title: Option<String>,
    /// At most this many hits (1..=[`MAX_LIMIT`]; 0 means 10).
    pub limit: usize,
    /// Skip this many of the best hits first (the next page).
    pub offset: usize,
}

/// One ranked result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    pub rank: u32,
    pub name: String,
    pub file_id: String,
    pub title: String,
    pub author: String,
    pub language: String,
    /// BM25 (higher is better).
    pub score: f64,
    /// A short passage around the best match, matches between
    /// [`HIGHLIGHT_START`] and [`HIGHLIGHT_END`].
    pub snippet: String,
}

/// What the index holds for one stored name.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedBook {
    pub name: String,
    pub file_id: String,
    pub meta: BookMeta,
}

/// The index, on one SQLite connection.
pub struct Index {
    conn: Connection,
}

impl Index {
    /// Opens (or creates) the index database at `path`.
    pub fn open(path: &Path) -> Result<Index, SearchError> {
        Self::setup(Connection::open(path)?)
    }

    /// An index in memory (tests, benchmarks).
    pub fn open_in_memory() -> Result<Index, SearchError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Index, SearchError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS docs (
                 doc_id INTEGER PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE,
                 file_id TEXT NOT NULL,
                 title TEXT, author TEXT, language TEXT, release_date TEXT,
                 ebook_number INTEGER,
                 body_bytes INTEGER NOT NULL,
                 passages INTEGER NOT NULL);
             CREATE VIRTUAL TABLE IF NOT EXISTS books USING fts5(
                 title, author, body,
                 content = '', contentless_delete = 1,
                 tokenize = 'unicode61 remove_diacritics 2');
             CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(
                 body, tokenize = 'unicode61 remove_diacritics 2');",
        )?;
        Ok(Index { conn })
    }

    /// Every indexed name with its version id and metadata.
    pub fn books(&self) -> Result<Vec<IndexedBook>, SearchError> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, file_id, title, author, language, release_date, ebook_number
             FROM docs ORDER BY name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(IndexedBook {
                name: r.get(0)?,
                file_id: r.get(1)?,
                meta: BookMeta {
                    title: r.get(2)?,
                    author: r.get(3)?,
                    language: r.get(4)?,
                    release_date: r.get(5)?,
                    ebook_number: r.get::<_, Option<i64>>(6)?.map(|n| n as u64),
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of books and bytes of book text indexed.
    pub fn size(&self) -> Result<(u64, u64), SearchError> {
        Ok(self.conn.query_row(
            "SELECT count(*), coalesce(sum(body_bytes), 0) FROM docs",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// Indexes the file `bytes` as the current version `file_id` of `name`,
    /// replacing what was indexed for `name`. Returns the parsed metadata.
    pub fn add(
        &mut self,
        name: &str,
        file_id: &str,
        bytes: &[u8],
    ) -> Result<BookMeta, SearchError> {
        let book = gutenberg::parse(bytes);
        let meta = book.meta;
        let body = space_cjk(&book.body);
        let title = meta
            .title
            .clone()
            .unwrap_or_else(|| display_name(name).to_string());
        let author = meta.author.clone().unwrap_or_default();
        let passages = split_passages(&body);
        let tx = self.conn.transaction()?;
        remove_in(&tx, name)?;
        tx.execute(
            "INSERT INTO docs (name, file_id, title, author, language, release_date, ebook_number, body_bytes, passages)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                name,
                file_id,
                meta.title,
                meta.author,
                meta.language,
                meta.release_date,
                meta.ebook_number.map(|n| n as i64),
                book.body.len() as i64,
                passages.len() as i64
            ],
        )?;
        let doc_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO books (rowid, title, author, body) VALUES (?1, ?2, ?3, ?4)",
            params![doc_id, space_cjk(&title), space_cjk(&author), body],
        )?;
        {
            let mut st = tx.prepare_cached("INSERT INTO passages (rowid, body) VALUES (?1, ?2)")?;
            for (n, p) in passages.iter().enumerate() {
                st.execute(params![(doc_id << PASSAGE_BITS) | n as i64, p])?;
            }
        }
        tx.commit()?;
        Ok(meta)
    }

    /// Removes `name` from the index. Returns whether it was there.
    pub fn remove(&mut self, name: &str) -> Result<bool, SearchError> {
        let tx = self.conn.transaction()?;
        let removed = remove_in(&tx, name)?;
        tx.commit()?;
        Ok(removed)
    }

    /// Runs a query: books ranked by BM25, each with a highlighted snippet.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>, SearchError> {
        if q.text.len() > MAX_QUERY_BYTES {
            return Err(SearchError::BadQuery(format!(
                "longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let terms = parse_query(&q.text)?;
        let mut expr = terms.join(" AND ");
        for (column, value) in [("author", &q.author), ("title", &q.title)] {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                let words = parse_query(v)
                    .map_err(|_| SearchError::BadQuery(format!("--{column} has no words")))?;
                expr = format!("({expr}) AND {column} : ({})", words.join(" AND "));
            }
        }
        let limit = match q.limit {
            0 => 10,
            n => n.min(MAX_LIMIT),
        };
        let language = q.language.as_deref().map(language_name);
        let (wt, wa, wb) = WEIGHTS;
        let mut st = self.conn.prepare_cached(
            "SELECT d.doc_id, d.name, d.file_id, d.title, coalesce(d.author, ''),
                    coalesce(d.language, ''), bm25(books, ?2, ?3, ?4) AS score
             FROM books JOIN docs d ON d.doc_id = books.rowid
             WHERE books MATCH ?1 AND (?5 IS NULL OR lower(d.language) = ?5)
             ORDER BY score, d.name LIMIT ?6 OFFSET ?7",
        )?;
        let offset = q.offset.min(i64::MAX as usize) as i64;
        let rows = st
            .query_map(
                params![expr, wt, wa, wb, language, limit as i64, offset],
                |r| {
                    let name: String = r.get(1)?;
                    let title = r
                        .get::<_, Option<String>>(3)?
                        .unwrap_or_else(|| display_name(&name).to_string());
                    Ok((
                        r.get::<_, i64>(0)?,
                        Hit {
                            rank: 0,
                            name,
                            file_id: r.get(2)?,
                            title,
                            author: r.get(4)?,
                            language: r.get(5)?,
                            score: -r.get::<_, f64>(6)?,
                            snippet: String::new(),
                        },
                    ))
                },
            )
            .map_err(fts_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(fts_error)?;
        let body_terms = terms.join(" AND ");
        let any_term = terms.join(" OR ");
        let mut hits = Vec::with_capacity(rows.len());
        for (i, (doc_id, mut hit)) in rows.into_iter().enumerate() {
            hit.rank = (q.offset + i) as u32 + 1;
            hit.snippet = self.snippet(doc_id, &body_terms, &any_term)?;
            hits.push(hit);
        }
        Ok(hits)
    }

    /// The best-matching passage of `doc_id` for `terms` (or, if no one passage
    /// holds them all, for any of them; or the book's first passage).
    fn snippet(&self, doc_id: i64, terms: &str, any: &str) -> Result<String, SearchError> {
        let lo = doc_id << PASSAGE_BITS;
        let hi = lo | ((1 << PASSAGE_BITS) - 1);
        let mut st = self.conn.prepare_cached(
            "SELECT snippet(passages, 0, char(2), char(3), '…', 24) FROM passages
             WHERE passages MATCH ?1 AND rowid BETWEEN ?2 AND ?3 LIMIT 1",
        )?;
        for expr in [terms, any] {
            if expr.is_empty() {
                continue;
            }
            let s: Option<String> = st
                .query_row(params![expr, lo, hi], |r| r.get(0))
                .optional()
                .map_err(fts_error)?;
            if let Some(s) = s {
                return Ok(unspace_cjk(&s));
            }
        }
        let first: Option<String> = self
            .conn
            .query_row(
                "SELECT substr(body, 1, 200) FROM passages WHERE rowid = ?1",
                params![lo],
                |r| r.get(0),
            )
            .optional()?;
        Ok(unspace_cjk(&first.unwrap_or_default()))
    }
}

fn remove_in(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<bool, SearchError> {
    let doc: Option<i64> = tx
        .query_row("SELECT doc_id FROM docs WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(doc_id) = doc else {
        return Ok(false);
    };
    tx.execute("DELETE FROM books WHERE rowid = ?1", [doc_id])?;
    let lo = doc_id << PASSAGE_BITS;
    tx.execute(
        "DELETE FROM passages WHERE rowid BETWEEN ?1 AND ?2",
        params![lo, lo | ((1 << PASSAGE_BITS) - 1)],
    )?;
    tx.execute("DELETE FROM docs WHERE doc_id = ?1", [doc_id])?;
    Ok(true)
}

/// An FTS5 syntax error can only come from a query we built badly; report it as a
/// bad query rather than a storage fault.
fn fts_error(e: rusqlite::Error) -> SearchError {
    let s = e.to_string();
    if s.contains("fts5") || s.contains("syntax error") {
        SearchError::BadQuery(s)
    } else {
        SearchError::Db(e)
    }
}

/// Turns user text into FTS5 terms, each a quoted string (so no user text is FTS5
/// syntax): `"quoted phrases"` stay phrases, other words become one term each (a word
/// with inner punctuation, like `don't`, a phrase of its parts), `word*` a prefix
/// query. CJK runs become phrases of their characters.
pub fn parse_query(text: &str) -> Result<Vec<String>, SearchError> {
    let mut terms = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('"') {
            let (phrase, next) = match after.find('"') {
                Some(end) => (&after[..end], &after[end + 1..]),
                None => (after, ""),
            };
            if let Some(t) = fts_phrase(phrase, false) {
                terms.push(t);
            }
            rest = next;
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let prefix = word.ends_with('*');
        if let Some(t) = fts_phrase(word.trim_end_matches('*'), prefix) {
            terms.push(t);
        }
        rest = &rest[end..];
    }
    if terms.is_empty() {
        return Err(SearchError::BadQuery(
            "no words to search for (letters or digits are needed)".into(),
        ));
    }
    Ok(terms)
}

/// One FTS5 phrase of the letters and digits of `s`, quoted; `None` if it has none.
fn fts_phrase(s: &str, prefix: bool) -> Option<String> {
    let spaced = space_cjk(s);
    let words: Vec<&str> = spaced
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    // Only letters, digits and spaces remain: nothing to escape.
    let quoted = format!("\"{}\"", words.join(" "));
    Some(if prefix {
        format!("{quoted} *")
    } else {
        quoted
    })
}

/// Whether `c` is written without spaces between words (Han, kana).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x31F0..=0x31FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Puts a space between adjacent CJK characters.
pub fn space_cjk(s: &str) -> Cow<'_, str> {
    let mut prev_cjk = false;
    let mut needs = false;
    for c in s.chars() {
        let cjk = is_cjk(c);
        if cjk && prev_cjk {
            needs = true;
            break;
        }
        prev_cjk = cjk;
    }
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    let mut prev_cjk = false;
    for c in s.chars() {
        let cjk = is_cjk(c);
        if cjk && prev_cjk {
            out.push(' ');
        }
        out.push(c);
        prev_cjk = cjk;
    }
    Cow::Owned(out)
}

/// Removes the spaces [`space_cjk`] put in (highlight marks are looked through).
pub fn unspace_cjk(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let visible = |i: usize, step: isize| -> Option<char> {
        let mut j = i as isize + step;
        while j >= 0 && (j as usize) < chars.len() {
            let c = chars[j as usize];
            if c != HIGHLIGHT_START && c != HIGHLIGHT_END {
                return Some(c);
            }
            j += step;
        }
        None
    };
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' && visible(i, -1).is_some_and(is_cjk) && visible(i, 1).is_some_and(is_cjk) {
            continue;
        }
        out.push(c);
    }
    out
}

/// What a book without a title is shown as: its name, the last line of the key it
/// is indexed under (keys may carry a prefix, such as the owner, before a newline).
pub fn display_name(key: &str) -> &str {
    key.rsplit('\n').next().unwrap_or(key)
}

/// Cuts text into passages at paragraph breaks (a blank line) once a passage has
/// [`PASSAGE_BYTES`]; a passage without one is cut at a line break (or anywhere, on a
/// character boundary) at [`PASSAGE_MAX`].
pub fn split_passages(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let len = text.len();
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < len {
        let end = if len - start <= PASSAGE_BYTES {
            len
        } else {
            let min_end = floor_char(text, start + PASSAGE_BYTES);
            let max_end = floor_char(text, (start + PASSAGE_MAX).min(len)).max(min_end);
            if let Some(p) = text[min_end..max_end].find("\n\n") {
                min_end + p + 2
            } else if max_end == len {
                len
            } else if let Some(p) = text[start..max_end].rfind('\n').filter(|&p| p > 0) {
                start + p + 1
            } else if max_end > start {
                max_end
            } else {
                // Not even one character fits (cannot happen with these sizes).
                len
            }
        };
        let piece = text[start..end].trim();
        if !piece.is_empty() {
            out.push(piece);
        }
        start = end;
        while start < len && bytes[start] == b'\n' {
            start += 1;
        }
    }
    out
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The lower-case language name for a name or ISO 639-1 code (`fr` → `french`).
pub fn language_name(l: &str) -> String {
    let l = l.trim().to_lowercase();
    let name = match l.as_str() {
        "en" | "eng" => "english",
        "fr" | "fre" | "fra" => "french",
        "de" | "ger" | "deu" => "german",
        "es" | "spa" => "spanish",
        "pt" | "por" => "portuguese",
        "it" | "ita" => "italian",
        "la" | "lat" => "latin",
        "fi" | "fin" => "finnish",
        "nl" | "dut" | "nld" => "dutch",
        "zh" | "chi" | "zho" => "chinese",
        "ja" | "jpn" => "japanese",
        other => other,
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(title: &str, author: &str, lang: &str, body: &str) -> Vec<u8> {
        format!(
            "Title: {title}\nAuthor: {author}\nLanguage: {lang}\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n{body}\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence text here\n"
        )
        .into_bytes()
    }

    fn sample() -> Index {
        let mut ix = Index::open_in_memory().unwrap();
        ix.add("moby.txt", "v1", &book("Moby Dick", "Herman Melville", "English",
            "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.\n\nThe whale, the whale!")).unwrap();
        ix.add("miserables.txt", "v2", &book("Les Misérables", "Victor Hugo", "French",
            "En 1815, M. Charles-François-Bienvenu Myriel était évêque de Digne. Liberté, égalité.")).unwrap();
        ix.add(
            "journey.txt",
            "v3",
            &book(
                "西遊記",
                "Cheng'en Wu",
                "Chinese",
                "話說孫悟空道：師父，我們往西天取經。",
            ),
        )
        .unwrap();
        ix
    }

    fn q(text: &str) -> Query {
        Query {
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_untitled_book_is_shown_by_its_name_not_its_key() {
        let mut ix = Index::open_in_memory().unwrap();
        ix.add("9ff19404\nlight.txt", "v1", b"a public lighthouse\n")
            .unwrap();
        let h = ix.search(&q("lighthouse")).unwrap();
        assert_eq!(h[0].title, "light.txt");
        assert_eq!(h[0].name, "9ff19404\nlight.txt");
        // The owner's id is not in the title column either.
        assert!(ix.search(&q("9ff19404")).unwrap().is_empty());
    }

    #[test]
    fn phrases_accents_and_chinese_words_are_found() {
        let ix = sample();
        let h = ix.search(&q("\"call me ishmael\"")).unwrap();
        assert_eq!(h[0].name, "moby.txt");
        assert!(
            h[0].snippet.contains("\u{2}Call me Ishmael\u{3}"),
            "{:?}",
            h[0].snippet
        );
        // Accents folded both ways.
        assert_eq!(
            ix.search(&q("liberte eveque")).unwrap()[0].name,
            "miserables.txt"
        );
        assert_eq!(ix.search(&q("LIBERTÉ")).unwrap()[0].name, "miserables.txt");
        // A Chinese word inside a run of characters, and its snippet without spaces.
        let h = ix.search(&q("悟空")).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].name, "journey.txt");
        assert!(
            h[0].snippet.contains("孫\u{2}悟空\u{3}道"),
            "{:?}",
            h[0].snippet
        );
        // The licence text is not indexed.
        assert!(ix.search(&q("licence")).unwrap().is_empty());
    }

    #[test]
    fn filters_by_author_language_and_title() {
        let ix = sample();
        let mut query = q("the OR en");
        query.text = "1815".into();
        assert_eq!(ix.search(&query).unwrap().len(), 1);
        let mut query = q("whale");
        query.author = Some("melville".into());
        assert_eq!(ix.search(&query).unwrap().len(), 1);
        query.author = Some("hugo".into());
        assert!(ix.search(&query).unwrap().is_empty());
        let mut query = q("liberte");
        query.language = Some("fr".into());
        assert_eq!(ix.search(&query).unwrap().len(), 1);
        query.language = Some("English".into());
        assert!(ix.search(&query).unwrap().is_empty());
        let mut query = q("liberte");
        query.title = Some("miserables".into());
        assert_eq!(ix.search(&query).unwrap().len(), 1);
    }

    #[test]
    fn replacing_and_removing_a_book() {
        let mut ix = sample();
        ix.add(
            "moby.txt",
            "v9",
            &book(
                "Moby Dick",
                "Herman Melville",
                "English",
                "Only squid here.",
            ),
        )
        .unwrap();
        assert!(ix.search(&q("ishmael")).unwrap().is_empty());
        assert_eq!(ix.search(&q("squid")).unwrap()[0].file_id, "v9");
        assert!(ix.remove("moby.txt").unwrap());
        assert!(ix.search(&q("squid")).unwrap().is_empty());
        assert!(!ix.remove("moby.txt").unwrap());
        assert_eq!(ix.size().unwrap().0, 2);
    }

    #[test]
    fn user_text_never_becomes_fts_syntax() {
        let ix = sample();
        for text in [
            "AND",
            "NOT whale",
            "title:moby",
            "\"unterminated",
            "a OR b",
            "(",
            "*",
            "^whale",
            "NEAR(a b)",
            "whale*",
        ] {
            match ix.search(&q(text)) {
                Ok(_) => {}
                Err(SearchError::BadQuery(_)) => {}
                Err(e) => panic!("{text}: {e}"),
            }
        }
        assert!(matches!(
            ix.search(&q("  ...  ")),
            Err(SearchError::BadQuery(_))
        ));
        assert_eq!(ix.search(&q("wha*")).unwrap()[0].name, "moby.txt");
    }

    #[test]
    fn passages_cover_the_text() {
        let text = "para one.\n\n".repeat(500) + &"x".repeat(10_000);
        let p = split_passages(&text);
        assert!(p.len() > 3);
        assert!(p.iter().all(|s| s.len() <= PASSAGE_MAX));
        let total: usize = p.iter().map(|s| s.matches("para one.").count()).sum();
        assert_eq!(total, 500);
    }
}
