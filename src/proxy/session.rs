//! One client connection: its phases, its two pipes and the transitions between them.
//!
//! ```text
//! accept ─▶ AwaitHello ──hello passes──▶ AwaitObfs2 ──64-byte frame──▶ Relay (dial DC)
//!              │ not TLS, wrong SNI, bad digest, stale clock, replay, timeout, EOF
//!              ▼
//!           Fronting (dial the front, send every byte read so far, relay raw both ways)
//! ```
//!
//! `AwaitHello` decides as early as the bytes allow; after our ServerHello nothing is fronted any
//! more, a bad record or tag closes. The `up` pipe carries client bytes to the upstream (the DC or
//! the front), `down` the other way. A pipe holds a pool buffer only while bytes are in flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::buffer::{BufferId, BufferPool, BUF_LEN};
use super::pipe::{step, write_pending, Peer, Pipe, Step, Transform};
use super::shared::Shared;
use super::socket::{self, ConnectState, Outcome};
use super::sys;
use super::timer::{TimerWheel, TICK};
use crate::proto::cipher::CtrState;
use crate::proto::front_flight::ML_KEM_768_CIPHERTEXT_LEN;
use crate::proto::hello::{self, Assembly, Rejection};
use crate::proto::obfs2::{self, FRAME_LEN};
use crate::proto::record::{Deframer, RecordError};
use crate::proto::{server_hello, x25519};

// A reply shaped like the front's and its ML-KEM stand-in fit one pool buffer side by side.
const _: () = assert!(server_hello::MAX_REPLY_LEN + ML_KEM_768_CIPHERTEXT_LEN <= BUF_LEN);

/// Steps (one read or one write each) a session may take per wake-up before others get a turn.
const STEP_BUDGET: usize = 64;
/// How long one DC address may take to accept a connection before the next is tried (or the
/// handshake timeout, if that is shorter).
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const DIAL_TICKS: u64 = (DIAL_TIMEOUT.as_millis() / TICK.as_millis()) as u64;
/// Tries at drawing a DC frame without a forbidden pattern; each try fails with p < 2^-7.
const MAX_FRAME_DRAWS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Free,
    AwaitHello,
    AwaitObfs2,
    Relay,
    Fronting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// Why a session ended; only for the verbose log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both directions finished.
    Done,
    /// A side failed or reset; with Fronting the other side gets a reset too.
    Failed(Side),
    /// The client left before its hello started.
    ClientLeft,
    BadRecord(RecordError),
    BadTag,
    UnknownDc,
    Unreachable,
    HandshakeTimeout,
    IdleTimeout,
    Internal,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Done => f.write_str("done"),
            End::Failed(Side::Client) => f.write_str("client failed"),
            End::Failed(Side::Upstream) => f.write_str("upstream failed"),
            End::ClientLeft => f.write_str("client left"),
            End::BadRecord(e) => write!(f, "bad record: {e}"),
            End::BadTag => f.write_str("bad obfs2 tag"),
            End::UnknownDc => f.write_str("unknown DC"),
            End::Unreachable => f.write_str("upstream unreachable"),
            End::HandshakeTimeout => f.write_str("handshake timeout"),
            End::IdleTimeout => f.write_str("idle timeout"),
            End::Internal => f.write_str("internal error"),
        }
    }
}

/// Everything of the loop that a session uses while it is driven.
pub struct Context {
    pub registry: Registry,
    pub pool: BufferPool,
    pub wheel: TimerWheel,
    pub shared: Arc<Shared>,
    /// The current tick of the timer wheel.
    pub now: u64,
    pub handshake_ticks: u64,
    pub idle_ticks: u64,
    /// Where a hello is assembled into its single-record form.
    pub scratch: Vec<u8>,
    /// Room for the certificate record's random payload.
    pub noise: Vec<u8>,
    /// AES-256-CTR keystream under a key from getrandom: the loop's random bytes, without a
    /// syscall per connection.
    pub rng: CtrState,
    /// Sessions waiting for a pool buffer, as (slot, generation).
    pub waiters: VecDeque<(u32, u32)>,
    /// Buffers held by sessions in AwaitHello, and their cap: half the pool, so clients that
    /// trickle partial hellos cannot take the buffers that relays need.
    pub hello_buffers: usize,
    pub max_hello_buffers: usize,
    /// Sessions in AwaitHello waiting for `hello_buffers` to drop below the cap.
    pub hello_waiters: VecDeque<(u32, u32)>,
    /// Sessions that used up their step budget and must be driven again.
    pub ready: VecDeque<(u32, u32)>,
}

