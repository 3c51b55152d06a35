//! A real Dante SOCKS5 server (`danted`) on loopback, without authentication, that lets
//! loopback clients CONNECT to loopback destinations.
//!
//! Only no-auth: Dante checks usernames and passwords against the system's users (or PAM
//! services in /etc/pam.d), and a test must not create users or edit system files on a
//! developer's machine. Username/password is covered by the unit tests of `src/proto/socks5.rs`.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use crate::daemon::{self, Daemon};
use crate::tempdir::TempDir;

pub struct Dante {
    /// The SOCKS5 port.
    pub addr: SocketAddr,
    daemon: Daemon,
    _dir: TempDir,
}

impl Dante {
    /// Starts danted on 127.0.0.1:(free port) and waits, bounded, until it listens.
    pub fn start() -> io::Result<Dante> {
        let dir = TempDir::new("feint-dante")?;
        let conf = dir.path().join("danted.conf");
        let pid = dir.path().join("danted.pid");
        let (daemon, port) = Daemon::spawn_on_free_port(dir.path().join("danted.log"), |port| {
            fs::write(&conf, config(port))?;
            let mut command = Command::new(daemon::sbin("danted"));
            // -N 1: one process per kind is plenty for a test; danted stays in the foreground
            // without -D.
            command
                .arg("-f")
                .arg(&conf)
                .arg("-p")
                .arg(&pid)
                .args(["-N", "1"]);
            Ok(command)
        })?;
        Ok(Dante {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            daemon,
            _dir: dir,
        })
    }

    /// Dante's log so far, with a line for every CONNECT and disconnect.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

fn config(port: u16) -> String {
    // As root, Dante wants users to switch to; as anyone else it runs as that user.
    let users = if is_root() {
        "user.privileged: root\nuser.unprivileged: nobody\n"
    } else {
        ""
    };
    format!(
        "logoutput: stderr
internal: 127.0.0.1 port = {port}
external: lo
clientmethod: none
socksmethod: none
{users}client pass {{
    from: 127.0.0.0/8 to: 0.0.0.0/0
}}
socks pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    command: connect
    log: connect disconnect
}}
socks pass {{
    from: 127.0.0.0/8 to: ::1/128
    command: connect
    log: connect disconnect
}}
"
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
