//! The fixed connection table of one event loop: slots, the free list, generations, tokens and
//! the two queues (ready to run again, waiting for a buffer). A slot is in at most one queue,
//! linked through the slot itself, so queues need no memory of their own, never hold
//! duplicates, and a slot leaves its queue the moment it is freed.

use mio::Token;

use super::connection::Connection;
use super::net::Side;

const NONE: u32 = u32::MAX;

/// Why a connection waits to be run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// It used its step budget and has more to do.
    Ready,
    /// It needs a pool buffer and the pool is empty.
    Buffer,
    /// Its reply, or small DC bytes, wait for their time. Holds of a kind are all as long, so
    /// this queue is nearly in the order the holds end; the loop wakes for its head.
    Hold,
}

const QUEUES: usize = 3;

fn queue_index(queue: Queue) -> usize {
    match queue {
        Queue::Ready => 0,
        Queue::Buffer => 1,
        Queue::Hold => 2,
    }
}

pub fn token(slot: u32, generation: u32, side: Side) -> Token {
    let side_bit = match side {
        Side::Client => 0,
        Side::Upstream => 1,
    };
    Token(((generation as usize) << 32) | ((slot as usize) << 1) | side_bit)
}

/// (slot, generation, side) of a connection token.
pub fn untoken(token: Token) -> (u32, u32, Side) {
    let side = if token.0 & 1 == 0 {
        Side::Client
    } else {
        Side::Upstream
    };
    (
        ((token.0 >> 1) & 0x7fff_ffff) as u32,
        (token.0 >> 32) as u32,
        side,
    )
}

struct Entry<S> {
    /// Changes every time the slot is freed, so events for the old sockets are ignored.
    generation: u32,
    live: bool,
    queued: Option<Queue>,
    next: u32,
    prev: u32,
    connection: Connection<S>,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

const EMPTY: List = List {
    head: NONE,
    tail: NONE,
    len: 0,
};

pub struct Slots<S> {
    entries: Vec<Entry<S>>,
    free: Vec<u32>,
    capacity: usize,
    lists: [List; QUEUES],
}

impl<S> Slots<S> {
    /// A table of `capacity` slots; entries are created on first use and never dropped.
    pub fn new(capacity: usize) -> Self {
        Slots {
            entries: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            capacity,
            lists: [EMPTY; QUEUES],
        }
    }

    /// Memory one slot takes.
    pub fn entry_bytes() -> usize {
        std::mem::size_of::<Entry<S>>()
    }

    pub fn live_count(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty() && self.entries.len() >= self.capacity
    }

