//! The upstream connection of a connection in the making: which address it is on, the connect,
//! the optional SOCKS5 CONNECT through `--upstream`, the per-address deadline and the move to
//! the next address. Every dial is non-blocking; the whole of one attempt, SOCKS5 included,
//! runs under one deadline.

use std::net::SocketAddr;
use std::sync::Arc;

use super::connection::{Connection, Cx, Phase};
use super::counters::DialResult;
use super::end::End;
use super::net::{CloseStyle, ConnectState, Net, Outcome, Readiness, Side};
use super::pipe::{self, Read, Step, Take};
use super::shared::Shared;
use super::slots::token;
use crate::proto::socks5::{self, Credentials, Socks5Dial, MAX_REQUEST_LEN};

/// An upstream connection in the making: which address it is on and how far it got.
#[derive(Clone, Copy, Debug)]
pub struct Dial {
    pub attempt: u8,
    pub state: DialState,
}

#[derive(Clone, Copy, Debug)]
pub enum DialState {
    NotStarted,
    Connecting {
        deadline: u64,
    },
    /// Connected to the SOCKS5 proxy; the CONNECT through it is under way.
    Socks {
        deadline: u64,
        machine: Socks5Dial,
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

    pub fn connected(&self) -> bool {
        matches!(self.state, DialState::Connected)
    }

    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            DialState::Connecting { deadline } | DialState::Socks { deadline, .. } => {
                Some(deadline)
            }
            _ => None,
        }
    }
}

/// Where an upstream connection goes.
#[derive(Clone, Copy)]
pub enum Target {
    Front,
    Dc(i16),
}

impl Target {
    /// The `attempt`-th address to reach, in the order the settings give.
    fn destination(self, shared: &Shared, attempt: u8) -> Option<SocketAddr> {
        let attempt = usize::from(attempt);
        match self {
            Target::Front => shared.front_addresses().get(attempt).copied().flatten(),
            Target::Dc(dc) => shared.dc_address(dc, attempt),
        }
    }

    /// The SOCKS5 proxy this target is dialled through, if any.
    fn via(self, shared: &Shared) -> Option<&super::shared::SocksUpstream> {
        let upstream = shared.upstream.as_ref()?;
        match self {
            Target::Dc(_) => Some(upstream),
            Target::Front => upstream.front_too.then_some(upstream),
        }
    }
}

impl<S> Connection<S> {
    fn dial_mut(&mut self) -> Option<(&mut Dial, Target)> {
        match &mut self.phase {
            Phase::AwaitHello { front, .. } => Some((front, Target::Front)),
            Phase::Fronting(fronting) => Some((&mut fronting.dial, Target::Front)),
            Phase::Relay(relay) => Some((&mut relay.dial, Target::Dc(relay.dc))),
            _ => None,
        }
    }

    fn count_dial<N: Net>(&self, cx: &Cx<'_, N>, result: DialResult) {
        if let Phase::Relay(relay) = &self.phase {
            cx.env.counters().dial(relay.dc, result);
        }
    }

