//! State shared by all event loops: settings derived from the flags, the replay filter, the
//! resolved fronting addresses, what was learned of the front's answer, the allow and block
//! lists, the loop counters and the stop flag. Locks here are taken only at accept and
//! handshake time, never per read or write.

use std::collections::hash_map::RandomState;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::own_dials::OwnDials;

use crate::proto::dc;
use crate::proto::front_flight::FrontProfile;
use crate::proto::replay::ReplayFilter;
use crate::settings::{ClientProxyHeader, Config, FrontProxyHeader, LogLevel, PreferIp};

use super::access_list::{AccessLists, Verdict};
use super::counters::Metrics;
use super::per_ip::PerIp;

/// The SOCKS5 proxy that DCs (and maybe the front) are dialled through, resolved at start.
#[derive(Clone, Debug)]
pub struct SocksUpstream {
    pub address: SocketAddr,
    /// RFC 1929 user and password, if any.
    pub user: Vec<u8>,
    pub password: Vec<u8>,
    pub front_too: bool,
}

/// How many resolved addresses of the front are kept.
pub const MAX_FRONT_ADDRESSES: usize = 8;

/// The certificate record size before `run` draws one in 2500..=4700, as mtg's default range.
pub const DEFAULT_CERT_LEN: usize = 2500;

pub type FrontAddresses = [Option<SocketAddr>; MAX_FRONT_ADDRESSES];

pub struct Shared {
    pub key: [u8; 16],
    pub domain: Vec<u8>,
    pub dc_overrides: Vec<(i16, SocketAddr)>,
    pub prefer_ip: PreferIp,
    pub time_skew: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub log: LogLevel,
    pub client_proxy_header: ClientProxyHeader,
    pub front_proxy_header: FrontProxyHeader,
    /// Set by `run` once the `--upstream` host is resolved.
    pub upstream: Option<SocksUpstream>,
    /// Connections open per client address.
    pub per_ip: PerIp,
    /// Process start, the origin of every monotonic time in feint.
    pub started: Instant,
    /// Base size of the fake certificate record, drawn once per process (docs/PROTOCOL.md §3.4).
    pub cert_len: usize,
    pub replay: Mutex<ReplayFilter<RandomState>>,
    pub front: RwLock<FrontAddresses>,
    /// Front addresses that turned out to lead back to this proxy; never dialled again.
    pub front_is_self: RwLock<FrontAddresses>,
    /// Our recent dials to the front, to recognise them if they arrive at our own listeners.
    pub own_dials: OwnDials,
    /// Swapped whole on SIGHUP; read once per accepted connection.
    pub lists: RwLock<Arc<AccessLists>>,
    /// One set of counters per event loop; `run` sizes it to the loop count.
    pub metrics: Metrics,
    /// The front's answer to a TDLib-shaped hello, once a probe has read one (issue 8).
    pub profile: RwLock<Option<FrontProfile>>,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new(config: &Config) -> Self {
        Shared {
            key: config.secret.key,
            domain: config.secret.domain.as_bytes().to_vec(),
            dc_overrides: config.dc_overrides.clone(),
            prefer_ip: config.prefer_ip,
            time_skew: config.time_skew,
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            log: config.log,
            client_proxy_header: config.client_proxy_header,
            front_proxy_header: config.front_proxy_header,
            upstream: None,
            per_ip: PerIp::new(config.max_connections, config.max_connections_per_ip),
            started: Instant::now(),
            cert_len: DEFAULT_CERT_LEN,
            replay: Mutex::new(ReplayFilter::new(
                config.replay_cache_bytes,
                RandomState::new(),
            )),
            front: RwLock::new([None; MAX_FRONT_ADDRESSES]),
            front_is_self: RwLock::new([None; MAX_FRONT_ADDRESSES]),
            own_dials: OwnDials::new(),
            lists: RwLock::new(Arc::new(AccessLists::default())),
            metrics: Metrics::new(1),
            profile: RwLock::new(None),
            stop: AtomicBool::new(false),
        }
    }

