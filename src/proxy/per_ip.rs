//! Connections open per client address, in a fixed table of counters shared by all loops, so
//! that one address (a prober, a scanner) cannot fill the connection table. Addresses are
//! hashed with a key drawn at start; two addresses that share a counter share its limit, which
//! errs on the side of refusing, never of letting an address hold more. IPv6 clients are
//! counted per /64, the block one subscriber usually gets.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct PerIp {
    limit: u32,
    counts: Box<[AtomicU32]>,
    hasher: RandomState,
}

impl PerIp {
    /// A table for `max_connections` connections in all and `limit` per address; 0 turns the
    /// limit off.
    pub fn new(max_connections: usize, limit: usize) -> PerIp {
        // Four counters per connection keep shared counters rare even with the table full.
        let size = match limit {
            0 => 0,
            _ => (4 * max_connections).next_power_of_two().max(64),
        };
        PerIp {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            counts: (0..size).map(|_| AtomicU32::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.counts)
    }

    fn index(&self, ip: IpAddr) -> usize {
        let key: u128 = match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => u128::from(u32::from(v4)),
                None => u128::from(v6) >> 64 | 1 << 127,
            },
        };
        (self.hasher.hash_one(key) as usize) & (self.counts.len() - 1)
    }

    /// Counts a new connection from `ip`: the counter to release when it closes, or None when
    /// the address is at its limit. With the limit off, always `Some(None)`.
    pub fn acquire(&self, ip: IpAddr) -> Option<Option<u32>> {
        if self.counts.is_empty() {
            return Some(None);
        }
        let index = self.index(ip);
        let counter = self.counts.get(index)?;
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            if current >= self.limit {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Some(index as u32)),
                Err(now) => current = now,
            }
        }
    }

    pub fn release(&self, index: u32) {
        if let Some(counter) = self.counts.get(index as usize) {
            // Never below zero, whatever happens.
            let _ =
                counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_and_no_more_until_one_closes() {
        let table = PerIp::new(16, 3);
        let ip: IpAddr = "198.51.100.7".parse().expect("address");
        let held: Vec<u32> = (0..3)
            .map(|_| table.acquire(ip).flatten().expect("under the limit"))
            .collect();
        assert_eq!(table.acquire(ip), None);
        table.release(held[0]);
        assert!(table.acquire(ip).is_some());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let table = PerIp::new(16, 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        assert!(table.acquire(a).is_some());
        assert_eq!(table.acquire(b), None);
    }

    #[test]
    fn a_limit_of_zero_is_no_limit() {
        let table = PerIp::new(16, 0);
        let ip: IpAddr = "192.0.2.1".parse().expect("address");
        for _ in 0..100 {
            assert_eq!(table.acquire(ip), Some(None));
        }
        assert_eq!(table.memory_bytes(), 0);
    }
}