impl Context {
    pub fn random(&mut self, out: &mut [u8]) {
        out.fill(0);
        self.rng.apply(out);
    }
}

pub fn token(slot: u32, generation: u32, side: Side) -> Token {
    let side_bit = match side {
        Side::Client => 0,
        Side::Upstream => 1,
    };
    Token(((generation as usize) << 32) | ((slot as usize) << 1) | side_bit)
}

/// (slot, generation, side) of a session token.
pub fn untoken(token: Token) -> (u32, u32, Side) {
    let side = if token.0 & 1 == 0 {
        Side::Client
    } else {
        Side::Upstream
    };
    (
        ((token.0 >> 1) & 0x7fff_ffff) as u32,
        (token.0 >> 32) as u32,
        side,
    )
}

/// What `append_client` did.
enum Appended {
    /// `len` new bytes at `start` of buffer `id`.
    Bytes {
        id: BufferId,
        start: usize,
        len: usize,
    },
    /// Nothing to read now, for the reason the step gives.
    Wait(Step),
    /// The client sent FIN.
    Closed,
}

pub struct Session {
    pub generation: u32,
    pub phase: Phase,
    /// A number for log lines; feint never logs client addresses.
    pub id: u64,
    client: Peer,
    upstream: Peer,
    upstream_connected: bool,
    up: Pipe,
    down: Pipe,
    deframer: Deframer,
    client_decrypt: CtrState,
    client_encrypt: CtrState,
    upstream_encrypt: CtrState,
    upstream_decrypt: CtrState,
    dc: i16,
    attempt: u8,
    /// The tick at which the current timeout fires.
    deadline: u64,
    pub fronted_because: Option<Rejection>,
    /// Queued in `Context::waiters`.
    pub waiting: bool,
    /// Queued in `Context::ready`.
    pub queued: bool,
}

fn blank_cipher() -> CtrState {
    CtrState::new([0; 32], [0; 16])
}

impl Session {
    pub fn new() -> Self {
        Session {
            generation: 1,
            phase: Phase::Free,
            id: 0,
            client: Peer::new(Side::Client),
            upstream: Peer::new(Side::Upstream),
            upstream_connected: false,
            up: Pipe::default(),
            down: Pipe::default(),
            deframer: Deframer::new(),
            client_decrypt: blank_cipher(),
            client_encrypt: blank_cipher(),
            upstream_encrypt: blank_cipher(),
            upstream_decrypt: blank_cipher(),
            dc: 0,
            attempt: 0,
            deadline: 0,
            fronted_because: None,
            waiting: false,
            queued: false,
        }
    }

    /// Takes a new client into this free slot.
    pub fn open(
        &mut self,
        slot: u32,
        id: u64,
        mut client: TcpStream,
        ctx: &mut Context,
    ) -> std::io::Result<()> {
        ctx.registry.register(
            &mut client,
            token(slot, self.generation, Side::Client),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.phase = Phase::AwaitHello;
        self.id = id;
        self.client.attach(client);
        self.set_deadline(slot, ctx, ctx.now + ctx.handshake_ticks);
        Ok(())
    }

    /// Releases everything and makes the slot free again, with a new generation so that
    /// events still queued for the old sockets are ignored.
    pub fn close(&mut self, slot: u32, end: End, ctx: &mut Context) {
        self.leave_hello(ctx);
        let reset_other = self.phase == Phase::Fronting && matches!(end, End::Failed(_));
        for (stream, side) in [
            (self.client.stream.take(), Side::Client),
            (self.upstream.stream.take(), Side::Upstream),
        ] {
            if let Some(mut stream) = stream {
                let _ = ctx.registry.deregister(&mut stream);
                if reset_other && end != End::Failed(side) {
                    let _ = sys::set_linger_zero(&stream);
                }
            }
        }
        self.up.release(&mut ctx.pool);
        self.down.release(&mut ctx.pool);
        ctx.wheel.cancel(slot);
        let generation = (self.generation + 1) & 0x7fff_ffff;
        *self = Session::new();
        self.generation = generation.max(1);
    }

    /// Bytes moved (up, down), for the outcome log line.
    pub fn bytes(&self) -> (u64, u64) {
        (self.up.bytes, self.down.bytes)
    }

    pub fn dc(&self) -> i16 {
        self.dc
    }

    fn set_deadline(&mut self, slot: u32, ctx: &mut Context, tick: u64) {
        self.deadline = tick;
        match ctx.wheel.scheduled(slot) {
            Some(scheduled) if scheduled <= tick => {}
            _ => ctx.wheel.schedule(slot, tick),
        }
    }

    /// Records readiness from an event for `side`.
    pub fn on_event(&mut self, side: Side, readable: bool, writable: bool, hung_up: bool) {
        let peer = match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        };
        peer.readable |= readable;
        peer.writable |= writable;
        peer.hung_up |= hung_up;
    }

