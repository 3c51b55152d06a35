//! A hashed timer wheel over session slots: scheduling and cancelling are O(1), and a tick with
//! nothing due costs one bucket check, so idle sessions cost no CPU. Deadlines further out than
//! the wheel are re-checked when their bucket comes round.

use std::time::Duration;

/// One tick of the wheel.
pub const TICK: Duration = Duration::from_millis(100);
const BUCKETS: usize = 1024;
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Link {
    next: u32,
    prev: u32,
    tick: u64,
    linked: bool,
}

const UNLINKED: Link = Link {
    next: NONE,
    prev: NONE,
    tick: 0,
    linked: false,
};

pub struct TimerWheel {
    heads: Vec<u32>,
    links: Vec<Link>,
    /// The next tick whose bucket has not been processed.
    cursor: u64,
    count: usize,
}

impl TimerWheel {
    pub fn new(slots: usize) -> Self {
        TimerWheel {
            heads: vec![NONE; BUCKETS],
            links: vec![UNLINKED; slots],
            cursor: 0,
            count: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The tick a slot is scheduled for, if any.
    pub fn scheduled(&self, slot: u32) -> Option<u64> {
        let link = self.links.get(slot as usize)?;
        link.linked.then_some(link.tick)
    }

    /// Schedules `slot` for `tick` (or the next unprocessed tick if that is already past).
    pub fn schedule(&mut self, slot: u32, tick: u64) {
        self.cancel(slot);
        let tick = tick.max(self.cursor);
        let bucket = (tick % BUCKETS as u64) as usize;
        let head = self.heads[bucket];
        if head != NONE {
            self.links[head as usize].prev = slot;
        }
        self.links[slot as usize] = Link {
            next: head,
            prev: NONE,
            tick,
            linked: true,
        };
        self.heads[bucket] = slot;
        self.count += 1;
    }

    pub fn cancel(&mut self, slot: u32) {
        let Some(link) = self.links.get(slot as usize).copied() else {
            return;
        };
        if !link.linked {
            return;
        }
        if link.prev != NONE {
            self.links[link.prev as usize].next = link.next;
        } else {
            self.heads[(link.tick % BUCKETS as u64) as usize] = link.next;
        }
        if link.next != NONE {
            self.links[link.next as usize].prev = link.prev;
        }
        self.links[slot as usize] = UNLINKED;
        self.count -= 1;
    }

    /// Unlinks every slot due at or before `now` and passes it to `due`.
    pub fn expire(&mut self, now: u64, mut due: impl FnMut(u32)) {
        if self.count == 0 {
            self.cursor = now + 1;
            return;
        }
        let last = now.min(self.cursor + BUCKETS as u64 - 1);
        while self.cursor <= last {
            let bucket = (self.cursor % BUCKETS as u64) as usize;
            let mut slot = self.heads[bucket];
            while slot != NONE {
                let link = self.links[slot as usize];
                if link.tick <= now {
                    self.cancel(slot);
                    due(slot);
                }
                slot = link.next;
            }
            self.cursor += 1;
        }
        self.cursor = now + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expired(wheel: &mut TimerWheel, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        wheel.expire(now, |slot| out.push(slot));
        out.sort();
        out
    }

    #[test]
    fn fires_each_slot_once_at_its_tick() {
        let mut wheel = TimerWheel::new(8);
        wheel.schedule(1, 5);
        wheel.schedule(2, 5);
        wheel.schedule(3, 7);
        assert!(expired(&mut wheel, 4).is_empty());
        assert_eq!(expired(&mut wheel, 5), vec![1, 2]);
        assert_eq!(expired(&mut wheel, 10), vec![3]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn cancelled_and_rescheduled_slots_fire_only_at_the_new_tick() {
        let mut wheel = TimerWheel::new(8);
        wheel.schedule(1, 5);
        wheel.schedule(2, 5);
        wheel.cancel(1);
        wheel.schedule(2, 9);
        assert!(expired(&mut wheel, 8).is_empty());
        assert_eq!(expired(&mut wheel, 9), vec![2]);
    }

    #[test]
    fn deadlines_beyond_one_turn_wait_for_their_tick() {
        let mut wheel = TimerWheel::new(8);
        wheel.schedule(1, BUCKETS as u64 + 3);
        assert!(expired(&mut wheel, 3).is_empty());
        assert!(expired(&mut wheel, BUCKETS as u64 + 2).is_empty());
        assert_eq!(expired(&mut wheel, BUCKETS as u64 + 3), vec![1]);
    }

    #[test]
    fn a_long_jump_fires_everything_due() {
        let mut wheel = TimerWheel::new(8);
        for slot in 0..8 {
            wheel.schedule(slot, slot as u64 * 300);
        }
        assert_eq!(expired(&mut wheel, 5000), (0..8).collect::<Vec<_>>());
    }
}
