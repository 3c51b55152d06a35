//! Command line (lexopt) → Command. No config file, no exit: main decides what to do.

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
}

/// Which encoding `generate-secret` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretEncoding {
    Hex,
    Base64,
}

pub enum Command {
    Run(Config),
    GenerateSecret {
        domain: String,
        encoding: SecretEncoding,
    },
    Access {
        public: Option<String>,
        secret: Secret,
    },
    /// Help text for the top level or a subcommand.
    Help(&'static str),
    Version,
}

/// A usage error: one line naming the problem; main exits 2.
#[derive(Debug)]
pub struct UsageError(pub String);

pub fn parse(parser: lexopt::Parser) -> Result<Command, UsageError> {
    todo!()
}
