//! Our recent dials to the front, by local address, so that a dial that arrives back at one of
//! our own listeners is recognised and not relayed again (a front name that resolves to this
//! machine, seen through 1:1 NAT, would otherwise make feint dial itself until the table is full).
//! Fixed memory: one entry per local port modulo the table size; an old entry is overwritten.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const ENTRIES: usize = 512;

#[derive(Clone, Copy)]
struct Entry {
    local: SocketAddr,
    target: SocketAddr,
    /// The dial arrived at our own listener.
    looped: bool,
}

pub struct OwnDials {
    table: Mutex<[Option<Entry>; ENTRIES]>,
    /// Entries in the table, readable without the lock: while it is zero, accepting and
    /// closing sockets need not look up their addresses.
    live: AtomicUsize,
}

impl Default for OwnDials {
    fn default() -> Self {
        Self::new()
    }
}

impl OwnDials {
    pub fn new() -> Self {
        OwnDials {
            table: Mutex::new([None; ENTRIES]),
            live: AtomicUsize::new(0),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut [Option<Entry>; ENTRIES]) -> T) -> T {
        match self.table.lock() {
            Ok(mut table) => f(&mut table),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Remembers a dial from `local` to `target`.
    pub fn note(&self, local: SocketAddr, target: SocketAddr) {
        self.with(|table| {
            let slot = &mut table[usize::from(local.port()) % ENTRIES];
            if slot.is_none() {
                self.live.fetch_add(1, Ordering::SeqCst);
            }
            *slot = Some(Entry {
                local,
                target,
                looped: false,
            });
        });
    }

    /// True while no dial is remembered.
    pub fn is_empty(&self) -> bool {
        self.live.load(Ordering::SeqCst) == 0
    }

    /// If a connection from `peer` that arrived at our port `port` is one of our open dials
    /// (same source, and dialled to that port), marks it and returns where it went.
    pub fn arrived(&self, peer: SocketAddr, port: u16) -> Option<SocketAddr> {
        self.with(|table| {
            let entry = table[usize::from(peer.port()) % ENTRIES].as_mut()?;
            if entry.local != peer || entry.target.port() != port {
                return None;
            }
            entry.looped = true;
            Some(entry.target)
        })
    }

    /// The dial from `local` is closed: its source address may now be any client's.
    pub fn forget(&self, local: SocketAddr) {
        self.with(|table| {
            let slot = &mut table[usize::from(local.port()) % ENTRIES];
            if slot.is_some_and(|entry| entry.local == local) {
                *slot = None;
                self.live.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }

    /// True if the dial from `local` came back to us.
    pub fn looped(&self, local: SocketAddr) -> bool {
        self.with(|table| {
            table[usize::from(local.port()) % ENTRIES]
                .is_some_and(|entry| entry.local == local && entry.looped)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dial_that_comes_back_is_recognised_and_others_are_not() {
        let dials = OwnDials::new();
        let local: SocketAddr = "10.0.0.5:40001".parse().expect("address");
        let front: SocketAddr = "203.0.113.7:443".parse().expect("address");
        dials.note(local, front);
        assert!(!dials.looped(local));
        let stranger: SocketAddr = "198.51.100.1:40001".parse().expect("address");
        assert_eq!(dials.arrived(stranger, 443), None);
        assert_eq!(dials.arrived(local, 8443), None, "a client on another port");
        assert_eq!(dials.arrived(local, 443), Some(front));
        assert!(dials.looped(local));
        dials.forget(local);
        assert_eq!(
            dials.arrived(local, 443),
            None,
            "closed dials are forgotten"
        );
    }

    #[test]
    fn is_empty_counts_entries_not_dials() {
        let dials = OwnDials::new();
        assert!(dials.is_empty());
        let front: SocketAddr = "203.0.113.7:443".parse().expect("address");
        let one: SocketAddr = "10.0.0.5:40001".parse().expect("address");
        // Same slot (port modulo the table size): the second dial overwrites the first.
        let other_port = 40001 + ENTRIES as u16;
        let two: SocketAddr = format!("10.0.0.5:{other_port}").parse().expect("address");
        dials.note(one, front);
        dials.note(two, front);
        assert!(!dials.is_empty());
        dials.forget(one);
        assert!(
            !dials.is_empty(),
            "the overwritten dial's close changes nothing"
        );
        dials.forget(two);
        assert!(dials.is_empty());
    }
}
