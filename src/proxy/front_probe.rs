//! Learns the front's first flight (issue 8): connects to the front as a TDLib client would,
//! sends a TDLib-shaped hello and reads the answer until it goes quiet. Blocking, bounded in
//! time and bytes; runs on the resolver thread, never on an event loop.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::shared::{FrontAddresses, Shared};
use crate::proto::front_flight::{
    self, FlightError, FrontProfile, CLIENT_HELLO_RANDOM_LEN, MAX_CLIENT_HELLO_LEN,
};

/// The whole probe of one address, connect included.
const MAX_PROBE_TIME: Duration = Duration::from_secs(3);
/// Once at least one encrypted record is in, this much silence ends the flight: a TLS 1.3
/// server sends its flight at once, then waits for the client's Finished.
const QUIET: Duration = Duration::from_millis(300);
/// More than any certificate flight; a front that sends more is cut here.
const MAX_FLIGHT_BYTES: usize = 64 * 1024;
/// Reads per probe; each one waits at most QUIET or until the deadline.
const MAX_READS: usize = 1000;

/// Why a probe learned nothing.
#[derive(Debug)]
pub enum ProbeError {
    Connect(io::Error),
    Send(io::Error),
    Receive(io::Error),
    /// The secret's domain cannot go into a hello, or no random bytes.
    Hello,
    Flight(FlightError),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "cannot connect: {e}"),
            ProbeError::Send(e) => write!(f, "cannot send the hello: {e}"),
            ProbeError::Receive(e) => write!(f, "cannot read the answer: {e}"),
            ProbeError::Hello => f.write_str("cannot build a hello for this domain"),
            ProbeError::Flight(e) => write!(f, "its answer is {e}"),
        }
    }
}

/// Sends a TDLib-shaped hello for `domain` to `address` and reads the front's first flight. The
/// profile's `first_byte` is the time from the hello written to the first byte read.
pub fn probe(address: SocketAddr, domain: &[u8]) -> Result<FrontProfile, ProbeError> {
    let deadline = Instant::now() + MAX_PROBE_TIME;
    let mut random = [0; CLIENT_HELLO_RANDOM_LEN];
    getrandom::getrandom(&mut random).map_err(|_| ProbeError::Hello)?;
    let mut hello = [0; MAX_CLIENT_HELLO_LEN];
    let hello_len =
        front_flight::client_hello(&mut hello, domain, &random).ok_or(ProbeError::Hello)?;
    let hello = hello.get(..hello_len).ok_or(ProbeError::Hello)?;

    let connecting = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&address, MAX_PROBE_TIME).map_err(ProbeError::Connect)?;
    // One round trip to the front: taken off the time to its first byte, so what feint copies
    // is the front's own thinking time, not the network between feint and the front.
    let round_trip = connecting.elapsed();
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(remaining(deadline).max(Duration::from_millis(1))))
        .map_err(ProbeError::Send)?;
    stream.write_all(hello).map_err(ProbeError::Send)?;
    let sent = Instant::now();

    let mut flight = vec![0; MAX_FLIGHT_BYTES];
    let mut len = 0;
    let mut first_byte = None;
    for _ in 0..MAX_READS {
        let left = remaining(deadline);
        let wait = if front_flight::parse_flight(&flight[..len]).is_ok() {
            QUIET.min(left)
        } else {
            left
        };
        if wait.is_zero() || len == flight.len() {
            break;
        }
        stream
            .set_read_timeout(Some(wait))
            .map_err(ProbeError::Receive)?;
        match stream.read(&mut flight[len..]) {
            Ok(0) => break,
            Ok(n) => {
                first_byte.get_or_insert_with(|| sent.elapsed());
                len += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) if len == 0 => return Err(ProbeError::Receive(e)),
            // A reset after the flight (a front that gives up on us) still leaves the flight.
            Err(_) => break,
        }
    }
    let mut profile = front_flight::parse_flight(&flight[..len]).map_err(ProbeError::Flight)?;
    profile.first_byte = first_byte.unwrap_or_default().saturating_sub(round_trip);
    Ok(profile)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Probes the front at start and after every lookup, keeps what it learned in `Shared`, and
/// says so in one line when that first works and again only when the shape changes.
pub struct FrontLearner {
    /// The secret's domain: the SNI every genuine client sends.
    domain: Vec<u8>,
    /// What was last logged, with `first_byte` zeroed so timing noise is not a change.
    logged: Option<FrontProfile>,
    failing: bool,
}

impl FrontLearner {
    pub fn new(domain: &[u8]) -> Self {
        FrontLearner {
            domain: domain.to_vec(),
            logged: None,
            failing: false,
        }
    }

    /// Probes the front's addresses in order until one answers. On failure the last profile
    /// stays: a front that is briefly down has not changed its certificate.
    pub fn learn(&mut self, addresses: &FrontAddresses, shared: &Shared) {
        let mut last_error = None;
        for &address in addresses.iter().flatten() {
            match probe(address, &self.domain) {
                Ok(profile) => {
                    shared.set_front_profile(Some(profile));
                    self.failing = false;
                    self.log_change(address, &profile);
                    return;
                }
                Err(e) => last_error = Some((address, e)),
            }
        }
        if let Some((address, e)) = last_error {
            if !self.failing {
                let answer = if shared.front_profile().is_some() {
                    "keeping what was learned before"
                } else {
                    "answering clients with the default reply"
                };
                eprintln!(
                    "feint: cannot learn the front's first flight from {address}: {e}; {answer}"
                );
            }
            self.failing = true;
        }
    }

    fn log_change(&mut self, address: SocketAddr, profile: &FrontProfile) {
        let shape = FrontProfile {
            first_byte: Duration::ZERO,
            ..*profile
        };
        if self.logged == Some(shape) {
            return;
        }
        self.logged = Some(shape);
        eprintln!("front {address} answers a TDLib hello with {profile}");
        if profile.record_count > 1 {
            eprintln!(
                "feint: the front sends its first flight in {} records and feint answers clients \
                 in one: a passive observer comparing record counts can tell; a front that sends \
                 its flight in one record hides better",
                profile.record_count
            );
        }
    }
}
