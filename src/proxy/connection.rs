//! One client connection as a state machine: phases that own their data, driven by readiness,
//! timers and the loop's clock and random source. All I/O goes through `Net`.
//!
//! ```text
//! accept ─▶ AwaitHello ──hello passes──▶ AwaitObfs2 ──64-byte frame──▶ Relay (dial the DC)
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

use std::sync::Arc;

use super::buffer::BufferPool;
use super::end::End;
use super::handshake;
use super::net::{CloseStyle, ConnectState, Net, Outcome, Readiness, Side};
use super::pipe::{self, Peer, Pipe, Read, Step, Take, Transform};
use super::shared::Shared;
use super::slots::token;
use crate::proto::cipher::CtrState;
use crate::proto::hello::Rejection;
use crate::proto::record::Deframer;

/// Steps (one read or one write each) a connection may take per run before others get a turn.
const STEP_BUDGET: usize = 64;
/// Reads of the client's queued bytes before a close that mirrors the front's.
const MAX_DRAIN_READS: usize = 4;

/// The loop's clock: its tick (for deadlines) and the Unix time (for hello timestamps).
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    pub tick: u64,
    pub unix: u64,
}

/// What the loop lends the connection it runs: settings, clock, randomness and scratch space.
pub struct Env {
    pub shared: Arc<Shared>,
    pub handshake_ticks: u64,
    pub idle_ticks: u64,
    /// How long one upstream address may take to accept a connection.
    pub dial_ticks: u64,
    pub now: Clock,
    /// AES-256-CTR keystream under a key from getrandom (or a test's seed): the loop's random
    /// bytes, without a system call per connection.
    pub rng: CtrState,
    /// Where hellos are peeked and fronted bytes pass through: one pool buffer's size.
    pub scratch: Vec<u8>,
    /// Where a hello is assembled into its single-record form.
    pub assembled: Vec<u8>,
    /// Room for the certificate record's random payload.
    pub noise: Vec<u8>,
}

impl Env {
    pub fn random(&mut self, out: &mut [u8]) {
        out.fill(0);
        self.rng.apply(out);
    }
}

/// Everything a connection may use while it runs.
pub struct Cx<'a, N: Net> {
    pub net: &'a mut N,
    pub pool: &'a mut BufferPool,
    pub env: &'a mut Env,
    pub slot: u32,
    pub generation: u32,
}

/// Why a connection stopped running for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Until readiness or a timer.
    Idle,
    /// Until a pool buffer comes back.
    Buffer,
    /// It used its step budget: run it again soon.
    Budget,
}

/// An upstream connection in the making: which address it is on and how far it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dial {
    pub attempt: u8,
    pub state: DialState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialState {
    NotStarted,
    Connecting {
        deadline: u64,
    },
    Connected,
    /// Every address failed.
    Exhausted,
}

impl Dial {
    pub const NEW: Dial = Dial {
        attempt: 0,
        state: DialState::NotStarted,
    };

    fn connected(&self) -> bool {
        self.state == DialState::Connected
    }
}

/// Where an upstream connection goes.
#[derive(Clone, Copy)]
enum Target {
    Front,
    Dc(i16),
}