    /// Starts a non-blocking connect to the current attempt's address, moving on to the next
    /// address when one fails at once.
    pub fn dial<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
        let upstream_token = token(cx.slot, cx.generation, Side::Upstream);
        let deadline = cx.env.now.tick + cx.env.dial_ticks;
        let shared = Arc::clone(&cx.env.shared);
        loop {
            let Some((dial, target)) = self.dial_mut() else {
                return Err(End::Internal);
            };
            let Some(destination) = target.destination(&shared, dial.attempt) else {
                dial.state = DialState::Exhausted;
                self.count_dial(cx, DialResult::Unreachable);
                return Err(End::Unreachable);
            };
            let via = target.via(&shared);
            let address = via.map_or(destination, |via| via.address);
            // Only a direct dial to the front can come back to us (a front name that resolves
            // to this machine); the DCs are the operator's, and a proxy dial comes from it.
            let watch = matches!(target, Target::Front) && via.is_none();
            match cx.net.dial(address, upstream_token, watch) {
                Some(stream) => {
                    dial.state = DialState::Connecting { deadline };
                    self.upstream.attach(stream);
                    return Ok(());
                }
                None => {
                    dial.attempt = dial.attempt.saturating_add(1);
                    self.count_dial(cx, DialResult::Unreachable);
                }
            }
        }
    }

    /// Drops the upstream socket and dials the next address.
    pub fn redial<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
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

    /// The dial deadline passed: this address did not answer in time.
    pub fn dial_timed_out<N: Net<Stream = S>>(
        &mut self,
        cx: &mut Cx<'_, N>,
    ) -> Option<Result<(), End>> {
        let now = cx.env.now.tick;
        let (dial, _) = self.dial_mut()?;
        if dial.deadline().is_none_or(|deadline| deadline > now) {
            return None;
        }
        self.count_dial(cx, DialResult::Timeout);
        Some(self.redial(cx))
    }

    /// Moves the dial on when its socket reports progress: the connect finished or failed, or
    /// the SOCKS5 proxy answered.
    pub fn advance_dial<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<(), End> {
        let writable = self.upstream.ready.writable;
        let Some((dial, _)) = self.dial_mut() else {
            return Ok(());
        };
        match dial.state {
            DialState::Connecting { deadline } if writable => self.finish_connect(deadline, cx),
            DialState::Socks { .. } => {
                for _ in 0..4 {
                    match self.socks_step(cx)? {
                        Step::Progress => continue,
                        _ => break,
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn finish_connect<N: Net<Stream = S>>(
        &mut self,
        deadline: u64,
        cx: &mut Cx<'_, N>,
    ) -> Result<(), End> {
        let Some(stream) = self.upstream.stream.as_mut() else {
            return Err(End::Internal);
        };
        let failed = match cx.net.connect_state(stream) {
            ConnectState::Pending => {
                self.upstream.ready.writable = false;
                return Ok(());
            }
            ConnectState::Connected => None,
            ConnectState::Refused => Some(DialResult::Refused),
            ConnectState::Failed => Some(DialResult::Unreachable),
        };
        if let Some(result) = failed {
            self.count_dial(cx, result);
            return self.redial(cx);
        }
        let shared = Arc::clone(&cx.env.shared);
        let Some((dial, target)) = self.dial_mut() else {
            return Err(End::Internal);
        };
        let Some(via) = target.via(&shared) else {
            dial.state = DialState::Connected;
            self.connected(cx);
            return Ok(());
        };
        let Some(destination) = target.destination(&shared, dial.attempt) else {
            return self.redial(cx);
        };
        let credentials = Credentials::new(&via.user, &via.password);
        let mut out = [0; MAX_REQUEST_LEN];
        let (machine, len) = Socks5Dial::start(destination, credentials.as_ref(), &mut out);
        dial.state = DialState::Socks { deadline, machine };
        self.send_to_proxy(&out[..len], cx)
    }

    /// Writes a SOCKS5 request whole: a fresh connection's send buffer always has room for a
    /// few hundred bytes, so a short write means the proxy is gone.
    fn send_to_proxy<N: Net<Stream = S>>(
        &mut self,
        bytes: &[u8],
        cx: &mut Cx<'_, N>,
    ) -> Result<(), End> {
        let Some(stream) = self.upstream.stream.as_mut() else {
            return Err(End::Internal);
        };
        match cx.net.write(stream, bytes) {
            Outcome::Progress(n) if n == bytes.len() => Ok(()),
            _ => {
                self.count_dial(cx, DialResult::Unreachable);
                self.redial(cx)
            }
        }
    }

    /// Feeds what the SOCKS5 proxy sent to the dial's machine.
    fn socks_step<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) -> Result<Step, End> {
        let shared = Arc::clone(&cx.env.shared);
        let scratch = &mut cx.env.scratch[..MAX_REQUEST_LEN];
        let peeked = match pipe::read(&mut self.upstream, cx.net, scratch, Take::Peek) {
            Ok(Read::Bytes(n)) => n,
            Ok(Read::Idle) => return Ok(Step::Idle),
            Ok(Read::Closed) | Err(_) => {
                self.count_dial(cx, DialResult::Unreachable);
                return self.redial(cx).map(|()| Step::Progress);
            }
        };
        let Some((dial, target)) = self.dial_mut() else {
            return Err(End::Internal);
        };
        let (DialState::Socks { machine, .. }, Some(via)) = (&mut dial.state, target.via(&shared))
        else {
            return Err(End::Internal);
        };
        let credentials = Credentials::new(&via.user, &via.password);
        let mut out = [0; MAX_REQUEST_LEN];
        let step = machine.receive(&cx.env.scratch[..peeked], credentials.as_ref(), &mut out);
        let consumed = match step {
            socks5::Step::NeedMore => return Ok(Step::Idle),
            socks5::Step::Send { consumed, .. } | socks5::Step::Connected { consumed } => consumed,
            socks5::Step::Failed(failure) => {
                let result = match failure {
                    socks5::Failure::Refused => DialResult::Refused,
                    _ => DialResult::Unreachable,
                };
                self.count_dial(cx, result);
                return self.redial(cx).map(|()| Step::Progress);
            }
        };
        let Some(stream) = self.upstream.stream.as_mut() else {
            return Err(End::Internal);
        };
        match cx.net.read(stream, &mut cx.env.scratch[..consumed]) {
            Outcome::Progress(n) if n == consumed => {}
            _ if consumed == 0 => {}
            _ => return Err(End::Internal),
        }
        // Peeked bytes that were not consumed are still queued.
        self.upstream.ready.readable = true;
        match step {
            socks5::Step::Send { written, .. } => {
                self.send_to_proxy(&out[..written], cx)?;
            }
            _ => {
                if let Some((dial, _)) = self.dial_mut() {
                    dial.state = DialState::Connected;
                }
                self.connected(cx);
            }
        }
        Ok(Step::Progress)
    }

    /// The upstream connection is up, directly or through the SOCKS5 proxy.
    fn connected<N: Net<Stream = S>>(&mut self, cx: &mut Cx<'_, N>) {
        self.count_dial(cx, DialResult::Ok);
        let idle_deadline = cx.env.now.tick + cx.env.idle_ticks;
        if let Phase::Relay(relay) = &mut self.phase {
            relay.idle_deadline = idle_deadline;
        }
    }
}
