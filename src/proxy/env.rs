//! What the event loop lends a connection while it runs it: the clock, the settings, the
//! random source and scratch space (`Env`), and the loop's sockets and buffer pool (`Cx`). And
//! what a connection answers when it stops running for now (`Wait`).

use std::sync::Arc;

use super::buffer::BufferPool;
use super::counters::LoopCounters;
use super::net::Net;
use super::shared::Shared;
use crate::proto::cipher::CtrState;

/// The loop's clock: its tick (for deadlines) and the Unix time (for hello timestamps).
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    pub tick: u64,
    pub unix: u64,
    /// Microseconds since start, for waits shorter than a tick.
    pub micros: u64,
}

/// What the loop lends the connection it runs: settings, clock, randomness and scratch space.
pub struct Env {
    pub shared: Arc<Shared>,
    /// Which event loop this is, for its counters.
    pub loop_index: usize,
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
    /// This loop's counters.
    pub fn counters(&self) -> &LoopCounters {
        self.shared.metrics.for_loop(self.loop_index)
    }

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
    /// Its reply is held back until `Connection::reply_due`.
    Hold,
}
