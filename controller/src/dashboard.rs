//! The web dashboard: a read-only page at `GET /` on every controller's HTTP port,
//! built into the binary (no CDN, works offline). The page is static; its script
//! reads the JSON admin API (`api.rs`) of the controller that served it and
//! renders the verdict, the controllers, the chunkservers, the backlogs, the
//! workers, search and the public books, refreshing itself.
//!
//! Architecture invariant: the page holds no data of its own and gets no route of
//! its own to data; everything it shows comes from `/api/v1/`, which is public.
//! The answers carry a strict Content-Security-Policy (scripts and styles from
//! this origin only, no inline script), so the page's own bugs cannot run text
//! from the API as code.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");

/// Everything from this origin only; no inline script or style element, no
/// plugins, no framing, no `<base>` rewriting.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes: the page and its script and style sheet.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// A built-in file: revalidated on every load (a controller upgraded in place
/// serves its new page at once), never sniffed as another type.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (
                HeaderName::from_static("content-security-policy"),
                CONTENT_SECURITY_POLICY,
            ),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads its script and style from the routes served here, and has
    /// no inline script or style the policy would block.
    #[test]
    fn the_page_refers_only_to_its_own_files() {
        assert!(INDEX_HTML.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/ui/style.css">"#));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains(" style="));
        // No inline event handler (` onclick=`, ` onload=`, ...).
        for rest in INDEX_HTML.split(" on").skip(1) {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            assert!(
                name.is_empty() || !rest[name.len()..].starts_with('='),
                "inline handler on{name}"
            );
        }
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }

    /// The script never writes HTML from data: no innerHTML/outerHTML/insertAdjacentHTML/document.write.
    #[test]
    fn the_script_builds_nodes_and_never_parses_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
