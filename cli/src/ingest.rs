//! Ingestion from a Project Gutenberg mirror: plain-text books fetched by ebook
//! number over HTTP(S), to be stored like any upload.
//!
//! The URL of book `N` is `MIRROR/LAYOUT` with every `{id}` in `LAYOUT` replaced by
//! `N`. The defaults are the public site's plain-text layout,
//! `https://www.gutenberg.org/cache/epub/{id}/pg{id}.txt`; a mirror that keeps the
//! files flat takes e.g. `--layout books/pg{id}.txt`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::ClientError;

/// The public site.
pub const DEFAULT_MIRROR: &str = "https://www.gutenberg.org";
/// Where the public site keeps plain-text UTF-8 books.
pub const DEFAULT_LAYOUT: &str = "cache/epub/{id}/pg{id}.txt";
/// Largest book fetched (the biggest Gutenberg texts are a few tens of MB).
pub const MAX_BOOK_BYTES: usize = 256 * 1024 * 1024;

/// The URL of ebook `id` on `mirror` with `layout`.
pub fn book_url(mirror: &str, layout: &str, id: u64) -> String {
    format!(
        "{}/{}",
        mirror.trim_end_matches('/'),
        layout
            .trim_start_matches('/')
            .replace("{id}", &id.to_string())
    )
}

/// The name a fetched book is stored under.
pub fn book_name(id: u64) -> String {
    format!("pg{id}.txt")
}

/// Fetches books from one mirror.
pub struct Mirror {
    http: reqwest::Client,
    base: String,
    layout: String,
}

impl Mirror {
    pub fn new(base: &str, layout: &str) -> Result<Mirror, ClientError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidArgument(format!(
                "the mirror must be an http:// or https:// URL, not '{base}'"
            )));
        }
        if !layout.contains("{id}") {
            return Err(ClientError::InvalidArgument(format!(
                "the layout must contain {{id}} (where the ebook number goes), not '{layout}'"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("redcloud/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ClientError::InvalidArgument(format!("cannot make an HTTP client: {e}"))
            })?;
        Ok(Mirror {
            http,
            base: base.to_string(),
            layout: layout.to_string(),
        })
    }

    /// Fetches ebook `id`: its bytes, or a clear error (not on the mirror, mirror
    /// unreachable, too large).
    pub async fn fetch(&self, id: u64) -> Result<Bytes, ClientError> {
        let url = book_url(&self.base, &self.layout, id);
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            addrs: self.base.clone(),
            reason: format!("fetching ebook #{id} from {url}: {}", error_chain(&e)),
        };
        let mut resp = self.http.get(&url).send().await.map_err(unreachable)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Err(ClientError::NotFound(format!(
                "ebook #{id} is not on the mirror ({url}: HTTP {status})"
            )));
        }
        if !status.is_success() {
            return Err(ClientError::Unavailable(format!(
                "the mirror answered HTTP {status} for ebook #{id} ({url})"
            )));
        }
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_BOOK_BYTES)
        {
            return Err(ClientError::InvalidArgument(format!(
                "ebook #{id} is larger than {MAX_BOOK_BYTES} bytes ({url})"
            )));
        }
        let mut body = BytesMut::new();
        while let Some(piece) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + piece.len() > MAX_BOOK_BYTES {
                return Err(ClientError::InvalidArgument(format!(
                    "ebook #{id} is larger than {MAX_BOOK_BYTES} bytes ({url})"
                )));
            }
            body.extend_from_slice(&piece);
        }
        if body.is_empty() {
            return Err(ClientError::Unavailable(format!(
                "the mirror sent an empty file for ebook #{id} ({url})"
            )));
        }
        Ok(body.freeze())
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_layout() {
        assert_eq!(
            book_url(DEFAULT_MIRROR, DEFAULT_LAYOUT, 2701),
            "https://www.gutenberg.org/cache/epub/2701/pg2701.txt"
        );
        assert_eq!(
            book_url("http://127.0.0.1:8080/", "/books/pg{id}.txt", 11),
            "http://127.0.0.1:8080/books/pg11.txt"
        );
        assert!(Mirror::new("ftp://x", DEFAULT_LAYOUT).is_err());
        assert!(Mirror::new(DEFAULT_MIRROR, "books/x.txt").is_err());
    }
}
