//! Raw TCP exchanges with bounded waits, and helpers to compare answers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a read loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer closed cleanly.
    Eof,
    /// The peer reset the connection.
    Reset,
    /// Nothing arrived for the quiet period.
    Quiet,
    /// The overall deadline passed while data still flowed.
    Deadline,
}

/// Reads until EOF, a reset, `quiet` without data, or `total` in all.
pub fn read_until_quiet(
    stream: &mut TcpStream,
    quiet: Duration,
    total: Duration,
) -> (Vec<u8>, Ending) {
    let end = Instant::now() + total;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= end {
            return (out, Ending::Deadline);
        }
        let wait = quiet.min(end - now).max(Duration::from_millis(1));
        if stream.set_read_timeout(Some(wait)).is_err() {
            return (out, Ending::Reset);
        }
        match stream.read(&mut buf) {
            Ok(0) => return (out, Ending::Eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= end {
                    return (out, Ending::Deadline);
                }
                return (out, Ending::Quiet);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (out, Ending::Reset),
        }
    }
}

/// Connects, writes `bytes`, half-closes if `half_close`, and reads as [`read_until_quiet`].
pub fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    half_close: bool,
    quiet: Duration,
    total: Duration,
) -> io::Result<(Vec<u8>, Ending)> {
    let mut stream = TcpStream::connect_timeout(&addr, total)?;
    stream.set_write_timeout(Some(total))?;
    stream.set_nodelay(true)?;
    stream.write_all(bytes)?;
    if half_close {
        stream.shutdown(Shutdown::Write)?;
    }
    Ok(read_until_quiet(&mut stream, quiet, total))
}

/// The answer with the value of every `Date:` header line replaced by `*`, so two answers from
/// the same server taken a second apart compare equal.
pub fn mask_date(answer: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(answer.len());
    let mut rest = answer;
    let mut in_headers = true;
    while !rest.is_empty() {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(rest.len(), |p| p + 2);
        let line = &rest[..line_end];
        if in_headers && line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"date:") {
            out.extend_from_slice(b"Date: *\r\n");
        } else {
            out.extend_from_slice(line);
        }
        if line == b"\r\n" {
            in_headers = false;
        }
        rest = &rest[line_end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_only_the_date_header() {
        let a = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 12:00:00 GMT\r\n\r\nDate: body";
        assert_eq!(
            mask_date(a),
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: *\r\n\r\nDate: body".to_vec()
        );
    }
}
