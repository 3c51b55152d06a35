//! One client connection as a state machine: phases that own their data, driven by readiness,
//! timers and the loop's clock and random source. All I/O goes through `Net`.
//!
//! ```text
//! accept ─▶ [AwaitProxyHeader, with --proxy-protocol] ─▶ admission (lists, per-address cap)
//!        ─▶ AwaitHello ──hello passes──▶ AwaitObfs2 ──64-byte frame──▶ Relay (dial the DC)
//!   │ (dial the front)  │ not TLS, wrong SNI, bad digest, stale clock, replay, timeout, EOF,
//!   │                   │ the front spoke first
//!   │                   ▼
//!   │                Fronting (relay raw both ways; the client's bytes never left the kernel)
//!   └─ the front closes or resets before the hello is decided: the client sees the same
//! ```
//!
//! `AwaitHello` only peeks: the hello stays queued in the kernel until it is decided, so an
//! undecided connection holds no pool buffer, and fronting relays the client's bytes from the
//! first one. The front is dialled at accept, so a prober who never completes a hello meets the
//! front's own timeouts, counted from the same moment. After our ServerHello nothing is fronted
//! any more: a bad record or tag closes.

use std::net::SocketAddr;

use super::counters::Direction;
pub use super::dial::{Dial, DialState};
use super::end::End;
pub use super::env::{Clock, Cx, Env, Wait};
use super::handshake;
use super::net::{CloseStyle, Net, Outcome, Readiness, Side};
use super::pipe::{self, Peer, Pipe, Read, Step, Take, Transform};
use super::slots::token;
use crate::proto::cipher::CtrState;
use crate::proto::hello::Rejection;
use crate::proto::proxy_protocol;
use crate::proto::record::Deframer;
use crate::settings::{ClientProxyHeader, FrontProxyHeader};

/// Steps (one read or one write each) a connection may take per run before others get a turn.
const STEP_BUDGET: usize = 64;
/// A front that closes an undecided connection sooner than this after its accept is dialled
/// again instead of mirrored: no site times out a silent client that fast.
const MIRROR_AFTER_TICKS: u64 = 10;
/// How long DC bytes too few for a TLS record wait for more: the rest of a DC packet split
/// over TCP segments comes within this on any sane path.
const SMALL_RECORD_WAIT_MICROS: u64 = 10_000;
/// Reads of the client's queued bytes before a close that mirrors the front's.
const MAX_DRAIN_READS: usize = 4;

pub struct Relay {
    pub dc: i16,
    pub dial: Dial,
    pub idle_deadline: u64,
    /// When the DC's held small bytes go out as they are (`Clock::micros`; 0: none held).
    pub flush_at: u64,
    pub deframer: Deframer,
    pub client_decrypt: CtrState,
    pub client_encrypt: CtrState,
    pub dc_encrypt: CtrState,
    pub dc_decrypt: CtrState,
}

// Every slot of the fixed table is sized for the largest phase on purpose: boxing `Relay`
// would allocate per connection.
#[allow(clippy::large_enum_variant)]
pub enum Phase {
    Free,
    /// The client's first bytes wait in the kernel until they make a whole hello.
    AwaitHello {
        deadline: u64,
        front: Dial,
    },
    /// `--proxy-protocol`: the balancer's header, read before anything else.
    AwaitProxyHeader {
        deadline: u64,
    },
    /// Our reply is going out; the client's 64-byte obfs2 frame is coming in.
    AwaitObfs2 {
        deadline: u64,
        deframer: Deframer,
        /// The reply goes out at this time (`Clock::micros`), no sooner than the front answers.
        reply_at: u64,
    },
    Relay(Relay),
    Fronting(Fronting),
}

/// Why a connection went to the front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontReason {
    Hello(Rejection),
    /// `--block` lists the client's address, or `--allow` does not.
    Listed,
}

