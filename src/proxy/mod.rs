//! The I/O edge: sockets, event loops, clocks and randomness. Drives `proto` state machines.

mod access_list;
mod admission;
mod buffer;
mod connection;
mod counters;
mod dial;
mod driver;
mod end;
mod env;
mod event_loop;
mod front_probe;
mod handshake;
mod metrics;
mod net;
mod own_dials;
mod per_ip;
mod pipe;
mod shared;
#[cfg(test)]
mod sim;
mod slots;
mod socket;
mod stats;
mod sys;
mod timer;

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::settings::{Config, FrontRoute};
use event_loop::EventLoop;
use front_probe::FrontLearner;
use shared::{FrontAddresses, Shared, MAX_FRONT_ADDRESSES};

pub use access_list::{AccessLists, ListError};
pub use buffer::BUF_LEN;
pub use front_probe::{probe as probe_front, ProbeError};
pub use shared::dc_address;
pub use sys::{check_address_free, open_file_limit};

/// How often the front's host name is resolved again (and its first flight probed), and how
/// soon after a failed lookup.
const FRONT_REFRESH: Duration = Duration::from_secs(300);
const FRONT_RETRY: Duration = Duration::from_secs(10);

/// Binds every listener, prints `listening on ADDR` per address, hands the bound addresses to
/// `announce` (main prints the links there), and runs the event loops until SIGINT or SIGTERM;
/// SIGHUP reloads `lists` from their files. Errors are for bind failures and other startup
/// faults.
pub fn run(
    config: &Config,
    lists: AccessLists,
    announce: impl FnOnce(&[SocketAddr]),
) -> io::Result<()> {
    // Before any thread starts, so every thread inherits the mask and only the signal thread
    // below ever sees SIGINT, SIGTERM or SIGHUP.
    sys::block_signals()?;
    let wanted_threads = match config.threads {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let shares = LoopShares::new(wanted_threads, config.max_connections, config.buffers);
    if shares.loops() < wanted_threads {
        eprintln!(
            "feint: running {} instead of {wanted_threads}: each loop needs at least one of the {}",
            plural(shares.loops(), "event loop"),
            plural(config.max_connections, "connection"),
        );
    }
    let total_buffers: usize = shares.buffers.iter().sum();
    if total_buffers > config.buffers {
        eprintln!(
            "feint: --buffers {} raised to {total_buffers}: each of the {} needs at least {MIN_BUFFERS_PER_LOOP}",
            config.buffers,
            plural(shares.loops(), "event loop"),
        );
    }
    let threads = shares.loops();
    // Every address is checked before any is bound, so our own listener on 0.0.0.0:443 cannot
    // make [::]:443 look taken. Port 0 asks the kernel for a free port: nothing to check.
    for &requested in config.binds.iter().filter(|a| a.port() != 0) {
        sys::check_address_free(requested).map_err(|e| bind_error(requested, e))?;
    }
    let mut bound: Vec<SocketAddr> = Vec::with_capacity(config.binds.len());
    let mut per_thread: Vec<Vec<std::net::TcpListener>> =
        (0..threads).map(|_| Vec::new()).collect();
    for &requested in &config.binds {
        let mut address = requested;
        for listeners in per_thread.iter_mut() {
            let listener = sys::reuseport_listener(address, config.client_mss)
                .map_err(|e| bind_error(requested, e))?;
            // With port 0 the first bind picks the port; the other loops join it.
            address = listener.local_addr()?;
            listeners.push(listener);
        }
        bound.push(address);
    }
    for address in &bound {
        eprintln!("listening on {address}");
    }
    let metrics_listener = match config.metrics {
        Some(address) => Some(bind_metrics(address)?),
        None => None,
    };
    if let Some(description) = lists.describe() {
        eprintln!("address lists: {description}");
    }

    let mut shared = Shared::new(config);
    shared.metrics = counters::Metrics::new(threads);
    shared.set_lists(lists);
    if let Some(upstream) = &config.upstream {
        // Resolved once, here: the loops dial addresses, never names.
        let address = (upstream.host.as_str(), upstream.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| {
                io::Error::other(format!(
                    "cannot resolve the --upstream host {}",
                    upstream.host
                ))
            })?;
        let (user, password) = match &upstream.credentials {
            Some(c) => (c.user.as_bytes().to_vec(), c.password.as_bytes().to_vec()),
            None => (Vec::new(), Vec::new()),
        };
        shared.upstream = Some(shared::SocksUpstream {
            address,
            user,
            password,
            front_too: config.front_route == FrontRoute::ViaUpstream,
        });
    }
    let mut draw = [0u8; 2];
    getrandom::getrandom(&mut draw).map_err(|e| io::Error::other(e.to_string()))?;
    shared.cert_len = 2500 + (u16::from_le_bytes(draw) as usize % 2201);
    let shared = Arc::new(shared);

    announce(&bound);
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

    let mut handles = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    let mut session_bytes = 0;
    let mut buffer_bytes = 0;
    for (index, listeners) in per_thread.into_iter().enumerate() {
        let (mut event_loop, waker) = EventLoop::new(
            index,
            listeners,
            Arc::clone(&shared),
            shares.sessions[index],
            shares.buffers[index],
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
    let address_bytes = shared.per_ip.memory_bytes();
    eprintln!(
        "memory: {} MiB fixed ({}; sessions {:.1} MiB for {}, buffers {:.1} MiB, replay cache {:.1} MiB for {}, per-address counters {:.1} MiB)",
        mib(session_bytes + buffer_bytes + replay_bytes + address_bytes).ceil(),
        plural(threads, "loop"),
        mib(session_bytes),
        plural(config.max_connections, "connection"),
        mib(buffer_bytes),
        mib(replay_bytes),
        plural(shared.replay_capacity(), "hello"),
        mib(address_bytes),
    );
    eprintln!(
        "replay protection: the last {} genuine handshakes are remembered, whatever their age",
        shared.replay_capacity()
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

    if let Some(listener) = metrics_listener {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("feint-metrics".into())
            .spawn(move || metrics::serve(listener, shared))?;
    }
    {
        let shared = Arc::clone(&shared);
        let every = config.stats_every;
        thread::Builder::new()
            .name("feint-stats".into())
            .spawn(move || stats::run(shared, every))?;
    }

    {
        let shared = Arc::clone(&shared);
        // Clones: the wakers must outlive the loops, or closing an eventfd could drop the very
        // wake-up it carries.
        let wakers = wakers.clone();
        let (allow, block) = (config.allow.clone(), config.block.clone());
        thread::Builder::new()
            .name("feint-signals".into())
            .spawn(move || {
                loop {
                    match sys::wait_for_signal() {
                        Ok(libc::SIGHUP) => {
                            reload_lists(&shared, allow.as_deref(), block.as_deref());
                            continue;
                        }
                        Ok(libc::SIGINT) => eprintln!("stopping (SIGINT)"),
                        Ok(_) => eprintln!("stopping (SIGTERM)"),
                        Err(_) => {}
                    }
                    break;
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

/// The start-up error for a listener that cannot be bound, with the fix for the two common
/// causes.
fn bind_error(address: SocketAddr, error: io::Error) -> io::Error {
    let advice = match error.kind() {
        io::ErrorKind::AddrInUse => {
            "; another process (another feint, or another server) holds it: stop that one or \
             choose another --bind"
                .to_owned()
        }
        io::ErrorKind::PermissionDenied => {
            let binary = std::env::current_exe()
                .map_or_else(|_| "feint".into(), |path| path.display().to_string());
            format!(
                "; ports below 1024 need root or CAP_NET_BIND_SERVICE: run it from the systemd \
                 unit (scripts/feint.service), or `setcap cap_net_bind_service=+ep {binary}` \
                 as root, or listen on a port from 1024 up"
            )
        }
        _ => String::new(),
    };
    io::Error::new(error.kind(), format!("bind {address}: {error}{advice}"))
}

/// The `--metrics` listener, blocking; says where it is, and warns when it is not loopback.
fn bind_metrics(address: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .map_err(|e| io::Error::new(e.kind(), format!("bind --metrics {address}: {e}")))?;
    let bound = listener.local_addr()?;
    eprintln!("metrics on http://{bound}/metrics");
    if !address.ip().is_loopback() {
        eprintln!(
            "feint: warning: --metrics {address} is not a loopback address; whoever reaches it \
             can read the counters, so firewall it or bind 127.0.0.1"
        );
    }
    Ok(listener)
}

/// SIGHUP: loads the list files again; a bad file keeps the lists in force and says why.
fn reload_lists(shared: &Shared, allow: Option<&std::path::Path>, block: Option<&std::path::Path>) {
    if allow.is_none() && block.is_none() {
        eprintln!("SIGHUP: no --allow or --block file to reload");
        return;
    }
    match AccessLists::load(allow, block) {
        Ok(lists) => {
            let description = lists.describe().unwrap_or_default();
            shared.set_lists(lists);
            eprintln!("SIGHUP: address lists reloaded: {description}");
        }
        Err(e) => eprintln!("feint: SIGHUP: keeping the old address lists: {e}"),
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `1 loop`, `2 loops`: nouns whose plural adds an s.
fn plural(count: usize, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        _ => format!("{count} {noun}s"),
    }
}

/// A loop with fewer buffers than this could not relay both ways at once.
const MIN_BUFFERS_PER_LOOP: usize = 2;

/// How the session table and the buffers are shared out over the event loops: exactly
/// `--max-connections` sessions in all, at least one per loop, so there are never more loops
/// than connections; `--buffers` in all, unless that leaves a loop under
/// [`MIN_BUFFERS_PER_LOOP`].
#[derive(Debug, PartialEq, Eq)]
struct LoopShares {
    sessions: Vec<usize>,
    buffers: Vec<usize>,
}

impl LoopShares {
    fn new(threads: usize, max_connections: usize, buffers: usize) -> LoopShares {
        let loops = threads.clamp(1, max_connections.max(1));
        let share = |total: usize, index: usize| total / loops + usize::from(index < total % loops);
        LoopShares {
            sessions: (0..loops).map(|i| share(max_connections, i)).collect(),
            buffers: (0..loops)
                .map(|i| share(buffers, i).max(MIN_BUFFERS_PER_LOOP))
                .collect(),
        }
    }

    fn loops(&self) -> usize {
        self.sessions.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_shares_add_up_to_the_flags() {
        let shares = LoopShares::new(3, 8192, 512);
        assert_eq!(shares.sessions, [2731, 2731, 2730]);
        assert_eq!(shares.buffers, [171, 171, 170]);
    }

    #[test]
    fn more_threads_than_connections_run_one_loop_per_connection() {
        let shares = LoopShares::new(1000, 3, 512);
        assert_eq!(shares.sessions, [1, 1, 1]);
        assert_eq!(shares.buffers, [171, 171, 170]);
    }

    #[test]
    fn many_threads_keep_the_connection_count_and_two_buffers_each() {
        let shares = LoopShares::new(1000, 8192, 512);
        assert_eq!(shares.loops(), 1000);
        assert_eq!(shares.sessions.iter().sum::<usize>(), 8192);
        assert!(shares.buffers.iter().all(|&b| b == 2));
    }

    #[test]
    fn plural_is_right_for_one_and_for_many() {
        assert_eq!(plural(1, "loop"), "1 loop");
        assert_eq!(plural(0, "loop"), "0 loops");
        assert_eq!(plural(2, "connection"), "2 connections");
    }
}
