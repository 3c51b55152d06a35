//! The logic of one event loop, apart from the poll itself: admits connections into the table,
//! runs them on readiness, timers and queues, keeps each one's timer in step with its deadline,
//! and closes them. Generic over `Net`, so the simulation tests run exactly this code.

use std::net::SocketAddr;
use std::sync::Arc;

use mio::Token;

use super::buffer::BufferPool;
use super::connection::{Clock, Connection, Cx, Env, Summary, Wait};
use super::counters::Refusal as CounterRefusal;
use super::end::End;
use super::net::{CloseStyle, Net, Readiness};
use super::shared::Shared;
use super::slots::{untoken, Queue, Slots};
use super::timer::TimerWheel;

pub struct Driver<N: Net> {
    pub net: N,
    slots: Slots<N::Stream>,
    pool: BufferPool,
    wheel: TimerWheel,
    env: Env,
    /// Slots whose timer fired in this tick.
    due: Vec<u32>,
}

/// Why a new connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The table is full (the caller should have left it in the backlog).
    Full,
    /// It could not be registered with the poll, or its address is over its limit.
    Register,
}

impl<N: Net> Driver<N> {
    pub fn new(net: N, env: Env, max_connections: usize, buffers: usize) -> Self {
        Driver {
            net,
            slots: Slots::new(max_connections),
            pool: BufferPool::new(buffers),
            wheel: TimerWheel::new(max_connections),
            env,
            due: Vec::with_capacity(max_connections),
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.env.shared
    }

    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    pub fn has_room(&self) -> bool {
        !self.slots.is_full()
    }

    pub fn live_connections(&self) -> usize {
        self.slots.live_count()
    }

    pub fn timers_pending(&self) -> bool {
        !self.wheel.is_empty()
    }

    /// Work that must run before the next wait: queued connections that can make progress.
    pub fn busy(&self) -> bool {
        self.slots.queue_len(Queue::Ready) > 0
            || (self.slots.queue_len(Queue::Buffer) > 0 && self.pool.available() > 0)
    }

    pub fn set_clock(&mut self, now: Clock) {
        self.env.now = now;
    }

    /// Takes a new client socket, connected from `peer`, into the table.
    pub fn admit(
        &mut self,
        id: u64,
        stream: N::Stream,
        peer: Option<SocketAddr>,
    ) -> Result<(), Refusal> {
        let Some((slot, generation)) = self.slots.allocate() else {
            self.env.counters().refused(CounterRefusal::Cap);
            self.net.close(stream, CloseStyle::Graceful);
            return Err(Refusal::Full);
        };
        self.env.counters().accepted();
        let result = match self.slots.get(slot, generation) {
            Some(connection) => {
                let mut cx = Cx {
                    net: &mut self.net,
                    pool: &mut self.pool,
                    env: &mut self.env,
                    slot,
                    generation,
                };
                connection.open(id, stream, peer, &mut cx)
            }
            None => Err(End::Internal),
        };
        match result {
            Ok(()) => {
                // A hello that came with the connection is decided at once.
                self.run(slot);
                Ok(())
            }
            Err(end) => {
                self.close(slot, end);
                Err(Refusal::Register)
            }
        }
    }

    /// An event for `token`: note the readiness and run the connection.
    pub fn on_event(&mut self, token: Token, ready: Readiness) {
        let (slot, generation, side) = untoken(token);
        let Some(connection) = self.slots.get(slot, generation) else {
            return;
        };
        connection.on_ready(side, ready);
        self.run(slot);
    }

    /// Fires every timer due at the current tick.
    pub fn on_tick(&mut self) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        self.wheel.expire(self.env.now.tick, |slot| due.push(slot));
        for &slot in &due {
            let generation = self.slots.generation(slot);
            let Some(connection) = self.slots.get(slot, generation) else {
                continue;
            };
            let mut cx = Cx {
                net: &mut self.net,
                pool: &mut self.pool,
                env: &mut self.env,
                slot,
                generation,
            };
            match connection.on_timer(&mut cx) {
                Ok(()) => self.run(slot),
                Err(end) => self.close(slot, end),
            }
        }
        self.due = due;
    }