impl std::fmt::Display for FrontReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrontReason::Hello(rejection) => write!(f, "{rejection}"),
            FrontReason::Listed => f.write_str("address listed"),
        }
    }
}

pub struct Fronting {
    pub reason: FrontReason,
    pub dial: Dial,
    /// With `--front-proxy-protocol`: the v2 header that goes to the front before any byte of
    /// the client's, and how much of it is written.
    pub header: [u8; proxy_protocol::MAX_WRITTEN_LEN],
    pub header_len: u8,
    pub header_sent: u8,
}

/// What the log line says of a connection.
pub enum Summary {
    Undecided,
    Handshake,
    Relay {
        dc: i16,
        up: u64,
        down: u64,
    },
    Fronted {
        reason: FrontReason,
        up: u64,
        down: u64,
    },
}

pub struct Connection<S> {
    /// A number for log lines; feint never logs client addresses.
    pub id: u64,
    pub phase: Phase,
    pub client: Peer<S>,
    pub upstream: Peer<S>,
    /// Client to upstream.
    pub up: Pipe,
    /// Upstream to client.
    pub down: Pipe,
    /// Where the client connects from: the peer address, or the one a PROXY header gave.
    pub client_address: Option<SocketAddr>,
    /// Where the client connected to, when a PROXY header said so.
    pub destination: Option<SocketAddr>,
    /// The per-address counter this connection holds, released when it closes.
    pub address_slot: Option<u32>,
}

impl<S> Default for Connection<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Connection<S> {
    pub fn new() -> Self {
        Connection {
            id: 0,
            phase: Phase::Free,
            client: Peer::new(Side::Client),
            upstream: Peer::new(Side::Upstream),
            up: Pipe::default(),
            down: Pipe::default(),
            client_address: None,
            destination: None,
            address_slot: None,
        }
    }

    pub fn summary(&self) -> Summary {
        match &self.phase {
            Phase::Free | Phase::AwaitProxyHeader { .. } | Phase::AwaitHello { .. } => {
                Summary::Undecided
            }
            Phase::AwaitObfs2 { .. } => Summary::Handshake,
            Phase::Relay(relay) => Summary::Relay {
                dc: relay.dc,
                up: self.up.bytes,
                down: self.down.bytes,
            },
            Phase::Fronting(fronting) => Summary::Fronted {
                reason: fronting.reason,
                up: self.up.bytes,
                down: self.down.bytes,
            },
        }
    }

    /// Records readiness from an event.
    pub fn on_ready(&mut self, side: Side, ready: Readiness) {
        let peer = match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        };
        peer.ready.readable |= ready.readable;
        peer.ready.writable |= ready.writable;
        peer.ready.hung_up |= ready.hung_up;
    }

    /// The tick of the next deadline, if any.
    pub fn deadline(&self) -> Option<u64> {
        match &self.phase {
            Phase::Free => None,
            Phase::AwaitProxyHeader { deadline } => Some(*deadline),
            Phase::AwaitHello { deadline, front } => {
                Some(front.deadline().map_or(*deadline, |d| d.min(*deadline)))
            }
            Phase::AwaitObfs2 { deadline, .. } => Some(*deadline),
            Phase::Relay(relay) => relay.dial.deadline().or(Some(relay.idle_deadline)),
            // A fronted connection lives as long as the front keeps it.
            Phase::Fronting(fronting) => fronting.dial.deadline(),
        }
    }
}

impl<S> Connection<S> {
    /// Takes a new client into this free connection.
    pub fn open<N: Net<Stream = S>>(
        &mut self,
        id: u64,
        mut client: S,
        peer: Option<SocketAddr>,
        cx: &mut Cx<'_, N>,
    ) -> Result<(), End> {
        if !cx
            .net
            .register(&mut client, token(cx.slot, cx.generation, Side::Client))
        {
            cx.net.close(client, CloseStyle::Graceful);
            return Err(End::Internal);
        }
        self.id = id;
        self.client.attach(client);
        self.client_address = peer;
        let deadline = cx.env.now.tick + cx.env.handshake_ticks;
        if cx.env.shared.client_proxy_header == ClientProxyHeader::Required {
            self.phase = Phase::AwaitProxyHeader { deadline };
            return Ok(());
        }
        self.admit(deadline, cx)
    }

