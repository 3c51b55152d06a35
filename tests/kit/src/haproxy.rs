//! A real HAProxy on loopback, in TCP mode, that puts a PROXY protocol header (`send-proxy` or
//! `send-proxy-v2`) before every connection it forwards to a given backend.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use crate::daemon::{self, Daemon};
use crate::tempdir::TempDir;

/// Which PROXY protocol header HAProxy sends to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderVersion {
    /// `send-proxy`: the text line.
    V1,
    /// `send-proxy-v2`: the binary header.
    V2,
}

pub struct Haproxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    daemon: Daemon,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy forwarding 127.0.0.1:(free port) to `backend` with a `version` header, and
    /// waits, bounded, until it listens.
    pub fn start(backend: SocketAddr, version: HeaderVersion) -> io::Result<Haproxy> {
        let dir = TempDir::new("feint-haproxy")?;
        let conf = dir.path().join("haproxy.cfg");
        let (daemon, port) = Daemon::spawn_on_free_port(dir.path().join("haproxy.log"), |port| {
            fs::write(&conf, config(port, backend, version))?;
            let mut command = Command::new(daemon::sbin("haproxy"));
            // -db: stay in the foreground, so dropping the child stops it.
            command.arg("-db").arg("-f").arg(&conf);
            Ok(command)
        })?;
        Ok(Haproxy {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            daemon,
            _dir: dir,
        })
    }

    /// HAProxy's own output, for diagnostics.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

fn config(port: u16, backend: SocketAddr, version: HeaderVersion) -> String {
    let send = match version {
        HeaderVersion::V1 => "send-proxy",
        HeaderVersion::V2 => "send-proxy-v2",
    };
    format!(
        "global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend clients
    bind 127.0.0.1:{port}
    default_backend feint
backend feint
    server backend {backend} {send}
"
    )
}
