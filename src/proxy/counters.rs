//! What the event loops count, for `--metrics` and `--stats-every`: one `LoopCounters` per loop,
//! written only by its loop with relaxed atomics, and a `Metrics` registry that sums them when
//! read. Nothing here allocates or locks after `Metrics::new`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

use crate::proto::hello::Rejection;

/// The `reason` label of `feint_fronted_total` for each of `Rejection::ALL` (the tests check
/// the two agree).
pub const FRONTED_LABELS: [&str; 10] = [
    "not_tls",
    "truncated",
    "not_client_hello",
    "bad_sni",
    "bad_digest",
    "clock",
    "replay",
    "no_tls13_suite",
    "trailing_data",
    "timeout",
];

fn fronted_index(reason: Rejection) -> usize {
    match reason {
        Rejection::NotTls => 0,
        Rejection::Truncated => 1,
        Rejection::NotClientHello => 2,
        Rejection::WrongDomain => 3,
        Rejection::BadDigest => 4,
        Rejection::ClockSkew => 5,
        Rejection::Replayed => 6,
        Rejection::NoTls13Suite => 7,
        Rejection::TrailingData => 8,
        Rejection::Timeout => 9,
    }
}

/// The `dc` label of `feint_dc_dials_total`: DCs 1 to 5, media DCs -1 to -5, then any other.
pub const DC_LABELS: [&str; 11] = [
    "1", "2", "3", "4", "5", "-1", "-2", "-3", "-4", "-5", "other",
];

fn dc_index(dc: i16) -> usize {
    match dc {
        1..=5 => dc as usize - 1,
        -5..=-1 => 4 + dc.unsigned_abs() as usize,
        _ => DC_LABELS.len() - 1,
    }
}

/// How one dial of a DC address ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialResult {
    Ok,
    /// The DC answered with a reset (ECONNREFUSED).
    Refused,
    /// No answer before the dial deadline.
    Timeout,
    /// Any other failure: no route, no address for this DC, an error from connect.
    Unreachable,
}

pub const DIAL_LABELS: [&str; 4] = ["ok", "refused", "timeout", "unreachable"];

/// Which way bytes moved. DC sessions and fronted ones are counted apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Plaintext MTProto bytes a genuine client sent, as written to the DC.
    ClientToDc,
    /// Bytes the DC sent, as read from it.
    DcToClient,
    /// Bytes a fronted client sent, as written to the front.
    FrontedIn,
    /// Bytes the front sent, as written to a fronted client.
    FrontedOut,
}

pub const DIRECTION_LABELS: [&str; 4] =
    ["client_to_dc", "dc_to_client", "fronted_in", "fronted_out"];

/// Why an accepted connection was not served as usual.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The session table was full (`--max-connections`); the socket was closed.
    Cap,
    /// The source address had too many connections open.
    PerIp,
    /// The source address is in `--block`; the connection was fronted.
    Blocked,
    /// `--allow` is set and the source address is not in it; the connection was fronted.
    NotAllowed,
}

pub const REFUSAL_LABELS: [&str; 4] = ["cap", "per_ip", "blocked", "not_allowed"];

/// One event loop's counters. Only its own loop writes them; `Metrics` reads them all.
///
/// Aligned to 128 bytes so the counters of two loops never share a cache line, nor the pair of
/// lines that x86 prefetches together: a loop's writes never slow another loop down.
#[repr(align(128))]
#[derive(Default)]
pub struct LoopCounters {
    accepted: AtomicU64,
    active: AtomicU64,
    handshakes: AtomicU64,
    buffers_in_use: AtomicU64,
    fronted: [AtomicU64; FRONTED_LABELS.len()],
    dials: [[AtomicU64; DIAL_LABELS.len()]; DC_LABELS.len()],
    bytes: [AtomicU64; DIRECTION_LABELS.len()],
    refused: [AtomicU64; REFUSAL_LABELS.len()],
}

fn bump(counter: &AtomicU64, n: u64) {
    // Relaxed: each counter is a lone number; no other memory is published through it.
    counter.fetch_add(n, Relaxed);
}

impl LoopCounters {
    /// A connection got a session slot (refused ones are counted by `refused` instead).
    pub fn accepted(&self) {
        bump(&self.accepted, 1);
    }

    /// The number of connections this loop has open now; set after each poll turn.
    pub fn set_active(&self, sessions: usize) {
        self.active.store(sessions as u64, Relaxed);
    }

    /// A genuine client passed the hello and its obfs2 frame: a session is served.
    pub fn handshake(&self) {
        bump(&self.handshakes, 1);
    }

    /// A connection was handed to the front because of `reason`.
    pub fn fronted(&self, reason: Rejection) {
        bump(&self.fronted[fronted_index(reason)], 1);
    }

    /// One dial of an address of DC `dc` (as in the obfs2 frame, media DCs negative) ended.
    pub fn dial(&self, dc: i16, result: DialResult) {
        if let Some(row) = self.dials.get(dc_index(dc)) {
            bump(&row[result as usize], 1);
        }
    }

    /// `n` bytes moved in `direction`.
    pub fn bytes(&self, direction: Direction, n: usize) {
        bump(&self.bytes[direction as usize], n as u64);
    }

    /// An accepted connection was refused or fronted for `why`.
    pub fn refused(&self, why: Refusal) {
        bump(&self.refused[why as usize], 1);
    }

