//! The per-loop pool of I/O buffers. Sessions borrow a buffer only while bytes are in flight
//! and give it back as soon as they are written on; an idle session holds none.

use crate::proto::hello::MAX_ASSEMBLED_LEN;
use crate::proto::record::{HEADER_LEN, MAX_PAYLOAD_LEN};

/// Full records one read from a DC may fill, so one read and one write move this many.
pub const RECORDS_PER_READ: usize = 3;
/// One buffer: room for the largest hello (with fragment headers) and for three full records,
/// so a read takes up to 48 KiB and a write sends them all.
pub const BUF_LEN: usize = RECORDS_PER_READ * (HEADER_LEN + MAX_PAYLOAD_LEN) + 512;

const _: () = assert!(BUF_LEN >= MAX_ASSEMBLED_LEN + 10 * HEADER_LEN);
const _: () = assert!(BUF_LEN >= HEADER_LEN + MAX_PAYLOAD_LEN);
const _: () = assert!(BUF_LEN <= u16::MAX as usize);

/// Index of a buffer in its pool.
pub type BufferId = u32;

/// Fixed memory for `count` buffers, allocated zeroed at start, so pages never used are never
/// made resident.
pub struct BufferPool {
    memory: Vec<u8>,
    free: Vec<BufferId>,
}

impl BufferPool {
    pub fn new(count: usize) -> Self {
        let count = count.max(1);
        BufferPool {
            memory: vec![0; count * BUF_LEN],
            // Reversed so the lowest buffers are reused first and stay warm in cache.
            free: (0..count as BufferId).rev().collect(),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.memory.len()
    }

    pub fn take(&mut self) -> Option<BufferId> {
        self.free.pop()
    }

    /// Returns a buffer to the pool; `free` has room for every buffer, so this never allocates.
    pub fn give(&mut self, id: BufferId) {
        self.free.push(id);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn in_use(&self) -> usize {
        self.memory.len() / BUF_LEN - self.free.len()
    }

    pub fn get(&mut self, id: BufferId) -> &mut [u8] {
        let start = id as usize * BUF_LEN;
        &mut self.memory[start..start + BUF_LEN]
    }
}
