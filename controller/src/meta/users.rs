//! Accounts and login sessions (SPEC §5). A user is a `users` record keyed by a
//! random user id: files are owned by the id, never by the name, so two accounts
//! that registered one name on opposite sides of a partition keep their books.
//! Which of them holds the name is derived, the same on every replica: the earliest
//! registration (lowest `(hlc, origin, seq)`, then user id) keeps it; every other
//! one is shown, and logs in, as `NAME~ID8` (the first 8 characters of its id).
//! `~` is refused in names people choose, so a derived name never collides.

use rusqlite::{Connection, params};

use super::Store;
use super::rows;
use crate::error::{ControllerError, Result};
use crate::records::{Body, Record, Table};
use crate::replication::engine::Write;

/// A live account, with the name it goes by now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    /// The name it registered.
    pub registered: String,
    /// The name it goes by: `registered`, or `registered~ID8` if an earlier
    /// registration holds that name.
    pub name: String,
    pub password_hash: String,
}

impl Account {
    /// Whether another, earlier registration took the name it registered.
    pub fn renamed(&self) -> bool {
        self.name != self.registered
    }
}

/// The longest user name.
pub const MAX_USERNAME_BYTES: usize = 64;

/// Checks a name someone asks to register.
pub fn check_username(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_USERNAME_BYTES {
        return Err(format!("a user name is 1-{MAX_USERNAME_BYTES} bytes"));
    }
    if name == crate::model::ANONYMOUS {
        return Err(format!(
            "{name:?} names the books stored before accounts existed: choose another name"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(format!(
            "user name {name:?}: use letters, digits and . _ - @ only"
        ));
    }
    Ok(())
}

/// The name a renamed account goes by.
fn derived(registered: &str, user_id: &str) -> String {
    format!("{registered}~{}", &user_id[..user_id.len().min(8)])
}

/// Every live account that registered `username`, earliest first, with the name
/// each goes by.
fn registrations(conn: &Connection, username: &str) -> Result<Vec<Account>> {
    let mut st = conn.prepare_cached(
        "SELECT user_id, password_hash FROM users WHERE username = ?1 AND deleted = 0
          ORDER BY hlc, origin, seq, user_id",
    )?;
    let rows = st.query_map(params![username], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let (user_id, password_hash) = row?;
        out.push(Account {
            name: if i == 0 {
                username.to_string()
            } else {
                derived(username, &user_id)
            },
            registered: username.to_string(),
            user_id,
            password_hash,
        });
    }
    Ok(out)
}

/// The accounts a login as `name` may be: the one going by `name` (the holder of
/// the name, or a renamed one by its derived name), and every other registration
/// of that name (a person who registered it and has not learned it was taken logs
/// in with it; the password says which account is theirs).
pub fn accounts_named(conn: &Connection, name: &str) -> Result<Vec<Account>> {
    if let Some((registered, _)) = name.split_once('~') {
        return Ok(registrations(conn, registered)?
            .into_iter()
            .filter(|a| a.name == name)
            .collect());
    }
    registrations(conn, name)
}

/// The live account with id `user_id`.
pub fn account(conn: &Connection, user_id: &str) -> Result<Option<Account>> {
    let Some(r) = rows::load(conn, Table::Users, user_id)? else {
        return Ok(None);
    };
    if r.version.deleted {
        return Ok(None);
    }
    let Body::User { username, .. } = &r.body else {
        return Ok(None);
    };
    Ok(registrations(conn, username)?
        .into_iter()
        .find(|a| a.user_id == user_id))
}

/// The name each of `user_ids` goes by (ids unknown here are left out).
pub fn names_of(
    conn: &Connection,
    user_ids: impl IntoIterator<Item = String>,
) -> Result<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for id in user_ids {
        if out.contains_key(&id) {
            continue;
        }
        if let Some(a) = account(conn, &id)? {
            out.insert(id, a.name);
        }
    }
    Ok(out)
}

/// Registers `username` with an argon2id `password_hash`. Refused if an account
/// known here already holds the name (one registered concurrently elsewhere is
/// resolved as the module says).
pub fn register(
    store: &mut Store,
    username: &str,
    password_hash: String,
    now_ms: u64,
) -> Result<(String, Vec<Record>)> {
    check_username(username).map_err(ControllerError::InvalidArgument)?;
    if !registrations(store.conn(), username)?.is_empty() {
        return Err(ControllerError::AlreadyExists(format!(
            "the user name {username:?} is taken"
        )));
    }
    let user_id = hex::encode(rand::random::<[u8; 16]>());
    let written = store.write(vec![Write {
        key: user_id.clone(),
        body: Body::User {
            username: username.to_string(),
            password_hash,
            created_at_ms: now_ms,
        },
        deleted: false,
    }])?;
    Ok((user_id, written))
}

/// A live session: whose, and the SHA-256 (hex) of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub secret_sha256: String,
    pub expires_at_ms: u64,
}

/// Records a session for `user_id`.
pub fn create_session(
    store: &mut Store,
    session_id: &str,
    user_id: &str,
    secret_sha256: String,
    expires_at_ms: u64,
) -> Result<Vec<Record>> {
    store.write(vec![Write {
        key: session_id.to_string(),
        body: Body::Session {
            user_id: user_id.to_string(),
            secret_sha256,
            expires_at_ms,
        },
        deleted: false,
    }])
}

/// The live session `session_id`, if any (revoked ones are tombstones).
pub fn session(conn: &Connection, session_id: &str) -> Result<Option<Session>> {
    let Some(r) = rows::load(conn, Table::Sessions, session_id)? else {
        return Ok(None);
    };
    match r.body {
        Body::Session {
            user_id,
            secret_sha256,
            expires_at_ms,
        } if !r.version.deleted => Ok(Some(Session {
            user_id,
            secret_sha256,
            expires_at_ms,
        })),
        _ => Ok(None),
    }
}

/// How long after its expiry a session is tombstoned (its record then goes the way
/// of every tombstone). The hour leaves room for clocks a little apart.
pub const EXPIRED_SESSION_KEEP_MS: u64 = 3_600_000;

/// Tombstones up to `limit` sessions that expired more than
/// [`EXPIRED_SESSION_KEEP_MS`] before `now_ms`, so logins do not pile up for ever.
pub fn expire_sessions(store: &mut Store, now_ms: u64, limit: usize) -> Result<Vec<Record>> {
    let cutoff = now_ms.saturating_sub(EXPIRED_SESSION_KEEP_MS);
    let ids: Vec<String> = {
        let mut st = store.conn().prepare_cached(
            "SELECT session_id FROM sessions WHERE deleted = 0 AND expires_at_ms < ?1 LIMIT ?2",
        )?;
        st.query_map(rusqlite::params![cutoff as i64, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut writes = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = rows::load(store.conn(), Table::Sessions, &id)? {
            writes.push(Write {
                key: r.key,
                body: r.body,
                deleted: true,
            });
        }
    }
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    store.write(writes)
}

/// Revokes session `session_id` (a tombstone, which replicates like any write).
pub fn revoke_session(store: &mut Store, session_id: &str) -> Result<Vec<Record>> {
    let Some(r) = rows::load(store.conn(), Table::Sessions, session_id)? else {
        return Ok(Vec::new());
    };
    if r.version.deleted {
        return Ok(Vec::new());
    }
    store.write(vec![Write {
        key: r.key,
        body: r.body,
        deleted: true,
    }])
}
