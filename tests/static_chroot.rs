//! Proves the static musl binary needs nothing but itself, as in the `FROM scratch` image: it is
//! copied alone into an empty directory and run there under `chroot`. Needs root and
//! `scripts/build-static` (or `FEINT_STATIC_BIN`); without them each test says why and skips.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use feint::secret::Secret;

const DEFAULT_STATIC_BIN: &str = "target/x86_64-unknown-linux-musl/release/feint";
/// Bounds the wait for the startup line; a healthy start takes milliseconds.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// An empty directory holding only the binary as `/feint`; removed on drop.
struct Jail {
    root: PathBuf,
}

impl Jail {
    /// `None`, with the reason printed, when the binary is missing or chroot is not allowed.
    fn new(name: &str) -> Option<Jail> {
        let binary = std::env::var_os("FEINT_STATIC_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_STATIC_BIN));
        if !binary.is_file() {
            eprintln!(
                "skipping: no static binary at {}; run scripts/build-static or set FEINT_STATIC_BIN",
                binary.display()
            );
            return None;
        }
        let root = std::env::temp_dir().join(format!("feint-chroot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).expect("create the chroot directory");
        std::fs::copy(&binary, root.join("feint")).expect("copy the binary into the chroot");
        let jail = Jail { root };
        // Nothing else is inside, so `--version` succeeding shows the binary needs no loader,
        // libc or /etc; a refused chroot means we are not root.
        // Another test thread may fork while the copy's write descriptor is open; until its
        // child execs, running the copy fails with ETXTBSY. Bounded retries ride that out.
        let mut probe = jail.command(&["--version"]).output();
        for _ in 0..20 {
            match &probe {
                Ok(output)
                    if String::from_utf8_lossy(&output.stderr).contains("Text file busy") =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                    probe = jail.command(&["--version"]).output();
                }
                _ => break,
            }
        }
        match probe {
            Ok(output) if output.status.success() => Some(jail),
            Ok(output)
                if String::from_utf8_lossy(&output.stderr).contains("Operation not permitted") =>
            {
                eprintln!("skipping: chroot needs root");
                None
            }
            Ok(output) => panic!(
                "the static binary does not run alone in a chroot: {:?} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => {
                eprintln!("skipping: cannot run chroot: {error}");
                None
            }
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("chroot");
        command.arg(&self.root).arg("/feint").args(args);
        command
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Kills the child when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn generate_secret(jail: &Jail) -> String {
    let output = jail
        .command(&["generate-secret", "example.com"])
        .output()
        .expect("run generate-secret in the chroot");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 output");
    let secret = text.trim_end().to_owned();
    let parsed = Secret::parse(&secret).expect("the secret parses");
    assert_eq!(parsed.domain, "example.com");
    secret
}

#[test]
fn static_binary_generates_a_secret_alone_in_a_chroot() {
    let Some(jail) = Jail::new("generate") else {
        return;
    };
    // getrandom works without /dev: the secret came from the getrandom(2) system call.
    let first = generate_secret(&jail);
    assert_ne!(first, generate_secret(&jail));
}

#[test]
fn static_binary_listens_alone_in_a_chroot() {
    let Some(jail) = Jail::new("run") else {
        return;
    };
    let secret = generate_secret(&jail);
    let mut child = jail
        .command(&["run", "--bind", "127.0.0.1:0", &secret])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start feint run in the chroot");
    let stderr = child.stderr.take().expect("stderr is piped");
    let child = KillOnDrop(child);

    // A thread reads lines so the wait below can have a deadline.
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + STARTUP_DEADLINE;
    let mut seen = Vec::new();
    let address: SocketAddr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                if let Some(address) = line
                    .split_once("listening on ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|address| address.parse().ok())
                {
                    break address;
                }
                seen.push(line);
            }
            Err(_) => {
                panic!("no `listening on` line within {STARTUP_DEADLINE:?}; stderr: {seen:?}")
            }
        }
    };
    assert!(
        address.ip().is_loopback() && address.port() != 0,
        "{address}"
    );
    TcpStream::connect_timeout(&address, STARTUP_DEADLINE).expect("connect to the listener");
    drop(child);
}
