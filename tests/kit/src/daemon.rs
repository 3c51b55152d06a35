//! What the launchers of real servers (HAProxy, Dante) share: a free loopback port, a wait
//! until a port listens that never connects to it, and a child in its own process group that
//! is stopped, with all the processes it forked, on drop.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::feint::wait_exit;

/// How long a server has to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with fresh ports when another process takes a port between our pick and the bind.
pub const START_ATTEMPTS: usize = 3;

/// A loopback port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// `/usr/sbin/NAME` if it exists (Debian's place, often missing from a user's PATH), else NAME.
pub fn sbin(name: &str) -> PathBuf {
    let path = Path::new("/usr/sbin").join(name);
    if path.exists() {
        path
    } else {
        PathBuf::from(name)
    }
}

/// True when /proc/net/tcp lists 127.0.0.1:`port` in state LISTEN. Reading the table instead of
/// connecting keeps a readiness probe from reaching the backend a proxy forwards to.
pub fn is_listening(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(local.as_str()) && fields.nth(1) == Some("0A")
    })
}

/// A server process started by a test, in a process group of its own.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// `spawn` on a free port, with the command `command(port)` makes; up to START_ATTEMPTS
    /// ports, since another process may take a free port before the daemon binds it.
    pub fn spawn_on_free_port(
        log: PathBuf,
        mut command: impl FnMut(u16) -> io::Result<Command>,
    ) -> io::Result<(Daemon, u16)> {
        let mut last_error = io::Error::other("no attempt made");
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match Daemon::spawn(command(port)?, log.clone(), port) {
                Ok(daemon) => return Ok((daemon, port)),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Spawns `command` with its output in `log` and waits, bounded, until `port` listens.
    /// Fails with the log if the process exits or the deadline passes first.
    pub fn spawn(mut command: Command, log: PathBuf, port: u16) -> io::Result<Daemon> {
        let file = fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .process_group(0)
            .spawn()?;
        let mut daemon = Daemon { child, log };
        let end = Instant::now() + START_TIMEOUT;
        for _ in 0..1000 {
            if is_listening(port) {
                return Ok(daemon);
            }
            if daemon.child.try_wait()?.is_some() || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = daemon.log();
        drop(daemon);
        Err(io::Error::other(format!(
            "{command:?} did not listen on port {port}:\n{text}"
        )))
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill with the negated pid of our own child, whose group we created, and a
        // valid signal number.
        unsafe { libc::kill(group, libc::SIGTERM) };
        if wait_exit(&mut self.child, Duration::from_secs(2)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Forked helpers (Dante's) leave with their parent; make sure of it.
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
    }
}
