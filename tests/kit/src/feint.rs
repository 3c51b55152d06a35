//! Runs the feint binary: `feint run --bind 127.0.0.1:0 … SECRET`, waits (bounded) for its
//! `listening on ADDR` lines, keeps its output for assertions and kills it on drop.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::Secret;

const START_TIMEOUT: Duration = Duration::from_secs(15);

struct State {
    lines: Vec<String>,
    /// How many of stdout and stderr are still open.
    open: usize,
}

struct Output {
    state: Mutex<State>,
    changed: Condvar,
}

impl Output {
    fn new() -> Arc<Output> {
        Arc::new(Output {
            state: Mutex::new(State {
                lines: Vec::new(),
                open: 2,
            }),
            changed: Condvar::new(),
        })
    }
}

pub struct Feint {
    child: Child,
    addrs: Vec<SocketAddr>,
    output: Arc<Output>,
    pub argv: Vec<String>,
}

/// Spawns a thread that copies `pipe` line by line into `output`, prefixing `tag`.
fn collect(pipe: impl Read + Send + 'static, tag: &'static str, output: Arc<Output>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            output
                .state
                .lock()
                .unwrap()
                .lines
                .push(format!("{tag}{line}"));
            output.changed.notify_all();
        }
        output.state.lock().unwrap().open -= 1;
        output.changed.notify_all();
    });
}

/// A closed loopback port: whatever feint dials there is refused at once.
pub const NOWHERE: &str = "127.0.0.1:9";

/// `--front` and `--dc N=` flags pointing at [`NOWHERE`] for whatever `args` leaves to feint's
/// defaults, so a test never makes feint resolve the secret's domain or dial Telegram.
fn loopback_defaults(args: &[String]) -> Vec<String> {
    let mut extra = Vec::new();
    if !args.iter().any(|a| a == "--front") {
        extra.extend(["--front".to_string(), NOWHERE.to_string()]);
    }
    for dc in 1..=5 {
        let routed = args
            .windows(2)
            .any(|w| w[0] == "--dc" && w[1].starts_with(&format!("{dc}=")));
        if !routed {
            extra.extend(["--dc".to_string(), format!("{dc}={NOWHERE}")]);
        }
    }
    extra
}

/// Parses `listening on ADDR` (anything after the address is ignored).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Feint {
    /// Starts `bin run ARGS SECRET`, adding `--bind 127.0.0.1:0` unless ARGS has a `--bind`
    /// and loopback defaults for `--front` and `--dc` (see [`NOWHERE`]), and waits until it has
    /// printed one `listening on` line per bind.
    pub fn start(bin: impl AsRef<Path>, secret: &Secret, args: &[String]) -> io::Result<Feint> {
        let mut argv = vec!["run".to_string()];
        if !args.iter().any(|a| a == "--bind") {
            argv.extend(["--bind".to_string(), "127.0.0.1:0".to_string()]);
        }
        argv.extend(args.iter().cloned());
        argv.extend(loopback_defaults(args));
        argv.push(secret.to_hex());
        let binds = argv.iter().filter(|a| *a == "--bind").count();

        let mut child = Command::new(bin.as_ref())
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let output = Output::new();
        collect(
            child.stdout.take().expect("piped"),
            "stdout: ",
            output.clone(),
        );
        collect(child.stderr.take().expect("piped"), "", output.clone());

        let end = Instant::now() + START_TIMEOUT;
        let mut state = output.state.lock().unwrap();
        loop {
            let addrs: Vec<SocketAddr> = state
                .lines
                .iter()
                .filter_map(|l| listening_addr(l))
                .collect();
            if addrs.len() >= binds {
                drop(state);
                return Ok(Feint {
                    child,
                    addrs,
                    output,
                    argv,
                });
            }
            let now = Instant::now();
            if state.open == 0 || now >= end {
                let text = state.lines.join("\n");
                drop(state);
                let _ = child.kill();
                let status = child.wait().ok();
                return Err(io::Error::other(format!(
                    "feint {argv:?} did not print {binds} listening line(s) (exit {status:?}):\n{text}"
                )));
            }
            let wait = (end - now).min(Duration::from_millis(100));
            state = output.changed.wait_timeout(state, wait).unwrap().0;
        }
    }

    /// The first bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Everything printed so far, stdout lines prefixed `stdout: `.
    pub fn output(&self) -> String {
        self.output.state.lock().unwrap().lines.join("\n")
    }

    /// Waits up to `timeout` for an output line containing `needle`; returns that line.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        let mut state = self.output.state.lock().unwrap();
        loop {
            if let Some(line) = state.lines.iter().find(|line| line.contains(needle)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= end || state.open == 0 {
                return None;
            }
            state = self
                .output
                .changed
                .wait_timeout(state, end - now)
                .unwrap()
                .0;
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill with a pid of our own child and a valid signal number.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_exit(&mut self.child, timeout)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Waits up to `timeout` for `child` to exit; polls, since std has no timed wait.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    for _ in 0..100_000 {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Runs `bin ARGS` to completion with a deadline; returns status and combined output, killing
/// the process if it outlives the deadline.
pub fn run_to_exit(
    bin: impl AsRef<Path>,
    args: &[String],
    timeout: Duration,
) -> io::Result<(Option<ExitStatus>, String)> {
    let mut child = Command::new(bin.as_ref())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let output = Output::new();
    collect(
        child.stdout.take().expect("piped"),
        "stdout: ",
        output.clone(),
    );
    collect(child.stderr.take().expect("piped"), "", output.clone());
    let status = wait_exit(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes close at exit; give the reader threads a bounded moment to drain.
    let end = Instant::now() + Duration::from_secs(2);
    let mut state = output.state.lock().unwrap();
    while state.open > 0 && Instant::now() < end {
        state = output
            .changed
            .wait_timeout(state, Duration::from_millis(50))
            .unwrap()
            .0;
    }
    let text = state.lines.join("\n");
    Ok((status, text))
}

/// The feint binary for tests: `FEINT_BIN` if set, else the given default (the caller passes
/// `env!("CARGO_BIN_EXE_feint")`).
pub fn binary(default: &str) -> PathBuf {
    std::env::var_os("FEINT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

impl Drop for Feint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
