//! The saved login: `$XDG_CONFIG_HOME/redcloud/session.json` (default
//! `~/.config/redcloud/`), mode 0600, holding the token `login` returned.
//! `REDCLOUD_TOKEN` overrides it (for scripts and containers).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ClientError;

/// What `login` saved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    pub token: String,
    pub username: String,
    pub expires_at_ms: u64,
    /// The causal clock of this login's writes (`Client::causal_clock`): the next
    /// write is stamped after it, on whichever controller it lands.
    #[serde(default)]
    pub clock: u64,
}

/// Where the login is kept.
pub fn path() -> Result<PathBuf, ClientError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config"),
            None => {
                return Err(ClientError::InvalidArgument(
                    "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the login".into(),
                ));
            }
        },
    };
    Ok(base.join("redcloud").join("session.json"))
}

/// The token to send: `REDCLOUD_TOKEN`, else the saved login (none: anonymous).
pub fn token() -> Result<Option<String>, ClientError> {
    if let Some(t) = std::env::var("REDCLOUD_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(t));
    }
    Ok(load()?.map(|s| s.token))
}

/// The saved login, if any.
pub fn load() -> Result<Option<Saved>, ClientError> {
    let p = path()?;
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            ClientError::InvalidArgument(format!(
                "{}: not a saved login ({e}); run `redcloud logout` or delete it",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::io(p.display(), e)),
    }
}

/// Saves a login, readable by this user only (written whole, then renamed).
pub fn save(s: &Saved) -> Result<PathBuf, ClientError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let p = path()?;
    let dir = p.parent().unwrap_or(&p).to_path_buf();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| ClientError::io(dir.display(), e))?;
    // A name of this process's own: commands running side by side (each keeps
    // its causal clock after a write) never write into one another's file.
    let tmp = p.with_extension(format!("json.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ClientError::io(tmp.display(), e))?;
    let body = serde_json::to_vec_pretty(s).unwrap_or_default();
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .map_err(|e| ClientError::io(tmp.display(), e))?;
    std::fs::rename(&tmp, &p).map_err(|e| ClientError::io(p.display(), e))?;
    Ok(p)
}

/// Keeps `clock` as the saved login's causal clock if it is later than the one
/// saved. Nothing to do without a saved login (`REDCLOUD_TOKEN`); a failure only
/// warns: the write it follows did happen.
pub fn keep_clock(clock: u64) {
    let Ok(Some(mut s)) = load() else { return };
    if clock <= s.clock {
        return;
    }
    s.clock = clock;
    if let Err(e) = save(&s) {
        eprintln!("warning: could not keep the session's causal clock: {e}");
    }
}

/// Removes the saved login (none is fine).
pub fn remove() -> Result<(), ClientError> {
    let p = path()?;
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ClientError::io(p.display(), e)),
    }
}
