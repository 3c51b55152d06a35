//! What the connection core may ask of the network, and the outcomes it gets back. The event
//! loop implements `Net` with mio sockets (`socket.rs`); the simulation tests implement it with
//! in-memory sockets, a fake clock and a seed. The core never makes a system call itself.

use std::io::IoSliceMut;
use std::net::SocketAddr;

use mio::Token;

/// What one read, peek or write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Moved (or, for a peek, saw) this many bytes; never 0.
    Progress(usize),
    /// Nothing now; readiness is reported again when that changes.
    WouldBlock,
    /// Read: the peer sent FIN and every byte before it was read. Write: the peer takes no more.
    Closed,
    /// The connection is broken (reset, timeout, ...).
    Failed,
}

/// Whether an outgoing connect has finished, failed, or is still under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectState {
    Connected,
    Pending,
    /// The peer answered with a reset (ECONNREFUSED).
    Refused,
    Failed,
}

/// How a socket is closed: with FIN, or with RST to pass a peer's reset on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseStyle {
    Graceful,
    Reset,
}

/// The two sockets of a connection: the client, and the upstream (the DC or the front).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// Readiness that an event reported for one socket of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer's FIN (or an error) has arrived: read on to the end, whatever the read sizes.
    pub hung_up: bool,
}

/// The sockets of one event loop, as the connection core sees them.
pub trait Net {
    type Stream;

    /// Starts reporting readiness of `stream` under `token`. False when that failed.
    fn register(&mut self, stream: &mut Self::Stream, token: Token) -> bool;
    fn read(&mut self, stream: &mut Self::Stream, buf: &mut [u8]) -> Outcome;
    /// One read into several slices, filled in order (readv).
    fn read_vectored(&mut self, stream: &mut Self::Stream, bufs: &mut [IoSliceMut<'_>]) -> Outcome;
    /// Like `read`, but the bytes stay queued in the kernel.
    fn peek(&mut self, stream: &mut Self::Stream, buf: &mut [u8]) -> Outcome;
    fn write(&mut self, stream: &mut Self::Stream, buf: &[u8]) -> Outcome;
    /// Sends FIN after the bytes already written.
    fn shutdown_write(&mut self, stream: &mut Self::Stream);
    /// Starts a non-blocking connect, registered under `token`; None when it failed at once.
    /// `watch`: a direct dial to the front, whose local address is remembered in case the
    /// dial arrives back at one of our own listeners.
    fn dial(&mut self, address: SocketAddr, token: Token, watch: bool) -> Option<Self::Stream>;
    fn connect_state(&mut self, stream: &mut Self::Stream) -> ConnectState;
    /// The client proved it holds the secret: from now on its socket is worth keeping alive.
    fn client_verified(&mut self, stream: &mut Self::Stream);
    /// The local address of a socket: where an accepted client connected to.
    fn local_address(&mut self, stream: &mut Self::Stream) -> Option<SocketAddr>;
    /// True if this dial arrived at one of our own listeners (it is then never relayed).
    fn dialled_itself(&mut self, stream: &mut Self::Stream) -> bool;
    /// Stops readiness reports and closes the socket.
    fn close(&mut self, stream: Self::Stream, style: CloseStyle);
}
