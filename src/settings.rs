//! The settings of a running proxy, as the command line leaves them: plain data that `cli`
//! fills in and checks and `proxy` reads. Neither module depends on the other through it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::secret::Secret;

/// How feint picks between IPv4 and IPv6 addresses of a DC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreferIp {
    PreferIpv4,
    PreferIpv6,
    OnlyIpv4,
    OnlyIpv6,
}

/// How much feint logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Start, stop and errors.
    Quiet,
    /// Also one line per connection outcome.
    Verbose,
}

/// Where failed handshakes are relayed: a host name or address and a port.
/// `host` is a lowercase DNS name, an IPv4 address or an IPv6 address without brackets, so
/// `(host.as_str(), port)` can be handed to `ToSocketAddrs` as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontTarget {
    pub host: String,
    pub port: u16,
}

/// Everything `feint run` needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub secret: Secret,
    pub binds: Vec<SocketAddr>,
    /// (DC id 1..=5, address); a route for DC N also serves media DC -N.
    pub dc_overrides: Vec<(i16, SocketAddr)>,
    pub front: FrontTarget,
    pub prefer_ip: PreferIp,
    pub time_skew: Duration,
    pub replay_cache_bytes: usize,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Host or address, with optional port, printed in links.
    pub public: Option<String>,
    pub log: LogLevel,
    /// Event-loop threads; 0 means one per CPU the process may use.
    pub threads: usize,
    /// I/O buffers in all, shared by the sessions of each loop.
    pub buffers: usize,
    /// Learn the front's answer to a TDLib hello and shape our reply like it (issue 8).
    pub probe_front: bool,
}