    /// When the first held reply is due (`Clock::micros`), if any is held.
    pub fn next_hold(&mut self) -> Option<u64> {
        let slot = self.slots.peek(Queue::Hold)?;
        let due = self.slots.get_live(slot).and_then(|c| c.reply_due());
        // A slot in this queue always holds a reply; if not, run it at once.
        Some(due.unwrap_or(0))
    }

    /// Runs the queues: held replies whose time has come, connections that used their
    /// budget, then those that wait for a buffer, each at most once per call.
    pub fn run_queues(&mut self) {
        for _ in 0..self.slots.queue_len(Queue::Hold) {
            match self.next_hold() {
                Some(due) if due <= self.env.now.micros => {}
                _ => break,
            }
            let Some(slot) = self.slots.pop(Queue::Hold) else {
                break;
            };
            self.run(slot);
        }
        for _ in 0..self.slots.queue_len(Queue::Ready) {
            let Some(slot) = self.slots.pop(Queue::Ready) else {
                break;
            };
            self.run(slot);
        }
        for _ in 0..self.slots.queue_len(Queue::Buffer) {
            if self.pool.available() == 0 {
                break;
            }
            let Some(slot) = self.slots.pop(Queue::Buffer) else {
                break;
            };
            self.run(slot);
        }
    }

    /// Closes every connection, for a stop.
    pub fn close_all(&mut self) {
        let live: Vec<u32> = self.slots.live_slots().collect();
        for slot in live {
            self.close(slot, End::Stopped);
        }
    }

    fn run(&mut self, slot: u32) {
        let generation = self.slots.generation(slot);
        let Some(connection) = self.slots.get(slot, generation) else {
            return;
        };
        let mut cx = Cx {
            net: &mut self.net,
            pool: &mut self.pool,
            env: &mut self.env,
            slot,
            generation,
        };
        match connection.drive(&mut cx) {
            Ok(Wait::Idle) => self.slots.dequeue(slot),
            Ok(Wait::Buffer) => self.slots.enqueue(slot, Queue::Buffer),
            Ok(Wait::Budget) => self.slots.enqueue(slot, Queue::Ready),
            Ok(Wait::Hold) => self.slots.enqueue(slot, Queue::Hold),
            Err(end) => return self.close(slot, end),
        }
        self.sync_timer(slot);
    }

    /// Keeps the slot's timer at or before the connection's deadline. A timer that fires early
    /// finds nothing due and is set again.
    fn sync_timer(&mut self, slot: u32) {
        let deadline = self
            .slots
            .get_live(slot)
            .and_then(|connection| connection.deadline());
        match (deadline, self.wheel.scheduled(slot)) {
            (None, Some(_)) => self.wheel.cancel(slot),
            (Some(deadline), Some(scheduled)) if scheduled <= deadline => {}
            (Some(deadline), _) => self.wheel.schedule(slot, deadline),
            (None, None) => {}
        }
    }

    fn close(&mut self, slot: u32, end: End) {
        let Some(connection) = self.slots.get_live(slot) else {
            return;
        };
        if self.env.shared.verbose() {
            log_outcome(connection, end);
        }
        let mut cx = Cx {
            net: &mut self.net,
            pool: &mut self.pool,
            env: &mut self.env,
            slot,
            generation: 0,
        };
        connection.close(end, &mut cx);
        self.wheel.cancel(slot);
        self.slots.release(slot);
    }

    /// Once per turn of the loop: the gauges of the metrics.
    pub fn report(&self) {
        let counters = self.env.counters();
        counters.set_active(self.slots.live_count());
        counters.set_buffers_in_use(self.pool.in_use());
    }
}

fn log_outcome<S>(connection: &Connection<S>, end: End) {
    let id = connection.id;
    match connection.summary() {
        Summary::Fronted { reason, up, down } => {
            eprintln!(
                "connection {id}: sent to the front ({reason}), {up} B in, {down} B out: {end}"
            )
        }
        Summary::Relay { dc, up, down } => {
            eprintln!("connection {id}: DC {dc}, {up} B up, {down} B down: {end}")
        }
        Summary::Handshake => eprintln!("connection {id}: during the handshake: {end}"),
        Summary::Undecided => eprintln!("connection {id}: before its hello: {end}"),
    }
}