pub struct Relay {
    pub dc: i16,
    pub dial: Dial,
    pub idle_deadline: u64,
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
    /// Our reply is going out; the client's 64-byte obfs2 frame is coming in.
    AwaitObfs2 {
        deadline: u64,
        deframer: Deframer,
    },
    Relay(Relay),
    Fronting {
        reason: Rejection,
        dial: Dial,
    },
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
        reason: Rejection,
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
        }
    }

    pub fn summary(&self) -> Summary {
        match &self.phase {
            Phase::Free | Phase::AwaitHello { .. } => Summary::Undecided,
            Phase::AwaitObfs2 { .. } => Summary::Handshake,
            Phase::Relay(relay) => Summary::Relay {
                dc: relay.dc,
                up: self.up.bytes,
                down: self.down.bytes,
            },
            Phase::Fronting { reason, .. } => Summary::Fronted {
                reason: *reason,
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
        let dialing = |dial: &Dial| match dial.state {
            DialState::Connecting { deadline } => Some(deadline),
            _ => None,
        };
        match &self.phase {
            Phase::Free => None,
            Phase::AwaitHello { deadline, front } => {
                Some(dialing(front).map_or(*deadline, |d| d.min(*deadline)))
            }
            Phase::AwaitObfs2 { deadline, .. } => Some(*deadline),
            Phase::Relay(relay) => dialing(&relay.dial).or(Some(relay.idle_deadline)),
            // A fronted connection lives as long as the front keeps it.
            Phase::Fronting { dial, .. } => dialing(dial),
        }
    }

    fn dial_mut(&mut self) -> Option<(&mut Dial, Target)> {
        match &mut self.phase {
            Phase::AwaitHello { front, .. } => Some((front, Target::Front)),
            Phase::Fronting { dial, .. } => Some((dial, Target::Front)),
            Phase::Relay(relay) => Some((&mut relay.dial, Target::Dc(relay.dc))),
            Phase::Free | Phase::AwaitObfs2 { .. } => None,
        }
    }
}

impl<S> Connection<S> {
    /// Takes a new client into this free connection and dials the front at once.
    pub fn open<N: Net<Stream = S>>(
        &mut self,
        id: u64,
        mut client: S,
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
        self.phase = Phase::AwaitHello {
            deadline: cx.env.now.tick + cx.env.handshake_ticks,
            front: Dial::NEW,
        };
        // With no front address yet the hello can still pass; fronting dials again later.
        let _ = self.dial(cx);
        Ok(())
    }

    /// Makes as much progress as readiness allows, within the step budget.
    pub fn drive<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Wait, End> {
        self.finish_connect(cx)?;
        for _ in 0..STEP_BUDGET {
            let step = match self.phase {
                Phase::Free => return Ok(Wait::Idle),
                Phase::AwaitHello { .. } => match self.watch_front(cx)? {
                    Step::Idle => handshake::read_hello(self, cx)?,
                    other => other,
                },
                Phase::AwaitObfs2 { .. } => match self.flush_reply(cx)? {
                    Step::Idle => handshake::read_obfs2(self, cx)?,
                    other => other,
                },
                Phase::Relay(_) | Phase::Fronting { .. } => self.pump(cx)?,
            };
            match step {
                Step::Progress => continue,
                Step::Idle => return Ok(Wait::Idle),
                Step::NeedBuffer => return Ok(Wait::Buffer),
            }
        }
        Ok(Wait::Budget)
    }

    /// The timer fired: acts on whichever deadline has passed.
    pub fn on_timer<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
        let now = cx.env.now.tick;
        if let Some((dial, _)) = self.dial_mut() {
            if matches!(dial.state, DialState::Connecting { deadline } if deadline <= now) {
                // This address did not answer in time: try the next one.
                return self.redial(cx);
            }
        }
        match &self.phase {
            Phase::AwaitHello { deadline, .. } if *deadline <= now => {
                self.front(Rejection::Timeout, cx)
            }
            Phase::AwaitObfs2 { deadline, .. } if *deadline <= now => Err(End::HandshakeTimeout),
            Phase::Relay(relay) if relay.dial.connected() && relay.idle_deadline <= now => {
                Err(End::IdleTimeout)
            }
            _ => Ok(()),
        }
    }

    /// Releases everything and makes the connection free again.
    pub fn close<N: Net<Stream = S>>(&mut self, end: End, net: &mut N, pool: &mut BufferPool) {
        let fronting = matches!(self.phase, Phase::Fronting { .. });
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
            net.close(stream, style);
        }
        self.up.release(pool);
        self.down.release(pool);
        *self = Connection::new();
    }

    /// Hands the connection to the front: the client's bytes, still queued, go first.
    pub fn front<N: Net<Stream = S>>(
        &mut self,
        reason: Rejection,
        cx: &mut Cx<'_, N>,
    ) -> Result<(), End> {
        let dial = match self.phase {
            Phase::AwaitHello { front, .. } => front,
            _ => Dial::NEW,
        };
        self.phase = Phase::Fronting { reason, dial };
        // The hello was only peeked at: its bytes are still queued, whatever the last read said.
        self.client.ready.readable = true;
        match dial.state {
            DialState::NotStarted => self.dial(cx),
            DialState::Exhausted => Err(End::Unreachable),
            DialState::Connecting { .. } | DialState::Connected => Ok(()),
        }
    }

    /// While the hello is undecided, the pre-dialled front may speak or close first.
    fn watch_front<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Step, End> {
        let connected = matches!(self.phase, Phase::AwaitHello { front, .. } if front.connected());
        if !connected {
            return Ok(Step::Idle);
        }
        let mut probe = [0; 1];
        match pipe::read(&mut self.upstream, cx.net, &mut probe, Take::Peek) {
            Ok(Read::Idle) => Ok(Step::Idle),
            Ok(Read::Bytes(_)) => self.front(Rejection::Timeout, cx).map(|()| Step::Progress),
            Ok(Read::Closed) | Err(_) if self.front_was_us(cx) => {
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
    fn drain_client<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) {
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

    /// Writes our reply flight; the relay's pipe takes over what is left of it.
    fn flush_reply<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Step, End> {
        if !self.down.pending() {
            return Ok(Step::Idle);
        }
        pipe::write_pending(&mut self.down, &mut self.client, cx.net, cx.pool)
    }

    /// One step each way on the relay or fronting pipes.
    fn pump<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Step, End> {
        let (up, down) = match &mut self.phase {
            Phase::Relay(relay) if relay.dial.connected() => {
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
                (up, down)
            }
            Phase::Fronting { dial, .. } if dial.connected() => {
                let scratch = &mut cx.env.scratch;
                let up = pipe::raw(
                    &mut self.up,
                    &mut self.client,
                    &mut self.upstream,
                    cx.net,
                    scratch,
                )?;
                let down = pipe::raw(
                    &mut self.down,
                    &mut self.upstream,
                    &mut self.client,
                    cx.net,
                    scratch,
                )?;
                (up, down)
            }
            _ => return Ok(Step::Idle),
        };
        if self.up.finished() && self.down.finished() {
            return Err(End::Done);
        }
        Ok(match (up, down) {
            (Step::Progress, _) | (_, Step::Progress) => Step::Progress,
            (Step::NeedBuffer, _) | (_, Step::NeedBuffer) => Step::NeedBuffer,
            _ => Step::Idle,
        })
    }

    /// Starts a non-blocking connect to the current attempt's address, moving on to the next
    /// address when one fails at once.
    pub fn dial<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
        let upstream_token = token(cx.slot, cx.generation, Side::Upstream);
        let deadline = cx.env.now.tick + cx.env.dial_ticks;
        let shared = Arc::clone(&cx.env.shared);
        let Some((dial, target)) = self.dial_mut() else {
            return Err(End::Internal);
        };
        loop {
            let attempt = usize::from(dial.attempt);
            let address = match target {
                Target::Front => shared.front_addresses().get(attempt).copied().flatten(),
                Target::Dc(dc) => shared.dc_address(dc, attempt),
            };
            let Some(address) = address else {
                dial.state = DialState::Exhausted;
                return Err(End::Unreachable);
            };
            match cx.net.dial(address, upstream_token) {
                Some(stream) => {
                    dial.state = DialState::Connecting { deadline };
                    self.upstream.attach(stream);
                    return Ok(());
                }
                None => dial.attempt = dial.attempt.saturating_add(1),
            }
        }
    }

    /// Drops the upstream socket and dials the next address.
    fn redial<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
        if let Some(stream) = self.upstream.stream.take() {
            cx.net.close(stream, CloseStyle::Graceful);
        }
        self.upstream.ready = Readiness::default();
        let awaiting_hello = matches!(self.phase, Phase::AwaitHello { .. });
        if let Some((dial, _)) = self.dial_mut() {
            dial.attempt = dial.attempt.saturating_add(1);
        }
        match self.dial(cx) {
            // Without a front the hello may still pass.
            Err(End::Unreachable) if awaiting_hello => Ok(()),
            result => result,
        }
    }

    fn finish_connect<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
        let connecting = matches!(
            self.dial_mut(),
            Some((
                Dial {
                    state: DialState::Connecting { .. },
                    ..
                },
                _
            ))
        );
        if !connecting || !self.upstream.ready.writable {
            return Ok(());
        }
        let Some(stream) = self.upstream.stream.as_mut() else {
            return Err(End::Internal);
        };
        match cx.net.connect_state(stream) {
            ConnectState::Pending => {
                self.upstream.ready.writable = false;
                Ok(())
            }
            ConnectState::Connected => {
                let idle_deadline = cx.env.now.tick + cx.env.idle_ticks;
                if let Phase::Relay(relay) = &mut self.phase {
                    relay.idle_deadline = idle_deadline;
                }
                if let Some((dial, _)) = self.dial_mut() {
                    dial.state = DialState::Connected;
                }
                Ok(())
            }
            ConnectState::Failed => self.redial(cx),
        }
    }
}
