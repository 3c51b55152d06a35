//! One event loop per thread: its own listening sockets (SO_REUSEPORT), session table, buffer
//! pool and timer wheel. It accepts behind a capacity gate, dispatches edge-triggered events by
//! token and fires deadlines; sessions do the rest.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::buffer::BufferPool;
use super::session::{self, Context, End, Phase, Session};
use super::shared::Shared;
use super::sys;
use super::timer::{TimerWheel, TICK};
use crate::proto::cipher::CtrState;
use crate::proto::hello::MAX_ASSEMBLED_LEN;
use crate::proto::server_hello::MAX_CERT_LEN;

/// Connections accepted per listener per wake-up, so a flood cannot starve live sessions.
const ACCEPT_BUDGET: usize = 64;
const EVENT_CAPACITY: usize = 1024;
const WAKER_TOKEN: Token = Token(usize::MAX);
/// Listener i has token LISTENER_BASE - i; session tokens keep bit 63 clear.
const LISTENER_BASE: usize = usize::MAX - 1;

/// Connection numbers for log lines, shared by all loops.
static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

struct Listener {
    socket: TcpListener,
    /// More connections may be waiting: accept again without waiting for an event.
    backlog: bool,
    /// Accept failed for lack of descriptors; try again at this tick.
    paused_until: Option<u64>,
}

pub struct EventLoop {
    poll: Poll,
    events: Events,
    listeners: Vec<Listener>,
    sessions: Vec<Session>,
    free: Vec<u32>,
    max_sessions: usize,
    due: Vec<u32>,
    ctx: Context,
}

/// Sizes that `run` prints at start.
pub struct Footprint {
    pub session_bytes: usize,
    pub buffer_bytes: usize,
}

impl EventLoop {
    pub fn new(
        listeners: Vec<std::net::TcpListener>,
        shared: Arc<Shared>,
        max_sessions: usize,
        buffers: usize,
    ) -> io::Result<(EventLoop, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let mut registered = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            let mut socket = TcpListener::from_std(listener);
            poll.registry().register(
                &mut socket,
                Token(LISTENER_BASE - index),
                Interest::READABLE,
            )?;
            registered.push(Listener {
                socket,
                backlog: false,
                paused_until: None,
            });
        }
        let mut seed = [0; 48];
        getrandom::getrandom(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        let mut key = [0; 32];
        let mut iv = [0; 16];
        key.copy_from_slice(&seed[..32]);
        iv.copy_from_slice(&seed[32..]);
        let handshake_ticks = ticks(shared.handshake_timeout);
        let idle_ticks = ticks(shared.idle_timeout);
        let ctx = Context {
            registry: poll.registry().try_clone()?,
            pool: BufferPool::new(buffers),
            wheel: TimerWheel::new(max_sessions),
            shared,
            now: 0,
            handshake_ticks,
            idle_ticks,
            scratch: vec![0; MAX_ASSEMBLED_LEN],
            noise: vec![0; MAX_CERT_LEN],
            rng: CtrState::new(key, iv),
            waiters: VecDeque::with_capacity(max_sessions),
            hello_buffers: 0,
            max_hello_buffers: (buffers / 2).max(1),
            hello_waiters: VecDeque::with_capacity(max_sessions),
            ready: VecDeque::with_capacity(max_sessions),
        };
        let event_loop = EventLoop {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            listeners: registered,
            sessions: Vec::with_capacity(max_sessions),
            free: Vec::with_capacity(max_sessions),
            max_sessions,
            due: Vec::with_capacity(max_sessions),
            ctx,
        };
        Ok((event_loop, waker))
    }

    pub fn footprint(&self) -> Footprint {
        Footprint {
            session_bytes: self.max_sessions * std::mem::size_of::<Session>(),
            buffer_bytes: self.ctx.pool.memory_bytes(),
        }
    }

