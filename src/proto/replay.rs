//! ReplayFilter: a fixed-size table of recently accepted client randoms (PROTOCOL.md §7).
//! Callers insert only hellos whose digest and clock passed, so probes cannot evict entries.
//!
//! Each entry is the first 16 bytes of a client random and a u32 expiry time. Those bytes are
//! HMAC output under the secret, so two distinct hellos share them with probability 2^-128:
//! no false positives in practice. The last four random bytes are left out on purpose: they
//! carry the timestamp, and anyone can change them without the key (PROTOCOL.md §2.2), so a
//! replay with a shifted timestamp must still match. Every entry may live in one of two
//! buckets of eight chosen by the keyed hasher ("two choices"), and goes to the emptier one;
//! that keeps a table filled to half its capacity from overflowing any bucket in practice,
//! where a single choice would overflow about 2% of them.

use std::hash::BuildHasher;

const BUCKET_LEN: usize = 8;
const FINGERPRINT_LEN: usize = 16;

#[derive(Clone, Copy, Default)]
struct Entry {
    fingerprint: [u8; FINGERPRINT_LEN],
    /// Seconds on the caller's clock after which the entry is free; 0 marks an empty slot.
    expiry: u32,
}

impl Entry {
    fn is_live(&self, now: u64) -> bool {
        u64::from(self.expiry) > now
    }
}

type Bucket = [Entry; BUCKET_LEN];

/// Fixed memory, sized once. Each entry lives `ttl_seconds`. When the bucket an entry hashes to
/// is full of live entries, the oldest of them is forgotten early (see README, anti-replay).
///
/// More exactly: an entry may sit in either of two buckets; only when both are full of live
/// entries does an insert evict, and then it evicts the one of those sixteen that expires first.
/// Times are seconds below 2^32 (unix time works until 2106); later times are clamped, which
/// would make entries expire at once.
pub struct ReplayFilter<S: BuildHasher> {
    hasher: S,
    buckets: Box<[Bucket]>,
    ttl_seconds: u64,
}

impl<S: BuildHasher> ReplayFilter<S> {
    /// A filter that uses about `memory_bytes` (at least one bucket).
    pub fn new(memory_bytes: usize, ttl_seconds: u64, hasher: S) -> Self {
        // Bucket indices come from 32-bit halves of one hash.
        let count = (memory_bytes / std::mem::size_of::<Bucket>()).clamp(1, u32::MAX as usize);
        ReplayFilter {
            hasher,
            buckets: vec![[Entry::default(); BUCKET_LEN]; count].into_boxed_slice(),
            ttl_seconds,
        }
    }