    /// Makes as much progress as readiness allows, within the step budget.
    pub fn drive<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Wait, End> {
        self.advance_dial(cx)?;
        for _ in 0..STEP_BUDGET {
            let step = match self.phase {
                Phase::Free => return Ok(Wait::Idle),
                Phase::AwaitProxyHeader { deadline } => self.read_proxy_header(deadline, cx)?,
                Phase::AwaitHello { .. } => match self.watch_front(cx)? {
                    Step::Idle => match handshake::read_hello(self, cx)? {
                        Step::Idle => {
                            self.dial_front_early(cx);
                            Step::Idle
                        }
                        other => other,
                    },
                    other => other,
                },
                Phase::AwaitObfs2 { .. } => match self.flush_reply(cx)? {
                    Step::Idle => handshake::read_obfs2(self, cx)?,
                    other => other,
                },
                Phase::Relay(_) | Phase::Fronting(_) => {
                    self.advance_dial(cx)?;
                    self.pump(cx)?
                }
            };
            match step {
                Step::Progress => continue,
                // Small DC bytes wait for company on the hold queue, not on the coarse wheel.
                Step::Idle if self.down.held > 0 => return Ok(Wait::Hold),
                Step::Idle => return Ok(Wait::Idle),
                Step::NeedBuffer => return Ok(Wait::Buffer),
                Step::Hold => return Ok(Wait::Hold),
            }
        }
        Ok(Wait::Budget)
    }

