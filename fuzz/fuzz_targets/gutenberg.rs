//! The Gutenberg parser (headers, licence markers, encodings, BOMs, CRLF) and the
//! indexer's text handling on what it returns: every uploaded book goes through it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redcloud_search::{gutenberg, index};

fuzz_target!(|data: &[u8]| {
    let book = gutenberg::parse(data);
    let body = index::space_cjk(&book.body);
    let _ = index::split_passages(&body);
    let _ = index::unspace_cjk(&body);
    if let Some(l) = &book.meta.language {
        let _ = index::language_name(l);
    }
});
