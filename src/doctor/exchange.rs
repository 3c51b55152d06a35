//! One bounded request and answer over a blocking TCP socket, and a name lookup that cannot
//! hang: what every doctor check is built from.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Connecting, and the whole exchange after it.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Once an answer has started, this much silence ends it: a TLS server sends its first flight
/// at once and then waits for the client.
const QUIET: Duration = Duration::from_millis(500);
/// More than any first flight or error page.
const MAX_ANSWER_LEN: usize = 64 * 1024;
const MAX_READS: usize = 1000;
/// The resolver's own timeouts can add up to tens of seconds; doctor waits this long.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `address` within TIMEOUT, with read and write timeouts of TIMEOUT.
pub fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends `request` to `address` and reads the answer until the peer closes, goes quiet, or
/// TIMEOUT or MAX_ANSWER_LEN is reached. An answer cut short by a reset is kept.
pub fn exchange(address: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = connect(address)?;
    stream.write_all(request)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut answer = vec![0; MAX_ANSWER_LEN];
    let mut len = 0;
    for _ in 0..MAX_READS {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if len == 0 { left } else { QUIET.min(left) };
        if wait.is_zero() || len == answer.len() {
            break;
        }
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut answer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) if len == 0 => return Err(e),
            Err(_) => break,
        }
    }
    answer.truncate(len);
    Ok(answer)
}

/// Reads one whole TLS record (header and payload) from `stream`, at most `max_payload` bytes
/// of payload.
pub fn read_record(stream: &mut TcpStream, max_payload: usize) -> io::Result<Vec<u8>> {
    let mut header = [0; 5];
    stream.read_exact(&mut header)?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > max_payload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {len}-byte record"),
        ));
    }
    let mut record = header.to_vec();
    record.resize(5 + len, 0);
    stream.read_exact(&mut record[5..])?;
    Ok(record)
}

/// `host:port`'s addresses, or why there are none; gives up after RESOLVE_TIMEOUT (the lookup
/// thread is left to finish on its own).
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let (sender, receiver) = mpsc::channel();
    let name = host.to_owned();
    let spawned = thread::Builder::new()
        .name("feint-doctor-resolve".into())
        .spawn(move || {
            let result = (name.as_str(), port)
                .to_socket_addrs()
                .map(|addresses| addresses.take(16).collect::<Vec<_>>());
            let _ = sender.send(result);
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start a lookup: {e}"));
    }
    match receiver.recv_timeout(RESOLVE_TIMEOUT) {
        Ok(Ok(addresses)) if addresses.is_empty() => Err("no address".into()),
        Ok(Ok(addresses)) => Ok(addresses),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())),
    }
}

/// `1.2.3.4, 2001:db8::1`: the IP addresses alone, each once.
pub fn list_ips(addresses: &[SocketAddr]) -> String {
    let mut ips: Vec<String> = Vec::new();
    for address in addresses {
        let ip = address.ip().to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips.join(", ")
}
