//! Search queries (client input) against a real SQLite FTS5 index holding a book:
//! the query parser and the FTS expression built from it must refuse, never panic
//! and never pass FTS5 syntax through.
#![no_main]
use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use redcloud_search::index::{Index, Query, SearchError};

static INDEX: LazyLock<Mutex<Index>> = LazyLock::new(|| {
    let mut ix = Index::open_in_memory().expect("index");
    let book = b"Title: A Tale of Two Cities\r\nAuthor: Charles Dickens\r\nLanguage: English\r\n\r\n\
        *** START OF THE PROJECT GUTENBERG EBOOK ***\r\nIt was the best of times, it was the worst \
        of times. \xe5\x90\xbe\xe8\xbc\xa9\xe3\x81\xaf\xe7\x8c\xab\xe3\x81\xa7\xe3\x81\x82\xe3\x82\x8b\r\n\
        *** END OF THE PROJECT GUTENBERG EBOOK ***\r\n";
    ix.add(
        "alice\ntale.txt",
        "0190a4c2-0000-7000-8000-000000000000",
        book,
    )
    .expect("add");
    Mutex::new(ix)
});

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // Fields separated by NUL: text, author, language, title; then a limit byte.
    let mut parts = s.split('\0');
    let text = parts.next().unwrap_or_default().to_string();
    let mut field = || parts.next().filter(|x| !x.is_empty()).map(str::to_string);
    let (author, language, title) = (field(), field(), field());
    let limit = data.last().copied().unwrap_or(0) as usize;
    let q = Query {
        text,
        author,
        language,
        title,
        limit,
        offset: 0,
    };
    let ix = INDEX.lock().unwrap_or_else(|e| e.into_inner());
    match ix.search(&q) {
        Ok(hits) => assert!(hits.len() <= redcloud_search::index::MAX_LIMIT),
        Err(SearchError::BadQuery(_)) => {}
        Err(e) => panic!("a query the parser accepted failed in SQLite: {e} ({q:?})"),
    }
});
