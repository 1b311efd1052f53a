//! Finding peers by name: DNS aliases (every container behind a Docker network alias)
//! and static seeds (`host:port`, for runs without DNS).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;

/// Why a name could not be turned into addresses.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid address {0:?}: expected host, host:port or ip:port")]
    InvalidTarget(String),
    #[error("cannot resolve {name:?}: {reason}")]
    Unresolved { name: String, reason: String },
}

/// Splits `host:port`, `host`, `[v6]:port` into host and port.
pub fn split_host_port(target: &str, default_port: u16) -> Result<(String, u16), DiscoveryError> {
    let bad = || DiscoveryError::InvalidTarget(target.to_string());
    let t = target.trim();
    let t = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .unwrap_or(t)
        .trim_end_matches('/');
    if t.is_empty() {
        return Err(bad());
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match t.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            if host.is_empty() {
                return Err(bad());
            }
            Ok((host.to_string(), port.parse().map_err(|_| bad())?))
        }
        Some(_) => Ok((t.to_string(), default_port)), // a bare IPv6 address
        None => Ok((t.to_string(), default_port)),
    }
}

/// Resolves names to every address behind them, with no caching: each call asks
/// again, so containers that join or leave an alias are noticed.
pub struct Resolver {
    dns: Option<TokioResolver>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    /// Uses the system's DNS configuration (`/etc/resolv.conf`). If that cannot be
    /// read, falls back to the C library's resolver.
    pub fn new() -> Self {
        let dns = match TokioResolver::builder_tokio() {
            Ok(mut b) => {
                let opts = b.options_mut();
                opts.cache_size = 0;
                opts.timeout = Duration::from_secs(2);
                opts.attempts = 2;
                b.build().ok()
            }
            Err(e) => {
                tracing::debug!("hickory resolver unavailable ({e}); using the system resolver");
                None
            }
        };
        Resolver { dns }
    }

