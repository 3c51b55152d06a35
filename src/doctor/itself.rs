//! The censor's view of a running feint: probes without the secret must get what the same
//! probe gets from the front (HTTP with the Date header masked, TLS by record types and
//! lengths), and a genuine hello must get a reply that verifies (docs/PROTOCOL.md §3.3).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use super::exchange::{connect, exchange, read_record, resolve, TIMEOUT};
use super::{human, Finding};
use crate::proto::front_flight::{self, CLIENT_HELLO_RANDOM_LEN, MAX_CLIENT_HELLO_LEN};
use crate::proto::record::{APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE, HEADER_LEN};
use crate::proto::{hello, server_hello};
use crate::settings::Config;

/// A stale hello is signed this long ago: far outside any sane --time-skew.
const STALE_BY: u32 = 60 * 60;
/// RFC 8446 §5.2: the largest encrypted record.
const MAX_RECORD_PAYLOAD: usize = 16640;
/// ApplicationData lengths may differ by this much between two answers of the same server:
/// an ECDSA signature varies by a byte or two.
const RECORD_LEN_SLACK: usize = 16;
/// Records named when two answers differ.
const MAX_RECORDS_SHOWN: usize = 6;

const FIX: &str = "a censor can tell this port from the front: check that --front names the \
                   site feint fronts to and that the process on the port is feint";

pub fn check(config: &Config, running: Option<SocketAddr>) -> Vec<Finding> {
    let Some(address) = running else {
        let binds: Vec<String> = config.binds.iter().map(|b| b.to_string()).collect();
        return vec![Finding::warn(
            "itself",
            format!(
                "nothing listens on {}: the censor's view was not checked",
                binds.join(", ")
            ),
            "start `feint run` with these options and run doctor again",
        )];
    };
    let front = match resolve(&config.front.host, config.front.port) {
        Ok(addresses) => addresses[0],
        Err(e) => {
            return vec![Finding::warn(
                "itself",
                format!("cannot compare {address} with the front: {e}"),
                "fix the front first (see the front line)",
            )]
        }
    };
    let domain = config.secret.domain.as_str();
    let http = format!(
        "GET / HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes();
    let random_hello = tdlib_hello(domain);
    let stale_hello = tdlib_hello(domain).and_then(|mut record| {
        let then = unix_now().saturating_sub(STALE_BY);
        hello::sign(&mut record, &config.secret.key, then).ok_or("cannot sign a hello")?;
        Ok(record)
    });
    thread::scope(|scope| {
        let probes = [
            ("plain HTTP", Ok(http), Kind::Http),
            ("hello with a random digest", random_hello, Kind::Tls),
            ("hello signed an hour ago", stale_hello, Kind::Tls),
        ]
        .map(|(name, request, kind)| {
            scope.spawn(move || match request {
                Ok(request) => compare(name, kind, address, front, &request),
                Err(e) => Finding::warn("itself", format!("{name}: {e}"), "report this bug"),
            })
        });
        let genuine = scope.spawn(|| match genuine(address, config) {
            Ok(()) => Finding::ok("itself", "a genuine hello gets a reply that verifies"),
            Err(why) => Finding::fail(
                "itself",
                format!("a genuine hello gets no reply that verifies: {why}"),
                "clients with this secret would fail: the process on the port is not a feint \
                 with this secret",
            ),
        });
        probes
            .into_iter()
            .chain([genuine])
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Finding::fail(
                        "itself",
                        "a probe stopped with an internal error",
                        "report this bug",
                    )
                })
            })
            .collect()
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Http,
    Tls,
}

fn compare(
    name: &str,
    kind: Kind,
    address: SocketAddr,
    front: SocketAddr,
    request: &[u8],
) -> Finding {
    let theirs = match exchange(front, request) {
        Ok(answer) => answer,
        Err(e) => {
            return Finding::warn(
                "itself",
                format!("{name}: the front {front} does not answer ({e}), nothing to compare"),
                "fix the front first (see the front line)",
            )
        }
    };
    let ours = match exchange(address, request) {
        Ok(answer) => answer,
        Err(e) => {
            return Finding::fail(
                "itself",
                format!("{name}: {address} does not answer: {e}"),
                FIX,
            )
        }
    };
    let (same, how) = match kind {
        Kind::Http => (mask_date(&ours) == mask_date(&theirs), "Date masked"),
        Kind::Tls => (
            same_records(&ours, &theirs),
            "same record types and lengths",
        ),
    };
    if same {
        Finding::ok(
            "itself",
            format!(
                "{name}: answered as the front answers ({} bytes, {how})",
                ours.len()
            ),
        )
    } else {
        Finding::fail(
            "itself",
            format!(
                "{name}: {address} answers {}, the front {}",
                describe(&ours),
                describe(&theirs)
            ),
            FIX,
        )
    }
}

/// Sends a hello signed with the secret and now, and checks the three records of the reply.
pub fn genuine(address: SocketAddr, config: &Config) -> Result<(), String> {
    let mut record = tdlib_hello(&config.secret.domain)?;
    let client_random =
        hello::sign(&mut record, &config.secret.key, unix_now()).ok_or("cannot sign a hello")?;
    let mut stream = connect(address).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .write_all(&record)
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut reply = Vec::new();
    for expected in [HANDSHAKE, CHANGE_CIPHER_SPEC, APPLICATION_DATA] {
        let record = read_record(&mut stream, MAX_RECORD_PAYLOAD).map_err(|e| {
            let why = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    format!("nothing more within {}", human(TIMEOUT))
                }
                _ => e.to_string(),
            };
            format!("the reply stops after {} bytes ({why})", reply.len())
        })?;
        if record.first() != Some(&expected) {
            return Err(format!("the reply is {}", describe(&record)));
        }
        reply.extend(record);
    }
    if server_hello::verifies(&reply, &client_random, &config.secret.key) {
        Ok(())
    } else {
        Err("its server random does not verify with this secret".into())
    }
}

