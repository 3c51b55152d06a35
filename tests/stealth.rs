//! What a censor's prober sees of time and shape, side by side with nginx for the same input:
//! a connection that never completes a hello ends when and how nginx ends it, counted from the
//! connect, because feint dials the front at accept and mirrors its close.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use feint_testkit::nginx::HEADER_TIMEOUT_SECONDS;
use feint_testkit::{ClientOptions, Feint, Nginx, Secret};

const DOMAIN: &str = "www.example.com";
/// Longer than nginx's header timeout and feint's handshake timeout, so both have acted.
const WAIT: Duration = Duration::from_secs(HEADER_TIMEOUT_SECONDS + 12);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_feint"))
}

/// How a connection ended, and when, counted from the connect.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Close {
    Fin,
    Reset,
    StillOpen,
}

/// Connects, sends `bytes` (then FIN if asked), and reads until the server closes.
fn close_after(address: SocketAddr, bytes: &[u8], fin: bool) -> (Close, Duration, Vec<u8>) {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&address, WAIT).expect("connects");
    if !bytes.is_empty() {
        stream.write_all(bytes).expect("sends");
    }
    if fin {
        stream.shutdown(Shutdown::Write).expect("half-closes");
    }
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    for _ in 0..10_000 {
        let left = WAIT.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (Close::StillOpen, start.elapsed(), answer);
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (Close::Fin, start.elapsed(), answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (Close::Reset, start.elapsed(), answer)
            }
            Err(_) => return (Close::StillOpen, start.elapsed(), answer),
        }
    }
    (Close::StillOpen, start.elapsed(), answer)
}

/// The same input to nginx and through feint, at the same time; the closes must match in kind
/// and bytes and be within a second of each other.
fn assert_same_close(nginx: &Nginx, feint: &Feint, bytes: &[u8], fin: bool, case: &str) {
    let direct_address = nginx.tls_addr;
    let copy = bytes.to_vec();
    let direct = thread::spawn(move || close_after(direct_address, &copy, fin));
    let (via_close, via_time, via_bytes) = close_after(feint.addr(), bytes, fin);
    let (direct_close, direct_time, direct_bytes) = direct.join().expect("direct probe");
    assert_eq!(
        (via_close, via_bytes.len()),
        (direct_close, direct_bytes.len()),
        "{case}: nginx closed {direct_close:?} after {direct_time:?}, feint {via_close:?} after {via_time:?}\n{}",
        feint.output()
    );
    let gap = via_time.max(direct_time) - via_time.min(direct_time);
    assert!(
        gap <= Duration::from_secs(1),
        "{case}: nginx closed after {direct_time:?}, feint after {via_time:?}"
    );
}

#[test]
fn probes_that_never_finish_a_hello_are_closed_as_nginx_closes_them() {
    let secret = Secret::random(DOMAIN);
    let nginx = Nginx::start(DOMAIN).unwrap();
    // feint's own handshake timeout is longer than nginx's, as it is by default (10 s).
    let args = [
        "--front".to_string(),
        nginx.tls_addr.to_string(),
        "--handshake-timeout".to_string(),
        "10s".to_string(),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let hello = ClientOptions::default().hello(&secret);
    let partial = &hello[..150];
    let cases: [(&str, &[u8], bool); 3] = [
        ("silent", b"", false),
        ("partial hello, then silence", partial, false),
        ("partial hello, then FIN", partial, true),
    ];
    for (case, bytes, fin) in cases {
        assert_same_close(&nginx, &feint, bytes, fin, case);
    }
}
