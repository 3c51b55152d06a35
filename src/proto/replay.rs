//! ReplayFilter: a fixed-size table of accepted client randoms (docs/PROTOCOL.md §7).
//! Callers insert only hellos whose digest and clock passed, so probes cannot evict entries.
//!
//! Each entry is the first 16 bytes of a client random and its insertion number. Those bytes are
//! HMAC output under the secret, so two distinct hellos share them with probability 2^-128:
//! no false positives in practice. The last four random bytes are left out on purpose: they
//! carry the timestamp, and anyone can change them without the key (docs/PROTOCOL.md §2.2), so a replay with a
//! re-stamped timestamp must still match. That is also why entries never expire by time: a
//! recorded hello can be re-stamped to any moment, so the only safe horizon is memory. An entry
//! leaves the table only to make room, oldest first. Every entry may live in one of two buckets
//! of eight chosen by the keyed hasher ("two choices") and goes to the emptier one; when both
//! are full, the older of their sixteen entries makes room. A table filled to capacity keeps
//! nearly all of its most recent `capacity` entries.

use std::hash::BuildHasher;

const BUCKET_LEN: usize = 8;
const FINGERPRINT_LEN: usize = 16;

#[derive(Clone, Copy, Default)]
struct Entry {
    fingerprint: [u8; FINGERPRINT_LEN],
    /// Insertion number, counting from 1; 0 marks an empty slot.
    inserted: u32,
}

type Bucket = [Entry; BUCKET_LEN];

/// Fixed memory, sized once; see the module comment for what it remembers.
pub struct ReplayFilter<S: BuildHasher> {
    hasher: S,
    buckets: Box<[Bucket]>,
    /// Insertions so far; wraps after 2^32, when the order of old entries is renumbered.
    inserted: u32,
    len: usize,
}

impl<S: BuildHasher> ReplayFilter<S> {
    /// A filter that uses about `memory_bytes` (at least one bucket).
    pub fn new(memory_bytes: usize, hasher: S) -> Self {
        // Bucket indices come from 32-bit halves of one hash.
        let count = (memory_bytes / std::mem::size_of::<Bucket>()).clamp(1, u32::MAX as usize);
        ReplayFilter {
            hasher,
            buckets: vec![[Entry::default(); BUCKET_LEN]; count].into_boxed_slice(),
            inserted: 0,
            len: 0,
        }
    }

