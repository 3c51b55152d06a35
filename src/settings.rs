//! The settings of a running proxy, as the command line leaves them: plain data that `cli`
//! fills in and checks and `proxy` reads. Neither module depends on the other through it.

use std::net::SocketAddr;
use std::path::PathBuf;
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

/// An address clients dial, from `--public`: a DNS name, or an IP address that is neither
/// loopback nor unspecified (IPv6 without brackets). Without a port, links use the port of
/// the first listener (`run`) or 443 (`access`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicAddress {
    pub host: String,
    pub port: Option<u16>,
}

/// Whether the links are also drawn as QR codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkStyle {
    Text,
    TextAndQrCode,
}

/// Whether every accepted connection must open with a PROXY protocol header (`--proxy-protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientProxyHeader {
    /// Clients connect directly; their peer address is the client's.
    Absent,
    /// A balancer sits in front: a v1 or v2 header gives the client's address; none closes.
    Required,
}

/// Whether the front gets a PROXY v2 header before the client's bytes (`--front-proxy-protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontProxyHeader {
    Off,
    SendV2,
}

/// How the front is dialled when an upstream proxy is set (`--front-via-upstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontRoute {
    Direct,
    ViaUpstream,
}

/// A SOCKS5 proxy that DCs (and with `FrontRoute::ViaUpstream` the front) are dialled through.
/// `host` is spelled as in `FrontTarget`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub credentials: Option<UpstreamCredentials>,
}

/// RFC 1929 username and password, 1 to 255 bytes each, taken literally from the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamCredentials {
    pub user: String,
    pub password: String,
}

/// Names the user only: a password must never reach a log line.
impl std::fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
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
    /// TCP_MAXSEG on the listeners (`--client-mss`), so clients send small segments.
    pub client_mss: Option<u16>,
    /// Connections one client address may hold; 0: no limit.
    pub max_connections_per_ip: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Where clients dial, printed in links; none means only the bound addresses that a client
    /// could dial get links.
    pub public: Vec<PublicAddress>,
    pub link_style: LinkStyle,
    pub log: LogLevel,
    /// Event-loop threads; 0 means one per CPU the process may use.
    pub threads: usize,
    /// I/O buffers in all, shared by the sessions of each loop.
    pub buffers: usize,
    /// Where `GET /metrics` is served; None: nothing listens.
    pub metrics: Option<SocketAddr>,
    /// How often the summary line is logged; None: never.
    pub stats_every: Option<Duration>,
    /// CIDR list files, loaded at start and on SIGHUP.
    pub allow: Option<PathBuf>,
    pub block: Option<PathBuf>,
    pub client_proxy_header: ClientProxyHeader,
    pub front_proxy_header: FrontProxyHeader,
    pub upstream: Option<Upstream>,
    pub front_route: FrontRoute,
    /// Learn the front's answer to a TDLib hello and shape our reply like it (issue 8).
    pub probe_front: bool,
}
