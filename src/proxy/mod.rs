//! The I/O edge: sockets, event loops, clocks and randomness. Drives `proto` state machines.

mod buffer;
mod event_loop;
mod front_probe;
mod pipe;
mod session;
mod shared;
mod socket;
mod sys;
mod timer;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::cli;
use crate::secret;
use crate::settings::Config;
use event_loop::EventLoop;
use front_probe::FrontLearner;
use shared::{FrontAddresses, Shared, MAX_FRONT_ADDRESSES};

pub use buffer::BUF_LEN;

/// How often the front's host name is resolved again (and its first flight probed), and how
/// soon after a failed lookup.
const FRONT_REFRESH: Duration = Duration::from_secs(300);
const FRONT_RETRY: Duration = Duration::from_secs(10);

/// Binds every listener, prints `listening on ADDR` per address and the links, and runs the
/// event loops until SIGINT or SIGTERM. Errors are for bind failures and other startup faults.
pub fn run(config: Config) -> io::Result<()> {
    // Before any thread starts, so every thread inherits the mask and only the signal thread
    // below ever sees SIGINT or SIGTERM.
    sys::block_stop_signals()?;
    let threads = match config.threads {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut bound: Vec<SocketAddr> = Vec::with_capacity(config.binds.len());
    let mut per_thread: Vec<Vec<std::net::TcpListener>> =
        (0..threads).map(|_| Vec::new()).collect();
    for &requested in &config.binds {
        let mut address = requested;
        for listeners in per_thread.iter_mut() {
            let listener = sys::reuseport_listener(address)
                .map_err(|e| io::Error::new(e.kind(), format!("bind {requested}: {e}")))?;
            // With port 0 the first bind picks the port; the other loops join it.
            address = listener.local_addr()?;
            listeners.push(listener);
        }
        bound.push(address);
    }
    for address in &bound {
        eprintln!("listening on {address}");
    }

    let mut shared = Shared::new(&config);
    let mut draw = [0u8; 2];
    getrandom::getrandom(&mut draw).map_err(|e| io::Error::other(e.to_string()))?;
    shared.cert_len = 2500 + (u16::from_le_bytes(draw) as usize % 2201);
    let shared = Arc::new(shared);

    print_links(&config, &bound);
    let mut front = FrontResolver {
        host: config.front.host.clone(),
        port: config.front.port,
        own_ports: bound.iter().map(|a| a.port()).collect(),
        failing: false,
        warned_self: false,
    };
    shared.set_front_addresses(front.resolve());
    {
        let shared = Arc::clone(&shared);
        let mut learner = config
            .probe_front
            .then(|| FrontLearner::new(&shared.domain));
        // The first probe runs here, off the startup path: until it answers, clients get the
        // default reply.
        thread::Builder::new()
            .name("feint-resolve".into())
            .spawn(move || {
                if let Some(learner) = learner.as_mut() {
                    learner.learn(&shared.front_addresses(), &shared);
                }
                loop {
                    thread::sleep(if front.failing {
                        FRONT_RETRY
                    } else {
                        FRONT_REFRESH
                    });
                    let addresses = front.resolve();
                    // Keep the last good addresses (and profile) through a DNS failure.
                    if addresses[0].is_some() {
                        shared.set_front_addresses(addresses);
                        if let Some(learner) = learner.as_mut() {
                            learner.learn(&addresses, &shared);
                        }
                    }
                }
            })?;
    }

    let sessions_per_loop = config.max_connections.div_ceil(threads);
    let buffers_per_loop = config.buffers.div_ceil(threads).max(2);
    let mut handles = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    let mut session_bytes = 0;
    let mut buffer_bytes = 0;
    for (index, listeners) in per_thread.into_iter().enumerate() {
        let (mut event_loop, waker) = EventLoop::new(
            listeners,
            Arc::clone(&shared),
            sessions_per_loop,
            buffers_per_loop,
        )?;
        let footprint = event_loop.footprint();
        session_bytes += footprint.session_bytes;
        buffer_bytes += footprint.buffer_bytes;
        wakers.push(waker);
        handles.push(
            thread::Builder::new()
                .name(format!("feint-loop-{index}"))
                .spawn(move || event_loop.run())?,
        );
    }
    let replay_bytes = shared.replay_memory_bytes();
    eprintln!(
        "memory: {} MiB fixed ({threads} loops; sessions {:.1} MiB for {} connections, buffers {:.1} MiB, replay cache {:.1} MiB for {} hellos)",
        mib(session_bytes + buffer_bytes + replay_bytes).ceil(),
        mib(session_bytes),
        sessions_per_loop * threads,
        mib(buffer_bytes),
        mib(replay_bytes),
        shared.replay_capacity(),
    );
    if let Some(limit) = sys::open_file_limit() {
        let needed = 2 * config.max_connections as u64 + 64;
        if limit < needed {
            eprintln!(
                "feint: the open-file limit is {limit}, below the {needed} that --max-connections {} needs; raise it (ulimit -n)",
                config.max_connections
            );
        }
    }

    {
        let shared = Arc::clone(&shared);
        // Clones: the wakers must outlive the loops, or closing an eventfd could drop the very
        // wake-up it carries.
        let wakers = wakers.clone();
        thread::Builder::new()
            .name("feint-signals".into())
            .spawn(move || {
                if let Ok(signal) = sys::wait_for_stop_signal() {
                    let name = if signal == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    eprintln!("stopping ({name})");
                }
                shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                for waker in &wakers {
                    let _ = waker.wake();
                }
            })?;
    }

    let mut result = Ok(());
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(io::Error::other("an event loop panicked")),
        }
    }
    drop(wakers);
    eprintln!("stopped");
    result
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Prints the links when the public address is known: --public, or a specific bound address.
fn print_links(config: &Config, bound: &[SocketAddr]) {
    let Some(first) = bound.first() else {
        return;
    };
    let endpoint = match &config.public {
        Some(public) => cli::public_endpoint(public, first.port()),
        None if !first.ip().is_unspecified() => Some((first.ip().to_string(), first.port())),
        None => None,
    };
    match endpoint {
        Some((host, port)) => {
            for link in secret::links(&config.secret, &host, port) {
                eprintln!("{link}");
            }
        }
        None => eprintln!("{}", cli::NO_PUBLIC_HINT),
    }
}

