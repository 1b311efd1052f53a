//! The web dashboard at `GET /`: its files and headers on the HTTP port, and the
//! page itself in a real headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`): it renders the controllers of a cluster and the public books, and
//! turns "degraded" when a chunkserver stops. A screenshot of that is written to
//! `target/test-artefacts/dashboard-degraded.png`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redcloud_tests::{ClusterSpec, TestCluster, wait_until};

/// The longest one Chromium run may take before it is killed.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(30);

/// A GET over a fresh connection: (status, headers lower-cased, body).
fn raw_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_its_script_and_style_are_served_with_their_types_and_policy() {
    let cluster = TestCluster::with(ClusterSpec {
        chunkservers: 1,
        min_chunk_replicas: 1,
        ..ClusterSpec::default()
    })
    .await;
    let addr = cluster.controllers[0].http_addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            "/",
            "/ui/app.js",
            "/ui/style.css",
            "/ui/nothing.js",
            "/index.html",
        ]
        .map(|p| (p, raw_get(addr, p)))
    })
    .await
    .expect("requests");
    let [(_, page), (_, js), (_, css), missing @ ..] = answers;

    for ((status, headers, body), (ty, marker)) in [&page, &js, &css].into_iter().zip([
        ("text/html", r#"<div id="verdict">"#),
        ("text/javascript", "/api/v1/cluster"),
        ("text/css", "[data-verdict=\"degraded\"]"),
    ]) {
        assert_eq!(*status, 200, "{headers:?}");
        let got = header(headers, "content-type").unwrap_or("");
        assert!(got.starts_with(ty), "content-type {got}, wanted {ty}");
        assert_eq!(header(headers, "cache-control"), Some("no-cache"));
        let csp = header(headers, "content-security-policy").expect("CSP header");
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"));
        assert!(body.contains(marker), "{ty} body lacks {marker}");
    }
    for (path, (status, _, body)) in missing {
        assert_eq!(status, 404, "{path}: {body}");
    }
    // The API is still where it was, beside the page.
    let (status, _, body) = tokio::task::spawn_blocking(move || raw_get(addr, "/api/v1/cluster"))
        .await
        .expect("request");
    assert_eq!(status, 200, "{body}");
}

/// The first browser binary on `PATH`, Debian's name first.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no chromium, chromium-browser or google-chrome on PATH: install Debian's chromium (.ci/run does)"
    );
}

/// What one headless Chromium run gives.
enum Capture {
    /// The DOM after the page's script ran.
    Dom,
    /// A PNG of the page at this path.
    Screenshot(PathBuf),
}

/// Loads `url` in a fresh headless Chromium, lets the page run for 8 s of virtual
/// time, and returns what it printed (the DOM for [`Capture::Dom`]). The browser
/// and every process it started are killed if it takes longer than
/// [`CHROMIUM_DEADLINE`], and its profile is removed.
fn run_chromium(url: &str, capture: &Capture) -> String {
    use std::os::unix::process::CommandExt;
    let work = tempfile::Builder::new()
        .prefix("redcloud-chromium-")
        .tempdir()
        .expect("tempdir");
    let out_path = work.path().join("stdout");
    let err_path = work.path().join("stderr");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-extensions",
        "--disable-background-networking",
        "--hide-scrollbars",
        "--virtual-time-budget=8000",
    ])
    .arg(format!(
        "--user-data-dir={}",
        work.path().join("profile").display()
    ));
    match capture {
        Capture::Dom => {
            cmd.arg("--dump-dom");
        }
        Capture::Screenshot(png) => {
            cmd.arg(format!("--screenshot={}", png.display()))
                .arg("--window-size=1280,1400");
        }
    }
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        // Its own process group, so a timeout kills its renderers too.
        .process_group(0);
    let mut child = cmd.spawn().expect("start chromium");
    let group = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for chromium") {
            break Some(s);
        }
        if started.elapsed() > CHROMIUM_DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever of its process group is left (all of it on a timeout); never our
    // own group.
    if group != 0 && Some(group) != own_process_group() {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let tail: String = stderr
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    match status {
        None => {
            panic!("chromium took over {CHROMIUM_DEADLINE:?} on {url}; killed. stderr:\n{tail}")
        }
        Some(s) if !s.success() => panic!("chromium failed on {url}: {s}; stderr:\n{tail}"),
        Some(_) => std::fs::read_to_string(&out_path).expect("chromium output"),
    }
}

/// This process's group id (field 5 of `/proc/self/stat`, after the command name).
fn own_process_group() -> Option<u32> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

async fn dump_dom(url: &str) -> String {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || run_chromium(&url, &Capture::Dom))
        .await
        .expect("chromium thread")
}

/// The part of `dom` from `<table id="{id}">` to its `</table>` (empty if absent).
fn table<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!(r#"<table id="{id}">"#);
    let Some(start) = dom.find(&open) else {
        return "";
    };
    let rest = &dom[start..];
    &rest[..rest.find("</table>").unwrap_or(rest.len())]
}

/// The text of `<div id="verdict">` as the script left it.
fn verdict(dom: &str) -> &str {
    let open = r#"<div id="verdict">"#;
    dom.find(open)
        .map(|i| &dom[i + open.len()..])
        .and_then(|rest| rest.split('<').next())
        .unwrap_or("")
}