    /// Makes as much progress as readiness allows, within the step budget.
    pub fn drive(&mut self, slot: u32, ctx: &mut Context) -> Result<(), End> {
        if self.upstream.stream.is_some() && !self.upstream_connected && self.upstream.writable {
            self.finish_connect(slot, ctx)?;
        }
        for _ in 0..STEP_BUDGET {
            let step = match self.phase {
                Phase::Free => return Ok(()),
                Phase::AwaitHello => self.read_hello(slot, ctx)?,
                Phase::AwaitObfs2 => match self.pump_down(ctx)? {
                    Step::Idle => self.read_obfs2(slot, ctx)?,
                    other => other,
                },
                Phase::Relay | Phase::Fronting => {
                    if !self.upstream_connected {
                        return Ok(());
                    }
                    let up = self.pump_up(ctx)?;
                    let down = self.pump_down(ctx)?;
                    if self.up.finished() && self.down.finished() {
                        return Err(End::Done);
                    }
                    match (up, down) {
                        (Step::Progress, _) | (_, Step::Progress) => {
                            if self.phase == Phase::Relay {
                                self.deadline = ctx.now + ctx.idle_ticks;
                            }
                            Step::Progress
                        }
                        (Step::NeedBuffer, _) | (_, Step::NeedBuffer) => Step::NeedBuffer,
                        (Step::HelloCapped, _) | (_, Step::HelloCapped) => Step::HelloCapped,
                        _ => Step::Idle,
                    }
                }
            };
            match step {
                Step::Progress => continue,
                Step::Idle => return Ok(()),
                Step::NeedBuffer => {
                    if !self.waiting {
                        self.waiting = true;
                        ctx.waiters.push_back((slot, self.generation));
                    }
                    return Ok(());
                }
                Step::HelloCapped => {
                    if !self.waiting {
                        self.waiting = true;
                        ctx.hello_waiters.push_back((slot, self.generation));
                    }
                    return Ok(());
                }
            }
        }
        if !self.queued {
            self.queued = true;
            ctx.ready.push_back((slot, self.generation));
        }
        Ok(())
    }

    /// The timer of this session fired.
    pub fn on_deadline(&mut self, slot: u32, ctx: &mut Context) -> Result<(), End> {
        match self.phase {
            Phase::Free | Phase::Fronting => Ok(()),
            Phase::AwaitHello => self.front(slot, ctx, Rejection::Timeout),
            Phase::AwaitObfs2 => Err(End::HandshakeTimeout),
            Phase::Relay if ctx.now < self.deadline => {
                let deadline = self.deadline;
                self.set_deadline(slot, ctx, deadline);
                Ok(())
            }
            Phase::Relay if !self.upstream_connected => {
                // This DC address did not answer in time: try the next one.
                if let Some(mut stream) = self.upstream.stream.take() {
                    let _ = ctx.registry.deregister(&mut stream);
                }
                self.attempt = self.attempt.saturating_add(1);
                self.dial(slot, ctx)
            }
            Phase::Relay => Err(End::IdleTimeout),
        }
    }

    fn pump_up(&mut self, ctx: &mut Context) -> Result<Step, End> {
        let transform = match self.phase {
            Phase::Relay => Transform::FromClient {
                deframer: &mut self.deframer,
                decrypt: &mut self.client_decrypt,
                encrypt: &mut self.upstream_encrypt,
            },
            _ => Transform::Raw,
        };
        step(
            &mut self.up,
            &mut self.client,
            &mut self.upstream,
            &mut ctx.pool,
            transform,
        )
    }

