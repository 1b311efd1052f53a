//! Replication bookkeeping in SQLite: the write log's shape at start (what the
//! engine state is rebuilt from), the persisted coverage, the clock floor, and
//! what each member controller last reported.

use std::collections::BTreeMap;

use redcloud_common::replication::{Origin, VersionVector};
use redcloud_common::{HlcTimestamp, NodeId, VectorClock};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::bad;

/// A version vector in the text form SQLite keeps (`origin:seq,...`).
pub fn vector_to_text(v: &VersionVector) -> String {
    VectorClock(v.0.clone()).to_text()
}

pub fn vector_from_text(s: &str) -> Result<VersionVector, String> {
    VectorClock::from_text(s).map(|c| VersionVector(c.0))
}

/// What the engine state of a new life is rebuilt from.
pub struct Persisted {
    pub vector: VersionVector,
    pub logged: BTreeMap<Origin, u64>,
    pub ahead: Vec<(Origin, u64)>,
    pub hlc_floor: HlcTimestamp,
}

/// Reads the persisted coverage, the highest write logged per origin, the logged
/// writes beyond the coverage, and the clock floor.
pub fn load(conn: &Connection) -> rusqlite::Result<Persisted> {
    let mut vector = VersionVector::default();
    {
        let mut st = conn.prepare("SELECT origin, seq FROM replication_state")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (o, s) = row?;
            vector.0.insert(Origin::from_sql(o), s as u64);
        }
    }
    let mut logged = BTreeMap::new();
    {
        let mut st = conn.prepare("SELECT origin, MAX(seq) FROM gossip_log GROUP BY origin")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (o, s) = row?;
            logged.insert(Origin::from_sql(o), s as u64);
        }
    }
    let mut ahead = Vec::new();
    {
        let mut st =
            conn.prepare_cached("SELECT seq FROM gossip_log WHERE origin = ?1 AND seq > ?2")?;
        for (o, max) in &logged {
            let cov = vector.get(*o);
            if *max <= cov {
                continue;
            }
            let rows = st.query_map(params![o.to_sql(), cov as i64], |r| r.get::<_, i64>(0))?;
            for s in rows {
                ahead.push((*o, s? as u64));
            }
        }
    }
    let floor: Option<i64> = conn
        .query_row("SELECT value FROM kv WHERE key = 'hlc_floor'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(Persisted {
        vector,
        logged,
        ahead,
        hlc_floor: HlcTimestamp(floor.unwrap_or(0) as u64),
    })
}

/// Persists the entries of `after` that differ from `before`.
pub fn persist_vector(
    conn: &Connection,
    before: &VersionVector,
    after: &VersionVector,
) -> rusqlite::Result<()> {
    let mut st = conn
        .prepare_cached("INSERT OR REPLACE INTO replication_state (origin, seq) VALUES (?1, ?2)")?;
    for (o, s) in &after.0 {
        if before.get(*o) != *s {
            st.execute(params![o.to_sql(), *s as i64])?;
        }
    }
    Ok(())
}

/// What one member controller last told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub peer: NodeId,
    /// Its version vector, as it reported it.
    pub vector: VersionVector,
    /// When (our wall clock, ms) it reported it.
    pub reported_at_ms: u64,
    /// When (our wall clock, ms) the last complete exchange we started with it
    /// began (0: never).
    pub last_exchange_ms: u64,
}

/// Remembers `peer`'s reported vector.
pub fn note_report(
    conn: &Connection,
    peer: &NodeId,
    vv: &VersionVector,
    now_ms: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO gossip_peers (peer_id, vector, reported_at_ms, last_exchange_ms) VALUES (?1, ?2, ?3, 0)
         ON CONFLICT (peer_id) DO UPDATE SET vector = excluded.vector, reported_at_ms = excluded.reported_at_ms",
    )?
    .execute(params![peer.as_str(), vector_to_text(vv), now_ms as i64])?;
    Ok(())
}

/// Notes that a complete exchange we started with `peer` at `asked_at_ms` ended.
pub fn note_exchange(conn: &Connection, peer: &NodeId, asked_at_ms: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE gossip_peers SET last_exchange_ms = MAX(last_exchange_ms, ?2) WHERE peer_id = ?1",
    )?
    .execute(params![peer.as_str(), asked_at_ms as i64])?;
    Ok(())
}

/// Every member's last report.
pub fn reports(conn: &Connection) -> rusqlite::Result<BTreeMap<NodeId, Report>> {
    let mut st = conn.prepare_cached(
        "SELECT peer_id, vector, reported_at_ms, last_exchange_ms FROM gossip_peers",
    )?;
    let rows = st.query_map([], |r| {
        let id: String = r.get(0)?;
        let v: String = r.get(1)?;
        Ok(Report {
            peer: NodeId::new(id).map_err(|e| bad("peer_id", e))?,
            vector: vector_from_text(&v).map_err(|e| bad("vector", e))?,
            reported_at_ms: r.get::<_, i64>(2)? as u64,
            last_exchange_ms: r.get::<_, i64>(3)? as u64,
        })
    })?;
    let mut out = BTreeMap::new();
    for r in rows {
        let r = r?;
        out.insert(r.peer.clone(), r);
    }
    Ok(out)
}

/// Drops what `peer` reported (it was forgotten).
pub fn forget_report(conn: &Connection, peer: &NodeId) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM gossip_peers WHERE peer_id = ?1",
        params![peer.as_str()],
    )?;
    Ok(())
}