/// One row per node in a rendered table (rows carry `data-node-id`).
fn rows(dom: &str, id: &str) -> usize {
    table(dom, id).matches("data-node-id=").count()
}

/// Loads the page in Chromium until its DOM satisfies `ready` (within 2 min) and
/// returns that DOM.
async fn dom_once(url: &str, what: &str, ready: fn(&str) -> bool) -> String {
    let last = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    wait_until(what, Duration::from_secs(120), || {
        let (url, last) = (url.to_string(), last.clone());
        async move {
            let dom = dump_dom(&url).await;
            let ok = ready(&dom);
            if !ok {
                // Shown with the test's output if the wait times out.
                eprintln!(
                    "not yet: verdict {:?}, {} controller rows",
                    verdict(&dom),
                    rows(&dom, "controllers")
                );
            }
            *last.lock().expect("dom") = dom;
            ok
        }
    })
    .await;
    last.lock().expect("dom").clone()
}

fn artefact_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artefacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_three_controllers_the_books_and_turns_degraded() {
    let mut cluster = TestCluster::with(ClusterSpec {
        controllers: 3,
        chunkservers: 3,
        ..ClusterSpec::default()
    })
    .await;
    let url = format!("http://{}/", cluster.controllers[0].http_addr);
    let ids: Vec<String> = (0..3).map(|i| cluster.controller_id(i)).collect();
    let mut client = cluster.client().await;
    client
        .upload_bytes(
            Bytes::from_static(b"Call me Ishmael. Some years ago, never mind how long."),
            "dashboard <moby>.txt",
            true,
        )
        .await
        .expect("public upload");
    client
        .upload_bytes(
            Bytes::from_static(b"not for the dashboard"),
            "private.txt",
            false,
        )
        .await
        .expect("private upload");
    cluster.wait_holds_all(2, Duration::from_secs(30)).await;

    let dom = dom_once(
        &url,
        "the dashboard shows 3 controllers, the public book and a healthy cluster",
        |dom| {
            rows(dom, "controllers") == 3
                && verdict(dom) == "healthy"
                && table(dom, "books").contains("data-name=")
        },
    )
    .await;
    let controllers = table(&dom, "controllers");
    for id in &ids {
        assert!(
            controllers.contains(&format!(r#"data-node-id="{id}""#)),
            "controller {id} not shown:\n{controllers}"
        );
    }
    assert_eq!(
        controllers.matches(r#"class="self""#).count(),
        1,
        "exactly one row is this controller:\n{controllers}"
    );
    assert_eq!(rows(&dom, "chunkservers"), 3, "{dom}");
    let books = table(&dom, "books");
    // The name is text (escaped), its link percent-encoded; the private book is absent.
    assert!(books.contains("dashboard &lt;moby&gt;.txt"), "{books}");
    assert!(
        books.contains(r#"href="/api/v1/files/tester/dashboard%20%3Cmoby%3E.txt""#),
        "{books}"
    );
    assert!(!books.contains("private.txt"), "{books}");
    assert!(
        dom.contains(r#"<div id="offline" class="offline" hidden="">"#),
        "the page says it cannot reach the controller:\n{dom}"
    );

    // A search named in the address runs on load; matches are <mark> elements.
    let found = dom_once(
        &format!("{url}?q=Ishmael"),
        "the page's search finds the public book",
        |dom| dom.contains("<mark>"),
    )
    .await;
    let results = found
        .find(r#"<ol id="search-results">"#)
        .map(|i| &found[i..])
        .and_then(|r| r.split("</ol>").next())
        .unwrap_or("");
    assert!(results.contains("<mark>Ishmael</mark>"), "{results}");
    assert!(
        results.contains(r#"href="/api/v1/files/tester/dashboard%20%3Cmoby%3E.txt""#),
        "{results}"
    );
    assert!(!results.contains(['\u{2}', '\u{3}']), "{results}");

    let down = cluster.chunkservers[2].chunkserver().id.to_string();
    cluster.chunkservers[2].stop();
    let dom = dom_once(&url, "the dashboard shows the cluster degraded", |dom| {
        verdict(dom) == "degraded"
    })
    .await;
    let reasons = dom
        .find(r#"<ul id="reasons">"#)
        .map(|i| &dom[i..])
        .and_then(|r| r.split("</ul>").next())
        .unwrap_or("");
    assert!(reasons.contains(&down), "no reason names {down}: {reasons}");
    assert!(
        table(&dom, "chunkservers")
            .contains(&format!(r#"data-node-id="{down}" data-healthy="false""#)),
        "{dom}"
    );

    let dir = artefact_dir();
    std::fs::create_dir_all(&dir).expect("artefact dir");
    let png = dir.join("dashboard-degraded.png");
    let _ = std::fs::remove_file(&png);
    let shot = png.clone();
    tokio::task::spawn_blocking(move || run_chromium(&url, &Capture::Screenshot(shot)))
        .await
        .expect("chromium thread");
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    assert!(
        bytes.len() > 10 * 1024,
        "{} is only {} bytes",
        png.display(),
        bytes.len()
    );
    println!(
        "dashboard screenshot: {}",
        png.canonicalize().unwrap_or(png).display()
    );
}