    /// Every address behind `target` (`host`, `host:port`, `ip:port`).
    pub async fn resolve(
        &self,
        target: &str,
        default_port: u16,
    ) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let (host, port) = split_host_port(target, default_port)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let unresolved = |reason: String| DiscoveryError::Unresolved {
            name: host.clone(),
            reason,
        };
        let mut out: Vec<SocketAddr> = match &self.dns {
            Some(dns) => {
                dns.clear_cache();
                match dns.lookup_ip(host.as_str()).await {
                    Ok(l) => l.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
                    Err(e) => {
                        // Names from /etc/hosts that hickory does not know (or a DNS
                        // server that is down): ask the C library before giving up.
                        match tokio::net::lookup_host((host.as_str(), port)).await {
                            Ok(it) => it.collect(),
                            Err(_) => return Err(unresolved(e.to_string())),
                        }
                    }
                }
            }
            None => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| unresolved(e.to_string()))?
                .collect(),
        };
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(unresolved("no addresses".to_string()));
        }
        Ok(out)
    }

    /// Resolves every target, skipping (and logging) the ones that fail.
    pub async fn resolve_all(&self, targets: &[String], default_port: u16) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for t in targets {
            match self.resolve(t, default_port).await {
                Ok(a) => out.extend(a),
                Err(e) => tracing::debug!("{e}"),
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The address other nodes should use to reach this one: the configured one, or this
/// host's primary IP with `port` (in a container: the container's own IP).
pub fn advertise_addr(configured: Option<&str>, bound: SocketAddr) -> String {
    advertise_addr_towards(configured, bound, &[])
}

/// Like [`advertise_addr`], but the detected IP is the one this host uses to reach
/// the first of `peers` it has a route to. A container on a swarm overlay network
/// has a default route through `docker_gwbridge`, whose address other containers
/// cannot reach; the source address towards a peer is the overlay one.
pub fn advertise_addr_towards(
    configured: Option<&str>,
    bound: SocketAddr,
    peers: &[SocketAddr],
) -> String {
    if let Some(a) = configured.filter(|a| !a.is_empty()) {
        return a.to_string();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let ip = ip_towards(peers).map_or_else(primary_ip, |(ip, _)| ip);
    format!("{ip}:{}", bound.port())
}

/// The source IP towards the first of `peers` on a directly attached network, else
/// towards the first with any route; with whether it was on-link. A peer reached
/// only through a gateway may be one this host has just left (a container moved to
/// another network): the default route then picks an address (on an overlay
/// network, `docker_gwbridge`'s) that no peer can reach.
pub fn ip_towards(peers: &[SocketAddr]) -> Option<(IpAddr, bool)> {
    let usable: Vec<IpAddr> = peers
        .iter()
        .map(|p| p.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    usable
        .iter()
        .filter(|ip| on_link(**ip) == Some(true))
        .find_map(|ip| local_ip_towards(*ip))
        .map(|ip| (ip, true))
        .or_else(|| {
            usable
                .iter()
                .find_map(|ip| local_ip_towards(*ip))
                .map(|ip| (ip, false))
        })
}

/// Whether `ip` is on a directly attached network (a route without a gateway covers
/// it), from `/proc/net/route`; `None` where that cannot be read, or for IPv6.
pub fn on_link(ip: IpAddr) -> Option<bool> {
    let IpAddr::V4(v4) = ip else { return None };
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    Some(on_link_in(&table, v4))
}

/// `table` is `/proc/net/route`: Iface, Destination, Gateway, Flags, RefCnt, Use,
/// Metric, Mask, ...; addresses in hex, as the kernel holds them (network order
/// bytes read as a native integer).
fn on_link_in(table: &str, ip: std::net::Ipv4Addr) -> bool {
    let addr = u32::from_ne_bytes(ip.octets());
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
        matches!(
            (hex(1), hex(2), hex(7)),
            (Some(dest), Some(0), Some(mask)) if mask != 0 && addr & mask == dest
        )
    })
}

/// The source IP this host would use to send to `target`, found without sending
/// anything (a "connected" UDP socket picks it from the routing table).
pub fn local_ip_towards(target: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((target, 9)).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The IP of the interface that routes outwards, found without sending anything: a
/// UDP socket "connected" to a non-routable documentation address picks the source IP.
pub fn primary_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_on_link_if_a_route_without_gateway_covers_it() {
        let ne = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let table = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth1\t{}\t{}\t0003\t0\t0\t0\t{}\t0\t0\t0\n\
             eth0\t{}\t{}\t0001\t0\t0\t0\t{}\t0\t0\t0\n",
            ne([0, 0, 0, 0]),
            ne([172, 18, 0, 1]),
            ne([0, 0, 0, 0]),
            ne([10, 0, 2, 0]),
            ne([0, 0, 0, 0]),
            ne([255, 255, 255, 0]),
        );
        assert!(on_link_in(&table, [10, 0, 2, 7].into()));
        // Reached only through the default gateway: not on-link.
        assert!(!on_link_in(&table, [10, 0, 1, 7].into()));
        assert!(!on_link_in("", [10, 0, 2, 7].into()));
    }

    #[test]
    fn splits_targets() {
        assert_eq!(
            split_host_port("controller", 7).unwrap(),
            ("controller".into(), 7)
        );
        assert_eq!(split_host_port("a:9", 7).unwrap(), ("a".into(), 9));
        assert_eq!(
            split_host_port("http://127.0.0.1:80/", 7).unwrap(),
            ("127.0.0.1".into(), 80)
        );
        assert_eq!(split_host_port("[::1]:5", 7).unwrap(), ("::1".into(), 5));
        assert!(split_host_port("a:notaport", 7).is_err());
        assert!(split_host_port("", 7).is_err());
        assert!(split_host_port(":80", 7).is_err());
    }

    #[tokio::test]
    async fn resolves_literals_and_localhost() {
        let r = Resolver::new();
        assert_eq!(
            r.resolve("127.0.0.1:5", 1).await.unwrap(),
            vec!["127.0.0.1:5".parse().unwrap()]
        );
        let l = r.resolve("localhost:5", 1).await.unwrap();
        assert!(
            l.iter().all(|a| a.ip().is_loopback() && a.port() == 5),
            "{l:?}"
        );
    }
}