    /// Pool buffers this loop has lent out now; set after each poll turn.
    pub fn set_buffers_in_use(&self, buffers: usize) {
        self.buffers_in_use.store(buffers as u64, Relaxed);
    }

    fn add_to(&self, totals: &mut Totals) {
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        totals.accepted += read(&self.accepted);
        totals.active += read(&self.active);
        totals.handshakes += read(&self.handshakes);
        totals.buffers_in_use += read(&self.buffers_in_use);
        for (total, counter) in totals.fronted.iter_mut().zip(&self.fronted) {
            *total += read(counter);
        }
        for (row, counters) in totals.dials.iter_mut().zip(&self.dials) {
            for (total, counter) in row.iter_mut().zip(counters) {
                *total += read(counter);
            }
        }
        for (total, counter) in totals.bytes.iter_mut().zip(&self.bytes) {
            *total += read(counter);
        }
        for (total, counter) in totals.refused.iter_mut().zip(&self.refused) {
            *total += read(counter);
        }
    }
}

/// The sum of every loop's counters at one moment, indexed like the `*_LABELS` arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub active: u64,
    pub handshakes: u64,
    pub buffers_in_use: u64,
    pub fronted: [u64; FRONTED_LABELS.len()],
    pub dials: [[u64; DIAL_LABELS.len()]; DC_LABELS.len()],
    pub bytes: [u64; DIRECTION_LABELS.len()],
    pub refused: [u64; REFUSAL_LABELS.len()],
}

impl Totals {
    pub fn fronted_sum(&self) -> u64 {
        self.fronted.iter().sum()
    }

    /// Dials of any DC that did not connect.
    pub fn dial_failures(&self) -> u64 {
        self.dials
            .iter()
            .map(|row| row.iter().sum::<u64>() - row[DialResult::Ok as usize])
            .sum()
    }

    pub fn bytes(&self, direction: Direction) -> u64 {
        self.bytes[direction as usize]
    }

    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize]
    }
}

/// Every loop's counters, and the process start time.
pub struct Metrics {
    loops: Box<[LoopCounters]>,
    /// Seconds since the Unix epoch when feint started.
    pub started_unix: f64,
}

impl Metrics {
    /// Counters for `loops` event loops (at least one).
    pub fn new(loops: usize) -> Metrics {
        Metrics {
            loops: (0..loops.max(1)).map(|_| LoopCounters::default()).collect(),
            started_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        }
    }

    /// The counters of loop `index`; loops past the last share the last one's, which is still
    /// correct, only slower.
    pub fn for_loop(&self, index: usize) -> &LoopCounters {
        let last = self.loops.len() - 1;
        &self.loops[index.min(last)]
    }

    /// The counters summed over all loops. Each number is read once; they may be a few events
    /// apart from each other, never torn.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for counters in self.loops.iter() {
            counters.add_to(&mut totals);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_never_share_a_cache_line() {
        let metrics = Metrics::new(3);
        let first = metrics.for_loop(0) as *const LoopCounters as usize;
        let second = metrics.for_loop(1) as *const LoopCounters as usize;
        assert_eq!(first % 128, 0);
        assert!(second - first >= std::mem::size_of::<LoopCounters>());
        assert_eq!(std::mem::size_of::<LoopCounters>() % 128, 0);
    }

    #[test]
    fn totals_sum_every_loop() {
        let metrics = Metrics::new(2);
        for index in 0..2 {
            let counters = metrics.for_loop(index);
            counters.accepted();
            counters.set_active(3);
            counters.handshake();
            counters.fronted(Rejection::BadDigest);
            counters.dial(2, DialResult::Ok);
            counters.dial(-2, DialResult::Timeout);
            counters.dial(203, DialResult::Refused);
            counters.bytes(Direction::DcToClient, 100);
            counters.refused(Refusal::Blocked);
            counters.set_buffers_in_use(5);
        }
        let totals = metrics.totals();
        assert_eq!(totals.accepted, 2);
        assert_eq!(totals.active, 6);
        assert_eq!(totals.handshakes, 2);
        assert_eq!(totals.fronted[4], 2);
        assert_eq!(totals.fronted_sum(), 2);
        assert_eq!(totals.dials[1][0], 2);
        assert_eq!(totals.dials[6][2], 2);
        assert_eq!(totals.dials[10][1], 2);
        assert_eq!(totals.dial_failures(), 4);
        assert_eq!(totals.bytes(Direction::DcToClient), 200);
        assert_eq!(totals.refused(Refusal::Blocked), 2);
        assert_eq!(totals.buffers_in_use, 10);
    }

    #[test]
    fn every_rejection_has_its_own_label() {
        for (index, reason) in Rejection::ALL.iter().enumerate() {
            assert_eq!(fronted_index(*reason), index);
        }
    }

    #[test]
    fn dcs_map_to_their_labels() {
        for dc in [-5i16, -1, 1, 5] {
            assert_eq!(DC_LABELS[dc_index(dc)], dc.to_string());
        }
        for dc in [0, 6, -6, i16::MIN, i16::MAX] {
            assert_eq!(DC_LABELS[dc_index(dc)], "other");
        }
    }

    #[test]
    fn a_loop_index_past_the_last_shares_the_last() {
        let metrics = Metrics::new(1);
        metrics.for_loop(7).accepted();
        assert_eq!(metrics.totals().accepted, 1);
    }
}
