//! `Net` over real mio sockets: every system call the connection core asks for, with
//! `io::ErrorKind` mapped once to an `Outcome`, so the core never looks at one.

use std::io::{self, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::net::{CloseStyle, ConnectState, Net, Outcome};
use super::shared::Shared;
use super::sys;

pub struct MioNet {
    pub registry: Registry,
    pub shared: Arc<Shared>,
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

/// Runs `call` again while it fails with EINTR.
fn retry(mut call: impl FnMut() -> io::Result<usize>) -> Outcome {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return map(result),
        }
    }
}

impl Net for MioNet {
    type Stream = TcpStream;

    fn register(&mut self, stream: &mut TcpStream, token: Token) -> bool {
        self.registry
            .register(stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_ok()
    }

    fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> Outcome {
        retry(|| stream.read(buf))
    }

    fn read_vectored(&mut self, stream: &mut TcpStream, bufs: &mut [IoSliceMut<'_>]) -> Outcome {
        retry(|| stream.read_vectored(bufs))
    }

    fn peek(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> Outcome {
        retry(|| stream.peek(buf))
    }

    fn write(&mut self, stream: &mut TcpStream, buf: &[u8]) -> Outcome {
        retry(|| stream.write(buf))
    }

    fn shutdown_write(&mut self, stream: &mut TcpStream) {
        let _ = stream.shutdown(Shutdown::Write);
    }

    fn dial(&mut self, address: SocketAddr, token: Token, watch: bool) -> Option<TcpStream> {
        let mut stream = TcpStream::connect(address).ok()?;
        if !self.register(&mut stream, token) {
            return None;
        }
        // Remembered so that, if this connection comes back to one of our own listeners, the
        // loop recognises itself (a front name that resolves to this machine behind 1:1 NAT).
        if watch {
            if let Ok(local) = stream.local_addr() {
                self.shared.own_dials.note(local, address);
            }
        }
        Some(stream)
    }

    /// Called on a writable event of a connecting socket (mio's documented check).
    fn connect_state(&mut self, stream: &mut TcpStream) -> ConnectState {
        match stream.take_error() {
            Ok(Some(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return ConnectState::Refused
            }
            Ok(Some(_)) | Err(_) => return ConnectState::Failed,
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => {
                let _ = stream.set_nodelay(true);
                ConnectState::Connected
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectState::Pending,
            Err(_) => ConnectState::Failed,
        }
    }

    fn local_address(&mut self, stream: &mut TcpStream) -> Option<SocketAddr> {
        stream.local_addr().ok()
    }

    fn client_verified(&mut self, stream: &mut TcpStream) {
        let _ = sys::set_keepalive(stream, self.shared.idle_timeout);
    }

    fn dialled_itself(&mut self, stream: &mut TcpStream) -> bool {
        stream
            .local_addr()
            .is_ok_and(|local| self.shared.own_dials.looped(local))
    }

    /// Closing the descriptor also takes it out of epoll (feint never duplicates one), so
    /// there is no deregister call; and only while a front dial is remembered is there a
    /// local address to look up.
    fn close(&mut self, stream: TcpStream, style: CloseStyle) {
        if !self.shared.own_dials.is_empty() {
            if let Ok(local) = stream.local_addr() {
                self.shared.own_dials.forget(local);
            }
        }
        if style == CloseStyle::Reset {
            let _ = sys::set_linger_zero(&stream);
        }
    }
}