    /// The timer fired: acts on whichever deadline has passed.
    pub fn on_timer<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
        if let Some(result) = self.dial_timed_out(cx) {
            return result;
        }
        let now = cx.env.now.tick;
        match &mut self.phase {
            Phase::AwaitProxyHeader { deadline } if *deadline <= now => Err(End::HandshakeTimeout),
            Phase::AwaitHello { deadline, .. } if *deadline <= now => {
                self.front(FrontReason::Hello(Rejection::Timeout), cx)
            }
            Phase::AwaitObfs2 { deadline, .. } if *deadline <= now => Err(End::HandshakeTimeout),
            Phase::Relay(relay) if relay.dial.connected() && relay.idle_deadline <= now => {
                Err(End::IdleTimeout)
            }
            _ => Ok(()),
        }
    }

    /// Releases everything and makes the connection free again.
    pub fn close<N: Net<Stream = S>>(&mut self, end: End, cx: &mut Cx<'_, N>) {
        let fronting = matches!(self.phase, Phase::Fronting(_));
        for (stream, side) in [
            (self.client.stream.take(), Side::Client),
            (self.upstream.stream.take(), Side::Upstream),
        ] {
            let Some(stream) = stream else { continue };
            let style = match end {
                End::Failed(failed) if fronting && failed != side => CloseStyle::Reset,
                End::FrontReset => CloseStyle::Reset,
                _ => CloseStyle::Graceful,
            };
            cx.net.close(stream, style);
        }
        if let Some(slot) = self.address_slot.take() {
            cx.env.shared.per_ip.release(slot);
        }
        self.up.release(cx.pool);
        self.down.release(cx.pool);
        *self = Connection::new();
    }

    /// Hands the connection to the front: the client's bytes, still queued, go first.
    pub fn front<N: Net<Stream = S>>(
        &mut self,
        reason: FrontReason,
        cx: &mut Cx<'_, N>,
    ) -> Result<(), End> {
        if let FrontReason::Hello(rejection) = reason {
            cx.env.counters().fronted(rejection);
        }
        let dial = match self.phase {
            Phase::AwaitHello { front, .. } => front,
            _ => Dial::NEW,
        };
        let mut fronting = Fronting {
            reason,
            dial,
            header: [0; proxy_protocol::MAX_WRITTEN_LEN],
            header_len: 0,
            header_sent: 0,
        };
        if cx.env.shared.front_proxy_header == FrontProxyHeader::SendV2 {
            let destination = self.destination.or_else(|| {
                let stream = self.client.stream.as_mut()?;
                cx.net.local_address(stream)
            });
            if let (Some(source), Some(destination)) = (self.client_address, destination) {
                let len = proxy_protocol::write_v2(source, destination, &mut fronting.header);
                fronting.header_len = len.unwrap_or(0) as u8;
            }
        }
        self.phase = Phase::Fronting(fronting);
        // The hello was only peeked at: its bytes are still queued, whatever the last read said.
        self.client.ready.readable = true;
        match dial.state {
            DialState::NotStarted => self.dial(cx),
            DialState::Exhausted => Err(End::Unreachable),
            _ => Ok(()),
        }
    }

    /// The hello is not decided by the bytes that came with the connection: dial the front now,
    /// so that a prober who stops here meets the front's own timeouts from (nearly) its accept.
    /// A hello that was whole on arrival never costs a connection to the front.
    fn dial_front_early<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) {
        if matches!(
            self.phase,
            Phase::AwaitHello {
                front: Dial {
                    state: DialState::NotStarted,
                    ..
                },
                ..
            }
        ) {
            // With no front address yet the hello can still pass; fronting dials again later.
            let _ = self.dial(cx);
        }
    }

    /// While the hello is undecided, the pre-dialled front may speak or close first.
    fn watch_front<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Step, End> {
        let connected = matches!(self.phase, Phase::AwaitHello { front, .. } if front.connected());
        if !connected {
            return Ok(Step::Idle);
        }
        let mut probe = [0; 1];
        let early = match self.phase {
            Phase::AwaitHello { deadline, .. } => {
                cx.env.now.tick + cx.env.handshake_ticks < deadline + MIRROR_AFTER_TICKS
            }
            _ => false,
        };
        match pipe::read(&mut self.upstream, cx.net, &mut probe, Take::Peek) {
            Ok(Read::Idle) => Ok(Step::Idle),
            Ok(Read::Bytes(_)) => self
                .front(FrontReason::Hello(Rejection::Timeout), cx)
                .map(|()| Step::Progress),
            // A front that drops us at once is overloaded or refusing, not timing out a silent
            // client, and the client may be a genuine one whose hello is on its way: dial again
            // (the next address) instead of passing that on.
            Ok(Read::Closed) | Err(_) if early || self.front_was_us(cx) => {
                self.redial(cx).map(|()| Step::Progress)
            }
            Ok(Read::Closed) => {
                self.drain_client(cx);
                Err(End::FrontClosed)
            }
            Err(_) => {
                self.drain_client(cx);
                Err(End::FrontReset)
            }
        }
    }

    /// True if the front dial arrived at one of our own listeners and was refused there.
    fn front_was_us<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> bool {
        self.upstream
            .stream
            .as_mut()
            .is_some_and(|stream| cx.net.dialled_itself(stream))
    }

    /// Reads and drops what the client sent, so closing its socket sends FIN, not RST.
    pub(super) fn drain_client<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) {
        let Some(stream) = self.client.stream.as_mut() else {
            return;
        };
        for _ in 0..MAX_DRAIN_READS {
            match cx.net.read(stream, &mut cx.env.scratch) {
                Outcome::Progress(_) => {}
                _ => return,
            }
        }
    }

    /// When held bytes may go out: our reply, or small DC bytes that waited for more.
    pub fn reply_due(&self) -> Option<u64> {
        match &self.phase {
            Phase::AwaitObfs2 { reply_at, .. } => Some(*reply_at),
            Phase::Relay(relay) if self.down.held > 0 => Some(relay.flush_at),
            _ => None,
        }
    }

    /// Writes our reply flight once its time has come; the relay's pipe takes over what is
    /// left of it.
    fn flush_reply<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Step, End> {
        if !self.down.pending() {
            return Ok(Step::Idle);
        }
        if self.reply_due().is_some_and(|due| cx.env.now.micros < due) {
            return Ok(Step::Hold);
        }
        pipe::write_pending(&mut self.down, &mut self.client, cx.net, cx.pool)
    }

    /// One step each way on the relay or fronting pipes.
    fn pump<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Step, End> {
        let (up_before, down_before) = (self.up.bytes, self.down.bytes);
        let (up, down, directions) = match &mut self.phase {
            Phase::Relay(relay) if relay.dial.connected() => {
                if self.down.held > 0 && cx.env.now.micros >= relay.flush_at {
                    pipe::frame_held(&mut self.down, cx.pool);
                }
                let up = pipe::relay(
                    &mut self.up,
                    &mut self.client,
                    &mut self.upstream,
                    cx.net,
                    cx.pool,
                    Transform::FromClient {
                        deframer: &mut relay.deframer,
                        decrypt: &mut relay.client_decrypt,
                        encrypt: &mut relay.dc_encrypt,
                    },
                )?;
                let down = pipe::relay(
                    &mut self.down,
                    &mut self.upstream,
                    &mut self.client,
                    cx.net,
                    cx.pool,
                    Transform::ToClient {
                        decrypt: &mut relay.dc_decrypt,
                        encrypt: &mut relay.client_encrypt,
                    },
                )?;
                if matches!(up, Step::Progress) || matches!(down, Step::Progress) {
                    relay.idle_deadline = cx.env.now.tick + cx.env.idle_ticks;
                }
                // Small DC bytes wait a few milliseconds for more to join them.
                relay.flush_at = match (self.down.held, relay.flush_at) {
                    (0, _) => 0,
                    (_, 0) => cx.env.now.micros + SMALL_RECORD_WAIT_MICROS,
                    (_, flush_at) => flush_at,
                };
                (up, down, (Direction::ClientToDc, Direction::DcToClient))
            }
            Phase::Fronting(fronting) if fronting.dial.connected() => {
                let scratch = &mut cx.env.scratch;
                let up = if fronting.header_sent < fronting.header_len {
                    // The PROXY header goes whole before any byte of the client's.
                    let header =
                        &fronting.header[fronting.header_sent.into()..fronting.header_len.into()];
                    let n = pipe::write(&mut self.upstream, cx.net, header)?;
                    fronting.header_sent += n as u8;
                    if n > 0 {
                        Step::Progress
                    } else {
                        Step::Idle
                    }
                } else {
                    pipe::raw(
                        &mut self.up,
                        &mut self.client,
                        &mut self.upstream,
                        cx.net,
                        scratch,
                    )?
                };
                let down = pipe::raw(
                    &mut self.down,
                    &mut self.upstream,
                    &mut self.client,
                    cx.net,
                    scratch,
                )?;
                (up, down, (Direction::FrontedIn, Direction::FrontedOut))
            }
            _ => return Ok(Step::Idle),
        };
        // Only steps that wrote touch the shared counters' cache line.
        let (up_moved, down_moved) = (self.up.bytes - up_before, self.down.bytes - down_before);
        if up_moved > 0 {
            cx.env.counters().bytes(directions.0, up_moved as usize);
        }
        if down_moved > 0 {
            cx.env.counters().bytes(directions.1, down_moved as usize);
        }
        if self.up.finished() && self.down.finished() {
            return Err(End::Done);
        }
        Ok(match (up, down) {
            (Step::Progress, _) | (_, Step::Progress) => Step::Progress,
            (Step::NeedBuffer, _) | (_, Step::NeedBuffer) => Step::NeedBuffer,
            _ => Step::Idle,
        })
    }
}
