//! Reads and writes mapped once to an outcome, so sessions never look at an `io::ErrorKind`.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// What one read or write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Moved this many bytes (never 0).
    Progress(usize),
    /// Nothing now; wait for the next readiness event.
    WouldBlock,
    /// Read: the peer sent FIN. Write: the peer no longer takes bytes.
    Closed,
    /// The connection is broken (reset, timeout, ...).
    Failed,
}

fn map(result: io::Result<usize>) -> Outcome {
    match result {
        Ok(0) => Outcome::Closed,
        Ok(n) => Outcome::Progress(n),
        Err(e) => match e.kind() {
            io::ErrorKind::WouldBlock => Outcome::WouldBlock,
            io::ErrorKind::BrokenPipe | io::ErrorKind::NotConnected => Outcome::Closed,
            _ => Outcome::Failed,
        },
    }
}

/// One read, retried on EINTR.
pub fn read(stream: &mut TcpStream, buf: &mut [u8]) -> Outcome {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return map(result),
        }
    }
}

/// One write, retried on EINTR.
pub fn write(stream: &mut TcpStream, buf: &[u8]) -> Outcome {
    loop {
        match stream.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return map(result),
        }
    }
}

/// Whether an outgoing connect has finished, failed, or is still under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectState {
    Connected,
    Pending,
    Failed,
}

/// Called on a writable event of a connecting socket (mio's documented check).
pub fn connect_state(stream: &TcpStream) -> ConnectState {
    match stream.take_error() {
        Ok(Some(_)) | Err(_) => return ConnectState::Failed,
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => ConnectState::Connected,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectState::Pending,
        Err(_) => ConnectState::Failed,
    }
}