/// Resolves the front's name, off the event loops, and says so once when that starts or stops
/// working.
struct FrontResolver {
    host: String,
    port: u16,
    /// Our listening ports: an address of this machine on one of them is a fronting loop.
    own_ports: Vec<u16>,
    failing: bool,
    warned_self: bool,
}

impl FrontResolver {
    /// The front's addresses, leaving out any that are this proxy itself; none on failure.
    fn resolve(&mut self) -> FrontAddresses {
        let mut addresses: FrontAddresses = [None; MAX_FRONT_ADDRESSES];
        let host = self.host.as_str();
        let resolved = match (host, self.port).to_socket_addrs() {
            Ok(resolved) => resolved,
            Err(e) => {
                if !self.failing {
                    eprintln!(
                        "feint: cannot resolve the front {host}: {e}; retrying every {}s",
                        FRONT_RETRY.as_secs()
                    );
                }
                self.failing = true;
                return addresses;
            }
        };
        let mut count = 0;
        for address in resolved {
            if is_self(address, &self.own_ports) {
                if !self.warned_self {
                    self.warned_self = true;
                    eprintln!("feint: the front {host} resolves to this proxy ({address}); not fronting there");
                }
                continue;
            }
            if let Some(entry) = addresses.get_mut(count) {
                *entry = Some(address);
                count += 1;
            }
        }
        if count == 0 {
            if !self.failing {
                eprintln!(
                    "feint: the front {host} has no address to front to; retrying every {}s",
                    FRONT_RETRY.as_secs()
                );
            }
            self.failing = true;
        } else {
            if self.failing {
                eprintln!("feint: the front {host} resolves again");
            }
            self.failing = false;
        }
        addresses
    }
}

fn is_self(address: SocketAddr, own_ports: &[u16]) -> bool {
    if !own_ports.contains(&address.port()) {
        return false;
    }
    let ip = address.ip();
    // A UDP bind to port 0 succeeds only for addresses of this machine.
    ip.is_unspecified() || ip.is_loopback() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}
