//! One event loop per thread: the mio poll, its own listening sockets (SO_REUSEPORT) and the
//! clocks. It accepts while the table has room, turns events into readiness for the driver and
//! ticks the timers; the driver and the connections do the rest.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::buffer::BUF_LEN;
use super::connection::{Clock, Env};
use super::driver::Driver;
use super::net::Readiness;
use super::shared::Shared;
use super::slots::Slots;
use super::socket::MioNet;
use super::timer::TICK;
use crate::proto::cipher::CtrState;
use crate::proto::hello::MAX_ASSEMBLED_LEN;
use crate::proto::server_hello::MAX_CERT_LEN;

/// Connections accepted per listener per wake-up, so a flood cannot starve live connections.
const ACCEPT_BUDGET: usize = 64;
const EVENT_CAPACITY: usize = 1024;
const WAKER_TOKEN: Token = Token(usize::MAX);
/// Listener i has token LISTENER_BASE - i; connection tokens keep bit 63 clear.
const LISTENER_BASE: usize = usize::MAX - 1;
/// How long one upstream address may take to accept a connection before the next is tried.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

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
    driver: Driver<MioNet>,
    max_connections: usize,
    /// The tick at which connections were last refused at the cap, for a rate-limited log line.
    refused_logged: Option<u64>,
}

/// Sizes that `run` prints at start.
pub struct Footprint {
    pub session_bytes: usize,
    pub buffer_bytes: usize,
}

impl EventLoop {
    pub fn new(
        loop_index: usize,
        listeners: Vec<std::net::TcpListener>,
        shared: Arc<Shared>,
        max_connections: usize,
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
        let env = Env {
            loop_index,
            handshake_ticks,
            idle_ticks: ticks(shared.idle_timeout),
            dial_ticks: ticks(DIAL_TIMEOUT),
            now: Clock::default(),
            rng: CtrState::new(key, iv),
            scratch: vec![0; BUF_LEN],
            assembled: vec![0; MAX_ASSEMBLED_LEN],
            noise: vec![0; MAX_CERT_LEN],
            shared: Arc::clone(&shared),
        };
        let net = MioNet {
            registry: poll.registry().try_clone()?,
            shared,
        };
        let event_loop = EventLoop {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            listeners: registered,
            driver: Driver::new(net, env, max_connections, buffers),
            max_connections,
            refused_logged: None,
        };
        Ok((event_loop, waker))
    }

    pub fn footprint(&self) -> Footprint {
        Footprint {
            session_bytes: self.max_connections * Slots::<mio::net::TcpStream>::entry_bytes(),
            buffer_bytes: self.driver.pool().memory_bytes(),
        }
    }

    /// Runs until the shared stop flag is set and the waker fires.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            if self.driver.shared().stopping() {
                self.driver.close_all();
                return Ok(());
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.driver.set_clock(self.clock());
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
                let ready = Readiness {
                    readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                    writable: event.is_writable() || event.is_write_closed() || event.is_error(),
                    hung_up: event.is_read_closed() || event.is_error(),
                };
                self.driver.on_event(token, ready);
            }
            self.events = events;
            self.driver.on_tick();
            self.driver.run_queues();
            self.driver.report();
            self.retry_listeners();
        }
    }

    fn clock(&self) -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let elapsed = self.driver.shared().started.elapsed();
        Clock {
            tick: ticks(elapsed),
            unix,
            micros: elapsed.as_micros() as u64,
        }
    }

    fn poll_timeout(&mut self) -> Option<Duration> {
        let room = self.driver.has_room();
        let busy = self.driver.busy() || (room && self.listeners.iter().any(|l| l.backlog));
        if busy {
            return Some(Duration::ZERO);
        }
        if let Some(due) = self.driver.next_hold() {
            // A held reply is due before the next tick: wake for it, to the microsecond.
            let now = self.driver.shared().started.elapsed().as_micros() as u64;
            return Some(Duration::from_micros(due.saturating_sub(now)).min(TICK));
        }
        let timers =
            self.driver.timers_pending() || self.listeners.iter().any(|l| l.paused_until.is_some());
        if !timers {
            return None;
        }
        // Sleep to the next tick boundary: one bucket check per tick, nothing more.
        let elapsed = self.driver.shared().started.elapsed();
        let tick_nanos = TICK.as_nanos();
        let into_tick = elapsed.as_nanos() % tick_nanos;
        Some(Duration::from_nanos((tick_nanos - into_tick) as u64))
    }

    fn accept(&mut self, index: usize) {
        let now = self.driver_tick();
        for _ in 0..ACCEPT_BUDGET {
            if !self.driver.has_room() {
                // At the cap, new connections wait in the listen backlog, as at any busy
                // server, instead of being accepted and reset.
                self.note_cap();
                if let Some(listener) = self.listeners.get_mut(index) {
                    listener.backlog = true;
                }
                return;
            }
            let Some(listener) = self.listeners.get_mut(index) else {
                return;
            };
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    let own_dials = &self.driver.shared().own_dials;
                    // Most of the time no front dial is open, and no local address is needed.
                    let came_back = if own_dials.is_empty() {
                        None
                    } else {
                        let port = stream.local_addr().map_or(0, |a| a.port());
                        own_dials.arrived(peer, port)
                    };
                    if let Some(front) = came_back {
                        // Our own dial to the front came back to us: refuse to loop.
                        self.driver.shared().mark_front_self(front);
                        let _ = super::sys::set_linger_zero(&stream);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
                    let _ = self.driver.admit(id, stream, Some(peer));
                }
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
                    listener.paused_until = Some(now + 1);
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

    /// Says, at most once a minute, that new connections wait because the table is full.
    fn note_cap(&mut self) {
        let now = self.driver_tick();
        let minute = ticks(Duration::from_secs(60));
        if self.refused_logged.is_some_and(|at| now < at + minute) {
            return;
        }
        self.refused_logged = Some(now);
        eprintln!(
            "feint: {} connections open, the --max-connections share of this event loop; new ones wait until one closes",
            self.driver.live_connections()
        );
    }

    fn driver_tick(&self) -> u64 {
        ticks(self.driver.shared().started.elapsed())
    }

    fn retry_listeners(&mut self) {
        let now = self.driver_tick();
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            let paused_over = listener.paused_until.is_some_and(|t| t <= now);
            if paused_over {
                listener.paused_until = None;
            }
            let ready = (paused_over || listener.backlog) && listener.paused_until.is_none();
            if ready && self.driver.has_room() {
                self.accept(index);
            }
        }
    }
}

pub fn ticks(duration: Duration) -> u64 {
    (duration.as_nanos() / TICK.as_nanos()) as u64
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