    /// Number of entries it can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * BUCKET_LEN
    }

    /// Number of entries it holds now.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory its table uses.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    /// True if `client_random` is in the table (a replay). Otherwise records it and returns
    /// false, making room by forgetting an older entry if both its buckets are full.
    pub fn check_and_insert(&mut self, client_random: &[u8; 32]) -> bool {
        let mut fingerprint = [0; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&client_random[..FINGERPRINT_LEN]);
        let (first, second) = self.bucket_pair(&fingerprint);

        let seen = [first, second].iter().any(|&index| {
            self.buckets.get(index).is_some_and(|bucket| {
                bucket
                    .iter()
                    .any(|entry| entry.inserted != 0 && entry.fingerprint == fingerprint)
            })
        });
        if seen {
            return true;
        }
        if self.inserted == u32::MAX {
            self.renumber();
        }
        self.inserted += 1;
        let inserted = self.inserted;
        let free = |bucket: Option<&Bucket>| {
            bucket.map_or(0, |b| b.iter().filter(|e| e.inserted == 0).count())
        };
        let roomier = if free(self.buckets.get(second)) > free(self.buckets.get(first)) {
            second
        } else {
            first
        };
        let was_free = free(self.buckets.get(roomier)) > 0;
        if let Some(entry) = self.slot_to_overwrite(first, second, roomier) {
            *entry = Entry {
                fingerprint,
                inserted,
            };
            if was_free {
                self.len += 1;
            }
        }
        false
    }

    /// A free slot of `roomier`, or else the oldest entry of both buckets.
    fn slot_to_overwrite(
        &mut self,
        first: usize,
        second: usize,
        roomier: usize,
    ) -> Option<&mut Entry> {
        let oldest = |index: usize, buckets: &[Bucket]| {
            buckets
                .get(index)
                .and_then(|b| b.iter().map(|e| e.inserted).min())
                .unwrap_or(u32::MAX)
        };
        let index = if self.buckets.get(roomier)?.iter().any(|e| e.inserted == 0) {
            roomier
        } else if oldest(second, &self.buckets) < oldest(first, &self.buckets) {
            second
        } else {
            first
        };
        self.buckets
            .get_mut(index)?
            .iter_mut()
            .min_by_key(|entry| entry.inserted)
    }

    /// Keeps the order of entries but squeezes their numbers into 1..=len, once every 2^32
    /// insertions; costs one pass and a sort-free ranking by halving.
    fn renumber(&mut self) {
        // Entries older than the newest `capacity` are the only ones that can still be in the
        // table, so shifting every number down by (u32::MAX - capacity) keeps them positive.
        let shift = u32::MAX
            - u32::try_from(self.capacity())
                .unwrap_or(u32::MAX / 2)
                .min(u32::MAX / 2);
        for entry in self.buckets.iter_mut().flatten() {
            if entry.inserted != 0 {
                entry.inserted = entry.inserted.saturating_sub(shift).max(1);
            }
        }
        self.inserted -= shift;
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
    fn catches_a_replay_however_late_it_comes() {
        let mut filter = ReplayFilter::new(1 << 16, RandomState::new());
        assert!(!filter.check_and_insert(&random(1)));
        assert!(filter.check_and_insert(&random(1)));
        // Time plays no part: only newer entries can push an entry out.
        for n in 2..100 {
            assert!(!filter.check_and_insert(&random(n)));
        }
        assert!(filter.check_and_insert(&random(1)));
    }

    #[test]
    fn catches_a_replay_with_a_shifted_timestamp() {
        let mut filter = ReplayFilter::new(1 << 16, RandomState::new());
        let original = random(7);
        let mut shifted = original;
        shifted[28] ^= 0x01;
        assert!(!filter.check_and_insert(&original));
        assert!(filter.check_and_insert(&shifted));
    }

    #[test]
    fn remembers_its_whole_capacity_of_recent_entries() {
        let mut filter = ReplayFilter::new(1 << 20, FixedHasher::default());
        let capacity = filter.capacity() as u64;
        // Twice the capacity goes in; the most recent half of the capacity must all be kept.
        for n in 0..2 * capacity {
            assert!(!filter.check_and_insert(&random(n)), "false positive {n}");
        }
        assert_eq!(filter.len(), filter.capacity());
        let recent = 2 * capacity - capacity / 2..2 * capacity;
        let forgotten = recent
            .clone()
            .filter(|&n| !filter.check_and_insert(&random(n)))
            .count();
        assert_eq!(forgotten, 0, "forgot recent entries");
    }

    #[test]
    fn evicts_the_oldest_entry_first() {
        // One bucket: eight entries fit; the ninth evicts the first inserted.
        let mut filter = ReplayFilter::new(0, FixedHasher::default());
        assert_eq!(filter.capacity(), BUCKET_LEN);
        for n in 0..8 {
            assert!(!filter.check_and_insert(&random(n)));
        }
        assert!(!filter.check_and_insert(&random(8)));
        assert!(!filter.check_and_insert(&random(0)), "oldest was evicted");
        for n in 2..=8 {
            assert!(filter.check_and_insert(&random(n)), "{n}");
        }
    }

    #[test]
    fn keeps_its_order_when_the_insertion_counter_wraps() {
        let mut filter = ReplayFilter::new(0, FixedHasher::default());
        filter.inserted = u32::MAX - 4;
        for n in 0..16 {
            assert!(!filter.check_and_insert(&random(n)));
        }
        for n in 8..16 {
            assert!(filter.check_and_insert(&random(n)), "{n}");
        }
    }

    #[test]
    fn memory_is_fixed_and_as_reported() {
        let filter = ReplayFilter::new(1 << 20, RandomState::new());
        assert_eq!(std::mem::size_of::<Bucket>(), 160);
        assert!(filter.memory_bytes() <= 1 << 20);
        assert!(filter.memory_bytes() > (1 << 20) - 160);
        assert_eq!(filter.memory_bytes(), filter.capacity() * 20);
        assert_eq!(
            std::mem::size_of_val(&*filter.buckets),
            filter.memory_bytes()
        );
    }
}