    /// Runs until the shared stop flag is set and the waker fires.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            if self.ctx.shared.stopping() {
                self.close_all();
                return Ok(());
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.ctx.now = self.now_tick();
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in events.iter() {
                let token = event.token();
                if token == WAKER_TOKEN {
                    continue;
                }
                if token.0 > LISTENER_BASE - self.listeners.len() {
                    self.accept(LISTENER_BASE - token.0);
                    continue;
                }
                let (slot, generation, side) = session::untoken(token);
                let Some(session) = self.sessions.get_mut(slot as usize) else {
                    continue;
                };
                if session.generation != generation || session.phase == Phase::Free {
                    continue;
                }
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                session.on_event(side, readable, writable, event.is_read_closed());
                self.drive(slot);
            }
            self.events = events;
            self.fire_deadlines();
            self.run_ready();
            self.serve_waiters();
            self.retry_listeners();
        }
    }

    fn now_tick(&self) -> u64 {
        ticks(self.ctx.shared.started.elapsed())
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let buffers = self.ctx.pool.available() > 0;
        let busy = !self.ctx.ready.is_empty()
            || (!self.ctx.waiters.is_empty() && buffers)
            || (!self.ctx.hello_waiters.is_empty() && buffers && self.hello_room())
            || self.listeners.iter().any(|l| l.backlog);
        if busy {
            return Some(Duration::ZERO);
        }
        let timers =
            !self.ctx.wheel.is_empty() || self.listeners.iter().any(|l| l.paused_until.is_some());
        if !timers {
            return None;
        }
        // Sleep to the next tick boundary: one bucket check per tick, nothing more.
        let elapsed = self.ctx.shared.started.elapsed();
        let tick_nanos = TICK.as_nanos();
        let into_tick = elapsed.as_nanos() % tick_nanos;
        Some(Duration::from_nanos((tick_nanos - into_tick) as u64))
    }

    fn drive(&mut self, slot: u32) {
        let Some(session) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        if let Err(end) = session.drive(slot, &mut self.ctx) {
            self.close(slot, end);
        }
    }

    fn close(&mut self, slot: u32, end: End) {
        let Some(session) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        if self.ctx.shared.verbose() {
            let (up, down) = session.bytes();
            match (session.phase, session.fronted_because) {
                (Phase::Fronting, Some(reason)) => eprintln!(
                    "connection {}: fronted ({reason}), {up} B to the front, {down} B back: {end}",
                    session.id
                ),
                (Phase::Relay, _) => eprintln!(
                    "connection {}: DC {}, {up} B up, {down} B down: {end}",
                    session.id,
                    session.dc()
                ),
                (phase, _) => eprintln!("connection {}: {phase:?}: {end}", session.id),
            }
        }
        session.close(slot, end, &mut self.ctx);
        self.free.push(slot);
    }

    fn accept(&mut self, index: usize) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get_mut(index) else {
                return;
            };
            match listener.socket.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    listener.backlog = false;
                    return;
                }
                Err(e) if out_of_descriptors(&e) => {
                    // Leave the rest in the backlog and retry later instead of spinning on an
                    // accept that keeps failing.
                    if listener.paused_until.is_none() {
                        eprintln!("feint: accept: {e}; pausing accepts briefly");
                    }
                    listener.paused_until = Some(self.ctx.now + 1);
                    listener.backlog = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    eprintln!("feint: accept: {e}");
                    listener.backlog = false;
                    return;
                }
            }
        }
        if let Some(listener) = self.listeners.get_mut(index) {
            listener.backlog = true;
        }
    }

    fn admit(&mut self, stream: mio::net::TcpStream) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.sessions.len() < self.max_sessions => {
                self.sessions.push(Session::new());
                (self.sessions.len() - 1) as u32
            }
            None => {
                // The table is full: close at once; it never grows.
                if self.ctx.shared.verbose() {
                    eprintln!("connection refused: --max-connections reached");
                }
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = sys::set_keepalive(&stream, self.ctx.shared.idle_timeout);
        let id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
        let Some(session) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        if let Err(e) = session.open(slot, id, stream, &mut self.ctx) {
            eprintln!("feint: register: {e}");
            session.close(slot, End::Internal, &mut self.ctx);
            self.free.push(slot);
        }
    }

    fn fire_deadlines(&mut self) {
        let due = &mut self.due;
        due.clear();
        self.ctx.wheel.expire(self.ctx.now, |slot| due.push(slot));
        for index in 0..self.due.len() {
            let slot = self.due[index];
            let Some(session) = self.sessions.get_mut(slot as usize) else {
                continue;
            };
            let result = session
                .on_deadline(slot, &mut self.ctx)
                .and_then(|()| session.drive(slot, &mut self.ctx));
            if let Err(end) = result {
                self.close(slot, end);
            }
        }
    }

    fn run_ready(&mut self) {
        for _ in 0..self.ctx.ready.len() {
            let Some((slot, generation)) = self.ctx.ready.pop_front() else {
                return;
            };
            if self.live(slot, generation) {
                if let Some(session) = self.sessions.get_mut(slot as usize) {
                    session.queued = false;
                }
                self.drive(slot);
            }
        }
    }

    /// Drives sessions that waited for a buffer, each at most once per call: one that must
    /// wait again goes back to the end of its queue.
    fn serve_waiters(&mut self) {
        for _ in 0..self.ctx.waiters.len() {
            if self.ctx.pool.available() == 0 {
                break;
            }
            let Some((slot, generation)) = self.ctx.waiters.pop_front() else {
                break;
            };
            self.wake(slot, generation);
        }
        for _ in 0..self.ctx.hello_waiters.len() {
            if self.ctx.pool.available() == 0 || !self.hello_room() {
                break;
            }
            let Some((slot, generation)) = self.ctx.hello_waiters.pop_front() else {
                break;
            };
            self.wake(slot, generation);
        }
    }

    fn hello_room(&self) -> bool {
        self.ctx.hello_buffers < self.ctx.max_hello_buffers
    }

    fn wake(&mut self, slot: u32, generation: u32) {
        if !self.live(slot, generation) {
            return;
        }
        if let Some(session) = self.sessions.get_mut(slot as usize) {
            session.waiting = false;
        }
        self.drive(slot);
    }

    fn live(&self, slot: u32, generation: u32) -> bool {
        self.sessions
            .get(slot as usize)
            .is_some_and(|s| s.generation == generation && s.phase != Phase::Free)
    }

    fn retry_listeners(&mut self) {
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            let paused_over = listener.paused_until.is_some_and(|t| t <= self.ctx.now);
            if paused_over {
                listener.paused_until = None;
            }
            if (paused_over || listener.backlog) && listener.paused_until.is_none() {
                self.accept(index);
            }
        }
    }

    fn close_all(&mut self) {
        for slot in 0..self.sessions.len() as u32 {
            if self.sessions[slot as usize].phase != Phase::Free {
                self.close(slot, End::Done);
            }
        }
    }
}

fn ticks(duration: Duration) -> u64 {
    (duration.as_nanos() / TICK.as_nanos()) as u64
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