    /// Upstream to client; before there is an upstream it only flushes our ServerHello flight.
    fn pump_down(&mut self, ctx: &mut Context) -> Result<Step, End> {
        if self.upstream.stream.is_none() {
            if !self.down.pending() {
                return Ok(Step::Idle);
            }
            return write_pending(&mut self.down, &mut self.client, &mut ctx.pool);
        }
        let transform = match self.phase {
            Phase::Relay => Transform::ToClient {
                decrypt: &mut self.upstream_decrypt,
                encrypt: &mut self.client_encrypt,
            },
            _ => Transform::Raw,
        };
        step(
            &mut self.down,
            &mut self.upstream,
            &mut self.client,
            &mut ctx.pool,
            transform,
        )
    }

    /// One read from the client onto the end of the `up` buffer, in the handshake phases.
    /// The buffer is taken from the pool on the first byte and given back if nothing came.
    fn append_client(&mut self, ctx: &mut Context) -> Result<Appended, End> {
        if !self.client.readable {
            return Ok(Appended::Wait(Step::Idle));
        }
        let Some(client) = self.client.stream.as_mut() else {
            return Err(End::Internal);
        };
        let hello = self.phase == Phase::AwaitHello;
        let id = match self.up.buffer {
            Some(id) => id,
            None if hello && ctx.hello_buffers >= ctx.max_hello_buffers => {
                return Ok(Appended::Wait(Step::HelloCapped))
            }
            None => match ctx.pool.take() {
                Some(id) => {
                    self.up.buffer = Some(id);
                    if hello {
                        ctx.hello_buffers += 1;
                    }
                    id
                }
                None => return Ok(Appended::Wait(Step::NeedBuffer)),
            },
        };
        let end = self.up.end as usize;
        let room = &mut ctx.pool.get(id)[end..];
        let room_len = room.len();
        match socket::read(client, room) {
            Outcome::Progress(n) => {
                if n < room_len && !self.client.hung_up {
                    self.client.readable = false;
                }
                Ok(Appended::Bytes {
                    id,
                    start: end,
                    len: n,
                })
            }
            Outcome::WouldBlock => {
                self.client.readable = false;
                if end == 0 {
                    self.leave_hello(ctx);
                    self.up.release(&mut ctx.pool);
                }
                Ok(Appended::Wait(Step::Idle))
            }
            Outcome::Closed => Ok(Appended::Closed),
            Outcome::Failed => Err(End::Failed(Side::Client)),
        }
    }

    fn read_hello(&mut self, slot: u32, ctx: &mut Context) -> Result<Step, End> {
        let id = match self.append_client(ctx)? {
            Appended::Wait(step) => return Ok(step),
            Appended::Closed if self.up.end == 0 => return Err(End::ClientLeft),
            Appended::Closed => {
                // A half-close inside the hello: front what came, then pass the FIN on.
                self.up.source_closed = true;
                return self
                    .front(slot, ctx, Rejection::Truncated)
                    .map(|()| Step::Idle);
            }
            Appended::Bytes { id, len, .. } => {
                self.up.end += len as u16;
                id
            }
        };
        let end = self.up.end as usize;
        let buf = ctx.pool.get(id);
        match hello::assemble(&buf[..end], &mut ctx.scratch) {
            Assembly::NeedMore if end < BUF_LEN => Ok(Step::Progress),
            Assembly::NeedMore => self
                .front(slot, ctx, Rejection::Truncated)
                .map(|()| Step::Idle),
            Assembly::Rejected(reason) => self.front(slot, ctx, reason).map(|()| Step::Idle),
            Assembly::Complete { consumed, .. } if consumed != end => self
                .front(slot, ctx, Rejection::TrailingData)
                .map(|()| Step::Idle),
            Assembly::Complete { len, .. } => match Self::verify_hello(ctx, len) {
                Ok(verified) => self.queue_reply(ctx, verified).map(|()| Step::Progress),
                Err(reason) => self.front(slot, ctx, reason).map(|()| Step::Idle),
            },
        }
    }

    /// Verifies the assembled hello (PROTOCOL.md §2.4); replay is checked last.
    fn verify_hello(ctx: &mut Context, len: usize) -> Result<hello::Verified, Rejection> {
        let shared = &ctx.shared;
        let record = ctx.scratch.get_mut(..len).ok_or(Rejection::Truncated)?;
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verified = hello::verify(
            record,
            &shared.key,
            &shared.domain,
            now_unix,
            shared.time_skew,
        )?;
        // Only now, with digest and clock checked, may the hello enter the replay filter.
        if shared.is_replay(&verified.client_random) {
            return Err(Rejection::Replayed);
        }
        Ok(verified)
    }

