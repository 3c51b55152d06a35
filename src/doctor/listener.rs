//! The listener check: each `--bind` address can be bound, or is held by a feint that answers
//! this secret; and the open-file limit against `--max-connections`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{itself, Finding};
use crate::proxy::{check_address_free, open_file_limit};
use crate::settings::Config;

/// The address to reach a feint already listening on one of `binds`: the first bind that is
/// taken, with loopback for an unspecified address. None when none is taken.
pub fn running_address(binds: &[SocketAddr]) -> Option<SocketAddr> {
    binds
        .iter()
        .find(|bind| bind.port() != 0 && is_taken(**bind))
        .map(|&bind| reachable(bind))
}

fn is_taken(bind: SocketAddr) -> bool {
    matches!(check_address_free(bind), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
}

fn reachable(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bind.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bind.port()).into(),
        _ => bind,
    }
}

pub fn check(config: &Config) -> Vec<Finding> {
    let mut findings: Vec<Finding> = config.binds.iter().map(|&b| bind(config, b)).collect();
    findings.push(open_files(config));
    findings
}

fn bind(config: &Config, address: SocketAddr) -> Finding {
    if address.port() == 0 {
        return Finding::ok(
            "listen",
            format!("{address}: the kernel picks the port at start"),
        );
    }
    let error = match check_address_free(address) {
        Ok(()) => return Finding::ok("listen", format!("{address} can be bound")),
        Err(error) => error,
    };
    match error.kind() {
        io::ErrorKind::AddrInUse => match itself::genuine(reachable(address), config) {
            Ok(()) => Finding::ok(
                "listen",
                format!("{address} is held by a running feint that answers this secret"),
            ),
            Err(why) => Finding::fail(
                "listen",
                format!(
                    "{address} is held by a process that is not a feint with this secret ({why})"
                ),
                "stop that process or choose another --bind",
            ),
        },
        io::ErrorKind::PermissionDenied => Finding::fail(
            "listen",
            format!("cannot bind {address}: {error}"),
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: the systemd unit \
             (scripts/feint.service), `setcap cap_net_bind_service=+ep` on the binary, or a \
             port from 1024 up",
        ),
        _ => Finding::fail(
            "listen",
            format!("cannot bind {address}: {error}"),
            "bind an address of this machine, or 0.0.0.0 / [::] for all of them",
        ),
    }
}

fn open_files(config: &Config) -> Finding {
    // Two sockets per connection and some to spare, as the proxy's start-up warning counts.
    let needed = 2 * config.max_connections as u64 + 64;
    match open_file_limit() {
        Some(limit) if limit < needed => Finding::warn(
            "files",
            format!(
                "the open-file limit is {limit}, below the {needed} that --max-connections {} \
                 needs",
                config.max_connections
            ),
            "raise it (ulimit -n, or LimitNOFILE= in the systemd unit) or lower \
             --max-connections",
        ),
        Some(limit) => Finding::ok(
            "files",
            format!(
                "the open-file limit {limit} covers --max-connections {}",
                config.max_connections
            ),
        ),
        None => Finding::warn(
            "files",
            "cannot read the open-file limit",
            "check `ulimit -n` by hand: feint needs two per connection",
        ),
    }
}
