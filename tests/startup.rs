//! What `feint run` prints and refuses at start: the links for each public address, the hint
//! when it has none, and a port that another process already holds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use feint_testkit::{feint, qr, Feint, Secret};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

/// Waits (bounded) until feint has printed a line containing `needle`; returns all its output.
fn wait_for(feint: &Feint, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    for _ in 0..1000 {
        let output = feint.output();
        if output.contains(needle) || Instant::now() >= deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    feint.output()
}

#[test]
fn loopback_listener_without_public_prints_the_hint_and_no_link() {
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(bin(), &secret, &[]).unwrap();
    let output = wait_for(&feint, "pass --public");
    assert!(output.contains("pass --public ADDR[:PORT]"), "{output}");
    assert!(!output.contains("tg://"), "{output}");
}

#[test]
fn every_public_address_gets_links_with_the_bound_port() {
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(
        bin(),
        &secret,
        &args(&["--public", "203.0.113.7", "--public", "[2001:db8::1]:8443"]),
    )
    .unwrap();
    let output = wait_for(&feint, "https://t.me/proxy?server=2001");
    let port = feint.addr().port();
    let hex = secret.to_hex();
    for link in [
        format!("tg://proxy?server=203.0.113.7&port={port}&secret={hex}"),
        format!("https://t.me/proxy?server=203.0.113.7&port={port}&secret={hex}"),
        format!("tg://proxy?server=2001%3Adb8%3A%3A1&port=8443&secret={hex}"),
        format!("https://t.me/proxy?server=2001%3Adb8%3A%3A1&port=8443&secret={hex}"),
    ] {
        assert!(output.lines().any(|line| line == link), "{link}\n{output}");
    }
    assert!(!output.contains("pass --public"), "{output}");
}

#[test]
fn run_qr_draws_the_tg_link_as_a_code_that_scans() {
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(bin(), &secret, &args(&["--qr", "--public", "203.0.113.7"])).unwrap();
    let output = wait_for(&feint, "memory: ");
    let link = format!(
        "tg://proxy?server=203.0.113.7&port={}&secret={}",
        feint.addr().port(),
        secret.to_hex()
    );
    assert!(output.lines().any(|line| line == link), "{output}");
    assert_eq!(qr::decode_all(&output), [link], "{output}");
}

#[test]
fn start_up_lines_count_in_the_singular_and_the_plural() {
    let secret = Secret::random(DOMAIN);
    let one = Feint::start(
        bin(),
        &secret,
        &args(&["--threads", "1", "--max-connections", "1"]),
    )
    .unwrap();
    let output = wait_for(&one, "memory: ");
    assert!(output.contains("(1 loop; "), "{output}");
    assert!(output.contains(" for 1 connection, "), "{output}");
    let two = Feint::start(
        bin(),
        &secret,
        &args(&["--threads", "2", "--max-connections", "2"]),
    )
    .unwrap();
    let output = wait_for(&two, "memory: ");
    assert!(output.contains("(2 loops; "), "{output}");
    assert!(output.contains(" for 2 connections, "), "{output}");
}

#[test]
fn more_threads_than_connections_are_capped_and_said() {
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(
        bin(),
        &secret,
        &args(&[
            "--threads",
            "1000",
            "--max-connections",
            "3",
            "--buffers",
            "4",
        ]),
    )
    .unwrap();
    let output = wait_for(&feint, "memory: ");
    assert!(
        output.contains("feint: running 3 event loops instead of 1000: each loop needs at least one of the 3 connections"),
        "{output}"
    );
    assert!(
        output
            .contains("feint: --buffers 4 raised to 6: each of the 3 event loops needs at least 2"),
        "{output}"
    );
    assert!(output.contains("(3 loops; "), "{output}");
    assert!(output.contains(" for 3 connections, "), "{output}");
}

/// A second feint on the port of a running one would join its SO_REUSEPORT group, and the
/// kernel would split clients between two secrets: it must refuse to start instead.
#[test]
fn second_feint_on_the_same_port_refuses_to_start() {
    let first = Feint::start(bin(), &Secret::random(DOMAIN), &[]).unwrap();
    let address = first.addr().to_string();
    let second = Secret::random(DOMAIN);
    let argv = args(&[
        "run",
        "--bind",
        &address,
        "--front",
        feint::NOWHERE,
        &second.to_hex(),
    ]);
    let (status, output) = feint::run_to_exit(bin(), &argv, WAIT).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{output}");
    let expected = format!(
        "feint: bind {address}: Address already in use (os error 98); another process \
         (another feint, or another server) holds it: stop that one or choose another --bind"
    );
    assert_eq!(output, expected);
}

/// The lowest port an unprivileged user may bind, from the kernel.
fn unprivileged_port_start() -> Option<u16> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").ok()?;
    text.trim().parse().ok()
}

/// Binding a low port without the right to says how to get it. As root the test drops to
/// user 65534 with setpriv (util-linux).
#[test]
fn low_port_without_the_right_names_the_fixes() {
    let Some(start) = unprivileged_port_start().filter(|&start| start > 443) else {
        eprintln!("skipped: this kernel lets every user bind port 443");
        return;
    };
    assert!(start > 443);
    let secret = Secret::random(DOMAIN);
    let binary = bin().display().to_string();
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let (program, mut argv) = if as_root {
        let drop_root = ["--reuid=65534", "--regid=65534", "--clear-groups", &binary];
        ("setpriv".to_owned(), args(&drop_root))
    } else {
        (binary.clone(), Vec::new())
    };
    argv.extend(args(&[
        "run",
        "--bind",
        "127.0.0.1:443",
        "--front",
        feint::NOWHERE,
        &secret.to_hex(),
    ]));
    let (status, output) = feint::run_to_exit(&program, &argv, WAIT).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{output}");
    assert!(
        output.starts_with("feint: bind 127.0.0.1:443: Permission denied"),
        "{output}"
    );
    for fix in [
        "scripts/feint.service",
        &format!("`setcap cap_net_bind_service=+ep {binary}`"),
        "a port from 1024 up",
    ] {
        assert!(output.contains(fix), "{fix}: {output}");
    }
}

/// `--client-mss`: the listener announces the segment size, so a client's segments to feint
/// are no larger (the kernel leaves room for TCP options inside it).
#[test]
fn client_mss_caps_the_segments_clients_send() {
    use std::os::fd::AsRawFd;
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(bin(), &secret, &args(&["--client-mss", "536"])).unwrap();
    let stream = std::net::TcpStream::connect_timeout(&feint.addr(), WAIT).unwrap();
    let mut mss: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mss` and `len` are valid places for the option and its length.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mut mss as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(result, 0);
    assert!(
        mss > 0 && mss <= 536,
        "the client's segments are {mss} bytes"
    );
    let plain = Feint::start(bin(), &secret, &[]).unwrap();
    let other = std::net::TcpStream::connect_timeout(&plain.addr(), WAIT).unwrap();
    let mut plain_mss: libc::c_int = 0;
    // SAFETY: as above.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::getsockopt(
            other.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mut plain_mss as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(result, 0);
    assert!(
        plain_mss > 536,
        "without the flag segments are loopback's ({plain_mss})"
    );
}
