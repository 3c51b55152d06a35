//! ReplayFilter: a fixed-size table of recently accepted client randoms (PROTOCOL.md §7).
//! Callers insert only hellos whose digest and clock passed, so probes cannot evict entries.

use std::hash::BuildHasher;

/// Fixed memory, sized once. Each entry lives `ttl_seconds`. When the bucket an entry hashes to
/// is full of live entries, the oldest of them is forgotten early (see README, anti-replay).
pub struct ReplayFilter<S: BuildHasher> {
    hasher: S,
    // private: entries, bucket geometry
}

impl<S: BuildHasher> ReplayFilter<S> {
    /// A filter that uses about `memory_bytes` (at least one bucket).
    pub fn new(memory_bytes: usize, ttl_seconds: u64, hasher: S) -> Self {
        todo!()
    }

    /// Number of entries it can hold.
    pub fn capacity(&self) -> usize {
        todo!()
    }

    /// Bytes of memory its table uses.
    pub fn memory_bytes(&self) -> usize {
        todo!()
    }

    /// True if `client_random` was seen within its TTL (a replay). Otherwise records it at `now`
    /// (seconds on any monotonic clock) and returns false.
    pub fn check_and_insert(&mut self, client_random: &[u8; 32], now: u64) -> bool {
        todo!()
    }
}