    /// Takes a free slot: (slot, generation), or None when the table is full.
    pub fn allocate(&mut self) -> Option<(u32, u32)> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.entries.len() < self.capacity => {
                self.entries.push(Entry {
                    generation: 1,
                    live: false,
                    queued: None,
                    next: NONE,
                    prev: NONE,
                    connection: Connection::new(),
                });
                (self.entries.len() - 1) as u32
            }
            None => return None,
        };
        let entry = self.entries.get_mut(slot as usize)?;
        entry.live = true;
        Some((slot, entry.generation))
    }

    /// Frees a slot: it leaves its queue and gets a new generation.
    pub fn release(&mut self, slot: u32) {
        self.dequeue(slot);
        let Some(entry) = self.entries.get_mut(slot as usize) else {
            return;
        };
        if !entry.live {
            return;
        }
        entry.live = false;
        entry.generation = ((entry.generation + 1) & 0x7fff_ffff).max(1);
        self.free.push(slot);
    }

    /// The connection in `slot` if it is live and of `generation`.
    pub fn get(&mut self, slot: u32, generation: u32) -> Option<&mut Connection<S>> {
        self.entries
            .get_mut(slot as usize)
            .filter(|e| e.live && e.generation == generation)
            .map(|e| &mut e.connection)
    }

    pub fn get_live(&mut self, slot: u32) -> Option<&mut Connection<S>> {
        self.entries
            .get_mut(slot as usize)
            .filter(|e| e.live)
            .map(|e| &mut e.connection)
    }

    pub fn generation(&self, slot: u32) -> u32 {
        self.entries.get(slot as usize).map_or(0, |e| e.generation)
    }

    /// Live slots, for closing everything at stop.
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(slot, _)| slot as u32)
    }

    pub fn queue_len(&self, queue: Queue) -> usize {
        self.lists[queue_index(queue)].len
    }

    /// Puts a live slot at the end of `queue`, moving it out of any other queue; a slot already
    /// in `queue` keeps its place.
    pub fn enqueue(&mut self, slot: u32, queue: Queue) {
        match self.entries.get(slot as usize) {
            Some(entry) if entry.live && entry.queued != Some(queue) => {}
            _ => return,
        }
        self.dequeue(slot);
        let list = &mut self.lists[queue_index(queue)];
        let tail = list.tail;
        list.tail = slot;
        if tail == NONE {
            list.head = slot;
        }
        list.len += 1;
        if let Some(previous) = self.entries.get_mut(tail as usize) {
            previous.next = slot;
        }
        if let Some(entry) = self.entries.get_mut(slot as usize) {
            entry.queued = Some(queue);
            entry.prev = tail;
            entry.next = NONE;
        }
    }

    /// The slot at the front of `queue`, left in place.
    pub fn peek(&self, queue: Queue) -> Option<u32> {
        let head = self.lists[queue_index(queue)].head;
        (head != NONE).then_some(head)
    }

    /// Takes the slot at the front of `queue`.
    pub fn pop(&mut self, queue: Queue) -> Option<u32> {
        let head = self.lists[queue_index(queue)].head;
        if head == NONE {
            return None;
        }
        self.dequeue(head);
        Some(head)
    }

    pub fn dequeue(&mut self, slot: u32) {
        let Some(entry) = self.entries.get_mut(slot as usize) else {
            return;
        };
        let Some(queue) = entry.queued.take() else {
            return;
        };
        let (prev, next) = (entry.prev, entry.next);
        entry.prev = NONE;
        entry.next = NONE;
        let list = &mut self.lists[queue_index(queue)];
        list.len -= 1;
        if prev == NONE {
            list.head = next;
        }
        if next == NONE {
            list.tail = prev;
        }
        if let Some(entry) = self.entries.get_mut(prev as usize) {
            entry.next = next;
        }
        if let Some(entry) = self.entries.get_mut(next as usize) {
            entry.prev = prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_clear_of_listener_tokens() {
        for (slot, generation) in [(0, 1), (7, 0x7fff_ffff), (0x7fff_ffff, 3)] {
            for side in [Side::Client, Side::Upstream] {
                let t = token(slot, generation, side);
                assert_eq!(untoken(t), (slot, generation, side));
                assert!(t.0 < usize::MAX / 2);
            }
        }
    }

    #[test]
    fn a_freed_slot_leaves_its_queue_and_changes_generation() {
        let mut slots: Slots<()> = Slots::new(4);
        let (a, generation) = slots.allocate().expect("room");
        let (b, _) = slots.allocate().expect("room");
        slots.enqueue(a, Queue::Buffer);
        slots.enqueue(b, Queue::Buffer);
        slots.enqueue(a, Queue::Buffer);
        assert_eq!(slots.queue_len(Queue::Buffer), 2, "no duplicates");
        slots.release(a);
        assert_eq!(slots.queue_len(Queue::Buffer), 1);
        assert_eq!(slots.pop(Queue::Buffer), Some(b));
        assert_eq!(slots.pop(Queue::Buffer), None);
        assert!(slots.get(a, generation).is_none());
    }

    #[test]
    fn a_slot_moves_between_queues_and_keeps_order() {
        let mut slots: Slots<()> = Slots::new(4);
        let ids: Vec<u32> = (0..3).map(|_| slots.allocate().expect("room").0).collect();
        for &id in &ids {
            slots.enqueue(id, Queue::Ready);
        }
        slots.enqueue(ids[1], Queue::Buffer);
        assert_eq!(slots.queue_len(Queue::Ready), 2);
        assert_eq!(slots.pop(Queue::Ready), Some(ids[0]));
        assert_eq!(slots.pop(Queue::Ready), Some(ids[2]));
        assert_eq!(slots.pop(Queue::Buffer), Some(ids[1]));
        assert!(!slots.is_full() && slots.live_count() == 3);
    }
}

#[cfg(test)]
mod size {
    use super::Slots;

    #[test]
    fn an_idle_connection_entry_stays_small() {
        // The ≤ 2 KiB per idle connection budget is for everything; the entry is most of it.
        let size = Slots::<mio::net::TcpStream>::entry_bytes();
        assert!(size <= 512, "a slot is {size} bytes");
        eprintln!("a slot is {size} bytes");
    }
}