    /// Queues our reply flight (PROTOCOL.md §3) in place of the hello bytes.
    fn queue_reply(&mut self, ctx: &mut Context, verified: hello::Verified) -> Result<(), End> {
        self.leave_hello(ctx);
        let Some(id) = self.up.buffer else {
            return Err(End::Internal);
        };
        self.up.buffer = None;
        self.up.start = 0;
        self.up.end = 0;
        self.down.buffer = Some(id);
        let mut random = [0; 32 * x25519::KEY_SHARE_TRIES];
        ctx.random(&mut random);
        let public_key = x25519::key_share(&random);
        let mut seed = [0; 1];
        ctx.random(&mut seed);
        let profile = ctx.shared.front_profile();
        // With the front's profile the certificate record is as long as the front's whole
        // flight, on every connection alike (issue 8); without one, today's drawn length.
        let cert_len = match &profile {
            Some(front) => front.cert_len(),
            None => (ctx.shared.cert_len + (seed[0] as usize % 64)).min(server_hello::MAX_CERT_LEN),
        };
        let noise = ctx.noise.get_mut(..cert_len).ok_or(End::Internal)?;
        noise.fill(0);
        ctx.rng.apply(noise);
        let buf = ctx.pool.get(id);
        let len = match &profile {
            None => server_hello::emit(
                buf,
                &ctx.shared.key,
                &verified,
                &public_key,
                &ctx.noise[..cert_len],
            ),
            Some(front) => {
                // The stand-in ML-KEM ciphertext is drawn into the end of the buffer, past the
                // longest reply.
                let (out, tail) = buf.split_at_mut(BUF_LEN - ML_KEM_768_CIPHERTEXT_LEN);
                tail.fill(0);
                ctx.rng.apply(tail);
                let ml_kem_ciphertext = <&[u8; ML_KEM_768_CIPHERTEXT_LEN]>::try_from(&*tail)
                    .map_err(|_| End::Internal)?;
                server_hello::emit_like(
                    out,
                    &ctx.shared.key,
                    &verified,
                    front,
                    &public_key,
                    ml_kem_ciphertext,
                    &ctx.noise[..cert_len],
                )
            }
        }
        .ok_or(End::Internal)?;
        self.down.start = 0;
        self.down.end = len as u16;
        self.phase = Phase::AwaitObfs2;
        Ok(())
    }

    /// Gives up the hello phase's claim on the pool; the buffer itself may go on being used.
    fn leave_hello(&mut self, ctx: &mut Context) {
        if self.phase == Phase::AwaitHello && self.up.buffer.is_some() {
            ctx.hello_buffers -= 1;
        }
    }

    /// Hands the connection to the front: every byte read so far goes first, then raw relay.
    fn front(&mut self, slot: u32, ctx: &mut Context, reason: Rejection) -> Result<(), End> {
        self.leave_hello(ctx);
        self.phase = Phase::Fronting;
        self.fronted_because = Some(reason);
        self.attempt = 0;
        ctx.wheel.cancel(slot);
        if !self.up.pending() {
            self.up.release(&mut ctx.pool);
        }
        self.dial(slot, ctx)
    }

    fn read_obfs2(&mut self, slot: u32, ctx: &mut Context) -> Result<Step, End> {
        let id = match self.append_client(ctx)? {
            Appended::Wait(step) => return Ok(step),
            Appended::Closed => return Err(End::ClientLeft),
            Appended::Bytes { id, start, len } => {
                let payload = self
                    .deframer
                    .deframe(&mut ctx.pool.get(id)[start..start + len])
                    .map_err(End::BadRecord)?;
                self.up.end += payload as u16;
                id
            }
        };
        if (self.up.end as usize) < FRAME_LEN {
            return Ok(Step::Progress);
        }
        self.start_relay(slot, ctx, id)?;
        Ok(Step::Progress)
    }