/// A hello shaped like TDLib's for `domain`, its random unsigned.
fn tdlib_hello(domain: &str) -> Result<Vec<u8>, String> {
    let mut random = [0; CLIENT_HELLO_RANDOM_LEN];
    getrandom::getrandom(&mut random).map_err(|e| e.to_string())?;
    let mut record = vec![0; MAX_CLIENT_HELLO_LEN];
    let len = front_flight::client_hello(&mut record, domain.as_bytes(), &random)
        .ok_or("the domain cannot go into a hello")?;
    record.truncate(len);
    Ok(record)
}

/// An HTTP answer with the value of its Date header replaced, so two answers a second apart
/// compare equal.
fn mask_date(answer: &[u8]) -> Vec<u8> {
    const DATE: &[u8] = b"\r\ndate:";
    let mut masked = answer.to_vec();
    let Some(start) = masked
        .windows(DATE.len())
        .position(|w| w.eq_ignore_ascii_case(DATE))
    else {
        return masked;
    };
    let value = start + DATE.len();
    let end = masked[value..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(masked.len(), |at| value + at);
    masked.splice(value..end, *b" *");
    masked
}

/// The TLS records in `bytes` (type, payload length) up to the first byte that cannot start
/// one, or a partial record at the end.
fn records(bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut found = Vec::new();
    let mut rest = bytes;
    while let Some(header) = rest.get(..HEADER_LEN) {
        let kind = header[0];
        if !(CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&kind) || header[1] != 3 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(after) = rest.get(HEADER_LEN + len..) else {
            break;
        };
        found.push((kind, len));
        rest = after;
    }
    found
}

/// Two TLS answers look the same on the wire: the same records in the same order, the
/// lengths equal but for ApplicationData, which may differ by RECORD_LEN_SLACK. Answers that
/// are not TLS must be equal byte for byte.
fn same_records(ours: &[u8], theirs: &[u8]) -> bool {
    let (a, b) = (records(ours), records(theirs));
    if a.is_empty() || b.is_empty() {
        return ours == theirs;
    }
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(&(kind_a, len_a), &(kind_b, len_b))| {
                kind_a == kind_b
                    && match kind_a {
                        APPLICATION_DATA => len_a.abs_diff(len_b) <= RECORD_LEN_SLACK,
                        _ => len_a == len_b,
                    }
            })
}

/// `TLS records 22:122 20:1 23:2600`, or `12 bytes "HTTP/1.1 400"` for what is not TLS.
fn describe(answer: &[u8]) -> String {
    let found = records(answer);
    if found.is_empty() {
        let line = answer
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        let shown: String = line
            .iter()
            .take(40)
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        return format!("{} bytes \"{shown}\"", answer.len());
    }
    let mut text = "TLS records".to_owned();
    for (kind, len) in found.iter().take(MAX_RECORDS_SHOWN) {
        text.push_str(&format!(" {kind}:{len}"));
    }
    if found.len() > MAX_RECORDS_SHOWN {
        text.push_str(" ...");
    }
    text
}

fn unix_now() -> u32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_date_header_whatever_its_case() {
        let a = b"HTTP/1.1 400 Bad\r\nServer: x\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\nbody";
        let b = b"HTTP/1.1 400 Bad\r\nServer: x\r\ndate: Mon, 01 Jan 2024 00:00:01 GMT\r\n\r\nbody";
        assert_eq!(
            mask_date(a),
            b"HTTP/1.1 400 Bad\r\nServer: x\r\nDate: *\r\n\r\nbody"
        );
        assert_ne!(mask_date(a), mask_date(b"HTTP/1.1 400 Bad\r\n\r\nbody"));
        assert_eq!(mask_date(b"no header"), b"no header");
        assert_eq!(mask_date(b"x\r\nDate: cut"), b"x\r\nDate: *");
        assert_eq!(mask_date(b).len(), mask_date(a).len());
    }

    #[test]
    fn tls_answers_match_by_record_types_and_lengths() {
        let record = |kind: u8, len: usize| {
            let mut r = vec![kind, 3, 3];
            r.extend((len as u16).to_be_bytes());
            r.extend(vec![0x5a; len]);
            r
        };
        let answer = |cert: usize| [record(22, 122), record(20, 1), record(23, cert)].concat();
        assert!(same_records(&answer(2600), &answer(2600)));
        assert!(same_records(&answer(2600), &answer(2601)));
        assert!(!same_records(&answer(2600), &answer(3000)));
        assert!(!same_records(&answer(2600), &answer(2600)[..200]));
        assert!(!same_records(&answer(2600), b"HTTP/1.1 400"));
        assert!(same_records(b"HTTP/1.1 400", b"HTTP/1.1 400"));
        assert_eq!(records(&answer(10)[..140]), [(22, 122), (20, 1)]);
        assert_eq!(describe(&answer(10)), "TLS records 22:122 20:1 23:10");
        assert_eq!(describe(b"HTTP/1.1 400\r\n"), "14 bytes \"HTTP/1.1 400\"");
    }
}
