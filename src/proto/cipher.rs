//! AES-256-CTR stream state kept as key, IV and position (PROTOCOL.md §5.2).
//! The key schedule is expanded per call, so an idle session holds 56 bytes per direction
//! instead of an expanded cipher.

/// One AES-256-CTR keystream: key, initial 128-bit big-endian counter block, byte position.
#[derive(Clone)]
pub struct CtrState {
    pub key: [u8; 32],
    pub iv: [u8; 16],
    pub position: u64,
}

impl CtrState {
    pub fn new(key: [u8; 32], iv: [u8; 16]) -> Self {
        todo!()
    }

    /// XORs the keystream at the current position into `data` and advances the position.
    pub fn apply(&mut self, data: &mut [u8]) {
        todo!()
    }
}