    /// Number of entries it can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * BUCKET_LEN
    }

    /// Bytes of memory its table uses.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    /// Number of buckets, each holding `capacity() / bucket_count()` entries.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Live entries at `now` in the buckets `from..from + count` (clipped to the table), so a
    /// caller can count the whole table in chunks without holding a lock for all of it.
    pub fn live_entries(&self, from: usize, count: usize, now: u64) -> usize {
        let end = from.saturating_add(count).min(self.buckets.len());
        self.buckets
            .get(from..end)
            .unwrap_or_default()
            .iter()
            .flatten()
            .filter(|entry| entry.is_live(now))
            .count()
    }

    /// True if `client_random` was seen within its TTL (a replay). Otherwise records it at `now`
    /// (seconds on any monotonic clock) and returns false.
    pub fn check_and_insert(&mut self, client_random: &[u8; 32], now: u64) -> bool {
        let mut fingerprint = [0; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&client_random[..FINGERPRINT_LEN]);
        let (first, second) = self.bucket_pair(&fingerprint);

        let seen = [first, second].iter().any(|&index| {
            self.buckets.get(index).is_some_and(|bucket| {
                bucket
                    .iter()
                    .any(|entry| entry.is_live(now) && entry.fingerprint == fingerprint)
            })
        });
        if seen {
            return true;
        }

        let expiry = u32::try_from(now.saturating_add(self.ttl_seconds)).unwrap_or(u32::MAX);
        let free = |bucket: Option<&Bucket>| {
            bucket.map_or(0, |b| b.iter().filter(|e| !e.is_live(now)).count())
        };
        let (roomier, other) = if free(self.buckets.get(second)) > free(self.buckets.get(first)) {
            (second, first)
        } else {
            (first, second)
        };
        let slot = self.slot_to_overwrite(roomier, other, now);
        if let Some(entry) = slot {
            *entry = Entry {
                fingerprint,
                expiry,
            };
        }
        false
    }

    /// The first free slot of `roomier`, or else the entry of both buckets that expires first.
    fn slot_to_overwrite(&mut self, roomier: usize, other: usize, now: u64) -> Option<&mut Entry> {
        let has_free = self
            .buckets
            .get(roomier)?
            .iter()
            .any(|entry| !entry.is_live(now));
        if has_free {
            return self
                .buckets
                .get_mut(roomier)?
                .iter_mut()
                .find(|entry| !entry.is_live(now));
        }
        let earliest = |index: usize, buckets: &[Bucket]| {
            buckets
                .get(index)
                .and_then(|b| b.iter().map(|e| e.expiry).min())
                .unwrap_or(u32::MAX)
        };
        let index = if earliest(other, &self.buckets) < earliest(roomier, &self.buckets) {
            other
        } else {
            roomier
        };
        self.buckets
            .get_mut(index)?
            .iter_mut()
            .min_by_key(|entry| entry.expiry)
    }

    /// Two distinct bucket indices (one if there is a single bucket), from one keyed hash so
    /// that nobody without the hasher's key can aim at a bucket.
    fn bucket_pair(&self, fingerprint: &[u8; FINGERPRINT_LEN]) -> (usize, usize) {
        let hash = self.hasher.hash_one(fingerprint);
        // `new` keeps the count in 1..=u32::MAX, so these fit in u64 and usize.
        let count = self.buckets.len() as u64;
        let first = (hash & 0xffff_ffff) % count;
        let second = match count {
            1 => first,
            _ => (first + 1 + (hash >> 32) % (count - 1)) % count,
        };
        (first as usize, second as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::collections::hash_map::{DefaultHasher, RandomState};
    use std::hash::BuildHasherDefault;

    /// Deterministic, so the load tests below give the same result on every run.
    type FixedHasher = BuildHasherDefault<DefaultHasher>;

    fn random(n: u64) -> [u8; 32] {
        Sha256::digest(n.to_le_bytes()).into()
    }

    #[test]
    fn catches_a_replay_within_its_ttl() {
        let mut filter = ReplayFilter::new(1 << 16, 300, RandomState::new());
        assert!(!filter.check_and_insert(&random(1), 1000));
        assert!(filter.check_and_insert(&random(1), 1000));
        assert!(filter.check_and_insert(&random(1), 1299));
    }

    #[test]
    fn forgets_an_entry_after_its_ttl() {
        let mut filter = ReplayFilter::new(1 << 16, 300, RandomState::new());
        assert!(!filter.check_and_insert(&random(1), 1000));
        assert!(!filter.check_and_insert(&random(1), 1300));
        // The late insert starts a new lifetime.
        assert!(filter.check_and_insert(&random(1), 1599));
    }

    #[test]
    fn catches_a_replay_with_a_shifted_timestamp() {
        let mut filter = ReplayFilter::new(1 << 16, 300, RandomState::new());
        let original = random(7);
        let mut shifted = original;
        shifted[28] ^= 0x01;
        assert!(!filter.check_and_insert(&original, 1000));
        assert!(filter.check_and_insert(&shifted, 1001));
    }

    #[test]
    fn remembers_half_its_capacity_without_false_positives() {
        let mut filter = ReplayFilter::new(1 << 20, 600, FixedHasher::default());
        let count = filter.capacity() / 2;
        for n in 0..count as u64 {
            assert!(
                !filter.check_and_insert(&random(n), 5000),
                "false positive {n}"
            );
        }
        for n in 0..count as u64 {
            assert!(filter.check_and_insert(&random(n), 5001), "forgot {n}");
        }
    }

    #[test]
    fn remembers_a_full_table_of_tiny_size_until_it_overflows() {
        // One bucket: eight entries fit; the ninth evicts the one that expires first.
        let mut filter = ReplayFilter::new(0, 100, FixedHasher::default());
        assert_eq!(filter.capacity(), BUCKET_LEN);
        for n in 0..8 {
            assert!(!filter.check_and_insert(&random(n), 10 + n));
        }
        assert!(!filter.check_and_insert(&random(8), 20));
        assert!(
            !filter.check_and_insert(&random(0), 21),
            "oldest was evicted"
        );
        for n in 2..=8 {
            assert!(filter.check_and_insert(&random(n), 22), "{n}");
        }
    }

    #[test]
    fn counts_live_entries_in_any_chunk() {
        let mut filter = ReplayFilter::new(1 << 12, 100, FixedHasher::default());
        for n in 0..10 {
            filter.check_and_insert(&random(n), 1000 + n);
        }
        let buckets = filter.bucket_count();
        assert_eq!(filter.live_entries(0, buckets, 1050), 10);
        let halves = filter.live_entries(0, buckets / 2, 1050)
            + filter.live_entries(buckets / 2, usize::MAX, 1050);
        assert_eq!(halves, 10);
        assert_eq!(filter.live_entries(0, buckets, 1105), 4);
        assert_eq!(filter.live_entries(buckets + 1, 5, 1050), 0);
    }

    #[test]
    fn memory_is_fixed_and_as_reported() {
        let filter = ReplayFilter::new(1 << 20, 600, RandomState::new());
        assert_eq!(std::mem::size_of::<Bucket>(), 160);
        assert!(filter.memory_bytes() <= 1 << 20);
        assert!(filter.memory_bytes() > (1 << 20) - 160);
        assert_eq!(filter.memory_bytes(), filter.capacity() * 20);
        assert_eq!(
            std::mem::size_of_val(&*filter.buckets),
            filter.memory_bytes()
        );
    }

    #[test]
    fn keeps_working_past_the_u32_clock_range() {
        let mut filter = ReplayFilter::new(1024, 60, RandomState::new());
        assert!(!filter.check_and_insert(&random(1), u64::MAX));
        assert!(!filter.check_and_insert(&random(1), u64::MAX));
    }
}