    /// The client's frame is in: derive the four keystreams, re-encrypt what came after the
    /// frame for the DC, put our frame for the DC in front of it and dial the DC.
    fn start_relay(&mut self, slot: u32, ctx: &mut Context, id: BufferId) -> Result<(), End> {
        let key = ctx.shared.key;
        let mut frame = [0; FRAME_LEN];
        frame.copy_from_slice(&ctx.pool.get(id)[..FRAME_LEN]);
        let client = obfs2::parse_client_frame(&frame, &key).map_err(|_| End::BadTag)?;
        if ctx.shared.dc_address(client.dc, 0).is_none() {
            self.dc = client.dc;
            return Err(End::UnknownDc);
        }
        let mut upstream = None;
        for _ in 0..MAX_FRAME_DRAWS {
            ctx.random(&mut frame);
            upstream = obfs2::upstream_frame(&frame, client.dc);
            if upstream.is_some() {
                break;
            }
        }
        let upstream = upstream.ok_or(End::Internal)?;
        self.client_decrypt = client.decrypt;
        self.client_encrypt = client.encrypt;
        let buf = ctx.pool.get(id);
        self.upstream_encrypt = upstream.encrypt;
        self.upstream_decrypt = upstream.decrypt;
        let end = self.up.end as usize;
        let rest = &mut buf[FRAME_LEN..end];
        self.client_decrypt.apply(rest);
        self.upstream_encrypt.apply(rest);
        buf[..FRAME_LEN].copy_from_slice(&upstream.wire);
        self.up.start = 0;
        self.dc = client.dc;
        self.phase = Phase::Relay;
        self.attempt = 0;
        self.dial(slot, ctx)
    }

    /// The address for the current attempt: the DC's or the front's.
    fn upstream_address(&self, ctx: &Context) -> Option<std::net::SocketAddr> {
        match self.phase {
            Phase::Relay => ctx.shared.dc_address(self.dc, self.attempt as usize),
            _ => ctx
                .shared
                .front_addresses()
                .get(self.attempt as usize)
                .copied()
                .flatten(),
        }
    }

    /// Starts a non-blocking connect to the current attempt's address, moving on to the next
    /// address when one fails at once.
    fn dial(&mut self, slot: u32, ctx: &mut Context) -> Result<(), End> {
        loop {
            let Some(address) = self.upstream_address(ctx) else {
                return Err(End::Unreachable);
            };
            match TcpStream::connect(address) {
                Ok(mut stream) => {
                    ctx.registry
                        .register(
                            &mut stream,
                            token(slot, self.generation, Side::Upstream),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .map_err(|_| End::Internal)?;
                    self.upstream.attach(stream);
                    self.upstream_connected = false;
                    if self.phase == Phase::Relay {
                        // Fronted connections get no deadline of ours, not even to connect.
                        let ticks = ctx.handshake_ticks.min(DIAL_TICKS);
                        self.set_deadline(slot, ctx, ctx.now + ticks);
                    }
                    return Ok(());
                }
                Err(_) => self.attempt = self.attempt.saturating_add(1),
            }
        }
    }

    fn finish_connect(&mut self, slot: u32, ctx: &mut Context) -> Result<(), End> {
        let Some(stream) = self.upstream.stream.as_ref() else {
            return Ok(());
        };
        match socket::connect_state(stream) {
            ConnectState::Pending => {
                self.upstream.writable = false;
                Ok(())
            }
            ConnectState::Connected => {
                let _ = stream.set_nodelay(true);
                self.upstream_connected = true;
                if self.phase == Phase::Relay {
                    self.set_deadline(slot, ctx, ctx.now + ctx.idle_ticks);
                }
                Ok(())
            }
            ConnectState::Failed => {
                if let Some(mut stream) = self.upstream.stream.take() {
                    let _ = ctx.registry.deregister(&mut stream);
                }
                self.attempt = self.attempt.saturating_add(1);
                self.dial(slot, ctx)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_session_entry_stays_small() {
        // The ≤ 2 KiB per idle connection budget is for everything; the entry is most of it.
        let size = std::mem::size_of::<Session>();
        assert!(size <= 512, "Session is {size} bytes");
    }

    #[test]
    fn tokens_round_trip_and_stay_clear_of_listener_tokens() {
        for (slot, generation) in [(0, 1), (7, 0x7fff_ffff), (0x7fff_ffff, 3)] {
            for side in [Side::Client, Side::Upstream] {
                let t = token(slot, generation, side);
                assert_eq!(untoken(t), (slot, generation, side));
                assert!(t.0 < usize::MAX / 2);
            }
        }
    }
}
