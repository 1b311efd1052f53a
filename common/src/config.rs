//! Helpers for node configuration: duration and size parsing, logging, data dirs.

use std::path::Path;
use std::time::Duration;

/// Parses `500ms`, `30s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 30s, 5m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `4096`, `64KiB`, `1MiB`, `2GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB` as powers of 1024).
/// A cluster secret: it travels as an HTTP header and gRPC metadata, so it must be
/// non-empty visible ASCII (no spaces or control characters).
pub fn parse_secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the cluster secret is empty".into());
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the cluster secret may hold only visible ASCII characters, not {c:?}"
        ));
    }
    Ok(s.to_string())
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    let value: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 4096, 64KiB, 1MiB"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event; ANSI colour only when stderr is a
    /// terminal and `NO_COLOR` is unset, so `docker logs` and files stay plain.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`).
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`'s value: unset or empty is `text`.
    pub fn from_env_value(v: Option<&str>) -> Result<LogFormat, String> {
        match v.map(str::trim).unwrap_or("") {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "LOG_FORMAT must be \"text\" or \"json\", not {other:?}"
            )),
        }
    }
}

/// Whether text logs on stderr may carry ANSI colour: stderr is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn log_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Sets up `tracing` output on stderr from `RUST_LOG` (default `info`) and
/// `LOG_FORMAT` (`text`, the default, or `json`). Safe to call twice. An invalid
/// `LOG_FORMAT` is an error (the node refuses to start rather than log in a
/// format nobody asked for).
pub fn init_logging() -> Result<(), String> {
    let format = LogFormat::from_env_value(std::env::var("LOG_FORMAT").ok().as_deref())?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(log_colour()).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

/// Reads the node id persisted in `dir/node_id`, or makes one (`hostname-timestamp`)
/// and persists it. An explicit `configured` id wins and is persisted too.
pub fn load_or_create_node_id(
    dir: &Path,
    configured: Option<&str>,
) -> std::io::Result<crate::NodeId> {
    use std::io::{Error, ErrorKind};
    std::fs::create_dir_all(dir)?;
    let path = dir.join("node_id");
    if let Some(id) = configured {
        let id = crate::NodeId::new(id).map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
        write_file_durably(&path, id.as_str().as_bytes())?;
        return Ok(id);
    }
    match std::fs::read_to_string(&path) {
        Ok(s) => crate::NodeId::new(s.trim()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{} is corrupt: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let id = crate::NodeId::generate(&hostname());
            write_file_durably(&path, id.as_str().as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// The machine's host name (in a container: the container id).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// Writes `data` to `path` crash-safely: temp file, fsync, rename, fsync directory.
pub fn write_file_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999G").is_err());
    }

    #[test]
    fn secrets_are_visible_ascii_and_compared_whole() {
        assert_eq!(parse_secret("s3cr3t-!#").unwrap(), "s3cr3t-!#");
        assert!(parse_secret("").is_err());
        assert!(parse_secret("with space").is_err());
        assert!(parse_secret("naïve").is_err());
        use crate::http::secret_allows;
        assert!(secret_allows(None, None));
        assert!(secret_allows(None, Some("anything")));
        assert!(secret_allows(Some("abc"), Some("abc")));
        assert!(!secret_allows(Some("abc"), None));
        assert!(!secret_allows(Some("abc"), Some("abd")));
        assert!(!secret_allows(Some("abc"), Some("ab")));
        assert!(!secret_allows(Some("abc"), Some("abcd")));
        assert!(!secret_allows(Some("abc"), Some("")));
    }

    #[test]
    fn node_id_persists() {
        let dir = std::env::temp_dir().join(format!("rc-nodeid-{}", uuid::Uuid::new_v4()));
        let a = load_or_create_node_id(&dir, None).unwrap();
        let b = load_or_create_node_id(&dir, None).unwrap();
        assert_eq!(a, b);
        let c = load_or_create_node_id(&dir, Some("fixed-1")).unwrap();
        assert_eq!(c.as_str(), "fixed-1");
        assert_eq!(load_or_create_node_id(&dir, None).unwrap(), c);
        assert!(load_or_create_node_id(&dir, Some("bad/id")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