    pub fn verbose(&self) -> bool {
        self.log == LogLevel::Verbose
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// True if this client random was accepted before (docs/PROTOCOL.md §7).
    pub fn is_replay(&self, client_random: &[u8; 32]) -> bool {
        self.with_replay(|filter| filter.check_and_insert(client_random))
    }

    pub fn replay_memory_bytes(&self) -> usize {
        self.with_replay(|filter| filter.memory_bytes())
    }

    pub fn replay_capacity(&self) -> usize {
        self.with_replay(|filter| filter.capacity())
    }

    /// Hellos the replay table remembers now.
    pub fn replay_entries(&self) -> usize {
        self.with_replay(|filter| filter.len())
    }

    /// What `--allow` and `--block` say about a client address. Call once per accepted
    /// connection; anything but `Allowed` is fronted. No allocation, one shared read lock.
    pub fn address_allowed(&self, ip: IpAddr) -> Verdict {
        match self.lists.read() {
            Ok(lists) => lists.verdict(ip),
            Err(poisoned) => poisoned.into_inner().verdict(ip),
        }
    }

    /// Puts freshly loaded lists in force for every connection accepted from now on.
    pub fn set_lists(&self, lists: AccessLists) {
        let lists = Arc::new(lists);
        // The old lists are freed after the lock is released.
        let _old = match self.lists.write() {
            Ok(mut current) => std::mem::replace(&mut *current, lists),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), lists),
        };
    }

    fn with_replay<T>(&self, f: impl FnOnce(&mut ReplayFilter<RandomState>) -> T) -> T {
        match self.replay.lock() {
            Ok(mut filter) => f(&mut filter),
            // A thread panicked holding the lock; with panic = abort this cannot happen, and
            // refusing everyone would be worse than going on.
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The front's addresses, less any that led back to this proxy.
    pub fn front_addresses(&self) -> FrontAddresses {
        let all = read(&self.front);
        let own = read(&self.front_is_self);
        let mut addresses = [None; MAX_FRONT_ADDRESSES];
        let usable = all.iter().flatten().filter(|a| !own.contains(&Some(**a)));
        for (slot, address) in addresses.iter_mut().zip(usable) {
            *slot = Some(*address);
        }
        addresses
    }

    /// Our dial to `address` arrived at our own listener: never front there again.
    pub fn mark_front_self(&self, address: SocketAddr) {
        let mut own = match self.front_is_self.write() {
            Ok(own) => own,
            Err(poisoned) => poisoned.into_inner(),
        };
        if own.contains(&Some(address)) {
            return;
        }
        if let Some(slot) = own.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(address);
            eprintln!(
                "feint: the front address {address} leads back to this proxy; not fronting there"
            );
        }
    }

    pub fn set_front_addresses(&self, addresses: FrontAddresses) {
        match self.front.write() {
            Ok(mut current) => *current = addresses,
            Err(poisoned) => *poisoned.into_inner() = addresses,
        }
    }

    /// What the last successful probe learned of the front's first flight; None before.
    pub fn front_profile(&self) -> Option<FrontProfile> {
        match self.profile.read() {
            Ok(profile) => *profile,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub fn set_front_profile(&self, profile: Option<FrontProfile>) {
        match self.profile.write() {
            Ok(mut current) => *current = profile,
            Err(poisoned) => *poisoned.into_inner() = profile,
        }
    }

    /// The `attempt`-th address to dial for DC `dc`, in the order --prefer-ip asks for: a --dc
    /// route if one matches |dc|, else the production table. None when there is no such address.
    pub fn dc_address(&self, dc: i16, attempt: usize) -> Option<SocketAddr> {
        dc_address(&self.dc_overrides, self.prefer_ip, dc, attempt)
    }
}

/// The `attempt`-th address to dial for DC `dc` under these settings (see `Shared::dc_address`);
/// `feint doctor` checks the same addresses in the same order.
pub fn dc_address(
    overrides: &[(i16, SocketAddr)],
    prefer_ip: PreferIp,
    dc: i16,
    attempt: usize,
) -> Option<SocketAddr> {
    let id = dc.unsigned_abs();
    if let Some((_, address)) = overrides
        .iter()
        .find(|(route, _)| route.unsigned_abs() == id)
    {
        return (attempt == 0).then_some(*address);
    }
    let table = dc::addresses(dc)?;
    let v4 = table
        .v4
        .iter()
        .map(|ip| SocketAddr::new((*ip).into(), dc::DC_PORT));
    let v6 = table
        .v6
        .iter()
        .map(|ip| SocketAddr::new((*ip).into(), dc::DC_PORT));
    match prefer_ip {
        PreferIp::PreferIpv4 => v4.chain(v6).nth(attempt),
        PreferIp::PreferIpv6 => v6.chain(v4).nth(attempt),
        PreferIp::OnlyIpv4 => v4.clone().nth(attempt),
        PreferIp::OnlyIpv6 => v6.clone().nth(attempt),
    }
}

fn read(lock: &RwLock<FrontAddresses>) -> FrontAddresses {
    match lock.read() {
        Ok(addresses) => *addresses,
        Err(poisoned) => *poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Command};

    fn shared(extra: &[&str]) -> Shared {
        let mut args = vec!["run", "--front", "127.0.0.1:9"];
        args.extend_from_slice(extra);
        args.push("ee000102030405060708090a0b0c0d0e0f7777772e6578616d706c652e636f6d");
        match cli::parse(lexopt::Parser::from_args(args)) {
            Ok(Command::Run(config)) => Shared::new(&config),
            _ => panic!("the test command line parses"),
        }
    }

    fn addresses(shared: &Shared, dc: i16) -> Vec<SocketAddr> {
        (0..16).map_while(|k| shared.dc_address(dc, k)).collect()
    }

    #[test]
    fn dc_addresses_follow_prefer_ip_with_the_other_family_last() {
        let v4_first = addresses(&shared(&[]), 2);
        assert_eq!(
            v4_first.len(),
            3,
            "DC 2 has two IPv4 addresses and one IPv6"
        );
        assert!(v4_first[..2].iter().all(SocketAddr::is_ipv4));
        assert!(v4_first[2].is_ipv6());
        let v6_first = addresses(&shared(&["--prefer-ip", "prefer-ipv6"]), 2);
        assert!(v6_first[0].is_ipv6() && v6_first[1..].iter().all(SocketAddr::is_ipv4));
        assert!(addresses(&shared(&["--prefer-ip", "only-ipv4"]), 4)
            .iter()
            .all(SocketAddr::is_ipv4));
        assert!(addresses(&shared(&["--prefer-ip", "only-ipv6"]), 4)
            .iter()
            .all(SocketAddr::is_ipv6));
        assert!(v4_first.iter().all(|a| a.port() == dc::DC_PORT));
    }

    #[test]
    fn a_dc_route_serves_the_dc_and_its_media_dc_alone() {
        let routed = shared(&["--dc", "3=127.0.0.1:4000"]);
        let expected: SocketAddr = "127.0.0.1:4000".parse().expect("address");
        assert_eq!(addresses(&routed, 3), vec![expected]);
        assert_eq!(addresses(&routed, -3), vec![expected]);
        assert_ne!(addresses(&routed, 2), vec![expected]);
    }

    #[test]
    fn unknown_dcs_have_no_address() {
        let shared = shared(&[]);
        for dc in [0, 6, -6, 10_002, i16::MIN] {
            assert!(shared.dc_address(dc, 0).is_none(), "DC {dc}");
        }
    }
}
