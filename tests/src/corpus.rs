//! The shared corpus of Project Gutenberg books (`../shared/corpus` beside the
//! checkout, or `$REDCLOUD_CORPUS`) and its catalog.

use std::path::PathBuf;

/// One line of `catalog.tsv`.
#[derive(Debug, Clone)]
pub struct Book {
    pub file: String,
    pub gutenberg_id: String,
    pub title: String,
    pub author: String,
    pub language: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Book {
    pub fn path(&self) -> PathBuf {
        dir().join("books").join(&self.file)
    }
}

/// The corpus directory.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("REDCLOUD_CORPUS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// Every book in the catalog. Panics with a clear message if the corpus is missing.
pub fn catalog() -> Vec<Book> {
    let path = dir().join("catalog.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the corpus catalog {}: {e} (the corpus is expected at ../shared/corpus beside the checkout, or set REDCLOUD_CORPUS)",
            path.display()
        )
    });
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() >= 7, "malformed catalog line: {l}");
            Book {
                file: f[0].into(),
                gutenberg_id: f[1].into(),
                title: f[2].into(),
                author: f[3].into(),
                language: f[4].into(),
                bytes: f[5].parse().expect("bytes column"),
                sha256: f[6].into(),
            }
        })
        .collect()
}
